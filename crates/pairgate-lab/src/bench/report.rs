//! What a benchmark run found, as data (serialised for `--json`) and as the
//! tables `pairgate bench` prints.
//!
//! Each subject (the backend directly, pairgate, each rival) has one set of
//! [`Figures`] per round and their medians. The issue's targets are ratios
//! of pairgate's medians to a rival's, always written pairgate ÷ rival, so
//! "throughput ≥ 1.3×" and "p50 ≤ 0.9×" read the way the issue states them.

use serde::Serialize;

use super::load::median;

/// One subject's measurements in one round (or their medians). `None`
/// means not measured (skipped with `--only`, or meaningless, like the
/// memory of the backend itself).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Bulk throughput, one stream, MB/s (10^6 bytes/s).
    pub bulk_1_mb_s: Option<f64>,
    /// Bulk throughput, four concurrent streams together, MB/s.
    pub bulk_4_mb_s: Option<f64>,
    /// 64-byte round trip on a persistent connection, median, µs.
    pub rtt_p50_us: Option<f64>,
    /// … 99th percentile, µs.
    pub rtt_p99_us: Option<f64>,
    /// p50 minus the direct p50 of the same run, µs (medians only).
    pub rtt_added_p50_us: Option<f64>,
    /// New connections (connect, 64-byte echo, close) per second.
    pub conn_per_s: Option<f64>,
    /// Connections that failed during the connection-rate test.
    pub conn_failed: Option<u64>,
    /// RSS growth of both proxy processes per idle tunnelled connection, KiB.
    pub mem_kib_per_conn: Option<f64>,
}

/// A measured quantity, for medians, ratios and table rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Bulk1,
    Bulk4,
    RttP50,
    RttP99,
    RttAdded,
    ConnRate,
    Memory,
}

impl Metric {
    pub const ALL: [Metric; 7] = [
        Metric::Bulk1,
        Metric::Bulk4,
        Metric::RttP50,
        Metric::RttP99,
        Metric::RttAdded,
        Metric::ConnRate,
        Metric::Memory,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Metric::Bulk1 => "bulk, 1 stream (MB/s)",
            Metric::Bulk4 => "bulk, 4 streams (MB/s)",
            Metric::RttP50 => "64 B round trip p50 (µs)",
            Metric::RttP99 => "64 B round trip p99 (µs)",
            Metric::RttAdded => "added p50 over direct (µs)",
            Metric::ConnRate => "new connections / s",
            Metric::Memory => "memory per idle conn (KiB)",
        }
    }

    pub fn of(self, f: &Figures) -> Option<f64> {
        match self {
            Metric::Bulk1 => f.bulk_1_mb_s,
            Metric::Bulk4 => f.bulk_4_mb_s,
            Metric::RttP50 => f.rtt_p50_us,
            Metric::RttP99 => f.rtt_p99_us,
            Metric::RttAdded => f.rtt_added_p50_us,
            Metric::ConnRate => f.conn_per_s,
            Metric::Memory => f.mem_kib_per_conn,
        }
    }
}

/// The medians over rounds, metric by metric; failures are summed.
pub fn medians(rounds: &[Figures]) -> Figures {
    let m = |pick: fn(&Figures) -> Option<f64>| {
        let values: Vec<f64> = rounds.iter().filter_map(pick).collect();
        median(&values)
    };
    let failed: Vec<u64> = rounds.iter().filter_map(|f| f.conn_failed).collect();
    Figures {
        bulk_1_mb_s: m(|f| f.bulk_1_mb_s),
        bulk_4_mb_s: m(|f| f.bulk_4_mb_s),
        rtt_p50_us: m(|f| f.rtt_p50_us),
        rtt_p99_us: m(|f| f.rtt_p99_us),
        rtt_added_p50_us: None,
        conn_per_s: m(|f| f.conn_per_s),
        conn_failed: (!failed.is_empty()).then(|| failed.iter().sum()),
        mem_kib_per_conn: m(|f| f.mem_kib_per_conn),
    }
}

/// One of the issue's targets: pairgate ÷ rival must be at least (or at
/// most) `ratio`.
#[derive(Debug, Clone, Copy)]
pub struct Goal {
    pub metric: Metric,
    pub at_least: bool,
    pub ratio: f64,
}

impl Goal {
    pub fn text(&self) -> String {
        format!(
            "{} {:.1}×",
            if self.at_least { "≥" } else { "≤" },
            self.ratio
        )
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

/// The targets of issue 6, stated against HAProxy.
pub const GOALS: [Goal; 5] = [
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
];

/// A target checked against one rival.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub metric: &'static str,
    pub rival: String,
    pub target: String,
    /// pairgate ÷ rival, from the medians; `None` when either is missing.
    pub ratio: Option<f64>,
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
                met: ratio.map(|r| goal.met(r)),
            }
        })
        .collect()
}

/// The machine the numbers come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    /// "release" or "debug" (debug numbers mean nothing).
    pub build: &'static str,
}

/// The CPU model from the text of `/proc/cpuinfo`.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

/// Spool figures: ingest MB/s and outbox→peer-inbox delay of a 1 MB file.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SpoolFigures {
    NotAvailable {
        reason: String,
    },
    Measured {
        ingest_mb_s: f64,
        cp_sync_mb_s: f64,
        delay_1mb_ms: f64,
    },
}

/// One subject's rounds and medians.
#[derive(Debug, Clone, Serialize)]
pub struct SubjectResult {
    pub name: String,
    pub version: String,
    pub rounds: Vec<Figures>,
    pub median: Figures,
}

/// Everything a run found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub date: String,
    pub command: String,
    pub machine: Machine,
    pub rounds: usize,
    pub quick: bool,
    /// "direct" first, then "pairgate", then the rivals in `--vs` order.
    pub subjects: Vec<SubjectResult>,
    pub verdicts: Vec<Verdict>,
    pub spool: SpoolFigures,
}

impl Report {
    /// Fills in the added latency (p50 over the direct p50) and the verdicts.
    pub fn conclude(&mut self) {
        let direct = self
            .subjects
            .iter()
            .find(|s| s.name == "direct")
            .and_then(|s| s.median.rtt_p50_us);
        for s in self.subjects.iter_mut().filter(|s| s.name != "direct") {
            s.median.rtt_added_p50_us = match (s.median.rtt_p50_us, direct) {
                (Some(p50), Some(d)) => Some(p50 - d),
                _ => None,
            };
        }
        let ours = self.subjects.iter().find(|s| s.name == "pairgate");
        self.verdicts = match ours {
            Some(ours) => self
                .subjects
                .iter()
                .filter(|s| s.name != "direct" && s.name != "pairgate")
                .flat_map(|s| verdicts(&ours.median, &s.name, &s.median))
                .collect(),
            None => Vec::new(),
        };
    }

    /// The human-readable report: machine, results, targets, spool.
    pub fn render(&self) -> String {
        let m = &self.machine;
        let mut out = format!(
            "pairgate bench — {} — {} ({} build)\nmachine: {} × {}, Linux {}\n{} round(s), medians shown; all traffic on 127.0.0.1\n\n",
            self.date, self.command, m.build, m.nproc, m.cpu_model, m.kernel, self.rounds
        );
        let mut table = crate::table::new();
        let mut header = vec!["measure".to_owned()];
        header.extend(self.subjects.iter().map(|s| s.name.clone()));
        table.set_header(header);
        for metric in Metric::ALL {
            let mut row = vec![metric.label().to_owned()];
            row.extend(self.subjects.iter().map(|s| {
                let value = cell(metric, &s.median);
                match spread(metric, &s.rounds) {
                    Some(pct) if s.rounds.len() > 1 => format!("{value} ±{pct:.0}%"),
                    _ => value,
                }
            }));
            table.add_row(row);
        }
        let mut failed = vec!["failed connections".to_owned()];
        failed.extend(self.subjects.iter().map(|s| {
            s.median
                .conn_failed
                .map_or_else(|| "–".to_owned(), |n| n.to_string())
        }));
        table.add_row(failed);
        out += &format!("{table}\n");
        if !self.verdicts.is_empty() {
            let mut targets = crate::table::new();
            targets.set_header([
                "target (pairgate ÷ rival)",
                "rival",
                "wanted",
                "ratio",
                "verdict",
            ]);
            for v in &self.verdicts {
                targets.add_row([
                    v.metric.to_owned(),
                    v.rival.clone(),
                    v.target.clone(),
                    v.ratio.map_or_else(|| "–".into(), |r| format!("{r:.2}×")),
                    match v.met {
                        Some(true) => "met".into(),
                        Some(false) => "NOT met".into(),
                        None => "not measured".into(),
                    },
                ]);
            }
            out += &format!("\n{targets}\n(the issue states its targets against haproxy)\n");
        }
        out += &format!(
            "\nspool ingest, outbox→inbox delay (1 MB): {}\n",
            spool_text(&self.spool)
        );
        for s in self.subjects.iter().filter(|s| !s.version.is_empty()) {
            out += &format!("{}: {}\n", s.name, s.version);
        }
        out
    }
}

/// Half the range over rounds, as a percentage of the median: how much to
/// trust a difference between two subjects.
pub fn spread(metric: Metric, rounds: &[Figures]) -> Option<f64> {
    let values: Vec<f64> = rounds.iter().filter_map(|f| metric.of(f)).collect();
    let mid = median(&values)?;
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        });
    (mid.abs() > 0.0).then(|| (hi - lo) / 2.0 / mid.abs() * 100.0)
}

fn cell(metric: Metric, f: &Figures) -> String {
    match metric.of(f) {
        None => "–".to_owned(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
    }
}

/// How spool figures print.
pub fn spool_text(spool: &SpoolFigures) -> String {
    match spool {
        SpoolFigures::NotAvailable { reason } => format!("n/a ({reason})"),
        SpoolFigures::Measured { ingest_mb_s, cp_sync_mb_s, delay_1mb_ms } => format!(
            "ingest {ingest_mb_s:.0} MB/s (cp + sync {cp_sync_mb_s:.0} MB/s), delay {delay_1mb_ms:.0} ms"
        ),
    }
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
            rtt_added_p50_us: None,
            conn_per_s: Some(conns),
            conn_failed: Some(0),
            mem_kib_per_conn: Some(mem),
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
    }

    #[test]
    fn verdicts_are_pairgate_over_rival() {
        let ours = figures(700.0, 150.0, 1300.0, 40.0);
        let theirs = figures(500.0, 190.0, 1000.0, 100.0);
        let v = verdicts(&ours, "haproxy", &theirs);
        assert_eq!(v.len(), 5);
        assert_eq!(v[0].ratio, Some(1.4));
        assert_eq!(v[0].met, Some(true));
        // 4 streams: 1050 / 750 = 1.4
        assert_eq!(v[1].met, Some(true));
        // p50 150 / 190 = 0.79 ≤ 0.9
        assert_eq!(v[2].met, Some(true));
        // conns 1.3 ≥ 1.2, memory 0.4 ≤ 0.5
        assert_eq!(v[3].met, Some(true));
        assert_eq!(v[4].ratio, Some(0.4));
        let slow = figures(500.0, 200.0, 900.0, 80.0);
        let v = verdicts(&slow, "haproxy", &theirs);
        assert!(v.iter().all(|v| v.met == Some(false)), "{v:?}");
        let v = verdicts(&Figures::default(), "haproxy", &theirs);
        assert!(v.iter().all(|v| v.ratio.is_none() && v.met.is_none()));
    }

    #[test]
    fn medians_per_metric_and_summed_failures() {
        let mut a = figures(100.0, 10.0, 5.0, 1.0);
        a.conn_failed = Some(2);
        let b = figures(300.0, 30.0, 7.0, 3.0);
        let mut c = figures(200.0, 20.0, 6.0, 2.0);
        c.mem_kib_per_conn = None;
        let m = medians(&[a, b, c]);
        assert_eq!(m.bulk_1_mb_s, Some(200.0));
        assert_eq!(m.rtt_p50_us, Some(20.0));
        assert_eq!(m.mem_kib_per_conn, Some(2.0));
        assert_eq!(m.conn_failed, Some(2));
        assert_eq!(medians(&[]), Figures::default());
    }

    #[test]
    fn report_concludes_and_renders() {
        let subject = |name: &str, f: Figures| SubjectResult {
            name: name.into(),
            version: String::new(),
            rounds: vec![f.clone()],
            median: f,
        };
        let mut direct = figures(3000.0, 50.0, 9000.0, 0.0);
        direct.mem_kib_per_conn = None;
        let mut report = Report {
            date: "2026-11-26".into(),
            command: "pairgate bench --vs haproxy".into(),
            machine: Machine {
                nproc: 2,
                cpu_model: "Test CPU".into(),
                kernel: "6.1".into(),
                build: "release",
            },
            rounds: 1,
            quick: false,
            subjects: vec![
                subject("direct", direct),
                subject("pairgate", figures(700.0, 150.0, 1300.0, 40.0)),
                subject("haproxy", figures(500.0, 190.0, 1000.0, 100.0)),
            ],
            verdicts: Vec::new(),
            spool: SpoolFigures::NotAvailable {
                reason: "spool not built yet".into(),
            },
        };
        report.conclude();
        assert_eq!(report.subjects[1].median.rtt_added_p50_us, Some(100.0));
        assert_eq!(report.subjects[2].median.rtt_added_p50_us, Some(140.0));
        assert_eq!(report.subjects[0].median.rtt_added_p50_us, None);
        assert_eq!(report.verdicts.len(), 5);
        let text = report.render();
        assert!(text.contains("Test CPU"), "{text}");
        assert!(text.contains("n/a (spool not built yet)"));
        assert!(text.contains("1.40×"));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["spool"]["status"], "not_available");
        assert_eq!(json["verdicts"][0]["met"], true);
    }

    #[test]
    fn spread_is_half_the_range_over_the_median() {
        let rounds = [
            figures(90.0, 1.0, 1.0, 1.0),
            figures(100.0, 1.0, 1.0, 1.0),
            figures(110.0, 1.0, 1.0, 1.0),
        ];
        assert_eq!(spread(Metric::Bulk1, &rounds), Some(10.0));
        assert_eq!(spread(Metric::RttP50, &rounds), Some(0.0));
        assert_eq!(spread(Metric::RttAdded, &rounds), None);
        assert_eq!(spread(Metric::Bulk1, &[]), None);
    }

    #[test]
    fn cpu_model_line() {
        let info = "processor\t: 0\nvendor_id\t: X\nmodel name\t: Some CPU @ 2.0GHz\n";
        assert_eq!(cpu_model(info).as_deref(), Some("Some CPU @ 2.0GHz"));
        assert_eq!(cpu_model("processor : 0\n"), None);
    }
}
