//! The forwarder: while `outgoing/` holds files, connect to the peer over
//! mTLS (`pg1-spool`), send them oldest first on one connection, delete
//! each only after its ACK. Retries with capped exponential backoff and
//! jitter while the peer is unreachable.

use std::fs::File;
use std::io::BufReader;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::error::SpoolError;
use super::link::{ChannelWriter, FrameIo, LinkStats};
use super::store::{age_ms, durable_remove, lock, Area, Entry};
use super::stream::decrypt_stream;
use super::wire::{Frame, VERSION};
use super::Spool;
use crate::audit::{Direction, Event, SpoolFile};
use crate::policy::Decision;
use crate::proxy::{dial_peer, Context, Track};
use crate::tls::{self};

/// First retry delay after a failed connection.
pub const BACKOFF_START: Duration = Duration::from_millis(200);
/// Longest retry delay.
pub const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// How often `outgoing/` is looked at when nobody wakes the forwarder.
const POLL: Duration = Duration::from_millis(250);

/// Capped exponential backoff with jitter (each delay uniform in
/// [d/2, d]).
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    rng: SystemRandom,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: BACKOFF_START,
            rng: SystemRandom::new(),
        }
    }
}

impl Backoff {
    /// The delay to wait now; doubles the next one up to the cap.
    pub fn delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(BACKOFF_CAP);
        let mut r = [0u8; 4];
        let frac = if self.rng.fill(&mut r).is_ok() {
            f64::from(u32::from_be_bytes(r)) / f64::from(u32::MAX)
        } else {
            0.5
        };
        d / 2 + d.mul_f64(frac / 2.0)
    }

    pub fn reset(&mut self) {
        self.next = BACKOFF_START;
    }
}

impl Spool {
    /// Runs the forwarder until the gateway stops.
    pub async fn forward_loop(self: Arc<Self>, ctx: Arc<Context>) {
        let stop = ctx.shutdown.stop_token().clone();
        let mut backoff = Backoff::default();
        loop {
            let files = self.sendable().await;
            if files.is_empty() {
                tokio::select! {
                    () = self.wake_forward.notified() => {}
                    () = tokio::time::sleep(POLL) => {}
                    () = stop.cancelled() => return,
                }
                continue;
            }
            match self.send_batch(&ctx, files).await {
                Ok(()) => backoff.reset(),
                Err(e) => {
                    let delay = backoff.delay();
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "spool forwarding failed");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = stop.cancelled() => return,
                    }
                }
            }
        }
    }

    /// Outgoing files ready to send (unreadable ones are quarantined).
    async fn sendable(&self) -> Vec<Entry> {
        let store = self.store.clone();
        let listed = tokio::task::spawn_blocking(move || {
            let entries = store.entries(Area::Outgoing).unwrap_or_default();
            let pending = lock(&store.pending).clone();
            let mut ok = Vec::new();
            for e in entries {
                match &e.meta {
                    Err(reason) => store.quarantine(&e.path, None, reason),
                    Ok(_) if pending.contains(&e.id) => {}
                    Ok(_) => ok.push(e),
                }
            }
            ok
        })
        .await;
        listed.unwrap_or_default()
    }

    /// One connection: handshake, then each file in turn.
    async fn send_batch(&self, ctx: &Context, files: Vec<Entry>) -> Result<(), SpoolError> {
        let addr = tokio::net::lookup_host(&ctx.peer_connect)
            .await
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        let mut track = Track::new(ctx, Direction::Outbound, addr);
        track.service = Some(tls::SPOOL_SERVICE.to_owned());
        let stream = match dial_peer(ctx, tls::ALPN_SPOOL.to_vec(), &mut track).await {
            Ok(s) => s,
            Err((reason, detail)) => {
                track.decide(ctx, Decision::Deny(reason), Some(detail.clone()));
                return Err(SpoolError::Link {
                    peer: ctx.peer_connect.clone(),
                    detail,
                });
            }
        };
        track.decide(ctx, Decision::Allow, None);
        let mut io = FrameIo::new(stream, ctx.limits.idle_timeout, &ctx.peer_pool);
        let result = self.send_files(&mut io, ctx, files).await;
        io.close().await;
        let LinkStats {
            bytes_in,
            bytes_out,
        } = io.stats;
        track.close(
            ctx,
            bytes_in,
            bytes_out,
            result.as_ref().err().map(ToString::to_string),
        );
        result
    }

    async fn send_files<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut FrameIo<S>,
        ctx: &Context,
        files: Vec<Entry>,
    ) -> Result<(), SpoolError> {
        io.send(&Frame::Hello { version: VERSION }, true).await?;
        match io.read_frame().await? {
            Some(Frame::Hello { .. }) => {}
            other => return Err(unexpected(ctx, "HELLO", other.as_ref())),
        }
        for entry in files {
            if ctx.shutdown.is_stopping() {
                break;
            }
            self.send_one(io, ctx, &entry).await?;
        }
        Ok(())
    }

    /// Offers one file and streams it; deletes it after ACK or ALREADY.
    async fn send_one<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut FrameIo<S>,
        ctx: &Context,
        entry: &Entry,
    ) -> Result<(), SpoolError> {
        let Ok(meta) = &entry.meta else { return Ok(()) };
        let mut offer = meta.clone();
        offer.extra.clear();
        io.send(&Frame::Offer(offer), true).await?;
        match io.read_frame().await? {
            Some(Frame::Accept { offset: 0 }) => {}
            Some(Frame::Already { id }) if id == meta.id => {
                return self.sent(ctx, entry, "already").await;
            }
            Some(Frame::Error { message }) => {
                tracing::warn!(id = %meta.id, %message, "peer refused a spool file; will retry");
                return Err(SpoolError::Refused {
                    id: meta.id.clone(),
                    message,
                });
            }
            other => return Err(unexpected(ctx, "ACCEPT or ALREADY", other.as_ref())),
        }
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
        let (path, key_store) = (entry.path.clone(), self.store.clone());
        let opener = tokio::task::spawn_blocking(move || {
            let file = File::open(&path).map_err(SpoolError::io("open", &path))?;
            decrypt_stream(
                BufReader::with_capacity(256 * 1024, file),
                ChannelWriter { tx },
                key_store.key_for(&path),
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
        if let Err(SpoolError::Codec {
            source: super::error::SpoolCodecError::Io { .. },
            ..
        }) = &opened
        {
            io.send(
                &Frame::Error {
                    message: "sender could not read the file".into(),
                },
                true,
            )
            .await?;
            return opened.map(drop);
        }
        if let Err(e) = opened {
            // Tampered or truncated: tell the peer to drop what it got,
            // quarantine ours, go on with the next file.
            io.send(
                &Frame::Error {
                    message: "sender aborted the file".into(),
                },
                true,
            )
            .await?;
            let (store, path, m, reason) = (
                self.store.clone(),
                entry.path.clone(),
                meta.clone(),
                e.to_string(),
            );
            let _ = tokio::task::spawn_blocking(move || store.quarantine(&path, Some(&m), &reason))
                .await;
            return Ok(());
        }
        io.send(&Frame::End, true).await?;
        match io.read_frame().await? {
            Some(Frame::Ack { id }) if id == meta.id => self.sent(ctx, entry, "ack").await,
            Some(Frame::Error { message }) => {
                tracing::warn!(id = %meta.id, %message, "peer did not store a spool file; will retry");
                Err(SpoolError::Refused {
                    id: meta.id.clone(),
                    message,
                })
            }
            other => Err(unexpected(ctx, "ACK", other.as_ref())),
        }
    }

    /// The peer holds the file: delete ours durably, audit, count.
    async fn sent(&self, ctx: &Context, entry: &Entry, how: &str) -> Result<(), SpoolError> {
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
        tracing::info!(id = %meta.id, size = meta.size, how, "sent");
        ctx.audit.record(Event::SpoolSent(SpoolFile {
            id: meta.id.clone(),
            name: meta.name.clone(),
            size: meta.size,
            peer_pool: Some(ctx.peer_pool.clone()),
            age_ms: Some(age_ms(&meta)),
            reason: (how == "already").then(|| "peer already had it".to_owned()),
            path: None,
        }));
        Ok(())
    }
}

fn unexpected(ctx: &Context, want: &str, got: Option<&Frame>) -> SpoolError {
    SpoolError::Link {
        peer: ctx.peer_connect.clone(),
        detail: format!(
            "expected {want}, got {}",
            got.map_or("end of stream", Frame::name)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::default();
        let first = b.delay();
        assert!(first >= BACKOFF_START / 2 && first <= BACKOFF_START);
        let mut last = first;
        for _ in 0..20 {
            last = b.delay();
            assert!(last <= BACKOFF_CAP);
        }
        assert!(last >= BACKOFF_CAP / 2);
        b.reset();
        assert!(b.delay() <= BACKOFF_START);
    }
}
