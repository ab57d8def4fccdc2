//! [`Sealer`]: the writing half of the sans-IO codec.
//!
//! Two ways to produce the same file:
//!
//! - **Metadata first** ([`Sealer::new`], [`Sealer::random`]): the caller
//!   knows `size` and `sha256` before sealing (the receiver, from the
//!   OFFER; `rekey`, from the old file). Record 0, then the data records,
//!   in file order; the sealer checks the data against the metadata.
//! - **One pass** ([`Sealer::reserving`], [`Sealer::random_reserving`]):
//!   `size` and `sha256` are learnt while sealing (outbox intake reads each
//!   file once). [`Sealer::begin`] emits the header and a zero-filled
//!   placeholder of record 0's exact framed length; the data records
//!   follow; once the last one is sealed, [`Sealer::seal_metadata`] seals
//!   record 0 — which must be exactly the reserved length — and says at
//!   which offset it replaces the placeholder. Record 0's nonce (index 0,
//!   last flag 0) does not depend on when it is sealed, so the finished
//!   file is byte for byte what the metadata-first sealer makes from the
//!   same salt, nonce prefix and metadata bytes.

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

use super::codec::{FileCipher, CHUNK_LEN, HEADER_LEN, MAGIC, NONCE_PREFIX_LEN, SALT_LEN, TAG_LEN};
use super::error::SpoolCodecError;
use super::key::MasterKey;
use super::metadata::{Metadata, MAX_METADATA_LEN};

/// Record 0: given up front, or reserved and sealed last.
enum Record0 {
    Given {
        metadata: Metadata,
        record: Vec<u8>,
        declared_sha: [u8; 32],
    },
    Reserved {
        len: usize,
        metadata: Option<Metadata>,
    },
}

/// Produces a v1 spool file: header, metadata record, data records.
///
/// Feed it with [`Sealer::begin`] once, then [`Sealer::seal_chunk`] for each
/// 65536-byte chunk, the last one with `last = true` (then, in one-pass
/// mode, [`Sealer::seal_metadata`]). With metadata given up front it checks
/// the chunks against the metadata's `size` and `sha256` and refuses to
/// seal a last record that would not match; in one-pass mode it checks the
/// metadata against the chunks instead. Either way every complete output
/// opens cleanly.
pub struct Sealer {
    cipher: FileCipher,
    record0: Record0,
    /// Index of the next data record (0 before `begin`).
    next: u32,
    /// Bytes emitted so far (offset of the next data record).
    offset: u64,
    seen: u64,
    hasher: digest::Context,
    /// The last data record is sealed; its SHA-256.
    data_sha: Option<[u8; 32]>,
}

impl Sealer {
    /// A sealer with the given salt and nonce prefix, storing
    /// `metadata_record` byte for byte as record 0 (deterministic output for
    /// known-answer tests; production uses [`Sealer::random`]).
    ///
    /// # Errors
    /// [`SpoolCodecError::BadMetadata`] if the record is not valid metadata.
    pub fn new(
        master: &MasterKey,
        salt: [u8; SALT_LEN],
        nonce_prefix: [u8; NONCE_PREFIX_LEN],
        metadata_record: Vec<u8>,
    ) -> Result<Self, SpoolCodecError> {
        let metadata = Metadata::from_record(&metadata_record)?;
        let declared_sha = metadata.sha256_bytes()?;
        Self::with(
            master,
            salt,
            nonce_prefix,
            Record0::Given {
                metadata,
                record: metadata_record,
                declared_sha,
            },
        )
    }

    /// A one-pass sealer with the given salt and nonce prefix whose record 0
    /// will be exactly `record0_len` bytes of metadata (see
    /// [`Metadata::reserved_len`] and [`Metadata::to_record_padded`]).
    ///
    /// # Errors
    /// [`SpoolCodecError::BadMetadata`] if `record0_len` is 0 or above
    /// 64 KiB.
    pub fn reserving(
        master: &MasterKey,
        salt: [u8; SALT_LEN],
        nonce_prefix: [u8; NONCE_PREFIX_LEN],
        record0_len: usize,
    ) -> Result<Self, SpoolCodecError> {
        if record0_len == 0 || record0_len > MAX_METADATA_LEN {
            return Err(SpoolCodecError::BadMetadata {
                reason: format!(
                    "{record0_len} bytes reserved for record 0, 1-{MAX_METADATA_LEN} allowed"
                ),
            });
        }
        Self::with(
            master,
            salt,
            nonce_prefix,
            Record0::Reserved {
                len: record0_len,
                metadata: None,
            },
        )
    }

    fn with(
        master: &MasterKey,
        salt: [u8; SALT_LEN],
        nonce_prefix: [u8; NONCE_PREFIX_LEN],
        record0: Record0,
    ) -> Result<Self, SpoolCodecError> {
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(MAGIC);
        header[8..16].copy_from_slice(&master.key_id().0);
        header[16..16 + SALT_LEN].copy_from_slice(&salt);
        header[16 + SALT_LEN..].copy_from_slice(&nonce_prefix);
        Ok(Self {
            cipher: FileCipher::new(master, header)?,
            record0,
            next: 0,
            offset: 0,
            seen: 0,
            hasher: digest::Context::new(&digest::SHA256),
            data_sha: None,
        })
    }

    /// A sealer with a random salt and nonce prefix from the system CSPRNG.
    ///
    /// # Errors
    /// [`SpoolCodecError::Random`] or [`SpoolCodecError::BadMetadata`].
    pub fn random(master: &MasterKey, metadata: &Metadata) -> Result<Self, SpoolCodecError> {
        let (salt, prefix) = random_salt_and_prefix()?;
        Self::new(master, salt, prefix, metadata.to_record()?)
    }

    /// A one-pass sealer ([`Sealer::reserving`]) with a random salt and
    /// nonce prefix.
    ///
    /// # Errors
    /// [`SpoolCodecError::Random`] or [`SpoolCodecError::BadMetadata`].
    pub fn random_reserving(
        master: &MasterKey,
        record0_len: usize,
    ) -> Result<Self, SpoolCodecError> {
        let (salt, prefix) = random_salt_and_prefix()?;
        Self::reserving(master, salt, prefix, record0_len)
    }

    /// The 55 header bytes.
    pub fn header(&self) -> &[u8; HEADER_LEN] {
        &self.cipher.header
    }

    /// The metadata record 0 carries (in one-pass mode: once sealed).
    pub fn metadata(&self) -> Option<&Metadata> {
        match &self.record0 {
            Record0::Given { metadata, .. } => Some(metadata),
            Record0::Reserved { metadata, .. } => metadata.as_ref(),
        }
    }

    /// In one-pass mode, the length reserved for record 0's metadata.
    pub fn reserved_len(&self) -> Option<usize> {
        match self.record0 {
            Record0::Reserved { len, .. } => Some(len),
            Record0::Given { .. } => None,
        }
    }

    /// Size and SHA-256 of the data, once the last data record is sealed.
    pub fn data_digest(&self) -> Option<(u64, [u8; 32])> {
        self.data_sha.map(|sha| (self.seen, sha))
    }

    /// True once every record, record 0 included, has been sealed.
    pub fn is_done(&self) -> bool {
        self.data_sha.is_some() && self.metadata().is_some()
    }

    /// Replaces `out` with the header followed by the framed metadata record
    /// (in one-pass mode: by zeros of its framed length, a placeholder
    /// [`Sealer::seal_metadata`] fills in at the end).
    ///
    /// # Errors
    /// [`SpoolCodecError::Misuse`] if called twice.
    pub fn begin(&mut self, out: &mut Vec<u8>) -> Result<(), SpoolCodecError> {
        if self.next != 0 {
            return Err(SpoolCodecError::Misuse("Sealer::begin called twice"));
        }
        match &self.record0 {
            Record0::Given { record, .. } => {
                self.cipher.seal(0, false, record, out)?;
                out.splice(0..0, self.cipher.header.iter().copied());
            }
            Record0::Reserved { len, .. } => {
                out.clear();
                out.extend_from_slice(&self.cipher.header);
                out.resize(HEADER_LEN + 4 + len + TAG_LEN, 0);
            }
        }
        self.next = 1;
        self.offset = out.len() as u64;
        Ok(())
    }

    /// Replaces `out` with the framed record for the next data chunk.
    ///
    /// # Errors
    /// [`SpoolCodecError::BadChunkSize`] if a non-last chunk is not 65536
    /// bytes or a chunk is empty other than the only chunk of an empty file;
    /// [`SpoolCodecError::SourceChanged`] if the data disagrees with the
    /// metadata's size or SHA-256 (metadata given up front);
    /// [`SpoolCodecError::Misuse`] if called before `begin` or after the
    /// last chunk; [`SpoolCodecError::TooLarge`].
    pub fn seal_chunk(
        &mut self,
        chunk: &[u8],
        last: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), SpoolCodecError> {
        if self.next == 0 || self.data_sha.is_some() {
            return Err(SpoolCodecError::Misuse(
                "Sealer::seal_chunk called before begin or after the last chunk",
            ));
        }
        let bad_size = chunk.len() > CHUNK_LEN
            || (!last && chunk.len() != CHUNK_LEN)
            || (chunk.is_empty() && self.next != 1);
        if bad_size {
            return Err(SpoolCodecError::BadChunkSize {
                record: self.next,
                offset: self.offset,
                len: chunk.len(),
            });
        }
        let seen = self.seen + chunk.len() as u64;
        if let Record0::Given { metadata, .. } = &self.record0 {
            let declared = metadata.size;
            if seen > declared || (last && seen != declared) {
                return Err(SpoolCodecError::SourceChanged {
                    detail: format!("read {seen} bytes so far, expected {declared} in total"),
                });
            }
        }
        self.hasher.update(chunk);
        let mut sha = None;
        if last {
            let mut actual = [0u8; 32];
            actual.copy_from_slice(self.hasher.clone().finish().as_ref());
            if let Record0::Given {
                metadata,
                declared_sha,
                ..
            } = &self.record0
            {
                if &actual != declared_sha {
                    return Err(SpoolCodecError::SourceChanged {
                        detail: format!(
                            "SHA-256 is {}, expected {}",
                            hex::encode(actual),
                            metadata.sha256
                        ),
                    });
                }
            }
            sha = Some(actual);
        }
        let index = self.next;
        let next = index.checked_add(1).ok_or(SpoolCodecError::TooLarge)?;
        self.cipher.seal(index, last, chunk, out)?;
        self.seen = seen;
        self.data_sha = sha;
        self.offset += out.len() as u64;
        self.next = next;
        Ok(())
    }

    /// One-pass mode, after the last data chunk: replaces `out` with the
    /// framed record 0 sealing `record` and returns the offset at which it
    /// replaces the placeholder ([`HEADER_LEN`]).
    ///
    /// # Errors
    /// [`SpoolCodecError::Misuse`] if the sealer was given its metadata up
    /// front, the data is not complete, or record 0 is sealed already;
    /// [`SpoolCodecError::BadMetadata`] if `record` is not valid metadata,
    /// is not exactly the reserved length, or its `size` or `sha256` are
    /// not those of the data sealed.
    pub fn seal_metadata(
        &mut self,
        record: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<u64, SpoolCodecError> {
        let Some((size, sha)) = self.data_digest() else {
            return Err(SpoolCodecError::Misuse(
                "Sealer::seal_metadata called before the last chunk",
            ));
        };
        let Record0::Reserved { len, metadata } = &mut self.record0 else {
            return Err(SpoolCodecError::Misuse(
                "Sealer::seal_metadata called on a sealer given its metadata",
            ));
        };
        if metadata.is_some() {
            return Err(SpoolCodecError::Misuse(
                "Sealer::seal_metadata called twice",
            ));
        }
        if record.len() != *len {
            return Err(SpoolCodecError::BadMetadata {
                reason: format!(
                    "{} bytes of metadata, {len} were reserved for record 0",
                    record.len()
                ),
            });
        }
        let meta = Metadata::from_record(record)?;
        if meta.size != size || meta.sha256_bytes()? != sha {
            return Err(SpoolCodecError::BadMetadata {
                reason: format!(
                    "metadata says {} bytes with SHA-256 {}, the data sealed is {size} bytes \
                     with SHA-256 {}",
                    meta.size,
                    meta.sha256,
                    hex::encode(sha)
                ),
            });
        }
        self.cipher.seal(0, false, record, out)?;
        *metadata = Some(meta);
        Ok(HEADER_LEN as u64)
    }
}

fn random_salt_and_prefix() -> Result<([u8; SALT_LEN], [u8; NONCE_PREFIX_LEN]), SpoolCodecError> {
    let rng = SystemRandom::new();
    let mut salt = [0u8; SALT_LEN];
    let mut prefix = [0u8; NONCE_PREFIX_LEN];
    rng.fill(&mut salt).map_err(|_| SpoolCodecError::Random)?;
    rng.fill(&mut prefix).map_err(|_| SpoolCodecError::Random)?;
    Ok((salt, prefix))
}

#[cfg(test)]
#[path = "seal_tests.rs"]
mod tests;
