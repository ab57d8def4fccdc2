//! The spool fed the way operators really feed it (issues 11 and 12):
//! an idle pair, writers that write in place, awkward names, and
//! conditions that persist (unreadable files, a full spool) without
//! flooding the log.

use std::ffi::OsStr;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

use crate::fieldkit::*;
use crate::harness::*;
use crate::spool::*;

/// Issue 12, item 1: an idle gateway with a `[spool]` section must cost
/// next to nothing. Both processes' CPU time (utime + stime from
/// `/proc/PID/stat`) over ~10 s must stay well under 2 % of a core.
/// Issue 17: and it must rarely wake up — the TLS files are watched, not
/// hashed every second, and the metrics gauges are sampled when scraped,
/// not every 2 s (it woke ~10 times a second before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_pair_with_a_spool_costs_almost_no_cpu() {
    let (pair, _d1, _d2, _root) = spool_pairing().await;
    // Let start-up work (first heartbeats, first scans) finish.
    pause(3000).await;
    let pids = [pair.site1.0.child.id(), pair.site2.0.child.id()];
    let before = pids.map(cpu_ticks);
    let woke_before = pids.map(wakeups);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let wall = start.elapsed().as_secs_f64();
    let after = pids.map(cpu_ticks);
    let woke_after = pids.map(wakeups);
    let hz = clock_ticks();
    for (i, site) in ["site1", "site2"].iter().enumerate() {
        let share = (after[i] - before[i]) as f64 / hz / wall;
        eprintln!("{site}: {:.2} % of a core while idle", share * 100.0);
        assert!(
            share < 0.02,
            "{site} used {:.1} % of a core while idle",
            share * 100.0
        );
        let rate = (woke_after[i] - woke_before[i]) as f64 / wall;
        eprintln!("{site}: {rate:.1} wake-ups a second while idle");
        assert!(
            rate < 5.0,
            "{site} woke up {rate:.1} times a second while idle (threads going to sleep, \
             /proc/PID/task/*/status voluntary_ctxt_switches): something polls"
        );
    }
}

fn sha256_file(path: &Path) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf).unwrap();
        if n == 0 {
            return ctx.finish().as_ref().to_vec();
        }
        ctx.update(&buf[..n]);
    }
}

/// Records every (name, size) seen in `dir` until stopped.
fn watch_sizes(dir: PathBuf) -> (Arc<AtomicBool>, std::thread::JoinHandle<Vec<(String, u64)>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        while !s.load(Ordering::Relaxed) {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                if let Ok(m) = e.metadata() {
                    seen.push((name, m.len()));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        seen
    });
    (stop, handle)
}

/// Issue 11.1: a writer that writes 100 MB in place in chunks over ~3 s,
/// and a plain `cp` of a 50 MB file: the peer receives identical bytes,
/// never a 0-byte or partial file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_writers_deliver_identical_bytes_never_empty_or_partial() {
    let (pair, d1, d2, root) = spool_pairing().await;
    let source = root.path().join("cp-source.bin");
    std::fs::write(&source, content(b"CP-SOURCE", 50 << 20)).unwrap();
    let want_cp = sha256_file(&source);
    let (stop, sizes) = watch_sizes(d2.inbox.clone());

    let target = d1.outbox.join("in-place.bak");
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::File::create(&target).unwrap();
        let mut ctx = digest::Context::new(&digest::SHA256);
        let mut chunk = vec![0u8; 1 << 20];
        for _ in 0..100 {
            SystemRandom::new().fill(&mut chunk).unwrap();
            f.write_all(&chunk).unwrap();
            ctx.update(&chunk);
            std::thread::sleep(Duration::from_millis(30));
        }
        ctx.finish().as_ref().to_vec()
    });
    let cp = std::process::Command::new("cp")
        .arg(&source)
        .arg(d1.outbox.join("copied.bak"))
        .status()
        .unwrap();
    assert!(cp.success());
    let want_in_place = writer.join().unwrap();

    let sizes_ok = |dir: &Path| {
        let m = |n: &str| std::fs::metadata(dir.join(n)).map(|m| m.len()).ok();
        m("in-place.bak") == Some(100 << 20) && m("copied.bak") == Some(50 << 20)
    };
    wait_until("both files delivered", 240, || sizes_ok(&d2.inbox));
    pause(500).await;
    stop.store(true, Ordering::Relaxed);
    let seen = sizes.join().unwrap();
    assert_eq!(sha256_file(&d2.inbox.join("in-place.bak")), want_in_place);
    assert_eq!(sha256_file(&d2.inbox.join("copied.bak")), want_cp);
    for (name, size) in &seen {
        let full = if name == "in-place.bak" {
            100 << 20
        } else {
            50 << 20
        };
        assert_eq!(*size, full, "{name} showed up with {size} bytes");
    }
    assert_eq!(files_in(&d2.inbox).len(), 2, "no second copies");
    let spooled: Vec<u64> = pair
        .site1
        .audit_lines()
        .iter()
        .filter(|v| v["event"] == "spool_in")
        .map(|v| v["size"].as_u64().unwrap())
        .collect();
    assert_eq!(spooled.len(), 2, "each file taken once: {spooled:?}");
    assert!(!spooled.contains(&0));
}

/// Writes `data` into `outbox` under the raw name `name`, through a short
/// dot-name and a rename.
fn drop_raw(outbox: &Path, name: &[u8], data: &[u8]) {
    let tmp = outbox.join(".drop.partial");
    std::fs::write(&tmp, data).unwrap();
    std::fs::rename(&tmp, outbox.join(OsStr::from_bytes(name))).unwrap();
}

/// Issue 11.5: a 250-byte name sent twice (the second copy gets a
/// shortened name that keeps the extension and the id), a name that is not
/// UTF-8 (arrives with its bytes), a symbolic link (refused, audited once,
/// never followed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_names_twice_non_utf8_names_and_symlinks() {
    let (pair, d1, d2, root) = spool_pairing().await;
    let long = format!("{}.bak", "L".repeat(246));
    assert_eq!(long.len(), 250);
    drop_raw(&d1.outbox, long.as_bytes(), b"first copy");
    wait_until("first copy", 60, || d2.inbox.join(&long).exists());
    drop_raw(&d1.outbox, long.as_bytes(), b"second copy");
    wait_until("second copy", 60, || files_in(&d2.inbox).len() == 2);
    let second = pair.site2.wait_audit("renamed delivery", |v| {
        v["event"] == "spool_delivered" && v["path"].is_string()
    });
    let id = second["id"].as_str().unwrap();
    let inbox = files_in(&d2.inbox);
    let other = inbox.keys().find(|n| **n != long).unwrap();
    assert!(other.len() <= 255, "{} bytes", other.len());
    assert!(other.ends_with(&format!(".{id}.bak")), "{other}");
    assert_eq!(inbox[other], b"second copy");
    assert_eq!(inbox[&long], b"first copy");

    let latin1: &[u8] = b"caf\xe9-men\xfc.txt";
    drop_raw(&d1.outbox, latin1, b"latin-1 name");
    let arrived = d2.inbox.join(OsStr::from_bytes(latin1));
    wait_until("the Latin-1 name", 60, || arrived.exists());
    assert_eq!(std::fs::read(&arrived).unwrap(), b"latin-1 name");

    let secret = root.path().join("secret.txt");
    std::fs::write(&secret, b"SECRET-NOT-FOR-THE-PEER").unwrap();
    let link = d1.outbox.join("link.txt");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    let refused = pair.site1.wait_audit("symlink refused", |v| {
        v["event"] == "spool_refused" && v["name"] == "link.txt"
    });
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("symbolic link"),
        "{refused}"
    );
    // Left alone, refused once, never followed.
    drop_raw(&d1.outbox, b"after.txt", b"after the link");
    wait_until("a later file", 60, || d2.inbox.join("after.txt").exists());
    assert!(link.exists() && secret.exists());
    let refusals = audit_count(&pair.site1, |v| {
        v["event"] == "spool_refused" && v["name"] == "link.txt"
    });
    assert_eq!(refusals, 1);
    assert!(!d2.inbox.join("link.txt").exists());
}

/// Issue 11.6: an unreadable outbox file and a full spool (its folder on a
/// 512 KiB tmpfs) are each logged and audited once, not in a loop: fewer
/// than 10 log lines in 10 s. Root only (tmpfs in the gateway's own mount
/// namespace, file modes enforced by dropping the DAC capabilities).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_file_and_a_full_spool_log_a_few_lines_not_a_flood() {
    if !is_root() {
        eprintln!("skipped: needs root to mount a small tmpfs in a private mount namespace");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let (x1, d1) = spool_section(root.path(), "site1");
    let (x2, _d2) = spool_section(root.path(), "site2");
    let admin: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut pair = Pairing::start_with(move |s1, s2| {
        s1.extra = format!("{x1}\n[admin]\nlisten = \"{admin}\"\n");
        s2.extra = x2;
    })
    .await;
    pair.site1.terminate();
    let locked = d1.outbox.join("locked.bin");
    std::fs::write(&locked, content(b"LOCKED", 10_000)).unwrap();
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    std::fs::write(d1.outbox.join("big.bin"), content(b"BIG", 2 << 20)).unwrap();
    let log = root.path().join("site1.stderr");
    let wrap = Wrap {
        tmpfs: vec![(d1.spool.clone(), "512k")],
        honour_modes: true,
    };
    pair.site1 = start_wrapped(&pair.site1.config(), &wrap, &log);
    for name in ["locked.bin", "big.bin"] {
        pair.site1.wait_audit("refused", |v| {
            v["event"] == "spool_refused" && v["name"] == name
        });
    }
    let lines = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let before = lines();
    pause(10_000).await;
    let during = lines() - before;
    assert!(
        during < 10,
        "{during} log lines in 10 s:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    for name in ["locked.bin", "big.bin"] {
        let n = audit_count(&pair.site1, |v| {
            v["event"] == "spool_refused" && v["name"] == name
        });
        assert_eq!(n, 1, "{name} audited {n} times");
    }
    let status = admin_json(admin, "/status").await;
    let conditions = status["spool_conditions"].as_array().unwrap().clone();
    let has = |c: &str, n: &str| {
        conditions
            .iter()
            .any(|x| x["condition"] == c && x["name"] == n)
    };
    assert!(has("outbox_refused", "locked.bin"), "{status:#}");
    assert!(has("spool_full", "big.bin"), "{status:#}");
    wait_metric(
        admin,
        "pairgate_spool_held_files",
        Some(("condition", "spool_full")),
        |v| v == 1.0,
    )
    .await;

    // The operator fixes the permissions: taken at once, no restart.
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    pair.site1.wait_audit("locked.bin taken", |v| {
        v["event"] == "spool_in" && v["name"] == "locked.bin"
    });
}
