//! The filesystem layer of the spool: its folders under `spool.dir` (plus
//! the operator's outbox and inbox), the paths of sealed files, and the
//! durable operations on them (rename and remove made durable by a folder
//! fsync, delivery markers). Nothing here knows about keys, metadata or
//! other tasks; `store` builds on it.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};

use super::error::SpoolError;
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

/// The folders of one spool.
#[derive(Debug)]
pub struct Dirs {
    pub(crate) root: PathBuf,
    pub(crate) outbox: PathBuf,
    pub(crate) inbox: PathBuf,
}

impl Dirs {
    /// Creates (if needed) the spool's folders under `root`, private to
    /// the gateway, and the outbox and inbox.
    ///
    /// # Errors
    /// [`SpoolError::Io`] if a folder cannot be created.
    pub fn create(root: &Path, outbox: &Path, inbox: &Path) -> Result<Dirs, SpoolError> {
        for sub in [OUTGOING, INCOMING, TMP, QUARANTINE, DELIVERED] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(SpoolError::io("create folder", &dir))?;
        }
        fsutil::restrict_dir(root)?;
        for dir in [outbox, inbox] {
            fs::create_dir_all(dir).map_err(SpoolError::io("create folder", dir))?;
        }
        Ok(Dirs {
            root: root.to_owned(),
            outbox: outbox.to_owned(),
            inbox: inbox.to_owned(),
        })
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
