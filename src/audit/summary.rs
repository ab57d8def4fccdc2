//! Totals over a log: per peer pool and service, how many connections were
//! allowed and denied (and why), how many bytes moved, first and last seen.
//!
//! Streams the log once through [`Record`], so memory grows with the number
//! of distinct (peer pool, service) pairs, not with the log. Timestamps are
//! kept as written: "first" and "last" mean in file order, which is the order
//! the gateway recorded them.

use std::collections::BTreeMap;
use std::io::{self, BufRead};

use serde::Serialize;

use super::query::Record;

/// Connection counts and bytes, for one flow or for the whole log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// `connection` events with `decision: allow`.
    pub allowed: u64,
    /// `connection` events with `decision: deny`.
    pub denied: u64,
    /// Denials per `reason` (`unspecified` when a denial names none).
    pub denied_by_reason: BTreeMap<String, u64>,
    /// `close` events.
    pub closed: u64,
    /// Sum of `bytes_in` over `close` events.
    pub bytes_in: u64,
    /// Sum of `bytes_out` over `close` events.
    pub bytes_out: u64,
}

/// Everything seen for one (peer pool, service) pair.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Flow {
    /// `null` for connections whose peer was not identified.
    pub peer_pool: Option<String>,
    pub service: Option<String>,
    #[serde(flatten)]
    pub counts: Counts,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
}

/// The summary of a whole log (`pairgate audit summary --json` prints it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub lines: u64,
    /// Lines that are not JSON objects (skipped; `audit verify` names them).
    pub unreadable: u64,
    pub first_ts: Option<String>,
    pub last_ts: Option<String>,
    /// Lines per `event` value.
    pub events: BTreeMap<String, u64>,
    pub totals: Counts,
    /// Sorted by peer pool, then service (unknown first).
    pub flows: Vec<Flow>,
}

/// Entries keyed by an optional name, looked up by `&str` without allocating.
#[derive(Debug, Default)]
struct Keyed<V> {
    none: Option<V>,
    some: BTreeMap<String, V>,
}

impl<V: Default> Keyed<V> {
    #[expect(
        clippy::expect_used,
        reason = "the key is inserted just above the lookup"
    )]
    fn entry(&mut self, key: Option<&str>) -> &mut V {
        let Some(key) = key else {
            return self.none.get_or_insert_with(V::default);
        };
        if !self.some.contains_key(key) {
            self.some.insert(key.to_owned(), V::default());
        }
        self.some
            .get_mut(key)
            .expect("the key was inserted just above")
    }

    fn into_iter(self) -> impl Iterator<Item = (Option<String>, V)> {
        self.none
            .map(|v| (None, v))
            .into_iter()
            .chain(self.some.into_iter().map(|(k, v)| (Some(k), v)))
    }
}

impl Counts {
    fn add(&mut self, record: &Record<'_>) {
        match record.event.as_deref() {
            Some("connection") => match record.decision.as_deref() {
                Some("allow") => self.allowed += 1,
                Some("deny") => {
                    self.denied += 1;
                    let reason = record.reason.as_deref().unwrap_or("unspecified");
                    bump(&mut self.denied_by_reason, reason);
                }
                _ => {}
            },
            Some("close") => {
                self.closed += 1;
                self.bytes_in = self.bytes_in.saturating_add(record.bytes_in.unwrap_or(0));
                self.bytes_out = self.bytes_out.saturating_add(record.bytes_out.unwrap_or(0));
            }
            _ => {}
        }
    }
}

/// Adds one to `map[key]`, allocating the key only the first time.
fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_owned(), 1);
        }
    }
}

/// Summarizes a log in one streaming pass.
///
/// # Errors
/// Reading the log.
pub fn summary<R: BufRead>(mut reader: R) -> io::Result<Summary> {
    let mut out = Summary::default();
    let mut flows: Keyed<Keyed<Flow>> = Keyed::default();
    let mut buf = Vec::with_capacity(1024);
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        out.lines += 1;
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let Some(record) = Record::parse(line) else {
            out.unreadable += 1;
            continue;
        };
        if let Some(ts) = record.ts.as_deref() {
            if out.first_ts.is_none() {
                out.first_ts = Some(ts.to_owned());
            }
            set(&mut out.last_ts, ts);
        }
        let event = record.event.as_deref().unwrap_or("unknown");
        bump(&mut out.events, event);
        if !matches!(event, "connection" | "close") {
            continue;
        }
        out.totals.add(&record);
        let flow = flows
            .entry(record.peer_pool.as_deref())
            .entry(record.service.as_deref());
        flow.counts.add(&record);
        if let Some(ts) = record.ts.as_deref() {
            if flow.first_seen.is_none() {
                flow.first_seen = Some(ts.to_owned());
            }
            set(&mut flow.last_seen, ts);
        }
    }
    for (peer_pool, services) in flows.into_iter() {
        for (service, flow) in services.into_iter() {
            out.flows.push(Flow {
                peer_pool: peer_pool.clone(),
                service,
                ..flow
            });
        }
    }
    Ok(out)
}

/// Overwrites `slot` with `value`, reusing its allocation.
fn set(slot: &mut Option<String>, value: &str) {
    match slot {
        Some(s) => {
            s.clear();
            s.push_str(value);
        }
        None => *slot = Some(value.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::synth::fixture;

    fn counts(
        allowed: u64,
        denied: u64,
        reasons: &[&str],
        closed: u64,
        bytes: (u64, u64),
    ) -> Counts {
        Counts {
            allowed,
            denied,
            denied_by_reason: reasons.iter().map(|r| (r.to_string(), 1)).collect(),
            closed,
            bytes_in: bytes.0,
            bytes_out: bytes.1,
        }
    }

    #[test]
    fn summary_of_the_fixture() {
        let s = summary(&fixture()[..]).expect("summary");
        assert_eq!((s.lines, s.unreadable), (9, 1));
        assert_eq!(s.first_ts.as_deref(), Some("2026-11-26T03:00:00.000000Z"));
        assert_eq!(s.last_ts.as_deref(), Some("2026-11-26T03:00:07.000000Z"));
        let events: Vec<_> = s.events.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            events,
            [
                ("close", 2),
                ("connection", 4),
                ("gateway_start", 1),
                ("spool_sent", 1)
            ]
        );
        assert_eq!(
            s.totals,
            counts(2, 2, &["no_client_cert", "not_paired"], 2, (110, 220))
        );
        let keys: Vec<_> = s
            .flows
            .iter()
            .map(|f| (f.peer_pool.as_deref(), f.service.as_deref()))
            .collect();
        assert_eq!(
            keys,
            [
                (None, None),
                (Some("pool02.site2.example"), Some("backup-smb")),
                (Some("pool02.site2.example"), Some("cms-smb")),
                (Some("pool04.site4.example"), Some("backup-smb")),
            ]
        );
        assert_eq!(
            s.flows[0].counts,
            counts(0, 1, &["no_client_cert"], 0, (0, 0))
        );
        assert_eq!(s.flows[1].counts, counts(1, 0, &[], 1, (100, 200)));
        assert_eq!(
            s.flows[1].first_seen.as_deref(),
            Some("2026-11-26T03:00:01.000000Z")
        );
        assert_eq!(
            s.flows[1].last_seen.as_deref(),
            Some("2026-11-26T03:00:03.000000Z")
        );
        assert_eq!(s.flows[2].counts, counts(1, 0, &[], 1, (10, 20)));
        assert_eq!(s.flows[3].counts, counts(0, 1, &["not_paired"], 0, (0, 0)));
    }

    #[test]
    fn json_shape_flattens_counts() {
        let s = summary(&fixture()[..]).expect("summary");
        let v = serde_json::to_value(&s).expect("serialize");
        assert_eq!(v["totals"]["bytes_in"], 110);
        assert_eq!(v["flows"][1]["peer_pool"], "pool02.site2.example");
        assert_eq!(v["flows"][1]["allowed"], 1);
        assert_eq!(v["flows"][0]["denied_by_reason"]["no_client_cert"], 1);
    }

    #[test]
    fn empty_log() {
        let s = summary(&b""[..]).expect("summary");
        assert_eq!(s, Summary::default());
    }
}
