//! The receiving side of a `pg1-spool` connection.
//!
//! For each OFFER: ALREADY if the id is in `incoming/` or marked delivered
//! (dedupe); ERROR with a reason if it cannot be taken — `busy` (being
//! received on another connection), `full` (`max_bytes` or the disk has no
//! room now), `too_large` (bigger than `max_bytes` could ever hold),
//! `bad_name` (metadata we cannot accept); else ACCEPT. The DATA is
//! re-encrypted under our own key as it arrives (a blocking sealer fed
//! through a channel) into `tmp/`; after END the sealer has checked size
//! and SHA-256 against the OFFER, the file is fsynced, renamed into
//! `incoming/<id>.pgs`, the folder fsynced, and only then is ACK sent.
//!
//! Between files the connection may sit idle (`limits.idle_timeout`);
//! within a file, a sender that sends nothing for `stall_secs` is a frozen
//! link: the partial file is dropped and the id freed for the resend.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::conditions::{Audited, Condition, Report, Subject};
use super::error::SpoolError;
use super::intake::{finish_file, sealed_estimate};
use super::link::{ChannelReader, FrameIo, LinkStats, Timeouts};
use super::metadata::Metadata;
use super::names::RAW_NAME_FIELD;
use super::seal::Sealer;
use super::store::{durable_rename, Area, Store};
use super::stream::seal_stream;
use super::wire::{Frame, Receiver, RecvState, Refusal, WireError, VERSION};
use super::Spool;

/// The condition key of "our spool refuses incoming files: full".
pub(crate) const RECEIVE_FULL: &str = "(receiving)";

/// Removes an id from the in-progress set when the transfer ends.
struct Receiving<'a> {
    store: &'a Store,
    id: String,
}

impl Drop for Receiving<'_> {
    fn drop(&mut self) {
        self.store.claims.stop_receiving(&self.id);
    }
}

/// How one offered file ended.
enum FileEnd {
    /// Durable in `incoming/`; ACK it.
    Stored,
    /// This file failed (bad digest, disk error): tell the sender why and
    /// go on with the next.
    Failed(Refusal, String),
    /// The sender gave up on this file (ERROR frame); no answer.
    Aborted,
}

impl Spool {
    /// Serves one inbound spool connection from `peer_pool` until it ends.
    /// Stops between files when `stop` is cancelled.
    ///
    /// # Errors
    /// The protocol or link error that ended the connection.
    pub async fn receive<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
        peer_pool: &str,
        idle: Duration,
        stop: &CancellationToken,
    ) -> (LinkStats, Result<(), SpoolError>) {
        let timeouts = Timeouts {
            idle,
            stall: self.store.stall,
        };
        let mut io = FrameIo::new(stream, timeouts, peer_pool);
        let result = self.serve(&mut io, peer_pool, stop).await;
        if let Err(e) = &result {
            tracing::warn!(error = %e, "spool receive ended");
            if let SpoolError::Wire(w) = e {
                let _ = io
                    .send(
                        &Frame::Error {
                            reason: Refusal::Other,
                            message: w.to_string(),
                        },
                        true,
                    )
                    .await;
            }
        }
        if !matches!(result, Err(SpoolError::Stalled { .. })) {
            io.close().await;
        }
        (io.stats, result)
    }

    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut FrameIo<S>,
        peer_pool: &str,
        stop: &CancellationToken,
    ) -> Result<(), SpoolError> {
        let mut seq = Receiver::default();
        loop {
            let between_files = seq.state == RecvState::Idle;
            let read = async {
                if between_files {
                    io.read_frame_idle().await
                } else {
                    io.read_frame().await
                }
            };
            let frame = tokio::select! {
                f = read => f,
                () = stop.cancelled() => return Ok(()),
            };
            let frame = match frame {
                // An OFFER whose metadata we cannot accept: refuse that
                // file (for good) and go on with the next.
                Err(SpoolError::Wire(WireError::Malformed {
                    frame: "OFFER",
                    reason,
                })) if between_files => {
                    tracing::warn!(%reason, "refused a spool file with unacceptable metadata");
                    let refusal = Frame::Error {
                        reason: Refusal::BadName,
                        message: format!("metadata not acceptable: {reason}"),
                    };
                    io.send(&refusal, true).await?;
                    continue;
                }
                other => other?,
            };
            let Some(frame) = frame else { return Ok(()) };
            seq.on_frame(&frame)?;
            match frame {
                Frame::Hello { .. } => io.send(&Frame::Hello { version: VERSION }, true).await?,
                Frame::Offer(meta) => match self.answer(&meta) {
                    Err(reply) => {
                        seq.decline();
                        io.send(&reply, true).await?;
                    }
                    Ok(_guard) => {
                        io.send(&Frame::Accept { offset: 0 }, true).await?;
                        seq.accept();
                        match self.take_file(io, &mut seq, &meta, peer_pool).await? {
                            FileEnd::Stored => {
                                io.send(
                                    &Frame::Ack {
                                        id: meta.id.clone(),
                                    },
                                    true,
                                )
                                .await?;
                                self.wake_deliver.notify_one();
                            }
                            FileEnd::Failed(reason, message) => {
                                io.send(&Frame::Error { reason, message }, true).await?;
                            }
                            FileEnd::Aborted => {}
                        }
                    }
                },
                other => {
                    return Err(WireError::Sequence {
                        frame: other.name(),
                        state: "here",
                    }
                    .into())
                }
            }
        }
    }

    /// Decides about an OFFER: `Ok(guard)` to accept, `Err(reply)` to
    /// answer ALREADY or ERROR.
    fn answer(&self, meta: &Metadata) -> Result<Receiving<'_>, Frame> {
        let store = &self.store;
        if store.is_known(&meta.id) {
            return Err(Frame::Already {
                id: meta.id.clone(),
            });
        }
        if let Some(why) = store.replayed(meta) {
            tracing::warn!(id = %meta.id, name = %meta.name, %why, "refused a replayed spool file");
            store.counters.refused.fetch_add(1, Ordering::Relaxed);
            if let Some(audit) = &store.audit {
                audit.record(crate::audit::Event::SpoolReplayed(
                    crate::audit::SpoolFile {
                        id: meta.id.clone(),
                        name: meta.name.clone(),
                        size: meta.size,
                        peer_pool: None,
                        age_ms: None,
                        reason: Some(why.clone()),
                        path: None,
                    },
                ));
            }
            return Err(Frame::Error {
                reason: Refusal::Replayed,
                message: why,
            });
        }
        if !store.claims.start_receiving(&meta.id) {
            return Err(Frame::Error {
                reason: Refusal::Busy,
                message: format!("{} is being received on another connection; retry", meta.id),
            });
        }
        let guard = Receiving {
            store,
            id: meta.id.clone(),
        };
        let need = sealed_estimate(meta.size);
        if let Some(max) = store.max_bytes {
            if need > max {
                store.counters.refused.fetch_add(1, Ordering::Relaxed);
                return Err(Frame::Error {
                    reason: Refusal::TooLarge,
                    message: format!(
                        "{} bytes cannot fit in the receiving spool (max_bytes = {max}) even when \
                         it is empty; raise max_bytes at the receiving site",
                        meta.size
                    ),
                });
            }
            if store.used_bytes() + need > max {
                return Err(self.full(format!(
                    "receiving spool is full (max_bytes = {max}); retry later"
                )));
            }
        }
        if let Some(free) = super::space::available(store.root()) {
            if free < need {
                return Err(self.full(format!(
                    "the receiving spool's disk has {free} bytes free, {need} needed; retry later"
                )));
            }
        }
        self.store
            .conditions
            .clear(Condition::SpoolFull, RECEIVE_FULL);
        Ok(guard)
    }

    /// Refuses an offer because our spool has no room now: counted, and
    /// reported once until a file is accepted again.
    fn full(&self, message: String) -> Frame {
        self.store.counters.refused.fetch_add(1, Ordering::Relaxed);
        self.store.conditions.raise(Report {
            condition: Condition::SpoolFull,
            key: RECEIVE_FULL.to_owned(),
            subject: Subject::default(),
            files: 0,
            detail: format!("refusing files from the peer: {message}"),
            audited: Audited::Condition,
        });
        Frame::Error {
            reason: Refusal::Full,
            message,
        }
    }

    /// Receives the DATA of an accepted file into `incoming/`.
    async fn take_file<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut FrameIo<S>,
        seq: &mut Receiver,
        offer: &Metadata,
        peer_pool: &str,
    ) -> Result<FileEnd, SpoolError> {
        let mut meta = offer.clone();
        meta.extra.retain(|k, _| k == RAW_NAME_FIELD);
        meta.extra
            .insert("from_pool".into(), serde_json::Value::from(peer_pool));
        let store = self.store.clone();
        let tmp = store.tmp_path(&meta.id);
        let (tx, rx) = mpsc::channel::<Vec<u8>>(16);
        let sealer = tokio::task::spawn_blocking({
            let (store, tmp, meta) = (store.clone(), tmp.clone(), meta.clone());
            move || seal_into(&store, &tmp, &meta, ChannelReader::new(rx))
        });
        let mut tx = Some(tx);
        let outcome = loop {
            let frame = match io.read_frame().await {
                Ok(Some(f)) => f,
                Ok(None) => break Err(WireError::Truncated.into()),
                Err(e) => break Err(e),
            };
            if let Err(e) = seq.on_frame(&frame) {
                break Err(e.into());
            }
            match frame {
                Frame::Data(bytes) => {
                    let sent = match &tx {
                        Some(tx) => tx.send(bytes).await.is_ok(),
                        None => false,
                    };
                    if !sent {
                        // The sealer stopped early (disk error): drain to END.
                        tx = None;
                    }
                }
                Frame::End => break Ok(true),
                Frame::Error { message, .. } => {
                    tracing::warn!(id = %meta.id, %message, "sender aborted a file");
                    break Ok(false);
                }
                _ => break Err(WireError::Truncated.into()),
            }
        };
        drop(tx);
        let sealed = sealer
            .await
            .map_err(|e| SpoolError::Task(e.to_string()))
            .and_then(|r| r);
        let complete = match outcome {
            Ok(complete) => complete,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        if !complete {
            let _ = fs::remove_file(&tmp);
            return Ok(FileEnd::Aborted);
        }
        if let Err(e) = sealed {
            let _ = fs::remove_file(&tmp);
            tracing::warn!(id = %meta.id, error = %e, "received file refused");
            let reason = if e.is_storage_full() {
                Refusal::Full
            } else {
                Refusal::Failed
            };
            return Ok(FileEnd::Failed(reason, e.to_string()));
        }
        let dest = store.path(Area::Incoming, &meta.id);
        let renamed =
            tokio::task::spawn_blocking(move || durable_rename(&tmp, &dest).map(|()| tmp)).await;
        match renamed {
            Ok(Ok(_)) => {
                self.store.counters.received.fetch_add(1, Ordering::Relaxed);
                tracing::info!(id = %meta.id, size = meta.size, "received");
                Ok(FileEnd::Stored)
            }
            Ok(Err(e)) => Ok(FileEnd::Failed(Refusal::Failed, e.to_string())),
            Err(e) => Err(SpoolError::Task(e.to_string())),
        }
    }
}

/// Seals what `reader` yields into `tmp` under our key and fsyncs it.
fn seal_into(
    store: &Arc<Store>,
    tmp: &PathBuf,
    meta: &Metadata,
    reader: ChannelReader,
) -> Result<(), SpoolError> {
    let sealer = Sealer::random(&store.key, meta).map_err(SpoolError::codec(tmp))?;
    let file = File::create_new(tmp).map_err(SpoolError::io("create", tmp))?;
    let mut w = BufWriter::with_capacity(256 * 1024, file);
    let sealed = seal_stream(sealer, reader, &mut w)
        .map_err(SpoolError::codec(tmp))
        .and_then(|_| finish_file(w, tmp).map(drop));
    if sealed.is_err() {
        // Also when the connection task was dropped mid-file.
        let _ = fs::remove_file(tmp);
    }
    sealed
}

#[cfg(test)]
#[path = "receive_tests.rs"]
mod tests;
