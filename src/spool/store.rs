//! The spool directory: its folders, durable renames, listing, quarantine,
//! dedupe markers and depth. Every other spool part goes through this
//! "filesystem seam"; the layout and its crash rules are in the module doc
//! of [`crate::spool`].

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};
use time::OffsetDateTime;

use super::claim::Claims;
use super::conditions::Conditions;
use super::error::{SpoolCodecError, SpoolError};
use super::key::{KeyId, MasterKey};
use super::metadata::Metadata;
use super::stream::read_metadata;
use crate::audit::{AuditLog, Event};
use crate::fsutil;

/// Sealed files waiting for the peer's acknowledgement.
pub const OUTGOING: &str = "outgoing";
/// Sealed files received and acknowledged, not yet in the inbox.
pub const INCOMING: &str = "incoming";
/// Files being written; anything here after a crash is garbage.
pub const TMP: &str = "tmp";
/// Files that failed authentication.
pub const QUARANTINE: &str = "quarantine";
/// One empty marker per delivered id, for dedupe.
pub const DELIVERED: &str = "delivered";
/// Extension of sealed files.
pub const EXT: &str = "pgs";

/// Where a spool file sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Area {
    Outgoing,
    Incoming,
    Quarantine,
}

impl Area {
    /// The folder name under the spool root.
    pub fn dir(self) -> &'static str {
        match self {
            Area::Outgoing => OUTGOING,
            Area::Incoming => INCOMING,
            Area::Quarantine => QUARANTINE,
        }
    }
}

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

/// Number, bytes and age of the oldest file of one direction.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DirDepth {
    pub files: u64,
    /// Plaintext bytes.
    pub bytes: u64,
    /// Age of the oldest file, measured from its `created` at the origin.
    pub oldest_age: Option<Duration>,
}

impl DirDepth {
    /// This depth as `/status` shows it, measured at `measured_at`: the
    /// oldest file's age becomes the time it has waited since.
    pub fn measured_at(&self, measured_at: time::OffsetDateTime) -> crate::admin::SpoolDepth {
        crate::admin::SpoolDepth {
            files: self.files,
            bytes: self.bytes,
            oldest_since: self.oldest_age.and_then(|age| {
                time::Duration::try_from(age)
                    .ok()
                    .map(|age| measured_at - age)
            }),
        }
    }
}

/// Spool depth: outbound = waiting for the peer, inbound = received, not
/// yet delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Depth {
    pub outbound: DirDepth,
    pub inbound: DirDepth,
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
    pub(crate) root: PathBuf,
    pub(crate) key: MasterKey,
    /// Previous keys, only for reading files sealed before a key change;
    /// replaced on reload ([`Store::set_old_keys`]).
    pub(crate) old_keys: RwLock<Vec<MasterKey>>,
    pub(crate) outbox: PathBuf,
    pub(crate) inbox: PathBuf,
    /// This instance's claim folder in the outbox ([`super::claim`]).
    pub(crate) claims: Claims,
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
    pub(crate) cache: Mutex<HashMap<PathBuf, Metadata>>,
    /// Files known to be sealed under a key we do not have (cleared when
    /// the keys change), so listings do not re-read them every time.
    pub(crate) waiting: Mutex<HashMap<PathBuf, KeyId>>,
    /// Ids sealed into `outgoing/` whose plaintext is not yet deleted: the
    /// forwarder must not send them yet (see the crash table).
    pub(crate) pending: Mutex<HashSet<String>>,
    /// Ids being received right now (one connection per id).
    pub(crate) receiving: Mutex<HashSet<String>>,
    /// Outbox files already refused (name, size, mtime), audited once.
    pub(crate) refused: Mutex<HashSet<(String, u64, i128)>>,
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
        for sub in [OUTGOING, INCOMING, TMP, QUARANTINE, DELIVERED] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(SpoolError::io("create folder", &dir))?;
        }
        fsutil::restrict_dir(root)?;
        for dir in [outbox, inbox] {
            fs::create_dir_all(dir).map_err(SpoolError::io("create folder", dir))?;
        }
        let claims = Claims::open(root, outbox)?;
        Ok(Store {
            claims,
            root: root.to_owned(),
            key,
            old_keys: RwLock::default(),
            outbox: outbox.to_owned(),
            inbox: inbox.to_owned(),
            max_bytes,
            settle: Duration::ZERO,
            stall: Duration::from_secs(crate::config::Spool::DEFAULT_STALL_SECS),
            max_age: Duration::from_secs(crate::config::Spool::DEFAULT_MAX_AGE_DAYS * 86_400),
            peer_skew_ms: std::sync::atomic::AtomicI64::new(0),
            conditions: Conditions::new(audit.clone()),
            audit,
            cache: Mutex::default(),
            waiting: Mutex::default(),
            pending: Mutex::default(),
            receiving: Mutex::default(),
            refused: Mutex::default(),
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
        store.set_old_keys(super::keys::load_old_keys(cfg)?);
        store.settle = cfg.settle;
        store.stall = cfg.stall;
        store.max_age = cfg.max_age;
        Ok(store)
    }

    /// The spool root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of a sealed file for `id` in `area`.
    pub fn path(&self, area: Area, id: &str) -> PathBuf {
        self.root.join(area.dir()).join(format!("{id}.{EXT}"))
    }

    /// A fresh, unique path in `tmp/`.
    pub(crate) fn tmp_path(&self, what: &str) -> PathBuf {
        let mut r = [0u8; 8];
        let _ = SystemRandom::new().fill(&mut r);
        self.root
            .join(TMP)
            .join(format!("{what}.{}.part", hex::encode(r)))
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
        if let Some(m) = lock(&self.cache).get(path) {
            return Ok(m.clone());
        }
        let file = File::open(path).map_err(SpoolError::io("open", path))?;
        let meta = read_metadata(io::BufReader::new(file), &self.key_for(path))
            .map_err(SpoolError::codec(path))?;
        lock(&self.cache).insert(path.to_owned(), meta.clone());
        Ok(meta)
    }

    /// Forgets the cached metadata of a file that was moved or deleted.
    pub(crate) fn forget(&self, path: &Path) {
        lock(&self.cache).remove(path);
        lock(&self.waiting).remove(path);
    }

    /// The sealed files of an area, oldest `created` first (unreadable ones
    /// first of all, so they get quarantined promptly).
    ///
    /// # Errors
    /// [`SpoolError::Io`] if the folder cannot be listed.
    pub fn entries(&self, area: Area) -> Result<Vec<Entry>, SpoolError> {
        let dir = self.root.join(area.dir());
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
            let known_waiting = lock(&self.waiting).get(&path).copied();
            let read = match known_waiting {
                Some(found) => Err(found),
                None => match self.metadata(&path) {
                    Ok(m) => Ok(m),
                    Err(SpoolError::Codec {
                        source: SpoolCodecError::WrongKey { found, .. },
                        ..
                    }) => {
                        lock(&self.waiting).insert(path.clone(), found);
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
        [OUTGOING, INCOMING, TMP]
            .iter()
            .filter_map(|sub| fs::read_dir(self.root.join(sub)).ok())
            .flat_map(|rd| rd.filter_map(Result::ok))
            .filter_map(|e| e.metadata().ok())
            .filter(fs::Metadata::is_file)
            .map(|m| m.len())
            .sum()
    }

    /// Files, plaintext bytes and oldest age per direction.
    pub fn depth(&self) -> Depth {
        let now = OffsetDateTime::now_utc();
        let one = |area| {
            let mut d = DirDepth::default();
            for e in self.entries(area).unwrap_or_default() {
                d.files += 1;
                if let Ok(m) = &e.meta {
                    d.bytes += m.size;
                    let age = (now - m.created).try_into().unwrap_or(Duration::ZERO);
                    d.oldest_age = Some(d.oldest_age.map_or(age, |o: Duration| o.max(age)));
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
        self.path(Area::Incoming, id).exists() || self.root.join(DELIVERED).join(id).exists()
    }

    /// Durably records `id` as delivered.
    ///
    /// # Errors
    /// [`SpoolError::Io`].
    pub fn mark_delivered(&self, id: &str) -> Result<(), SpoolError> {
        let dir = self.root.join(DELIVERED);
        let path = dir.join(id);
        File::create(&path)
            .and_then(|f| f.sync_all())
            .map_err(SpoolError::io("write delivery marker", &path))?;
        Ok(fsutil::sync_parent(&path)?)
    }
}

/// Milliseconds since the file's `created`.
pub(crate) fn age_ms(meta: &Metadata) -> u64 {
    let ms = (OffsetDateTime::now_utc() - meta.created).whole_milliseconds();
    u64::try_from(ms).unwrap_or(0)
}

pub use crate::fsutil::sync_dir;

/// Renames `from` to `to` and makes it durable ([`fsutil::durable_rename`]).
///
/// # Errors
/// [`SpoolError::Io`].
pub fn durable_rename(from: &Path, to: &Path) -> Result<(), SpoolError> {
    Ok(fsutil::durable_rename(from, to)?)
}

/// Deletes `path` and makes it durable ([`fsutil::durable_remove`]).
///
/// # Errors
/// [`SpoolError::Io`] (a file already gone is fine).
pub fn durable_remove(path: &Path) -> Result<(), SpoolError> {
    Ok(fsutil::durable_remove(path)?)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
#[path = "store_tests.rs"]
pub(crate) mod tests;
