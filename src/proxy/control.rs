//! The control channel between the two gateways of a pair (ALPN
//! `pg1-control`): every `peer.heartbeat_secs` each gateway opens an mTLS
//! connection to its peer and reports its audit chain head; the peer records
//! it in its own audit log (`peer_audit_head`). The same exchange tells each
//! side whether the link to its peer is up, which `/status` reports.
//!
//! Wire: one JSON object per line, at most [`MAX_LINE`] bytes, each way:
//! `{"v":1,"type":"audit_head","pool":…,"head":…,"ts":…}` then `{"v":1,"type":"ok"}`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use super::{Context, Track};
use crate::audit::{self, Event};
use crate::spool::DirDepth;
use crate::tls;

/// What the peer last reported waiting towards us, and when.
/// Filled from each `audit_head` message the peer sends.
#[derive(Debug, Default)]
pub struct PeerBacklog {
    last: Mutex<Option<(DirDepth, OffsetDateTime)>>,
}

impl PeerBacklog {
    pub fn set(&self, depth: DirDepth, at: OffsetDateTime) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some((depth, at));
        }
    }

    pub fn get(&self) -> Option<(DirDepth, OffsetDateTime)> {
        self.last.lock().ok().and_then(|l| l.clone())
    }
}

/// Longest control line accepted.
pub const MAX_LINE: u64 = 4096;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    AuditHead {
        v: u32,
        pool: String,
        head: String,
        ts: String,
        /// What the sender's spool holds waiting for us (absent: no spool).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outbound: Option<Backlog>,
    },
    Ok {
        v: u32,
    },
}

/// A spool backlog as carried on the control channel.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Backlog {
    pub files: u64,
    pub bytes: u64,
    #[serde(default)]
    pub oldest_age_secs: Option<u64>,
}

/// Reads one control line; errors on oversize, EOF or invalid JSON.
async fn read_message<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> std::io::Result<Message> {
    let mut line = String::new();
    let n = (&mut *r).take(MAX_LINE + 1).read_line(&mut line).await?;
    if n == 0 || !line.ends_with('\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "control line missing, truncated or too long",
        ));
    }
    serde_json::from_str(line.trim_end())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

async fn write_message<W: AsyncWrite + Unpin>(w: &mut W, m: &Message) -> std::io::Result<()> {
    let mut line = serde_json::to_string(m).map_err(std::io::Error::other)?;
    line.push('\n');
    w.write_all(line.as_bytes()).await?;
    w.flush().await
}

/// Serves one authenticated, paired control connection: records the peer's
/// audit head and answers `ok`.
pub(super) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Context,
    stream: S,
    track: &Track,
) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    let msg = tokio::time::timeout(ctx.limits.handshake_timeout, read_message(&mut stream))
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "control message timed out")
        })??;
    let Message::AuditHead {
        head, ts, outbound, ..
    } = msg
    else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "expected audit_head",
        ));
    };
    if head.len() != 64 || !head.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "audit head is not 64 hex digits",
        ));
    }
    let backlog = outbound.map_or_else(DirDepth::default, |b| DirDepth {
        files: b.files,
        bytes: b.bytes,
        oldest_age: b.oldest_age_secs.map(Duration::from_secs),
    });
    ctx.peer_backlog
        .set(backlog, time::OffsetDateTime::now_utc());
    ctx.audit.record(Event::PeerAuditHead(audit::PeerAuditHead {
        peer_addr: track.peer_addr.clone(),
        peer_pool: track.peer_pool.clone().unwrap_or_default(),
        cert_sha256: track.cert_sha256.clone().unwrap_or_default(),
        head,
        peer_ts: ts.chars().take(64).collect(),
    }));
    write_message(stream.get_mut(), &Message::Ok { v: 1 }).await?;
    stream.get_mut().shutdown().await
}

/// One heartbeat: connect, report our audit head, wait for `ok`.
///
/// # Errors
/// Any failure to reach, authenticate or talk to the peer, as text.
pub async fn heartbeat_once(ctx: &Context) -> Result<(), String> {
    let backlog = match ctx.spool.clone() {
        Some(spool) => tokio::task::spawn_blocking(move || spool.depth().outbound)
            .await
            .ok()
            .map(|d| Backlog {
                files: d.files,
                bytes: d.bytes,
                oldest_age_secs: d.oldest_age.map(|a| a.as_secs()),
            }),
        None => None,
    };
    // The heartbeat is not a connection anyone asked for: its outcome is
    // audited as link state changes and as the peer's `peer_audit_head`.
    let mut track = Track::new(
        ctx,
        crate::audit::Direction::Outbound,
        ([0, 0, 0, 0], 0).into(),
    );
    let tls = super::dial_peer(ctx, tls::ALPN_CONTROL.to_vec(), &mut track)
        .await
        .map_err(|(_, detail)| detail)?;
    let exchange = async {
        let mut stream = BufReader::new(tls);
        let msg = Message::AuditHead {
            v: 1,
            pool: ctx.local_pool.clone(),
            head: hex::encode(ctx.audit.head()),
            ts: crate::audit::chain::format_ts(time::OffsetDateTime::now_utc()),
            outbound: backlog,
        };
        write_message(stream.get_mut(), &msg).await?;
        match read_message(&mut stream).await? {
            Message::Ok { .. } => Ok(()),
            other => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("unexpected {other:?}"),
            )),
        }
    };
    match tokio::time::timeout(ctx.limits.handshake_timeout, exchange).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("peer gateway {}: {e}", ctx.peer_connect)),
        Err(_) => Err(format!(
            "peer gateway {}: no answer in time",
            ctx.peer_connect
        )),
    }
}

/// Heartbeats until shutdown, auditing each change of the link state.
pub async fn heartbeat(ctx: Arc<Context>, every: Duration) {
    let stop = ctx.shutdown.stop_token().clone();
    let mut was_up: Option<bool> = None;
    // Let the first head the peer anchors include our start record.
    let audit = ctx.audit.clone();
    let _ = tokio::task::spawn_blocking(move || audit.flush()).await;
    loop {
        let result = heartbeat_once(&ctx).await;
        let up = result.is_ok();
        match &result {
            Ok(()) => ctx.link.up(),
            Err(e) => ctx.link.down(e.clone()),
        }
        if was_up != Some(up) {
            let error = result.err();
            match &error {
                None => tracing::info!(peer = %ctx.peer_connect, "peer link up"),
                Some(e) => tracing::warn!(error = %e, "peer link down"),
            }
            ctx.audit.record(Event::PeerLink(audit::PeerLink {
                state: if up { "up" } else { "down" }.to_owned(),
                error,
            }));
            was_up = Some(up);
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_round_trip() {
        let (mut a, b) = tokio::io::duplex(64 * 1024);
        let msg = Message::AuditHead {
            v: 1,
            pool: "p".into(),
            head: "0".repeat(64),
            ts: "t".into(),
            outbound: Some(Backlog {
                files: 2,
                bytes: 9,
                oldest_age_secs: Some(130),
            }),
        };
        write_message(&mut a, &msg).await.unwrap();
        let mut b = BufReader::new(b);
        assert_eq!(read_message(&mut b).await.unwrap(), msg);
    }

    #[tokio::test]
    async fn oversize_garbage_and_eof_are_errors() {
        let (mut a, b) = tokio::io::duplex(64 * 1024);
        a.write_all(&vec![b'x'; 10_000]).await.unwrap();
        a.write_all(b"\n{not json}\n").await.unwrap();
        drop(a);
        let mut b = BufReader::new(b);
        assert!(read_message(&mut b).await.is_err(), "oversize");
        let mut rest = String::new();
        b.read_line(&mut rest).await.unwrap();
        assert!(read_message(&mut b).await.is_err(), "not JSON");
        assert!(read_message(&mut b).await.is_err(), "EOF");
    }
}
