//! The spool under the faults of issue 11: a wrong key at restart, a file
//! the peer cannot take at the head of the queue, a frozen link; and the
//! operator's way back (`pairgate spool requeue`). Plus TCP keepalive on
//! the gateways' sockets.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pairgate::spool::{Area, MasterKey, Store};

use crate::fieldkit::*;
use crate::harness::*;
use crate::spool::*;

/// Seals `data` into a site's `incoming/` as the receiver does (a file
/// received and acknowledged, not yet delivered).
fn received(d: &Dirs, key: &Path, name: &str, data: &[u8]) {
    let store = Store::new(
        &d.spool,
        MasterKey::load_key_file(key).unwrap(),
        &d.outbox,
        &d.inbox,
        None,
        None,
    )
    .unwrap();
    let tmp = d.spool.join("tmp").join(format!("{name}.part"));
    let meta = pairgate::spool::encrypt_seekable(
        std::io::Cursor::new(data),
        std::fs::File::create(&tmp).unwrap(),
        &MasterKey::load_key_file(key).unwrap(),
        name,
    )
    .unwrap();
    std::fs::rename(&tmp, store.path(Area::Incoming, &meta.id)).unwrap();
}

fn pgs_in(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "pgs"))
                .count()
        })
        .unwrap_or(0)
}

/// The `key = "…"` path of a `[spool]` section.
fn key_of(extra: &str) -> String {
    let line = extra.lines().find(|l| l.starts_with("key = ")).unwrap();
    line.trim_start_matches("key = ")
        .trim_matches('"')
        .to_owned()
}

/// Issue 11.2: the wrong key at restart → nothing is quarantined, the
/// files wait (reported as waiting for key <id>); the right key back (a
/// SIGHUP with `old_keys` at one site, a restart at the other) → every
/// file delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_wrong_key_at_restart_files_wait_and_go_once_the_key_is_back() {
    let root = tempfile::tempdir().unwrap();
    let (x1, d1) = spool_section(root.path(), "site1");
    let (x2, d2) = spool_section(root.path(), "site2");
    let admin: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let admin_section = format!("\n[admin]\nlisten = \"{admin}\"\n");
    let (a1, b2) = (x1.clone(), x2.clone());
    let mut pair = Pairing::start_with(move |s1, s2| {
        s1.extra = a1;
        s2.extra = b2;
    })
    .await;
    pair.site2.terminate();
    let mut want = BTreeMap::new();
    for i in 0..3 {
        let data = content(b"WAITING-KEY", 20_000 + i);
        drop_file(&d1.outbox, &format!("out-{i}.bin"), &data);
        want.insert(format!("out-{i}.bin"), data);
    }
    wait_until("intake", 60, || count(&d1.spool.join("outgoing")) == 3);
    pair.site1.terminate();
    let (key1, key2) = (key_of(&x1), key_of(&x2));
    for i in 0..2 {
        let data = content(b"RECEIVED", 30_000 + i);
        received(&d2, Path::new(&key2), &format!("in-{i}.bin"), &data);
        want.insert(format!("in-{i}.bin"), data);
    }
    let right1 = MasterKey::load_key_file(Path::new(&key1)).unwrap().key_id();

    // Both restart with a new, wrong key.
    let wrong = |site: &str| {
        let p = root.path().join(format!("{site}-wrong.key"));
        MasterKey::generate().unwrap().write_key_file(&p).unwrap();
        p.display().to_string()
    };
    pair.site1_spec.extra = x1.replace(&key1, &wrong("site1")) + &admin_section;
    pair.site2_spec.extra = x2.replace(&key2, &wrong("site2"));
    pair.site1_spec.write(pair.dir.path()).unwrap();
    pair.site2_spec.write(pair.dir.path()).unwrap();
    pair.site2 = Gateway::start(&pair.site2.config());
    pair.site1 = Gateway::start(&pair.site1.config());
    for gw in [&pair.site1, &pair.site2] {
        gw.wait_audit("waiting for key", |v| {
            v["event"] == "spool_condition"
                && v["condition"] == "waiting_for_key"
                && v["state"] == "start"
        });
    }
    let status = admin_json(admin, "/status").await;
    let waiting = status["spool_conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["condition"] == "waiting_for_key")
        .cloned()
        .unwrap();
    assert_eq!(waiting["key_id"], right1.to_string(), "{status:#}");
    assert_eq!(waiting["files"], 3);
    wait_metric(
        admin,
        "pairgate_spool_held_files",
        Some(("condition", "waiting_for_key")),
        |v| v == 3.0,
    )
    .await;
    pause(2000).await;
    assert_eq!(pgs_in(&d1.spool.join("quarantine")), 0);
    assert_eq!(pgs_in(&d2.spool.join("quarantine")), 0);
    assert_eq!(count(&d1.spool.join("outgoing")), 3);
    assert_eq!(count(&d2.spool.join("incoming")), 2);

    // The right keys back: site2 restarts with it, site1 lists it in
    // old_keys and reloads.
    pair.site2.terminate();
    pair.site2_spec.extra = x2.clone();
    pair.site2_spec.write(pair.dir.path()).unwrap();
    pair.site2 = Gateway::start(&pair.site2.config());
    pair.site1_spec.extra = pair.site1_spec.extra.replacen(
        "inbox = ",
        &format!("old_keys = [\"{key1}\"]\ninbox = "),
        1,
    );
    pair.site1_spec.write(pair.dir.path()).unwrap();
    pair.site1.0.hangup().unwrap();
    wait_delivered(&d2.inbox, &want, 90);
    pair.site1.wait_audit("key reload", |v| {
        v["event"] == "spool_key_reload" && v["ok"] == true
    });
    pair.site1.wait_audit("waiting cleared", |v| {
        v["event"] == "spool_condition"
            && v["condition"] == "waiting_for_key"
            && v["state"] == "clear"
    });
    let delivered = audit_count(&pair.site2, |v| v["event"] == "spool_delivered");
    assert_eq!(delivered, 5);
}

/// `pairgate spool requeue`: files an older version quarantined (here:
/// sealed under a key this site no longer uses) go back where they came
/// from and are delivered once the key is configured; the quarantine
/// record kept the name and reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_requeue_puts_quarantined_files_back() {
    let (mut pair, d1, d2, root) = spool_pairing().await;
    pair.site1.terminate();
    let old_key = root.path().join("previous.key");
    MasterKey::generate()
        .unwrap()
        .write_key_file(&old_key)
        .unwrap();
    let other = Dirs {
        spool: root.path().join("other/spool"),
        outbox: root.path().join("other/outbox"),
        inbox: root.path().join("other/inbox"),
    };
    received(
        &other,
        &old_key,
        "old.bin",
        b"quarantined by an older version",
    );
    let file = std::fs::read_dir(other.spool.join("incoming"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::rename(
        &file,
        d1.spool.join("quarantine").join(file.file_name().unwrap()),
    )
    .unwrap();
    let requeue = |config: &Path| {
        Command::new(bin())
            .args(["spool", "requeue", "--json", "--config"])
            .arg(config)
            .output()
            .unwrap()
    };
    let out = requeue(&pair.site1.config());
    assert!(out.status.success(), "{out:?}");
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        done[0]["to"].as_str().unwrap().contains("outgoing"),
        "{done}"
    );
    assert_eq!(pgs_in(&d1.spool.join("quarantine")), 0);
    pair.site1_spec.extra = pair.site1_spec.extra.replacen(
        "inbox = ",
        &format!("old_keys = [\"{}\"]\ninbox = ", old_key.display()),
        1,
    );
    pair.site1_spec.write(pair.dir.path()).unwrap();
    pair.site1 = Gateway::start(&pair.site1.config());
    let want = BTreeMap::from([(
        "old.bin".to_owned(),
        b"quarantined by an older version".to_vec(),
    )]);
    wait_delivered(&d2.inbox, &want, 60);
}

/// Issue 11.3: a file larger than the receiver's `max_bytes` at the head
/// of the queue, and a file the receiver's inbox (a 1 MiB tmpfs) cannot
/// take: every other file arrives; the oversized one is reported (audit,
/// status, metric), the undeliverable one too. Root only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_the_peer_cannot_take_does_not_block_the_others() {
    if !is_root() {
        eprintln!("skipped: needs root to mount a small tmpfs in a private mount namespace");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let (x1, d1) = spool_section(root.path(), "site1");
    let (x2, d2) = spool_section(root.path(), "site2");
    let admin: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut pair = Pairing::start_with(move |s1, s2| {
        s1.extra = format!("{x1}\n[admin]\nlisten = \"{admin}\"\n");
        s2.extra = format!("{x2}max_bytes = 3000000\n");
    })
    .await;
    pair.site2.terminate();
    drop_file(&d1.outbox, "huge.bin", &content(b"HUGE", 4 << 20));
    wait_until("huge in the spool", 60, || {
        count(&d1.spool.join("outgoing")) == 1
    });
    // `created` has whole seconds: make the queue order certain.
    pause(1100).await;
    drop_file(&d1.outbox, "big.bin", &content(b"BIG", 2 << 20));
    wait_until("big in the spool", 60, || {
        count(&d1.spool.join("outgoing")) == 2
    });
    pause(1100).await;
    let mut want = BTreeMap::new();
    for i in 0..5 {
        let data = content(b"SMALL", 50_000 + i);
        drop_file(&d1.outbox, &format!("small-{i}.bin"), &data);
        want.insert(format!("small-{i}.bin"), data);
    }
    wait_until("all in the spool", 60, || {
        count(&d1.spool.join("outgoing")) == 7
    });

    let wrap = Wrap {
        tmpfs: vec![(d2.inbox.clone(), "1m")],
        honour_modes: false,
    };
    pair.site2 = start_wrapped(
        &pair.site2.config(),
        &wrap,
        &root.path().join("site2.stderr"),
    );
    let inbox = seen_by(&pair.site2, &d2.inbox);
    wait_until("the small files", 90, || {
        want.keys().all(|n| inbox.join(n).exists())
    });
    for (name, data) in &want {
        assert_eq!(&std::fs::read(inbox.join(name)).unwrap(), data);
    }
    let too_large = pair.site1.wait_audit("too_large", |v| {
        v["event"] == "spool_condition" && v["condition"] == "too_large" && v["state"] == "start"
    });
    assert_eq!(too_large["name"], "huge.bin");
    pair.site2.wait_audit("inbox_failing", |v| {
        v["event"] == "spool_condition"
            && v["condition"] == "inbox_failing"
            && v["name"] == "big.bin"
    });
    let status = admin_json(admin, "/status").await;
    assert!(
        status["spool_conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["condition"] == "too_large" && c["name"] == "huge.bin"),
        "{status:#}"
    );
    wait_metric(
        admin,
        "pairgate_spool_held_files",
        Some(("condition", "too_large")),
        |v| v == 1.0,
    )
    .await;
    // Reported once, however often it is offered again.
    pause(2000).await;
    assert_eq!(
        audit_count(&pair.site1, |v| v["event"] == "spool_condition"
            && v["condition"] == "too_large"),
        1
    );
    assert_eq!(
        count(&d1.spool.join("outgoing")),
        1,
        "only huge.bin is left"
    );
}

/// Issue 11.4: a transfer frozen mid-file (a relay that stops forwarding
/// without closing) is torn down after `stall_secs`, reported, and resumes
/// on a fresh connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_link_mid_transfer_resumes_on_a_fresh_connection() {
    let root = tempfile::tempdir().unwrap();
    let (x1, d1) = spool_section(root.path(), "site1");
    let (x2, d2) = spool_section(root.path(), "site2");
    let admin: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let relay_port = free_port();
    let pair = Pairing::start_with(move |s1, s2| {
        s1.extra = format!("{x1}stall_secs = 3\n\n[admin]\nlisten = \"{admin}\"\n");
        s2.extra = format!("{x2}stall_secs = 3\n");
        s1.peer_connect = relay_port;
    })
    .await;
    let relay = Relay::start(relay_port, pair.site2_peer(), 2 << 20).await;
    let data = content(b"FROZEN-LINK", 40 << 20);
    drop_file(&d1.outbox, "through-the-freeze.bin", &data);
    wait_until("the relay froze the transfer", 120, || {
        relay.frozen.load(Ordering::SeqCst)
    });
    let frozen_at = Instant::now();
    let arrived = d2.inbox.join("through-the-freeze.bin");
    wait_until("delivery after the freeze", 3 + 30, || arrived.exists());
    eprintln!(
        "delivered {:.1} s after the freeze (stall_secs = 3)",
        frozen_at.elapsed().as_secs_f64()
    );
    assert!(std::fs::read(&arrived).unwrap() == data);
    assert!(relay.connections.load(Ordering::Relaxed) >= 2);
    let stalled = pair.site1.wait_audit("link_stalled", |v| {
        v["event"] == "spool_condition" && v["condition"] == "link_stalled"
    });
    assert!(
        stalled["detail"].as_str().unwrap().contains("stalled"),
        "{stalled}"
    );
    pair.site1.wait_audit("link_stalled cleared", |v| {
        v["event"] == "spool_condition" && v["condition"] == "link_stalled" && v["state"] == "clear"
    });
    wait_metric(admin, "pairgate_spool_link_stalls_total", None, |n| {
        n >= 1.0
    })
    .await;
    drop(relay);
    drop(pair);
}

/// Issue 11.4: TCP keepalive on the peer connection (both ends), the
/// tunnel client's connection and the export connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_tunnel_and_export_sockets_use_tcp_keepalive() {
    let pair = Pairing::start().await;
    let mut stream = tokio::net::TcpStream::connect(pair.tunnel).await.unwrap();
    let echoed = round_trip_on_open(&mut stream, b"keepalive?").await;
    assert_eq!(echoed, b"keepalive?");
    let ss = Command::new("ss")
        .args(["-tnoH", "state", "established"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&ss.stdout);
    let port_of = |a: std::net::SocketAddr| format!(":{}", a.port());
    let lines_with = |p: &str| -> Vec<&str> {
        text.lines()
            .filter(|l| l.split_whitespace().any(|f| f.ends_with(p)))
            .collect()
    };
    // tunnel listener side, peer listener side, export (backend) side.
    for (what, port) in [
        ("tunnel", port_of(pair.tunnel)),
        ("peer", port_of(pair.site2_peer())),
        ("export", port_of(pair.backend)),
    ] {
        let lines = lines_with(&port);
        assert!(!lines.is_empty(), "no {what} connection in:\n{text}");
        // The gateway's end of each connection has a keepalive timer (the
        // test's own client and the echo backend do not).
        assert!(
            lines.iter().any(|l| l.contains("keepalive")),
            "{what} connection without keepalive:\n{}",
            lines.join("\n")
        );
    }
    drop(stream);
}

async fn round_trip_on_open(stream: &mut tokio::net::TcpStream, payload: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(payload).await.unwrap();
    let mut buf = vec![0u8; payload.len()];
    tokio::time::timeout(Duration::from_secs(20), stream.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    buf
}
