//! `pairgate run`, `check` and `demo`.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;

use super::Failure;
use pairgate::config::ExportTarget;
use pairgate::gateway::{self, GatewayError};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The site's gateway config (TOML).
    #[arg(long)]
    pub config: PathBuf,
    /// Take the listening sockets over from the instance running with this
    /// config (seamless upgrade): no connection attempt is refused; the old
    /// instance drains its connections and exits. Without a running
    /// instance, starts normally.
    #[arg(long)]
    pub takeover: bool,
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
    gateway::run_with(&args.config, args.takeover).map_err(classify)
}

/// Where the CRLs in force come from: `tls.crl`, or — without it — the
/// copy kept beside the audit log of a CRL taken from the peer over the
/// control channel (`from_peer`). `None`: no CRL at all.
fn crl_source(
    config: &pairgate::config::Config,
    material: &pairgate::tls::Material,
) -> Option<(PathBuf, bool)> {
    match &config.tls.crl {
        Some(path) => Some((path.clone(), false)),
        None if !material.crls.is_empty() => {
            Some((pairgate::tls::crl::kept_path(&config.audit.path), true))
        }
        None => None,
    }
}

/// The `crl` object of `check --json`: `null` when no CRL is in force.
fn crl_json(
    config: &pairgate::config::Config,
    material: &pairgate::tls::Material,
    now: time::OffsetDateTime,
) -> serde_json::Value {
    let Some((path, from_peer)) = crl_source(config, material) else {
        return serde_json::Value::Null;
    };
    let crls: Vec<serde_json::Value> = material
        .crls
        .iter()
        .map(|c| {
            let mut v = serde_json::to_value(c).unwrap_or_default();
            v["overdue"] = c.overdue(now).into();
            v
        })
        .collect();
    serde_json::json!({
        "path": path,
        "from_peer": from_peer,
        "crl_overdue": config.tls.crl_overdue.as_str(),
        "overdue": material.crl_overdue_at(now),
        "refused": material.crl_refused,
        "crls": crls,
    })
}

/// Warnings `check` prints on stderr (and lists in `--json`); exit stays 0.
fn check_warnings(
    config: &pairgate::config::Config,
    material: &pairgate::tls::Material,
    now: time::OffsetDateTime,
) -> Vec<String> {
    let mut warnings = config.wide_sources();
    if let Some(why) = &material.crl_refused {
        warnings.push(format!("tls.crl: {why}"));
    }
    for crl in material.crls.iter().filter(|c| c.overdue(now)) {
        let consequence = match config.tls.crl_overdue {
            pairgate::config::CrlOverdue::Warn => "still enforced (tls.crl_overdue = \"warn\")",
            pairgate::config::CrlOverdue::Deny => {
                "peers of this CA are REFUSED until it is refreshed (tls.crl_overdue = \"deny\")"
            }
        };
        warnings.push(format!(
            "tls.crl: the CRL of {} (number {}) is OVERDUE since {}: {consequence} — refresh it \
             with `pairgate ca crl --dir CA_DIR --refresh` and copy it to both sites",
            crl.issuer,
            crl.number,
            crl.next_update
                .map(super::cert::rfc3339)
                .unwrap_or_default()
        ));
    }
    warnings
}

pub fn check(args: CheckArgs) -> Result<(), Failure> {
    let (config, policy, material) = gateway::load(&args.config).map_err(classify)?;
    let now_t = time::OffsetDateTime::now_utc();
    let now = now_t.unix_timestamp();
    let days = |t: i64| (t - now).div_euclid(86_400);
    let warnings = check_warnings(&config, &material, now_t);
    for warning in &warnings {
        eprintln!("WARNING: {warning}");
    }
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
            "exports": config.exports.iter().map(|e| match &e.target {
                ExportTarget::Fixed(target) => serde_json::json!({ "service": e.service, "target": target }),
                ExportTarget::Carried(d) => serde_json::json!({
                    "service": e.service,
                    "destinations": d.nets.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "ports": d.ports,
                }),
            }).collect::<Vec<_>>(),
            "intercepts": config.intercepts.iter().map(|i| serde_json::json!({
                "service": i.service,
                "listen": i.listen.to_string(),
                "allow_sources": i.allow_sources.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "destinations": i.destinations.nets.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "ports": i.destinations.ports,
                "capture": i.capture,
            })).collect::<Vec<_>>(),
            "mark": config.socket_mark(),
            "spool": config.spool.is_some(),
            "crl": crl_json(&config, &material, now_t),
            "warnings": warnings,
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
    for i in &config.intercepts {
        let nets: Vec<String> = i
            .destinations
            .nets
            .iter()
            .map(ToString::to_string)
            .collect();
        println!(
            "  intercept {} on {} ({}) for {} source network(s) to [{}] ports {:?}",
            i.service,
            i.listen,
            i.capture.as_str(),
            i.allow_sources.len(),
            nets.join(", "),
            i.destinations.ports
        );
    }
    for e in &config.exports {
        println!("  export {} to {}", e.service, e.target);
    }
    if config.socket_mark() != 0 {
        println!(
            "  the gateway's own connections carry SO_MARK {:#x} (needs CAP_NET_ADMIN)",
            config.socket_mark()
        );
    }
    if let Some((path, from_peer)) = crl_source(&config, &material) {
        if from_peer {
            println!(
                "  CRL taken from the peer gateway (no tls.crl), kept at {}",
                path.display()
            );
        }
        for crl in &material.crls {
            let next = match crl.next_update {
                Some(t) if t < now_t => format!("{} (OVERDUE)", super::cert::rfc3339(t)),
                Some(t) => format!(
                    "{} ({} days)",
                    super::cert::rfc3339(t),
                    days(t.unix_timestamp())
                ),
                None => "none".to_owned(),
            };
            println!(
                "  CRL {} of {}: number {}, next update {next}",
                path.display(),
                crl.issuer,
                crl.number
            );
        }
        if material.crls.is_empty() {
            println!("  CRL {}: no CRL of a trusted CA", path.display());
        }
    }
    Ok(())
}

pub fn demo(args: DemoArgs) -> Result<(), Failure> {
    // The demo drives this very binary, as an operator would.
    let exe = std::env::current_exe()
        .map_err(|e| Failure::problem(format!("cannot find the pairgate binary: {e}")))?;
    pairgate_lab::demo::run(&exe, args.dir, args.bulk_mib).map_err(|e| Failure::Problem(anyhow!(e)))
}
