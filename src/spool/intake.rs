//! Outbox intake: plaintext in the outbox → sealed, durable file in
//! `outgoing/` → plaintext deleted.
//!
//! Order (see the crash table in [`crate::spool`]): seal into `tmp/`, fsync,
//! mark the id *pending* (the forwarder skips it), rename into `outgoing/`,
//! fsync the folder, delete the plaintext, fsync the outbox, unmark. The
//! sealed file's metadata remembers the source's inode, mtime and size, so
//! recovery can tell "the plaintext of this sealed file" from a new file
//! dropped under the same name.

use std::fs::{self, File};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::Ordering;

use serde_json::json;

use super::error::SpoolError;
use super::metadata::Metadata;
use super::store::{age_ms, durable_remove, durable_rename, lock, Area, Store};
use super::stream::{digest_stream, encrypt_stream};
use super::CHUNK_LEN;
use crate::audit::{Event, SpoolFile};

/// What happened to one outbox file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intake {
    /// Sealed into `outgoing/` with this id; the plaintext is gone.
    Spooled(String),
    /// Left in the outbox: the spool would exceed `max_bytes`.
    Full,
    /// Left in the outbox: not spoolable (bad name), or it changed while
    /// being read (retried next scan).
    Skipped,
}

/// The identity of a source file, stored in the sealed file's metadata.
pub(crate) fn source_tag(stat: &fs::Metadata) -> serde_json::Value {
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(stat);
    #[cfg(not(unix))]
    let ino = 0u64;
    json!({ "ino": ino, "mtime_ns": mtime_ns(stat).to_string(), "size": stat.len() })
}

fn mtime_ns(stat: &fs::Metadata) -> i128 {
    stat.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(0))
}

/// Sealed size of a plaintext of `size` bytes (upper bound).
pub fn sealed_estimate(size: u64) -> u64 {
    let chunks = size / CHUNK_LEN as u64 + 1;
    size + chunks * 20 + 70 + 4096
}

impl Store {
    /// Takes every complete file in the outbox into the spool, oldest first.
    /// Names starting with `.` and anything but regular files are ignored.
    ///
    /// # Errors
    /// [`SpoolError::Io`] if the outbox cannot be listed; per-file failures
    /// are logged and the file is retried next scan.
    pub fn scan_outbox(&self) -> Result<Vec<Intake>, SpoolError> {
        let mut files = Vec::new();
        let rd = fs::read_dir(&self.outbox).map_err(SpoolError::io("list", &self.outbox))?;
        for item in rd.filter_map(Result::ok) {
            let name = item.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            match fs::symlink_metadata(item.path()) {
                Ok(stat) if stat.is_file() => files.push((mtime_ns(&stat), item.path())),
                _ => continue,
            }
        }
        files.sort();
        let mut out = Vec::new();
        for (_, path) in files {
            match self.intake_file(&path) {
                Ok(r) => out.push(r),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "outbox intake failed; will retry");
                    out.push(Intake::Skipped);
                }
            }
        }
        Ok(out)
    }

    /// Seals one outbox file into `outgoing/` and deletes the plaintext.
    ///
    /// # Errors
    /// [`SpoolError::Io`] / [`SpoolError::Codec`]; the plaintext then stays.
    pub fn intake_file(&self, path: &Path) -> Result<Intake, SpoolError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut file = File::open(path).map_err(SpoolError::io("open", path))?;
        let stat = file.metadata().map_err(SpoolError::io("stat", path))?;
        let refusal_key = (name.clone(), stat.len(), mtime_ns(&stat));
        if let Some(max) = self.max_bytes {
            if self.used_bytes() + sealed_estimate(stat.len()) > max {
                self.refuse(refusal_key, format!("spool full: max_bytes = {max}"));
                return Ok(Intake::Full);
            }
        }
        let (size, sha256) =
            digest_stream(io::BufReader::new(&mut file)).map_err(SpoolError::codec(path))?;
        let mut meta = match Metadata::new(&name, size, &sha256) {
            Ok(m) => m,
            Err(e) => {
                self.refuse(refusal_key, e.to_string());
                return Ok(Intake::Skipped);
            }
        };
        meta.extra.insert("source".into(), source_tag(&stat));
        file.seek(SeekFrom::Start(0))
            .map_err(SpoolError::io("rewind", path))?;

        let tmp = self.tmp_path(&meta.id);
        let sealed = (|| {
            let out = File::create_new(&tmp).map_err(SpoolError::io("create", &tmp))?;
            let mut w = BufWriter::with_capacity(256 * 1024, out);
            encrypt_stream(io::BufReader::new(&mut file), &mut w, &self.key, &meta)
                .map_err(SpoolError::codec(path))?;
            let out = w
                .into_inner()
                .map_err(|e| SpoolError::io("write", &tmp)(e.into_error()))?;
            out.sync_all().map_err(SpoolError::io("fsync", &tmp))
        })();
        if let Err(e) = sealed {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        lock(&self.pending).insert(meta.id.clone());
        let done = self.commit_intake(&tmp, path, &meta);
        lock(&self.pending).remove(&meta.id);
        done?;
        self.counters.ingested.fetch_add(1, Ordering::Relaxed);
        tracing::info!(id = %meta.id, size = meta.size, "spooled");
        self.audit(Event::SpoolIn(SpoolFile {
            id: meta.id.clone(),
            name: meta.name.clone(),
            size: meta.size,
            peer_pool: None,
            age_ms: Some(age_ms(&meta)),
            reason: None,
            path: None,
        }));
        Ok(Intake::Spooled(meta.id))
    }

    fn commit_intake(&self, tmp: &Path, source: &Path, meta: &Metadata) -> Result<(), SpoolError> {
        let dest = self.path(Area::Outgoing, &meta.id);
        if let Err(e) = durable_rename(tmp, &dest) {
            let _ = fs::remove_file(tmp);
            return Err(e);
        }
        durable_remove(source)
    }

    fn refuse(&self, key: (String, u64, i128), reason: String) {
        if !lock(&self.refused).insert(key.clone()) {
            return;
        }
        tracing::warn!(file = %key.0, %reason, "outbox file refused");
        self.counters.refused.fetch_add(1, Ordering::Relaxed);
        self.audit(Event::SpoolRefused(SpoolFile {
            id: String::new(),
            name: key.0,
            size: key.1,
            peer_pool: None,
            age_ms: None,
            reason: Some(reason),
            path: None,
        }));
    }
}

/// Flushes a writer (helper shared by tmp writers).
pub(crate) fn finish_file(w: BufWriter<File>, path: &Path) -> Result<File, SpoolError> {
    let mut w = w;
    w.flush().map_err(SpoolError::io("write", path))?;
    let f = w
        .into_inner()
        .map_err(|e| SpoolError::io("write", path)(e.into_error()))?;
    f.sync_all().map_err(SpoolError::io("fsync", path))?;
    Ok(f)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::spool::store::tests::store;
    use crate::spool::stream::decrypt_stream;

    #[test]
    fn intake_seals_deletes_plaintext_and_ignores_dotfiles_and_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(s.outbox.join("backup.bak"), &data).unwrap();
        fs::write(s.outbox.join(".inprogress"), b"partial").unwrap();
        fs::create_dir(s.outbox.join("sub")).unwrap();
        let r = s.scan_outbox().unwrap();
        assert_eq!(r.len(), 1);
        let Intake::Spooled(id) = &r[0] else {
            panic!("{r:?}")
        };
        assert!(!s.outbox.join("backup.bak").exists());
        assert!(s.outbox.join(".inprogress").exists());
        let sealed = fs::read(s.path(Area::Outgoing, id)).unwrap();
        assert!(!sealed.windows(32).any(|w| w == &data[1000..1032]));
        let mut out = Vec::new();
        let meta = decrypt_stream(&sealed[..], &mut out, &s.key).unwrap();
        assert!(out == data);
        assert_eq!(meta.name, "backup.bak");
        assert!(meta.extra.contains_key("source"));
        assert_eq!(fs::read_dir(s.root.join("tmp")).unwrap().count(), 0);
        assert!(lock(&s.pending).is_empty());
    }

    #[test]
    fn cap_refuses_once_and_keeps_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store(dir.path());
        s.max_bytes = Some(10_000);
        fs::write(s.outbox.join("big"), vec![0u8; 20_000]).unwrap();
        fs::write(s.outbox.join("small"), b"ok").unwrap();
        let r = s.scan_outbox().unwrap();
        assert!(r.contains(&Intake::Full));
        assert_eq!(
            r.iter().filter(|x| matches!(x, Intake::Spooled(_))).count(),
            1
        );
        s.scan_outbox().unwrap();
        assert!(s.outbox.join("big").exists());
        assert_eq!(s.counters.refused.load(Ordering::Relaxed), 1);
    }
}
