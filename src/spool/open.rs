//! [`Opener`]: the reading half of the sans-IO codec.

use ring::digest;

use super::codec::{FileCipher, CHUNK_LEN, HEADER_LEN, MAGIC, MAX_RECORD_LEN, TAG_LEN};
use super::error::SpoolCodecError;
use super::key::{KeyId, MasterKey};
use super::metadata::Metadata;

/// What [`Opener::open_record`] authenticated.
#[derive(Debug)]
pub enum Opened<'a> {
    /// Record 0.
    Metadata(&'a Metadata),
    /// A data chunk; `last` is true for the final record.
    Data { bytes: &'a [u8], last: bool },
}

/// Authenticates and decrypts a v1 spool file record by record, in order.
///
/// Call [`Opener::check_len`] on each length prefix before reading the
/// ciphertext (it bounds the allocation), then [`Opener::open_record`] with
/// whether the input ends right after that record, and [`Opener::finish`] at
/// the end of input. Plaintext handed out before `finish` returns `Ok` is not
/// yet known to be complete. After any error the opener refuses further use.
pub struct Opener {
    cipher: FileCipher,
    next: u32,
    offset: u64,
    metadata: Option<Metadata>,
    declared_sha: [u8; 32],
    seen: u64,
    hasher: digest::Context,
    done: bool,
    failed: bool,
    buf: Vec<u8>,
}

impl Opener {
    /// Checks the header (first 55 bytes of `header`) against `master`.
    ///
    /// # Errors
    /// [`SpoolCodecError::ShortHeader`], [`SpoolCodecError::BadMagic`],
    /// [`SpoolCodecError::WrongKey`].
    pub fn new(master: &MasterKey, header: &[u8]) -> Result<Self, SpoolCodecError> {
        let header: [u8; HEADER_LEN] = header
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(SpoolCodecError::ShortHeader { len: header.len() })?;
        if &header[..8] != MAGIC {
            return Err(SpoolCodecError::BadMagic {
                found_hex: hex::encode(&header[..8]),
            });
        }
        let found = KeyId(header[8..16].try_into().unwrap_or_default());
        let expected = master.key_id();
        if found != expected {
            return Err(SpoolCodecError::WrongKey { expected, found });
        }
        Ok(Self {
            cipher: FileCipher::new(master, header)?,
            next: 0,
            offset: HEADER_LEN as u64,
            metadata: None,
            declared_sha: [0; 32],
            seen: 0,
            hasher: digest::Context::new(&digest::SHA256),
            done: false,
            failed: false,
            buf: Vec::with_capacity(MAX_RECORD_LEN),
        })
    }

    /// Index of the next record to open (0 = metadata).
    pub fn next_record(&self) -> u32 {
        self.next
    }

    /// Byte offset of the next record's length prefix.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The metadata, once record 0 is open.
    pub fn metadata(&self) -> Option<&Metadata> {
        self.metadata.as_ref()
    }

    /// True once the last record has been opened and verified.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// An error for input ending now, before the record that should follow.
    pub fn truncated(&self) -> SpoolCodecError {
        SpoolCodecError::Truncated {
            record: self.next,
            offset: self.offset,
        }
    }

    /// Validates a record length prefix; returns it as `usize`.
    ///
    /// # Errors
    /// [`SpoolCodecError::TrailingData`] if the last record was already
    /// opened, [`SpoolCodecError::BadRecordLength`] outside 16..=65552.
    pub fn check_len(&self, len: u32) -> Result<usize, SpoolCodecError> {
        if self.done {
            return Err(SpoolCodecError::TrailingData {
                record: self.next.saturating_sub(1),
                offset: self.offset,
            });
        }
        let len_usize = len as usize;
        if !(TAG_LEN..=MAX_RECORD_LEN).contains(&len_usize) {
            return Err(SpoolCodecError::BadRecordLength {
                record: self.next,
                offset: self.offset,
                len,
                min: TAG_LEN as u32,
                max: MAX_RECORD_LEN as u32,
            });
        }
        Ok(len_usize)
    }

    /// Authenticates and decrypts the next record. `at_eof` says whether the
    /// input ends right after it (then it must carry the last flag).
    ///
    /// # Errors
    /// [`SpoolCodecError::Tampered`], [`SpoolCodecError::Truncated`],
    /// [`SpoolCodecError::TrailingData`], [`SpoolCodecError::NoDataRecord`],
    /// [`SpoolCodecError::BadMetadata`], [`SpoolCodecError::BadChunkSize`],
    /// [`SpoolCodecError::SizeMismatch`], [`SpoolCodecError::DigestMismatch`],
    /// plus those of [`Opener::check_len`].
    pub fn open_record(
        &mut self,
        ciphertext: &[u8],
        at_eof: bool,
    ) -> Result<Opened<'_>, SpoolCodecError> {
        if self.failed {
            return Err(SpoolCodecError::Misuse("Opener used after an error"));
        }
        self.failed = true; // cleared on success below
        let len = u32::try_from(ciphertext.len()).unwrap_or(u32::MAX);
        self.check_len(len)?;
        let (index, offset) = (self.next, self.offset);
        let end = offset + 4 + ciphertext.len() as u64;
        if !self.cipher.open(index, at_eof, ciphertext, &mut self.buf) {
            return Err(
                if !self.cipher.open(index, !at_eof, ciphertext, &mut self.buf) {
                    SpoolCodecError::Tampered {
                        record: index,
                        offset,
                    }
                } else if at_eof {
                    SpoolCodecError::Truncated {
                        record: index.saturating_add(1),
                        offset: end,
                    }
                } else {
                    SpoolCodecError::TrailingData {
                        record: index,
                        offset: end,
                    }
                },
            );
        }
        if index == 0 {
            self.accept_metadata(at_eof)?;
        } else {
            self.accept_chunk(index, offset, at_eof)?;
        }
        self.next = index.checked_add(1).ok_or(SpoolCodecError::TooLarge)?;
        self.offset = end;
        self.done = at_eof;
        self.failed = false;
        Ok(match (&self.metadata, index) {
            (Some(meta), 0) => Opened::Metadata(meta),
            _ => Opened::Data {
                bytes: &self.buf,
                last: at_eof,
            },
        })
    }

    fn accept_metadata(&mut self, last: bool) -> Result<(), SpoolCodecError> {
        if last {
            return Err(SpoolCodecError::NoDataRecord);
        }
        let meta = Metadata::from_record(&self.buf)?;
        self.declared_sha = meta.sha256_bytes()?;
        self.metadata = Some(meta);
        Ok(())
    }

    fn accept_chunk(&mut self, index: u32, offset: u64, last: bool) -> Result<(), SpoolCodecError> {
        let len = self.buf.len();
        if (!last && len != CHUNK_LEN) || (len == 0 && index != 1) {
            return Err(SpoolCodecError::BadChunkSize {
                record: index,
                offset,
                len,
            });
        }
        let declared = self.metadata.as_ref().map_or(0, |m| m.size);
        let seen = self.seen + len as u64;
        if seen > declared || (last && seen != declared) {
            return Err(SpoolCodecError::SizeMismatch {
                declared,
                actual: seen,
            });
        }
        self.hasher.update(&self.buf);
        self.seen = seen;
        if last {
            let actual = self.hasher.clone().finish();
            if actual.as_ref() != self.declared_sha {
                return Err(SpoolCodecError::DigestMismatch {
                    declared: hex::encode(self.declared_sha),
                    actual: hex::encode(actual),
                });
            }
        }
        Ok(())
    }

    /// Ends the file: returns the metadata if the last record was opened.
    ///
    /// # Errors
    /// [`SpoolCodecError::Truncated`] if it was not.
    pub fn finish(self) -> Result<Metadata, SpoolCodecError> {
        match (self.done, self.metadata) {
            (true, Some(meta)) if !self.failed => Ok(meta),
            _ => Err(SpoolCodecError::Truncated {
                record: self.next,
                offset: self.offset,
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
#[path = "open_tests.rs"]
mod tests;
