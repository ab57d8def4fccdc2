//! Record 0 of a spool file: what the file is.
//!
//! The metadata is a JSON object sealed like any record, so it is both
//! confidential (file names can be sensitive) and authenticated. The opener
//! checks the decrypted data against `size` and `sha256` at the end, and
//! validates `name` and `id` up front because the receiving side uses them to
//! build paths: a name must be a bare file name, never a path.
//!
//! Unknown fields are kept in [`Metadata::extra`] so newer senders can add
//! fields (e.g. `origin_pool`) without breaking older receivers.

use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::error::SpoolCodecError;

/// Largest metadata record plaintext, in bytes (64 KiB).
pub const MAX_METADATA_LEN: usize = 65536;

/// A well-formed `sha256` to stand in until the data has been read (a
/// one-pass sealer fills in the real one; see [`Metadata::reserved_len`]).
pub const PLACEHOLDER_SHA256: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// Longest accepted `id` and `name`, in bytes.
const MAX_ID_LEN: usize = 64;
const MAX_NAME_LEN: usize = 255;

/// The metadata record of a spool file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Unique id of the transfer (32 lower-case hex characters when made by
    /// [`Metadata::new`]; receivers dedupe on it). `[0-9A-Za-z_-]`, 1–64 bytes.
    pub id: String,
    /// The file's name only (no folders).
    pub name: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the plaintext.
    pub sha256: String,
    /// When the spool file was created (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// Any further fields, kept as they came.
    #[serde(default, flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Metadata {
    /// Metadata for a file with a fresh random 128-bit id, `created` = now
    /// (UTC, whole seconds).
    ///
    /// # Errors
    /// [`SpoolCodecError::BadMetadata`] if `name` is not a bare file name or
    /// `sha256` is not 64 lower-case hex characters;
    /// [`SpoolCodecError::Random`] if the system RNG fails.
    pub fn new(name: &str, size: u64, sha256: &str) -> Result<Self, SpoolCodecError> {
        let mut id = [0u8; 16];
        SystemRandom::new()
            .fill(&mut id)
            .map_err(|_| SpoolCodecError::Random)?;
        let now = OffsetDateTime::now_utc();
        let created = now.replace_nanosecond(0).unwrap_or(now);
        let meta = Self {
            id: hex::encode(id),
            name: name.to_owned(),
            size,
            sha256: sha256.to_owned(),
            created,
            extra: serde_json::Map::new(),
        };
        meta.validate()?;
        Ok(meta)
    }

    /// The exact bytes to store as record 0 (compact JSON).
    ///
    /// # Errors
    /// [`SpoolCodecError::BadMetadata`] if it does not serialize or exceeds
    /// 64 KiB.
    pub fn to_record(&self) -> Result<Vec<u8>, SpoolCodecError> {
        let bytes = serde_json::to_vec(self).map_err(|e| SpoolCodecError::BadMetadata {
            reason: format!("cannot serialize: {e}"),
        })?;
        if bytes.len() > MAX_METADATA_LEN {
            return Err(bad(format!(
                "{} bytes of JSON, at most {MAX_METADATA_LEN} allowed",
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    /// The length of record 0 for this metadata whatever `size` and
    /// `sha256` turn out to be: a one-pass sealer reserves this much before
    /// it reads the data. `sha256` is always 64 hex characters; `size` is
    /// counted at its widest (20 digits), and [`Metadata::to_record_padded`]
    /// makes up the difference with JSON whitespace.
    ///
    /// # Errors
    /// As [`Metadata::to_record`].
    pub fn reserved_len(&self) -> Result<usize, SpoolCodecError> {
        let mut widest = self.clone();
        widest.size = u64::MAX;
        PLACEHOLDER_SHA256.clone_into(&mut widest.sha256);
        Ok(widest.to_record()?.len())
    }

    /// The record-0 bytes padded to exactly `len` with spaces before the
    /// closing brace (whitespace inside a JSON object, which every parser
    /// skips; the fields and their types stay as they are).
    ///
    /// # Errors
    /// [`SpoolCodecError::BadMetadata`] if the fields are invalid or the
    /// compact JSON is longer than `len`.
    pub fn to_record_padded(&self, len: usize) -> Result<Vec<u8>, SpoolCodecError> {
        self.validate()?;
        let mut bytes = self.to_record()?;
        if bytes.len() > len || bytes.pop() != Some(b'}') {
            return Err(bad(format!(
                "{} bytes of JSON do not fit the {len} bytes reserved for record 0",
                bytes.len()
            )));
        }
        bytes.resize(len - 1, b' ');
        bytes.push(b'}');
        Ok(bytes)
    }

    /// Parses and validates record 0's plaintext.
    ///
    /// # Errors
    /// [`SpoolCodecError::BadMetadata`] naming the problem.
    pub fn from_record(bytes: &[u8]) -> Result<Self, SpoolCodecError> {
        if bytes.len() > MAX_METADATA_LEN {
            return Err(bad(format!("{} bytes, at most 65536", bytes.len())));
        }
        let meta: Self =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        meta.validate()?;
        Ok(meta)
    }

    /// The declared SHA-256 as bytes.
    pub(crate) fn sha256_bytes(&self) -> Result<[u8; 32], SpoolCodecError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(&self.sha256, &mut out)
            .map_err(|e| bad(format!("sha256 is not hex: {e}")))?;
        Ok(out)
    }

    /// Checks the fields the receiver relies on.
    ///
    /// # Errors
    /// [`SpoolCodecError::BadMetadata`] naming the field.
    pub fn validate(&self) -> Result<(), SpoolCodecError> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= MAX_ID_LEN
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !id_ok {
            return Err(bad(format!(
                "id {:?} must be 1-64 characters of [0-9A-Za-z_-]",
                self.id
            )));
        }
        let name_ok = !self.name.is_empty()
            && self.name.len() <= MAX_NAME_LEN
            && self.name != "."
            && self.name != ".."
            && !self
                .name
                .chars()
                .any(|c| c == '/' || c == '\\' || c.is_control());
        if !name_ok {
            return Err(bad(format!(
                "name {:?} must be a bare file name (1-255 bytes, no '/', '\\', control \
                 characters, not '.' or '..')",
                self.name
            )));
        }
        let sha_ok = self.sha256.len() == 64
            && self
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !sha_ok {
            return Err(bad(format!(
                "sha256 {:?} must be 64 lower-case hex characters",
                self.sha256
            )));
        }
        Ok(())
    }
}

fn bad(reason: String) -> SpoolCodecError {
    SpoolCodecError::BadMetadata { reason }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    const SHA_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn new_round_trips_through_record_bytes() {
        let meta = Metadata::new("backup.bak", 0, SHA_EMPTY).unwrap();
        assert_eq!(meta.id.len(), 32);
        let bytes = meta.to_record().unwrap();
        assert_eq!(Metadata::from_record(&bytes).unwrap(), meta);
    }

    #[test]
    fn padded_records_fill_the_reserved_length_for_every_size() {
        let mut meta = Metadata::new("b\u{e4}ckup \"1\".bak", 0, PLACEHOLDER_SHA256).unwrap();
        meta.extra
            .insert("source".into(), serde_json::json!({"ino": 7}));
        let len = meta.reserved_len().unwrap();
        for size in [0, 9, 10, 65_536, 1 << 40, u64::MAX] {
            meta.size = size;
            meta.sha256 = hex::encode([size as u8; 32]);
            let bytes = meta.to_record_padded(len).unwrap();
            assert_eq!(bytes.len(), len, "size {size}");
            assert_eq!(Metadata::from_record(&bytes).unwrap(), meta, "size {size}");
            // Still an object whose `size` is a JSON number.
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v["size"].as_u64(), Some(size));
        }
        meta.size = 5;
        let compact = meta.to_record().unwrap();
        assert_eq!(meta.to_record_padded(compact.len()).unwrap(), compact);
        assert!(meta.to_record_padded(compact.len() - 1).is_err());
    }

    #[test]
    fn extra_fields_are_kept() {
        let json = format!(
            r#"{{"id":"abc","name":"f","size":1,"sha256":"{SHA_EMPTY}",
               "created":"2024-05-01T12:00:00Z","origin_pool":"pool01.site1.example"}}"#
        );
        let meta = Metadata::from_record(json.as_bytes()).unwrap();
        assert_eq!(meta.extra["origin_pool"], "pool01.site1.example");
        let again = Metadata::from_record(&meta.to_record().unwrap()).unwrap();
        assert_eq!(again, meta);
    }

    #[test]
    fn rejects_paths_bad_ids_bad_digests_and_missing_fields() {
        for name in ["", ".", "..", "a/b", "..\\x", "a\nb"] {
            let err = Metadata::new(name, 0, SHA_EMPTY).unwrap_err();
            assert!(
                matches!(err, SpoolCodecError::BadMetadata { .. }),
                "{name:?}"
            );
        }
        assert!(Metadata::new("f", 0, &SHA_EMPTY.to_uppercase()).is_err());
        assert!(Metadata::new("f", 0, &SHA_EMPTY[..63]).is_err());
        let mut meta = Metadata::new("f", 0, SHA_EMPTY).unwrap();
        meta.id = "../x".into();
        assert!(meta.validate().is_err());
        let missing = br#"{"id":"a","name":"f","size":0,"created":"2024-05-01T12:00:00Z"}"#;
        assert!(Metadata::from_record(missing).is_err());
        assert!(Metadata::from_record(b"[1,2]").is_err());
        assert!(Metadata::from_record(b"\xff").is_err());
    }
}
