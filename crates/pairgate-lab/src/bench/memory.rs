//! Memory per idle tunnelled connection, counted only over connections
//! that are really open end to end.
//!
//! Issue 17 found the old figure computed over survivors: of 1,000 idle
//! connections, most had been evicted at the peer (`too_many_connections`)
//! while the RSS growth was still divided by 1,000. So after the RSS
//! reading every held connection must answer one more round trip, and
//! neither gateway's audit log may show an eviction in the meantime; if
//! either check fails the figure is withheld (`None`) and the counts say
//! why.

use std::time::Duration;

use tokio::net::TcpStream;

use super::procfs::rss_kib;
use super::report::Figures;
use super::subjects::Running;
use super::{load, BenchError};

/// How long one round trip on a held connection may take before it counts
/// as not open (generous: the machine may be loaded).
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// RSS of `pids` together, in KiB.
///
/// # Errors
/// When a process cannot be read.
pub fn rss(pids: &[u32]) -> Result<u64, BenchError> {
    pids.iter().map(|p| rss_kib(*p)).sum()
}

/// Fills in `mem_kib_per_conn`, `mem_conns_open` and `mem_evicted`: RSS
/// growth of `pids` together while `count` verified connections sit idle
/// through the subject, in KiB per connection.
///
/// # Errors
/// When a process cannot be read or the connections cannot be opened.
pub async fn per_idle_conn(
    running: &Running,
    pids: &[u32],
    count: usize,
    f: &mut Figures,
) -> Result<(), BenchError> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let evicted_before = running.evictions();
    let before = rss(pids)?;
    let held = load::hold_idle(running.echo, count).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = rss(pids)?;
    let (held, failed) = load::ping_held(held, PING_TIMEOUT).await;
    let open = (count - failed) as u64;
    drop::<Vec<TcpStream>>(held);
    // Also lets the audit writers' last group commit land.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let evicted = match (evicted_before, running.evictions()) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b)),
        _ => None,
    };
    f.mem_conns_open = Some(open);
    f.mem_evicted = evicted;
    f.mem_kib_per_conn = per_conn(count, failed, evicted, before, after);
    if f.mem_kib_per_conn.is_none() {
        eprintln!(
            "{}: memory per connection withheld: {open} of {count} idle connections open end to end, \
             {} evicted (too_many_connections)",
            running.name,
            evicted.unwrap_or(0)
        );
    }
    Ok(())
}

/// KiB per connection from the RSS before and after — only when all
/// `count` connections were open end to end (`failed == 0`) and none was
/// evicted; else no figure at all rather than one over the survivors.
pub fn per_conn(
    count: usize,
    failed: usize,
    evicted: Option<u64>,
    before_kib: u64,
    after_kib: u64,
) -> Option<f64> {
    (count > 0 && failed == 0 && evicted.unwrap_or(0) == 0)
        .then(|| (after_kib as f64 - before_kib as f64) / count as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_figure_over_survivors() {
        assert_eq!(per_conn(1000, 0, Some(0), 1000, 21_000), Some(20.0));
        assert_eq!(per_conn(1000, 0, None, 1000, 21_000), Some(20.0), "a rival");
        assert_eq!(per_conn(1000, 1, Some(0), 1000, 21_000), None);
        assert_eq!(per_conn(1000, 0, Some(658), 1000, 21_000), None);
        assert_eq!(per_conn(0, 0, None, 0, 0), None);
    }
}
