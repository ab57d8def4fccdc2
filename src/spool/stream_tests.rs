//! Unit tests of the IO adapters (in memory and on real files).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use super::*;
use crate::spool::codec::TAG_LEN as TAG;
use std::fs::File;
use std::time::Instant;

fn key() -> MasterKey {
    MasterKey::from_bytes([0x33; 32])
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 253) as u8 ^ (i >> 16) as u8)
        .collect()
}

fn seal(plain: &[u8]) -> (Metadata, Vec<u8>) {
    let (size, sha) = digest_stream(plain).unwrap();
    let meta = Metadata::new("data.bin", size, &sha).unwrap();
    let mut file = Vec::new();
    let written = encrypt_stream(plain, &mut file, &key(), &meta).unwrap();
    assert_eq!(written as usize, file.len());
    (meta, file)
}

#[test]
fn round_trips_at_every_chunk_boundary() {
    for len in [
        0,
        1,
        CHUNK_LEN - 1,
        CHUNK_LEN,
        CHUNK_LEN + 1,
        3 * CHUNK_LEN,
        3_000_017,
    ] {
        let plain = pattern(len);
        let (meta, file) = seal(&plain);
        let chunks = len.div_ceil(CHUNK_LEN).max(1);
        let expected_len =
            HEADER_LEN + (4 + meta.to_record().unwrap().len() + TAG) + chunks * (4 + TAG) + len;
        assert_eq!(file.len(), expected_len, "len {len}");
        let mut out = Vec::new();
        let opened = decrypt_stream(&file[..], &mut out, &key()).unwrap();
        assert_eq!(opened, meta, "len {len}");
        assert!(out == plain, "len {len}: plaintext differs");
        assert_eq!(read_metadata(&file[..], &key()).unwrap(), meta);
    }
}
/// One pass gives the very file a two-pass sealer makes from the same
/// salt, nonce prefix and metadata bytes, at every chunk boundary.
#[test]
fn one_pass_output_is_the_two_pass_output_byte_for_byte() {
    use crate::spool::metadata::PLACEHOLDER_SHA256;
    for len in [
        0,
        1,
        CHUNK_LEN - 1,
        CHUNK_LEN,
        CHUNK_LEN + 1,
        3 * CHUNK_LEN + 9,
    ] {
        let plain = pattern(len);
        let mut meta = Metadata::new("n\u{e9}.bin", 0, PLACEHOLDER_SHA256).unwrap();
        meta.extra
            .insert("source".into(), serde_json::json!({"ino": 1}));
        let reserved = meta.reserved_len().unwrap();
        let sealer = Sealer::reserving(&key(), [8; 32], [9; 7], reserved).unwrap();
        let mut one = io::Cursor::new(Vec::new());
        let (full, written) = seal_one_pass(sealer, &plain[..], &mut one, meta).unwrap();
        let one = one.into_inner();
        assert_eq!(written as usize, one.len(), "len {len}");
        assert_eq!(full.size, len as u64);
        let record = full.to_record_padded(reserved).unwrap();
        let sealer = Sealer::new(&key(), [8; 32], [9; 7], record).unwrap();
        let mut two = Vec::new();
        seal_stream(sealer, &plain[..], &mut two).unwrap();
        assert!(one == two, "len {len}: one pass differs from two passes");
        let mut out = Vec::new();
        assert_eq!(decrypt_stream(&one[..], &mut out, &key()).unwrap(), full);
        assert!(out == plain, "len {len}");
    }
}

/// The source is read exactly once, front to back, and never rewound
/// (the reader is not even `Seek`).
#[test]
fn one_pass_reads_the_source_once() {
    struct Counting<'a>(&'a [u8], u64);
    impl Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.read(buf)?;
            self.1 += n as u64;
            Ok(n)
        }
    }
    let plain = pattern(5 * CHUNK_LEN + 3);
    let mut src = Counting(&plain, 0);
    let meta = Metadata::new("f", 0, crate::spool::metadata::PLACEHOLDER_SHA256).unwrap();
    let mut file = io::Cursor::new(Vec::new());
    let (meta, _) = encrypt_one_pass(&mut src, &mut file, &key(), meta).unwrap();
    assert_eq!(src.1, plain.len() as u64);
    assert_eq!(meta.sha256, digest_stream(&plain[..]).unwrap().1);
    let mut out = Vec::new();
    decrypt_stream(&file.into_inner()[..], &mut out, &key()).unwrap();
    assert!(out == plain);
}

#[test]
fn encrypt_seekable_hashes_rewinds_and_seals_real_files() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("export.zip");
    let plain = pattern(2 * CHUNK_LEN + 77);
    std::fs::write(&src, &plain).unwrap();
    let dst = dir.path().join("x.spool");
    let meta = encrypt_seekable(
        File::open(&src).unwrap(),
        File::create(&dst).unwrap(),
        &key(),
        "export.zip",
    )
    .unwrap();
    assert_eq!(meta.size, plain.len() as u64);
    assert_eq!(meta.name, "export.zip");
    let out_path = dir.path().join("out.tmp");
    let opened = decrypt_stream(
        File::open(&dst).unwrap(),
        File::create(&out_path).unwrap(),
        &key(),
    )
    .unwrap();
    assert_eq!(opened, meta);
    assert!(std::fs::read(&out_path).unwrap() == plain);
}

#[test]
fn a_source_that_changed_after_hashing_is_refused() {
    let plain = pattern(CHUNK_LEN + 5);
    let (size, sha) = digest_stream(&plain[..]).unwrap();
    let meta = Metadata::new("f", size, &sha).unwrap();
    let mut grown = plain.clone();
    grown.push(0);
    let mut changed = plain.clone();
    changed[CHUNK_LEN + 1] ^= 1;
    for (what, src) in [
        ("grown", &grown[..]),
        ("shrunk", &plain[..CHUNK_LEN]),
        ("changed", &changed[..]),
    ] {
        let err = encrypt_stream(src, io::sink(), &key(), &meta).unwrap_err();
        assert!(
            matches!(err, SpoolCodecError::SourceChanged { .. }),
            "{what}: {err}"
        );
    }
}

#[test]
fn io_errors_carry_what_was_being_done() {
    struct Broken;
    impl Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
    }
    let err = decrypt_stream(Broken, io::sink(), &key()).unwrap_err();
    assert!(err.to_string().contains("reading the spool file"), "{err}");
    assert!(err.to_string().contains("disk on fire"), "{err}");
}

/// Throughput of sealing (two passes and one pass), hashing alone and
/// opening, 256 MiB in memory. Run with
/// `cargo test --release --lib spool::stream::tests::bench -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_256_mib() {
    let plain = pattern(256 << 20);
    let start = Instant::now();
    digest_stream(&plain[..]).unwrap();
    let sha_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let (_, file) = seal(&plain);
    let seal_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let meta = Metadata::new("f", 0, crate::spool::metadata::PLACEHOLDER_SHA256).unwrap();
    let mut one = io::Cursor::new(Vec::with_capacity(file.len()));
    encrypt_one_pass(&plain[..], &mut one, &key(), meta).unwrap();
    let one_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut out = Vec::with_capacity(plain.len());
    decrypt_stream(&file[..], &mut out, &key()).unwrap();
    let open_s = start.elapsed().as_secs_f64();
    assert!(out == plain);
    let mb = plain.len() as f64 / 1e6;
    println!(
        "256 MiB: SHA-256 alone {:.0} MB/s; encrypt two passes {:.0} MB/s, one pass {:.0} MB/s; \
         decrypt+verify {:.0} MB/s",
        mb / sha_s,
        mb / seal_s,
        mb / one_s,
        mb / open_s
    );
}
