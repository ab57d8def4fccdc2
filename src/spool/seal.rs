//! [`Sealer`]: the writing half of the sans-IO codec.

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

use super::codec::{FileCipher, CHUNK_LEN, HEADER_LEN, MAGIC, NONCE_PREFIX_LEN, SALT_LEN};
use super::error::SpoolCodecError;
use super::key::MasterKey;
use super::metadata::Metadata;

/// Produces a v1 spool file: header, metadata record, data records.
///
/// Feed it with [`Sealer::begin`] once, then [`Sealer::seal_chunk`] for each
/// 65536-byte chunk, the last one with `last = true`. It checks the chunks
/// against the metadata's `size` and `sha256` and refuses to seal a last
/// record that would not match, so every complete output opens cleanly.
pub struct Sealer {
    cipher: FileCipher,
    metadata: Metadata,
    metadata_record: Vec<u8>,
    declared_sha: [u8; 32],
    next: u32,
    /// Bytes emitted so far (offset of the next record).
    offset: u64,
    seen: u64,
    hasher: digest::Context,
    done: bool,
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
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(MAGIC);
        header[8..16].copy_from_slice(&master.key_id().0);
        header[16..16 + SALT_LEN].copy_from_slice(&salt);
        header[16 + SALT_LEN..].copy_from_slice(&nonce_prefix);
        Ok(Self {
            cipher: FileCipher::new(master, header)?,
            metadata,
            metadata_record,
            declared_sha,
            next: 0,
            offset: 0,
            seen: 0,
            hasher: digest::Context::new(&digest::SHA256),
            done: false,
        })
    }

    /// A sealer with a random salt and nonce prefix from the system CSPRNG.
    ///
    /// # Errors
    /// [`SpoolCodecError::Random`] or [`SpoolCodecError::BadMetadata`].
    pub fn random(master: &MasterKey, metadata: &Metadata) -> Result<Self, SpoolCodecError> {
        let rng = SystemRandom::new();
        let mut salt = [0u8; SALT_LEN];
        let mut prefix = [0u8; NONCE_PREFIX_LEN];
        rng.fill(&mut salt).map_err(|_| SpoolCodecError::Random)?;
        rng.fill(&mut prefix).map_err(|_| SpoolCodecError::Random)?;
        Self::new(master, salt, prefix, metadata.to_record()?)
    }

    /// The 55 header bytes.
    pub fn header(&self) -> &[u8; HEADER_LEN] {
        &self.cipher.header
    }

    /// The metadata record 0 carries.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// True once the last record has been sealed.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Replaces `out` with the header followed by the framed metadata record.
    ///
    /// # Errors
    /// [`SpoolCodecError::Misuse`] if called twice.
    pub fn begin(&mut self, out: &mut Vec<u8>) -> Result<(), SpoolCodecError> {
        if self.next != 0 {
            return Err(SpoolCodecError::Misuse("Sealer::begin called twice"));
        }
        self.cipher.seal(0, false, &self.metadata_record, out)?;
        out.splice(0..0, self.cipher.header.iter().copied());
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
    /// metadata's size or SHA-256; [`SpoolCodecError::Misuse`] if called
    /// before `begin` or after the last chunk; [`SpoolCodecError::TooLarge`].
    pub fn seal_chunk(
        &mut self,
        chunk: &[u8],
        last: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), SpoolCodecError> {
        if self.next == 0 || self.done {
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
        let declared = self.metadata.size;
        if seen > declared || (last && seen != declared) {
            return Err(SpoolCodecError::SourceChanged {
                detail: format!("read {seen} bytes so far, expected {declared} in total"),
            });
        }
        self.hasher.update(chunk);
        if last {
            let actual = self.hasher.clone().finish();
            if actual.as_ref() != self.declared_sha {
                return Err(SpoolCodecError::SourceChanged {
                    detail: format!(
                        "SHA-256 is {}, expected {}",
                        hex::encode(actual),
                        self.metadata.sha256
                    ),
                });
            }
        }
        self.cipher.seal(self.next, last, chunk, out)?;
        self.seen = seen;
        self.done = last;
        self.offset += out.len() as u64;
        self.next = self.next.checked_add(1).ok_or(SpoolCodecError::TooLarge)?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    fn sealer(size: u64, sha: &str) -> Sealer {
        let meta = format!(
            r#"{{"id":"i","name":"n","size":{size},"sha256":"{sha}","created":"2024-01-01T00:00:00Z"}}"#
        );
        Sealer::new(
            &MasterKey::from_bytes([5; 32]),
            [1; 32],
            [2; 7],
            meta.into_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn enforces_call_order_and_chunk_sizes() {
        let sha = hex::encode(digest::digest(&digest::SHA256, &[0u8; CHUNK_LEN + 1]));
        let mut s = sealer(CHUNK_LEN as u64 + 1, &sha);
        let mut out = Vec::new();
        assert!(matches!(
            s.seal_chunk(&[0], true, &mut out),
            Err(SpoolCodecError::Misuse(_))
        ));
        s.begin(&mut out).unwrap();
        assert_eq!(&out[..8], MAGIC);
        assert_eq!(&out[..HEADER_LEN], s.header());
        let after_begin = out.len() as u64;
        assert!(matches!(s.begin(&mut out), Err(SpoolCodecError::Misuse(_))));
        let err = s.seal_chunk(&[0; 10], false, &mut out).unwrap_err();
        assert!(
            matches!(err, SpoolCodecError::BadChunkSize { record: 1, offset, len: 10 } if offset == after_begin),
            "{err}"
        );
        s.seal_chunk(&[0; CHUNK_LEN], false, &mut out).unwrap();
        assert!(matches!(
            s.seal_chunk(&[], true, &mut out),
            Err(SpoolCodecError::BadChunkSize { record: 2, .. })
        ));
        s.seal_chunk(&[0], true, &mut out).unwrap();
        assert!(s.is_done());
        assert!(matches!(
            s.seal_chunk(&[0], true, &mut out),
            Err(SpoolCodecError::Misuse(_))
        ));
    }

    #[test]
    fn refuses_a_last_chunk_that_contradicts_the_metadata() {
        let sha_a = hex::encode(digest::digest(&digest::SHA256, b"a"));
        let mut out = Vec::new();
        let mut s = sealer(1, &sha_a);
        s.begin(&mut out).unwrap();
        assert!(matches!(
            s.seal_chunk(b"b", true, &mut out),
            Err(SpoolCodecError::SourceChanged { .. })
        ));
        let mut s = sealer(2, &sha_a);
        s.begin(&mut out).unwrap();
        assert!(matches!(
            s.seal_chunk(b"a", true, &mut out),
            Err(SpoolCodecError::SourceChanged { .. })
        ));
    }
}
