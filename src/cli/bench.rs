//! `pairgate bench`: pairgate side by side with HAProxy and stunnel.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::{Args, ValueEnum};

use super::Failure;
use pairgate_lab::bench::{self, BenchError, Measure, Options, Rival};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Also run the same load against an equivalent rival proxy pair (repeatable).
    #[arg(long = "vs", value_enum)]
    pub vs: Vec<RivalArg>,
    /// Short run (one round, shorter phases): a smoke test, under ~30 s.
    #[arg(long)]
    pub quick: bool,
    /// Print the report as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Interleaved rounds whose medians are reported (default 3; 1 with --quick).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Run only these measurements (repeatable), e.g. while profiling.
    #[arg(long, value_enum)]
    pub only: Vec<MeasureArg>,
    /// Keep certificates, configs and logs in DIR (default: a temporary folder, removed).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Instead of the comparison: SECS of open/close churn through pairgate,
    /// sampling both gateways' memory (e.g. 600 for the 10-minute soak).
    #[arg(long, value_name = "SECS")]
    pub soak: Option<u64>,
    /// Seconds of nothing over which each pair's idle CPU is measured, every
    /// round (default 30; 5 with --quick).
    #[arg(long, value_name = "SECS")]
    pub idle_secs: Option<u64>,
    /// Instead of the comparison: N bursts of 2,000 concurrent connections
    /// (500 with --quick) through pairgate and each --vs rival, sampling
    /// both processes' memory while held and after each burst.
    #[arg(long, value_name = "N", conflicts_with = "soak")]
    pub bursts: Option<usize>,
    /// Instead of the comparison: a gateway serving N tunnels, timed from
    /// SIGHUP to the applied reload (one tunnel added or removed each time,
    /// 20 reloads; 6 with --quick) while a client keeps connecting.
    #[arg(long, value_name = "N", conflicts_with_all = ["soak", "bursts"])]
    pub reload: Option<usize>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RivalArg {
    Haproxy,
    Stunnel,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MeasureArg {
    Bulk,
    Latency,
    Connect,
    Memory,
    Idle,
}

pub fn bench(args: BenchArgs) -> Result<(), Failure> {
    // The lab drives this very binary, as an operator would.
    let exe = std::env::current_exe()
        .map_err(|e| Failure::problem(format!("cannot find the pairgate binary: {e}")))?;
    let mut rivals = Vec::new();
    for r in args.vs {
        let rival = match r {
            RivalArg::Haproxy => Rival::Haproxy,
            RivalArg::Stunnel => Rival::Stunnel,
        };
        if !rivals.contains(&rival) {
            rivals.push(rival);
        }
    }
    if let Some(count) = args.bursts {
        let report = bench::bursts::run(&exe, args.dir.as_deref(), &rivals, count, args.quick)
            .map_err(failure)?;
        print_report(&report, args.json, report.render())?;
        return Ok(());
    }
    if let Some(tunnels) = args.reload {
        let reloads = if args.quick { 6 } else { 20 };
        let report = bench::reload::run(&exe, args.dir.as_deref(), tunnels.max(1), reloads)
            .map_err(failure)?;
        print_report(&report, args.json, report.render())?;
        return Ok(());
    }
    if let Some(secs) = args.soak {
        let report = bench::soak::run(&exe, args.dir.as_deref(), secs, 8)
            .map_err(|e| Failure::Problem(anyhow!(e)))?;
        print_report(&report, args.json, report.render())?;
        return Ok(());
    }
    let only = args
        .only
        .iter()
        .map(|m| match m {
            MeasureArg::Bulk => Measure::Bulk,
            MeasureArg::Latency => Measure::Latency,
            MeasureArg::Connect => Measure::Connect,
            MeasureArg::Memory => Measure::Memory,
            MeasureArg::Idle => Measure::Idle,
        })
        .collect();
    let options = Options {
        exe,
        rivals,
        quick: args.quick,
        rounds: args.rounds,
        only,
        idle_secs: args.idle_secs,
        dir: args.dir,
        command: std::env::args()
            .enumerate()
            .map(|(i, a)| if i == 0 { "pairgate".to_owned() } else { a })
            .collect::<Vec<_>>()
            .join(" "),
    };
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; its numbers mean little (cargo build --release)");
    }
    let report = bench::run(&options).map_err(failure)?;
    print_report(&report, args.json, report.render())
}

/// Prints a report as JSON (`--json`) or as its rendered text.
fn print_report<R: serde::Serialize>(report: &R, json: bool, text: String) -> Result<(), Failure> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{text}");
    }
    Ok(())
}

fn failure(e: BenchError) -> Failure {
    match e {
        BenchError::Usage(_) => Failure::Invalid(anyhow!(e)),
        e => Failure::Problem(anyhow!(e)),
    }
}
