//! `pairgate bench --reload N`: how long a SIGHUP takes to apply on a
//! gateway that serves N tunnels (a topology with many servers and
//! services), while connections keep arriving on one of them.
//!
//! Each round edits the config file the way an operator does — one tunnel
//! added, or removed again — sends SIGHUP and stops the clock when the
//! audit log shows the `config_reload` (by then the new listener is bound
//! and served, the removed one stopped, and the new config is the running
//! one). A client connects, echoes and closes through the first tunnel the
//! whole time; its failures are counted (there should be none).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{runtime, workdir, BenchError};
use crate::{free_port, GatewayProcess, Pairgate, Pki, SiteSpec, POOL1, POOL2};

/// What the reloads took.
#[derive(Debug, Serialize)]
pub struct ReloadReport {
    pub tunnels: usize,
    pub reloads: usize,
    /// SIGHUP → `config_reload` audited, per reload, sorted.
    pub apply_ms: Vec<f64>,
    /// Connections through the first tunnel meanwhile.
    pub connections: u64,
    pub failed: u64,
}

impl ReloadReport {
    pub fn render(&self) -> String {
        let at = |q: f64| {
            let i = ((self.apply_ms.len() as f64 - 1.0) * q).round() as usize;
            self.apply_ms.get(i).copied().unwrap_or(f64::NAN)
        };
        format!(
            "reload: {} tunnels, {} reloads (one tunnel added or removed each): SIGHUP → applied \
             median {:.1} ms, p90 {:.1} ms, max {:.1} ms\n\
             meanwhile {} connections through an unchanged tunnel, {} failed\n",
            self.tunnels,
            self.reloads,
            at(0.5),
            at(0.9),
            at(1.0),
            self.connections,
            self.failed
        )
    }
}

/// Starts a gateway of `exe` with `tunnels` tunnels and times `reloads`
/// SIGHUPs.
///
/// # Errors
/// When the gateway cannot be set up or started, or a reload is refused.
pub fn run(
    exe: &Path,
    dir: Option<&Path>,
    tunnels: usize,
    reloads: usize,
) -> Result<ReloadReport, BenchError> {
    let (dir, _cleanup) = workdir(dir)?;
    let pairgate = Pairgate::new(exe);
    let pki = Pki::create(&pairgate, &dir.join("certs"), "pairgate bench reload CA")?;
    let services: Vec<String> = (0..=tunnels).map(|i| format!("svc-{i:04}")).collect();
    let mut policy: String = services
        .iter()
        .map(|s| format!("[[service]]\nname = \"{s}\"\ndescription = \"bench\"\n"))
        .collect();
    policy += &format!(
        "[[pair]]\npools = [\"{POOL1}\", \"{POOL2}\"]\nservices = [{}]\n",
        services
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| BenchError::Io { what, source }
    };
    std::fs::write(dir.join("policy.toml"), policy).map_err(io("write policy.toml"))?;
    let runtime = runtime()?;
    runtime.block_on(async {
        let echo = crate::echo_backend().await?;
        let mut ports = Vec::with_capacity(tunnels + 1);
        for _ in 0..=tunnels {
            ports.push(free_port()?);
        }
        let (peer1, peer2) = (free_port()?, free_port()?);
        let spec = SiteSpec {
            name: "site1".into(),
            pool: POOL1.into(),
            peer_pool: POOL2.into(),
            cert: pki.issue("site1", POOL1, 30)?,
            ca: pki.ca_path(),
            crl: None,
            peer_listen: peer1,
            peer_connect: peer2,
            tunnels: services
                .iter()
                .zip(&ports)
                .take(tunnels)
                .map(|(s, p)| (s.clone(), *p, vec!["127.0.0.0/8".to_owned()]))
                .collect(),
            exports: vec![],
            extra: String::new(),
        };
        // The peer site exports the first service to the echo backend, so
        // the first tunnel relays end to end.
        let site2 = SiteSpec {
            name: "site2".into(),
            pool: POOL2.into(),
            peer_pool: POOL1.into(),
            cert: pki.issue("site2", POOL2, 30)?,
            ca: pki.ca_path(),
            crl: None,
            peer_listen: peer2,
            peer_connect: peer1,
            tunnels: vec![],
            exports: vec![(services[0].clone(), echo)],
            extra: String::new(),
        };
        let _site2 = GatewayProcess::start(exe, &site2.write(&dir)?, Some(&dir.join("site2.log")))?;
        let config = spec.write(&dir)?;
        let gateway = GatewayProcess::start(exe, &config, Some(&dir.join("site1.log")))?;
        let first = std::net::SocketAddr::from(([127, 0, 0, 1], ports[0]));
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let client = {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match crate::round_trip(first, b"reload bench").await {
                        Ok(back) if back == b"reload bench" => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        };
        let count = || {
            gateway
                .audit_lines()
                .iter()
                .filter(|v| v["event"] == "config_reload")
                .count()
        };
        let mut apply_ms = Vec::with_capacity(reloads);
        for round in 0..reloads {
            let mut next = spec.clone();
            if round % 2 == 0 {
                next.tunnels.push((
                    services[tunnels].clone(),
                    ports[tunnels],
                    vec!["127.0.0.0/8".into()],
                ));
            }
            next.write(&dir)?;
            let before = count();
            let started = Instant::now();
            gateway.hangup()?;
            let deadline = started + Duration::from_secs(60);
            while count() == before {
                if Instant::now() > deadline {
                    return Err(BenchError::Mismatch {
                        what: "reload".into(),
                        detail: "no config_reload audited within 60 s".into(),
                    });
                }
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            apply_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            let last = gateway
                .audit_lines()
                .into_iter()
                .rev()
                .find(|v| v["event"] == "config_reload");
            if let Some(refused) = last.filter(|v| v["ok"] != true) {
                return Err(BenchError::Mismatch {
                    what: "reload".into(),
                    detail: format!("refused: {refused}"),
                });
            }
        }
        stop.store(true, Ordering::Relaxed);
        let _ = client.await;
        apply_ms.sort_by(f64::total_cmp);
        Ok(ReloadReport {
            tunnels,
            reloads,
            apply_ms,
            connections: ok.load(Ordering::Relaxed),
            failed: failed.load(Ordering::Relaxed),
        })
    })
}
