//! `pairgate audit …`: verify the hash chain, summarize, and query a log.
//!
//! All work is in `pairgate::audit`; this file parses flags, opens the file
//! and prints. `verify` exits 1 naming the first altered line; an unreadable
//! file or a bad flag value exits 2.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use pairgate::audit::{self, Counts, Fault, Filter, Record, Summary, VerifyError};
use pairgate::policy::Verdict;
use time::OffsetDateTime;

use super::Failure;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of a log; exit 1 naming the first altered line.
    Verify(VerifyArgs),
    /// Connections allowed and denied, and bytes, per peer pool and service.
    Summary(SummaryArgs),
    /// Print the lines that match all the given filters.
    Query(QueryArgs),
}

#[derive(Debug, Args)]
pub struct LogArg {
    /// The audit log (JSON lines).
    #[arg(long, value_name = "FILE")]
    pub log: PathBuf,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub log: LogArg,
    /// Print the outcome as one JSON object (the exit code is the same).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SummaryArgs {
    #[command(flatten)]
    pub log: LogArg,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DecisionArg {
    Allow,
    Deny,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub log: LogArg,
    /// Only lines whose `peer_pool` is this pool.
    #[arg(long, value_name = "POOL")]
    pub peer: Option<String>,
    /// Only lines whose `service` is this service.
    #[arg(long, value_name = "SERVICE")]
    pub service: Option<String>,
    /// Only connection decisions of this kind.
    #[arg(long, value_enum, value_name = "DECISION")]
    pub decision: Option<DecisionArg>,
    /// Only lines whose `client_addr` (the Front End) is this address: `IP` or `IP:PORT`.
    #[arg(long, value_name = "ADDR")]
    pub client: Option<String>,
    /// Only lines whose `orig_dst` (the server an intercepted connection addressed) is
    /// this address: `IP` or `IP:PORT`.
    #[arg(long = "orig-dst", value_name = "ADDR")]
    pub orig_dst: Option<String>,
    /// From this time on: RFC 3339, a UTC date, or how long ago (90s, 15m, 1h, 2d, 1w).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Up to this time (inclusive), same forms as --since.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Print the matching lines verbatim (JSON lines) instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn audit(command: AuditCommand) -> Result<(), Failure> {
    match command {
        AuditCommand::Verify(args) => verify(&args.log.log, args.json),
        AuditCommand::Summary(args) => summary(&args.log.log, args.json),
        AuditCommand::Query(args) => query(args),
    }
}

fn open(path: &Path) -> anyhow::Result<BufReader<File>> {
    let file = File::open(path).with_context(|| {
        format!(
            "cannot read the audit log {}; check the path",
            path.display()
        )
    })?;
    Ok(BufReader::with_capacity(1 << 20, file))
}

fn verify(path: &Path, json: bool) -> Result<(), Failure> {
    let file = path.display();
    match audit::verify(open(path)?) {
        Ok(chain) => {
            if json {
                let doc = serde_json::json!({
                    "log": path, "ok": true, "lines": chain.lines, "head": hex::encode(chain.head)
                });
                println!("{doc}");
            } else {
                println!(
                    "ok: {} lines, chain intact, head {}",
                    chain.lines,
                    hex::encode(chain.head)
                );
            }
            Ok(())
        }
        Err(VerifyError::Broken(b)) => {
            if json {
                let doc = serde_json::json!({
                    "log": path, "ok": false, "line": b.line, "fault": b.fault.to_string()
                });
                println!("{doc}");
            }
            let why = match b.fault {
                Fault::Incomplete(_) => {
                    "the last write was cut short (crash or full disk); the gateway cuts it off \
                     and records `log_repaired` when it next opens the log"
                }
                _ => "the log was altered at or before this line",
            };
            Err(Failure::problem(format!(
                "{file}:{}: {} — {why}",
                b.line, b.fault
            )))
        }
        Err(e @ VerifyError::Read { .. }) => Err(anyhow::anyhow!("{file}: {e}").into()),
    }
}

fn summary(path: &Path, json: bool) -> Result<(), Failure> {
    let s = audit::summary(open(path)?)
        .with_context(|| format!("cannot read the audit log {}", path.display()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print_summary(&s);
    }
    if s.unreadable > 0 {
        tracing::warn!(
            lines = s.unreadable,
            "skipped lines that are not JSON objects; run `pairgate audit verify`"
        );
    }
    Ok(())
}

fn print_summary(s: &Summary) {
    let mut table = pairgate::table::new();
    table.set_header([
        "peer pool",
        "service",
        "allowed",
        "denied",
        "denial reasons",
        "closed",
        "bytes in",
        "bytes out",
        "first seen",
        "last seen",
    ]);
    let row =
        |peer: &str, service: &str, c: &Counts, first: &Option<String>, last: &Option<String>| {
            let reasons: Vec<String> = c
                .denied_by_reason
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            vec![
                peer.to_owned(),
                service.to_owned(),
                c.allowed.to_string(),
                c.denied.to_string(),
                reasons.join(", "),
                c.closed.to_string(),
                c.bytes_in.to_string(),
                c.bytes_out.to_string(),
                first.clone().unwrap_or_default(),
                last.clone().unwrap_or_default(),
            ]
        };
    for f in &s.flows {
        let peer = f.peer_pool.as_deref().unwrap_or("(unknown)");
        let service = f.service.as_deref().unwrap_or("(none)");
        table.add_row(row(peer, service, &f.counts, &f.first_seen, &f.last_seen));
    }
    table.add_row(row("total", "", &s.totals, &s.first_ts, &s.last_ts));
    println!("{table}");
    let events: Vec<String> = s.events.iter().map(|(e, n)| format!("{e} {n}")).collect();
    println!(
        "{} lines ({} unreadable); events: {}",
        s.lines,
        s.unreadable,
        events.join(", ")
    );
}

fn query(args: QueryArgs) -> Result<(), Failure> {
    let now = OffsetDateTime::now_utc();
    let time = |flag: &str, spec: &Option<String>| -> Result<_, Failure> {
        spec.as_deref()
            .map(|s| audit::parse_time(s, now))
            .transpose()
            .map_err(|e| Failure::Invalid(anyhow::anyhow!("--{flag}: {e}")))
    };
    let filter = Filter {
        peer: args.peer,
        service: args.service,
        decision: args.decision.map(|d| match d {
            DecisionArg::Allow => Verdict::Allow,
            DecisionArg::Deny => Verdict::Deny,
        }),
        client: args.client,
        orig_dst: args.orig_dst,
        since: time("since", &args.since)?,
        until: time("until", &args.until)?,
    };
    let reader = open(&args.log.log)?;
    let mut out = BufWriter::new(io::stdout().lock());
    let json = args.json;
    if !json {
        table_row(
            &mut out,
            [
                "ts",
                "event",
                "peer_pool",
                "service",
                "decision",
                "reason",
                "bytes",
            ],
        )?;
    }
    let result = audit::query(reader, &filter, |line, record| {
        if json {
            out.write_all(line)?;
            out.write_all(b"\n")
        } else {
            table_row(&mut out, cells(record))
        }
    });
    let stats = match result.and_then(|s| out.flush().map(|()| s)) {
        Ok(stats) => stats,
        // `… | head`: the reader has seen enough.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!(
                    "cannot read the audit log {}",
                    args.log.log.display()
                ))
                .into())
        }
    };
    if !json {
        println!("{} of {} lines matched", stats.matched, stats.lines);
    }
    if stats.unreadable > 0 {
        tracing::warn!(
            lines = stats.unreadable,
            "skipped lines that are not JSON objects; run `pairgate audit verify`"
        );
    }
    Ok(())
}

fn cells(r: &Record<'_>) -> [String; 7] {
    let text = |v: &Option<std::borrow::Cow<'_, str>>| v.as_deref().unwrap_or("-").to_owned();
    let bytes = match (r.bytes_in, r.bytes_out) {
        (None, None) => "-".to_owned(),
        (i, o) => format!("{}/{}", i.unwrap_or(0), o.unwrap_or(0)),
    };
    [
        text(&r.ts),
        text(&r.event),
        text(&r.peer_pool),
        text(&r.service),
        text(&r.decision),
        text(&r.reason),
        bytes,
    ]
}

/// One row of the query table: fixed columns, streamed (a log can match
/// millions of lines, too many to lay out as one table in memory).
fn table_row<W: Write, S: AsRef<str>>(out: &mut W, c: [S; 7]) -> io::Result<()> {
    let c = c.map(|s| s.as_ref().to_owned());
    writeln!(
        out,
        "{:<27} {:<14} {:<24} {:<11} {:<8} {:<20} {}",
        c[0], c[1], c[2], c[3], c[4], c[5], c[6]
    )
}
