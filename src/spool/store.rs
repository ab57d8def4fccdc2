//! The spool store: what every spool task shares — the folders
//! ([`Dirs`], the filesystem layer: paths and durable operations), the
//! keys, the limits, the audit log, the persistent conditions, the
//! coordination state (`claims`), this instance's claim folder in the
//! outbox (`outbox_claims`) and the counters — with the listing and
//! depth built on them. The layout and its crash rules are in the module
//! doc of [`crate::spool`].

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use time::OffsetDateTime;

use super::claims::{Claims, MetaCache};
use super::conditions::Conditions;
pub use super::dirs::{
    durable_remove, durable_rename, sync_dir, Area, Dirs, DELIVERED, EXT, INCOMING, OUTGOING,
    QUARANTINE, TMP,
};
use super::error::{SpoolCodecError, SpoolError};
use super::key::{KeyId, MasterKey};
use super::metadata::Metadata;
use super::outbox_claim::OutboxClaims;
use super::stream::read_metadata;
use crate::admin::SpoolDepth;
use crate::audit::{AuditLog, Event};

/// One sealed file found in an area.
#[derive(Debug, Clone)]
pub struct Entry {
    pub area: Area,
    pub path: PathBuf,
    /// The file name without `.pgs` (the id for outgoing/incoming).
    pub id: String,
    /// Size on disk (sealed).
    pub bytes: u64,
    /// The authenticated metadata, or why it could not be read.
    pub meta: Result<Metadata, String>,
    /// Set when the file is sealed under a key id that is configured
    /// neither as `spool.key` nor in `spool.old_keys`: it waits for that
    /// key (it is not damaged, so it is not quarantined).
    pub waiting_key: Option<KeyId>,
}

/// Spool depth: outbound = waiting for the peer, inbound = received, not
/// yet delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Depth {
    pub outbound: SpoolDepth,
    pub inbound: SpoolDepth,
}

/// Event counters since start (for metrics).
#[derive(Debug, Default)]
pub struct Counters {
    pub ingested: AtomicU64,
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub delivered: AtomicU64,
    pub quarantined: AtomicU64,
    pub refused: AtomicU64,
    /// Spool links torn down because they made no progress.
    pub stalls: AtomicU64,
    /// Files the peer refused (each refusal of each file once).
    pub refused_by_peer: AtomicU64,
}

/// The spool directory of one site.
pub struct Store {
    /// The folders and the durable operations on them.
    pub(crate) dirs: Dirs,
    pub(crate) key: MasterKey,
    /// Previous keys, only for reading files sealed before a key change;
    /// replaced on reload ([`Store::set_old_keys`]).
    pub(crate) old_keys: RwLock<Vec<MasterKey>>,
    pub(crate) max_bytes: Option<u64>,
    /// `[spool] settle_ms` (0 for stores opened without a config).
    pub(crate) settle: Duration,
    /// `[spool] stall_secs`.
    pub(crate) stall: Duration,
    /// `[spool] max_age_days`: the replay window (see `spool::replay`).
    pub(crate) max_age: Duration,
    /// The peer's clock minus ours, milliseconds (0 until measured).
    pub(crate) peer_skew_ms: std::sync::atomic::AtomicI64,
    pub(crate) audit: Option<AuditLog>,
    /// Persistent conditions (waiting keys, refusals, …), for `/status`.
    pub conditions: Conditions,
    /// What was read of each sealed file's header.
    pub(crate) cache: MetaCache,
    /// Which files a task is working on right now.
    pub(crate) claims: Claims,
    /// This instance's claim folder in the outbox ([`super::outbox_claim`]).
    pub(crate) outbox_claims: OutboxClaims,
    pub counters: Counters,
}

impl Store {
    /// Opens (creating the folders of) a spool at `root`.
    ///
    /// # Errors
    /// [`SpoolError::Io`] if a folder cannot be created.
    pub fn new(
        root: &Path,
        key: MasterKey,
        outbox: &Path,
        inbox: &Path,
        max_bytes: Option<u64>,
        audit: Option<AuditLog>,
    ) -> Result<Store, SpoolError> {
        let dirs = Dirs::create(root, outbox, inbox)?;
        let outbox_claims = OutboxClaims::open(root, outbox)?;
        Ok(Store {
            dirs,
            key,
            old_keys: RwLock::default(),
            max_bytes,
            settle: Duration::ZERO,
            stall: Duration::from_secs(crate::config::Spool::DEFAULT_STALL_SECS),
            max_age: Duration::from_secs(crate::config::Spool::DEFAULT_MAX_AGE_DAYS * 86_400),
            peer_skew_ms: std::sync::atomic::AtomicI64::new(0),
            conditions: Conditions::new(audit.clone()),
            audit,
            cache: MetaCache::default(),
            claims: Claims::default(),
            outbox_claims,
            counters: Counters::default(),
        })
    }

    /// Opens the spool of a config's `[spool]` section, loading its key
    /// (refused unless private).
    ///
    /// # Errors
    /// [`SpoolError::Key`] or [`SpoolError::Io`].
    pub fn open(cfg: &crate::config::Spool, audit: Option<AuditLog>) -> Result<Store, SpoolError> {
        let key = MasterKey::load_key_file(&cfg.key)?;
        let mut store = Store::new(&cfg.dir, key, &cfg.outbox, &cfg.inbox, cfg.max_bytes, audit)?;
        super::keys::set_old_keys(&store, super::keys::load_old_keys(cfg)?);
        store.settle = cfg.settle;
        store.stall = cfg.stall;
        store.max_age = cfg.max_age;
        Ok(store)
    }

    /// The spool root folder.
    pub fn root(&self) -> &Path {
        self.dirs.root()
    }

    /// Path of a sealed file for `id` in `area`.
    pub fn path(&self, area: Area, id: &str) -> PathBuf {
        self.dirs.path(area, id)
    }

    /// A fresh, unique path in `tmp/`.
    pub(crate) fn tmp_path(&self, what: &str) -> PathBuf {
        self.dirs.tmp_path(what)
    }

    /// Records an audit event (no-op for offline tools).
    pub(crate) fn audit(&self, event: Event) {
        if let Some(audit) = &self.audit {
            audit.record(event);
        }
    }

    /// Reads (and caches) the metadata of a sealed file.
    ///
    /// # Errors
    /// [`SpoolError::Io`] or [`SpoolError::Codec`].
    pub fn metadata(&self, path: &Path) -> Result<Metadata, SpoolError> {
        if let Some(m) = self.cache.get(path) {
            return Ok(m);
        }
        let file = File::open(path).map_err(SpoolError::io("open", path))?;
        let meta = read_metadata(io::BufReader::new(file), &super::keys::key_for(self, path))
            .map_err(SpoolError::codec(path))?;
        self.cache.insert(path, meta.clone());
        Ok(meta)
    }

    /// Forgets the cached metadata of a file that was moved or deleted.
    pub(crate) fn forget(&self, path: &Path) {
        self.cache.forget(path);
    }

    /// The sealed files of an area, oldest `created` first (unreadable ones
    /// first of all, so they get quarantined promptly).
    ///
    /// # Errors
    /// [`SpoolError::Io`] if the folder cannot be listed.
    pub fn entries(&self, area: Area) -> Result<Vec<Entry>, SpoolError> {
        let dir = self.dirs.root.join(area.dir());
        let mut out = Vec::new();
        for item in fs::read_dir(&dir).map_err(SpoolError::io("list", &dir))? {
            let item = item.map_err(SpoolError::io("list", &dir))?;
            let path = item.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(&format!(".{EXT}")))
            else {
                continue;
            };
            let Ok(stat) = item.metadata() else { continue };
            if !stat.is_file() {
                continue;
            }
            let known_waiting = self.cache.waiting_for(&path);
            let read = match known_waiting {
                Some(found) => Err(found),
                None => match self.metadata(&path) {
                    Ok(m) => Ok(m),
                    Err(SpoolError::Codec {
                        source: SpoolCodecError::WrongKey { found, .. },
                        ..
                    }) => {
                        self.cache.note_waiting(&path, found);
                        Err(found)
                    }
                    Err(e) => {
                        out.push(Entry {
                            area,
                            id: id.to_owned(),
                            path,
                            bytes: stat.len(),
                            meta: Err(e.to_string()),
                            waiting_key: None,
                        });
                        continue;
                    }
                },
            };
            let (meta, waiting_key) = match read {
                Ok(m) => (Ok(m), None),
                Err(found) => (
                    Err(format!(
                        "waiting for key {found}: add the key file with that id to spool.old_keys"
                    )),
                    Some(found),
                ),
            };
            out.push(Entry {
                area,
                id: id.to_owned(),
                path,
                bytes: stat.len(),
                meta,
                waiting_key,
            });
        }
        out.sort_by(|a, b| match (&a.meta, &b.meta) {
            (Err(_), Err(_)) if a.waiting_key.is_some() != b.waiting_key.is_some() => {
                a.waiting_key.is_some().cmp(&b.waiting_key.is_some())
            }
            (Ok(x), Ok(y)) => (x.created, &a.id).cmp(&(y.created, &b.id)),
            (Err(_), Ok(_)) => std::cmp::Ordering::Less,
            (Ok(_), Err(_)) => std::cmp::Ordering::Greater,
            (Err(_), Err(_)) => a.id.cmp(&b.id),
        });
        Ok(out)
    }

    /// Sealed bytes in `outgoing/` + `incoming/` (what `max_bytes` caps).
    pub fn used_bytes(&self) -> u64 {
        self.dirs.used_bytes()
    }

    /// Files, plaintext bytes and the oldest file's `created` (never later
    /// than now) per direction.
    pub fn depth(&self) -> Depth {
        let now = OffsetDateTime::now_utc();
        let one = |area| {
            let mut d = SpoolDepth::default();
            for e in self.entries(area).unwrap_or_default() {
                d.files += 1;
                if let Ok(m) = &e.meta {
                    d.bytes += m.size;
                    let since = m.created.min(now);
                    d.oldest_since = Some(d.oldest_since.map_or(since, |o| o.min(since)));
                }
            }
            d
        };
        Depth {
            outbound: one(Area::Outgoing),
            inbound: one(Area::Incoming),
        }
    }

    /// Whether `id` was received already (acknowledged and either waiting
    /// in `incoming/` or delivered).
    pub fn is_known(&self, id: &str) -> bool {
        self.dirs.is_known(id)
    }

    /// Durably records `id` as delivered.
    ///
    /// # Errors
    /// [`SpoolError::Io`].
    pub fn mark_delivered(&self, id: &str) -> Result<(), SpoolError> {
        self.dirs.mark_delivered(id)
    }
}

/// Milliseconds since the file's `created`.
pub(crate) fn age_ms(meta: &Metadata) -> u64 {
    let ms = (OffsetDateTime::now_utc() - meta.created).whole_milliseconds();
    u64::try_from(ms).unwrap_or(0)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
#[path = "store_tests.rs"]
pub(crate) mod tests;
