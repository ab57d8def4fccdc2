//! Claiming an outbox file before it is sealed, so that two instances of a
//! site that share one outbox (two gateways per site, each with its own
//! `spool.dir`) never both take the same file.
//!
//! A claim is one `rename(2)` of `outbox/<name>` into this instance's claim
//! folder `outbox/.pairgate-claimed-<instance>/<name>`: a rename within one
//! filesystem is atomic, so exactly one instance wins; the other finds the
//! name gone and leaves it ([`super::intake::Intake::Elsewhere`]). The claim folder
//! is inside the outbox (same filesystem, whatever `spool.dir` is on) and
//! starts with a dot (every intake ignores it). `<instance>` is a random id
//! kept in `spool.dir/instance`, so two hosts with the same paths still get
//! different claim folders.
//!
//! A claimed file is sealed from its claimed path and deleted there once
//! its sealed copy is durable (the steps of [`super::batch`]). A file that
//! is not taken after all (it changed, it could not be read, the spool is
//! full) is renamed back under its name — never over a newer file of the
//! same name ([`OutboxClaims::release`]). After a crash, recovery deletes a
//! claimed file whose sealed copy verified and returns every other one to
//! the outbox ([`OutboxClaims::held`]). Claims of an instance that never comes
//! back stay in its folder; `pairgate spool` does not touch them — move
//! them back into the outbox by hand (`mv outbox/.pairgate-claimed-*/* outbox/`)
//! when that instance is gone for good.
//!
//! Not to be confused with `spool::claims`: that is the in-memory
//! coordination between the tasks of one instance; this is on disk, between
//! instances (`Store::outbox_claims`).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};

use super::error::SpoolError;
use super::store::sync_dir;

/// The claim folders' name prefix, inside the outbox.
pub const CLAIM_PREFIX: &str = ".pairgate-claimed-";
/// The file in `spool.dir` that holds this spool's instance id.
pub const INSTANCE_FILE: &str = "instance";

/// This instance's claim folder.
#[derive(Debug, Clone)]
pub struct OutboxClaims {
    outbox: PathBuf,
    dir: PathBuf,
}

impl OutboxClaims {
    /// The claim folder of the spool at `root` in `outbox` (both created if
    /// missing; the instance id too).
    ///
    /// # Errors
    /// [`SpoolError::Io`] when the id or the folder cannot be read or made.
    pub fn open(root: &Path, outbox: &Path) -> Result<OutboxClaims, SpoolError> {
        let id = instance_id(root)?;
        let dir = outbox.join(format!("{CLAIM_PREFIX}{id}"));
        fs::create_dir_all(&dir).map_err(SpoolError::io("create folder", &dir))?;
        Ok(OutboxClaims {
            outbox: outbox.to_owned(),
            dir,
        })
    }

    /// The claim folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `name` sits once claimed.
    pub fn path(&self, name: &OsStr) -> PathBuf {
        self.dir.join(name)
    }

    /// Claims `outbox/<name>`: `Some(claimed path)`, or `None` when the
    /// name is gone (another instance claimed it, or the producer removed it).
    ///
    /// # Errors
    /// Any rename error but "not found".
    pub fn claim(&self, name: &OsStr) -> io::Result<Option<PathBuf>> {
        let claimed = self.path(name);
        match fs::rename(self.outbox.join(name), &claimed) {
            Ok(()) => Ok(Some(claimed)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Returns a claimed file to the outbox under its name, unless a file of
    /// that name is there again (a newer version: never replaced). Returns
    /// whether it went back (nothing claimed under `name`: true).
    ///
    /// # Errors
    /// A rename error other than "exists" or "not found".
    pub fn release(&self, name: &OsStr) -> io::Result<bool> {
        let back = self.outbox.join(name);
        match rename_noreplace(&self.path(name), &back) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                tracing::warn!(
                    file = %back.display(),
                    claimed = %self.path(name).display(),
                    "a claimed outbox file changed and a new file of the same name arrived: the older version stays claimed until the next start"
                );
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The names held in the claim folder (after a crash: claimed, maybe
    /// sealed, not yet deleted).
    ///
    /// # Errors
    /// [`SpoolError::Io`] when the folder cannot be listed.
    pub fn held(&self) -> Result<Vec<OsString>, SpoolError> {
        let listed = fs::read_dir(&self.dir).map_err(SpoolError::io("list", &self.dir))?;
        Ok(listed
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name())
            .collect())
    }

    /// Returns every claimed file to the outbox (recovery, after the sealed
    /// copies were matched); the number returned.
    ///
    /// # Errors
    /// [`SpoolError::Io`] when the folder cannot be listed or a file moved.
    pub fn release_all(&self) -> Result<usize, SpoolError> {
        let mut n = 0;
        for name in self.held()? {
            if self
                .release(&name)
                .map_err(SpoolError::io("return to the outbox", &self.path(&name)))?
            {
                n += 1;
            }
        }
        if n > 0 {
            sync_dir(&self.outbox).map_err(SpoolError::io("sync", &self.outbox))?;
        }
        Ok(n)
    }
}

/// The instance id of the spool at `root`: read, or made once (16 hex).
fn instance_id(root: &Path) -> Result<String, SpoolError> {
    let path = root.join(INSTANCE_FILE);
    match fs::read_to_string(&path) {
        Ok(text) if is_id(text.trim()) => return Ok(text.trim().to_owned()),
        Ok(_) => {
            return Err(SpoolError::io("read", &path)(io::Error::new(
                io::ErrorKind::InvalidData,
                "not an instance id (16 hex digits); delete the file and start again",
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(SpoolError::io("read", &path)(e)),
    }
    let mut bytes = [0u8; 8];
    SystemRandom::new().fill(&mut bytes).map_err(|_| {
        SpoolError::io("create", &path)(io::Error::other("no random numbers from the system"))
    })?;
    let id = hex::encode(bytes);
    let tmp = root.join(format!(".{INSTANCE_FILE}.tmp"));
    fs::write(&tmp, format!("{id}\n"))
        .and_then(|()| fs::File::open(&tmp)?.sync_all())
        .and_then(|()| fs::rename(&tmp, &path))
        .and_then(|()| sync_dir(root))
        .map_err(SpoolError::io("create", &path))?;
    Ok(id)
}

fn is_id(text: &str) -> bool {
    text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `rename(2)` that never replaces an existing destination.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE).map_err(io::Error::from)
    }
    #[cfg(not(target_os = "linux"))]
    {
        // A hard link fails on an existing name; then the claim is dropped.
        fs::hard_link(from, to)?;
        fs::remove_file(from)
    }
}

#[cfg(test)]
#[path = "outbox_claim_tests.rs"]
mod tests;
