//! What intake reports about an outbox file: spooled (counted, logged,
//! audited `spool_in`, its refusals cleared) or refused (a `/status`
//! condition, logged and audited `spool_refused` once per version). Kept
//! apart from the taking ([`super::intake`]) so that each reads alone.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::sync::atomic::Ordering;

use super::conditions::{Audited, Condition, Report, Subject};
use super::metadata::Metadata;
use super::settle::Stamp;
use super::store::{age_ms, Store};
use crate::audit::{Event, SpoolFile};

/// Leaves an outbox file that would overflow `max_bytes` in the outbox.
pub(crate) fn refuse_full(store: &Store, os_name: &OsString, stat: &fs::Metadata, max: u64) {
    refuse(
        store,
        os_name,
        stat,
        format!("spool full: max_bytes = {max}"),
        Condition::SpoolFull,
    );
}

/// A file is in `outgoing/` and its plaintext gone: count, log, clear
/// its refusals, audit `spool_in`.
pub(crate) fn spooled(store: &Store, os_name: &OsStr, meta: &Metadata) {
    store.counters.ingested.fetch_add(1, Ordering::Relaxed);
    tracing::info!(id = %meta.id, size = meta.size, "spooled");
    let key = os_name.to_string_lossy();
    if store.conditions.clear(Condition::OutboxRefused, &key)
        | store.conditions.clear(Condition::SpoolFull, &key)
    {
        store.claims.forget_refused(&key);
    }
    store.audit(Event::SpoolIn(SpoolFile {
        id: meta.id.clone(),
        name: meta.name.clone(),
        size: meta.size,
        peer_pool: None,
        age_ms: Some(age_ms(meta)),
        reason: None,
        path: None,
    }));
}

/// Leaves an outbox file where it is: logged and audited
/// (`spool_refused`) once per name, size and mtime, shown in `/status`.
pub(crate) fn refuse(
    store: &Store,
    name: &OsString,
    stat: &fs::Metadata,
    reason: String,
    condition: Condition,
) {
    let shown = name.to_string_lossy().into_owned();
    let stamp = Stamp::of(stat);
    store.conditions.raise(Report {
        condition,
        key: shown.clone(),
        subject: Subject {
            name: Some(shown.clone()),
            size: Some(stamp.size),
            ..Subject::default()
        },
        files: 1,
        detail: reason.clone(),
        audited: Audited::ByCaller,
    });
    if !store
        .claims
        .note_refused(shown.clone(), stamp.size, stamp.mtime_ns)
    {
        return;
    }
    tracing::warn!(file = %shown, %reason, "outbox file refused");
    store.counters.refused.fetch_add(1, Ordering::Relaxed);
    store.audit(Event::SpoolRefused(SpoolFile {
        id: String::new(),
        name: shown,
        size: stamp.size,
        peer_pool: None,
        age_ms: None,
        reason: Some(reason),
        path: None,
    }));
}
