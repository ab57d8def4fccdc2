//! Audit that cannot be outrun: the audit log on a small full filesystem
//! (a tmpfs in the gateway's own mount namespace; root only). Under
//! `audit.on_failure = "refuse"` (the default) new connections are refused
//! while established ones continue; under `"continue"` traffic flows and the
//! condition is visible; either way memory stays flat under a flood.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fieldkit::*;
use crate::harness::*;

/// Rewrites site2's config: audit log in `audit_dir`, `on_failure` set.
fn audit_on(pair: &Pairing, audit_dir: &Path, on_failure: &str) -> PathBuf {
    let config = pair.site2_spec.write(pair.dir.path()).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replacen(
        "[audit]\npath = \"site2-audit.jsonl\"\n",
        &format!(
            "[audit]\npath = \"{}/site2-audit.jsonl\"\non_failure = \"{on_failure}\"\n",
            audit_dir.display()
        ),
        1,
    );
    assert!(text.contains("on_failure"), "{text}");
    std::fs::write(&config, text).unwrap();
    config
}

/// Fills the gateway's audit filesystem (as the gateway sees it).
fn fill(gw: &Gateway, audit_dir: &Path) {
    use std::io::Write;
    let path = seen_by(gw, &audit_dir.join("filler"));
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![b'x'; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn audit_failing(admin: SocketAddr) -> bool {
    admin_json(admin, "/status").await["audit"]["failing"] == true
}

/// Waits until `/status` says the audit is failing, sending traffic through
/// `tunnel` meanwhile (its records are what fail to be written).
async fn until_failing(admin: SocketAddr, tunnel: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !audit_failing(admin).await {
        assert!(
            Instant::now() < deadline,
            "the audit never showed as failing"
        );
        let _ = round_trip(tunnel, b"poke").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_audit_filesystem_refuses_new_connections_or_continues_as_configured() {
    if !is_root() {
        eprintln!("skipped: needs root to mount a small tmpfs in a private mount namespace");
        return;
    }
    let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut pair = Pairing::start_with(|_, site2| {
        site2.extra = format!("\n[admin]\nlisten = \"{admin}\"\n");
    })
    .await;
    let audit_dir = pair.dir.path().join("auditfs");
    let wrap = Wrap {
        tmpfs: vec![(audit_dir.clone(), "256k")],
        honour_modes: false,
    };

    // "continue": the tunnel works on while nothing is written, visibly.
    pair.site2.terminate();
    let config = audit_on(&pair, &audit_dir, "continue");
    let log = pair.dir.path().join("site2-continue.stderr");
    pair.site2 = start_wrapped(&config, &wrap, &log);
    fill(&pair.site2, &audit_dir);
    until_failing(admin, pair.tunnel).await;
    let back = round_trip(pair.tunnel, b"unaudited").await.unwrap();
    assert_eq!(back, b"unaudited");
    wait_metric(admin, "pairgate_audit_failing", None, |v| v == 1.0).await;
    let status = admin_json(admin, "/status").await;
    assert_eq!(status["audit"]["on_failure"], "continue", "{status:#}");
    assert!(
        status["audit"]["detail"]
            .as_str()
            .unwrap()
            .contains("No space left"),
        "{status:#}"
    );

    // "refuse" (the default): an established session continues, new ones are refused.
    pair.site2.terminate();
    let config = audit_on(&pair, &audit_dir, "refuse");
    let log = pair.dir.path().join("site2-refuse.stderr");
    pair.site2 = start_wrapped(&config, &wrap, &log);
    let mut established = tokio::net::TcpStream::connect(pair.tunnel).await.unwrap();
    let mut buf = [0u8; 6];
    established.write_all(b"before").await.unwrap();
    established.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"before");
    fill(&pair.site2, &audit_dir);
    until_failing(admin, pair.tunnel).await;
    for _ in 0..3 {
        let back = round_trip(pair.tunnel, b"refused")
            .await
            .unwrap_or_default();
        assert!(
            back.is_empty(),
            "a new connection passed an unwritable audit"
        );
    }
    established.write_all(b"during").await.unwrap();
    established.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"during", "an established session continues");
    // The dialling site learns why, in its own audit log.
    let v = pair
        .site1
        .wait_audit("audit_failing at site1", |v| v["reason"] == "audit_failing");
    let why = format!("{} {}", v["detail"], v["error"]);
    assert!(why.contains("audit log"), "{v}");
    wait_metric(admin, "pairgate_audit_failing", None, |v| v == 1.0).await;
    let text = metrics_text(admin).await;
    let refused: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("pairgate_denials_total{")
                && l.contains("direction=\"inbound\"")
                && l.contains("reason=\"audit_failing\"")
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert!(refused >= 1.0, "{text}");

    // A flood while nothing can be written: memory stays flat.
    let pid = pair.site2.0.pid();
    let before = rss_kib(pid);
    let peer = pair.site2_peer();
    for _ in 0..30 {
        let batch: Vec<_> = (0..100)
            .map(|_| {
                tokio::spawn(async move {
                    if let Ok(mut s) = tokio::net::TcpStream::connect(peer).await {
                        let _ = s.write_all(b"\x16\x03\x01junk").await;
                    }
                })
            })
            .collect();
        for t in batch {
            let _ = t.await;
        }
    }
    pause(3_000).await;
    let after = rss_kib(pid);
    eprintln!("audit_full: site2 RSS {before} KiB before, {after} KiB after 3000 connections");
    assert!(
        after < before + 32 * 1024,
        "RSS grew from {before} KiB to {after} KiB under a flood"
    );
    // Said once in the journal, not per event.
    let journal = std::fs::read_to_string(&log).unwrap_or_default();
    let said = journal
        .matches("free disk space or fix permissions")
        .count();
    assert_eq!(said, 1, "{journal}");
}
