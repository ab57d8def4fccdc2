//! The encrypted spool: whole files stored and forwarded between sites.
//!
//! Files dropped into a site's outbox travel to the peer's inbox over the
//! mTLS link (ALPN `pg1-spool`); while they wait they are encrypted at rest
//! (format v1 below); nothing is lost or shown twice whatever crashes.
//!
//! # The path of a file, and where its code is
//!
//! - outbox → `outgoing/`: [`watch`] wakes intake, [`settle`] waits until a
//!   writer is done, [`intake`] / [`batch`] seal (`seal`, [`stream`]) and
//!   rename, group-committed;
//! - `outgoing/` → the peer: [`forward`] dials through `crate::peer` (the
//!   dialer both tunnels and the spool use) and speaks [`wire`] over
//!   [`link`]; refusals become [`conditions`] and [`hold`]s;
//! - the peer → `incoming/`: [`receive`], which the gateway registers with
//!   the peer listener as the `spool` service (`peer::Service`; the proxy
//!   knows nothing of the spool);
//! - `incoming/` → inbox: [`deliver`]; after a crash [`recover`] first.
//!
//! Underneath: [`dirs`] is the filesystem layer (folders, paths, durable
//! renames and removes, delivery markers), `claims` the coordination state
//! between the tasks (which ids are pending, being received, already
//! reported), [`outbox_claim`] this instance's claim folder in the outbox
//! (on disk, between the instances sharing an outbox), [`store`] what the
//! tasks share on top of these (keys, limits, conditions, counters,
//! listing, depth), and `service` the running spool and its three tasks.
//!
//! # On-disk layout (under `spool.dir`, mode 0700)
//!
//! ```text
//! tmp/                   files being written (garbage after a crash)
//! outgoing/<id>.pgs      sealed, durable, waiting for the peer's ACK
//! incoming/<id>.pgs      received, sealed under OUR key, ACKed, not yet delivered
//! delivered/<id>         empty marker: id delivered (dedupe; pruned after spool.max_age_days + 1 day, at least 30 days: see [`replay`])
//! quarantine/<id>.pgs    files that failed authentication (audited), each
//! quarantine/<id>.json     with a record: id, name, size, reason, from, at
//! lock                   flock'ed by the one process that runs this spool
//! instance               this spool's random id (names its outbox claim folder)
//! ```
//!
//! The outbox and inbox are the operator's folders. In the outbox, names
//! starting with `.` and `*.tmp` / `*.partial` are in-progress files and
//! left alone (ours in the inbox: `.pg-<id>.tmp`).
//!
//! # The rules (Postfix's)
//!
//! 1. A file is acknowledged only once it is complete on disk: write in
//!    `tmp/`, fsync the file, rename into place, fsync the folder.
//! 2. The source is deleted only after the next holder acknowledged — and
//!    an outbox file only if it is still exactly the version that was
//!    sealed.
//! 3. Prefer delivering twice to losing; dedupe by `id` so twice never shows.
//! 4. Nothing waits on anything else: a file that cannot go on (refused by
//!    the peer, not deliverable, waiting for a key, unreadable) is set
//!    aside with its own backoff while the rest flows.
//! 5. A condition that persists is logged and audited once when it starts
//!    and once when it clears ([`conditions`]), shown in `/status`
//!    (`spool_conditions`) and counted (`pairgate_spool_held_files`);
//!    retries are quiet.
//! 6. Idle costs nothing: every task sleeps until an event (inotify, a
//!    received file, a sent file) or a slow safety-net timer (outbox 10 s,
//!    `outgoing/` and `incoming/` 30 s; [`OUTBOX_RESCAN`], [`SAFETY_NET`]).
//!
//! # Flow and order of writes
//!
//! - **Intake** ([`settle`], [`watch`], [`intake`]): a file is taken only
//!   when finished: a writer closed it (`IN_CLOSE_WRITE`) or it was renamed
//!   in (`IN_MOVED_TO`) — a name seen created or written waits for that
//!   event (or 60 s of quiet if the event was lost) — *and* its size,
//!   mtime, ctime and inode looked unchanged over `[spool] settle_ms`
//!   (default 1000 ms). The files ready at one look are taken as a batch
//!   ([`batch`]; at most 64 files or 256 MiB): each is first *claimed* by
//!   an atomic rename into this instance's claim folder
//!   `outbox/.pairgate-claimed-<instance>/` ([`outbox_claim`]: two instances of a
//!   site may share one outbox, each with its own `spool.dir`; a file is
//!   taken by exactly one), then opened, checked to
//!   be that version and sealed into `tmp/` reading it once (record 0
//!   reserved, sealed last; metadata remembers the source's
//!   inode/mtime/size, and a name that is not UTF-8 in `name_b64`), on one
//!   thread per core; a file whose stamp changed while it was read, or that
//!   did not yield exactly its size, is discarded and settles again. Each
//!   sealed copy is fdatasynced as soon as it is written; then, for the
//!   batch: re-stat → mark pending → rename each to `outgoing/<id>.pgs` →
//!   **one** fsync of `outgoing/` → **re-stat**: unchanged → unlink the
//!   plaintext; changed → remove the sealed copy and let the file settle
//!   again → **one** fsync of the outbox. Never a 0-byte or partial copy of
//!   a file still being written. Symbolic links and special files are refused (audited
//!   `spool_refused`, never followed); a file that cannot be taken
//!   (unreadable, `max_bytes`, disk full) is audited once per version and
//!   retried with its own backoff (2 s doubling to 60 s; at once when its
//!   attributes change or the spool gets room).
//! - **Send** ([`forward`], [`wire`] v2): HELLO; OFFER{metadata} → ACCEPT |
//!   ALREADY | ERROR{reason}; DATA… (plaintext, decrypted and authenticated
//!   on the fly, inside TLS); END → ACK | ERROR{reason}. On ACK or ALREADY
//!   the sender unlinks `outgoing/<id>.pgs` and fsyncs. A refused file is
//!   set aside and the connection goes on with the next one: `busy`,
//!   `full`, `failed` are "later" (1–5 s doubling to 5 min); `too_large`
//!   (above the receiver's `max_bytes`) and `bad_name` are "never" —
//!   reported once (`too_large` / `bad_name` conditions), offered again
//!   only now and then (30 s doubling to 30 min: one OFFER, no data).
//! - **Receive** ([`receive`]): OFFER of an id in `incoming/` or
//!   `delivered/` → ALREADY; no room (`max_bytes`, or the disk's free
//!   space) → ERROR `full` or `too_large` before any data is sent. Otherwise
//!   DATA is re-encrypted under our key into `tmp/` as it arrives; at END
//!   the sealer has checked size and SHA-256; fsync, rename to
//!   `incoming/<id>.pgs`, fsync dir, *then* ACK.
//! - **Progress**: on both sides, a transfer that moves no bytes for
//!   `[spool] stall_secs` (default 30 s) is a frozen link: the connection
//!   is dropped (the receiver discards its partial file and frees the id),
//!   the sender reports it (link down in `/status`, condition
//!   `link_stalled`, `pairgate_spool_link_stalls_total`) and resends on a
//!   fresh connection. Between files only the idle timeout applies. Every
//!   peer socket also has TCP keepalive ([`crate::peer::keepalive`]).
//! - **Deliver** ([`deliver`]): decrypt to `inbox/.pg-<id>.tmp`, fsync,
//!   hard-link to its name (the raw bytes of `name_b64` on Unix; never
//!   replaces; `name.<id>` if a different file has the name, shortened to
//!   `<name cut>~.<id>.<ext>` when that would exceed 255 bytes —
//!   [`names`]), unlink tmp, fsync inbox, write `delivered/<id>` + fsync,
//!   unlink `incoming/<id>.pgs` + fsync. A file the inbox cannot take
//!   (full, unwritable) waits in `incoming/` with its own backoff (2 s
//!   doubling to 2 min; condition `inbox_failing`) while the others are
//!   delivered.
//!
//! # After a crash at each step ([`recover`] runs before any task)
//!
//! | crash while / after | state found | recovery |
//! | --- | --- | --- |
//! | intake: settling, sealing or syncing a batch | plaintexts in outbox, maybe partial or complete copies in `tmp/` | tmp removed; the files settle again and are taken |
//! | intake: after a claim, before the sealed copy is in `outgoing/` | plaintext in our claim folder | returned to the outbox under its name (never over a newer file of that name) |
//! | intake: after some or all of a batch's renames, before their unlinks are durable (outbox fsync) | plaintext + `outgoing/<id>` for some files of the batch; a rename not yet covered by the `outgoing/` fsync may be lost (then the file is as in the row above) | sealed copy verified in full → plaintext deleted (bad → quarantined, plaintext re-ingested); the source tag keeps a *new* file of the same name safe |
//! | intake: the file changed at the last moment, before the sealed copy is removed again | changed plaintext + `outgoing/<id>` of the older version | the tag no longer matches: both stay; both versions are delivered (the second as `name.<id>`) — twice, never lost |
//! | send: before ACK arrives | `outgoing/<id>`; peer may have it | resent; peer answers ALREADY if it stored it |
//! | send: after ACK, before unlink | `outgoing/<id>`, peer has it | resent → ALREADY → unlinked |
//! | receive: before rename | partial in `tmp/`, no ACK sent | tmp removed; sender resends |
//! | receive: after rename, before ACK | `incoming/<id>`, sender still has it | resend answered ALREADY |
//! | deliver: before link | `incoming/<id>`, maybe `.pg-<id>.tmp` | tmp removed; delivered again |
//! | deliver: after link, before marker | file in inbox + `incoming/<id>` | redelivery finds the identical file under the name: no second copy |
//! | deliver: after marker, before unlink | marker + `incoming/<id>` | `incoming/<id>` removed |
//! | requeue: after the move, before the record is removed | file back in `outgoing/` or `incoming/`, a stale record in `quarantine/` | harmless; the record names a file no longer there |
//!
//! Set-aside states (refusals, backoffs, waiting keys) live in memory
//! only: after a restart every file is simply tried again.
//!
//! The one remaining duplicate window: the consumer takes the file out of
//! the inbox between the link and the marker write, and we crash there.
//! Then it is delivered again (twice rather than never).
//!
//! # Integrity, keys and quarantine
//!
//! Anything in `outgoing/` or `incoming/` that does not authenticate (bad
//! header, tampered, truncated) is moved to `quarantine/` with a record
//! ([`quarantine`]) and audited `spool_quarantined` (with its name when the
//! metadata could be read) when it is listed, sent or delivered; the
//! others go on. A sender that finds a file tampered mid-stream sends
//! ERROR so the receiver discards what it got. `pairgate spool verify`
//! checks every file in full ([`tools`]).
//!
//! A file sealed under a key id that is neither `spool.key` nor in
//! `spool.old_keys` is **not** damaged and is not quarantined: it waits
//! ([`keys`]; condition `waiting_for_key` with the key id and the number
//! of files) and goes on when that key is configured — `old_keys` is
//! re-read on SIGHUP (`spool_key_reload`). `pairgate spool requeue` moves
//! quarantined files back where they came from once the operator has fixed
//! the cause; a file still bad is quarantined again.
//!
//! # Memory and size
//!
//! Everything streams in 64 KiB records through bounded channels between
//! the async link and blocking file I/O: memory does not depend on file
//! size, and there is no size limit below the format's 2^32 records.
//!
//! Measured in one run (release, 2-core VM shared with other builds, same
//! disk, 16 × 16 MiB, median of 5 interleaved rounds;
//! `cargo test --release --test integration spool_measure -- --ignored --nocapture`):
//!
//! | way | MB/s | × `cp -r` + `sync` | CPU s/GB |
//! | --- | ---: | ---: | ---: |
//! | `cp -r` + `sync` | 1138 | 1.00 | 0.52 |
//! | `cp -r` + `sync FILE…` | 1347 | 1.18 | 0.41 |
//! | copy + fsync per file | 1036 | 0.91 | 0.60 |
//! | intake before (2 reads, 3 fsyncs per file in sequence) | 336 | 0.30 | 2.42 |
//! | intake now (1 read, 2 sealing threads, group commit) | 780 | 0.69 | 1.94 |
//!
//! Where intake's CPU goes (`perf`, per GB): page-cache writes of the
//! sealed copies 0.84 s, SHA-256 (SHA-NI) 0.57 s, AES-256-GCM (VAES) 0.17 s,
//! reads 0.15 s, writeback started by fdatasync 0.13 s, freeing the deleted
//! plaintexts' pages 0.09 s. A copy costs 0.4–0.6 s/GB in all, so on two
//! cores sealing stays CPU-bound below `cp`. The delay from outbox to peer
//! inbox of a 1 MB file is the settle time (`settle_ms`, 1 s by default:
//! median 1017 ms) plus intake and transfer (`settle_ms = 0`: median
//! 19 ms): intake wakes on the closing or renaming event, not on a poll.
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
//! # Format v1 (binding: `docs/reference.md`, "Spool files")
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
//!   chunk that does not match the metadata's size and SHA-256. Or, in
//!   one-pass mode ([`Sealer::reserving`]), it is given only the length of
//!   the metadata record: it emits the header and a placeholder of record
//!   0's framed length, the data records while hashing, and at the end
//!   record 0 (which must be that length, with the size and SHA-256 of the
//!   data sealed) for the caller to write at offset 55. Record 0's nonce
//!   (index 0, flag 0) does not depend on when it is sealed: the same
//!   inputs give the same bytes either way (checked against the
//!   known-answer vectors). The metadata's length does not depend on the
//!   data: `sha256` is always 64 hex digits, and `size` (a JSON number of
//!   1–20 digits) is made up to 20 with spaces before the closing brace
//!   ([`Metadata::reserved_len`], [`Metadata::to_record_padded`]), so the
//!   record stays a plain JSON object with the same fields and types.
//!   [`Opener`]
//!   checks magic and key id, bounds each length before anything is
//!   allocated, opens records strictly in order and, on the final record,
//!   compares size and SHA-256 with the metadata. When a record fails it
//!   retries with the other last flag only to name the problem precisely
//!   (`Truncated`, `TrailingData` or `Tampered`).
//! - [`stream`]: `Read`/`Write` adapters. [`encrypt_one_pass`] reads the
//!   source once into a seekable writer (outbox intake);
//!   [`encrypt_stream`] writes strictly in order when size and SHA-256 are
//!   known up front (receiving, rekey) and fails with `SourceChanged` if
//!   the data disagrees. Both seal with a one-chunk lookahead; memory stays
//!   at a few hundred KiB for any file size.
//! - Decryption releases each record's plaintext once that record is
//!   authenticated, but only an `Ok` from [`decrypt_stream`] proves the file
//!   complete and intact: callers write to a temp file and rename on `Ok`.
//! - [`key`]: [`MasterKey`] (zeroized, redacted `Debug`) and its key file
//!   (64 hex + newline, written 0600 create-new, refused if group/other
//!   readable).
//! - Nothing here panics on any input; [`fuzz_decode`] is the fuzz entry
//!   point (`fuzz/fuzz_targets/spool_decode.rs`).

pub mod batch;
mod claims;
pub mod codec;
pub mod conditions;
pub mod deliver;
pub mod dirs;
pub mod error;
pub mod forward;
mod fuzz;
pub mod hold;
pub mod intake;
mod intake_report;
pub mod key;
pub mod keys;
pub mod link;
pub mod metadata;
pub mod names;
mod open;
pub mod outbox_claim;
pub mod quarantine;
pub mod receive;
pub mod recover;
mod refusal;
pub mod replay;
mod seal;
mod send_file;
mod service;
pub mod settle;
mod space;
pub mod store;
pub mod stream;
pub mod tools;
pub mod watch;
pub mod wire;

pub use codec::{
    CHUNK_LEN, HEADER_LEN, HKDF_INFO, MAGIC, MAX_RECORD_LEN, NONCE_PREFIX_LEN, SALT_LEN, TAG_LEN,
};
pub use conditions::{Active, Condition, Conditions};
pub use error::{SpoolCodecError, SpoolError};
pub use fuzz::{fuzz_decode, FUZZ_KEY};
pub use key::{KeyError, KeyId, MasterKey};
pub use metadata::{Metadata, MAX_METADATA_LEN, PLACEHOLDER_SHA256};
pub use open::{Opened, Opener};
pub use seal::Sealer;
pub use service::{Spool, OUTBOX_POLL, OUTBOX_RESCAN, SAFETY_NET};
pub use store::{Area, Depth, Store};
pub use stream::{
    decrypt_stream, digest_stream, encrypt_one_pass, encrypt_seekable, encrypt_stream,
    read_metadata, seal_one_pass, seal_stream,
};
pub use wire::fuzz_wire;
