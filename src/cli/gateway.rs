//! `pairgate run`, `check` and `demo`.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;

use super::Failure;
use pairgate::gateway::{self, GatewayError};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The site's gateway config (TOML).
    #[arg(long)]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The site's gateway config (TOML).
    #[arg(long)]
    pub config: PathBuf,
    /// Print what was checked as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to build the two sites (default: a fresh temporary folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// MiB to stream each way in the bulk phase.
    #[arg(long, value_name = "MIB", default_value_t = pairgate_lab::demo::DEFAULT_BULK_MIB)]
    pub bulk_mib: u64,
}

fn classify(e: GatewayError) -> Failure {
    if e.is_invalid_input() {
        Failure::Invalid(anyhow!(e))
    } else {
        Failure::Problem(anyhow!(e))
    }
}

pub fn run(args: RunArgs) -> Result<(), Failure> {
    gateway::run(&args.config).map_err(classify)
}

pub fn check(args: CheckArgs) -> Result<(), Failure> {
    let (config, policy, material) = gateway::load(&args.config).map_err(classify)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let days = |t: i64| (t - now).div_euclid(86_400);
    if args.json {
        let doc = serde_json::json!({
            "config": config.path,
            "ok": true,
            "pool": config.gateway.pool,
            "peer_pool": config.gateway.peer_pool,
            "policy": policy.path,
            "certificate": {
                "path": config.tls.cert,
                "sha256": material.identity.sha256,
                "days_left": days(material.identity.not_after),
            },
            "trusted_cas": material.ca_expiry.iter().map(|(sha, not_after)| {
                serde_json::json!({ "sha256": sha, "days_left": days(*not_after) })
            }).collect::<Vec<_>>(),
            "tunnels": config.tunnels.iter().map(|t| {
                serde_json::json!({ "service": t.service, "listen": t.listen.to_string(), "allow_sources": t.allow_sources.iter().map(ToString::to_string).collect::<Vec<_>>() })
            }).collect::<Vec<_>>(),
            "exports": config.exports.iter().map(|e| {
                serde_json::json!({ "service": e.service, "target": e.target })
            }).collect::<Vec<_>>(),
            "spool": config.spool.is_some(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!("ok: {}", config.path.display());
    println!(
        "  pool {} paired with {} in {}",
        config.gateway.pool,
        config.gateway.peer_pool,
        policy.path.display()
    );
    println!(
        "  certificate {} (sha256 {}) valid for {} more days",
        config.tls.cert.display(),
        material.identity.sha256,
        days(material.identity.not_after)
    );
    for (sha, not_after) in &material.ca_expiry {
        println!(
            "  trusted CA sha256 {sha} valid for {} more days",
            days(*not_after)
        );
    }
    for t in &config.tunnels {
        println!(
            "  tunnel {} on {} for {} source network(s)",
            t.service,
            t.listen,
            t.allow_sources.len()
        );
    }
    for e in &config.exports {
        println!("  export {} to {}", e.service, e.target);
    }
    Ok(())
}

pub fn demo(args: DemoArgs) -> Result<(), Failure> {
    // The demo drives this very binary, as an operator would.
    let exe = std::env::current_exe()
        .map_err(|e| Failure::problem(format!("cannot find the pairgate binary: {e}")))?;
    pairgate_lab::demo::run(&exe, args.dir, args.bulk_mib).map_err(|e| Failure::Problem(anyhow!(e)))
}
