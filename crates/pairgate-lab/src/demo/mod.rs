//! `pairgate demo`: a complete two-site pairing on loopback in under a
//! minute — the README's first command.
//!
//! It builds the pairing CA, both gateway certificates, the policy and two
//! site configs (with spool and admin endpoint), starts both gateways as real
//! processes, and then walks through what an operator cares about: SMB-like
//! bulk traffic through the tunnel both ways, a batch of replication packages
//! through the encrypted spool, an outage of the peer site (files wait
//! encrypted, the lag grows), the recovery, a live certificate rotation under
//! an open connection, transparent interception (in a network namespace of
//! its own, when run as root; it says plainly when it cannot), and finally
//! what the audit logs recorded.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{GatewayProcess, LabError, Pairgate, Pki, SiteSpec, POOL1, POOL2};

mod files;
mod intercept;

use files::{contains_marker, drop_packages, wait_files, wait_outbox_empty};

const POLICY: &str = "# The pairing manifest: the same file at both sites.\n\
[[pair]]\npools = [\"pool01.site1.example\", \"pool02.site2.example\"]\n\
services = [\"backup-smb\", \"cms-smb\", \"spool\"]\n";

/// MiB pushed each way in the bulk phase, by default.
pub const DEFAULT_BULK_MIB: u64 = 256;
/// Replication packages sent through the spool, and their size.
const PACKAGES: usize = 20;
const PACKAGE_SIZE: usize = 1024 * 1024;
/// Marker written into every spooled file, to prove none of it is on disk
/// in plaintext while it waits.
const MARKER: &[u8] = b"CONFIDENTIAL-CONTACT-LIST";

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error("{0}")]
    Step(String),
}

fn step(msg: impl Into<String>) -> DemoError {
    DemoError::Step(msg.into())
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> DemoError + '_ {
    move |e| step(format!("{what}: {e}"))
}

/// Runs the demo with the `pairgate` binary at `exe` in `dir` (default: a
/// fresh folder under the temp dir).
///
/// # Errors
/// When any step does not behave as the demo expects; the message says which.
pub fn run(exe: &Path, dir: Option<PathBuf>, bulk_mib: u64) -> Result<(), DemoError> {
    let dir = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!(
            "pairgate-demo-{}-{}",
            std::process::id(),
            time::OffsetDateTime::now_utc().unix_timestamp()
        )),
    };
    if dir.join("site1.toml").exists() {
        return Err(step(format!(
            "{} already holds a demo; pass another --dir",
            dir.display()
        )));
    }
    std::fs::create_dir_all(&dir).map_err(io("create the demo folder"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(io("start the runtime"))?;
    if crate::netns::inside().as_deref() == Some(intercept::STEP) {
        // The interception step, re-run in a network namespace of its own.
        return runtime.block_on(intercept::inner(&Pairgate::new(exe), &dir));
    }
    runtime.block_on(Demo::new(dir, Pairgate::new(exe), bulk_mib << 20).run())
}

/// One site of the demo: its spec, its folders, its running gateway.
struct Site {
    spec: SiteSpec,
    config: PathBuf,
    outbox: PathBuf,
    inbox: PathBuf,
    spool: PathBuf,
    gateway: Option<GatewayProcess>,
}

struct Demo {
    dir: PathBuf,
    bulk: u64,
    pairgate: Pairgate,
    started: Instant,
    step: usize,
}

fn spinner(msg: String) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("   {spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    bar.set_message(msg);
    bar
}

impl Demo {
    fn new(dir: PathBuf, pairgate: Pairgate, bulk: u64) -> Demo {
        Demo {
            dir,
            bulk,
            pairgate,
            started: Instant::now(),
            step: 0,
        }
    }

    fn heading(&mut self, title: &str) {
        self.step += 1;
        println!("\n{}. {title}", self.step);
    }

    async fn run(mut self) -> Result<(), DemoError> {
        println!(
            "pairgate demo — two paired pools on loopback, in {}",
            self.dir.display()
        );
        self.heading("Pairing CA, gateway certificates, policy, spool keys, site configs");
        let pki = Pki::create(
            &self.pairgate,
            &self.dir.join("certs"),
            "pairgate demo pairing CA",
        )?;
        let mut sites = self.build_sites(&pki).await?;
        println!("   CA        {}", pki.ca_path().display());
        for s in &sites {
            println!("   {:<9} {}", s.spec.name, s.config.display());
        }

        self.heading("Both gateways start (mutual TLS 1.3 between them, pinned to the pair)");
        for s in &mut sites {
            s.gateway = Some(self.start(&s.config)?);
            println!(
                "   {} {}",
                s.spec.name,
                s.gateway.as_ref().map_or("", |g| g.ready.as_str())
            );
        }

        self.heading("SMB-like bulk traffic through the tunnel, both directions");
        for (from, label) in [(0, "site1 → site2"), (1, "site2 → site1")] {
            let tunnel = sites[from]
                .spec
                .tunnel_addr(0)
                .ok_or_else(|| step("no tunnel"))?;
            let bar = spinner(format!("{label}: streaming {} MiB", self.bulk >> 20));
            let t = Instant::now();
            let digest = crate::stream_bulk(tunnel, self.bulk)
                .await
                .map_err(io(label))?;
            bar.finish_and_clear();
            if digest != crate::bulk_digest(self.bulk) {
                return Err(step(format!(
                    "{label}: the far File Store received different bytes"
                )));
            }
            let secs = t.elapsed().as_secs_f64();
            println!(
                "   {label}: {} MiB in {secs:.2} s = {:.0} MB/s, SHA-256 checked at the far end",
                self.bulk >> 20,
                self.bulk as f64 / secs / 1e6
            );
        }

        self.heading("Replication packages through the encrypted spool");
        let t = Instant::now();
        let names = drop_packages(&sites[0].outbox, "package", PACKAGES)?;
        wait_files(&sites[1].inbox, &names, "delivery to site2's inbox").await?;
        println!(
            "   {PACKAGES} × {} MiB: site1 outbox → site2 inbox in {:.2} s, each exactly once and identical",
            PACKAGE_SIZE >> 20,
            t.elapsed().as_secs_f64()
        );

        self.heading("Outage: site2's gateway goes down; site1 keeps taking files");
        sites[1].gateway.take();
        let waiting = drop_packages(&sites[0].outbox, "during-outage", 10)?;
        wait_outbox_empty(&sites[0].outbox).await?;
        let plaintext = contains_marker(&sites[0].spool);
        println!(
            "   10 packages wait in site1's spool, AES-256-GCM encrypted: {}",
            if plaintext {
                "PLAINTEXT FOUND (unexpected)"
            } else {
                "no plaintext on disk"
            }
        );
        if plaintext {
            return Err(step("plaintext found in the spool"));
        }
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let s = self.status(&sites[0].config)?;
            let out = &s["directions"][0];
            println!(
                "   site1 status: peer link {}, outbound {} — {} files waiting, oldest {} s",
                s["peer_link"]["state"].as_str().unwrap_or("?"),
                out["state"].as_str().unwrap_or("?"),
                out["waiting_files"],
                out["lag_secs"]
            );
        }

        self.heading("Recovery: site2's gateway is back");
        let t = Instant::now();
        sites[1].gateway = Some(self.start(&sites[1].config)?);
        wait_files(&sites[1].inbox, &waiting, "delivery after recovery").await?;
        let s = self.status(&sites[0].config)?;
        println!(
            "   the 10 waiting packages arrived {:.2} s after site2 came back; site1 outbound is {}",
            t.elapsed().as_secs_f64(),
            s["directions"][0]["state"].as_str().unwrap_or("?")
        );

        self.heading("Live certificate rotation under an open connection");
        self.rotate(&pki, &sites).await?;

        self.heading(
            "Transparent interception: the Front End addresses the peer's File Store by its own address",
        );
        intercept::show(self.pairgate.exe(), &self.dir)?;

        self.heading("What the audit logs recorded");
        for s in &mut sites {
            if let Some(mut g) = s.gateway.take() {
                let _ = g.terminate();
            }
        }
        self.summary(&sites)?;
        println!(
            "\nDone in {:.1} s. Everything is in {}:\n  certs/ (CA and gateway certificates; keys 0600), policy.toml, site1.toml / site2.toml,\n  \
             site*/spool (encrypted), site*/outbox, site*/inbox, site*-audit.jsonl (hash-chained audit), site*.log.\n  \
             Try: pairgate audit summary --log {}/site1-audit.jsonl\n       pairgate cert inspect {}/certs/site1.crt",
            self.started.elapsed().as_secs_f64(),
            self.dir.display(),
            self.dir.display(),
            self.dir.display()
        );
        Ok(())
    }

    fn start(&self, config: &Path) -> Result<GatewayProcess, DemoError> {
        let name = config
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("site");
        Ok(GatewayProcess::start(
            self.pairgate.exe(),
            config,
            Some(&self.dir.join(format!("{name}.log"))),
        )?)
    }

    async fn build_sites(&self, pki: &Pki) -> Result<Vec<Site>, DemoError> {
        std::fs::write(self.dir.join("policy.toml"), POLICY).map_err(io("write the policy"))?;
        let ports = [crate::free_port()?, crate::free_port()?];
        let mut sites = Vec::new();
        for (i, (name, pool, peer)) in [("site1", POOL1, POOL2), ("site2", POOL2, POOL1)]
            .into_iter()
            .enumerate()
        {
            // Each site's "File Store": a backend that checks what arrives.
            let store = crate::digest_backend().await?;
            let key = self.dir.join(format!("{name}-spool.key"));
            self.pairgate.spool_keygen(&key)?;
            let admin = std::net::SocketAddr::from(([127, 0, 0, 1], crate::free_port()?));
            let base = self.dir.join(name);
            let spec = SiteSpec {
                name: name.into(),
                pool: pool.into(),
                peer_pool: peer.into(),
                cert: pki.issue(name, pool, 397)?,
                ca: pki.ca_path(),
                crl: None,
                peer_listen: ports[i],
                peer_connect: ports[1 - i],
                tunnels: vec![("backup-smb".into(), crate::free_port()?, vec!["127.0.0.0/8".into()])],
                exports: vec![("backup-smb".into(), store)],
                extra: format!(
                    "\n[spool]\ndir = \"{name}/spool\"\nkey = \"{}\"\noutbox = \"{name}/outbox\"\ninbox = \"{name}/inbox\"\n\
                     \n[admin]\nlisten = \"{admin}\"\nsync_interval_secs = 5\n",
                    key.display()
                ),
            };
            let config = spec.write(&self.dir)?;
            sites.push(Site {
                spec,
                config,
                outbox: base.join("outbox"),
                inbox: base.join("inbox"),
                spool: base.join("spool"),
                gateway: None,
            });
        }
        Ok(sites)
    }

    async fn rotate(&self, pki: &Pki, sites: &[Site]) -> Result<(), DemoError> {
        let tunnel = sites[0]
            .spec
            .tunnel_addr(0)
            .ok_or_else(|| step("no tunnel"))?;
        // A long replication session, open across the rotation.
        let mut held = tokio::net::TcpStream::connect(tunnel)
            .await
            .map_err(io("open a session"))?;
        held.write_all(b"before rotation ")
            .await
            .map_err(io("write"))?;
        let prefix = sites[1].spec.cert.0.with_extension("");
        let (old_sha256, new_sha256) = pki.rotate(&prefix, 397)?;
        println!(
            "   site2 certificate rotated: {}… → {}…",
            old_sha256.get(..16).unwrap_or(&old_sha256),
            new_sha256.get(..16).unwrap_or(&new_sha256)
        );
        let audit = sites[1]
            .gateway
            .as_ref()
            .map(|g| g.audit.clone())
            .ok_or_else(|| step("site2 is down"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&audit).unwrap_or_default();
            if text.contains(&format!("\"new_sha256\":\"{new_sha256}\"")) {
                break;
            }
            if Instant::now() > deadline {
                return Err(step("site2 did not pick up its new certificate"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!("   site2 reloaded it by itself (file watch), no restart");
        held.write_all(b"after rotation")
            .await
            .map_err(io("write"))?;
        held.shutdown().await.map_err(io("half-close"))?;
        let mut digest = Vec::new();
        held.read_to_end(&mut digest).await.map_err(io("read"))?;
        let want = ring::digest::digest(&ring::digest::SHA256, b"before rotation after rotation");
        if digest != want.as_ref() {
            return Err(step("the session open across the rotation lost bytes"));
        }
        println!("   the session opened before the rotation carried on to the end, intact");
        let fresh = crate::round_trip(tunnel, b"new session")
            .await
            .map_err(io("new session"))?;
        if fresh != ring::digest::digest(&ring::digest::SHA256, b"new session").as_ref() {
            return Err(step("a new session after the rotation failed"));
        }
        println!("   new sessions use the new certificate");
        Ok(())
    }

    /// `pairgate status --config … --json`, as an operator would ask.
    fn status(&self, config: &Path) -> Result<serde_json::Value, DemoError> {
        Ok(self.pairgate.status(config)?)
    }

    fn summary(&self, sites: &[Site]) -> Result<(), DemoError> {
        let mut table = crate::table::new();
        table.set_header([
            "site",
            "allowed",
            "denied (reasons)",
            "MiB relayed",
            "spooled in",
            "sent",
            "delivered",
            "chain",
        ]);
        for s in sites {
            let path = self.dir.join(format!("{}-audit.jsonl", s.spec.name));
            let text = std::fs::read_to_string(&path).map_err(io("read the audit log"))?;
            let lines: Vec<serde_json::Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            let count = |event: &str| lines.iter().filter(|v| v["event"] == event).count();
            let conns = lines.iter().filter(|v| v["event"] == "connection");
            let allowed = conns.clone().filter(|v| v["decision"] == "allow").count();
            let mut reasons: Vec<String> = conns
                .filter(|v| v["decision"] == "deny")
                .filter_map(|v| v["reason"].as_str().map(str::to_owned))
                .collect();
            let denied = reasons.len();
            reasons.sort();
            reasons.dedup();
            let bytes: u64 = lines
                .iter()
                .filter(|v| v["event"] == "close")
                .filter_map(|v| v["bytes_in"].as_u64())
                .sum();
            let verified = self.pairgate.audit_verify(&path)?;
            let chain = if verified["ok"] == true {
                format!("intact, {} lines", verified["lines"])
            } else {
                format!(
                    "BROKEN: line {}: {}",
                    verified["line"],
                    verified["fault"].as_str().unwrap_or("?")
                )
            };
            table.add_row([
                s.spec.name.clone(),
                allowed.to_string(),
                if reasons.is_empty() {
                    denied.to_string()
                } else {
                    format!("{denied} ({})", reasons.join(", "))
                },
                (bytes >> 20).to_string(),
                count("spool_in").to_string(),
                count("spool_sent").to_string(),
                count("spool_delivered").to_string(),
                chain,
            ]);
        }
        println!("{table}");
        Ok(())
    }
}
