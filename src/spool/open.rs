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
mod tests {
    use super::*;
    use crate::spool::codec::{seal_raw, SALT_LEN};
    use crate::spool::{decrypt_stream, encrypt_stream, read_metadata, Sealer};
    use std::io;

    const SHA_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn key() -> MasterKey {
        MasterKey::from_bytes([0x11; 32])
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 256) as u8).collect()
    }

    fn sha_hex(data: &[u8]) -> String {
        hex::encode(digest::digest(&digest::SHA256, data))
    }

    /// A sealed file of `plain` and the (start, end) byte span of each record.
    fn sealed(plain: &[u8]) -> (Vec<u8>, Vec<(usize, usize)>) {
        let meta = Metadata::new("f.bin", plain.len() as u64, &sha_hex(plain)).unwrap();
        let mut file = Vec::new();
        encrypt_stream(plain, &mut file, &key(), &meta).unwrap();
        let mut spans = Vec::new();
        let mut pos = HEADER_LEN;
        while pos < file.len() {
            let len = u32::from_be_bytes(file[pos..pos + 4].try_into().unwrap()) as usize;
            spans.push((pos, pos + 4 + len));
            pos += 4 + len;
        }
        (file, spans)
    }

    fn open(file: &[u8]) -> Result<Vec<u8>, SpoolCodecError> {
        let mut out = Vec::new();
        decrypt_stream(file, &mut out, &key()).map(|_| out)
    }

    /// Header, then record 0 with `meta_json`, then raw `(index, last, data)`.
    fn crafted(meta_json: &str, meta_last: bool, records: &[(u32, bool, &[u8])]) -> Vec<u8> {
        let sealer = Sealer::new(&key(), [3; SALT_LEN], [4; 7], Vec::new());
        assert!(sealer.is_err(), "empty metadata must be refused");
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(MAGIC);
        header[8..16].copy_from_slice(&key().key_id().0);
        let mut file = header.to_vec();
        file.extend(seal_raw(&key(), &header, 0, meta_last, meta_json.as_bytes()).unwrap());
        for (index, last, data) in records {
            file.extend(seal_raw(&key(), &header, *index, *last, data).unwrap());
        }
        file
    }

    fn meta_json(size: u64, sha: &str) -> String {
        format!(
            r#"{{"id":"x","name":"f","size":{size},"sha256":"{sha}","created":"2024-01-01T00:00:00Z"}}"#
        )
    }

    #[test]
    fn tampered_header_bytes_are_detected() {
        let (file, _) = sealed(b"hello");
        for (pos, check) in [
            (0, "magic"),
            (9, "key id"),
            (20, "salt"),
            (50, "nonce prefix"),
        ] {
            let mut bad = file.clone();
            bad[pos] ^= 0x01;
            let err = open(&bad).unwrap_err();
            let ok = match check {
                "magic" => matches!(err, SpoolCodecError::BadMagic { .. }),
                "key id" => matches!(err, SpoolCodecError::WrongKey { .. }),
                _ => matches!(
                    err,
                    SpoolCodecError::Tampered {
                        record: 0,
                        offset: 55
                    }
                ),
            };
            assert!(ok, "{check}: {err}");
        }
        assert!(matches!(
            open(&file[..30]).unwrap_err(),
            SpoolCodecError::ShortHeader { len: 30 }
        ));
    }

    #[test]
    fn tampered_record_bytes_and_lengths_are_detected() {
        let plain = pattern(2 * CHUNK_LEN + 10);
        let (file, spans) = sealed(&plain);
        for (i, &(start, end)) in spans.iter().enumerate() {
            for pos in [start + 4, (start + end) / 2, end - 1] {
                let mut bad = file.clone();
                bad[pos] ^= 0x80;
                let err = open(&bad).unwrap_err();
                assert!(
                    matches!(err, SpoolCodecError::Tampered { record, offset }
                        if record as usize == i && offset as usize == start),
                    "record {i} byte {pos}: {err}"
                );
            }
            for delta in [1u32, 0x100, 0x0100_0000] {
                let mut bad = file.clone();
                let len = u32::from_be_bytes(bad[start..start + 4].try_into().unwrap());
                bad[start..start + 4].copy_from_slice(&(len ^ delta).to_be_bytes());
                assert!(open(&bad).is_err(), "record {i} length ^ {delta:#x}");
            }
        }
        let mut tiny = file.clone();
        tiny[55..59].copy_from_slice(&15u32.to_be_bytes());
        assert!(matches!(
            open(&tiny).unwrap_err(),
            SpoolCodecError::BadRecordLength {
                record: 0,
                len: 15,
                ..
            }
        ));
    }

    #[test]
    fn truncation_anywhere_is_detected() {
        let plain = pattern(3 * CHUNK_LEN);
        let (file, spans) = sealed(&plain);
        let mut cuts = vec![0, 8, 54, 55, 56, 58, 59];
        for &(start, end) in &spans {
            cuts.extend([
                start,
                start + 1,
                start + 3,
                start + 4,
                start + 5,
                (start + end) / 2,
                end - 1,
            ]);
            cuts.push(end);
        }
        cuts.retain(|&c| c < file.len());
        for cut in cuts {
            let err = open(&file[..cut]).unwrap_err();
            let expected = matches!(
                err,
                SpoolCodecError::Truncated { .. } | SpoolCodecError::ShortHeader { .. }
            );
            assert!(expected, "cut at {cut}: {err}");
        }
        // Dropping the last record (record 3: 3 full chunks) is a clean
        // truncation: the missing record is named.
        assert_eq!(spans.len(), 4);
        let (last_start, _) = spans[3];
        assert!(matches!(
            open(&file[..last_start]).unwrap_err(),
            SpoolCodecError::Truncated { record: 3, offset } if offset as usize == last_start
        ));
        assert!(matches!(
            read_metadata(&file[..spans[0].1 - 1], &key()).unwrap_err(),
            SpoolCodecError::Truncated { record: 0, .. }
        ));
    }

    #[test]
    fn reordered_duplicated_or_dropped_records_are_detected() {
        let plain = pattern(3 * CHUNK_LEN + 1);
        let (file, s) = sealed(&plain);
        let piece = |i: usize| &file[s[i].0..s[i].1];
        let build = |order: &[usize]| {
            let mut f = file[..HEADER_LEN].to_vec();
            order.iter().for_each(|&i| f.extend_from_slice(piece(i)));
            f
        };
        assert_eq!(open(&build(&[0, 1, 2, 3, 4])).unwrap(), plain);
        for order in [
            &[0, 2, 1, 3, 4][..],
            &[0, 1, 1, 2, 3, 4],
            &[0, 1, 3, 4],
            &[1, 0, 2, 3, 4],
            &[0, 1, 2, 3, 4, 4],
        ] {
            assert!(open(&build(order)).is_err(), "order {order:?}");
        }
        assert!(matches!(
            open(&build(&[0, 1, 2, 4])).unwrap_err(),
            SpoolCodecError::Tampered { record: 3, .. }
        ));
    }

    #[test]
    fn wrong_key_is_named_as_such() {
        let (file, _) = sealed(b"secret");
        let other = MasterKey::from_bytes([0x22; 32]);
        let err = decrypt_stream(&file[..], io::sink(), &other).unwrap_err();
        match err {
            SpoolCodecError::WrongKey { expected, found } => {
                assert_eq!(expected, other.key_id());
                assert_eq!(found, key().key_id());
            }
            e => panic!("expected WrongKey, got {e}"),
        }
        assert!(matches!(
            read_metadata(&file[..], &other).unwrap_err(),
            SpoolCodecError::WrongKey { .. }
        ));
    }

    #[test]
    fn trailing_bytes_are_detected() {
        let (file, spans) = sealed(&pattern(CHUNK_LEN + 3));
        let last = file[spans[2].0..spans[2].1].to_vec();
        for extra in [&[0u8][..], &[0, 0, 0], &[0, 0, 0, 16], &[0; 40], &last] {
            let mut bad = file.clone();
            bad.extend_from_slice(extra);
            let err = open(&bad).unwrap_err();
            assert!(
                matches!(err, SpoolCodecError::TrailingData { record: 2, .. }),
                "{} extra bytes: {err}",
                extra.len()
            );
        }
    }

    #[test]
    fn metadata_and_chunk_rules_are_enforced() {
        let one = [b'a'];
        let sha_a = sha_hex(&one);
        type Check = fn(&SpoolCodecError) -> bool;
        let cases: Vec<(Vec<u8>, Check)> = vec![
            (
                crafted(&meta_json(1, SHA_EMPTY), false, &[(1, true, &one)]),
                |e| matches!(e, SpoolCodecError::DigestMismatch { .. }),
            ),
            (
                crafted(&meta_json(2, &sha_a), false, &[(1, true, &one)]),
                |e| {
                    matches!(
                        e,
                        SpoolCodecError::SizeMismatch {
                            declared: 2,
                            actual: 1
                        }
                    )
                },
            ),
            (
                crafted(&meta_json(0, &sha_a), false, &[(1, true, &one)]),
                |e| {
                    matches!(
                        e,
                        SpoolCodecError::SizeMismatch {
                            declared: 0,
                            actual: 1
                        }
                    )
                },
            ),
            (crafted(&meta_json(0, SHA_EMPTY), true, &[]), |e| {
                matches!(e, SpoolCodecError::NoDataRecord)
            }),
            (crafted(&meta_json(0, SHA_EMPTY), false, &[]), |e| {
                matches!(e, SpoolCodecError::Truncated { record: 1, .. })
            }),
            (
                crafted(
                    &meta_json(2, &sha_a),
                    false,
                    &[(1, false, &one), (2, true, &one)],
                ),
                |e| {
                    matches!(
                        e,
                        SpoolCodecError::BadChunkSize {
                            record: 1,
                            len: 1,
                            ..
                        }
                    )
                },
            ),
            (
                crafted(
                    &meta_json(1, &sha_a),
                    false,
                    &[(1, false, &[0; CHUNK_LEN]), (2, true, &[])],
                ),
                |e| {
                    matches!(
                        e,
                        SpoolCodecError::SizeMismatch { .. } | SpoolCodecError::BadChunkSize { .. }
                    )
                },
            ),
            (crafted("{\"id\":\"x\"}", false, &[(1, true, &one)]), |e| {
                matches!(e, SpoolCodecError::BadMetadata { .. })
            }),
            (
                crafted(
                    &meta_json(1, &sha_a).replace("\"f\"", "\"../etc/passwd\""),
                    false,
                    &[(1, true, &one)],
                ),
                |e| matches!(e, SpoolCodecError::BadMetadata { .. }),
            ),
        ];
        for (i, (file, check)) in cases.iter().enumerate() {
            let err = open(file).unwrap_err();
            assert!(check(&err), "case {i}: {err}");
        }
        let good = crafted(&meta_json(1, &sha_a), false, &[(1, true, &one)]);
        assert_eq!(open(&good).unwrap(), b"a");
    }

    #[test]
    fn opener_refuses_use_after_error_and_finish_before_end() {
        let (file, spans) = sealed(b"xy");
        let mut opener = Opener::new(&key(), &file).unwrap();
        let rec0 = &file[spans[0].0 + 4..spans[0].1];
        assert!(opener.open_record(rec0, true).is_err());
        assert!(matches!(
            opener.open_record(rec0, false).unwrap_err(),
            SpoolCodecError::Misuse(_)
        ));
        let mut opener = Opener::new(&key(), &file).unwrap();
        assert!(matches!(
            opener.open_record(rec0, false).unwrap(),
            Opened::Metadata(_)
        ));
        assert!(matches!(
            opener.finish().unwrap_err(),
            SpoolCodecError::Truncated { record: 1, .. }
        ));
    }
}
