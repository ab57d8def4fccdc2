//! What relaying costs, not only how fast it is: CPU seconds (user + system,
//! every thread) of both proxy processes per GB relayed, and the CPU an
//! idle pair burns — the figures of issue 17, read from `/proc/<pid>/stat`
//! for pairgate and every rival alike.
//!
//! Only the two proxy processes count: the bench's own load generators and
//! backends run in the bench process and are the same for every subject.
//! The kernel counts in clock ticks (10 ms on Linux), so a bulk phase of a
//! few seconds at ~1 GB/s is read to well under 1 %, and the idle window
//! of 30 s to 0.03 % of a core.

use std::net::SocketAddr;
use std::time::Duration;

use super::procfs::CpuMeter;
use super::{load, BenchError};

/// A bulk test through `addr` with the CPU of `pids` counted around it:
/// (MB/s, CPU seconds of all `pids` together per GB relayed). The CPU
/// figure is `None` without processes (the direct baseline).
///
/// # Errors
/// When the load fails or a process cannot be read.
pub async fn bulk(
    addr: SocketAddr,
    streams: usize,
    duration: Duration,
    pids: &[u32],
    ticks_per_sec: f64,
) -> Result<(f64, Option<f64>), BenchError> {
    let meter = CpuMeter::start(pids, ticks_per_sec)?;
    let (bytes, elapsed) = load::bulk_bytes(addr, streams, duration).await?;
    let cpu = meter.seconds()?;
    let mb_s = bytes as f64 / elapsed.as_secs_f64() / 1e6;
    Ok((mb_s, per_gb(cpu, bytes, pids.is_empty())))
}

/// CPU seconds per 10^9 bytes; `None` when nothing was counted.
pub fn per_gb(cpu_s: f64, bytes: u64, no_processes: bool) -> Option<f64> {
    (!no_processes && bytes > 0).then(|| cpu_s / (bytes as f64 / 1e9))
}

/// The CPU each of `pids` used over `window` of nothing, in % of one core.
///
/// # Errors
/// When a process cannot be read (e.g. it died while idle).
pub async fn idle(
    pids: &[u32],
    window: Duration,
    ticks_per_sec: f64,
) -> Result<Vec<f64>, BenchError> {
    let meter = CpuMeter::start(pids, ticks_per_sec)?;
    let start = std::time::Instant::now();
    tokio::time::sleep(window).await;
    let elapsed = start.elapsed().as_secs_f64();
    Ok(meter
        .seconds_each()?
        .into_iter()
        .map(|cpu| 100.0 * cpu / elapsed)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_per_gigabyte() {
        assert_eq!(per_gb(3.0, 2_000_000_000, false), Some(1.5));
        assert_eq!(per_gb(0.0, 1_000_000_000, false), Some(0.0));
        assert_eq!(per_gb(3.0, 0, false), None);
        assert_eq!(per_gb(3.0, 1_000_000_000, true), None);
    }

    #[tokio::test]
    async fn an_idle_process_is_measured_in_percent_of_a_core() {
        // A child that does nothing: `sleep`.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pct = idle(&[child.id()], Duration::from_millis(300), 100.0)
            .await
            .unwrap();
        let pid = child.id();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(pct.len(), 1);
        assert!((0.0..50.0).contains(&pct[0]), "a sleeping process: {pct:?}");
        // A process that is gone is an error, not 0 %.
        assert!(idle(&[pid], Duration::from_millis(10), 100.0)
            .await
            .is_err());
    }
}
