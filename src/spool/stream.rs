//! IO adapters: drive [`Sealer`] and [`Opener`] over `Read`/`Write` with
//! bounded memory (two 64 KiB chunks plus one record buffer), whatever the
//! file size.
//!
//! Record 0 (the metadata) comes first but holds the plaintext's `size` and
//! `sha256`. We never buffer the file to learn them:
//!
//! - [`encrypt_one_pass`] reads the source once: it reserves record 0's
//!   place (the metadata's length does not depend on the values of `size`
//!   and `sha256`, see [`Metadata::reserved_len`]), seals the data records
//!   while hashing, then seals record 0 and writes it at its place. The
//!   writer must seek (a file). This is what outbox intake uses.
//! - [`encrypt_stream`] / [`seal_stream`] write strictly in order for a
//!   caller that knows `size` and `sha256` up front (the receiver, from the
//!   OFFER; `rekey`, from the old file) and fail with `SourceChanged` if the
//!   data does not match them. [`encrypt_seekable`] makes a hashing pass
//!   over a `Read + Seek` source first, for writers that cannot seek.
//!
//! Both seal with a one-chunk lookahead (to know which chunk is last).
//!
//! Decryption writes plaintext as soon as each record authenticates, but a
//! file is only proven complete (nothing truncated, size and SHA-256 right)
//! when [`decrypt_stream`] returns `Ok`. Callers must write to a temporary
//! file and rename it into place only after `Ok`, and discard it on error.

use std::io::{self, Read, Seek, SeekFrom, Write};

use ring::digest;

use super::codec::{CHUNK_LEN, HEADER_LEN, MAX_RECORD_LEN, TAG_LEN};
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
    reader: R,
    mut writer: W,
) -> Result<u64, SpoolCodecError> {
    let written = seal_records(&mut sealer, reader, &mut writer)?;
    writer
        .flush()
        .map_err(SpoolCodecError::io("flushing the spool file"))?;
    Ok(written)
}

/// Seals everything `reader` yields into `writer` reading it once: the
/// one-pass mode of [`Sealer`]. `metadata` gives every field but `size` and
/// `sha256`, which are those of what was read (whatever `metadata` says).
/// Record 0 is written last, at its reserved place, so `writer` must seek.
/// Returns the complete metadata and the number of bytes written.
///
/// A caller that must know the data is one particular version of a file
/// (outbox intake) compares the returned size with what it expected and
/// checks the file did not change while it was read: the SHA-256 is of
/// exactly the bytes sealed.
///
/// # Errors
/// `Io`, `Random`, `BadMetadata` (fields that do not fit 64 KiB).
pub fn encrypt_one_pass<R: Read, W: Write + Seek>(
    reader: R,
    writer: W,
    key: &MasterKey,
    metadata: Metadata,
) -> Result<(Metadata, u64), SpoolCodecError> {
    let sealer = Sealer::random_reserving(key, metadata.reserved_len()?)?;
    seal_one_pass(sealer, reader, writer, metadata)
}

/// Drives a one-pass `sealer` ([`Sealer::reserving`], reserving
/// `metadata.reserved_len()` bytes) over `reader` into `writer`, then seals
/// `metadata` with the data's size and SHA-256 filled in, padded to the
/// reserved length, in place of the placeholder. See [`encrypt_one_pass`].
///
/// # Errors
/// As [`encrypt_one_pass`]; `Misuse` if `sealer` is not in one-pass mode.
pub fn seal_one_pass<R: Read, W: Write + Seek>(
    mut sealer: Sealer,
    reader: R,
    mut writer: W,
    mut metadata: Metadata,
) -> Result<(Metadata, u64), SpoolCodecError> {
    let Some(reserved) = sealer.reserved_len() else {
        return Err(SpoolCodecError::Misuse(
            "seal_one_pass needs a one-pass sealer",
        ));
    };
    let seek_err = SpoolCodecError::io("seeking in the spool file");
    let start = writer.stream_position().map_err(seek_err)?;
    let written = seal_records(&mut sealer, reader, &mut writer)?;
    let (size, sha) = sealer
        .data_digest()
        .ok_or(SpoolCodecError::Misuse("no last record sealed"))?;
    metadata.size = size;
    metadata.sha256 = hex::encode(sha);
    let record = metadata.to_record_padded(reserved)?;
    let mut out = Vec::with_capacity(reserved + 4 + TAG_LEN);
    let at = sealer.seal_metadata(&record, &mut out)?;
    writer
        .seek(SeekFrom::Start(start + at))
        .map_err(SpoolCodecError::io("seeking in the spool file"))?;
    writer
        .write_all(&out)
        .map_err(SpoolCodecError::io("writing the spool file"))?;
    writer
        .seek(SeekFrom::Start(start + written))
        .map_err(SpoolCodecError::io("seeking in the spool file"))?;
    writer
        .flush()
        .map_err(SpoolCodecError::io("flushing the spool file"))?;
    Ok((metadata, written))
}

/// `begin` and every data record of `sealer`, with a one-chunk lookahead
/// (to know which chunk is the last). Returns the bytes written.
fn seal_records<R: Read, W: Write>(
    sealer: &mut Sealer,
    mut reader: R,
    writer: &mut W,
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
            return Ok(written);
        }
        std::mem::swap(&mut cur, &mut ahead);
        n = m;
    }
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
#[path = "stream_tests.rs"]
mod tests;
