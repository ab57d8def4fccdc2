//! Offline operator tools behind `pairgate spool ls|verify|rekey`.
//!
//! `rekey` re-encrypts each file of `outgoing/` and `incoming/` under a new
//! master key: stream-decrypt under the configured key and re-seal (same
//! metadata, so ids and ages are unchanged) into `tmp/`, fsync, rename over
//! the original, fsync the folder. A crash leaves every file whole under
//! one key or the other; files already under the new key are skipped, so
//! running it again finishes the job. Run it with the gateway stopped,
//! then point `spool.key` at the new key and start the gateway.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::error::SpoolError;
use super::intake::finish_file;
use super::key::{KeyId, MasterKey};
use super::link::{ChannelReader, ChannelWriter};
use super::seal::Sealer;
use super::store::{durable_rename, Area, Store};
use super::stream::{decrypt_stream, read_metadata, seal_stream};

/// One line of `spool ls`.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub state: Area,
    pub id: String,
    pub name: Option<String>,
    pub size: Option<u64>,
    pub created: Option<String>,
    pub age_s: Option<i64>,
    /// Sealed size on disk.
    pub bytes: u64,
    pub path: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Why a quarantined file was quarantined (from its record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A file that failed `verify` or `rekey`.
#[derive(Debug, Clone, Serialize)]
pub struct Bad {
    pub path: PathBuf,
    pub reason: String,
}

/// Every file in `outgoing/`, `incoming/` and `quarantine/` (metadata only).
///
/// # Errors
/// [`SpoolError::Io`] if a folder cannot be listed.
pub fn list(store: &Store) -> Result<Vec<Listed>, SpoolError> {
    let now = OffsetDateTime::now_utc();
    let mut out = Vec::new();
    for area in [Area::Outgoing, Area::Incoming, Area::Quarantine] {
        for e in store.entries(area)? {
            let meta = e.meta.as_ref().ok();
            let record = (area == Area::Quarantine)
                .then(|| super::quarantine::read_record(&e.path))
                .flatten();
            out.push(Listed {
                state: area,
                id: meta.map_or_else(|| e.id.clone(), |m| m.id.clone()),
                name: meta
                    .map(|m| m.name.clone())
                    .or_else(|| record.as_ref().and_then(|r| r.name.clone())),
                size: meta
                    .map(|m| m.size)
                    .or_else(|| record.as_ref().and_then(|r| r.size)),
                created: meta.and_then(|m| {
                    m.created
                        .format(&time::format_description::well_known::Rfc3339)
                        .ok()
                }),
                age_s: meta.map(|m| (now - m.created).whole_seconds()),
                bytes: e.bytes,
                path: e.path.clone(),
                problem: e.meta.as_ref().err().cloned(),
                reason: record.map(|r| r.reason),
            });
        }
    }
    Ok(out)
}

/// Authenticates every file of `outgoing/` and `incoming/` in full.
/// Returns the number of good files and the bad ones.
///
/// # Errors
/// [`SpoolError::Io`] if a folder cannot be listed.
pub fn verify(store: &Store) -> Result<(usize, Vec<Bad>), SpoolError> {
    let (mut good, mut bad) = (0, Vec::new());
    for area in [Area::Outgoing, Area::Incoming] {
        for e in store.entries(area)? {
            let checked = File::open(&e.path)
                .map_err(|err| err.to_string())
                .and_then(|f| {
                    decrypt_stream(
                        BufReader::new(f),
                        std::io::sink(),
                        &super::keys::key_for(store, &e.path),
                    )
                    .map_err(|err| err.to_string())
                });
            match checked {
                Ok(_) => good += 1,
                Err(reason) => bad.push(Bad {
                    path: e.path.clone(),
                    reason,
                }),
            }
        }
    }
    Ok((good, bad))
}

/// What `rekey` did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Rekeyed {
    pub rekeyed: usize,
    /// Already under the new key (an earlier, interrupted run).
    pub skipped: usize,
    pub failed: Vec<Bad>,
}

/// Re-encrypts every file of `outgoing/` and `incoming/` from the store's
/// key to `new_key`.
///
/// # Errors
/// [`SpoolError::Io`] if a folder cannot be listed; per-file failures are
/// in [`Rekeyed::failed`].
pub fn rekey(store: &Store, new_key: &MasterKey) -> Result<Rekeyed, SpoolError> {
    let mut report = Rekeyed::default();
    for area in [Area::Outgoing, Area::Incoming] {
        let dir = store.root().join(area.dir());
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(SpoolError::io("list", &dir))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == super::store::EXT))
            .collect();
        paths.sort();
        for path in paths {
            match key_id_of(&path) {
                Ok(id) if id == new_key.key_id() => report.skipped += 1,
                _ => match rekey_file(store, &path, new_key) {
                    Ok(()) => report.rekeyed += 1,
                    Err(e) => report.failed.push(Bad {
                        path: path.clone(),
                        reason: e.to_string(),
                    }),
                },
            }
            store.forget(&path);
        }
    }
    Ok(report)
}

fn key_id_of(path: &Path) -> std::io::Result<KeyId> {
    let mut head = [0u8; 16];
    File::open(path)?.read_exact(&mut head)?;
    let mut id = [0u8; 8];
    id.copy_from_slice(&head[8..16]);
    Ok(KeyId(id))
}

fn rekey_file(store: &Store, path: &Path, new_key: &MasterKey) -> Result<(), SpoolError> {
    let open = || File::open(path).map_err(SpoolError::io("open", path));
    let meta = read_metadata(BufReader::new(open()?), &super::keys::key_for(store, path))
        .map_err(SpoolError::codec(path))?;
    let sealer = Sealer::random(new_key, &meta).map_err(SpoolError::codec(path))?;
    let tmp = store.tmp_path(&format!("rekey-{}", meta.id));
    let out = File::create_new(&tmp).map_err(SpoolError::io("create", &tmp))?;
    let source = open()?;
    let (tx, rx) = mpsc::channel(8);
    let (opened, sealed) = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            decrypt_stream(
                BufReader::new(source),
                ChannelWriter { tx },
                &super::keys::key_for(store, path),
            )
        });
        let mut w = BufWriter::new(out);
        let sealed = seal_stream(sealer, ChannelReader::new(rx), &mut w)
            .map_err(SpoolError::codec(&tmp))
            .and_then(|_| finish_file(w, &tmp));
        let opened = reader
            .join()
            .map_err(|_| SpoolError::Task("rekey reader panicked".into()));
        (opened, sealed)
    });
    let result = match (opened, sealed) {
        (Err(e), _) | (Ok(Err(_)), Err(e)) => Err(e),
        (Ok(Err(e)), Ok(_)) => Err(SpoolError::codec(path)(e)),
        (Ok(Ok(_)), Err(e)) => Err(e),
        (Ok(Ok(_)), Ok(_)) => durable_rename(&tmp, path),
    };
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::spool::store::tests::{put, store};

    #[test]
    fn verify_names_bad_files_and_rekey_is_resumable() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let a = put(&s, Area::Outgoing, "a", &[1; 150_000]);
        put(&s, Area::Incoming, "b", b"bee");
        let bad = s.path(Area::Outgoing, "cut");
        let good_bytes = std::fs::read(s.path(Area::Outgoing, &a.id)).unwrap();
        std::fs::write(&bad, &good_bytes[..good_bytes.len() - 1]).unwrap();
        let (good, bads) = verify(&s).unwrap();
        assert_eq!(good, 2);
        assert_eq!(bads.len(), 1);
        assert_eq!(bads[0].path, bad);
        assert!(bads[0].reason.contains("truncated"), "{}", bads[0].reason);
        std::fs::remove_file(&bad).unwrap();
        assert_eq!(list(&s).unwrap().len(), 2);

        let new_key = MasterKey::from_bytes([9; 32]);
        let r = rekey(&s, &new_key).unwrap();
        assert_eq!((r.rekeyed, r.skipped, r.failed.len()), (2, 0, 0));
        let r = rekey(&s, &new_key).unwrap();
        assert_eq!((r.rekeyed, r.skipped), (0, 2));
        // Under the new key everything verifies and keeps its metadata.
        let s2 = Store::new(
            s.root(),
            new_key,
            &dir.path().join("outbox"),
            &dir.path().join("inbox"),
            None,
            None,
        )
        .unwrap();
        let (g, b) = verify(&s2).unwrap();
        assert_eq!((g, b.len()), (2, 0));
        let m = s2.metadata(&s2.path(Area::Outgoing, &a.id)).unwrap();
        assert_eq!(m, a);
    }
}
