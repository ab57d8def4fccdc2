//! The encrypted spool: whole files stored and forwarded between sites.
//!
//! This module currently holds the pure file codec (format v1) and the master
//! key file. The spool directory layout, the outbox watcher, the forwarder and
//! crash recovery build on it and will be described here when they land.
//!
//! # Why a file format of our own
//!
//! Spooled files are backups and configuration exports of a Lync / Skype for
//! Business pool: they may wait on disk for days while the peer site is down,
//! so they are encrypted at rest, and whatever arrives from the peer must be
//! authenticated *before* it is placed in the inbox. The files can be many
//! gigabytes, so both directions stream with bounded memory; an AEAD over the
//! whole file would need it all in memory. We therefore use the STREAM
//! construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015; as in age): the
//! file is cut into records, each sealed with AES-256-GCM under a nonce made
//! of a counter and a last-record flag, so records cannot be reordered,
//! dropped, duplicated, truncated or extended without detection.
//!
//! # Format v1 (binding: /work/shared/contract.md, "Spool files")
//!
//! ```text
//! magic "PGSPOOL1" (8) | key_id (8) | salt (32) | nonce_prefix (7)   = header, 55 bytes
//! record*: u32 big-endian ciphertext length | ciphertext (includes the 16-byte tag)
//! ```
//!
//! - `key_id` = SHA-256(master key)[..8]: says which key sealed the file, so a
//!   wrong key is reported as such (`WrongKey`) and not as tampering.
//! - File key = HKDF-SHA256(salt, ikm = master key, info = `"pairgate spool v1"`),
//!   32 bytes. A fresh random salt per file gives every file its own key, so
//!   the 96-bit nonces never repeat under one key even with random prefixes.
//! - Record *i* (from 0): nonce = `nonce_prefix` ‖ u32 BE *i* ‖ last-flag
//!   byte (1 on the final record, else 0); AAD = the 55 header bytes, so the
//!   header cannot be altered either.
//! - Record 0 = metadata JSON ([`Metadata`]: `id`, `name`, `size`, `sha256`,
//!   `created`, plus any extra fields), at most 64 KiB, never last.
//! - Records 1… = the plaintext in 65536-byte chunks; the final chunk holds
//!   1–65536 bytes, or 0 only for an empty file (exactly one empty record).
//!   Ciphertext lengths are therefore 16..=65552.
//!
//! # Codec design
//!
//! - [`codec`]: constants and the sans-IO core. [`Sealer`] is given the
//!   master key, salt, nonce prefix and the *exact* metadata record bytes
//!   (serialized once, stored verbatim, so known-answer vectors are
//!   reproducible) and emits header + framed records; it refuses a final
//!   chunk that does not match the metadata's size and SHA-256. [`Opener`]
//!   checks magic and key id, bounds each length before anything is
//!   allocated, opens records strictly in order and, on the final record,
//!   compares size and SHA-256 with the metadata. When a record fails it
//!   retries with the other last flag only to name the problem precisely
//!   (`Truncated`, `TrailingData` or `Tampered`).
//! - [`stream`]: `Read`/`Write` adapters. The metadata comes first but
//!   depends on the whole plaintext, so sealing is two reads of the source:
//!   a hashing pass ([`digest_stream`], or done for you by
//!   [`encrypt_seekable`]) and one sealing pass with a one-chunk lookahead;
//!   memory stays at a few hundred KiB for any file size. A source that
//!   changes between the passes is caught (`SourceChanged`).
//! - Decryption releases each record's plaintext once that record is
//!   authenticated, but only an `Ok` from [`decrypt_stream`] proves the file
//!   complete and intact: callers write to a temp file and rename on `Ok`.
//! - [`key`]: [`MasterKey`] (zeroized, redacted `Debug`) and its key file
//!   (64 hex + newline, written 0600 create-new, refused if group/other
//!   readable).
//! - Nothing here panics on any input; [`fuzz_decode`] is the fuzz entry
//!   point (`fuzz/fuzz_targets/spool_decode.rs`).

pub mod codec;
pub mod error;
mod fuzz;
pub mod key;
pub mod metadata;
mod open;
mod seal;
pub mod stream;

pub use codec::{
    CHUNK_LEN, HEADER_LEN, HKDF_INFO, MAGIC, MAX_RECORD_LEN, NONCE_PREFIX_LEN, SALT_LEN, TAG_LEN,
};
pub use error::SpoolCodecError;
pub use fuzz::{fuzz_decode, FUZZ_KEY};
pub use key::{KeyError, KeyId, MasterKey};
pub use metadata::{Metadata, MAX_METADATA_LEN};
pub use open::{Opened, Opener};
pub use seal::Sealer;
pub use stream::{
    decrypt_stream, digest_stream, encrypt_seekable, encrypt_stream, read_metadata, seal_stream,
};
