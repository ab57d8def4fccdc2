//! The forwarder: while `outgoing/` holds files, connect to the peer over
//! mTLS (`pg1-spool`), send them oldest first on one connection, delete
//! each only after its ACK. Retries with capped exponential backoff and
//! jitter while the peer is unreachable.
//!
//! No head-of-line blocking: a file the peer refuses is set aside with its
//! own backoff ([`Holds`]) and the connection goes on with the next file.
//! The refusal's reason ([`Refusal`]) tells "later" (`full`, `busy`,
//! `failed`: retried from 5 s doubling to 5 min; `busy` from 1 s) from
//! "never" (`too_large`, `bad_name`: reported once as a condition; offered
//! again — one OFFER, no data — after 30 s doubling to 30 min, in case the
//! peer's limit was raised).
//!
//! A link that makes no progress for `stall_secs` is torn down
//! ([`SpoolError::Stalled`]), reported (link down in `/status`,
//! `spool_condition` `link_stalled`, `pairgate_spool_link_stalls_total`)
//! and the transfer starts again on a fresh connection.

use std::fs::File;
use std::io::BufReader;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::conditions::{Audited, Condition, Report, Subject};
use super::error::SpoolError;
use super::hold::{connection_backoff, Holds, BACKOFF_START};
use super::link::{ChannelWriter, FrameIo, LinkStats, Timeouts};
use super::names::RAW_NAME_FIELD;
use super::store::{age_ms, durable_remove, Area, Entry};
use super::stream::decrypt_stream;
use super::wire::{Frame, Refusal, VERSION};
use super::{Spool, SAFETY_NET};
use crate::audit::{Direction, Event, SpoolFile};
use crate::names::ServiceName;
use crate::peer::{Peer, Track};
use crate::policy::Decision;
use crate::tls::{self};

/// A file the peer refused for now: first retry, and the longest wait.
pub const REFUSED_RETRY: Duration = Duration::from_secs(5);
pub const REFUSED_RETRY_CAP: Duration = Duration::from_secs(300);
/// A file the peer says it can never take is offered again after this,
/// doubling up to [`NEVER_RETRY_CAP`] (its limit may have been raised).
pub const NEVER_RETRY: Duration = Duration::from_secs(30);
pub const NEVER_RETRY_CAP: Duration = Duration::from_secs(1800);
/// The condition key of a stalled link.
const LINK: &str = "link";

/// How one offered file ended, short of a broken connection.
enum Sent {
    /// The peer has it; ours is deleted.
    Done,
    /// The peer refused it (it said why); set aside.
    Refused { reason: Refusal, message: String },
    /// We could not read our own copy (I/O): set aside, try again later.
    Unreadable(String),
    /// Ours failed authentication: quarantined.
    Quarantined,
}

impl Spool {
    /// Runs the forwarder until the gateway stops.
    pub async fn forward_loop(self: Arc<Self>, peer: Arc<Peer>) {
        let stop = self.stop.clone();
        let mut backoff = connection_backoff();
        let mut holds = Holds::default();
        let mut failing = false;
        let mut unlisted = false;
        loop {
            let files = match self.sendable().await {
                Ok(files) => {
                    if unlisted {
                        tracing::info!("the spool's outgoing folder can be listed again");
                        unlisted = false;
                    }
                    files
                }
                Err(e) => {
                    // Logged once until it clears; looked at again on the
                    // safety net or when intake spools a file.
                    if !unlisted {
                        tracing::error!(error = %e, "cannot list the files to send; nothing is sent until this is fixed");
                        unlisted = true;
                    }
                    tokio::select! {
                        () = self.wake_forward.notified() => {}
                        () = tokio::time::sleep(SAFETY_NET) => {}
                        () = stop.cancelled() => return,
                    }
                    continue;
                }
            };
            let now = Instant::now();
            let present: std::collections::HashSet<&str> =
                files.iter().map(|e| e.id.as_str()).collect();
            holds.retain(|id: &String| present.contains(id.as_str()));
            let due: Vec<Entry> = files
                .into_iter()
                .filter(|e| !holds.is_held(&e.id, now))
                .collect();
            if due.is_empty() {
                let next = holds.next_due().map_or(now + SAFETY_NET, |t| {
                    t.max(now + BACKOFF_START).min(now + SAFETY_NET)
                });
                tokio::select! {
                    () = self.wake_forward.notified() => {}
                    () = tokio::time::sleep_until(next.into()) => {}
                    () = stop.cancelled() => return,
                }
                continue;
            }
            match self.send_batch(&peer, due, &mut holds).await {
                Ok(()) => {
                    if failing {
                        tracing::info!(peer = %peer.peer_connect, "spool forwarding works again");
                        failing = false;
                    }
                    backoff.reset();
                }
                Err(e) => {
                    if let SpoolError::Stalled { .. } = &e {
                        self.stalled(&peer, &e);
                    }
                    let delay = backoff.next_jittered();
                    // Logged once per outage; the link state is audited
                    // by the heartbeat and shown in /status.
                    if failing {
                        tracing::debug!(error = %e, retry_in_ms = delay.as_millis() as u64, "spool forwarding failed again");
                    } else {
                        tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "spool forwarding failed; retrying with backoff");
                        failing = true;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = stop.cancelled() => return,
                    }
                }
            }
        }
    }

    /// Outgoing files ready to send: damaged ones are quarantined, those
    /// waiting for a key or still pending intake are left out.
    ///
    /// # Errors
    /// [`SpoolError::Io`] when `outgoing/` cannot be listed,
    /// [`SpoolError::Task`] if the listing task died.
    async fn sendable(&self) -> Result<Vec<Entry>, SpoolError> {
        let store = self.store.clone();
        let listed = tokio::task::spawn_blocking(move || {
            let entries = store.entries(Area::Outgoing)?;
            super::keys::note_waiting(&store, Area::Outgoing, &entries);
            let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
            for c in [
                Condition::TooLarge,
                Condition::BadName,
                Condition::PeerRefused,
            ] {
                store.conditions.clear_others(c, &ids);
            }
            let pending = store.claims.pending_ids();
            let mut ok = Vec::new();
            for e in entries {
                match &e.meta {
                    Err(_) if e.waiting_key.is_some() => {}
                    Err(reason) => super::quarantine::quarantine(&store, &e.path, None, reason),
                    Ok(_) if pending.contains(&e.id) => {}
                    Ok(_) => ok.push(e),
                }
            }
            Ok(ok)
        })
        .await;
        listed.map_err(|e| SpoolError::Task(e.to_string()))?
    }

    /// One connection: handshake, then each file in turn; refused files
    /// are set aside in `holds` and the others go on.
    async fn send_batch(
        &self,
        peer: &Peer,
        files: Vec<Entry>,
        holds: &mut Holds<String>,
    ) -> Result<(), SpoolError> {
        let addr = tokio::net::lookup_host(&peer.peer_connect)
            .await
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        let mut track = Track::new(peer, Direction::Outbound, addr);
        track.service = Some(ServiceName::known(tls::SPOOL_SERVICE));
        let stream = match peer.dial(tls::ALPN_SPOOL.to_vec(), &mut track).await {
            Ok(s) => s,
            Err(failed) => {
                track.decide(
                    peer,
                    Decision::Deny(failed.reason),
                    Some(failed.detail.clone()),
                );
                return Err(SpoolError::Link {
                    peer: peer.peer_connect.clone(),
                    detail: failed.detail,
                });
            }
        };
        track.decide(peer, Decision::Allow, None);
        let timeouts = Timeouts {
            idle: peer.limits().idle_timeout,
            stall: self.store.stall,
        };
        let mut io = FrameIo::new(stream, timeouts, &peer.peer_pool);
        let result = self.send_files(&mut io, peer, files, holds).await;
        if !matches!(result, Err(SpoolError::Stalled { .. })) {
            // A frozen link would hold the close until it times out too.
            io.close().await;
        }
        let LinkStats {
            bytes_in,
            bytes_out,
        } = io.stats;
        track.close(
            peer,
            bytes_in,
            bytes_out,
            result.as_ref().err().map(ToString::to_string),
        );
        result
    }

    async fn send_files<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut FrameIo<S>,
        peer: &Peer,
        files: Vec<Entry>,
        holds: &mut Holds<String>,
    ) -> Result<(), SpoolError> {
        io.send(&Frame::Hello { version: VERSION }, true).await?;
        match io.read_frame().await? {
            Some(Frame::Hello { .. }) => {}
            other => return Err(unexpected(peer, "HELLO", other.as_ref())),
        }
        for entry in files {
            if peer.shutdown.is_stopping() {
                break;
            }
            let Ok(meta) = &entry.meta else { continue };
            let now = Instant::now();
            match self.send_one(io, peer, &entry).await? {
                Sent::Done => {
                    // A transfer completed: the link works again.
                    self.store.conditions.clear(Condition::LinkStalled, LINK);
                    holds.release(&entry.id);
                    for c in [
                        Condition::TooLarge,
                        Condition::BadName,
                        Condition::PeerRefused,
                    ] {
                        self.store.conditions.clear(c, &entry.id);
                    }
                }
                Sent::Quarantined => {}
                Sent::Unreadable(detail) => {
                    let (first, _) = holds.hold(&entry.id, REFUSED_RETRY, REFUSED_RETRY_CAP, now);
                    if first {
                        tracing::warn!(id = %entry.id, %detail, "cannot read a spooled file; set aside, will retry");
                    }
                }
                Sent::Refused {
                    reason: Refusal::Replayed,
                    message,
                } => {
                    // The peer judges it a replay (older than its window):
                    // never deliverable; kept aside for an operator to look at.
                    tracing::warn!(id = %entry.id, %message, "the peer refused a spool file as a replay; quarantined");
                    holds.release(&entry.id);
                    let path = self.store.path(Area::Outgoing, &entry.id);
                    super::quarantine::quarantine(
                        &self.store,
                        &path,
                        Some(meta),
                        &format!("replayed: {message}"),
                    );
                }
                Sent::Refused { reason, message } => {
                    let (first, cap) = match reason {
                        r if r.is_permanent() => (NEVER_RETRY, NEVER_RETRY_CAP),
                        Refusal::Busy => (Duration::from_secs(1), REFUSED_RETRY_CAP),
                        _ => (REFUSED_RETRY, REFUSED_RETRY_CAP),
                    };
                    let (new, _) = holds.hold(&entry.id, first, cap, now);
                    if new {
                        self.store
                            .counters
                            .refused_by_peer
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    self.report_refusal(peer, meta, reason, &message);
                }
            }
        }
        Ok(())
    }

    /// Reports a file the peer refused: once, as a condition (busy is
    /// transient and only logged at debug level).
    fn report_refusal(&self, peer: &Peer, meta: &super::Metadata, reason: Refusal, message: &str) {
        let condition = match reason {
            Refusal::TooLarge => Condition::TooLarge,
            Refusal::BadName => Condition::BadName,
            Refusal::Busy => {
                tracing::debug!(id = %meta.id, %message, "peer is busy with this file; retrying soon");
                return;
            }
            _ => Condition::PeerRefused,
        };
        let what = if reason.is_permanent() {
            "it cannot be delivered as things are: the other files go on; fix the cause at the \
             peer (e.g. raise its max_bytes) or remove the file — it is offered again now and \
             then (30 s doubling to 30 min)"
        } else {
            "it is set aside and retried with backoff while the other files go on"
        };
        self.store.conditions.raise(Report {
            condition,
            key: meta.id.clone(),
            subject: Subject {
                name: Some(meta.name.clone()),
                id: Some(meta.id.clone()),
                size: Some(meta.size),
                key_id: None,
            },
            files: 1,
            detail: format!(
                "{} refused it ({}): {message}; {what}",
                peer.peer_pool,
                reason.as_str()
            ),
            audited: Audited::Condition,
        });
    }

    /// The link stalled: count it, show the link down, report it once.
    fn stalled(&self, peer: &Peer, e: &SpoolError) {
        self.store.counters.stalls.fetch_add(1, Ordering::Relaxed);
        peer.link.down(e.to_string());
        self.store.conditions.raise(Report {
            condition: Condition::LinkStalled,
            key: LINK.to_owned(),
            subject: Subject::default(),
            files: 0,
            detail: e.to_string(),
            audited: Audited::Condition,
        });
    }

    /// Offers one file and streams it; deletes it after ACK or ALREADY.
    async fn send_one<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut FrameIo<S>,
        peer: &Peer,
        entry: &Entry,
    ) -> Result<Sent, SpoolError> {
        let Ok(meta) = &entry.meta else {
            return Ok(Sent::Quarantined);
        };
        let mut offer = meta.clone();
        offer.extra.retain(|k, _| k == RAW_NAME_FIELD);
        io.send(&Frame::Offer(offer), true).await?;
        match io.read_frame().await? {
            Some(Frame::Accept { offset: 0 }) => {}
            Some(Frame::Already { id }) if id == meta.id => {
                self.sent(peer, entry, Taken::AlreadyThere).await?;
                return Ok(Sent::Done);
            }
            Some(Frame::Error { reason, message }) => return Ok(Sent::Refused { reason, message }),
            other => return Err(unexpected(peer, "ACCEPT or ALREADY", other.as_ref())),
        }
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
        let (path, key_store) = (entry.path.clone(), self.store.clone());
        let opener = tokio::task::spawn_blocking(move || {
            let file = File::open(&path).map_err(SpoolError::io("open", &path))?;
            decrypt_stream(
                BufReader::with_capacity(256 * 1024, file),
                ChannelWriter { tx },
                &super::keys::key_for(&key_store, &path),
            )
            .map_err(SpoolError::codec(&path))
        });
        let mut link_err = None;
        while let Some(chunk) = rx.recv().await {
            if let Err(e) = io.send(&Frame::Data(chunk), false).await {
                link_err = Some(e);
                break;
            }
        }
        drop(rx);
        let opened = opener
            .await
            .map_err(|e| SpoolError::Task(e.to_string()))
            .and_then(|r| r);
        if let Some(e) = link_err {
            return Err(e);
        }
        let aborted = |message: &str| Frame::Error {
            reason: Refusal::Aborted,
            message: message.to_owned(),
        };
        match opened {
            Ok(_) => {}
            Err(
                e @ (SpoolError::Io { .. }
                | SpoolError::Codec {
                    source: super::error::SpoolCodecError::Io { .. },
                    ..
                }),
            ) => {
                io.send(&aborted("sender could not read the file"), true)
                    .await?;
                return Ok(Sent::Unreadable(e.to_string()));
            }
            Err(e) => {
                // Tampered or truncated: tell the peer to drop what it got,
                // quarantine ours, go on with the next file.
                io.send(&aborted("sender aborted the file"), true).await?;
                let (store, path, m, reason) = (
                    self.store.clone(),
                    entry.path.clone(),
                    meta.clone(),
                    e.to_string(),
                );
                let _ = tokio::task::spawn_blocking(move || {
                    super::quarantine::quarantine(&store, &path, Some(&m), &reason)
                })
                .await;
                return Ok(Sent::Quarantined);
            }
        }
        io.send(&Frame::End, true).await?;
        match io.read_frame().await? {
            Some(Frame::Ack { id }) if id == meta.id => {
                self.sent(peer, entry, Taken::Acked).await?;
                Ok(Sent::Done)
            }
            Some(Frame::Error { reason, message }) => Ok(Sent::Refused { reason, message }),
            other => Err(unexpected(peer, "ACK", other.as_ref())),
        }
    }

    /// The peer holds the file: delete ours durably, audit, count.
    async fn sent(&self, peer: &Peer, entry: &Entry, how: Taken) -> Result<(), SpoolError> {
        let Ok(meta) = entry.meta.clone() else {
            return Ok(());
        };
        let (store, path) = (self.store.clone(), entry.path.clone());
        tokio::task::spawn_blocking(move || {
            store.forget(&path);
            durable_remove(&path)
        })
        .await
        .map_err(|e| SpoolError::Task(e.to_string()))??;
        self.store.counters.sent.fetch_add(1, Ordering::Relaxed);
        // Room was freed: outbox files refused for a full spool may fit now.
        self.wake_intake.notify_one();
        tracing::info!(id = %meta.id, size = meta.size, how = how.as_str(), "sent");
        peer.audit.record(Event::SpoolSent(SpoolFile {
            id: meta.id.clone(),
            name: meta.name.clone(),
            size: meta.size,
            peer_pool: Some(peer.peer_pool.to_string()),
            age_ms: Some(age_ms(&meta)),
            reason: (how == Taken::AlreadyThere).then(|| "peer already had it".to_owned()),
            path: None,
        }));
        Ok(())
    }
}

/// How the peer came to hold a file we sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Taken {
    /// It stored the file and acknowledged it (`ACK`).
    Acked,
    /// It had the file already (`ALREADY`, e.g. after a lost `ACK`).
    AlreadyThere,
}

impl Taken {
    /// The `how` of the `sent` log line.
    fn as_str(self) -> &'static str {
        match self {
            Taken::Acked => "ack",
            Taken::AlreadyThere => "already",
        }
    }
}

fn unexpected(peer: &Peer, want: &str, got: Option<&Frame>) -> SpoolError {
    SpoolError::Link {
        peer: peer.peer_connect.clone(),
        detail: format!(
            "expected {want}, got {}",
            got.map_or("end of stream", Frame::name)
        ),
    }
}

#[cfg(test)]
#[path = "forward_tests.rs"]
mod tests;
