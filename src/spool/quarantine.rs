//! `quarantine/`: files that failed authentication, set aside with a
//! record of why, and put back by `pairgate spool requeue` once the
//! operator has fixed the cause.
//!
//! Each quarantined `<id>.pgs` (or `<id>.<n>.pgs` when that name is taken)
//! has a record `<same stem>.json` beside it: the file's `id`, `name`,
//! `size` (when its metadata could be read), `reason`, the area it came
//! from and when. A file sealed under a key the gateway does not have is
//! *not* quarantined (it waits, see [`super::keys`]); quarantine is for
//! damage, and requeueing a damaged file only quarantines it again.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::error::SpoolError;
use super::metadata::Metadata;
use super::store::{
    age_ms, durable_remove, durable_rename, sync_dir, Area, Store, EXT, QUARANTINE,
};
use crate::audit::{Event, SpoolFile};

/// The record kept beside a quarantined file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    pub reason: String,
    /// `outgoing` or `incoming`.
    pub from: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// The record path of a quarantined file.
pub fn record_path(file: &Path) -> PathBuf {
    file.with_extension("json")
}

/// Reads the record of a quarantined file, if it has one.
pub fn read_record(file: &Path) -> Option<Record> {
    let text = fs::read(record_path(file)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Moves a bad file to `quarantine/` with its record, audits and counts
/// it. Never fails: if even the move fails the file is deleted so it
/// cannot block the queue (it failed authentication, so nothing of
/// value is lost).
pub fn quarantine(store: &Store, path: &Path, meta: Option<&Metadata>, reason: &str) {
    store.forget(path);
    let stem = path.file_stem().map_or_else(
        || "unnamed".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    let id = meta.map_or_else(|| stem.clone(), |m| m.id.clone());
    let from = path
        .parent()
        .and_then(Path::file_name)
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let qdir = store.dirs.root.join(QUARANTINE);
    let mut dest = qdir.join(format!("{stem}.{EXT}"));
    let mut n = 1;
    while dest.exists() {
        dest = qdir.join(format!("{stem}.{n}.{EXT}"));
        n += 1;
    }
    let record = Record {
        id: id.clone(),
        name: meta.map(|m| m.name.clone()),
        size: meta.map(|m| m.size),
        reason: reason.to_owned(),
        from,
        at: OffsetDateTime::now_utc(),
    };
    if let Ok(json) = serde_json::to_vec_pretty(&record) {
        let _ = fs::write(record_path(&dest), json);
    }
    if fs::rename(path, &dest).is_err() {
        let _ = fs::remove_file(path);
        let _ = fs::remove_file(record_path(&dest));
    }
    let _ = sync_dir(&qdir);
    if let Some(parent) = path.parent() {
        let _ = sync_dir(parent);
    }
    tracing::warn!(file = %path.display(), %reason, "spool file quarantined");
    store.counters.quarantined.fetch_add(1, Ordering::Relaxed);
    store.audit(Event::SpoolQuarantined(SpoolFile {
        id,
        name: meta.map(|m| m.name.clone()).unwrap_or_default(),
        size: meta.map_or(0, |m| m.size),
        peer_pool: None,
        age_ms: meta.map(age_ms),
        reason: Some(reason.to_owned()),
        path: Some(dest.display().to_string()),
    }));
}

/// One file `requeue` moved back (or could not).
#[derive(Debug, Clone, Serialize)]
pub struct Requeued {
    pub from: PathBuf,
    /// Where it went; `None` when it stayed (see `problem`).
    pub to: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The reason it had been quarantined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Moves every quarantined file back to the area it came from
/// (`outgoing/` to be sent again, `incoming/` to be delivered), so a file
/// quarantined for a cause the operator has fixed goes on. A running
/// gateway picks them up within its safety-net rescan (30 s). A file that
/// is still bad is quarantined again when it is next read.
///
/// # Errors
/// [`SpoolError::Io`] if `quarantine/` cannot be listed.
pub fn requeue(store: &Store) -> Result<Vec<Requeued>, SpoolError> {
    let qdir = store.root().join(QUARANTINE);
    let mut files: Vec<PathBuf> = fs::read_dir(&qdir)
        .map_err(SpoolError::io("list", &qdir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == EXT) && p.is_file())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        out.push(requeue_one(store, &file));
    }
    Ok(out)
}

fn requeue_one(store: &Store, file: &Path) -> Requeued {
    let record = read_record(file);
    let meta = store.metadata(file).ok();
    store.forget(file);
    let area = match record.as_ref().map(|r| r.from.as_str()) {
        Some("incoming") => Area::Incoming,
        Some("outgoing") => Area::Outgoing,
        // No record (quarantined by an older version): a file received
        // from the peer carries `from_pool`.
        _ if meta
            .as_ref()
            .is_some_and(|m| m.extra.contains_key("from_pool")) =>
        {
            Area::Incoming
        }
        _ => Area::Outgoing,
    };
    let id = meta
        .as_ref()
        .map(|m| m.id.clone())
        .or_else(|| record.as_ref().map(|r| r.id.clone()))
        .unwrap_or_else(|| {
            let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned());
            stem.unwrap_or_default()
                .split('.')
                .next()
                .unwrap_or_default()
                .to_owned()
        });
    let mut done = Requeued {
        from: file.to_owned(),
        to: None,
        name: meta
            .as_ref()
            .map(|m| m.name.clone())
            .or_else(|| record.as_ref().and_then(|r| r.name.clone())),
        reason: record.as_ref().map(|r| r.reason.clone()),
        problem: None,
    };
    let valid_id = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid_id {
        done.problem = Some(format!(
            "cannot tell the file's id (\"{id}\"); left in place"
        ));
        return done;
    }
    let dest = store.path(area, &id);
    if dest.exists() {
        done.problem = Some(format!("{} already exists; left in place", dest.display()));
        return done;
    }
    match durable_rename(file, &dest) {
        Ok(()) => {
            let _ = durable_remove(&record_path(file));
            done.to = Some(dest);
        }
        Err(e) => done.problem = Some(e.to_string()),
    }
    done
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::spool::key::MasterKey;
    use crate::spool::store::tests::{put, store};
    use crate::spool::store::OUTGOING;

    #[test]
    fn quarantine_keeps_a_record_and_requeue_puts_files_back_where_they_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let out = put(&s, Area::Outgoing, "a.bak", b"hello");
        let inc = put(&s, Area::Incoming, "b.bak", b"world");
        let out_path = s.path(Area::Outgoing, &out.id);
        quarantine(&s, &out_path, Some(&out), "tampered record 3");
        let inc_path = s.path(Area::Incoming, &inc.id);
        quarantine(&s, &inc_path, Some(&inc), "wrong key (old version)");
        // A garbage file with no readable metadata.
        let junk = s.dirs.root.join(OUTGOING).join("junk.pgs");
        fs::write(&junk, [b'x'; 80]).unwrap();
        quarantine(&s, &junk, None, "bad magic");
        assert_eq!(s.counters.quarantined.load(Ordering::Relaxed), 3);

        let q = s.dirs.root.join(QUARANTINE);
        let rec = read_record(&q.join(format!("{}.pgs", out.id))).unwrap();
        assert_eq!(rec.name.as_deref(), Some("a.bak"));
        assert_eq!(rec.reason, "tampered record 3");
        assert_eq!(rec.from, "outgoing");
        assert_eq!(s.entries(Area::Quarantine).unwrap().len(), 3);

        let done = requeue(&s).unwrap();
        assert_eq!(done.len(), 3);
        assert!(out_path.exists() && inc_path.exists());
        assert!(s.dirs.root.join(OUTGOING).join("junk.pgs").exists());
        assert!(done.iter().all(|d| d.problem.is_none()), "{done:?}");
        assert_eq!(fs::read_dir(&q).unwrap().count(), 0, "records removed too");
    }

    #[test]
    fn requeue_without_a_record_guesses_from_the_metadata_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let q = s.dirs.root.join(QUARANTINE);
        // As an older version left it: `<id>.pgs` without a record, and a
        // received file (it carries from_pool).
        let tmp = s.tmp_path("t");
        let (size, sha) = crate::spool::digest_stream(&b"a"[..]).unwrap();
        let mut meta = Metadata::new("r.bin", size, &sha).unwrap();
        meta.extra
            .insert("from_pool".into(), serde_json::Value::from("pool02"));
        let f = fs::File::create(&tmp).unwrap();
        crate::spool::encrypt_stream(&b"a"[..], f, &s.key, &meta).unwrap();
        fs::rename(&tmp, q.join(format!("{}.pgs", meta.id))).unwrap();
        let done = requeue(&s).unwrap();
        assert_eq!(done[0].to, Some(s.path(Area::Incoming, &meta.id)));

        // A copy is already back in place: left alone.
        let again = put(&s, Area::Outgoing, "x", b"x");
        fs::copy(
            s.path(Area::Outgoing, &again.id),
            q.join(format!("{}.pgs", again.id)),
        )
        .unwrap();
        let done = requeue(&s).unwrap();
        assert!(done[0].problem.as_ref().unwrap().contains("already exists"));
        // Under a key we do not have: requeued, and it then waits rather
        // than being quarantined again.
        let other = Store::new(
            &dir.path().join("other"),
            MasterKey::from_bytes([9; 32]),
            &dir.path().join("o2"),
            &dir.path().join("i2"),
            None,
            None,
        )
        .unwrap();
        let foreign = put(&other, Area::Outgoing, "f", b"f");
        fs::remove_file(q.join(format!("{}.pgs", again.id))).unwrap();
        fs::rename(
            other.path(Area::Outgoing, &foreign.id),
            q.join(format!("{}.pgs", foreign.id)),
        )
        .unwrap();
        let done = requeue(&s).unwrap();
        assert_eq!(done[0].to, Some(s.path(Area::Outgoing, &foreign.id)));
        let listed = s.entries(Area::Outgoing).unwrap();
        assert!(listed.iter().any(|e| e.waiting_key.is_some()));
    }
}
