//! Whether the audit log keeps up, and what the gateway does when it does
//! not (`[audit] on_failure`).
//!
//! Why: the audit log is the evidence of who reached what across the WAN. A
//! full or failing disk used to make it fail open and silently — every
//! connection was still allowed while nothing was written, and the queue
//! in front of the writer grew without bound under a flood. Now the queue
//! is bounded ([`super::sink::QUEUE_CAPACITY`]); the writer and the
//! recorders report here when a write fails or the queue overflows; and
//! [`Health::refusal`] tells the connection paths whether to refuse new
//! connections:
//!
//! - `refuse` (the default): while the audit is failing, new connections
//!   are refused (audit reason `audit_failing`, counted in
//!   `pairgate_denials_total`), in both directions — tunnels and spool
//!   transfers alike, so the spool neither sends nor receives files whose
//!   records would be lost. Established connections continue; the control
//!   channel (heartbeat) continues, so the pair still sees each other.
//! - `continue`: connections go on unaudited; the condition is still
//!   visible (`pairgate_audit_failing`, `/status` `audit`, `/healthz`
//!   stays 200 but the status says why).
//!
//! Either way the condition is logged once when it starts and once when it
//! clears, never per event; events that could not be written are counted
//! in the next `log_repaired` record's `lost_events`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// What the gateway does while the audit log cannot be written or cannot
/// keep up (`[audit] on_failure`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Refuse new connections until the audit log is written again.
    #[default]
    Refuse,
    /// Keep allowing connections, unaudited; say so loudly.
    Continue,
}

impl OnFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Refuse => "refuse",
            OnFailure::Continue => "continue",
        }
    }
}

/// The shared health of one audit log: set by the writer thread and by
/// recorders, read by connection paths, `/status` and metrics.
#[derive(Debug, Default)]
pub struct Health {
    on_failure: Mutex<OnFailure>,
    /// The last write (or repair) failed and none succeeded since.
    write_failing: AtomicBool,
    /// The queue was full when an event was recorded, and the writer has
    /// not written a batch since.
    overflowing: AtomicBool,
    /// Events dropped because the queue was full, not yet counted in a
    /// `log_repaired` record.
    pub(super) dropped: AtomicU64,
    /// Events written and synced since open.
    pub(super) written: AtomicU64,
    /// The error of the last failed write, for `/status` and refusals.
    last_error: Mutex<Option<String>>,
}

impl Health {
    pub fn set_on_failure(&self, on_failure: OnFailure) {
        *self
            .on_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = on_failure;
    }

    pub fn on_failure(&self) -> OnFailure {
        *self
            .on_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Why the audit is failing now, if it is.
    pub fn failing(&self) -> Option<String> {
        if self.write_failing.load(Ordering::Relaxed) {
            let error = self
                .last_error
                .lock()
                .ok()
                .and_then(|e| e.clone())
                .unwrap_or_default();
            return Some(format!("the audit log cannot be written: {error}"));
        }
        if self.overflowing.load(Ordering::Relaxed) {
            return Some("the audit log cannot keep up: its queue is full".to_owned());
        }
        None
    }

    /// `Some(detail)` when a new connection must be refused: the audit is
    /// failing and `on_failure = "refuse"`.
    pub fn refusal(&self) -> Option<String> {
        if self.on_failure() == OnFailure::Continue {
            return None;
        }
        self.failing().map(|why| {
            format!("{why}; new connections are refused until it is written again (audit.on_failure = \"refuse\")")
        })
    }

    /// A write (or repair) failed. Logged when the condition starts.
    pub(super) fn write_failed(&self, path: &std::path::Path, error: &std::io::Error) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error.to_string());
        }
        if !self.write_failing.swap(true, Ordering::Relaxed) {
            tracing::error!(
                path = %path.display(), %error, on_failure = self.on_failure().as_str(),
                "audit log cannot be written: free disk space or fix permissions{}",
                match self.on_failure() {
                    OnFailure::Refuse => "; new connections are refused until it is written again",
                    OnFailure::Continue => "; connections continue UNAUDITED (audit.on_failure = \"continue\")",
                }
            );
        }
    }

    /// A batch was written and synced: the condition, if any, cleared.
    pub(super) fn wrote(&self, path: &std::path::Path, events: u64) {
        self.written.fetch_add(events, Ordering::Relaxed);
        let was_failing = self.write_failing.swap(false, Ordering::Relaxed);
        let was_overflowing = self.overflowing.swap(false, Ordering::Relaxed);
        if was_failing || was_overflowing {
            tracing::info!(path = %path.display(), "audit log is written again");
        }
    }

    /// An event found the queue full and was dropped. Logged when the
    /// condition starts.
    pub(super) fn overflowed(&self, path: &std::path::Path) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        if !self.overflowing.swap(true, Ordering::Relaxed) {
            tracing::error!(
                path = %path.display(), on_failure = self.on_failure().as_str(),
                "audit log cannot keep up (queue full): events are dropped and counted in the next log_repaired record"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn refusal_follows_the_condition_and_the_policy() {
        let h = Health::default();
        assert_eq!(h.failing(), None);
        assert_eq!(h.refusal(), None);
        h.write_failed(
            Path::new("a"),
            &std::io::Error::other("No space left on device"),
        );
        assert!(h.failing().unwrap_or_default().contains("No space left"));
        assert!(h.refusal().unwrap_or_default().contains("refuse"));
        h.set_on_failure(OnFailure::Continue);
        assert_eq!(h.refusal(), None, "continue never refuses");
        assert!(h.failing().is_some(), "but still says so");
        h.wrote(Path::new("a"), 3);
        assert_eq!(h.failing(), None);
        assert_eq!(h.written.load(Ordering::Relaxed), 3);
        h.set_on_failure(OnFailure::Refuse);
        h.overflowed(Path::new("a"));
        assert!(h.refusal().unwrap_or_default().contains("queue is full"));
        assert_eq!(h.dropped.load(Ordering::Relaxed), 1);
    }
}
