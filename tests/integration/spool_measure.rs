//! Spool ingest beside plain copies on the same disk, and the outbox →
//! peer inbox delay of a 1 MB file — measured, not asserted. Run with
//! `cargo test --release --test integration spool_measure -- --ignored --nocapture`
//! (`PAIRGATE_MEASURE_ROUNDS`, default 3, sets how many rounds of each;
//! `PAIRGATE_MEASURE_WAYS=now` or any of `cp,cpfiles,copy,before,now` runs only
//! those, e.g. under `perf record`).
//!
//! Each round times, over the same 16 × 16 MiB of fresh files, in turn:
//! - `cp -r` + `sync`: a page-cache copy and one sync of everything (of
//!   the whole machine: it also waits for whatever else is being written);
//! - `cp -r` + `sync FILE…`: the same copy, then only the copies synced
//!   (coreutils `sync` with file arguments fsyncs those files);
//! - copy + fsync per file (`std::fs::copy`, as `cp` does, then `fsync`
//!   before the next file, and one fsync of the folder);
//! - the spool intake as it was before (a hashing pass, then a sealing pass
//!   that must hash the same, then fsync, rename, fsync of `outgoing/`,
//!   unlink, fsync of the outbox — each file on its own), rebuilt here from
//!   the library's public pieces so both run in one process on one disk;
//! - the spool intake now ([`pairgate::spool::Store::scan_outbox`]: one
//!   read, group commit).
//!
//! Beside each rate: the CPU seconds per GB this process (and the `cp` and
//! `sync` it ran) used, user + system; the kernel's writeback threads are
//! not counted, for any of them.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Seek, SeekFrom};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use pairgate::spool::store::{durable_remove, durable_rename, sync_dir};
use pairgate::spool::{digest_stream, encrypt_stream, MasterKey, Metadata, Store};
use ring::rand::{SecureRandom, SystemRandom};

use crate::harness::*;
use crate::spool::{content, drop_file, spool_section};

const FILES: usize = 16;
const SIZE: usize = 16 << 20;

#[derive(Clone, Copy, PartialEq)]
enum Way {
    CpSync,
    CpSyncFiles,
    CopyFsyncEach,
    SpoolBefore,
    SpoolNow,
}

impl Way {
    const ALL: [Way; 5] = [
        Way::CpSync,
        Way::CpSyncFiles,
        Way::CopyFsyncEach,
        Way::SpoolBefore,
        Way::SpoolNow,
    ];

    fn key(self) -> &'static str {
        match self {
            Way::CpSync => "cp",
            Way::CpSyncFiles => "cpfiles",
            Way::CopyFsyncEach => "copy",
            Way::SpoolBefore => "before",
            Way::SpoolNow => "now",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Way::CpSync => "cp -r + sync",
            Way::CpSyncFiles => "cp -r + sync FILE... (the copies only)",
            Way::CopyFsyncEach => "copy + fsync per file",
            Way::SpoolBefore => "spool ingest before (2 reads, fsync per file)",
            Way::SpoolNow => "spool ingest now (1 read, group commit)",
        }
    }
}

fn sync() {
    assert!(Command::new("sync").status().unwrap().success());
}

/// Fresh files (random, so nothing compresses or dedupes) in `dir`, synced.
fn make_files(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let mut data = vec![0u8; SIZE];
    for i in 0..FILES {
        SystemRandom::new().fill(&mut data).unwrap();
        fs::write(dir.join(format!("package-{i}.zip")), &data).unwrap();
    }
    sync();
}

/// CPU seconds used so far by this process and the children it waited for
/// (`cp`, `sync`): utime + stime + cutime + cstime from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let stat = fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which is in parentheses).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f[11..15].iter().map(|v| v.parse::<u64>().unwrap()).sum();
    ticks as f64 / 100.0
}

/// One timed run of `way` in a fresh folder under `root`: wall and CPU
/// seconds.
fn run(way: Way, root: &Path) -> (f64, f64) {
    let _ = fs::remove_dir_all(root);
    let src = root.join("src");
    make_files(&src);
    let key = MasterKey::generate().unwrap();
    let store = Store::new(
        &root.join("spool"),
        key.clone(),
        &src,
        &root.join("inbox"),
        None,
        None,
    )
    .unwrap();
    let dst = root.join("copy");
    let (start, cpu) = (Instant::now(), cpu_seconds());
    match way {
        Way::CpSync => {
            let ok = Command::new("cp").arg("-r").arg(&src).arg(&dst).status();
            assert!(ok.unwrap().success());
            sync();
        }
        Way::CpSyncFiles => {
            let ok = Command::new("cp").arg("-r").arg(&src).arg(&dst).status();
            assert!(ok.unwrap().success());
            let copies = fs::read_dir(&dst).unwrap().map(|e| e.unwrap().path());
            let ok = Command::new("sync").args(copies).arg(&dst).status();
            assert!(ok.unwrap().success());
        }
        Way::CopyFsyncEach => {
            fs::create_dir_all(&dst).unwrap();
            for e in fs::read_dir(&src).unwrap() {
                let e = e.unwrap();
                let to = dst.join(e.file_name());
                fs::copy(e.path(), &to).unwrap();
                File::open(&to).unwrap().sync_all().unwrap();
            }
            sync_dir(&dst).unwrap();
        }
        Way::SpoolBefore => {
            for e in fs::read_dir(&src).unwrap() {
                let path = e.unwrap().path();
                two_pass_fsync_each(&store, &key, &path);
            }
        }
        Way::SpoolNow => {
            assert_eq!(
                pairgate::spool::intake::scan_outbox(&store).unwrap().len(),
                FILES
            );
        }
    }
    let secs = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    if matches!(way, Way::SpoolBefore | Way::SpoolNow) {
        assert_eq!(fs::read_dir(&src).unwrap().count(), 0);
        assert_eq!(
            fs::read_dir(root.join("spool/outgoing")).unwrap().count(),
            FILES
        );
    }
    fs::remove_dir_all(root).unwrap();
    sync();
    secs
}

/// The intake of one file as it was before single-pass sealing and group
/// commit (`src/spool/intake.rs` at 3f64061), from public pieces.
fn two_pass_fsync_each(store: &Store, key: &MasterKey, path: &Path) {
    let mut file = File::open(path).unwrap();
    let (size, sha) = digest_stream(BufReader::new(&mut file)).unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    let meta = Metadata::new(name, size, &sha).unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    let tmp = store.root().join("tmp").join(format!("{}.part", meta.id));
    let mut w = BufWriter::with_capacity(256 * 1024, File::create_new(&tmp).unwrap());
    encrypt_stream(BufReader::new(&mut file), &mut w, key, &meta).unwrap();
    w.into_inner().unwrap().sync_all().unwrap();
    let dest = store
        .root()
        .join("outgoing")
        .join(format!("{}.pgs", meta.id));
    durable_rename(&tmp, &dest).unwrap();
    durable_remove(path).unwrap();
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median, min and max outbox → peer inbox delay of 1 MB files (ms).
async fn delays(settle_ms: Option<u64>, samples: usize) -> (f64, f64, f64) {
    let root = tempfile::tempdir().unwrap();
    let (mut x1, d1) = spool_section(root.path(), "site1");
    let (mut x2, d2) = spool_section(root.path(), "site2");
    if let Some(ms) = settle_ms {
        x1.push_str(&format!("settle_ms = {ms}\n"));
        x2.push_str(&format!("settle_ms = {ms}\n"));
    }
    let _pair = Pairing::start_with(move |s1, s2| {
        s1.extra = x1;
        s2.extra = x2;
    })
    .await;
    let mut ms = Vec::new();
    for i in 0..samples {
        let data = content(b"LATENCY", 1_000_000);
        let name = format!("one-mb-{i}.bin");
        let start = Instant::now();
        drop_file(&d1.outbox, &name, &data);
        while !d2.inbox.join(&name).exists() {
            assert!(start.elapsed() < Duration::from_secs(30));
            std::thread::sleep(Duration::from_millis(1));
        }
        ms.push(start.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(300));
    }
    let min = ms.iter().copied().fold(f64::MAX, f64::min);
    let max = ms.iter().copied().fold(0.0, f64::max);
    (median(&mut ms), min, max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_ingest_and_delivery_delay() {
    let rounds: usize = std::env::var("PAIRGATE_MEASURE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let only = std::env::var("PAIRGATE_MEASURE_WAYS").unwrap_or_default();
    let ways: Vec<Way> = Way::ALL
        .into_iter()
        .filter(|w| only.is_empty() || only.split(',').any(|k| k == w.key()))
        .collect();
    let dir = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
    let mb = (FILES * SIZE) as f64 / 1e6;
    let mut secs: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
    for _ in 0..rounds {
        for (i, way) in ways.iter().enumerate() {
            let (wall, used) = run(*way, &dir.path().join("run"));
            secs[i].push(wall);
            cpu[i].push(used);
        }
    }
    let rates: Vec<f64> = secs.iter_mut().map(|s| mb / median(s)).collect();
    println!(
        "ingest of {FILES} x {} MiB ({mb:.0} MB), median of {rounds} interleaved rounds, same disk:",
        SIZE >> 20
    );
    for (i, way) in ways.iter().enumerate() {
        let (lo, hi) = (
            mb / secs[i].iter().copied().fold(0.0, f64::max),
            mb / secs[i].iter().copied().fold(f64::MAX, f64::min),
        );
        let ratio = if ways[0] == Way::CpSync {
            format!("{:.2}x cp+sync", rates[i] / rates[0])
        } else {
            String::new()
        };
        println!(
            "  {:<46} {:>6.0} MB/s  ({lo:.0}-{hi:.0})  {ratio:<14} CPU {:.2} s/GB",
            way.label(),
            rates[i],
            median(&mut cpu[i]) / (mb / 1000.0),
        );
    }
    if !only.is_empty() {
        return;
    }

    for settle in [None, Some(0)] {
        let (med, min, max) = delays(settle, 7).await;
        let label = settle.map_or("settle_ms = 1000 (default)".to_owned(), |ms| {
            format!("settle_ms = {ms}")
        });
        println!(
            "1 MB outbox -> peer inbox, {label}: median {med:.0} ms (min {min:.0}, max {max:.0})"
        );
    }
}
