//! `pairgate bench --soak SECS`: open/close churn through the pair for a
//! long time, sampling the resident memory of both gateways, to show that
//! memory does not grow with the number of connections served.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::subjects::{Lab, Running};
use super::{load, ready, runtime, workdir, BenchError};

/// What a soak found.
#[derive(Debug, Serialize)]
pub struct SoakReport {
    pub seconds: u64,
    pub connections: u64,
    pub failed: u64,
    /// RSS of both gateways together after a warm-up minute's worth of churn.
    pub rss_before_kib: u64,
    /// RSS at the end of each sample period.
    pub rss_samples_kib: Vec<u64>,
    pub rss_after_kib: u64,
}

impl SoakReport {
    pub fn render(&self) -> String {
        let growth = self.rss_after_kib as f64 - self.rss_before_kib as f64;
        format!(
            "soak: {} s of open/close churn, {} connections ({} failed)\n\
             RSS of both gateways: {} KiB after warm-up → {} KiB at the end ({:+.0} KiB, {:+.2}%)\n\
             samples (KiB): {:?}\n",
            self.seconds,
            self.connections,
            self.failed,
            self.rss_before_kib,
            self.rss_after_kib,
            growth,
            100.0 * growth / self.rss_before_kib.max(1) as f64,
            self.rss_samples_kib
        )
    }
}

/// Runs the soak of the `pairgate` binary at `exe` for `seconds` with
/// `workers` concurrent connect-ping-close loops.
///
/// # Errors
/// When the pair cannot be started or stops relaying.
pub fn run(
    exe: &Path,
    dir: Option<&Path>,
    seconds: u64,
    workers: usize,
) -> Result<SoakReport, BenchError> {
    let (dir, _cleanup) = workdir(dir)?;
    let runtime = runtime()?;
    runtime.block_on(async {
        let echo = crate::echo_backend().await?;
        let discard = crate::discard_backend().await?;
        let lab = tokio::task::block_in_place(|| Lab::create(&dir, exe, echo, discard))?;
        let running = tokio::task::block_in_place(|| Running::pairgate(&lab))?;
        ready(&running).await?;
        let pids = running.pids();
        let rss =
            || -> Result<u64, BenchError> { pids.iter().map(|p| super::procfs::rss_kib(*p)).sum() };
        let period = Duration::from_secs((seconds / 10).clamp(1, 60));
        let mut report = SoakReport {
            seconds,
            connections: 0,
            failed: 0,
            rss_before_kib: 0,
            rss_samples_kib: Vec::new(),
            rss_after_kib: 0,
        };
        // Warm-up: let allocator arenas and caches reach their working size.
        let warm = load::connect_rate(running.echo, workers, period).await?;
        report.connections += warm.ok;
        report.failed += warm.failed;
        report.rss_before_kib = rss()?;
        let mut left = Duration::from_secs(seconds);
        while !left.is_zero() {
            let step = period.min(left);
            let r = load::connect_rate(running.echo, workers, step).await?;
            report.connections += r.ok;
            report.failed += r.failed;
            report.rss_samples_kib.push(rss()?);
            eprintln!(
                "soak: {} connections so far, RSS {} KiB",
                report.connections,
                report.rss_samples_kib.last().copied().unwrap_or(0)
            );
            left -= step;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        report.rss_after_kib = rss()?;
        tokio::task::block_in_place(|| drop(running));
        Ok(report)
    })
}
