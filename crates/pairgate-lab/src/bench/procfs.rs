//! What the kernel says a process costs: resident memory from
//! `/proc/<pid>/status` and CPU time (user + system, all threads) from
//! `/proc/<pid>/stat` — the same numbers for pairgate and for every rival,
//! read from outside, so no subject reports on itself.

use super::BenchError;

/// Resident set size in KiB from the text of `/proc/<pid>/status`.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Resident set size of process `pid`, in KiB.
///
/// # Errors
/// When the process is gone or its status has no `VmRSS` line.
pub fn rss_kib(pid: u32) -> Result<u64, BenchError> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|source| BenchError::Io {
        what: format!("read {path}"),
        source,
    })?;
    parse_vm_rss(&text).ok_or_else(|| BenchError::Mismatch {
        what: path,
        detail: "no VmRSS line".into(),
    })
}

/// `utime + stime` in clock ticks from the text of `/proc/<pid>/stat`
/// (fields 14 and 15, counted after the command name, which is in
/// parentheses and may itself contain spaces and parentheses).
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    // After the name: field 3 (state) is the first, so utime (14) is the
    // 12th and stime (15) the 13th.
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`; 100,
/// the Linux value, when getconf is missing).
pub fn ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// CPU time of process `pid` so far (user + system, all its threads), in
/// clock ticks.
///
/// # Errors
/// When the process is gone or its stat line cannot be read.
pub fn cpu_ticks(pid: u32) -> Result<u64, BenchError> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|source| BenchError::Io {
        what: format!("read {path}"),
        source,
    })?;
    parse_stat_ticks(&text).ok_or_else(|| BenchError::Mismatch {
        what: path,
        detail: "no utime/stime fields".into(),
    })
}

/// CPU seconds used by a set of processes between two readings.
#[derive(Debug, Clone)]
pub struct CpuMeter {
    pids: Vec<u32>,
    start: Vec<u64>,
    ticks_per_sec: f64,
}

impl CpuMeter {
    /// Starts counting for `pids`.
    ///
    /// # Errors
    /// When a process cannot be read.
    pub fn start(pids: &[u32], ticks_per_sec: f64) -> Result<CpuMeter, BenchError> {
        Ok(CpuMeter {
            pids: pids.to_vec(),
            start: pids
                .iter()
                .map(|p| cpu_ticks(*p))
                .collect::<Result<_, _>>()?,
            ticks_per_sec,
        })
    }

    /// CPU seconds each process used since [`CpuMeter::start`], in the
    /// order of the pids given.
    ///
    /// # Errors
    /// When a process cannot be read (e.g. it died).
    pub fn seconds_each(&self) -> Result<Vec<f64>, BenchError> {
        self.pids
            .iter()
            .zip(&self.start)
            .map(|(pid, start)| {
                let now = cpu_ticks(*pid)?;
                Ok(now.saturating_sub(*start) as f64 / self.ticks_per_sec)
            })
            .collect()
    }

    /// CPU seconds all the processes together used since the start.
    ///
    /// # Errors
    /// As [`CpuMeter::seconds_each`].
    pub fn seconds(&self) -> Result<f64, BenchError> {
        Ok(self.seconds_each()?.iter().sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_lines() {
        let status = "Name:\tpairgate\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(12345));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\tlots kB\n"), None);
    }

    #[test]
    fn own_rss_is_readable() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn stat_lines_give_user_plus_system_ticks() {
        // A real line's shape, with a name that has a space and a ')'.
        let stat = "4242 (tokio rt) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    731 269 0 0 20 0 9 0 123456 1234567 890 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(1000));
        assert_eq!(parse_stat_ticks("4242 (x) S 1 2 3"), None);
        assert_eq!(parse_stat_ticks("no parenthesis"), None);
        assert_eq!(
            parse_stat_ticks("1 (x) S 1 1 1 0 -1 0 0 0 0 0 a b"),
            None,
            "not numbers"
        );
    }

    #[test]
    fn own_cpu_time_grows_with_work() {
        let me = std::process::id();
        let meter = CpuMeter::start(&[me], ticks_per_sec()).unwrap();
        // Burn CPU until the kernel has counted at least one tick of it
        // (on a loaded machine that may take a while; 30 s is generous).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut x = 0u64;
        while meter.seconds().unwrap() == 0.0 {
            assert!(std::time::Instant::now() < deadline, "no CPU time counted");
            for _ in 0..1_000_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        assert_eq!(meter.seconds_each().unwrap().len(), 1);
    }
}
