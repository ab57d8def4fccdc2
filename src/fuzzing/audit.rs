//! The audit log as hostile input (`audit verify|summary|query` read files
//! anyone with disk access may have edited) and as output (every event the
//! gateway records must produce a line that verifies and parses back).
//!
//! The round-trip target builds [`Event`]s from the fuzz bytes with a small
//! structured decoder ([`Bytes`]) rather than `arbitrary`, so the main
//! package needs no extra dependency: each field takes a few input bytes,
//! strings are any UTF-8 (quotes, backslashes, control characters, non-ASCII),
//! and a short input simply yields zeros and empty strings.

use time::OffsetDateTime;

use crate::audit::{
    check_line, format_ts, line_hash, parse_time, query, render_line, summary, verify, CertReload,
    Close, Connection, Direction, Event, Filter, LogRepaired, PolicyReload, Record, VerifyError,
    GENESIS,
};
use crate::policy::{DenyReason, Verdict};

/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the years RFC 3339 can
/// write (the gateway's clock is always inside).
const FIRST_TS: i64 = -62_167_219_200;
const LAST_TS: i64 = 253_402_300_799;

/// Reads `data` as an audit log, as `audit verify|summary|query` do.
/// Never panics; `verify` names the first bad line and everything before
/// it verifies on its own.
pub fn fuzz_audit_verify(data: &[u8]) {
    let lines = data.iter().filter(|&&b| b == b'\n').count() as u64;
    match verify(data) {
        Ok(s) => {
            assert_eq!(s.bytes, data.len() as u64);
            assert_eq!(s.lines, lines);
            assert!(data.is_empty() || data.ends_with(b"\n"));
            let last = data
                .strip_suffix(b"\n")
                .map(|d| d.rsplit(|&b| b == b'\n').next());
            match last.flatten() {
                Some(line) => assert_eq!(s.head, line_hash(line)),
                None => assert_eq!(s.head, GENESIS),
            }
        }
        Err(VerifyError::Broken(brk)) => {
            assert!(brk.line >= 1 && brk.line <= lines + 1, "{brk}");
            let good = prefix_lines(data, brk.line - 1);
            match verify(good) {
                Ok(s) => assert_eq!(s.lines, brk.line - 1),
                Err(e) => panic!("lines before the first bad one ({brk}) fail: {e}"),
            }
            assert!(!brk.to_string().contains('\n'));
        }
        Err(e @ VerifyError::Read { .. }) => panic!("reading a slice failed: {e}"),
    }
    // The reports read the same bytes generically.
    let _ = summary(data);
    let _ = query(data, &Filter::default(), |line, record| {
        assert!(!line.contains(&b'\n'));
        let _ = record.event.as_deref();
        Ok(())
    });
    // `--since`/`--until` take the first line as a time spec.
    let spec = data.split(|&b| b == b'\n').next().unwrap_or_default();
    let _ = parse_time(&String::from_utf8_lossy(spec), OffsetDateTime::UNIX_EPOCH);
}

/// The first `n` lines of `data`, newlines included.
fn prefix_lines(data: &[u8], n: u64) -> &[u8] {
    let mut end = 0;
    for _ in 0..n {
        match data[end..].iter().position(|&b| b == b'\n') {
            Some(i) => end += i + 1,
            None => return data,
        }
    }
    &data[..end]
}

/// Builds an event, a timestamp and a `prev` from `data`, renders the line,
/// and checks it: it verifies against its `prev`, chains to the next line,
/// holds no newline, and parses back to the same event, `ts` and `prev`.
pub fn fuzz_audit_round_trip(data: &[u8]) {
    let mut input = Bytes(data);
    let ts = input.timestamp();
    let mut prev = [0u8; 32];
    prev.iter_mut().for_each(|b| *b = input.byte());
    let event = input.event();
    let line = render_line(ts, &event, &prev);
    assert!(
        !line.contains('\n'),
        "a rendered line holds a newline: {line:?}"
    );
    if let Err(fault) = check_line(line.as_bytes(), &prev) {
        panic!("a rendered line does not check: {fault}: {line}");
    }
    match serde_json::from_str::<Event>(&line) {
        Ok(back) => assert_eq!(back, event, "{line}"),
        Err(e) => panic!("a rendered line does not parse back: {e}: {line}"),
    }
    let record = Record::parse(line.as_bytes());
    let record = record.unwrap_or_else(|| panic!("query cannot read {line}"));
    assert_eq!(record.ts.as_deref(), Some(format_ts(ts).as_str()));
    match OffsetDateTime::parse(
        &format_ts(ts),
        &time::format_description::well_known::Rfc3339,
    ) {
        Ok(t) => assert_eq!(t, ts),
        Err(e) => panic!("ts {ts} does not survive formatting: {e}"),
    }
    // The next line chains onto this one, and the pair verifies from `prev`.
    let next = render_line(ts, &input.event(), &line_hash(line.as_bytes()));
    let log = format!("{line}\n{next}\n");
    if prev == GENESIS {
        match verify(log.as_bytes()) {
            Ok(s) => assert_eq!((s.lines, s.head), (2, line_hash(next.as_bytes()))),
            Err(e) => panic!("a rendered chain does not verify: {e}"),
        }
    } else {
        assert!(check_line(next.as_bytes(), &line_hash(line.as_bytes())).is_ok());
    }
}

/// A structured reader over fuzz bytes: every read succeeds, yielding zeros
/// once the input is exhausted.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |n, _| (n << 8) | u64::from(self.byte()))
    }

    fn flag(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    /// Up to 63 bytes, read as (lossy) UTF-8.
    fn string(&mut self) -> String {
        let len = usize::from(self.byte() % 64).min(self.0.len());
        let (text, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8_lossy(text).into_owned()
    }

    fn opt_string(&mut self) -> Option<String> {
        self.flag().then(|| self.string())
    }

    fn timestamp(&mut self) -> OffsetDateTime {
        let span = (LAST_TS - FIRST_TS + 1).unsigned_abs();
        let secs = FIRST_TS + i64::try_from(self.u64() % span).unwrap_or(0);
        let micros = u32::try_from(self.u64() % 1_000_000).unwrap_or(0);
        OffsetDateTime::from_unix_timestamp(secs)
            .and_then(|t| t.replace_microsecond(micros))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    fn direction(&mut self) -> Direction {
        if self.flag() {
            Direction::Outbound
        } else {
            Direction::Inbound
        }
    }

    fn verdict(&mut self) -> Verdict {
        if self.flag() {
            Verdict::Deny
        } else {
            Verdict::Allow
        }
    }

    fn event(&mut self) -> Event {
        match self.byte() % 7 {
            0 => Event::GatewayStart {
                pool: self.string(),
                peer_pool: self.string(),
                version: self.string(),
            },
            1 => Event::GatewayStop {
                reason: self.string(),
            },
            2 => Event::Connection(Connection {
                conn_id: self.u64(),
                direction: self.direction(),
                peer_addr: self.string(),
                peer_pool: self.opt_string(),
                cert_sha256: self.opt_string(),
                service: self.opt_string(),
                decision: self.verdict(),
                reason: self.flag().then(|| reason(self.byte())),
                detail: self.opt_string(),
                client_addr: self.opt_string(),
                orig_dst: self.opt_string(),
                claimed_pool: self.opt_string(),
            }),
            3 => Event::Close(Close {
                conn_id: self.u64(),
                direction: self.direction(),
                peer_addr: self.string(),
                peer_pool: self.opt_string(),
                cert_sha256: self.opt_string(),
                service: self.opt_string(),
                decision: self.verdict(),
                bytes_in: self.u64(),
                bytes_out: self.u64(),
                duration_ms: self.u64(),
                error: self.opt_string(),
                reason: self.flag().then(|| reason(self.byte())),
                client_addr: self.opt_string(),
                orig_dst: self.opt_string(),
            }),
            4 => Event::LogRepaired(LogRepaired {
                truncated_bytes: self.u64(),
                truncated_sha256: self.string(),
                lost_events: self.u64(),
            }),
            5 => Event::CertReload(CertReload {
                trigger: self.string(),
                ok: self.flag(),
                old_sha256: self.opt_string(),
                new_sha256: self.opt_string(),
                error: self.opt_string(),
                revoked_closed: self.u64(),
                crls: if self.flag() {
                    vec![crate::audit::CrlRecord {
                        issuer: self.string(),
                        number: self.u64(),
                        next_update: self.opt_string(),
                    }]
                } else {
                    Vec::new()
                },
            }),
            _ => Event::PolicyReload(PolicyReload {
                trigger: self.string(),
                ok: self.flag(),
                path: self.string(),
                error: self.opt_string(),
            }),
        }
    }
}

/// Any denial reason, picked by one fuzz byte.
fn reason(byte: u8) -> DenyReason {
    use strum::IntoEnumIterator;
    let count = DenyReason::iter().len();
    DenyReason::iter()
        .nth(usize::from(byte) % count)
        .unwrap_or(DenyReason::HandshakeFailed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::audit::synth::sample_event;

    #[test]
    fn decoder_reaches_every_event_kind_and_the_edges_of_time() {
        for kind in 0..7u8 {
            let mut data = vec![0u8; 48];
            data.push(kind);
            data.extend(b"\x05\"\\\n\x01x".iter().cycle().take(200));
            fuzz_audit_round_trip(&data);
        }
        let mut first = Bytes(&[0u8; 16]);
        assert_eq!(first.timestamp().year(), 0);
        let last_secs = (LAST_TS - FIRST_TS).unsigned_abs().to_be_bytes();
        let mut data = last_secs.to_vec();
        data.extend(999_999u64.to_be_bytes());
        let ts = Bytes(&data).timestamp();
        assert_eq!((ts.year(), ts.microsecond()), (9999, 999_999));
        fuzz_audit_round_trip(&data);
    }

    #[test]
    fn verify_target_checks_real_logs_and_their_damage() {
        let mut log = Vec::new();
        let mut prev = GENESIS;
        for i in 0..6 {
            let line = render_line(OffsetDateTime::UNIX_EPOCH, &sample_event(i), &prev);
            prev = line_hash(line.as_bytes());
            log.extend_from_slice(line.as_bytes());
            log.push(b'\n');
        }
        assert_eq!(verify(&log[..]).unwrap().lines, 6);
        fuzz_audit_verify(&log);
        let mut torn = log.clone();
        torn.truncate(log.len() - 3);
        fuzz_audit_verify(&torn);
        let mut edited = log.clone();
        edited[30] ^= 1;
        fuzz_audit_verify(&edited);
        assert_eq!(prefix_lines(b"a\nb\nc", 2), b"a\nb\n");
        assert_eq!(prefix_lines(b"a\nb", 5), b"a\nb");
    }
}
