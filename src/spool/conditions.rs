//! Persistent conditions of the spool — a file waiting for a key, a file
//! the peer refuses, an inbox that cannot take a file, an outbox file that
//! cannot be read, a stalled link — logged and audited **once** when they
//! start and once when they clear, never on every retry, and shown in
//! `/status` and metrics while they last.
//!
//! Outbox files refused at intake keep their historic audit record,
//! `spool_refused` (one per file and version), and end with the file's
//! `spool_in`; everything else is audited as `spool_condition` with
//! `state` `start` / `clear`.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use time::OffsetDateTime;

use super::store::lock;
pub use crate::audit::Condition;
use crate::audit::{AuditLog, Event, SpoolCondition};

/// What a condition is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Subject {
    /// The file's name, when the condition is about one file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The spool id, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Plaintext size, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The missing key's id (`waiting_for_key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

/// One active condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Active {
    pub condition: Condition,
    #[serde(flatten)]
    pub subject: Subject,
    /// Files it holds back (e.g. all files sealed under a missing key).
    pub files: u64,
    /// What is wrong and what to do.
    pub detail: String,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
}

/// How a condition is audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audited {
    /// `spool_condition` at start and at clear.
    Condition,
    /// Already audited by the caller (`spool_refused`); clear silently.
    ByCaller,
}

/// One report of a condition (see [`Conditions::raise`]).
#[derive(Debug, Clone)]
pub struct Report {
    pub condition: Condition,
    /// Distinguishes conditions of one kind (a file name, an id, a key id).
    pub key: String,
    pub subject: Subject,
    pub files: u64,
    pub detail: String,
    pub audited: Audited,
}

/// The registry of active conditions, keyed by (condition, key).
#[derive(Default)]
pub struct Conditions {
    audit: Option<AuditLog>,
    active: Mutex<HashMap<(Condition, String), (Active, Audited)>>,
}

impl Conditions {
    /// A registry auditing into `audit` (none for offline tools).
    pub fn new(audit: Option<AuditLog>) -> Conditions {
        Conditions {
            audit,
            active: Mutex::default(),
        }
    }

    /// Raises (or refreshes) a condition. Logs and audits only when it
    /// starts; a refresh only updates `files` and `detail`. Returns whether
    /// it started now.
    pub fn raise(&self, r: Report) -> bool {
        let mut map = lock(&self.active);
        if let Some((a, _)) = map.get_mut(&(r.condition, r.key.clone())) {
            a.files = r.files;
            a.detail = r.detail;
            return false;
        }
        tracing::warn!(
            condition = r.condition.as_str(),
            name = r.subject.name.as_deref(),
            id = r.subject.id.as_deref(),
            key_id = r.subject.key_id.as_deref(),
            files = r.files,
            detail = %r.detail,
            "spool condition started"
        );
        if let (Some(audit), Audited::Condition) = (&self.audit, r.audited) {
            audit.record(Event::SpoolCondition(record(
                r.condition,
                "start",
                &r.subject,
                r.files,
                &r.detail,
            )));
        }
        let active = Active {
            condition: r.condition,
            subject: r.subject,
            files: r.files,
            detail: r.detail,
            since: OffsetDateTime::now_utc(),
        };
        map.insert((r.condition, r.key), (active, r.audited));
        true
    }

    /// Clears a condition if active; logs and audits the clear. Returns
    /// whether it was active.
    pub fn clear(&self, condition: Condition, key: &str) -> bool {
        let Some((a, audited)) = lock(&self.active).remove(&(condition, key.to_owned())) else {
            return false;
        };
        tracing::info!(
            condition = condition.as_str(),
            name = a.subject.name.as_deref(),
            id = a.subject.id.as_deref(),
            key_id = a.subject.key_id.as_deref(),
            "spool condition cleared"
        );
        if let (Some(audit), Audited::Condition) = (&self.audit, audited) {
            audit.record(Event::SpoolCondition(record(
                condition, "clear", &a.subject, a.files, &a.detail,
            )));
        }
        true
    }

    /// Clears every active `condition` whose key is not in `keep`.
    pub fn clear_others(&self, condition: Condition, keep: &[String]) {
        let keep: std::collections::HashSet<&str> = keep.iter().map(String::as_str).collect();
        let stale: Vec<String> = lock(&self.active)
            .keys()
            .filter(|(c, k)| *c == condition && !keep.contains(k.as_str()))
            .map(|(_, k)| k.clone())
            .collect();
        for key in stale {
            self.clear(condition, &key);
        }
    }

    /// Whether a condition is active.
    pub fn is_active(&self, condition: Condition, key: &str) -> bool {
        lock(&self.active).contains_key(&(condition, key.to_owned()))
    }

    /// Every active condition, oldest first.
    pub fn snapshot(&self) -> Vec<Active> {
        let mut all: Vec<Active> = lock(&self.active)
            .values()
            .map(|(a, _)| a.clone())
            .collect();
        all.sort_by(|a, b| (a.since, a.condition.as_str()).cmp(&(b.since, b.condition.as_str())));
        all
    }

    /// Files held back per condition (every condition listed, 0 if none).
    pub fn files_by_condition(&self) -> Vec<(Condition, u64)> {
        let map = lock(&self.active);
        Condition::ALL
            .iter()
            .map(|c| {
                let n = map
                    .iter()
                    .filter(|((k, _), _)| k == c)
                    .map(|(_, (a, _))| a.files)
                    .sum();
                (*c, n)
            })
            .collect()
    }
}

fn record(
    condition: Condition,
    state: &str,
    subject: &Subject,
    files: u64,
    detail: &str,
) -> SpoolCondition {
    SpoolCondition {
        condition: condition.as_str().to_owned(),
        state: state.to_owned(),
        name: subject.name.clone(),
        id: subject.id.clone(),
        size: subject.size,
        key_id: subject.key_id.clone(),
        files,
        detail: detail.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn file(name: &str) -> Subject {
        Subject {
            name: Some(name.into()),
            ..Subject::default()
        }
    }

    #[test]
    fn a_condition_is_audited_once_at_start_and_once_at_clear() {
        let dir = tempfile::tempdir().unwrap();
        let audit = AuditLog::open(&dir.path().join("a.jsonl")).unwrap();
        let c = Conditions::new(Some(audit.clone()));
        for i in 0..100 {
            let started = c.raise(Report {
                condition: Condition::InboxFailing,
                key: "id1".into(),
                subject: file("big.bin"),
                files: 1,
                detail: format!("try {i}: no space left on device"),
                audited: Audited::Condition,
            });
            assert_eq!(started, i == 0);
        }
        assert!(c.is_active(Condition::InboxFailing, "id1"));
        assert_eq!(c.snapshot().len(), 1);
        assert!(c.snapshot()[0].detail.contains("try 99"));
        let counts = c.files_by_condition();
        assert_eq!(counts.len(), Condition::ALL.len());
        assert!(counts.contains(&(Condition::InboxFailing, 1)));
        assert!(c.clear(Condition::InboxFailing, "id1"));
        assert!(!c.clear(Condition::InboxFailing, "id1"));
        audit.flush().unwrap();
        let text = std::fs::read_to_string(dir.path().join("a.jsonl")).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["event"], "spool_condition");
        assert_eq!(lines[0]["state"], "start");
        assert_eq!(lines[0]["condition"], "inbox_failing");
        assert_eq!(lines[0]["name"], "big.bin");
        assert_eq!(lines[1]["state"], "clear");
    }

    #[test]
    fn clear_others_keeps_the_listed_keys_and_by_caller_is_not_audited() {
        let c = Conditions::default();
        for k in ["a", "b", "c"] {
            c.raise(Report {
                condition: Condition::WaitingForKey,
                key: k.into(),
                subject: Subject::default(),
                files: 2,
                detail: String::new(),
                audited: Audited::ByCaller,
            });
        }
        c.clear_others(Condition::WaitingForKey, &["b".to_owned()]);
        assert!(c.is_active(Condition::WaitingForKey, "b"));
        assert_eq!(c.snapshot().len(), 1);
        assert!(c
            .files_by_condition()
            .contains(&(Condition::WaitingForKey, 2)));
    }
}
