//! Sans-IO core of spool format v1: the constants and the per-file cipher
//! shared by [`Sealer`](super::Sealer), which turns metadata and chunks into
//! header and framed records, and [`Opener`](super::Opener), which turns a header and records back into
//! metadata and chunks, enforcing every rule of the format.
//!
//! Neither touches a file: the IO adapters in [`super::stream`] feed them, and
//! so do the tests and the fuzz target. Both keep the per-file state a STREAM
//! construction needs (age's `stream.rs`): the record counter that goes into
//! the nonce (reordering, dropping or duplicating records breaks
//! authentication) and the last flag (truncating or extending the file is
//! detected). The opener also recomputes size and SHA-256 of the plaintext
//! and compares them with the metadata when the last record arrives.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::hkdf;

use super::error::SpoolCodecError;
use super::key::{MasterKey, KEY_ID_LEN};

/// First 8 bytes of every v1 spool file.
pub const MAGIC: &[u8; 8] = b"PGSPOOL1";
/// HKDF salt length in the header.
pub const SALT_LEN: usize = 32;
/// Nonce prefix length in the header.
pub const NONCE_PREFIX_LEN: usize = 7;
/// Header length: magic, key id, salt, nonce prefix.
pub const HEADER_LEN: usize = 8 + KEY_ID_LEN + SALT_LEN + NONCE_PREFIX_LEN;
/// Plaintext bytes per full data record.
pub const CHUNK_LEN: usize = 65536;
/// AES-GCM tag length, included in every record's ciphertext.
pub const TAG_LEN: usize = 16;
/// Largest ciphertext length a record may declare.
pub const MAX_RECORD_LEN: usize = CHUNK_LEN + TAG_LEN;
/// HKDF info string binding the file key to this format.
pub const HKDF_INFO: &[u8] = b"pairgate spool v1";

/// The file key and the header it is bound to.
pub(crate) struct FileCipher {
    key: LessSafeKey,
    pub(crate) header: [u8; HEADER_LEN],
}

impl FileCipher {
    pub(crate) fn new(
        master: &MasterKey,
        header: [u8; HEADER_LEN],
    ) -> Result<Self, SpoolCodecError> {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, &header[16..16 + SALT_LEN]);
        let prk = salt.extract(master.expose());
        let okm = prk
            .expand(&[HKDF_INFO], &AES_256_GCM)
            .map_err(|_| SpoolCodecError::Misuse("HKDF output length rejected"))?;
        let key = LessSafeKey::new(UnboundKey::from(okm));
        Ok(Self { key, header })
    }

    fn nonce(&self, index: u32, last: bool) -> Nonce {
        let mut n = [0u8; aead::NONCE_LEN];
        n[..NONCE_PREFIX_LEN].copy_from_slice(&self.header[HEADER_LEN - NONCE_PREFIX_LEN..]);
        n[NONCE_PREFIX_LEN..NONCE_PREFIX_LEN + 4].copy_from_slice(&index.to_be_bytes());
        n[11] = u8::from(last);
        Nonce::assume_unique_for_key(n)
    }

    /// Replaces `out` with `u32 BE length ‖ ciphertext ‖ tag` of `plaintext`.
    pub(crate) fn seal(
        &self,
        index: u32,
        last: bool,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SpoolCodecError> {
        let len = u32::try_from(plaintext.len() + TAG_LEN)
            .map_err(|_| SpoolCodecError::Misuse("record larger than 4 GiB"))?;
        out.clear();
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(plaintext);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                self.nonce(index, last),
                Aad::from(&self.header),
                &mut out[4..],
            )
            .map_err(|_| SpoolCodecError::Misuse("AES-GCM refused to seal"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens `ciphertext` into `buf` (replacing it); false if it does not
    /// authenticate with this index and flag.
    pub(crate) fn open(
        &self,
        index: u32,
        last: bool,
        ciphertext: &[u8],
        buf: &mut Vec<u8>,
    ) -> bool {
        buf.clear();
        buf.extend_from_slice(ciphertext);
        let aad = Aad::from(&self.header);
        match self.key.open_in_place(self.nonce(index, last), aad, buf) {
            Ok(plain) => {
                let n = plain.len();
                buf.truncate(n);
                true
            }
            Err(_) => false,
        }
    }
}

/// Seals one record with arbitrary index and flag, bypassing every rule, so
/// tests and the fuzz target can build malformed-but-authentic files.
pub(crate) fn seal_raw(
    master: &MasterKey,
    header: &[u8; HEADER_LEN],
    index: u32,
    last: bool,
    plaintext: &[u8],
) -> Result<Vec<u8>, SpoolCodecError> {
    let mut out = Vec::new();
    FileCipher::new(master, *header)?.seal(index, last, plaintext, &mut out)?;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::spool::{
        decrypt_stream, read_metadata, seal_one_pass, seal_stream, Metadata, Sealer,
    };
    use serde_json::Value;

    const KAT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/spool_v1_kat");

    fn hex_array<const N: usize>(v: &Value) -> [u8; N] {
        let mut out = [0u8; N];
        hex::decode_to_slice(v.as_str().unwrap(), &mut out).unwrap();
        out
    }

    fn kat_plaintext(case: &Value) -> Vec<u8> {
        match case.get("plaintext_hex") {
            Some(h) => hex::decode(h.as_str().unwrap()).unwrap(),
            None => {
                let len = case["plaintext_pattern_len"].as_u64().unwrap();
                (0..len).map(|i| (i % 251) as u8).collect()
            }
        }
    }

    /// Known-answer vectors (made by the independent Python implementation in
    /// the same folder): sealing reproduces them byte for byte, opening
    /// returns the plaintext and metadata.
    #[test]
    fn known_answer_vectors() {
        let vectors: Value =
            serde_json::from_slice(&std::fs::read(format!("{KAT_DIR}/vectors.json")).unwrap())
                .unwrap();
        let master = MasterKey::from_bytes(hex_array(&vectors["master_key"]));
        let cases = vectors["cases"].as_array().unwrap();
        assert!(cases.len() >= 3);
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let file = |key: &str| format!("{KAT_DIR}/{}", case[key].as_str().unwrap());
            let meta_bytes = std::fs::read(file("metadata_file")).unwrap();
            let expected = std::fs::read(file("spool_file")).unwrap();
            let plain = kat_plaintext(case);

            let sealer = Sealer::new(
                &master,
                hex_array(&case["salt"]),
                hex_array(&case["nonce_prefix"]),
                meta_bytes.clone(),
            )
            .unwrap();
            let mut sealed = Vec::new();
            let written = seal_stream(sealer, &plain[..], &mut sealed).unwrap();
            assert_eq!(written as usize, sealed.len());
            assert!(
                sealed == expected,
                "{name}: sealed bytes differ from the vector"
            );

            // One pass (record 0 reserved, sealed last) makes the same
            // bytes from the same inputs.
            let sealer = Sealer::reserving(
                &master,
                hex_array(&case["salt"]),
                hex_array(&case["nonce_prefix"]),
                meta_bytes.len(),
            )
            .unwrap();
            let meta = Metadata::from_record(&meta_bytes).unwrap();
            let mut one = std::io::Cursor::new(Vec::new());
            let (sealed_meta, _) = seal_one_pass(sealer, &plain[..], &mut one, meta).unwrap();
            assert!(
                one.into_inner() == expected,
                "{name}: one-pass bytes differ from the vector"
            );
            assert_eq!(
                sealed_meta.to_record_padded(meta_bytes.len()).unwrap(),
                meta_bytes
            );

            let mut out = Vec::new();
            let meta = decrypt_stream(&expected[..], &mut out, &master).unwrap();
            assert!(out == plain, "{name}: plaintext differs");
            assert_eq!(meta, Metadata::from_record(&meta_bytes).unwrap(), "{name}");
            assert_eq!(read_metadata(&expected[..], &master).unwrap(), meta);
        }
    }

    #[test]
    fn header_layout_and_nonce_construction() {
        let master = MasterKey::from_bytes([1; 32]);
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(MAGIC);
        header[48..].copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x11]);
        let cipher = FileCipher::new(&master, header).unwrap();
        let nonce = cipher.nonce(0x0102_0304, true);
        assert_eq!(
            nonce.as_ref(),
            &[0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x11, 1, 2, 3, 4, 1]
        );
        assert_eq!(cipher.nonce(7, false).as_ref()[7..], [0, 0, 0, 7, 0]);
        assert_eq!(HEADER_LEN, 55);
        assert_eq!(MAX_RECORD_LEN, 65552);
    }

    #[test]
    fn raw_records_frame_length_and_tag() {
        let master = MasterKey::from_bytes([2; 32]);
        let header = [0u8; HEADER_LEN];
        let rec = seal_raw(&master, &header, 3, false, b"hello").unwrap();
        assert_eq!(rec.len(), 4 + 5 + TAG_LEN);
        assert_eq!(rec[..4], 21u32.to_be_bytes());
        let cipher = FileCipher::new(&master, header).unwrap();
        let mut buf = Vec::new();
        assert!(cipher.open(3, false, &rec[4..], &mut buf));
        assert_eq!(buf, b"hello");
        assert!(!cipher.open(3, true, &rec[4..], &mut buf));
        assert!(!cipher.open(4, false, &rec[4..], &mut buf));
    }
}
