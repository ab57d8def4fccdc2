//! `pairgate demo`: a complete two-site pairing on loopback, in under a
//! minute — CA and certificates, policy, two gateway configs, two real
//! gateway processes, replication-like traffic both ways, a peer outage and
//! the recovery, then what the audit logs recorded and where it all is.

use std::path::{Path, PathBuf};
use std::time::Instant;

use comfy_table::Table;

use crate::lab::{self, GatewayProcess, LabError, Pki, SiteSpec, POOL1, POOL2};
use crate::pki::Validity;

const POLICY: &str = "# The pairing manifest: the same file at both sites.\n\
[[pair]]\npools = [\"pool01.site1.example\", \"pool02.site2.example\"]\n\
services = [\"backup-smb\", \"cms-smb\", \"cms-https\"]\n";

/// Bytes pushed each way in the bulk phase.
const BULK: u64 = 256 * 1024 * 1024;

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

/// Runs the demo in `dir` (default: a fresh folder under the temp dir).
///
/// # Errors
/// When any step does not behave as the demo expects; the message says which.
pub fn run(dir: Option<PathBuf>) -> Result<(), DemoError> {
    let dir = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("pairgate-demo-{}", std::process::id())),
    };
    if dir.join("site1.toml").exists() {
        return Err(step(format!(
            "{} already holds a demo; pass another --dir",
            dir.display()
        )));
    }
    std::fs::create_dir_all(&dir).map_err(|e| step(format!("create {}: {e}", dir.display())))?;
    let exe = std::env::current_exe()
        .map_err(|e| step(format!("cannot find the pairgate binary: {e}")))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| step(format!("runtime: {e}")))?;
    runtime.block_on(demo(&dir, &exe))
}

async fn demo(dir: &Path, exe: &Path) -> Result<(), DemoError> {
    let started = Instant::now();
    println!(
        "pairgate demo — two paired pools on loopback, in {}\n",
        dir.display()
    );

    println!("1. Pairing CA, gateway certificates, policy, site configs");
    let pki = Pki::create(&dir.join("certs"), "pairgate demo pairing CA")?;
    let cert1 = pki.issue("site1", POOL1, Validity::days_from_now(397))?;
    let cert2 = pki.issue("site2", POOL2, Validity::days_from_now(397))?;
    std::fs::write(dir.join("policy.toml"), POLICY)
        .map_err(|e| step(format!("write policy: {e}")))?;
    // Each site's "File Store": a backend that checks what arrives.
    let store1 = lab::digest_backend().await?;
    let store2 = lab::digest_backend().await?;
    let (p1, p2) = (lab::free_port()?, lab::free_port()?);
    let site1 = SiteSpec {
        name: "site1".into(),
        pool: POOL1.into(),
        peer_pool: POOL2.into(),
        cert: cert1,
        ca: pki.ca_path(),
        crl: None,
        peer_listen: p1,
        peer_connect: p2,
        tunnels: vec![(
            "backup-smb".into(),
            lab::free_port()?,
            vec!["127.0.0.0/8".into()],
        )],
        exports: vec![("backup-smb".into(), store1)],
        extra: String::new(),
    };
    let site2 = SiteSpec {
        name: "site2".into(),
        pool: POOL2.into(),
        peer_pool: POOL1.into(),
        cert: cert2,
        ca: pki.ca_path(),
        crl: None,
        peer_listen: p2,
        peer_connect: p1,
        tunnels: vec![(
            "backup-smb".into(),
            lab::free_port()?,
            vec!["127.0.0.0/8".into()],
        )],
        exports: vec![("backup-smb".into(), store2)],
        extra: String::new(),
    };
    let config1 = site1.write(dir)?;
    let config2 = site2.write(dir)?;
    println!(
        "   CA {}\n   site1 {}\n   site2 {}",
        pki.ca_path().display(),
        config1.display(),
        config2.display()
    );

    println!("2. Starting both gateways (mutual TLS 1.3 between them)");
    let _gw1 = GatewayProcess::start(exe, &config1, Some(&dir.join("site1.log")))?;
    let mut gw2 = GatewayProcess::start(exe, &config2, Some(&dir.join("site2.log")))?;
    println!("   site1 {}\n   site2 {}", _gw1.ready, gw2.ready);

    println!("3. Replication traffic through the tunnels, both directions");
    let t1 = site1
        .tunnel_addr(0)
        .ok_or_else(|| step("site1 has no tunnel"))?;
    let t2 = site2
        .tunnel_addr(0)
        .ok_or_else(|| step("site2 has no tunnel"))?;
    for (label, tunnel) in [("site1 → site2", t1), ("site2 → site1", t2)] {
        let t = Instant::now();
        let digest = lab::stream_bulk(tunnel, BULK)
            .await
            .map_err(|e| step(format!("{label}: {e}")))?;
        if digest != lab::bulk_digest(BULK) {
            return Err(step(format!(
                "{label}: the far File Store received different bytes"
            )));
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "   {label}: {} MiB in {secs:.2} s = {:.0} MB/s, SHA-256 verified at the far end",
            BULK >> 20,
            BULK as f64 / secs / 1e6
        );
    }
    let mut small_ok = 0;
    for i in 0..50 {
        let payload = lab::pattern(1000 + i * 97);
        if lab::round_trip(t1, &payload).await.ok().as_deref()
            == Some(ring::digest::digest(&ring::digest::SHA256, &payload).as_ref())
        {
            small_ok += 1;
        }
    }
    println!("   50 small exchanges site1 → site2: {small_ok} ok");

    println!("4. Outage: site2's gateway goes down");
    gw2.terminate()?;
    let lost = lab::round_trip(t1, b"replication package")
        .await
        .unwrap_or_default();
    println!(
        "   site1 → site2 attempt: {} (audited at site1 as peer_unreachable)",
        if lost.is_empty() {
            "refused, nothing leaves site1 in plaintext"
        } else {
            "unexpectedly answered"
        }
    );

    println!("5. Recovery: site2's gateway is back");
    gw2 = GatewayProcess::start(exe, &config2, Some(&dir.join("site2.log")))?;
    let digest = lab::stream_bulk(t1, 8 << 20)
        .await
        .map_err(|e| step(format!("after recovery: {e}")))?;
    if digest != lab::bulk_digest(8 << 20) {
        return Err(step(
            "after recovery: the far File Store received different bytes",
        ));
    }
    println!("   site1 → site2: 8 MiB delivered and verified, no restart of site1 needed");
    gw2.terminate()?;
    drop(_gw1);

    println!("6. What the audit logs recorded");
    let mut table = Table::new();
    table.set_header([
        "site",
        "allowed",
        "denied",
        "denial reasons",
        "bytes relayed",
    ]);
    for name in ["site1", "site2"] {
        let path = dir.join(format!("{name}-audit.jsonl"));
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let conns = lines.iter().filter(|v| v["event"] == "connection");
        let allowed = conns.clone().filter(|v| v["decision"] == "allow").count();
        let mut reasons: Vec<String> = conns
            .filter(|v| v["decision"] == "deny")
            .filter_map(|v| v["reason"].as_str().map(str::to_owned))
            .collect();
        reasons.sort();
        let denied = reasons.len();
        reasons.dedup();
        let bytes: u64 = lines
            .iter()
            .filter(|v| v["event"] == "close")
            .filter_map(|v| v["bytes_in"].as_u64())
            .sum();
        table.add_row([
            name.to_owned(),
            allowed.to_string(),
            denied.to_string(),
            reasons.join(", "),
            format!("{} MiB", bytes >> 20),
        ]);
    }
    println!("{table}");
    println!(
        "\nDone in {:.1} s. Everything is in {}:\n  certs/ (CA and gateway certificates; keys 0600), policy.toml,\n  \
         site1.toml / site2.toml (configs), site*-audit.jsonl (hash-chained audit), site*.log (diagnostics).\n  \
         Try: pairgate audit verify --log {}/site1-audit.jsonl",
        started.elapsed().as_secs_f64(),
        dir.display(),
        dir.display()
    );
    Ok(())
}
