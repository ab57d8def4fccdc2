//! `pairgate status --config FILE [--json]`: ask the running gateway's admin
//! endpoint (`admin.listen`) for `/status` and show it.
//!
//! `--ready` asks `/readyz` instead: exit 0 when ready, 1 when not (each
//! reason printed) or unreachable — a health check for keepalived.
//!
//! Exit codes: 0 whenever the status was read — even if a direction is
//! `disconnected` or `lagging`, because reporting that state is the command's
//! job (scripts read `--json` and decide); 1 when the endpoint cannot be
//! reached or answers something that is not a status (the gateway is not
//! running, or `admin.listen` is wrong); 2 when the config is invalid or has
//! no `[admin]` section.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};

use pairgate::admin::client;
use pairgate::admin::{
    CertKind, LinkState, ReplicationState, ServiceRole, ServiceState, ServiceStatus, Status,
    CLOCK_SKEW_WARN_SECS,
};
use pairgate::audit::Direction;
use pairgate::config::Config;
use pairgate::pki::{Expiry, EXPIRY_WARNING_DAYS};

use super::Failure;

/// Certificates with fewer days left than this are flagged.

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The site's gateway config (TOML); its `admin.listen` is asked.
    #[arg(long)]
    pub config: PathBuf,
    /// Print the `/status` JSON exactly as the gateway sent it.
    #[arg(long)]
    pub json: bool,
    /// Ask `/readyz` instead: print its answer, exit 0 when the instance is
    /// ready for traffic, 1 when not (or unreachable) — for keepalived's
    /// `track_script` and other health checks.
    #[arg(long, conflicts_with = "json")]
    pub ready: bool,
}

pub fn status(args: StatusArgs) -> Result<(), Failure> {
    let config = Config::load(&args.config)?;
    let Some(admin) = config.admin.as_ref() else {
        return Err(Failure::Invalid(anyhow!(
            "{}: no [admin] section, so there is no endpoint to ask — add `[admin]` with `listen = \"127.0.0.1:9101\"` and restart the gateway",
            config.path.display()
        )));
    };
    let addr = admin.listen;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::problem(format!("cannot start the runtime: {e}")))?;
    let unreachable = |e: client::ClientError| {
        Failure::problem(format!(
            "{}: admin.listen = {addr}: {e}",
            config.path.display()
        ))
    };
    if args.ready {
        let reply = runtime
            .block_on(client::get(addr, "/readyz"))
            .map_err(unreachable)?;
        print!("{}", reply.body);
        return match reply.status {
            200 => Ok(()),
            503 => Err(Failure::problem(format!(
                "{}: the gateway at {addr} is not ready (reasons above)",
                config.path.display()
            ))),
            other => Err(unreachable(client::ClientError::Status {
                addr,
                path: "/readyz".into(),
                status: other,
            })),
        };
    }
    if args.json {
        let reply = runtime
            .block_on(client::get(addr, "/status"))
            .map_err(unreachable)?;
        if reply.status != 200 {
            return Err(unreachable(client::ClientError::Status {
                addr,
                path: "/status".into(),
                status: reply.status,
            }));
        }
        println!("{}", reply.body.trim_end());
        return Ok(());
    }
    let (_, status) = runtime
        .block_on(client::status(addr))
        .map_err(unreachable)?;
    print!("{}", render(&status));
    Ok(())
}

/// `2025-01-01 00:30:00 UTC`: readable, and unambiguous about the zone.
fn when(t: time::OffsetDateTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| pairgate::audit::format_ts(t))
}

fn duration(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min {} s", s / 60, s % 60),
        s if s < 172_800 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        s => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// The readable report.
fn render(status: &Status) -> String {
    let mut out = format!(
        "pairgate {} · {} ↔ {} · running {} (since {})\n",
        status.version,
        status.pool,
        status.peer_pool,
        duration(status.uptime_secs),
        when(status.started)
    );
    let link = &status.peer_link;
    let state = match link.state {
        LinkState::Up => "up",
        LinkState::Down => "DOWN",
        LinkState::Unknown => "unknown (nothing sent or received yet)",
    };
    out.push_str(&format!("peer link: {state}"));
    if let Some(since) = link.since {
        out.push_str(&format!(" since {}", when(since)));
    }
    // The error is news only while the link is down; once it is back up,
    // an old error reads as a current problem.
    if link.state == LinkState::Down {
        if let Some(error) = &link.last_error {
            out.push_str(&format!(" — {error}"));
        }
    }
    out.push('\n');
    if let Some(skew) = link.clock_skew_secs {
        out.push_str(&clock(skew));
    }
    out.push_str(&format!(
        "connections: {} active, {} allowed, {} denied since start\n\n",
        status.connections.active,
        status.connections.allowed_total,
        status.connections.denied_total
    ));

    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "replication",
        "state",
        "lag",
        "waiting",
        "oldest waiting since",
    ]);
    for row in &status.directions {
        let way = match row.direction {
            Direction::Outbound => format!("outbound ({} → {})", status.pool, status.peer_pool),
            Direction::Inbound => format!("inbound ({} → {})", status.peer_pool, status.pool),
        };
        let state = match row.state {
            ReplicationState::Steady => "steady".to_owned(),
            ReplicationState::Lagging => "LAGGING".to_owned(),
            ReplicationState::Disconnected => "DISCONNECTED".to_owned(),
        };
        table.add_row([
            way,
            state,
            duration(row.lag_secs),
            format!("{} files, {} bytes", row.waiting_files, row.waiting_bytes),
            row.oldest_waiting_since
                .map_or_else(|| "-".to_owned(), when),
        ]);
    }
    out.push_str(&format!("{table}\n"));
    out.push_str(&format!(
        "replication rows judge the store-and-forward spool only (steady = no file waits longer than the sync interval, {} s);\nlag counts against the RPO (5 min SfB, 30 min Lync 2013). Tunnelled services (SMB, HTTPS) are judged below.\n\n",
        status.sync_interval_secs
    ));
    out.push_str(&services(status));
    if !status.spool_conditions.is_empty() {
        out.push_str("spool needs attention:\n");
        for c in &status.spool_conditions {
            let what = c
                .name
                .as_ref()
                .map(|n| format!(" {n}"))
                .or_else(|| c.key_id.as_ref().map(|k| format!(" key {k}")))
                .unwrap_or_default();
            out.push_str(&format!(
                "  {}{what} ({} file(s), since {}): {}\n",
                c.condition,
                c.files,
                when(c.since),
                c.detail
            ));
        }
        out.push('\n');
    }

    let mut certs = Table::new();
    certs.load_preset(UTF8_FULL_CONDENSED).set_header([
        "certificate",
        "pool",
        "sha256",
        "not after",
        "days left",
    ]);
    for c in &status.certificates {
        let kind = match c.kind {
            CertKind::Own => "own",
            CertKind::Peer => "peer",
            CertKind::Ca => "CA",
        };
        let d = c.days_left;
        let days = match Expiry::of_days_left(d, EXPIRY_WARNING_DAYS) {
            Expiry::Expired => format!("{d} EXPIRED"),
            Expiry::ExpiresSoon => format!("{d} RENEW"),
            Expiry::Valid | Expiry::NotYetValid => d.to_string(),
        };
        certs.add_row([
            kind.to_owned(),
            c.pool.clone().unwrap_or_else(|| "-".to_owned()),
            c.sha256.chars().take(16).collect::<String>(),
            when(c.not_after),
            days,
        ]);
    }
    if status.certificates.is_empty() {
        out.push_str("certificates: none reported\n");
    } else {
        out.push_str(&format!("{certs}\n"));
    }
    out.push_str(&trust_rows(status));
    out
}

/// The audit log's health and the CRLs in force.
fn trust_rows(status: &Status) -> String {
    let mut out = String::new();
    match &status.audit {
        Some(a) if a.failing => {
            let then = if a.on_failure == "refuse" {
                "new connections are refused until it is written again"
            } else {
                "connections continue UNAUDITED (audit.on_failure = \"continue\")"
            };
            out.push_str(&format!(
                "audit log: FAILING — {}; {then}\n",
                a.detail.as_deref().unwrap_or("cannot be written")
            ));
        }
        Some(_) => out.push_str("audit log: written\n"),
        None => {}
    }
    match &status.crl {
        Some(crl) => {
            for c in &crl.crls {
                let next = c.next_update.map_or_else(
                    || "no next update".to_owned(),
                    |t| format!("next update {}", when(t)),
                );
                let flag = if c.overdue {
                    format!(" OVERDUE (tls.crl_overdue = \"{}\")", crl.crl_overdue)
                } else {
                    String::new()
                };
                out.push_str(&format!(
                    "CRL of {}: number {}, {next}{flag}\n",
                    c.issuer, c.number
                ));
            }
            if let Some(why) = &crl.refused {
                out.push_str(&format!("CRL refused: {why}\n"));
            }
        }
        None => out.push_str("CRL: none in force\n"),
    }
    out
}

/// The peer's clock against ours, flagged when it is far enough off to
/// make certificates look not yet valid or expired.
fn clock(skew: f64) -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let off = skew.abs().round() as u64;
    let way = if skew < 0.0 { "behind" } else { "ahead of" };
    if skew.abs() > CLOCK_SKEW_WARN_SECS {
        format!(
            "peer clock: {} {way} ours — OFF: certificates look not yet valid or expired across the pair, lag figures drift; fix time synchronisation (NTP) at both sites\n",
            duration(off)
        )
    } else {
        format!("peer clock: in step ({skew:+.1} s)\n")
    }
}

fn bytes(n: u64) -> String {
    match n {
        n if n < 10_000 => format!("{n} B"),
        n if n < 10_000_000 => format!("{} kB", n / 1000),
        n => format!("{} MB", n / 1_000_000),
    }
}

/// The per-service table: does each tunnelled / exported service work?
fn services(status: &Status) -> String {
    if status.services.is_empty() {
        return "services: no tunnel or export configured\n\n".to_owned();
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "service",
        "state",
        "last success",
        "last failure",
        "last interval",
    ]);
    for row in &status.services {
        let way = match row.role {
            ServiceRole::Tunnel => format!("{} (tunnel → {})", row.service, status.peer_pool),
            ServiceRole::Export => format!("{} (export ← {})", row.service, status.peer_pool),
        };
        table.add_row([
            way,
            service_state(row).to_owned(),
            row.last_success.as_ref().map_or_else(
                || "-".to_owned(),
                |s| {
                    format!(
                        "{}, {} in / {} out",
                        when(s.at),
                        bytes(s.bytes_in),
                        bytes(s.bytes_out)
                    )
                },
            ),
            row.last_failure.as_ref().map_or_else(
                || "-".to_owned(),
                |f| format!("{}: {}", when(f.at), f.reason),
            ),
            format!(
                "{} ok, {} failed",
                row.sessions_in_interval.ok, row.sessions_in_interval.failed
            ),
        ]);
    }
    let mut out = format!("{table}\n");
    out.push_str(&format!(
        "state = how the last session that ended went; last interval = sessions ended in the last {} s\n",
        status.sync_interval_secs
    ));
    if let Some(f) = status
        .services
        .iter()
        .filter(|r| r.state == ServiceState::Failing)
        .filter_map(|r| r.last_failure.as_ref().map(|f| (r, f)))
        .next()
    {
        let (row, failure) = f;
        if let Some(detail) = &failure.detail {
            out.push_str(&format!("{} failing: {detail}\n", row.service));
        }
    }
    out.push('\n');
    out
}

fn service_state(row: &ServiceStatus) -> &'static str {
    match row.state {
        ServiceState::Ok => "ok",
        ServiceState::Failing => "FAILING",
        ServiceState::Idle => "idle (no session yet)",
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
