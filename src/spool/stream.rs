//! IO adapters: drive [`Sealer`] and [`Opener`] over `Read`/`Write` with
//! bounded memory (two 64 KiB chunks plus one record buffer), whatever the
//! file size.
//!
//! Record 0 (the metadata) comes first but holds the plaintext's `size` and
//! `sha256`. We do not buffer the file to learn them: the caller supplies
//! them from a first read pass ([`digest_stream`]), or lets
//! [`encrypt_seekable`] make that pass over a `Read + Seek` and rewind. The
//! sealing pass is then one pass with a one-chunk lookahead (to know which
//! chunk is last), and it fails with `SourceChanged` if the data no longer
//! matches the first pass.
//!
//! Decryption writes plaintext as soon as each record authenticates, but a
//! file is only proven complete (nothing truncated, size and SHA-256 right)
//! when [`decrypt_stream`] returns `Ok`. Callers must write to a temporary
//! file and rename it into place only after `Ok`, and discard it on error.

use std::io::{self, Read, Seek, SeekFrom, Write};

use ring::digest;

use super::codec::{CHUNK_LEN, HEADER_LEN, MAX_RECORD_LEN};
use super::error::SpoolCodecError;
use super::key::MasterKey;
use super::metadata::Metadata;
use super::open::{Opened, Opener};
use super::seal::Sealer;

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Size and lower-case hex SHA-256 of everything `reader` yields.
///
/// # Errors
/// [`SpoolCodecError::Io`] if reading fails.
pub fn digest_stream<R: Read>(mut reader: R) -> Result<(u64, String), SpoolCodecError> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; CHUNK_LEN];
    let mut size = 0u64;
    loop {
        let n =
            read_full(&mut reader, &mut buf).map_err(SpoolCodecError::io("hashing the source"))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(ctx.finish())))
}

/// Seals everything `reader` yields into `writer` as one spool file, with a
/// random salt and nonce prefix. `metadata.size` and `metadata.sha256` must
/// describe exactly what `reader` yields (see [`digest_stream`]). Returns the
/// number of bytes written.
///
/// # Errors
/// [`SpoolCodecError::SourceChanged`] if the data does not match the metadata
/// (the output is then incomplete and must be discarded), `Io`, `Random`,
/// `BadMetadata`.
pub fn encrypt_stream<R: Read, W: Write>(
    reader: R,
    writer: W,
    key: &MasterKey,
    metadata: &Metadata,
) -> Result<u64, SpoolCodecError> {
    seal_stream(Sealer::random(key, metadata)?, reader, writer)
}

/// Hashes `reader` from its current position, rewinds, and seals it into
/// `writer` under a new [`Metadata`] named `name`. Returns the metadata.
///
/// # Errors
/// As [`encrypt_stream`], plus `Io` if seeking fails.
pub fn encrypt_seekable<R: Read + Seek, W: Write>(
    mut reader: R,
    writer: W,
    key: &MasterKey,
    name: &str,
) -> Result<Metadata, SpoolCodecError> {
    let start = reader
        .stream_position()
        .map_err(SpoolCodecError::io("seeking the source"))?;
    let (size, sha256) = digest_stream(&mut reader)?;
    reader
        .seek(SeekFrom::Start(start))
        .map_err(SpoolCodecError::io("rewinding the source"))?;
    let metadata = Metadata::new(name, size, &sha256)?;
    encrypt_stream(reader, writer, key, &metadata)?;
    Ok(metadata)
}

/// Drives `sealer` over `reader` into `writer` with a one-chunk lookahead.
/// Returns the number of bytes written.
///
/// # Errors
/// As [`encrypt_stream`].
pub fn seal_stream<R: Read, W: Write>(
    mut sealer: Sealer,
    mut reader: R,
    mut writer: W,
) -> Result<u64, SpoolCodecError> {
    let read_err = SpoolCodecError::io("reading the source");
    let write_err = SpoolCodecError::io("writing the spool file");
    let mut out = Vec::with_capacity(MAX_RECORD_LEN + 4);
    sealer.begin(&mut out)?;
    writer.write_all(&out).map_err(write_err)?;
    let mut written = out.len() as u64;
    let mut cur = vec![0u8; CHUNK_LEN];
    let mut ahead = vec![0u8; CHUNK_LEN];
    let mut n = read_full(&mut reader, &mut cur).map_err(read_err)?;
    loop {
        let (last, m) = if n < CHUNK_LEN {
            (true, 0)
        } else {
            let m = read_full(&mut reader, &mut ahead)
                .map_err(SpoolCodecError::io("reading the source"))?;
            (m == 0, m)
        };
        sealer.seal_chunk(&cur[..n], last, &mut out)?;
        writer
            .write_all(&out)
            .map_err(SpoolCodecError::io("writing the spool file"))?;
        written += out.len() as u64;
        if last {
            break;
        }
        std::mem::swap(&mut cur, &mut ahead);
        n = m;
    }
    writer
        .flush()
        .map_err(SpoolCodecError::io("flushing the spool file"))?;
    Ok(written)
}

/// What follows a record: a length prefix, a clean end, or 1–3 stray bytes.
enum Next {
    Len(u32),
    End,
    Partial,
}

/// Reads the next record length prefix.
fn read_len<R: Read>(reader: &mut R) -> Result<Next, SpoolCodecError> {
    let mut len = [0u8; 4];
    match read_full(reader, &mut len).map_err(SpoolCodecError::io("reading the spool file"))? {
        0 => Ok(Next::End),
        4 => Ok(Next::Len(u32::from_be_bytes(len))),
        _ => Ok(Next::Partial),
    }
}

/// Opens the header of `reader` under `key`.
fn open_header<R: Read>(reader: &mut R, key: &MasterKey) -> Result<Opener, SpoolCodecError> {
    let mut header = [0u8; HEADER_LEN];
    let n =
        read_full(reader, &mut header).map_err(SpoolCodecError::io("reading the spool file"))?;
    Opener::new(key, &header[..n])
}

/// Authenticates and decrypts a whole spool file from `reader`, writing the
/// plaintext to `writer`; returns its metadata once everything checked out.
///
/// Plaintext is written record by record before the file is fully verified:
/// on `Err`, whatever reached `writer` is unauthenticated and must be
/// discarded (write to a temp file, rename only after `Ok`).
///
/// # Errors
/// Any [`SpoolCodecError`] describing the first problem found.
pub fn decrypt_stream<R: Read, W: Write>(
    mut reader: R,
    mut writer: W,
    key: &MasterKey,
) -> Result<Metadata, SpoolCodecError> {
    let mut opener = open_header(&mut reader, key)?;
    let mut ciphertext = Vec::with_capacity(MAX_RECORD_LEN);
    let mut next = read_len(&mut reader)?;
    while let Next::Len(len) = next {
        let len = opener.check_len(len)?;
        ciphertext.resize(len, 0);
        let got = read_full(&mut reader, &mut ciphertext)
            .map_err(SpoolCodecError::io("reading the spool file"))?;
        if got < len {
            return Err(opener.truncated());
        }
        next = read_len(&mut reader)?;
        // A stray partial length prefix means "not the end": opening with
        // at_eof = false then says TrailingData if this record is the last.
        let at_eof = matches!(next, Next::End);
        if let Opened::Data { bytes, .. } = opener.open_record(&ciphertext, at_eof)? {
            writer
                .write_all(bytes)
                .map_err(SpoolCodecError::io("writing the plaintext"))?;
        }
        if matches!(next, Next::Partial) {
            return Err(opener.truncated());
        }
    }
    if matches!(next, Next::Partial) {
        return Err(opener.truncated());
    }
    writer
        .flush()
        .map_err(SpoolCodecError::io("flushing the plaintext"))?;
    opener.finish()
}

/// Reads and authenticates only the header and the metadata record (for
/// `spool ls`). The data records are not checked: use [`decrypt_stream`]
/// into [`io::sink`] to verify a file.
///
/// # Errors
/// Header errors, `Truncated` if record 0 is incomplete or alone,
/// `Tampered`, `NoDataRecord`, `BadMetadata`.
pub fn read_metadata<R: Read>(mut reader: R, key: &MasterKey) -> Result<Metadata, SpoolCodecError> {
    let mut opener = open_header(&mut reader, key)?;
    let Next::Len(len) = read_len(&mut reader)? else {
        return Err(opener.truncated());
    };
    let len = opener.check_len(len)?;
    let mut ciphertext = vec![0u8; len];
    let got = read_full(&mut reader, &mut ciphertext)
        .map_err(SpoolCodecError::io("reading the spool file"))?;
    if got < len {
        return Err(opener.truncated());
    }
    match opener.open_record(&ciphertext, false)? {
        Opened::Metadata(meta) => Ok(meta.clone()),
        Opened::Data { .. } => Err(SpoolCodecError::Misuse("record 0 opened as data")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
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

    /// Throughput of seal (hash pass + sealing pass) and open for 256 MiB in
    /// memory. Run with
    /// `cargo test --release --lib spool::stream::tests::bench -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn bench_256_mib() {
        let plain = pattern(256 << 20);
        let start = Instant::now();
        let (_, file) = seal(&plain);
        let seal_s = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let mut out = Vec::with_capacity(plain.len());
        decrypt_stream(&file[..], &mut out, &key()).unwrap();
        let open_s = start.elapsed().as_secs_f64();
        assert!(out == plain);
        let mb = plain.len() as f64 / 1e6;
        println!(
            "256 MiB: encrypt (incl. hash pass) {:.0} MB/s, decrypt+verify {:.0} MB/s",
            mb / seal_s,
            mb / open_s
        );
    }
}
