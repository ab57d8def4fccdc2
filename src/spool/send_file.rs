//! One file over the spool link, as the forwarder sends it: `OFFER` →
//! `ACCEPT` (or `ALREADY`: the peer has it) → `DATA`… → `END` → `ACK`, the
//! file decrypted on a blocking thread and streamed as it is read; ours is
//! deleted durably only once the peer holds it ([`Spool::sent`]). A file
//! we cannot read is set aside, one that fails authentication is
//! quarantined, and the peer is told to drop what it got in both cases.

use std::fs::File;
use std::io::BufReader;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::error::SpoolError;
use super::link::{ChannelWriter, FrameIo};
use super::names::RAW_NAME_FIELD;
use super::store::{age_ms, durable_remove, Entry};
use super::stream::decrypt_stream;
use super::wire::{Frame, Refusal};
use super::Spool;
use crate::audit::{Event, SpoolFile};
use crate::peer::Peer;

/// How one offered file ended, short of a broken connection.
pub(super) enum Sent {
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
    /// Offers one file and streams it; deletes it after ACK or ALREADY.
    pub(super) async fn send_one<S: AsyncRead + AsyncWrite + Unpin>(
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
    pub(super) async fn sent(
        &self,
        peer: &Peer,
        entry: &Entry,
        how: Taken,
    ) -> Result<(), SpoolError> {
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
pub(super) enum Taken {
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

pub(super) fn unexpected(peer: &Peer, want: &str, got: Option<&Frame>) -> SpoolError {
    SpoolError::Link {
        peer: peer.peer_connect.clone(),
        detail: format!(
            "expected {want}, got {}",
            got.map_or("end of stream", Frame::name)
        ),
    }
}
