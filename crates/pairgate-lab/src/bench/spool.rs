//! Spool figures, measured on real `pairgate run` processes: ingest
//! throughput (hash, AES-256-GCM, fsync, rename, unlink — encrypted and
//! durable) beside `cp -r` + `sync` of the same files on the same disk, and
//! the outbox → peer inbox delay of a 1 MB file with the link up.
//!
//! Ingest is timed the way an operator would see it: a gateway with a spool
//! and no reachable peer (so nothing is forwarded while it works), the files
//! renamed into its outbox at once, the clock stopped when the last one has
//! left the outbox — by then each is sealed and synced in the spool and its
//! plaintext unlinked — and the audit log must then show every one taken in.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::report::SpoolFigures;
use crate::{GatewayProcess, Pairgate, Pki, SiteSpec, POOL1, POOL2};

/// Measures both figures under `dir/spool-bench`; never fakes a number.
pub fn measure(dir: &Path, exe: &Path, quick: bool) -> SpoolFigures {
    let root = dir.join("spool-bench");
    let pairgate = Pairgate::new(exe);
    let result = Lab::create(&root, &pairgate).and_then(|lab| {
        let (ingest, cp, cp_each) = ingest(&lab, quick)?;
        let delay = delay(&lab, if quick { 3 } else { 7 })?;
        Ok((ingest, cp, cp_each, delay))
    });
    let _ = std::fs::remove_dir_all(&root);
    match result {
        Ok((ingest_mb_s, cp_sync_mb_s, cp_fsync_each_mb_s, delay_1mb_ms)) => {
            SpoolFigures::Measured {
                ingest_mb_s,
                cp_sync_mb_s,
                cp_fsync_each_mb_s,
                delay_1mb_ms,
            }
        }
        Err(reason) => SpoolFigures::NotAvailable { reason },
    }
}

/// The folder, binary and PKI both measures share.
struct Lab {
    root: PathBuf,
    pairgate: Pairgate,
    pki: Pki,
}

impl Lab {
    fn create(root: &Path, pairgate: &Pairgate) -> Result<Lab, String> {
        std::fs::create_dir_all(root).map_err(|e| format!("create {}: {e}", root.display()))?;
        let pki = Pki::create(pairgate, &root.join("certs"), "pairgate bench spool CA")
            .map_err(|e| e.to_string())?;
        std::fs::write(
            root.join("policy.toml"),
            format!("[[pair]]\npools = [\"{POOL1}\", \"{POOL2}\"]\nservices = [\"spool\"]\n"),
        )
        .map_err(|e| e.to_string())?;
        Ok(Lab {
            root: root.to_owned(),
            pairgate: pairgate.clone(),
            pki,
        })
    }

    /// Writes `<root>/<name>.toml`: a site with a spool and its folders;
    /// `extra` is appended to the `[spool]` section.
    fn site(
        &self,
        name: &str,
        pools: (&str, &str),
        ports: (u16, u16),
        extra: &str,
    ) -> Result<Site, String> {
        let err = |e: crate::LabError| e.to_string();
        let key = self.root.join(format!("{name}-spool.key"));
        self.pairgate.spool_keygen(&key).map_err(err)?;
        let spec = SiteSpec {
            name: name.into(),
            pool: pools.0.into(),
            peer_pool: pools.1.into(),
            cert: self.pki.issue(name, pools.0, 30).map_err(err)?,
            ca: self.pki.ca_path(),
            crl: None,
            peer_listen: ports.0,
            peer_connect: ports.1,
            tunnels: vec![],
            exports: vec![],
            extra: format!(
                "\n[spool]\ndir = \"{name}/spool\"\nkey = \"{}\"\noutbox = \"{name}/outbox\"\n\
                 inbox = \"{name}/inbox\"\n{extra}",
                key.display()
            ),
        };
        Ok(Site {
            config: spec.write(&self.root).map_err(err)?,
            outbox: self.root.join(name).join("outbox"),
            inbox: self.root.join(name).join("inbox"),
        })
    }

    fn start(&self, site: &Site) -> Result<GatewayProcess, String> {
        let name = site
            .config
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("site");
        let log = self.root.join(format!("{name}.log"));
        GatewayProcess::start(self.pairgate.exe(), &site.config, Some(&log))
            .map_err(|e| e.to_string())
    }
}

struct Site {
    config: PathBuf,
    outbox: PathBuf,
    inbox: PathBuf,
}

fn sync() {
    let _ = Command::new("sync").status();
}

fn make_files(dir: &Path, files: usize, size: usize) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let mut made = Vec::with_capacity(files);
    for i in 0..files {
        let mut data = crate::pattern(size);
        data[0] = i as u8;
        let path = dir.join(format!("package-{i}.zip"));
        std::fs::write(&path, data).map_err(|e| format!("write {}: {e}", path.display()))?;
        made.push(path);
    }
    Ok(made)
}

/// Entries of `dir` that are not dot-files (a producer's temporary names).
fn visible_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .count()
    })
}

/// (spool ingest MB/s, cp + sync MB/s, copy + fsync of each file MB/s)
/// over the same files.
fn ingest(lab: &Lab, quick: bool) -> Result<(f64, f64, f64), String> {
    let (files, size) = if quick { (4, 8 << 20) } else { (16, 16 << 20) };
    let mb = (files * size) as f64 / 1e6;
    let root = lab.root.join("ingest");
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

    // The other baseline: each file copied and fsynced on its own, one
    // after the other — what a careful tool without group commit does.
    let each = root.join("copy-each");
    std::fs::create_dir_all(&each).map_err(|e| format!("create {}: {e}", each.display()))?;
    let start = Instant::now();
    for path in &std::fs::read_dir(&src)
        .map_err(|e| format!("list {}: {e}", src.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect::<Vec<_>>()
    {
        let dest = each.join(path.file_name().ok_or("a source file has no name")?);
        std::fs::copy(path, &dest).map_err(|e| format!("copy {}: {e}", path.display()))?;
        std::fs::File::open(&dest)
            .and_then(|f| f.sync_all())
            .map_err(|e| format!("fsync {}: {e}", dest.display()))?;
    }
    let cp_each_s = start.elapsed().as_secs_f64();

    // A peer port nobody listens on: the files stay in the spool.
    let ports = (
        crate::free_port().map_err(|e| e.to_string())?,
        crate::free_port().map_err(|e| e.to_string())?,
    );
    // Taken as soon as renamed in: the settle time is a wait, not work.
    let site = lab.site("ingest", (POOL1, POOL2), ports, "settle_ms = 0\n")?;
    // The staging folder is beside the outbox (same file system), so the
    // renames below are instant and atomic.
    let staged = make_files(&lab.root.join("ingest").join("staging"), files, size)?;
    sync();
    let gateway = lab.start(&site)?;
    let start = Instant::now();
    for path in &staged {
        let name = path.file_name().ok_or("a staged file has no name")?;
        std::fs::rename(path, site.outbox.join(name))
            .map_err(|e| format!("rename {} into the outbox: {e}", path.display()))?;
    }
    while visible_entries(&site.outbox) > 0 {
        if start.elapsed() > Duration::from_secs(300) {
            return Err(format!(
                "{} of {files} files still in the outbox after 300 s; see {}",
                visible_entries(&site.outbox),
                lab.root.join("ingest.log").display()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let spool_s = start.elapsed().as_secs_f64();
    // Gone from the outbox must mean taken into the spool, not refused.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let taken = gateway
            .audit_lines()
            .iter()
            .filter(|v| v["event"] == "spool_in")
            .count();
        if taken >= files {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the audit log shows {taken} of {files} files spooled"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(gateway);
    Ok((mb / spool_s, mb / cp_s, mb / cp_each_s))
}

/// Median outbox → peer inbox delay of a 1 MB file, in milliseconds.
fn delay(lab: &Lab, samples: usize) -> Result<f64, String> {
    let err = |e: crate::LabError| e.to_string();
    let (p1, p2) = (
        crate::free_port().map_err(err)?,
        crate::free_port().map_err(err)?,
    );
    // Default settings, `spool.settle_ms` included: the delay an operator sees.
    let site1 = lab.site("site1", (POOL1, POOL2), (p1, p2), "")?;
    let site2 = lab.site("site2", (POOL2, POOL1), (p2, p1), "")?;
    let gateways = [lab.start(&site1)?, lab.start(&site2)?];
    let data = crate::pattern(1_000_000);
    let mut delays = Vec::new();
    for i in 0..samples {
        let name = format!("one-mb-{i}.bin");
        let tmp = site1.outbox.join(format!(".{name}.partial"));
        std::fs::write(&tmp, &data).map_err(|e| e.to_string())?;
        let start = Instant::now();
        std::fs::rename(&tmp, site1.outbox.join(&name)).map_err(|e| e.to_string())?;
        while !site2.inbox.join(&name).exists() {
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
