//! Certificate lifecycle on running gateways: rotation under load, a
//! corrupt file, revocation of new and established connections, CA rollover
//! in either order, an expired certificate replaced before start.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pairgate::pki::Validity;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

fn pairgate(args: &[&str]) -> std::process::Output {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("run pairgate");
    assert!(
        out.status.success(),
        "pairgate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// PREFIX of a certificate written by the harness (`…/site1.crt` → `…/site1`).
fn prefix(crt: &Path) -> PathBuf {
    crt.with_extension("")
}

fn reloads(gw: &Gateway, ok: bool) -> usize {
    gw.audit_lines()
        .iter()
        .filter(|v| v["event"] == "cert_reload" && v["ok"] == ok)
        .count()
}

/// Waits until `gw` has audited `n` TLS reloads with outcome `ok`; returns the n-th.
fn wait_reloads(gw: &Gateway, ok: bool, n: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found: Vec<Value> = gw
            .audit_lines()
            .into_iter()
            .filter(|v| v["event"] == "cert_reload" && v["ok"] == ok)
            .collect();
        if found.len() >= n {
            return found[n - 1].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {n} cert_reload ok={ok} in {}: {found:#?}",
            gw.audit_path().display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A long-lived tunnelled connection that echoes on demand.
struct Held(TcpStream);

impl Held {
    async fn open(addr: std::net::SocketAddr) -> Held {
        let mut h = Held(TcpStream::connect(addr).await.unwrap());
        assert!(h.ping(b"hello").await);
        h
    }
    async fn ping(&mut self, msg: &[u8]) -> bool {
        if self.0.write_all(msg).await.is_err() {
            return false;
        }
        let mut buf = vec![0u8; msg.len()];
        matches!(
            tokio::time::timeout(Duration::from_secs(20), self.0.read_exact(&mut buf)).await,
            Ok(Ok(_)) if buf == msg
        )
    }
    /// True when the gateway closed this connection.
    async fn closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(20), self.0.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_fails_no_connection_and_drops_no_established_one() {
    let pair = Pairing::start().await;
    let mut held = Held::open(pair.tunnel).await;

    // Continuous load: new connections one after another, each a full
    // handshake through both gateways.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (stop, ok, failed, tunnel) = (stop.clone(), ok.clone(), failed.clone(), pair.tunnel);
        tokio::spawn(async move {
            let payload = pattern(4096);
            while !stop.load(Ordering::Relaxed) {
                match round_trip(tunnel, &payload).await {
                    Ok(back) if back == payload => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };

    let ca_dir = pair.pki.0.dir.clone();
    let before2 = pair.site2.audit_lines().len();
    pairgate(&[
        "cert",
        "rotate",
        "--ca-dir",
        s(&ca_dir),
        "--cert",
        s(&prefix(&pair.site2_spec.cert.0)),
    ]);
    let r2 = wait_reloads(&pair.site2, true, 1);
    pairgate(&[
        "cert",
        "rotate",
        "--ca-dir",
        s(&ca_dir),
        "--cert",
        s(&prefix(&pair.site1_spec.cert.0)),
    ]);
    let r1 = wait_reloads(&pair.site1, true, 1);
    assert_ne!(r1["old_sha256"], r1["new_sha256"]);
    assert_ne!(r2["old_sha256"], r2["new_sha256"]);

    // Keep the load going until connections made after both reloads passed.
    let after = ok.load(Ordering::Relaxed) + 20;
    let deadline = Instant::now() + Duration::from_secs(60);
    while ok.load(Ordering::Relaxed) < after && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("rotation under load: {ok} connections ok, {failed} failed");
    assert_eq!(failed, 0, "connections failed during rotation");
    assert!(ok >= after);

    // The connection opened before the rotation still works.
    assert!(held.ping(b"still alive after rotation").await);
    // New connections present the new certificates: site1 saw site2's new one.
    let new2 = r2["new_sha256"].clone();
    let lines = pair.site1.audit_lines();
    assert!(lines
        .iter()
        .any(|v| v["event"] == "connection" && v["cert_sha256"] == new2));
    assert!(pair.site2.audit_lines().len() > before2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_certificate_file_keeps_the_running_one() {
    let pair = Pairing::start().await;
    let crt = &pair.site2_spec.cert.0;
    let good = std::fs::read(crt).unwrap();
    std::fs::write(crt, b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n").unwrap();
    let refused = wait_reloads(&pair.site2, false, 1);
    assert!(
        refused["error"].as_str().unwrap().contains("site2.crt"),
        "{refused}"
    );
    assert_eq!(round_trip(pair.tunnel, b"served").await.unwrap(), b"served");

    // SIGHUP with the broken file: refused again, still serving.
    pair.site2.0.hangup().unwrap();
    wait_reloads(&pair.site2, false, 2);
    assert_eq!(round_trip(pair.tunnel, b"served").await.unwrap(), b"served");

    std::fs::write(crt, good).unwrap();
    wait_reloads(&pair.site2, true, 1);
    assert_eq!(round_trip(pair.tunnel, b"served").await.unwrap(), b"served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_refuses_new_and_closes_established_connections() {
    let pair = Pairing::start_with(|_, site2| {
        let crl = site2.ca.with_file_name("ca.crl");
        std::fs::write(&crl, b"").unwrap();
        site2.crl = Some(crl);
    })
    .await;
    let mut held = Held::open(pair.tunnel).await;

    let ca_dir = pair.pki.0.dir.clone();
    let t0 = Instant::now();
    pairgate(&[
        "cert",
        "revoke",
        "--ca-dir",
        s(&ca_dir),
        "--cert",
        s(&pair.site1_spec.cert.0),
    ]);
    let reload = wait_reloads(&pair.site2, true, 1);
    assert!(
        held.closed().await,
        "established connection of the revoked peer was closed"
    );
    let took = t0.elapsed();
    eprintln!(
        "revocation took effect in {} ms (CRL written → established connection closed)",
        took.as_millis()
    );
    assert_eq!(reload["revoked_closed"], 1);
    let cut = pair.site2.wait_audit("established revoked", |v| {
        v["event"] == "connection" && v["reason"] == "revoked" && v["detail"].is_string()
    });
    assert_eq!(cut["peer_pool"], POOL1);
    pair.site2.wait_audit("close of revoked", |v| {
        v["event"] == "close" && v["error"] == "peer certificate revoked"
    });

    // New connections of the revoked peer are refused at the handshake.
    let back = round_trip(pair.tunnel, b"again?").await.unwrap_or_default();
    assert!(back.is_empty());
    pair.site2.wait_audit("new revoked", |v| {
        v["event"] == "connection"
            && v["reason"] == "revoked"
            && v["detail"]
                .as_str()
                .is_some_and(|d| !d.starts_with("established"))
    });
    // The dialling site audits the same reason: the refusal reaches it as a
    // TLS alert (after a TLS 1.3 handshake that looked complete to it).
    let told = pair.site1.wait_audit("site1 told", |v| {
        v["event"] == "connection" && v["direction"] == "outbound" && v["reason"] == "revoked"
    });
    assert_eq!(told["decision"], "deny");
}

/// CA rollover: both sites trust the bundle (in `order`), both certificates
/// are reissued by the new CA, then the old CA is dropped — with traffic
/// flowing at every step.
async fn ca_rollover(site1_first: bool) {
    let pair = Pairing::start_with(|site1, site2| {
        // Each site keeps its own copy of the trust bundle, as in production.
        for site in [site1, site2] {
            let trust = site.ca.with_file_name(format!("{}-trust.crt", site.name));
            std::fs::copy(&site.ca, &trust).unwrap();
            site.ca = trust;
        }
    })
    .await;
    let ca_dir = pair.pki.0.dir.clone();
    let works = |label: &'static str| {
        let tunnel = pair.tunnel;
        async move {
            let back = round_trip(tunnel, label.as_bytes())
                .await
                .unwrap_or_default();
            assert_eq!(back, label.as_bytes(), "traffic after: {label}");
        }
    };
    pairgate(&["ca", "rotate", "--dir", s(&ca_dir)]);
    let bundle = ca_dir.join("bundle.crt");
    let sites = if site1_first {
        [
            (&pair.site1, &pair.site1_spec),
            (&pair.site2, &pair.site2_spec),
        ]
    } else {
        [
            (&pair.site2, &pair.site2_spec),
            (&pair.site1, &pair.site1_spec),
        ]
    };
    for (gw, spec) in sites {
        std::fs::copy(&bundle, &spec.ca).unwrap();
        wait_reloads(gw, true, 1);
        works("bundle installed").await;
    }
    for (gw, spec) in sites {
        pairgate(&[
            "cert",
            "rotate",
            "--ca-dir",
            s(&ca_dir),
            "--cert",
            s(&prefix(&spec.cert.0)),
        ]);
        wait_reloads(gw, true, 2);
        works("certificate reissued by the new CA").await;
    }
    for (gw, spec) in sites {
        std::fs::copy(ca_dir.join("ca.crt"), &spec.ca).unwrap();
        wait_reloads(gw, true, 3);
        works("old CA dropped").await;
    }
    assert_eq!(reloads(&pair.site1, false) + reloads(&pair.site2, false), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_rollover_site1_first() {
    ca_rollover(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_rollover_site2_first() {
    ca_rollover(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_while_the_peer_is_down_and_after_expiry() {
    let mut pair = Pairing::start().await;
    let ca_dir = pair.pki.0.dir.clone();
    // site2 goes down; site1 rotates meanwhile.
    pair.site2.terminate();
    pairgate(&[
        "cert",
        "rotate",
        "--ca-dir",
        s(&ca_dir),
        "--cert",
        s(&prefix(&pair.site1_spec.cert.0)),
    ]);
    wait_reloads(&pair.site1, true, 1);

    // site2's certificate expires while it is down: it must refuse to start…
    let now = time::OffsetDateTime::now_utc();
    let expired = Validity {
        not_before: now - time::Duration::days(30),
        not_after: now - time::Duration::days(1),
    };
    pair.pki.issue("site2", POOL2, expired);
    let out = Command::new(bin())
        .args(["run", "--config", s(&pair.site2.config())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expired"));
    // …and start once the operator rotated it.
    pairgate(&[
        "cert",
        "rotate",
        "--ca-dir",
        s(&ca_dir),
        "--cert",
        s(&prefix(&pair.site2_spec.cert.0)),
    ]);
    pair.site2 = Gateway::start(&pair.site2.config());
    assert_eq!(round_trip(pair.tunnel, b"back").await.unwrap(), b"back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_policy_and_refuses_a_broken_one() {
    let pair = Pairing::start().await;
    let policy = pair.dir.path().join("policy.toml");
    std::fs::write(&policy, "[[pair]\npools = [").unwrap();
    pair.site2.0.hangup().unwrap();
    let refused = pair.site2.wait_audit("policy refused", |v| {
        v["event"] == "policy_reload" && v["ok"] == false
    });
    assert!(refused["error"].as_str().unwrap().contains("policy.toml"));
    assert_eq!(round_trip(pair.tunnel, b"ok").await.unwrap(), b"ok");

    std::fs::write(&policy, format!("{POLICY}\n[[pair]]\npools = [\"pool05.site5.example\", \"pool06.site6.example\"]\nservices = [\"cms-smb\"]\n")).unwrap();
    pair.site2.0.hangup().unwrap();
    pair.site2.wait_audit("policy ok", |v| {
        v["event"] == "policy_reload" && v["ok"] == true
    });
    assert_eq!(round_trip(pair.tunnel, b"ok").await.unwrap(), b"ok");
}
