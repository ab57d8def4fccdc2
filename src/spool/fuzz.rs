//! Fuzz entry point for the spool codec (`fuzz/fuzz_targets/spool_decode.rs`).
//!
//! Random bytes almost never carry a valid AES-GCM tag, so feeding them to the
//! opener alone only exercises the header and length parsing. The entry point
//! therefore runs each input three ways:
//!
//! 1. as a spool file, decrypted under [`FUZZ_KEY`] (must not panic);
//! 2. as a *script* that builds a spool file of authentic records with
//!    arbitrary indices, last flags, chunk sizes and metadata (so the opener's
//!    state machine sees well-sealed but malformed files); if the opener
//!    accepts one, its output must equal the sealed chunks and match the
//!    metadata;
//! 3. as plaintext, sealed and opened again (must round-trip exactly), and
//!    sealed in one pass (record 0 reserved, sealed last), which must give
//!    the very same bytes.
//!
//! Assertions here are deliberate: a failed one is a fuzzing finding.

use std::io;

use ring::digest;

use super::codec::{seal_raw, CHUNK_LEN, HEADER_LEN, MAGIC, SALT_LEN};
use super::key::MasterKey;
use super::metadata::Metadata;
use super::seal::Sealer;
use super::stream::{decrypt_stream, read_metadata, seal_one_pass, seal_stream};

/// The fixed master key of the fuzz target and the known-answer vectors:
/// bytes 0x00, 0x01, …, 0x1f.
pub const FUZZ_KEY: [u8; 32] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    26, 27, 28, 29, 30, 31,
];

/// Most records a script may produce, to keep each run fast.
const MAX_SCRIPT_RECORDS: usize = 24;

/// Decodes `data` as a spool file, as a record script, and as plaintext.
/// Never panics unless the codec is wrong.
pub fn fuzz_decode(data: &[u8]) {
    let key = MasterKey::from_bytes(FUZZ_KEY);
    let _ = read_metadata(data, &key);
    let _ = decrypt_stream(data, io::sink(), &key);
    run_script(&key, data);
    round_trip(&key, data);
}

/// Builds a file from `data` read as: mode byte, then ops of
/// `[flags][len][len bytes]`. Flags bit 0 = last flag, bit 1 = pad the
/// payload to a full chunk, bits 4–5 = index skew (0/3: right index,
/// 1: +1, 2: -1). Mode bit 0 = record 0 from the first op's payload instead
/// of metadata computed from the data ops.
fn run_script(key: &MasterKey, data: &[u8]) -> bool {
    let Some((&mode, mut ops)) = data.split_first() else {
        return false;
    };
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..16].copy_from_slice(&key.key_id().0);
    header[16..16 + SALT_LEN].fill(0x5a);
    header[16 + SALT_LEN..].fill(0xa5);

    let mut records: Vec<(u32, bool, Vec<u8>)> = Vec::new();
    while let [flags, len, rest @ ..] = ops {
        if records.len() >= MAX_SCRIPT_RECORDS {
            break;
        }
        let take = usize::from(*len).min(rest.len());
        let mut payload = rest[..take].to_vec();
        ops = &rest[take..];
        if flags & 2 != 0 {
            payload = payload.iter().copied().cycle().take(CHUNK_LEN).collect();
            payload.resize(CHUNK_LEN, 0);
        }
        let position = u32::try_from(records.len() + 1).unwrap_or(u32::MAX);
        let index = match (flags >> 4) & 3 {
            1 => position.wrapping_add(1),
            2 => position.wrapping_sub(1),
            _ => position,
        };
        records.push((index, flags & 1 != 0, payload));
    }
    let plain: Vec<u8> = records.iter().flat_map(|r| r.2.iter().copied()).collect();
    let meta_record = if mode & 1 != 0 {
        match records.first() {
            Some(r) => r.2.clone(),
            None => return false,
        }
    } else {
        let sha = hex::encode(digest::digest(&digest::SHA256, &plain));
        format!(
            r#"{{"id":"f","name":"f","size":{},"sha256":"{sha}","created":"2024-01-01T00:00:00Z"}}"#,
            plain.len()
        )
        .into_bytes()
    };

    let mut file = header.to_vec();
    let Ok(rec0) = seal_raw(key, &header, 0, mode & 2 != 0, &meta_record) else {
        return false;
    };
    file.extend_from_slice(&rec0);
    for (index, last, payload) in &records {
        match seal_raw(key, &header, *index, *last, payload) {
            Ok(rec) => file.extend_from_slice(&rec),
            Err(_) => return false,
        }
    }
    let mut out = Vec::new();
    if let Ok(meta) = decrypt_stream(&file[..], &mut out, key) {
        // Accepted: every record was authentic, in order, so the output is
        // exactly the scripted chunks, and it matches the metadata.
        assert_eq!(out, plain, "opener accepted a file but output differs");
        assert_eq!(out.len() as u64, meta.size);
        assert_eq!(
            hex::encode(digest::digest(&digest::SHA256, &out)),
            meta.sha256
        );
        let (body, last) = records.split_at(records.len().saturating_sub(1));
        assert!(body.iter().all(|r| !r.1 && r.2.len() == CHUNK_LEN));
        assert!(last.iter().all(|r| r.1));
        return true;
    }
    false
}

/// Seals `data` (stretched by a factor from its first byte, to span several
/// chunks) with a fixed salt and opens it again.
fn round_trip(key: &MasterKey, data: &[u8]) {
    let stretch = data.first().map_or(1, |b| usize::from(b % 64) + 1);
    let plain: Vec<u8> = data
        .iter()
        .copied()
        .cycle()
        .take(data.len() * stretch)
        .collect();
    let sha = hex::encode(digest::digest(&digest::SHA256, &plain));
    let meta = format!(
        r#"{{"id":"r","name":"r","size":{},"sha256":"{sha}","created":"2024-01-01T00:00:00Z"}}"#,
        plain.len()
    );
    let record = meta.into_bytes();
    let sealer = Sealer::new(key, [7; SALT_LEN], [9; 7], record.clone());
    let sealer = match sealer {
        Ok(s) => s,
        Err(e) => panic!("valid metadata rejected: {e}"),
    };
    let mut file = Vec::new();
    if let Err(e) = seal_stream(sealer, &plain[..], &mut file) {
        panic!("sealing failed: {e}");
    }
    let one_pass = Sealer::reserving(key, [7; SALT_LEN], [9; 7], record.len()).and_then(|sealer| {
        let meta = Metadata::from_record(&record)?;
        let mut out = io::Cursor::new(Vec::new());
        seal_one_pass(sealer, &plain[..], &mut out, meta)?;
        Ok(out.into_inner())
    });
    match one_pass {
        Ok(bytes) => assert!(bytes == file, "one pass and two passes differ"),
        Err(e) => panic!("one-pass sealing failed: {e}"),
    }
    let mut out = Vec::new();
    match decrypt_stream(&file[..], &mut out, key) {
        Ok(m) => assert_eq!(m.size, plain.len() as u64),
        Err(e) => panic!("round trip failed: {e}"),
    }
    assert!(out == plain, "round trip changed the plaintext");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    /// Every committed seed runs through the entry point (regression test).
    #[test]
    fn seed_corpus_runs_clean() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/spool_decode");
        let mut count = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            fuzz_decode(&std::fs::read(&path).unwrap());
            count += 1;
        }
        assert!(count >= 5, "expected seed files in {dir}");
    }

    #[test]
    fn kat_seeds_decode_under_the_fuzz_key() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/spool_decode");
        let file = std::fs::read(format!("{dir}/kat-one-a.spool")).unwrap();
        let mut out = Vec::new();
        let key = MasterKey::from_bytes(FUZZ_KEY);
        decrypt_stream(&file[..], &mut out, &key).unwrap();
        assert_eq!(out, b"a");
    }

    #[test]
    fn script_mode_reaches_a_valid_file() {
        // mode 0; one op: last flag, 3 bytes "xyz" → a valid one-chunk file.
        let key = MasterKey::from_bytes(FUZZ_KEY);
        assert!(run_script(&key, &[0, 1, 3, b'x', b'y', b'z']));
        // A full chunk then a last chunk is valid.
        assert!(run_script(&key, &[0, 2, 1, b'q', 1, 2, b'r', b's']));
        // Skewed index, missing last flag, short middle chunk, record 0
        // marked last: all rejected.
        assert!(!run_script(&key, &[0, 0x12, 1, b'q', 1, 2, b'r', b's']));
        assert!(!run_script(&key, &[0, 2, 1, b'q', 0, 2, b'r', b's']));
        assert!(!run_script(&key, &[0, 0, 1, b'q', 1, 2, b'r', b's']));
        assert!(!run_script(&key, &[2, 1, 1, b'q']));
    }
}
