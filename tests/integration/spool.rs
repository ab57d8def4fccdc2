//! The spool end to end with real gateways: outbox → encrypted spool →
//! mTLS (`pg1-spool`) → peer spool → inbox, through outages and SIGKILLs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

use crate::harness::*;

/// The folders of one site's spool.
#[derive(Clone)]
pub(crate) struct Dirs {
    pub spool: PathBuf,
    pub outbox: PathBuf,
    pub inbox: PathBuf,
}

/// Writes a private key for `site` and returns the `[spool]` section.
pub(crate) fn spool_section(root: &Path, site: &str) -> (String, Dirs) {
    let base = root.join(format!("{site}-spool-area"));
    std::fs::create_dir_all(&base).unwrap();
    let key = base.join("spool.key");
    pairgate::spool::MasterKey::generate()
        .unwrap()
        .write_key_file(&key)
        .unwrap();
    let dirs = Dirs {
        spool: base.join("spool"),
        outbox: base.join("outbox"),
        inbox: base.join("inbox"),
    };
    let extra = format!(
        "\n[spool]\ndir = \"{}\"\nkey = \"{}\"\noutbox = \"{}\"\ninbox = \"{}\"\n",
        dirs.spool.display(),
        key.display(),
        dirs.outbox.display(),
        dirs.inbox.display()
    );
    (extra, dirs)
}

/// A pairing whose two sites both run a spool.
pub(crate) async fn spool_pairing() -> (Pairing, Dirs, Dirs, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    let (x1, d1) = spool_section(root.path(), "site1");
    let (x2, d2) = spool_section(root.path(), "site2");
    let pair = Pairing::start_with(move |s1, s2| {
        s1.extra = x1;
        s2.extra = x2;
    })
    .await;
    (pair, d1, d2, root)
}

/// Random bytes with a distinctive marker every 4 KiB.
pub(crate) fn content(marker: &[u8], len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    SystemRandom::new().fill(&mut data).unwrap();
    let mut at = 0;
    while at + marker.len() <= len {
        data[at..at + marker.len()].copy_from_slice(marker);
        at += 4096;
    }
    data
}

/// Drops a file into an outbox the way a producer must: dot-name, rename.
pub(crate) fn drop_file(outbox: &Path, name: &str, data: &[u8]) {
    let tmp = outbox.join(format!(".{name}.partial"));
    std::fs::write(&tmp, data).unwrap();
    std::fs::rename(&tmp, outbox.join(name)).unwrap();
}

pub(crate) fn files_in(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
                // A dot-file is a delivery still being written (`.pg-*.tmp`),
                // not yet a file of the inbox: consumers skip them too.
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every file under `dir`, recursively.
pub(crate) fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

pub(crate) fn assert_no_plaintext(spool: &Path, marker: &[u8]) {
    for p in walk(spool) {
        let bytes = std::fs::read(&p).unwrap_or_default();
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker),
            "plaintext marker found in {}",
            p.display()
        );
    }
}

pub(crate) fn wait_until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the inbox holds exactly `want` (no dot-files, nothing else).
pub(crate) fn wait_delivered(inbox: &Path, want: &BTreeMap<String, Vec<u8>>, secs: u64) {
    wait_until("delivery", secs, || files_in(inbox).len() >= want.len());
    // Give a duplicate, if any, the chance to show up.
    std::thread::sleep(Duration::from_millis(500));
    let got = files_in(inbox);
    let names: Vec<_> = got.keys().collect();
    assert_eq!(
        names,
        want.keys().collect::<Vec<_>>(),
        "inbox holds other files"
    );
    for (name, data) in want {
        assert!(got[name] == *data, "{name} differs");
    }
}

pub(crate) fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|rd| rd.count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_in_the_outbox_arrive_identical_in_the_peer_inbox() {
    let (pair, d1, d2, _root) = spool_pairing().await;
    let marker = b"PAIRGATE-MARKER-7f3a9c";
    let mut want = BTreeMap::new();
    for (name, len) in [
        ("empty.bin", 0usize),
        ("one.bin", 1),
        ("chunk-1.bin", 65535),
        ("chunk.bin", 65536),
        ("chunk+1.bin", 65537),
        ("big.bak", 3_000_017),
    ] {
        let data = content(marker, len);
        drop_file(&d1.outbox, name, &data);
        want.insert(name.to_owned(), data);
    }
    std::fs::write(d1.outbox.join(".still-writing"), b"ignored").unwrap();
    wait_delivered(&d2.inbox, &want, 60);
    assert!(d1.outbox.join(".still-writing").exists());
    wait_until("site1 outgoing empty", 30, || {
        count(&d1.spool.join("outgoing")) == 0
    });
    wait_until("site2 incoming empty", 30, || {
        count(&d2.spool.join("incoming")) == 0
    });
    assert_no_plaintext(&d1.spool, marker);
    assert_no_plaintext(&d2.spool, marker);

    let sent = pair.site1.wait_audit("spool_sent", |v| {
        v["event"] == "spool_sent" && v["name"] == "big.bak"
    });
    assert_eq!(sent["size"], 3_000_017);
    assert_eq!(sent["peer_pool"], POOL2);
    pair.site1
        .wait_audit("spool_in", |v| v["event"] == "spool_in");
    let delivered = pair.site2.wait_audit("spool_delivered", |v| {
        v["event"] == "spool_delivered" && v["name"] == "big.bak"
    });
    assert_eq!(delivered["id"], sent["id"]);
    assert_eq!(delivered["peer_pool"], POOL1);
    pair.site2.wait_audit("inbound spool allow", |v| {
        v["event"] == "connection" && v["service"] == "spool" && v["decision"] == "allow"
    });

    // The CLI sees an empty, valid spool.
    let out = Command::new(bin())
        .args(["spool", "verify", "--config"])
        .arg(pair.site1.config())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_peer_is_down_files_wait_encrypted_then_arrive_once() {
    let (mut pair, d1, d2, _root) = spool_pairing().await;
    pair.site2.terminate();
    let marker = b"PAIRGATE-OUTAGE-MARKER-51c0";
    let mut want = BTreeMap::new();
    for i in 0..8 {
        let data = content(marker, 10_000 + i * 150_001);
        let name = format!("export-{i}.zip");
        drop_file(&d1.outbox, &name, &data);
        want.insert(name, data);
    }
    wait_until("intake", 30, || {
        files_in(&d1.outbox).is_empty() && count(&d1.spool.join("outgoing")) == 8
    });
    assert_no_plaintext(&d1.spool, marker);
    let ls = Command::new(bin())
        .args(["spool", "ls", "--json", "--config"])
        .arg(pair.site1.config())
        .output()
        .unwrap();
    assert!(ls.status.success());
    let listed: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 8);
    assert_eq!(listed[0]["state"], "outgoing");

    pair.site2 = Gateway::start(&pair.site2.config());
    wait_delivered(&d2.inbox, &want, 60);
    wait_until("site1 outgoing empty", 30, || {
        count(&d1.spool.join("outgoing")) == 0
    });
    assert_no_plaintext(&d2.spool, marker);
    let delivered = pair
        .site2
        .audit_lines()
        .into_iter()
        .filter(|v| v["event"] == "spool_delivered")
        .count();
    assert_eq!(delivered, 8);
}

pub(crate) fn sigkill(gw: &mut Gateway) {
    let pid = gw.0.child.id().to_string();
    Command::new("kill").args(["-9", &pid]).status().unwrap();
    let _ = gw.0.child.wait();
}

fn random_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    SystemRandom::new().fill(&mut b).unwrap();
    u64::from_be_bytes(b) % n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_sigkill_of_sender_and_receiver_loses_and_duplicates_nothing() {
    let (mut pair, d1, d2, _root) = spool_pairing().await;
    let marker = b"PAIRGATE-KILL-MARKER-e21d";
    let mut want = BTreeMap::new();
    let mut next = 0;
    for round in 0..6 {
        for _ in 0..4 {
            if next < 20 {
                let data = content(marker, 1 + random_below(2_500_000) as usize);
                let name = format!("file-{next:02}.bak");
                drop_file(&d1.outbox, &name, &data);
                want.insert(name, data);
                next += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20 + random_below(400)));
        if round % 2 == 0 || random_below(2) == 0 {
            sigkill(&mut pair.site1);
            pair.site1 = Gateway::start(&pair.site1.config());
        } else {
            sigkill(&mut pair.site2);
            pair.site2 = Gateway::start(&pair.site2.config());
        }
    }
    wait_delivered(&d2.inbox, &want, 90);
    wait_until("queues drained", 30, || {
        count(&d1.spool.join("outgoing")) == 0 && count(&d2.spool.join("incoming")) == 0
    });
    assert!(files_in(&d1.outbox).is_empty());
    assert_eq!(count(&d1.spool.join("tmp")), 0);
    assert_eq!(count(&d2.spool.join("tmp")), 0);
    assert_eq!(count(&d1.spool.join("quarantine")), 0);
    assert_eq!(count(&d2.spool.join("quarantine")), 0);
    assert_no_plaintext(&d1.spool, marker);
    assert_no_plaintext(&d2.spool, marker);
    let lines = pair.site1.audit_lines();
    let resent = lines
        .iter()
        .filter(|v| v["event"] == "spool_sent" && v["reason"] == "peer already had it")
        .count();
    let sent = lines.iter().filter(|v| v["event"] == "spool_sent").count();
    eprintln!("kill loop: {sent} spool_sent, {resent} of them answered ALREADY after a crash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_spool_file_is_named_by_verify_then_quarantined_and_others_flow() {
    let (mut pair, d1, d2, _root) = spool_pairing().await;
    pair.site1.terminate();
    let outgoing = d1.spool.join("outgoing");
    let bad = outgoing.join("0123456789abcdef0123456789abcdef.pgs");
    std::fs::write(&bad, [0x42u8; 300]).unwrap();
    let out = Command::new(bin())
        .args(["spool", "verify", "--config"])
        .arg(pair.site1.config())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&bad.display().to_string()), "{stderr}");

    let data = content(b"QUARANTINE-TEST-MARKER", 200_000);
    drop_file(&d1.outbox, "good.bin", &data);
    pair.site1 = Gateway::start(&pair.site1.config());
    let want = BTreeMap::from([("good.bin".to_owned(), data)]);
    wait_delivered(&d2.inbox, &want, 60);
    let q = pair
        .site1
        .wait_audit("spool_quarantined", |v| v["event"] == "spool_quarantined");
    assert!(q["reason"].as_str().unwrap().contains("magic"), "{q}");
    assert!(!bad.exists());
    // The quarantined file, and its record (name, reason, origin).
    assert_eq!(count(&d1.spool.join("quarantine")), 2);
    assert!(d1
        .spool
        .join("quarantine/0123456789abcdef0123456789abcdef.json")
        .exists());
}

/// `/status` per direction, driven by a real peer: steady → disconnected
/// (peer stopped, a file waits) → lagging (peer back but its spool is full,
/// so the file waits longer than the sync interval while the link is up)
/// → steady (peer restarted with room; the file is delivered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_follows_replication_steady_disconnected_lagging_steady() {
    let root = tempfile::tempdir().unwrap();
    let (x1, d1) = spool_section(root.path(), "site1");
    let (x2, d2) = spool_section(root.path(), "site2");
    let admin_port = free_port();
    let admin: std::net::SocketAddr = ([127, 0, 0, 1], admin_port).into();
    let mut pair = Pairing::start_with(move |s1, s2| {
        s1.extra = format!("{x1}\n[admin]\nlisten = \"{admin}\"\nsync_interval_secs = 5\n");
        s2.extra = x2;
    })
    .await;
    let outbound = |s: &serde_json::Value| s["directions"][0].clone();
    let status = || async move {
        let reply = pairgate::admin::client::get(admin, "/status")
            .await
            .unwrap();
        serde_json::from_str::<serde_json::Value>(&reply.body).unwrap()
    };
    let wait = |what: &'static str, pred: fn(&serde_json::Value) -> bool| async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = status().await;
            if pred(&s["directions"][0]) {
                return s;
            }
            assert!(Instant::now() < deadline, "never {what}: {s:#}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    assert_eq!(outbound(&status().await)["state"], "steady");

    pair.site2.terminate();
    drop_file(&d1.outbox, "package.zip", &content(b"LAG", 10_000));
    wait("disconnected", |d| {
        d["state"] == "disconnected" && d["waiting_files"] == 1
    })
    .await;

    // The peer is back, but its spool refuses the file: the link is up and
    // the file keeps waiting, past the 5 s sync interval.
    let mut spec = pair.site2_spec.clone();
    spec.extra = format!("{}max_bytes = 1000\n", spec.extra);
    spec.write(pair.dir.path()).unwrap();
    pair.site2 = Gateway::start(&pair.site2.config());
    let s = wait("lagging", |d| d["state"] == "lagging").await;
    assert!(outbound(&s)["lag_secs"].as_u64().unwrap() >= 5, "{s:#}");
    assert_eq!(s["peer_link"]["state"], "up");

    // Restarted with room: delivered, and steady again.
    pair.site2.terminate();
    pair.site2_spec.write(pair.dir.path()).unwrap();
    pair.site2 = Gateway::start(&pair.site2.config());
    wait("steady", |d| {
        d["state"] == "steady" && d["waiting_files"] == 0
    })
    .await;
    assert!(d2.inbox.join("package.zip").exists());
}
