//! Bursts of concurrent tunnelled connections, with the default limits: every
//! one must get through (issue 12, item 9), and a gateway's memory after many
//! bursts must stay near its memory after the first (item 10).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

/// Connections held open at once in one burst.
const BURST: usize = 2000;

/// Lets this process (and the gateways it starts, which inherit it) hold
/// every socket of a burst: each tunnelled connection costs the test two
/// descriptors (client and echo backend). The gateways raise their own limit
/// too; this only covers hosts whose soft limit is the usual 1024.
fn enough_descriptors() {
    let want = 16_384;
    if let Ok((soft, hard)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
        if soft < want {
            let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, want.min(hard), hard);
        }
    }
}

/// One client: connect, send a line, read it back through the echo backend.
/// Returns the open stream, so that the burst holds every connection at once.
async fn open_and_echo(addr: SocketAddr, i: usize) -> Result<TcpStream, String> {
    let work = async {
        let mut stream = TcpStream::connect(addr).await?;
        let line = format!("connection {i:05}\n");
        stream.write_all(line.as_bytes()).await?;
        let mut back = vec![0u8; line.len()];
        stream.read_exact(&mut back).await?;
        if back != line.as_bytes() {
            return Err(std::io::Error::other("echo differs"));
        }
        Ok(stream)
    };
    match tokio::time::timeout(Duration::from_secs(120), work).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!("connection {i}: {e}")),
        Err(_) => Err(format!("connection {i}: no echo within 120 s")),
    }
}

/// Opens `n` tunnelled connections at once, holds them all open until every
/// one has echoed (or failed), then closes them. Returns the failures.
async fn burst(addr: SocketAddr, n: usize) -> Vec<String> {
    let tasks: Vec<_> = (0..n)
        .map(|i| tokio::spawn(open_and_echo(addr, i)))
        .collect();
    let mut open = Vec::with_capacity(n);
    let mut failures = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Ok(stream)) => open.push(stream),
            Ok(Err(e)) => failures.push(e),
            Err(e) => failures.push(format!("task: {e}")),
        }
    }
    // Every successful connection is open here, all at the same time.
    for mut stream in open {
        let _ = stream.shutdown().await;
    }
    failures
}

/// Waits until a gateway has audited `closes` closes (its connections are gone).
fn wait_closes(gw: &Gateway, closes: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = gw
            .audit_lines()
            .iter()
            .filter(|v| v["event"] == "close")
            .count();
        if n >= closes {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} closes audited, want {closes}",
            n
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Resident set size of a process in KiB, from `/proc/PID/status`.
fn rss_kib(gw: &Gateway) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.0.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// Refusals and failures in both sites' audit logs, counted by kind.
fn trouble(pair: &Pairing) -> std::collections::BTreeMap<String, usize> {
    let mut refused = std::collections::BTreeMap::new();
    for (site, gw) in [("site1", &pair.site1), ("site2", &pair.site2)] {
        for v in gw.audit_lines() {
            let error = v.get("error").filter(|e| !e.is_null());
            let connection = v["event"] == "connection" || v["event"] == "close";
            if connection && (v["decision"] == "deny" || error.is_some()) {
                let what = format!(
                    "{site} {} {} {}",
                    v["event"],
                    v["reason"],
                    error.unwrap_or(&v["detail"])
                );
                *refused.entry(what).or_insert(0) += 1;
            }
        }
    }
    refused
}

/// A pair with the default limits, the peer link already proven by one
/// round trip (as in the field, where the pair talks all day).
async fn warm_pair() -> Pairing {
    enough_descriptors();
    let pair = Pairing::start().await;
    let back = round_trip(pair.tunnel, b"warm-up").await.unwrap();
    assert_eq!(back, b"warm-up");
    pair
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_concurrent_tunnelled_connections_all_get_through() {
    let pair = warm_pair().await;
    let failures = burst(pair.tunnel, BURST).await;
    let refused = trouble(&pair);
    assert!(
        failures.is_empty() && refused.is_empty(),
        "{} of {BURST} failed, e.g. {:?}; refused or failed in the audit: {refused:#?}",
        failures.len(),
        failures.first(),
    );
}

/// A peer gateway without turn-taking for its dials (an older version,
/// during a rolling upgrade) opens its handshakes all at once, from one
/// address: the paired peer's allowance must cover them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_opening_hundreds_of_handshakes_at_once_is_not_evicted() {
    let pair = warm_pair().await;
    let peer = std::sync::Arc::new(RawPeer {
        ca: pair.pki.ca_path(),
        client_cert: Some(pair.site1_spec.cert.clone()),
    });
    let addr = pair.site2_peer();
    let tasks: Vec<_> = (0..300)
        .map(|_| {
            let peer = peer.clone();
            tokio::spawn(async move { peer.relays(addr, POOL2, b"pg1/backup-smb").await })
        })
        .collect();
    let mut relayed = 0;
    for task in tasks {
        relayed += usize::from(task.await.unwrap());
    }
    let evicted = pair
        .site2
        .audit_lines()
        .into_iter()
        .filter(|v| v["reason"] == "too_many_connections")
        .count();
    assert_eq!((relayed, evicted), (300, 0));
}

/// Connections per burst in the memory test: half the item-9 burst, to
/// keep ten bursts affordable in CI; the retention it looks for scales with
/// the peak.
const MEMORY_BURST: usize = 1000;
/// How far above its idle size a gateway may stay once a burst is over:
/// the allocator keeps a little for the next burst; glibc's malloc kept
/// about 36 MB after 2,000 connections, and more after each burst.
const SETTLED_ABOVE_IDLE_KIB: u64 = 10 * 1024;
/// How much more than after the first burst a gateway may hold after the tenth.
const GROWTH_PERCENT: u64 = 20;

/// Waits (generously) until a gateway's RSS is at most `bound` KiB; returns it.
fn settles_below(gw: &Gateway, name: &str, bound: u64, when: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rss = rss_kib(gw);
        if rss <= bound {
            return rss;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: {rss} KiB resident {when}, still above {bound} KiB after 60 s"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_after_ten_bursts_stays_near_memory_after_the_first() {
    let pair = warm_pair().await;
    let sites = [("site1", &pair.site1), ("site2", &pair.site2)];
    let idle = sites.map(|(_, gw)| rss_kib(gw));
    let mut closes = 1;
    let mut first = [0; 2];
    for round in 1..=10 {
        let failures = burst(pair.tunnel, MEMORY_BURST).await;
        assert!(
            failures.is_empty(),
            "burst {round}: {} failed, e.g. {:?}; audit: {:#?}",
            failures.len(),
            failures.first(),
            trouble(&pair)
        );
        closes += MEMORY_BURST;
        for (i, (name, gw)) in sites.iter().enumerate() {
            wait_closes(gw, closes);
            if round == 1 {
                let bound = idle[i] + SETTLED_ABOVE_IDLE_KIB;
                first[i] = settles_below(gw, name, bound, "after the first burst");
            } else if round == 10 {
                let bound = first[i] + first[i] * GROWTH_PERCENT / 100;
                let tenth = settles_below(gw, name, bound, "after the tenth burst");
                eprintln!(
                    "{name}: idle {} KiB, after burst 1 {} KiB, after burst 10 {tenth} KiB",
                    idle[i], first[i]
                );
            }
        }
    }
}
