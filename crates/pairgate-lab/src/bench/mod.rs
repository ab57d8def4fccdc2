//! `pairgate bench`: pairgate against the backends directly and against
//! rival proxy pairs (HAProxy, stunnel), under the same load, on loopback.
//!
//! Why a tool and not a test: speed is measured, never asserted. The issue
//! (6) states its targets as ratios against HAProxy measured side by side,
//! so the tool runs every subject under identical load, interleaved — round
//! 1: direct, pairgate, haproxy, stunnel; round 2: the same order again … —
//! so that a noisy neighbour on a shared machine hits all subjects alike, and
//! reports the medians over rounds.
//!
//! Flow: [`subjects::Lab`] makes a PKI and spool keys with the `pairgate`
//! CLI and starts an echo and a discard backend in this process; each round
//! starts every subject fresh ([`subjects::Running`]: a pairgate pair as two
//! `pairgate run` child processes configured as operators run them — spool,
//! outbox, admin endpoint, peer link — or a rival pair from [`rivals`]),
//! checks that it relays, runs the [`load`] generators (idle-connection
//! [`memory`] first, while the processes are fresh, then latency, connection
//! rate, bulk with its CPU per GB, and last the [`cost`] of doing nothing),
//! and stops it. [`report`] turns the rounds into medians, [`goals`] into
//! ratios and verdicts. `--soak` ([`soak`]) and `--bursts` ([`bursts`]) are
//! separate modes.
//!
//! Every child process is killed when its owner is dropped, so an error
//! anywhere leaves nothing running; all addresses are on 127.0.0.1.

pub mod bursts;
pub mod cost;
pub mod goals;
pub mod load;
pub mod memory;
pub mod procfs;
pub mod reload;
pub mod report;
pub mod rivals;
pub mod soak;
mod spool;
pub mod subjects;

use std::path::{Path, PathBuf};
use std::time::Duration;

use report::{Figures, Machine, Report, SubjectResult};
pub use rivals::Rival;
use subjects::{Lab, Running};

use crate::{LabError, Pairgate};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: {source} (the subject stopped relaying; see the logs in the bench folder)")]
    Load {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: {detail}")]
    Mismatch { what: String, detail: String },
    #[error(
        "`{program}` is not installed; install it (Debian: apt-get install {package}) or drop --vs"
    )]
    RivalMissing {
        program: &'static str,
        package: &'static str,
    },
    #[error("{rival} did not become ready: {detail}; see {}", log.display())]
    RivalNotReady {
        rival: &'static str,
        log: PathBuf,
        detail: String,
    },
    #[error("{0}")]
    Usage(String),
}

/// One kind of measurement, for `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Bulk,
    Latency,
    Connect,
    Memory,
    Idle,
}

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The `pairgate` binary under test (`pairgate bench` passes itself).
    pub exe: PathBuf,
    pub rivals: Vec<Rival>,
    pub quick: bool,
    /// Default: 3, or 1 with `quick`.
    pub rounds: Option<usize>,
    /// Empty: everything.
    pub only: Vec<Measure>,
    /// Seconds of nothing over which idle CPU is measured (default: 30, or
    /// 5 with `quick`).
    pub idle_secs: Option<u64>,
    /// Where to put certificates, configs and logs (kept); default: a
    /// temporary folder, removed afterwards.
    pub dir: Option<PathBuf>,
    /// The command line, for the report.
    pub command: String,
}

/// Durations and counts of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub rounds: usize,
    pub bulk: Duration,
    pub rtt_samples: usize,
    pub conn: Duration,
    pub conn_workers: usize,
    pub idle_conns: usize,
    /// The idle-CPU window.
    pub idle: Duration,
    pub only: Vec<Measure>,
}

impl Plan {
    /// The plan for `options`.
    ///
    /// # Errors
    /// When `--rounds` or `--idle-secs` is 0.
    pub fn new(options: &Options) -> Result<Plan, BenchError> {
        let rounds = options.rounds.unwrap_or(if options.quick { 1 } else { 3 });
        if rounds == 0 {
            return Err(BenchError::Usage("--rounds must be at least 1".into()));
        }
        let idle = options
            .idle_secs
            .unwrap_or(if options.quick { 5 } else { 30 });
        if idle == 0 {
            return Err(BenchError::Usage("--idle-secs must be at least 1".into()));
        }
        let (secs, rtt_samples, idle_conns) = if options.quick {
            (0.5, 1000, 200)
        } else {
            (2.0, 5000, 1000)
        };
        Ok(Plan {
            rounds,
            bulk: Duration::from_secs_f64(secs),
            rtt_samples,
            conn: Duration::from_secs_f64(secs),
            conn_workers: 8,
            idle_conns,
            idle: Duration::from_secs(idle),
            only: options.only.clone(),
        })
    }

    fn wants(&self, m: Measure) -> bool {
        self.only.is_empty() || self.only.contains(&m)
    }
}

/// Runs the benchmark and returns what it found. Progress goes to stderr.
///
/// # Errors
/// When a subject cannot be started or stops relaying under load.
pub fn run(options: &Options) -> Result<Report, BenchError> {
    let plan = Plan::new(options)?;
    let exe = options.exe.clone();
    let runtime = runtime()?;
    let ours = Pairgate::new(&exe).version()?;
    let ours = ours.strip_prefix("pairgate ").unwrap_or(&ours).to_owned();
    let mut versions = vec![String::new(), ours];
    for rival in &options.rivals {
        versions.push(rivals::version(*rival)?);
    }
    let (dir, _cleanup) = workdir(options.dir.as_deref())?;
    let ticks = procfs::ticks_per_sec();
    let rounds = runtime.block_on(run_rounds(&dir, &exe, &options.rivals, &plan, ticks))?;
    let mut report = Report {
        date: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        command: options.command.clone(),
        machine: machine(),
        rounds: plan.rounds,
        quick: options.quick,
        subjects: rounds
            .into_iter()
            .zip(versions)
            .map(|((name, rounds), version)| SubjectResult {
                name,
                version,
                median: report::medians(&rounds),
                rounds,
            })
            .collect(),
        verdicts: Vec::new(),
        spool: spool::measure(&dir, &exe, options.quick),
    };
    report.conclude();
    Ok(report)
}

/// A runtime for the load generators and backends.
fn runtime() -> Result<tokio::runtime::Runtime, BenchError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| BenchError::Io {
            what: "start the runtime".into(),
            source,
        })
}

/// Removes a temporary bench folder when dropped.
struct Cleanup(Option<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn workdir(dir: Option<&Path>) -> Result<(PathBuf, Cleanup), BenchError> {
    let (dir, cleanup) = match dir {
        Some(d) => (d.to_owned(), Cleanup(None)),
        None => {
            let d = std::env::temp_dir().join(format!("pairgate-bench-{}", std::process::id()));
            (d.clone(), Cleanup(Some(d)))
        }
    };
    if dir.join("certs").join("ca.crt").exists() {
        return Err(BenchError::Usage(format!(
            "{} already holds a bench run; pass another --dir",
            dir.display()
        )));
    }
    std::fs::create_dir_all(&dir).map_err(|source| BenchError::Io {
        what: format!("create {}", dir.display()),
        source,
    })?;
    Ok((dir, cleanup))
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    Machine {
        nproc: std::thread::available_parallelism().map_or(1, usize::from),
        cpu_model: report::cpu_model(&cpuinfo).unwrap_or_else(|| "unknown CPU".into()),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    }
}

/// Every round, every subject in order; returns (name, figures per round).
async fn run_rounds(
    dir: &Path,
    exe: &Path,
    rivals: &[Rival],
    plan: &Plan,
    ticks_per_sec: f64,
) -> Result<Vec<(String, Vec<Figures>)>, BenchError> {
    let echo = crate::echo_backend().await?;
    let discard = crate::discard_backend().await?;
    let lab = tokio::task::block_in_place(|| Lab::create(dir, exe, echo, discard))?;
    let mut names = vec!["direct".to_owned(), "pairgate".to_owned()];
    names.extend(rivals.iter().map(|r| r.name().to_owned()));
    let mut results: Vec<(String, Vec<Figures>)> =
        names.iter().map(|n| (n.clone(), Vec::new())).collect();
    for round in 1..=plan.rounds {
        for (i, name) in names.iter().enumerate() {
            eprintln!("round {round}/{}: {name}", plan.rounds);
            let running = tokio::task::block_in_place(|| match i {
                0 => Ok(Running::direct(&lab)),
                1 => Running::pairgate(&lab),
                _ => Running::rival(&lab, rivals[i - 2]),
            })?;
            let figures = measure(&running, plan, ticks_per_sec).await?;
            tokio::task::block_in_place(|| drop(running));
            results[i].1.push(figures);
            // Let closed connections and exited processes settle.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    Ok(results)
}

/// Waits until `addr` relays a verified echo (at most ~5 s).
async fn ready(running: &Running) -> Result<(), BenchError> {
    let mut last = None;
    for _ in 0..50 {
        match load::probe(running.echo).await {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(BenchError::Load {
        what: format!("{} does not relay to the echo backend", running.name),
        source: last.unwrap_or_else(|| std::io::Error::other("no answer")),
    })
}

/// One subject, one round: memory first (fresh processes), then latency,
/// connection rate, bulk (with the CPU it cost), and last idle CPU (after
/// the traffic, as a gateway idles between the sync windows).
async fn measure(
    running: &Running,
    plan: &Plan,
    ticks_per_sec: f64,
) -> Result<Figures, BenchError> {
    ready(running).await?;
    let mut f = Figures::default();
    let pids = running.pids();
    if plan.wants(Measure::Memory) && !pids.is_empty() {
        memory::per_idle_conn(running, &pids, plan.idle_conns, &mut f).await?;
    }
    if plan.wants(Measure::Latency) {
        let times = load::latency(running.echo, plan.rtt_samples).await?;
        f.rtt_p50_us = load::percentile(&times, 50.0);
        f.rtt_p99_us = load::percentile(&times, 99.0);
    }
    if plan.wants(Measure::Connect) {
        let rate = load::connect_rate(running.echo, plan.conn_workers, plan.conn).await?;
        f.conn_per_s = Some(rate.per_sec);
        f.conn_failed = Some(rate.failed);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if plan.wants(Measure::Bulk) {
        let (mb_s, cpu) = cost::bulk(running.discard, 1, plan.bulk, &pids, ticks_per_sec).await?;
        (f.bulk_1_mb_s, f.cpu_s_per_gb_1) = (Some(mb_s), cpu);
        let (mb_s, cpu) = cost::bulk(running.discard, 4, plan.bulk, &pids, ticks_per_sec).await?;
        (f.bulk_4_mb_s, f.cpu_s_per_gb_4) = (Some(mb_s), cpu);
    }
    if plan.wants(Measure::Idle) && !pids.is_empty() {
        // Let closed connections, deferred work and log writers finish.
        tokio::time::sleep(IDLE_SETTLE).await;
        eprintln!(
            "  {}: {} s of nothing, counting CPU",
            running.name,
            plan.idle.as_secs()
        );
        let each = cost::idle(&pids, plan.idle, ticks_per_sec).await?;
        f.idle_cpu_pct = each.into_iter().reduce(f64::max);
    }
    Ok(f)
}

/// Quiet time between the last traffic and the idle-CPU window.
const IDLE_SETTLE: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        let full = Plan::new(&Options::default()).unwrap();
        assert_eq!((full.rounds, full.idle_conns), (3, 1000));
        let quick = Plan::new(&Options {
            quick: true,
            ..Options::default()
        })
        .unwrap();
        assert_eq!((quick.rounds, quick.idle_conns), (1, 200));
        assert!(quick.bulk < full.bulk);
        let zero = Options {
            rounds: Some(0),
            ..Options::default()
        };
        assert!(matches!(Plan::new(&zero), Err(BenchError::Usage(_))));
        let only = Plan::new(&Options {
            only: vec![Measure::Bulk],
            ..Options::default()
        })
        .unwrap();
        assert!(only.wants(Measure::Bulk) && !only.wants(Measure::Memory));
        assert!(full.wants(Measure::Memory));
    }

    #[test]
    fn idle_window() {
        let full = Plan::new(&Options::default()).unwrap();
        assert_eq!(full.idle, Duration::from_secs(30));
        let quick = Plan::new(&Options {
            quick: true,
            ..Options::default()
        })
        .unwrap();
        assert_eq!(quick.idle, Duration::from_secs(5));
        let set = Plan::new(&Options {
            idle_secs: Some(12),
            ..Options::default()
        })
        .unwrap();
        assert_eq!(set.idle, Duration::from_secs(12));
        let zero = Options {
            idle_secs: Some(0),
            ..Options::default()
        };
        assert!(matches!(Plan::new(&zero), Err(BenchError::Usage(_))));
        let only = Plan::new(&Options {
            only: vec![Measure::Idle],
            ..Options::default()
        })
        .unwrap();
        assert!(only.wants(Measure::Idle) && !only.wants(Measure::Bulk));
    }

    #[test]
    fn a_used_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("certs")).unwrap();
        std::fs::write(dir.path().join("certs/ca.crt"), "x").unwrap();
        assert!(matches!(
            workdir(Some(dir.path())),
            Err(BenchError::Usage(_))
        ));
        let fresh = dir.path().join("fresh");
        let (d, _c) = workdir(Some(&fresh)).unwrap();
        assert!(d.is_dir());
    }
}
