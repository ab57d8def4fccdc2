//! `pairgate bench --bursts N`: repeated bursts of concurrent connections
//! through each subject — 2,000 opened at once, each verified with a round
//! trip, held until all are open, then closed — sampling the resident
//! memory of both proxy processes while they are held and after they are
//! gone. Memory that does not come back after a burst grows burst by burst;
//! flat "after" figures show it does not.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::memory::rss;
use super::rivals::{self, Rival};
use super::subjects::{Lab, Running};
use super::{ready, runtime, workdir, BenchError};

/// Connections per burst (quick: fewer).
pub const BURST: usize = 2000;
const BURST_QUICK: usize = 500;
/// How long one connection of a burst may take to open and echo.
const OPEN_TIMEOUT: Duration = Duration::from_secs(60);
/// Quiet time after closing a burst, before memory is read: well past
/// jemalloc's 1 s page decay (`.cargo/config.toml`), so the reading is not
/// taken half-way through returning the burst's pages.
const SETTLE: Duration = Duration::from_secs(3);

/// One burst through one subject.
#[derive(Debug, Clone, Serialize)]
pub struct Burst {
    /// Connections opened and verified (of `size`).
    pub opened: usize,
    pub failed: usize,
    /// RSS of both processes while every opened connection was held, KiB.
    pub rss_held_kib: u64,
    /// RSS of both processes after they were all closed, KiB.
    pub rss_after_kib: u64,
}

/// Every burst through one subject.
#[derive(Debug, Clone, Serialize)]
pub struct SubjectBursts {
    pub name: String,
    /// RSS of both processes before the first burst, KiB.
    pub rss_start_kib: u64,
    pub bursts: Vec<Burst>,
    /// `too_many_connections` denials in the audit logs over all bursts
    /// (pairgate only).
    pub evicted: Option<u64>,
}

/// What a bursts run found.
#[derive(Debug, Clone, Serialize)]
pub struct BurstReport {
    pub size: usize,
    pub subjects: Vec<SubjectBursts>,
}

impl BurstReport {
    pub fn render(&self) -> String {
        let mut out = format!(
            "bursts: {} concurrent connections at a time, each verified with a round trip; \
             RSS of both proxy processes (KiB)\n",
            self.size
        );
        for s in &self.subjects {
            let mut table = crate::table::new();
            table.set_header(["burst", "opened", "failed", "RSS held", "RSS after"]);
            for (i, b) in s.bursts.iter().enumerate() {
                table.add_row([
                    (i + 1).to_string(),
                    b.opened.to_string(),
                    b.failed.to_string(),
                    b.rss_held_kib.to_string(),
                    b.rss_after_kib.to_string(),
                ]);
            }
            let last = s.bursts.last().map_or(s.rss_start_kib, |b| b.rss_after_kib);
            let first = s
                .bursts
                .first()
                .map_or(s.rss_start_kib, |b| b.rss_after_kib);
            out += &format!(
                "\n{}: {} KiB before the first burst; after burst 1 → after the last: {:+} KiB{}\n{table}\n",
                s.name,
                s.rss_start_kib,
                last as i64 - first as i64,
                s.evicted
                    .map(|n| format!("; {n} evicted (too_many_connections)"))
                    .unwrap_or_default()
            );
        }
        out
    }
}

/// Runs `count` bursts through pairgate and each of `rivals` (started fresh
/// one after the other) with the `pairgate` binary at `exe`.
///
/// # Errors
/// When a subject cannot be started or a process cannot be read.
pub fn run(
    exe: &Path,
    dir: Option<&Path>,
    rivals_wanted: &[Rival],
    count: usize,
    quick: bool,
) -> Result<BurstReport, BenchError> {
    if count == 0 {
        return Err(BenchError::Usage("--bursts must be at least 1".into()));
    }
    for rival in rivals_wanted {
        rivals::version(*rival)?;
    }
    let size = if quick { BURST_QUICK } else { BURST };
    let (dir, _cleanup) = workdir(dir)?;
    let runtime = runtime()?;
    runtime.block_on(async {
        let echo = crate::echo_backend().await?;
        let discard = crate::discard_backend().await?;
        let lab = tokio::task::block_in_place(|| Lab::create(&dir, exe, echo, discard))?;
        let mut subjects = Vec::new();
        for which in std::iter::once(None).chain(rivals_wanted.iter().copied().map(Some)) {
            let running = tokio::task::block_in_place(|| match which {
                None => Running::pairgate(&lab),
                Some(rival) => Running::rival(&lab, rival),
            })?;
            ready(&running).await?;
            subjects.push(bursts(&running, count, size).await?);
            tokio::task::block_in_place(|| drop(running));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(BurstReport { size, subjects })
    })
}

async fn bursts(running: &Running, count: usize, size: usize) -> Result<SubjectBursts, BenchError> {
    let pids = running.pids();
    let evicted_before = running.evictions();
    let mut report = SubjectBursts {
        name: running.name.clone(),
        rss_start_kib: rss(&pids)?,
        bursts: Vec::with_capacity(count),
        evicted: None,
    };
    for i in 1..=count {
        let (open, failed) = super::load::burst(running.echo, size, OPEN_TIMEOUT).await;
        let rss_held_kib = rss(&pids)?;
        let opened = open.len();
        drop(open);
        tokio::time::sleep(SETTLE).await;
        let rss_after_kib = rss(&pids)?;
        eprintln!(
            "  {} burst {i}/{count}: {opened} opened, {failed} failed, RSS {rss_held_kib} KiB held, {rss_after_kib} KiB after",
            running.name
        );
        report.bursts.push(Burst {
            opened,
            failed,
            rss_held_kib,
            rss_after_kib,
        });
    }
    report.evicted = match (evicted_before, running.evictions()) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b)),
        _ => None,
    };
    Ok(report)
}
