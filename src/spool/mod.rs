//! The encrypted spool: whole files stored and forwarded between sites.
//!
//! Files dropped into a site's outbox travel to the peer's inbox over the
//! mTLS link (ALPN `pg1-spool`); while they wait they are encrypted at rest
//! (format v1 below); nothing is lost or shown twice whatever crashes.
//!
//! # On-disk layout (under `spool.dir`, mode 0700)
//!
//! ```text
//! tmp/                   files being written (garbage after a crash)
//! outgoing/<id>.pgs      sealed, durable, waiting for the peer's ACK
//! incoming/<id>.pgs      received, sealed under OUR key, ACKed, not yet delivered
//! delivered/<id>         empty marker: id delivered (dedupe; pruned after 30 days)
//! quarantine/<file>      files that failed authentication (audited)
//! ```
//!
//! The outbox and inbox are the operator's folders; names starting with `.`
//! are in-progress files there (the consumer ignores ours: `.pg-<id>.tmp`).
//!
//! # The rules (Postfix's)
//!
//! 1. A file is acknowledged only once it is complete on disk: write in
//!    `tmp/`, fsync the file, rename into place, fsync the folder.
//! 2. The source is deleted only after the next holder acknowledged.
//! 3. Prefer delivering twice to losing; dedupe by `id` so twice never shows.
//!
//! # Flow and order of writes
//!
//! - **Intake** ([`intake`]): outbox file → sealed into `tmp/` (metadata
//!   remembers the source's inode/mtime/size) → fsync → rename to
//!   `outgoing/<id>.pgs` → fsync dir → unlink plaintext → fsync outbox. The
//!   id is *pending* meanwhile: the forwarder skips it. Refused (left in
//!   the outbox, audited once) when `max_bytes` would be exceeded.
//! - **Send** ([`forward`], [`wire`]): HELLO; OFFER{metadata} → ACCEPT |
//!   ALREADY | ERROR; DATA… (plaintext, decrypted and authenticated on the
//!   fly, inside TLS); END → ACK | ERROR. On ACK or ALREADY the sender
//!   unlinks `outgoing/<id>.pgs` and fsyncs.
//! - **Receive** ([`receive`]): OFFER of an id in `incoming/` or
//!   `delivered/` → ALREADY. Otherwise DATA is re-encrypted under our key
//!   into `tmp/` as it arrives; at END the sealer has checked size and
//!   SHA-256; fsync, rename to `incoming/<id>.pgs`, fsync dir, *then* ACK.
//! - **Deliver** ([`deliver`]): decrypt to `inbox/.pg-<id>.tmp`, fsync,
//!   hard-link to `name` (never replaces; `name.<id>` if a different file
//!   has the name), unlink tmp, fsync inbox, write `delivered/<id>` + fsync,
//!   unlink `incoming/<id>.pgs` + fsync.
//!
//! # After a crash at each step ([`recover`] runs before any task)
//!
//! | crash while / after | state found | recovery |
//! | --- | --- | --- |
//! | intake: sealing | plaintext in outbox, partial in `tmp/` | tmp removed; file re-ingested |
//! | intake: after rename, before unlink | plaintext + `outgoing/<id>` | sealed copy verified in full → plaintext deleted (bad → quarantined, plaintext re-ingested); the source tag keeps a *new* file of the same name safe |
//! | send: before ACK arrives | `outgoing/<id>`; peer may have it | resent; peer answers ALREADY if it stored it |
//! | send: after ACK, before unlink | `outgoing/<id>`, peer has it | resent → ALREADY → unlinked |
//! | receive: before rename | partial in `tmp/`, no ACK sent | tmp removed; sender resends |
//! | receive: after rename, before ACK | `incoming/<id>`, sender still has it | resend answered ALREADY |
//! | deliver: before link | `incoming/<id>`, maybe `.pg-<id>.tmp` | tmp removed; delivered again |
//! | deliver: after link, before marker | file in inbox + `incoming/<id>` | redelivery finds the identical file under the name: no second copy |
//! | deliver: after marker, before unlink | marker + `incoming/<id>` | `incoming/<id>` removed |
//!
//! The one remaining duplicate window: the consumer takes the file out of
//! the inbox between the link and the marker write, and we crash there.
//! Then it is delivered again (twice rather than never).
//!
//! # Integrity
//!
//! Anything in `outgoing/` or `incoming/` that does not authenticate (bad
//! header, wrong key, tampered, truncated) is moved to `quarantine/` and
//! audited `spool_quarantined` when it is listed, sent or delivered; the
//! others go on. A sender that finds a file tampered mid-stream sends ERROR
//! so the receiver discards what it got. `pairgate spool verify` checks
//! every file in full ([`tools`]).
//!
//! # Memory and size
//!
//! Everything streams in 64 KiB records through bounded channels between
//! the async link and blocking file I/O: memory does not depend on file
//! size, and there is no size limit below the format's 2^32 records.
//!
//! Measured once (release, 2-core VM, same disk;
//! `cargo test --release --test integration spool::measure -- --ignored --nocapture`):
//! ingest of 16 × 16 MiB at 210 MB/s (SHA-256 pass + AES-256-GCM sealing
//! pass with its own SHA-256 check + fsync + rename + unlink) beside
//! `cp -r` + `sync` at 1346 MB/s (page-cache copy, one sync); a 1 MB file
//! goes outbox → peer inbox in a median 112 ms (95–130 ms) with the link
//! up, most of it the 100 ms outbox poll.
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
pub mod deliver;
pub mod error;
pub mod forward;
mod fuzz;
pub mod intake;
pub mod key;
pub mod link;
pub mod metadata;
mod open;
pub mod receive;
pub mod recover;
mod seal;
mod service;
pub mod store;
pub mod stream;
pub mod tools;
pub mod wire;

pub use codec::{
    CHUNK_LEN, HEADER_LEN, HKDF_INFO, MAGIC, MAX_RECORD_LEN, NONCE_PREFIX_LEN, SALT_LEN, TAG_LEN,
};
pub use error::{SpoolCodecError, SpoolError};
pub use fuzz::{fuzz_decode, FUZZ_KEY};
pub use key::{KeyError, KeyId, MasterKey};
pub use metadata::{Metadata, MAX_METADATA_LEN};
pub use open::{Opened, Opener};
pub use seal::Sealer;
pub use service::Spool;
pub use store::{Area, Depth, DirDepth, Store};
pub use stream::{
    decrypt_stream, digest_stream, encrypt_seekable, encrypt_stream, read_metadata, seal_stream,
};
pub use wire::fuzz_wire;
