//! Filtering a log: which lines match a peer, service, decision, client,
//! original destination and time range.
//!
//! Reports read lines generically through [`Record`], a borrowed view of the
//! few fields they look at; unknown fields and unknown `event` values pass
//! through, so lines written by future versions still match and count. The
//! predicate is pure ([`Filter::accepts`], and [`matches`] over a parsed
//! `serde_json::Value`); [`query`] streams a log through it.

use std::borrow::Cow;
use std::io::{self, BufRead};

use serde::Deserialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, Duration, OffsetDateTime};

use crate::policy::Verdict;

/// The fields reports look at, borrowed from one line where possible.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Record<'a> {
    #[serde(borrow, default)]
    pub ts: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub peer_pool: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub service: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub decision: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub reason: Option<Cow<'a, str>>,
    #[serde(default)]
    pub bytes_in: Option<u64>,
    #[serde(default)]
    pub bytes_out: Option<u64>,
    #[serde(borrow, default)]
    pub client_addr: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub orig_dst: Option<Cow<'a, str>>,
}

impl<'a> Record<'a> {
    /// Reads one line (without its newline); `None` if it is not a JSON object.
    pub fn parse(line: &'a [u8]) -> Option<Record<'a>> {
        // serde would also fill a struct from a JSON array: insist on an object.
        if line.trim_ascii_start().first() != Some(&b'{') {
            return None;
        }
        // Fast path: typed and borrowed. A line whose known fields have other
        // types (a future format) falls back to a generic parse.
        if let Ok(record) = serde_json::from_slice::<Record<'a>>(line) {
            return Some(record);
        }
        let value: Value = serde_json::from_slice(line).ok()?;
        value
            .is_object()
            .then(|| Record::from_value(&value).into_owned())
    }

    /// The view of a parsed line; fields of an unexpected type count as absent.
    pub fn from_value(value: &'a Value) -> Record<'a> {
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(Cow::Borrowed);
        let number = |key: &str| value.get(key).and_then(Value::as_u64);
        Record {
            ts: text("ts"),
            event: text("event"),
            peer_pool: text("peer_pool"),
            service: text("service"),
            decision: text("decision"),
            reason: text("reason"),
            bytes_in: number("bytes_in"),
            bytes_out: number("bytes_out"),
            client_addr: text("client_addr"),
            orig_dst: text("orig_dst"),
        }
    }

    fn into_owned(self) -> Record<'static> {
        let own = |c: Option<Cow<'a, str>>| c.map(|c| Cow::Owned(c.into_owned()));
        Record {
            ts: own(self.ts),
            event: own(self.event),
            peer_pool: own(self.peer_pool),
            service: own(self.service),
            decision: own(self.decision),
            reason: own(self.reason),
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            client_addr: own(self.client_addr),
            orig_dst: own(self.orig_dst),
        }
    }
}

/// What to keep. Every set field must match; `since` and `until` are inclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// `peer_pool` equals this.
    pub peer: Option<String>,
    /// `service` equals this.
    pub service: Option<String>,
    /// `decision` equals this (lines without a decision never match).
    pub decision: Option<Verdict>,
    /// `client_addr` is this address (`IP` matches any port, `IP:PORT` exactly).
    pub client: Option<String>,
    /// `orig_dst` is this address (as `client`): "who wrote to that server".
    pub orig_dst: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
}

impl Filter {
    /// Whether one record passes the filter.
    pub fn accepts(&self, record: &Record<'_>) -> bool {
        let same = |want: &Option<String>, have: &Option<Cow<'_, str>>| match want {
            None => true,
            Some(w) => have.as_deref() == Some(w.as_str()),
        };
        if !same(&self.peer, &record.peer_pool) || !same(&self.service, &record.service) {
            return false;
        }
        if !address_matches(self.client.as_deref(), record.client_addr.as_deref())
            || !address_matches(self.orig_dst.as_deref(), record.orig_dst.as_deref())
        {
            return false;
        }
        if let Some(want) = self.decision {
            let name = match want {
                Verdict::Allow => "allow",
                Verdict::Deny => "deny",
            };
            if record.decision.as_deref() != Some(name) {
                return false;
            }
        }
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        let Some(ts) = record
            .ts
            .as_deref()
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        else {
            return false;
        };
        self.since.is_none_or(|s| ts >= s) && self.until.is_none_or(|u| ts <= u)
    }
}

/// Whether an `IP:PORT` field matches a filter written as `IP` (any port)
/// or `IP:PORT`; no filter matches everything, a missing field nothing.
fn address_matches(want: Option<&str>, have: Option<&str>) -> bool {
    let Some(want) = want else {
        return true;
    };
    let Some(have) = have.and_then(|h| h.parse::<std::net::SocketAddr>().ok()) else {
        return false;
    };
    if let Ok(exact) = want.parse::<std::net::SocketAddr>() {
        return exact == have;
    }
    let ip = want.trim_start_matches('[').trim_end_matches(']');
    ip.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip == have.ip())
}

/// Whether one parsed log line passes the filter.
pub fn matches(filter: &Filter, line: &Value) -> bool {
    filter.accepts(&Record::from_value(line))
}

/// Counts from one pass of [`query`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryStats {
    pub lines: u64,
    pub matched: u64,
    /// Lines that are not JSON objects (skipped; `audit verify` names them).
    pub unreadable: u64,
}

/// Streams a log, calling `on_match` with the raw bytes (without newline) and
/// the parsed view of every line the filter accepts.
///
/// # Errors
/// Reading the log, or the first error `on_match` returns (e.g. a closed pipe).
pub fn query<R, F>(mut reader: R, filter: &Filter, mut on_match: F) -> io::Result<QueryStats>
where
    R: BufRead,
    F: FnMut(&[u8], &Record<'_>) -> io::Result<()>,
{
    let mut stats = QueryStats::default();
    let mut buf = Vec::with_capacity(1024);
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(stats);
        }
        stats.lines += 1;
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        match Record::parse(line) {
            None => stats.unreadable += 1,
            Some(record) if filter.accepts(&record) => {
                stats.matched += 1;
                on_match(line, &record)?;
            }
            Some(_) => {}
        }
    }
}

/// A `--since`/`--until` value that is not a time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{spec:?} is not a time: use RFC 3339 (2026-11-26T03:38:34Z), a UTC date (2026-11-26), or how long before now: 90s, 15m, 1h, 2d, 1w")]
pub struct TimeSpecError {
    pub spec: String,
}

/// Parses an RFC 3339 time, a date (midnight UTC), or a duration before
/// `now` (`90s`, `15m`, `1h`, `2d`, `1w`).
///
/// # Errors
/// [`TimeSpecError`] listing the accepted forms.
pub fn parse_time(spec: &str, now: OffsetDateTime) -> Result<OffsetDateTime, TimeSpecError> {
    let bad = || TimeSpecError {
        spec: spec.to_owned(),
    };
    let s = spec.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    if let Ok(d) = Date::parse(s, format_description!("[year]-[month]-[day]")) {
        return Ok(d.midnight().assume_utc());
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (digits, unit) = s.split_at(split);
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(unit_secs).ok_or_else(bad)?;
    now.checked_sub(Duration::seconds(secs)).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::synth::fixture;
    use time::macros::datetime;

    fn run(filter: &Filter) -> (Vec<String>, QueryStats) {
        let mut seen = Vec::new();
        let stats = query(&fixture()[..], filter, |line, record| {
            assert!(line.starts_with(b"{\"ts\":"));
            seen.push(record.ts.as_deref().unwrap_or("?")[17..19].to_owned());
            Ok(())
        })
        .expect("query");
        (seen, stats)
    }

    #[test]
    fn filters_combine() {
        let (all, stats) = run(&Filter::default());
        assert_eq!(all, ["00", "01", "02", "03", "04", "05", "06", "07"]);
        assert_eq!((stats.lines, stats.matched, stats.unreadable), (9, 8, 1));
        let peer = |p: &str| Filter {
            peer: Some(p.into()),
            ..Filter::default()
        };
        // `gateway_start` names its peer pool too.
        assert_eq!(
            run(&peer("pool02.site2.example")).0,
            ["00", "01", "03", "05", "06", "07"]
        );
        assert_eq!(run(&peer("pool04.site4.example")).0, ["04"]);
        let deny = Filter {
            decision: Some(Verdict::Deny),
            ..Filter::default()
        };
        assert_eq!(run(&deny).0, ["02", "04"]);
        let allow_backup = Filter {
            decision: Some(Verdict::Allow),
            service: Some("backup-smb".into()),
            ..Filter::default()
        };
        assert_eq!(run(&allow_backup).0, ["01", "03"]);
        let window = Filter {
            since: Some(datetime!(2026-11-26 03:00:03 UTC)),
            until: Some(datetime!(2026-11-26 04:00:05 +01:00)),
            ..Filter::default()
        };
        assert_eq!(run(&window).0, ["03", "04", "05"]);
    }

    #[test]
    fn matches_on_values() {
        let line: Value = serde_json::json!({"ts": "2026-11-26T03:00:00Z", "event": "connection",
            "peer_pool": null, "service": "cms-smb", "decision": "deny"});
        let mut f = Filter {
            decision: Some(Verdict::Deny),
            ..Filter::default()
        };
        assert!(matches(&f, &line));
        f.peer = Some("pool02.site2.example".into());
        assert!(!matches(&f, &line));
        let no_ts = serde_json::json!({"event": "x"});
        let since = Filter {
            since: Some(datetime!(2000-01-01 0:00 UTC)),
            ..Filter::default()
        };
        assert!(!matches(&since, &no_ts));
        assert!(matches(&Filter::default(), &no_ts));
    }

    #[test]
    fn client_and_original_destination_match_by_address_or_host() {
        let line = serde_json::json!({"event": "close", "client_addr": "127.1.10.11:50123",
            "orig_dst": "127.2.20.50:445", "bytes_in": 7});
        let by = |client: Option<&str>, dest: Option<&str>| Filter {
            client: client.map(Into::into),
            orig_dst: dest.map(Into::into),
            ..Filter::default()
        };
        assert!(matches(&by(None, Some("127.2.20.50")), &line));
        assert!(matches(&by(None, Some("127.2.20.50:445")), &line));
        assert!(!matches(&by(None, Some("127.2.20.50:139")), &line));
        assert!(!matches(&by(None, Some("127.2.20.51")), &line));
        assert!(matches(
            &by(Some("127.1.10.11"), Some("127.2.20.50")),
            &line
        ));
        assert!(!matches(&by(Some("127.1.10.12"), None), &line));
        assert!(!matches(&by(None, Some("not an address")), &line));
        let v6 = serde_json::json!({"orig_dst": "[fd02::50]:445"});
        assert!(matches(&by(None, Some("[fd02::50]")), &v6));
        assert!(matches(&by(None, Some("fd02::50")), &v6));
        assert!(!matches(
            &by(None, Some("127.2.20.50")),
            &serde_json::json!({})
        ));
    }

    #[test]
    fn arrays_are_not_records() {
        assert_eq!(Record::parse(b"[]"), None);
        assert_eq!(Record::parse(b" {}"), Some(Record::default()));
    }

    #[test]
    fn time_specs() {
        let now = datetime!(2026-11-26 12:00:00 UTC);
        assert_eq!(
            parse_time("90s", now),
            Ok(datetime!(2026-11-26 11:58:30 UTC))
        );
        assert_eq!(
            parse_time("15m", now),
            Ok(datetime!(2026-11-26 11:45:00 UTC))
        );
        assert_eq!(
            parse_time("1h", now),
            Ok(datetime!(2026-11-26 11:00:00 UTC))
        );
        assert_eq!(
            parse_time("2d", now),
            Ok(datetime!(2026-11-24 12:00:00 UTC))
        );
        assert_eq!(
            parse_time("1w", now),
            Ok(datetime!(2026-11-19 12:00:00 UTC))
        );
        assert_eq!(
            parse_time("2026-11-26T03:38:34.5+01:00", now),
            Ok(datetime!(2026-11-26 02:38:34.5 UTC))
        );
        assert_eq!(
            parse_time("2026-11-20", now),
            Ok(datetime!(2026-11-20 00:00 UTC))
        );
        for bad in [
            "",
            "h",
            "5",
            "5x",
            "-5m",
            "1.5h",
            "99999999999999999999d",
            "yesterday",
        ] {
            let err = parse_time(bad, now).expect_err(bad);
            assert!(err.to_string().contains("90s, 15m, 1h, 2d"), "{err}");
        }
    }
}
