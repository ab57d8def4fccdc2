//! Spool figures: ingest throughput (hash, AES-256-GCM, fsync, rename,
//! unlink — encrypted and durable) beside `cp -r` + `sync` of the same
//! files on the same disk, and the outbox → peer inbox delay of a 1 MB file
//! through two real gateways with the link up.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::report::SpoolFigures;
use crate::lab::{self, GatewayProcess, Pki, SiteSpec, POOL1, POOL2};
use crate::pki::Validity;
use crate::spool::{MasterKey, Store};

/// Measures both figures under `dir/spool-bench`; never fakes a number.
pub fn measure(dir: &Path, exe: &Path, quick: bool) -> SpoolFigures {
    let root = dir.join("spool-bench");
    let result = ingest(&root, quick).and_then(|(ingest, cp)| {
        let delay = delay(&root.join("pair"), exe, if quick { 3 } else { 7 })?;
        Ok((ingest, cp, delay))
    });
    let _ = std::fs::remove_dir_all(&root);
    match result {
        Ok((ingest_mb_s, cp_sync_mb_s, delay_1mb_ms)) => SpoolFigures::Measured {
            ingest_mb_s,
            cp_sync_mb_s,
            delay_1mb_ms,
        },
        Err(reason) => SpoolFigures::NotAvailable { reason },
    }
}

fn sync() {
    let _ = Command::new("sync").status();
}

fn make_files(dir: &Path, files: usize, size: usize) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    for i in 0..files {
        let mut data = lab::pattern(size);
        data[0] = i as u8;
        std::fs::write(dir.join(format!("package-{i}.zip")), data).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// (spool ingest MB/s, cp + sync MB/s) over the same files.
fn ingest(root: &Path, quick: bool) -> Result<(f64, f64), String> {
    let (files, size) = if quick { (4, 8 << 20) } else { (16, 16 << 20) };
    let mb = (files * size) as f64 / 1e6;
    let src = root.join("src");
    make_files(&src, files, size)?;
    sync();
    let start = Instant::now();
    let copied = Command::new("cp")
        .arg("-r")
        .arg(&src)
        .arg(root.join("copy"))
        .status();
    if !copied.is_ok_and(|s| s.success()) {
        return Err("cp -r failed".into());
    }
    sync();
    let cp_s = start.elapsed().as_secs_f64();

    let outbox = root.join("outbox");
    make_files(&outbox, files, size)?;
    sync();
    let key = MasterKey::generate().map_err(|e| e.to_string())?;
    let store = Store::new(
        &root.join("spool"),
        key,
        &outbox,
        &root.join("inbox"),
        None,
        None,
    )
    .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let done = store.scan_outbox().map_err(|e| e.to_string())?;
    let spool_s = start.elapsed().as_secs_f64();
    if done.len() != files {
        return Err(format!("spooled {} of {files} files", done.len()));
    }
    Ok((mb / spool_s, mb / cp_s))
}

/// Median outbox → peer inbox delay of a 1 MB file, in milliseconds.
fn delay(dir: &Path, exe: &Path, samples: usize) -> Result<f64, String> {
    let err = |e: lab::LabError| e.to_string();
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let pki = Pki::create(&dir.join("certs"), "pairgate bench spool CA").map_err(err)?;
    std::fs::write(
        dir.join("policy.toml"),
        format!("[[pair]]\npools = [\"{POOL1}\", \"{POOL2}\"]\nservices = [\"spool\"]\n"),
    )
    .map_err(|e| e.to_string())?;
    let (p1, p2) = (
        lab::free_port().map_err(err)?,
        lab::free_port().map_err(err)?,
    );
    let mut gateways = Vec::new();
    let mut inboxes = Vec::new();
    let mut outboxes = Vec::new();
    for (name, pool, peer, listen, connect) in [
        ("site1", POOL1, POOL2, p1, p2),
        ("site2", POOL2, POOL1, p2, p1),
    ] {
        let key = dir.join(format!("{name}-spool.key"));
        MasterKey::generate()
            .and_then(|k| k.write_key_file(&key))
            .map_err(|e| e.to_string())?;
        let spec = SiteSpec {
            name: name.into(),
            pool: pool.into(),
            peer_pool: peer.into(),
            cert: pki.issue(name, pool, Validity::days_from_now(30)).map_err(err)?,
            ca: pki.ca_path(),
            crl: None,
            peer_listen: listen,
            peer_connect: connect,
            tunnels: vec![],
            exports: vec![],
            extra: format!(
                "\n[spool]\ndir = \"{name}/spool\"\nkey = \"{}\"\noutbox = \"{name}/outbox\"\ninbox = \"{name}/inbox\"\n",
                key.display()
            ),
        };
        let config = spec.write(dir).map_err(err)?;
        outboxes.push(dir.join(name).join("outbox"));
        inboxes.push(dir.join(name).join("inbox"));
        gateways.push(
            GatewayProcess::start(exe, &config, Some(&dir.join(format!("{name}.log"))))
                .map_err(err)?,
        );
    }
    let data = lab::pattern(1_000_000);
    let mut delays = Vec::new();
    for i in 0..samples {
        let name = format!("one-mb-{i}.bin");
        let tmp = outboxes[0].join(format!(".{name}.partial"));
        std::fs::write(&tmp, &data).map_err(|e| e.to_string())?;
        let start = Instant::now();
        std::fs::rename(&tmp, outboxes[0].join(&name)).map_err(|e| e.to_string())?;
        while !inboxes[1].join(&name).exists() {
            if start.elapsed() > Duration::from_secs(30) {
                return Err(format!("{name} did not arrive within 30 s"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        delays.push(start.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(gateways);
    delays.sort_by(f64::total_cmp);
    Ok(delays[delays.len() / 2])
}
