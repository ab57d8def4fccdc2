//! Why a file failed or was refused: the reason byte that starts a v2
//! ERROR frame ([`super::wire`]), which lets a sender tell a refusal for
//! now from one for good.

/// Why a file failed or was refused: the first byte of an ERROR body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Unspecified; treated as a refusal for now.
    Other,
    /// The id is being received on another connection: retry soon.
    Busy,
    /// The receiver's spool has no room now (`max_bytes` or its disk).
    Full,
    /// Larger than the receiver's `max_bytes`: it can never fit.
    TooLarge,
    /// The receiver cannot accept the file's name or metadata.
    BadName,
    /// The receiver could not store it (digest mismatch, I/O error).
    Failed,
    /// The sender gave up on this file (it could not read it).
    Aborted,
    /// A replay: created longer ago than the receiver's `spool.max_age_days`
    /// (see `spool::replay`). Never retried: the sender quarantines it.
    Replayed,
}

impl Refusal {
    /// The wire byte.
    pub fn code(self) -> u8 {
        match self {
            Refusal::Other => 0,
            Refusal::Busy => 1,
            Refusal::Full => 2,
            Refusal::TooLarge => 3,
            Refusal::BadName => 4,
            Refusal::Failed => 5,
            Refusal::Aborted => 6,
            Refusal::Replayed => 7,
        }
    }

    /// The reason of a wire byte (unknown bytes: [`Refusal::Other`]).
    pub fn from_code(code: u8) -> Refusal {
        match code {
            1 => Refusal::Busy,
            2 => Refusal::Full,
            3 => Refusal::TooLarge,
            4 => Refusal::BadName,
            5 => Refusal::Failed,
            6 => Refusal::Aborted,
            7 => Refusal::Replayed,
            _ => Refusal::Other,
        }
    }

    /// Whether retrying can help without someone changing something.
    pub fn is_permanent(self) -> bool {
        matches!(
            self,
            Refusal::TooLarge | Refusal::BadName | Refusal::Replayed
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Other => "other",
            Refusal::Busy => "busy",
            Refusal::Full => "full",
            Refusal::TooLarge => "too_large",
            Refusal::BadName => "bad_name",
            Refusal::Failed => "failed",
            Refusal::Aborted => "aborted",
            Refusal::Replayed => "replayed",
        }
    }
}
