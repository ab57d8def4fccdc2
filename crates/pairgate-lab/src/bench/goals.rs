//! The measured quantities and the issues' targets: which figure is which
//! row, and which verdict each target gives.
//!
//! Targets against a rival are ratios of pairgate's medians to the rival's,
//! always written pairgate ÷ rival, so "throughput ≥ 1.3×" and "CPU per GB
//! ≤ 0.75×" read the way the issues state them (issue 6: throughput,
//! latency, handshakes, memory; issue 17: CPU per GB). Idle cost is a limit
//! on pairgate alone: < 0.5 % of a core per gateway, whatever a rival does.

use serde::Serialize;

use super::report::Figures;

/// A measured quantity, for medians, ratios and table rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Bulk1,
    Bulk4,
    CpuPerGb1,
    CpuPerGb4,
    RttP50,
    RttP99,
    RttAdded,
    ConnRate,
    Memory,
    MemOpen,
    MemEvicted,
    IdleCpu,
}

impl Metric {
    /// Every row of the results table, in order.
    pub const ALL: [Metric; 12] = [
        Metric::Bulk1,
        Metric::Bulk4,
        Metric::CpuPerGb1,
        Metric::CpuPerGb4,
        Metric::RttP50,
        Metric::RttP99,
        Metric::RttAdded,
        Metric::ConnRate,
        Metric::Memory,
        Metric::MemOpen,
        Metric::MemEvicted,
        Metric::IdleCpu,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Metric::Bulk1 => "bulk, 1 stream (MB/s)",
            Metric::Bulk4 => "bulk, 4 streams (MB/s)",
            Metric::CpuPerGb1 => "CPU s per GB, 1 stream (both proxies)",
            Metric::CpuPerGb4 => "CPU s per GB, 4 streams (both proxies)",
            Metric::RttP50 => "64 B round trip p50 (µs)",
            Metric::RttP99 => "64 B round trip p99 (µs)",
            Metric::RttAdded => "added p50 over direct (µs)",
            Metric::ConnRate => "new connections / s",
            Metric::Memory => "memory per idle conn (KiB)",
            Metric::MemOpen => "idle conns open end to end",
            Metric::MemEvicted => "idle conns evicted (audit)",
            Metric::IdleCpu => "idle CPU, busier process (% of a core)",
        }
    }

    /// Whether the figure is a count (printed without decimals).
    pub fn is_count(self) -> bool {
        matches!(self, Metric::MemOpen | Metric::MemEvicted)
    }

    pub fn of(self, f: &Figures) -> Option<f64> {
        match self {
            Metric::Bulk1 => f.bulk_1_mb_s,
            Metric::Bulk4 => f.bulk_4_mb_s,
            Metric::CpuPerGb1 => f.cpu_s_per_gb_1,
            Metric::CpuPerGb4 => f.cpu_s_per_gb_4,
            Metric::RttP50 => f.rtt_p50_us,
            Metric::RttP99 => f.rtt_p99_us,
            Metric::RttAdded => f.rtt_added_p50_us,
            Metric::ConnRate => f.conn_per_s,
            Metric::Memory => f.mem_kib_per_conn,
            Metric::MemOpen => f.mem_conns_open.map(|n| n as f64),
            Metric::MemEvicted => f.mem_evicted.map(|n| n as f64),
            Metric::IdleCpu => f.idle_cpu_pct,
        }
    }
}

/// One of the issues' targets: pairgate ÷ rival must be at least (or at
/// most) `ratio`.
#[derive(Debug, Clone, Copy)]
pub struct Goal {
    pub metric: Metric,
    pub at_least: bool,
    pub ratio: f64,
}

impl Goal {
    pub fn text(&self) -> String {
        format!("{} {}×", if self.at_least { "≥" } else { "≤" }, self.ratio)
    }

    /// Whether a measured ratio meets the goal.
    pub fn met(&self, ratio: f64) -> bool {
        if self.at_least {
            ratio >= self.ratio
        } else {
            ratio <= self.ratio
        }
    }
}

/// The targets stated against HAProxy: issue 6's five, then issue 17's
/// CPU per GB relayed.
pub const GOALS: [Goal; 7] = [
    Goal {
        metric: Metric::Bulk1,
        at_least: true,
        ratio: 1.3,
    },
    Goal {
        metric: Metric::Bulk4,
        at_least: true,
        ratio: 1.2,
    },
    Goal {
        metric: Metric::RttP50,
        at_least: false,
        ratio: 0.9,
    },
    Goal {
        metric: Metric::ConnRate,
        at_least: true,
        ratio: 1.2,
    },
    Goal {
        metric: Metric::Memory,
        at_least: false,
        ratio: 0.5,
    },
    Goal {
        metric: Metric::CpuPerGb1,
        at_least: false,
        ratio: 0.75,
    },
    Goal {
        metric: Metric::CpuPerGb4,
        at_least: false,
        ratio: 0.75,
    },
];

/// A target on pairgate's own figure: it must stay below `below`.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub metric: Metric,
    pub below: f64,
    pub unit: &'static str,
}

/// Issue 17: an idle gateway costs < 0.5 % of a core (each of the pair).
pub const LIMITS: [Limit; 1] = [Limit {
    metric: Metric::IdleCpu,
    below: 0.5,
    unit: "% of a core",
}];

/// A target checked against one rival, or a limit on pairgate alone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub metric: &'static str,
    /// The rival compared with; empty for a limit on pairgate alone.
    pub rival: String,
    pub target: String,
    /// pairgate ÷ rival, from the medians; `None` when either is missing
    /// (and always for a limit).
    pub ratio: Option<f64>,
    /// pairgate's own median, for a limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    pub met: Option<bool>,
}

/// Every goal checked with pairgate's and a rival's medians.
pub fn verdicts(pairgate: &Figures, rival: &str, theirs: &Figures) -> Vec<Verdict> {
    GOALS
        .iter()
        .map(|goal| {
            let ratio = match (goal.metric.of(pairgate), goal.metric.of(theirs)) {
                (Some(ours), Some(them)) if them > 0.0 => Some(ours / them),
                _ => None,
            };
            Verdict {
                metric: goal.metric.label(),
                rival: rival.to_owned(),
                target: goal.text(),
                ratio,
                value: None,
                met: ratio.map(|r| goal.met(r)),
            }
        })
        .collect()
}

/// Every limit checked with pairgate's medians.
pub fn limit_verdicts(pairgate: &Figures) -> Vec<Verdict> {
    LIMITS
        .iter()
        .map(|limit| {
            let value = limit.metric.of(pairgate);
            Verdict {
                metric: limit.metric.label(),
                rival: String::new(),
                target: format!("< {} {}", limit.below, limit.unit),
                ratio: None,
                value,
                met: value.map(|v| v < limit.below),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(bulk: f64, p50: f64, conns: f64, mem: f64) -> Figures {
        Figures {
            bulk_1_mb_s: Some(bulk),
            bulk_4_mb_s: Some(bulk * 1.5),
            rtt_p50_us: Some(p50),
            rtt_p99_us: Some(p50 * 2.0),
            conn_per_s: Some(conns),
            conn_failed: Some(0),
            mem_kib_per_conn: Some(mem),
            ..Figures::default()
        }
    }

    #[test]
    fn goals_read_in_the_issues_direction() {
        let bulk = GOALS[0];
        assert!(bulk.met(1.3) && bulk.met(2.0) && !bulk.met(1.29));
        let p50 = GOALS[2];
        assert!(p50.met(0.9) && p50.met(0.5) && !p50.met(0.91));
        assert_eq!(p50.text(), "≤ 0.9×");
        assert_eq!(GOALS[4].text(), "≤ 0.5×");
        let cpu = GOALS[5];
        assert_eq!(cpu.text(), "≤ 0.75×");
        assert!(cpu.met(0.75) && !cpu.met(0.76));
    }

    #[test]
    fn verdicts_are_pairgate_over_rival() {
        let ours = figures(700.0, 150.0, 1300.0, 40.0);
        let theirs = figures(500.0, 190.0, 1000.0, 100.0);
        let v = verdicts(&ours, "haproxy", &theirs);
        assert_eq!(v.len(), 7);
        assert_eq!(v[0].ratio, Some(1.4));
        assert_eq!(v[0].met, Some(true));
        // 4 streams: 1050 / 750 = 1.4
        assert_eq!(v[1].met, Some(true));
        // p50 150 / 190 = 0.79 ≤ 0.9
        assert_eq!(v[2].met, Some(true));
        // conns 1.3 ≥ 1.2, memory 0.4 ≤ 0.5
        assert_eq!(v[3].met, Some(true));
        assert_eq!(v[4].ratio, Some(0.4));
        // CPU per GB not measured here.
        assert!(v[5..].iter().all(|v| v.ratio.is_none() && v.met.is_none()));
        let slow = figures(500.0, 200.0, 900.0, 80.0);
        let v = verdicts(&slow, "haproxy", &theirs);
        assert!(v[..5].iter().all(|v| v.met == Some(false)), "{v:?}");
        let v = verdicts(&Figures::default(), "haproxy", &theirs);
        assert!(v.iter().all(|v| v.ratio.is_none() && v.met.is_none()));
    }

    #[test]
    fn cpu_per_gb_is_cheaper_is_better() {
        let ours = Figures {
            cpu_s_per_gb_1: Some(1.0),
            cpu_s_per_gb_4: Some(2.0),
            ..Figures::default()
        };
        let theirs = Figures {
            cpu_s_per_gb_1: Some(1.6),
            cpu_s_per_gb_4: Some(2.0),
            ..Figures::default()
        };
        let v = verdicts(&ours, "haproxy", &theirs);
        assert_eq!(v[5].metric, Metric::CpuPerGb1.label());
        assert_eq!(v[5].ratio, Some(0.625));
        assert_eq!(v[5].met, Some(true));
        assert_eq!(v[6].ratio, Some(1.0));
        assert_eq!(v[6].met, Some(false));
    }

    #[test]
    fn idle_cost_is_a_limit_on_pairgate_alone() {
        let idle = |pct| Figures {
            idle_cpu_pct: Some(pct),
            ..Figures::default()
        };
        let v = limit_verdicts(&idle(0.2));
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].value, v[0].met), (Some(0.2), Some(true)));
        assert_eq!(v[0].target, "< 0.5 % of a core");
        assert!(v[0].rival.is_empty() && v[0].ratio.is_none());
        assert_eq!(limit_verdicts(&idle(0.5))[0].met, Some(false));
        assert_eq!(limit_verdicts(&Figures::default())[0].met, None);
    }
}
