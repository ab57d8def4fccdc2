//! Errors of the spool codec.
//!
//! Every variant that concerns a position in a spool file carries the record
//! index (0 = metadata) and the byte offset of that record's length prefix, so
//! `spool verify` can say exactly where a file went bad. Messages say what is
//! wrong and what to do: a spool file that fails authentication is never
//! repaired, only quarantined or re-sent.

use super::key::KeyId;

/// What to tell an operator about a spool file that fails to open.
const QUARANTINE: &str = "quarantine the file and have the sender re-send it";

/// Errors from sealing or opening a spool file.
#[derive(Debug, thiserror::Error)]
pub enum SpoolCodecError {
    /// Reading the source or writing the destination failed.
    #[error("spool I/O error while {action}: {source}")]
    Io {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The input ends inside the 55-byte header.
    #[error(
        "spool file too short: {len} of 55 header bytes; the file is truncated ({QUARANTINE})"
    )]
    ShortHeader { len: usize },
    /// The first 8 bytes are not `PGSPOOL1`.
    #[error(
        "not a pairgate spool file v1: magic is {found_hex} instead of \"PGSPOOL1\" \
         ({QUARANTINE}, or check that the file belongs in the spool)"
    )]
    BadMagic { found_hex: String },
    /// The header names a different master key.
    #[error(
        "spool file was sealed with key id {found}, but the configured key has id {expected}; \
         configure the key that sealed it (or re-encrypt with `pairgate spool rekey`)"
    )]
    WrongKey { expected: KeyId, found: KeyId },
    /// A record length prefix is outside the allowed range.
    #[error(
        "record {record} at byte {offset}: length {len} is outside {min}..={max}; \
         the file is corrupt ({QUARANTINE})"
    )]
    BadRecordLength {
        record: u32,
        offset: u64,
        len: u32,
        min: u32,
        max: u32,
    },
    /// The input ends after a complete record that is not the last one, or
    /// inside a record or its length prefix.
    #[error(
        "spool file truncated: it ends at byte {offset} inside or before record {record} \
         without a final record ({QUARANTINE})"
    )]
    Truncated { record: u32, offset: u64 },
    /// The record is the final one but more bytes follow it.
    #[error(
        "record {record} at byte {offset} is marked last but more bytes follow: the file was \
         extended or records were removed ({QUARANTINE})"
    )]
    TrailingData { record: u32, offset: u64 },
    /// The record does not authenticate under this key, index and header.
    #[error(
        "record {record} at byte {offset} failed authentication: the file was modified, \
         corrupted, or its records reordered or duplicated ({QUARANTINE})"
    )]
    Tampered { record: u32, offset: u64 },
    /// Record 0 authenticated but is not acceptable metadata.
    #[error("spool metadata (record 0) is invalid: {reason} ({QUARANTINE})")]
    BadMetadata { reason: String },
    /// Record 0 carries the last flag: there is no data record.
    #[error("spool file has no data record (record 0 is marked last) ({QUARANTINE})")]
    NoDataRecord,
    /// A data chunk has a size the format forbids.
    #[error(
        "record {record} at byte {offset}: data chunk of {len} bytes is not allowed here \
         (only the last chunk may be shorter than 65536, and empty only for an empty file) \
         ({QUARANTINE})"
    )]
    BadChunkSize {
        record: u32,
        offset: u64,
        len: usize,
    },
    /// The decrypted bytes disagree with the metadata's size.
    #[error(
        "spool file holds {actual} or more plaintext bytes but its metadata declares {declared} \
         ({QUARANTINE})"
    )]
    SizeMismatch { declared: u64, actual: u64 },
    /// The decrypted bytes disagree with the metadata's SHA-256.
    #[error(
        "spool plaintext has SHA-256 {actual} but its metadata declares {declared} ({QUARANTINE})"
    )]
    DigestMismatch { declared: String, actual: String },
    /// While sealing, the source did not match the size/SHA-256 computed
    /// beforehand: it changed between the hashing pass and the sealing pass.
    #[error(
        "source changed while it was being encrypted ({detail}); discard the partial output \
         and retry once the source file is complete"
    )]
    SourceChanged { detail: String },
    /// The file would need more than 2^32 records (about 256 TiB).
    #[error("file too large for spool format v1 (more than 2^32 records); split it")]
    TooLarge,
    /// A `Sealer`/`Opener` method was called out of order (a caller bug).
    #[error("spool codec used out of order: {0}; this is a bug in pairgate, please report it")]
    Misuse(&'static str),
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed; cannot create a spool file")]
    Random,
}

impl SpoolCodecError {
    /// Wraps an I/O error with what the codec was doing.
    pub(crate) fn io(action: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        move |source| Self::Io { action, source }
    }
}

/// Errors of the spool store, its transfer protocol and its tools.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A filesystem operation on a spool, outbox or inbox path failed.
    #[error("{action} {path}: {source}; check that the folder exists, is writable by the gateway and the disk is not full")]
    Io {
        action: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A spool file failed to seal or open.
    #[error("{path}: {source}")]
    Codec {
        path: std::path::PathBuf,
        #[source]
        source: SpoolCodecError,
    },
    /// The spool key file is missing, malformed or not private.
    #[error(transparent)]
    Key(#[from] super::key::KeyError),
    /// The peer broke the transfer protocol.
    #[error(transparent)]
    Wire(#[from] super::wire::WireError),
    /// The peer refused a file (it says why).
    #[error("the peer refused {id} ({}): {message}", reason.as_str())]
    Refused {
        id: String,
        reason: super::wire::Refusal,
        message: String,
    },
    /// The transfer connection failed.
    #[error("spool link to {peer}: {detail}")]
    Link { peer: String, detail: String },
    /// The transfer connection made no progress within `stall_secs`.
    #[error(
        "spool link to {peer} stalled: no progress for {secs} s while {doing}; the connection \
         was dropped and the transfer will resume on a new one"
    )]
    Stalled {
        peer: String,
        doing: &'static str,
        secs: u64,
    },
    /// Another process runs the spool in this folder.
    #[error("the spool {dir} is in use by another pairgate process (it holds {}/lock): give each gateway instance its own `spool.dir` (two instances may share the outbox), stop the other one, or start this one with `pairgate run --takeover`", dir.display())]
    Locked { dir: std::path::PathBuf },
    /// A background task died (a bug).
    #[error("spool task failed: {0}; this is a bug in pairgate, please report it")]
    Task(String),
}

impl SpoolError {
    /// Whether this is a full disk or an exhausted quota (`ENOSPC`,
    /// `EDQUOT`): a condition that clears when space is freed.
    pub fn is_storage_full(&self) -> bool {
        let io = match self {
            SpoolError::Io { source, .. } => Some(source),
            SpoolError::Codec {
                source: SpoolCodecError::Io { source, .. },
                ..
            } => Some(source),
            _ => None,
        };
        io.is_some_and(is_full)
    }

    /// Wraps an I/O error with the action and the path.
    pub(crate) fn io(
        action: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_owned();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }

    /// Wraps a codec error with the file it concerns.
    pub(crate) fn codec(path: &std::path::Path) -> impl FnOnce(SpoolCodecError) -> Self {
        let path = path.to_owned();
        move |source| Self::Codec { path, source }
    }
}

/// `ENOSPC` or `EDQUOT`.
pub(crate) fn is_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(28 | 122))
}

impl From<crate::fsutil::FsError> for SpoolError {
    fn from(e: crate::fsutil::FsError) -> SpoolError {
        SpoolError::Io {
            action: e.action,
            path: e.path,
            source: e.source,
        }
    }
}
