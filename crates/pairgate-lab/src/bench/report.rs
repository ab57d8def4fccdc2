//! What a benchmark run found, as data (serialised for `--json`) and as the
//! tables `pairgate bench` prints.
//!
//! Each subject (the backend directly, pairgate, each rival) has one set of
//! [`Figures`] per round and their medians; [`super::goals`] turns them into
//! verdicts.

use serde::Serialize;

use super::goals::{limit_verdicts, verdicts, Metric, Verdict};
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
    /// RSS growth of both proxy processes per idle tunnelled connection,
    /// KiB; only when every connection was verified open end to end and
    /// none was evicted (else `None`, and the two counts below say why).
    pub mem_kib_per_conn: Option<f64>,
    /// Idle connections that answered a second round trip after the RSS
    /// reading (of the plan's `idle_conns`; the worst round in medians).
    pub mem_conns_open: Option<u64>,
    /// `too_many_connections` denials in either gateway's audit log while
    /// the idle connections were opened and held (pairgate only; summed
    /// over rounds in medians).
    pub mem_evicted: Option<u64>,
    /// CPU seconds (user + system) of both proxy processes per GB (10^9
    /// bytes) relayed in the 1-stream bulk test.
    pub cpu_s_per_gb_1: Option<f64>,
    /// … in the 4-stream bulk test.
    pub cpu_s_per_gb_4: Option<f64>,
    /// CPU of the busier of the two proxy processes over the idle window,
    /// in % of one core.
    pub idle_cpu_pct: Option<f64>,
}

/// The medians over rounds, metric by metric; failures are summed.
pub fn medians(rounds: &[Figures]) -> Figures {
    let m = |pick: fn(&Figures) -> Option<f64>| {
        let values: Vec<f64> = rounds.iter().filter_map(pick).collect();
        median(&values)
    };
    let failed: Vec<u64> = rounds.iter().filter_map(|f| f.conn_failed).collect();
    let evicted: Vec<u64> = rounds.iter().filter_map(|f| f.mem_evicted).collect();
    Figures {
        bulk_1_mb_s: m(|f| f.bulk_1_mb_s),
        bulk_4_mb_s: m(|f| f.bulk_4_mb_s),
        rtt_p50_us: m(|f| f.rtt_p50_us),
        rtt_p99_us: m(|f| f.rtt_p99_us),
        rtt_added_p50_us: None,
        conn_per_s: m(|f| f.conn_per_s),
        conn_failed: (!failed.is_empty()).then(|| failed.iter().sum()),
        mem_kib_per_conn: m(|f| f.mem_kib_per_conn),
        mem_conns_open: rounds.iter().filter_map(|f| f.mem_conns_open).min(),
        mem_evicted: (!evicted.is_empty()).then(|| evicted.iter().sum()),
        cpu_s_per_gb_1: m(|f| f.cpu_s_per_gb_1),
        cpu_s_per_gb_4: m(|f| f.cpu_s_per_gb_4),
        idle_cpu_pct: m(|f| f.idle_cpu_pct),
    }
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
        /// Each file copied and fsynced on its own, in sequence.
        cp_fsync_each_mb_s: f64,
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
                .chain(limit_verdicts(&ours.median))
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
                "target (pairgate ÷ rival, or pairgate alone)",
                "rival",
                "wanted",
                "measured",
                "verdict",
            ]);
            for v in &self.verdicts {
                let measured = match (v.ratio, v.value) {
                    (Some(r), _) => format!("{r:.2}×"),
                    (None, Some(value)) => format!("{value:.2}"),
                    (None, None) => "–".into(),
                };
                targets.add_row([
                    v.metric.to_owned(),
                    if v.rival.is_empty() {
                        "–".to_owned()
                    } else {
                        v.rival.clone()
                    },
                    v.target.clone(),
                    measured,
                    match v.met {
                        Some(true) => "met".into(),
                        Some(false) => "NOT met".into(),
                        None => "not measured".into(),
                    },
                ]);
            }
            out += &format!(
                "\n{targets}\n(the issues state their targets against haproxy; \
                 the idle limit is on each pairgate gateway alone)\n"
            );
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
        Some(v) if metric.is_count() => format!("{v:.0}"),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// How spool figures print.
pub fn spool_text(spool: &SpoolFigures) -> String {
    match spool {
        SpoolFigures::NotAvailable { reason } => format!("n/a ({reason})"),
        SpoolFigures::Measured { ingest_mb_s, cp_sync_mb_s, cp_fsync_each_mb_s, delay_1mb_ms } => format!(
            "ingest {ingest_mb_s:.0} MB/s (cp + sync {cp_sync_mb_s:.0} MB/s, cp + fsync per file {cp_fsync_each_mb_s:.0} MB/s), delay {delay_1mb_ms:.0} ms"
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
            conn_per_s: Some(conns),
            conn_failed: Some(0),
            mem_kib_per_conn: Some(mem),
            ..Figures::default()
        }
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
        // 7 targets against haproxy, then the idle limit on pairgate.
        assert_eq!(report.verdicts.len(), 8);
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
