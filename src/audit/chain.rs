//! The hash chain as pure functions: render a line, hash a line, check a line,
//! and a streaming verifier over any [`BufRead`].
//!
//! A line is `{"ts":"<RFC 3339 UTC, µs>",<the event's fields, `event` first>,"prev":"<hex>"}`
//! where `prev` is the lower-case hex SHA-256 of the previous line's bytes
//! without its newline ([`GENESIS`], 64 zeros, for the first line of a file).
//! Changing, inserting, deleting or reordering any line breaks the `prev` of
//! the line after it (or makes the line itself unreadable), so the verifier
//! names the first line at or after which the log was altered. Cutting lines
//! off the *end* cannot be seen from the chain alone: compare the `head` hash
//! with a copy kept elsewhere for that.
//!
//! What the verifier accepts, decided here once: every line must end with a
//! newline, be one well-formed JSON object (checked by a full, allocation-free
//! serde pass that skips unknown values, so a line that is not JSON or not an
//! object is rejected), hold each of `ts`, `event` and `prev` exactly once,
//! `ts` must be RFC 3339 in UTC, `event` a non-empty string and `prev` 64
//! lower-case hex digits equal to the hash of the previous line. Field order is
//! not checked (the hash covers the bytes anyway) and other fields may be
//! anything, so lines from future event types still verify.

use std::borrow::Cow;
use std::io::BufRead;

use ring::digest;
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use super::event::Event;

/// The `prev` of the first line of a new log.
pub const GENESIS: [u8; 32] = [0; 32];

/// SHA-256 of one line's bytes, without its newline.
pub fn line_hash(line: &[u8]) -> [u8; 32] {
    let digest = digest::digest(&digest::SHA256, line);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// `ts` as the log spells it: RFC 3339 in UTC with microseconds,
/// e.g. `2026-11-26T03:38:34.123456Z`.
pub fn format_ts(ts: OffsetDateTime) -> String {
    let ts = ts.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        ts.year(),
        u8::from(ts.month()),
        ts.day(),
        ts.hour(),
        ts.minute(),
        ts.second(),
        ts.microsecond()
    )
}

/// One log line (without the newline): `ts` first, then the event's fields
/// starting with `event`, then `prev`, the hex of the previous line's hash.
pub fn render_line(ts: OffsetDateTime, event: &Event, prev: &[u8; 32]) -> String {
    // Serializing plain structs of strings and integers into a String cannot
    // fail (no maps with non-string keys, no I/O), hence the expect.
    #[expect(
        clippy::expect_used,
        reason = "plain structs of strings and integers always serialize"
    )]
    let body = serde_json::to_string(event).expect("audit events always serialize to JSON");
    // An internally tagged enum always yields `{"event":…}`: at least one field.
    let fields = body
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .unwrap_or(&body);
    let mut line = String::with_capacity(body.len() + 120);
    line.push_str("{\"ts\":\"");
    line.push_str(&format_ts(ts));
    line.push_str("\",");
    line.push_str(fields);
    line.push_str(",\"prev\":\"");
    line.push_str(&hex::encode(prev));
    line.push_str("\"}");
    line
}

/// Why one line breaks the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error("not valid JSON ({0})")]
    NotJson(String),
    #[error("not a well-formed audit record ({0})")]
    Malformed(String),
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("`ts` {0:?} is not an RFC 3339 UTC timestamp")]
    BadTs(String),
    #[error("`prev` {0:?} is not 64 lower-case hex digits")]
    BadPrev(String),
    #[error("`prev` is {found} but the previous line hashes to {expected}")]
    PrevMismatch { expected: String, found: String },
    #[error("the last line has no newline (a torn write, {0} bytes)")]
    Incomplete(usize),
}

/// The first line that breaks the chain (1-based) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {fault}")]
pub struct ChainBreak {
    pub line: u64,
    pub fault: Fault,
}

/// What [`verify`] found wrong: the log could not be read, or the chain is broken.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read line {line}: {source}")]
    Read {
        line: u64,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Broken(#[from] ChainBreak),
}

/// An intact chain: how many lines and bytes, and the hash of the last line
/// (the `prev` the next line must carry; [`GENESIS`] for an empty log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainSummary {
    pub lines: u64,
    pub bytes: u64,
    pub head: [u8; 32],
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow, default)]
    ts: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    prev: Option<Cow<'a, str>>,
}

/// Checks one line (without its newline) against the hash of the line before.
///
/// # Errors
/// The [`Fault`] that makes the line unacceptable.
pub fn check_line(line: &[u8], expected_prev: &[u8; 32]) -> Result<(), Fault> {
    // serde would also fill the struct from a JSON array; lines are objects.
    if line.first() != Some(&b'{') {
        return Err(Fault::Malformed(
            "a line must be one JSON object starting with `{`".into(),
        ));
    }
    let head: Head<'_> = serde_json::from_slice(line).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => Fault::Malformed(e.to_string()),
        _ => Fault::NotJson(e.to_string()),
    })?;
    let ts = head.ts.ok_or(Fault::Missing("ts"))?;
    match OffsetDateTime::parse(&ts, &Rfc3339) {
        Ok(t) if t.offset() == UtcOffset::UTC => {}
        _ => return Err(Fault::BadTs(ts.into_owned())),
    }
    match head.event {
        Some(e) if !e.is_empty() => {}
        _ => return Err(Fault::Missing("event")),
    }
    let prev = head.prev.ok_or(Fault::Missing("prev"))?;
    let found = parse_prev(&prev).ok_or_else(|| Fault::BadPrev(prev.clone().into_owned()))?;
    if &found != expected_prev {
        return Err(Fault::PrevMismatch {
            expected: hex::encode(expected_prev),
            found: prev.into_owned(),
        });
    }
    Ok(())
}

fn parse_prev(prev: &str) -> Option<[u8; 32]> {
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let hex = prev.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// Streams through a whole log, checking every line against the one before.
/// Holds one line in memory at a time; give it a large `BufReader`.
///
/// # Errors
/// [`VerifyError::Broken`] naming the FIRST bad line (1-based), or
/// [`VerifyError::Read`] if reading fails.
pub fn verify<R: BufRead>(mut reader: R) -> Result<ChainSummary, VerifyError> {
    let mut summary = ChainSummary {
        lines: 0,
        bytes: 0,
        head: GENESIS,
    };
    let mut buf = Vec::with_capacity(1024);
    loop {
        buf.clear();
        let line_no = summary.lines + 1;
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|source| VerifyError::Read {
                line: line_no,
                source,
            })?;
        if n == 0 {
            return Ok(summary);
        }
        let broken = |fault| ChainBreak {
            line: line_no,
            fault,
        };
        let Some(line) = buf.strip_suffix(b"\n") else {
            return Err(broken(Fault::Incomplete(buf.len())).into());
        };
        check_line(line, &summary.head).map_err(broken)?;
        summary.head = line_hash(line);
        summary.lines = line_no;
        summary.bytes += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::synth::sample_event;
    use time::macros::datetime;

    fn build(n: u64) -> Vec<String> {
        let mut prev = GENESIS;
        (0..n)
            .map(|i| {
                let ts =
                    datetime!(2026-11-26 03:38:34.123456 UTC) + time::Duration::seconds(i as i64);
                let line = render_line(ts, &sample_event(i), &prev);
                prev = line_hash(line.as_bytes());
                line
            })
            .collect()
    }

    fn join(lines: &[String]) -> Vec<u8> {
        lines
            .iter()
            .flat_map(|l| format!("{l}\n").into_bytes())
            .collect()
    }

    fn broken_at(log: &[u8]) -> (u64, Fault) {
        match verify(log) {
            Err(VerifyError::Broken(b)) => (b.line, b.fault),
            other => panic!("expected a broken chain, got {other:?}"),
        }
    }

    #[test]
    fn line_shape_ts_first_prev_last() {
        let ts = datetime!(2026-11-26 04:38:34.123456 +01:00);
        let line = render_line(ts, &sample_event(0), &GENESIS);
        assert!(
            line.starts_with(r#"{"ts":"2026-11-26T03:38:34.123456Z","event":"connection","#),
            "{line}"
        );
        assert!(
            line.ends_with(&format!(r#","prev":"{}"}}"#, "0".repeat(64))),
            "{line}"
        );
        serde_json::from_str::<serde_json::Value>(&line).expect("valid JSON");
    }

    #[test]
    fn intact_chain_verifies() {
        let lines = build(9);
        let log = join(&lines);
        let summary = verify(&log[..]).expect("intact");
        assert_eq!(summary.lines, 9);
        assert_eq!(summary.bytes, log.len() as u64);
        assert_eq!(summary.head, line_hash(lines[8].as_bytes()));
        assert_eq!(verify(&b""[..]).expect("empty is intact").head, GENESIS);
    }

    #[test]
    fn edited_byte_is_caught_at_or_after_the_line() {
        let mut lines = build(6);
        // A value edit that keeps the JSON valid shows at the next line…
        lines[2] = lines[2].replacen("\"conn_id\":1", "\"conn_id\":9", 1);
        assert!(matches!(
            broken_at(&join(&lines)),
            (4, Fault::PrevMismatch { .. })
        ));
        // …and one that breaks the JSON shows at the line itself.
        let mut lines = build(6);
        lines[3] = lines[3].replacen("\"event\"", "\"event", 1);
        assert!(matches!(broken_at(&join(&lines)), (4, Fault::NotJson(_))));
    }

    #[test]
    fn deleted_swapped_and_truncated_lines_are_caught() {
        let mut lines = build(6);
        lines.remove(2);
        assert!(matches!(
            broken_at(&join(&lines)),
            (3, Fault::PrevMismatch { .. })
        ));

        let mut lines = build(6);
        lines.swap(3, 4);
        assert!(matches!(
            broken_at(&join(&lines)),
            (4, Fault::PrevMismatch { .. })
        ));

        let log = join(&build(6));
        let cut = log.len() - 40;
        assert_eq!(broken_at(&log[..cut]).0, 6);
        assert!(matches!(broken_at(&log[..cut]).1, Fault::Incomplete(_)));

        let mut lines = build(3);
        lines.remove(0);
        assert!(matches!(
            broken_at(&join(&lines)),
            (1, Fault::PrevMismatch { .. })
        ));
    }

    #[test]
    fn each_fault_is_named() {
        let ok_prev = "0".repeat(64);
        let array = format!(r#"["2026-01-01T00:00:00Z","x","{ok_prev}"]"#);
        assert!(matches!(
            check_line(array.as_bytes(), &GENESIS),
            Err(Fault::Malformed(_))
        ));
        type Case = (String, fn(&Fault) -> bool);
        let cases: [Case; 7] = [
            ("[1,2]".into(), |f| matches!(f, Fault::Malformed(_))),
            ("{".into(), |f| matches!(f, Fault::NotJson(_))),
            (format!(r#"{{"event":"x","prev":"{ok_prev}"}}"#), |f| {
                *f == Fault::Missing("ts")
            }),
            (
                format!(r#"{{"ts":"2026-01-01T00:00:00Z","prev":"{ok_prev}"}}"#),
                |f| *f == Fault::Missing("event"),
            ),
            (r#"{"ts":"2026-01-01T00:00:00Z","event":"x"}"#.into(), |f| {
                *f == Fault::Missing("prev")
            }),
            (
                format!(r#"{{"ts":"2026-01-01T01:00:00+01:00","event":"x","prev":"{ok_prev}"}}"#),
                |f| matches!(f, Fault::BadTs(_)),
            ),
            (
                format!(
                    r#"{{"ts":"2026-01-01T00:00:00Z","event":"x","prev":"{}"}}"#,
                    "A".repeat(64)
                ),
                |f| matches!(f, Fault::BadPrev(_)),
            ),
        ];
        for (line, expected) in cases {
            let fault = check_line(line.as_bytes(), &GENESIS).expect_err(&line);
            assert!(expected(&fault), "{line}: {fault:?}");
        }
        let dup = format!(
            r#"{{"ts":"2026-01-01T00:00:00Z","event":"x","prev":"{ok_prev}","prev":"{ok_prev}"}}"#
        );
        assert!(matches!(
            check_line(dup.as_bytes(), &GENESIS),
            Err(Fault::Malformed(_))
        ));
        let fine = format!(
            r#"{{"ts":"2026-01-01T00:00:00Z","event":"future","x":[1,{{}}],"prev":"{ok_prev}"}}"#
        );
        assert_eq!(check_line(fine.as_bytes(), &GENESIS), Ok(()));
    }
}
