//! Bursts of concurrent tunnelled connections, with the default limits: every
//! one must get through (issue 12, item 9), and a gateway's memory after many
//! bursts must stay near its memory after the first (item 10).

use std::net::SocketAddr;
use std::time::Duration;

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
