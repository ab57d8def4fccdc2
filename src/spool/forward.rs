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

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};

use super::conditions::{Audited, Condition, Report, Subject};
use super::error::SpoolError;
use super::hold::{connection_backoff, Holds, BACKOFF_START};
use super::link::{FrameIo, LinkStats, Timeouts};
use super::send_file::{unexpected, Sent};
use super::store::{Area, Entry};
use super::wire::{Frame, Refusal, VERSION};
use super::{Spool, SAFETY_NET};
use crate::audit::Direction;
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
}

#[cfg(test)]
#[path = "forward_tests.rs"]
mod tests;
