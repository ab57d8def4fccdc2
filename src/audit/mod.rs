//! The audit log: every connection and decision as hash-chained JSON lines.
//!
//! Why a chain: the log is the evidence of who reached which service across
//! the WAN. Each line carries `prev`, the SHA-256 of the line before it, so an
//! edit, insertion, deletion or reordering anywhere shows up when the log is
//! verified, naming the first line at or after which it was altered.
//!
//! The flow:
//! - [`event`]: what is recorded ([`Event`]); its serde shape is the contract.
//! - [`chain`]: pure functions — render a line, hash it, check it, and the
//!   streaming [`verify`].
//! - [`sink`]: [`AuditLog`], the append-only writer (one thread, group commit,
//!   `sync_data` per batch, repair of a torn last line after a crash), in
//!   front of a bounded queue.
//! - [`health`]: whether the log keeps up, and `audit.on_failure`: refuse
//!   new connections (default) or continue unaudited while it does not.
//! - [`summary`] and [`query`]: streaming reports over a log for operators;
//!   they parse lines generically so lines of future event types pass through.
//!
//! No key material is ever recorded: events carry addresses, pool names,
//! certificate fingerprints, decisions and byte counts only.

pub mod chain;
pub mod event;
pub mod health;
pub mod query;
pub mod sink;
pub mod summary;
#[cfg(test)]
pub(crate) mod synth;
pub mod tail;

use std::path::PathBuf;

pub use chain::{
    check_line, format_ts, line_hash, render_line, verify, ChainBreak, ChainSummary, Fault,
    VerifyError, GENESIS,
};
pub use event::{
    CertReload, Close, Condition, ConfigReload, Connection, CrlExchange, CrlRecord, Direction,
    Event, LinkState, LogContinued, LogRepaired, PeerAuditHead, PeerControlError, PeerLink,
    PolicyReload, SpoolCondition, SpoolFile, SpoolKeyReload,
};
pub use health::{Health, OnFailure};
pub use query::{matches, parse_time, query, Filter, QueryStats, Record, TimeSpecError};
pub use sink::AuditLog;
pub use summary::{summary, Counts, Flow, Summary};

/// Why the audit log could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot create the audit log folder {path}: {source}; check `audit.path` and the permissions of its parent")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the audit log {path} for appending: {source}; check `audit.path` and its permissions")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read or repair the end of the audit log {path} to continue its chain: {source}; check the file's permissions and the disk")]
    Recover {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the audit writer thread: {source}")]
    Spawn {
        #[source]
        source: std::io::Error,
    },
    #[error("writing the audit log {path} failed: {source}; events were lost (the next line records how many) — free disk space or fix permissions")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the audit writer for {path} has stopped; restart the gateway")]
    WriterGone { path: PathBuf },
    #[error("the audit log {path} is in use by another pairgate process: one process owns a log at a time; stop the other gateway (or give this one its own `audit.path`), or start this one with `pairgate run --takeover` to take over from it")]
    Locked { path: PathBuf },
}
