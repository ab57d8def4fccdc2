//! Generated logs for the library's unit tests and the audit speed
//! measurement (`audit_speed` below). Compiled only into the test build, so
//! it is not part of the library operators install; the integration tests
//! write their logs with the harness's `synthetic_log`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use time::{Duration, OffsetDateTime};

use super::chain::{line_hash, render_line, GENESIS};
use super::event::{Close, Connection, Direction, Event};
use crate::policy::{DenyReason, Verdict};

const PEERS: [&str; 2] = ["pool02.site2.example", "pool04.site4.example"];
const SERVICES: [&str; 3] = ["backup-smb", "cms-smb", "cms-https"];
const REASONS: [DenyReason; 3] = [
    DenyReason::NotPaired,
    DenyReason::ServiceNotAllowed,
    DenyReason::HandshakeTimeout,
];

/// A deterministic, realistic-looking event number `i`: allowed connections
/// followed by their close, with a denial every fourth connection.
pub(crate) fn sample_event(i: u64) -> Event {
    let k = i / 2;
    let peer = PEERS[(k % 2) as usize];
    let service = SERVICES[(k % 3) as usize];
    let peer_addr = format!("127.0.0.{}:{}", 2 + k % 50, 40000 + k % 20000);
    let cert = format!("{:064x}", k.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let denied = k % 4 == 3;
    if i.is_multiple_of(2) || denied {
        Event::Connection(Connection {
            conn_id: k,
            direction: Direction::Inbound,
            peer_addr,
            peer_pool: Some(peer.to_owned()),
            cert_sha256: Some(cert),
            service: Some(service.to_owned()),
            decision: if denied {
                Verdict::Deny
            } else {
                Verdict::Allow
            },
            reason: denied.then(|| REASONS[(k / 4 % 3) as usize]),
            detail: None,
            client_addr: None,
            orig_dst: None,
            claimed_pool: None,
        })
    } else {
        Event::Close(Close {
            conn_id: k,
            direction: Direction::Inbound,
            peer_addr,
            peer_pool: Some(peer.to_owned()),
            cert_sha256: Some(cert),
            service: Some(service.to_owned()),
            decision: Verdict::Allow,
            bytes_in: 1000 + k % 7919,
            bytes_out: 500 + k % 104_729,
            duration_ms: k % 120_000,
            error: None,
            reason: None,
            client_addr: None,
            orig_dst: None,
        })
    }
}

/// Writes a new, valid log of `n_lines` [`sample_event`]s, 10 ms apart from
/// `start`. Returns the bytes written.
///
/// # Errors
/// Creating or writing the file.
pub(crate) fn synthetic_log(path: &Path, n_lines: u64, start: OffsetDateTime) -> io::Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut prev = GENESIS;
    let mut bytes = 0u64;
    for i in 0..n_lines {
        let ts = start + Duration::milliseconds(i as i64 * 10);
        let line = render_line(ts, &sample_event(i), &prev);
        prev = line_hash(line.as_bytes());
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        bytes += line.len() as u64 + 1;
    }
    out.flush()?;
    Ok(bytes)
}

/// A small log with known answers for the report tests: 9 lines, one not JSON.
#[cfg(test)]
pub(crate) fn fixture() -> Vec<u8> {
    use crate::audit::event::Close;
    use time::macros::datetime;
    let t0 = datetime!(2026-11-26 03:00:00 UTC);
    let conn = |id, peer: Option<&str>, service: Option<&str>, reason: Option<DenyReason>| {
        Event::Connection(Connection {
            conn_id: id,
            direction: Direction::Inbound,
            peer_addr: "127.0.0.2:40000".into(),
            peer_pool: peer.map(str::to_owned),
            cert_sha256: None,
            service: service.map(str::to_owned),
            decision: if reason.is_some() {
                Verdict::Deny
            } else {
                Verdict::Allow
            },
            reason,
            detail: None,
            client_addr: None,
            orig_dst: None,
            claimed_pool: None,
        })
    };
    let close = |id, service: &str, bytes_in, bytes_out| {
        Event::Close(Close {
            conn_id: id,
            direction: Direction::Inbound,
            peer_addr: "127.0.0.2:40000".into(),
            peer_pool: Some(PEERS[0].into()),
            cert_sha256: None,
            service: Some(service.into()),
            decision: Verdict::Allow,
            bytes_in,
            bytes_out,
            duration_ms: 5,
            error: None,
            reason: None,
            client_addr: None,
            orig_dst: None,
        })
    };
    let events = [
        Event::GatewayStart {
            pool: "pool01.site1.example".into(),
            peer_pool: PEERS[0].into(),
            version: "0.1.0".into(),
        },
        conn(1, Some(PEERS[0]), Some("backup-smb"), None),
        conn(2, None, None, Some(DenyReason::NoClientCert)),
        close(1, "backup-smb", 100, 200),
        conn(
            3,
            Some(PEERS[1]),
            Some("backup-smb"),
            Some(DenyReason::NotPaired),
        ),
        conn(4, Some(PEERS[0]), Some("cms-smb"), None),
        close(4, "cms-smb", 10, 20),
    ];
    let mut out = Vec::new();
    let mut prev = GENESIS;
    let push = |line: String, out: &mut Vec<u8>| {
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
        line_hash(line.as_bytes())
    };
    for (i, event) in events.iter().enumerate() {
        let line = render_line(t0 + Duration::seconds(i as i64), event, &prev);
        prev = push(line, &mut out);
    }
    // A future event type whose `service` is not a string.
    let future = format!(
        r#"{{"ts":"2026-11-26T03:00:07.000000Z","event":"spool_sent","peer_pool":"{}","service":{{"x":1}},"prev":"{}"}}"#,
        PEERS[0],
        hex::encode(prev)
    );
    prev = push(future, &mut out);
    push(format!("not json {}", hex::encode(prev)), &mut out);
    out
}

#[cfg(test)]
mod speed {
    //! `cargo test --release --lib -- --ignored --nocapture audit_speed`:
    //! prints rates over a ~200 MB generated log; asserts nothing about time.

    use super::*;
    use crate::audit::query::{query, Filter};
    use crate::audit::sink::AuditLog;
    use crate::audit::summary::summary;
    use crate::audit::verify;
    use std::io::BufReader;
    use std::time::Instant;

    fn rate(what: &str, bytes: u64, start: Instant) {
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{what}: {:.0} MB/s ({secs:.2} s)",
            bytes as f64 / 1e6 / secs
        );
    }

    #[test]
    #[ignore = "writes ~200 MB; run in release to measure"]
    fn audit_speed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.jsonl");
        let start = Instant::now();
        let bytes = synthetic_log(&path, 700_000, OffsetDateTime::now_utc()).expect("generate");
        rate("generate (render + hash)", bytes, start);
        let open = || BufReader::with_capacity(1 << 20, File::open(&path).expect("open"));

        let start = Instant::now();
        let chain = verify(open()).expect("intact");
        rate(&format!("verify {} lines", chain.lines), bytes, start);

        let start = Instant::now();
        let s = summary(open()).expect("summary");
        rate(&format!("summary {} flows", s.flows.len()), bytes, start);

        let filter = Filter {
            peer: Some(PEERS[1].into()),
            decision: Some(Verdict::Deny),
            ..Filter::default()
        };
        let start = Instant::now();
        let stats = query(open(), &filter, |_, _| Ok(())).expect("query");
        rate(&format!("query {} matches", stats.matched), bytes, start);

        let since = Filter {
            since: Some(OffsetDateTime::now_utc()),
            ..Filter::default()
        };
        let start = Instant::now();
        query(open(), &since, |_, _| Ok(())).expect("query");
        rate("query --since", bytes, start);

        let log = AuditLog::open(&dir.path().join("sink.jsonl")).expect("open sink");
        let start = Instant::now();
        for i in 0..100_000 {
            log.record(sample_event(i));
        }
        let queued = start.elapsed();
        log.flush().expect("flush");
        println!(
            "sink: 100000 records queued in {:.0} ms, written+synced after {:.0} ms",
            queued.as_secs_f64() * 1e3,
            start.elapsed().as_secs_f64() * 1e3
        );
    }
}
