//! The control channel between the two gateways of a pair (ALPN
//! `pg1-control`): every `peer.heartbeat_secs` each gateway opens an mTLS
//! connection to its peer and reports its audit chain head; the peer records
//! it in its own audit log (`peer_audit_head`). The same exchange tells each
//! side whether the link to its peer is up, which `/status` reports.
//!
//! Wire: one JSON object per line, each way:
//! `{"v":1,"type":"audit_head","pool":…,"head":…,"ts":…,"crls":[…]}` (at
//! most [`MAX_LINE`] bytes) then `{"v":1,"type":"ok","ts":…,"crl":…}` (at
//! most [`MAX_ANSWER`]). `ts` in the answer since this version; an older
//! peer omits it. `crls` lists the CRL number the dialler enforces per CA;
//! `crl` carries, as PEM, the answering side's CRLs that are newer — so a
//! revocation reaches the other site within one heartbeat (see
//! `tls::crl_offer`: verified against our own CA bundle, never older than
//! the CRL in force, applied by the normal reload). Both fields are
//! omitted when empty; older peers ignore them.
//!
//! A paired peer that sends anything else is audited
//! (`peer_control_error`), not only logged.
//!
//! Clocks: both messages carry the sender's clock (`ts`, RFC 3339, µs), so
//! each side measures the peer's clock offset — the dialler from the
//! midpoint of its round trip, the answering side from the arrival of
//! `audit_head` (off by the one-way delay, milliseconds on a WAN). The
//! offset is shown in `/status` and `pairgate_peer_clock_skew_seconds`, and
//! explains certificates that look not yet valid or expired to the peer.
//!
//! Testing knob (hidden, not for production): the environment variable
//! `PAIRGATE_TEST_CLOCK_OFFSET_SECS` (signed seconds) shifts the clock this
//! gateway uses on the control channel — what it sends and what it
//! measures against — so tests can play a peer whose clock is off without
//! faking the system clock. A warning is logged when it is set.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use super::Context;
use crate::admin::SpoolDepth;
use crate::audit::{self, Event, LinkState};
use crate::peer::Track;
use crate::tls;

/// What the peer last reported waiting towards us, and when.
/// Filled from each `audit_head` message the peer sends.
#[derive(Debug, Default)]
pub struct PeerBacklog {
    last: Mutex<Option<(SpoolDepth, OffsetDateTime)>>,
}

impl PeerBacklog {
    pub fn set(&self, depth: SpoolDepth, at: OffsetDateTime) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some((depth, at));
        }
    }

    pub fn get(&self) -> Option<(SpoolDepth, OffsetDateTime)> {
        self.last.lock().ok().and_then(|l| *l)
    }
}

/// Longest `audit_head` line accepted.
pub const MAX_LINE: u64 = 8192;
/// Longest answer accepted: room for a CRL offer.
pub const MAX_ANSWER: u64 = crate::tls::crl_offer::MAX_OFFER_BYTES as u64 + 4096;

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
        /// The CRL number the sender enforces per CA.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        crls: Vec<crate::tls::crl_offer::CrlNumber>,
    },
    Ok {
        v: u32,
        /// The answering side's clock (absent from older peers).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ts: Option<String>,
        /// PEM of the answering side's CRLs newer than the dialler's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        crl: Option<String>,
    },
}

/// Parses one control line (without its newline). Pure; a fuzz target.
///
/// # Errors
/// When the line is not a control message.
pub fn parse_line(line: &[u8]) -> Result<Message, serde_json::Error> {
    serde_json::from_slice(line)
}

/// The clock this gateway uses on the control channel: the system clock,
/// shifted by `PAIRGATE_TEST_CLOCK_OFFSET_SECS` in tests.
pub fn clock_now() -> OffsetDateTime {
    OffsetDateTime::now_utc() + test_offset()
}

fn test_offset() -> time::Duration {
    static OFFSET: std::sync::OnceLock<time::Duration> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| {
        let Ok(text) = std::env::var("PAIRGATE_TEST_CLOCK_OFFSET_SECS") else {
            return time::Duration::ZERO;
        };
        match text.trim().parse::<i64>() {
            Ok(secs) => {
                tracing::warn!(secs, "PAIRGATE_TEST_CLOCK_OFFSET_SECS is set: the control channel uses a shifted clock (testing only)");
                time::Duration::seconds(secs)
            }
            Err(e) => {
                tracing::warn!(value = %text, error = %e, "PAIRGATE_TEST_CLOCK_OFFSET_SECS is not a whole number of seconds; ignored");
                time::Duration::ZERO
            }
        }
    })
}

fn parse_ts(ts: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).ok()
}

/// Records a measured offset of the peer's clock (peer minus ours) and logs
/// when it crosses the warning threshold, once per crossing.
fn record_skew(ctx: &Context, skew: time::Duration) {
    let skew_secs = skew.as_seconds_f64();
    match ctx.peer.link.clock_skew(skew_secs, OffsetDateTime::now_utc()) {
        Some(true) => tracing::warn!(
            skew_secs,
            "the peer gateway's clock is off: certificates will look not yet valid or expired to one side — fix time synchronisation (NTP) at both sites"
        ),
        Some(false) => tracing::info!(skew_secs, "the peer gateway's clock is back in step"),
        None => {}
    }
}

/// A [`SpoolDepth`] as the control channel carries it: the oldest file as
/// an age, which no clock offset between the gateways distorts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Backlog {
    pub files: u64,
    pub bytes: u64,
    #[serde(default)]
    pub oldest_age_secs: Option<u64>,
}

/// Reads one control line of at most `max` bytes; errors on oversize, EOF
/// or invalid JSON.
async fn read_message<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    max: u64,
) -> std::io::Result<Message> {
    let mut line = Vec::new();
    let n = (&mut *r).take(max + 1).read_until(b'\n', &mut line).await?;
    if n == 0 || line.last() != Some(&b'\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "control line missing, truncated or too long",
        ));
    }
    parse_line(line.trim_ascii_end())
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
    let msg = tokio::time::timeout(
        ctx.peer.limits().handshake_timeout,
        read_message(&mut stream, MAX_LINE),
    )
    .await
    .map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::TimedOut, "control message timed out")
    })??;
    let Message::AuditHead {
        head,
        ts,
        outbound,
        crls,
        ..
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
    // Ages count from the arrival (our clock), as the peer measured them.
    let now = OffsetDateTime::now_utc();
    let backlog = outbound.map_or_else(SpoolDepth::default, |b| {
        SpoolDepth::aged(
            b.files,
            b.bytes,
            b.oldest_age_secs.map(Duration::from_secs),
            now,
        )
    });
    let arrived = clock_now();
    if let Some(sent) = parse_ts(&ts) {
        record_skew(ctx, sent - arrived);
    }
    ctx.peer_backlog.set(backlog, now);
    ctx.peer
        .audit
        .record(Event::PeerAuditHead(audit::PeerAuditHead {
            peer_addr: track.peer_addr.clone(),
            peer_pool: track.peer_pool.clone().unwrap_or_default(),
            cert_sha256: track.cert_sha256.clone().unwrap_or_default(),
            head,
            peer_ts: ts.chars().take(64).collect(),
        }));
    let crl = super::crl_exchange::offer(ctx, track, &crls);
    let answer = Message::Ok {
        v: 1,
        ts: Some(crate::audit::chain::format_ts(clock_now())),
        crl,
    };
    write_message(stream.get_mut(), &answer).await?;
    stream.get_mut().shutdown().await
}

/// One heartbeat: connect, report our audit head, wait for `ok`.
///
/// # Errors
/// Any failure to reach, authenticate or talk to the peer, as text.
pub async fn heartbeat_once(ctx: &Context) -> Result<(), String> {
    let backlog = match ctx.routes.backlog.clone() {
        Some(waiting) => tokio::task::spawn_blocking(move || {
            let depth = waiting.outbound();
            Backlog {
                files: depth.files,
                bytes: depth.bytes,
                oldest_age_secs: depth
                    .oldest_age(OffsetDateTime::now_utc())
                    .map(|a| a.as_secs()),
            }
        })
        .await
        .ok(),
        None => None,
    };
    // The heartbeat is not a connection anyone asked for: its outcome is
    // audited as link state changes and as the peer's `peer_audit_head`.
    let mut track = Track::new(
        &ctx.peer,
        crate::audit::Direction::Outbound,
        ([0, 0, 0, 0], 0).into(),
    );
    let tls = ctx
        .peer
        .dial(tls::ALPN_CONTROL.to_vec(), &mut track)
        .await
        .map_err(|failed| failed.detail)?;
    let exchange = async {
        let mut stream = BufReader::new(tls);
        let sent = clock_now();
        let msg = Message::AuditHead {
            v: 1,
            pool: ctx.peer.local_pool.to_string(),
            head: hex::encode(ctx.peer.audit.head()),
            ts: crate::audit::chain::format_ts(sent),
            outbound: backlog,
            crls: ctx.peer.snapshot().material.crl_numbers(),
        };
        write_message(stream.get_mut(), &msg).await?;
        match read_message(&mut stream, MAX_ANSWER).await? {
            Message::Ok { ts, crl, .. } => {
                let received = clock_now();
                if let Some(peer) = ts.as_deref().and_then(parse_ts) {
                    // The peer read its clock about halfway through our round trip.
                    record_skew(ctx, peer - (sent + (received - sent) / 2));
                }
                if let Some(crl) = crl {
                    super::crl_exchange::take(ctx, crl).await;
                }
                Ok(())
            }
            other => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("unexpected {other:?}"),
            )),
        }
    };
    match tokio::time::timeout(ctx.peer.limits().handshake_timeout, exchange).await {
        Ok(Ok(())) => Ok(()),
        // The peer checks our certificate after our side of the handshake
        // is done: its refusal arrives here, as an alert. Say what it means.
        Ok(Err(e)) if crate::tls::rustls_error(&e).is_some() => {
            let (reason, detail) =
                crate::tls::refusal(&e, &ctx.peer.snapshot().material, ctx.peer.link.skew_secs());
            Err(format!(
                "peer gateway {}: {reason}: {detail}",
                ctx.peer.peer_connect
            ))
        }
        Ok(Err(e)) => Err(format!("peer gateway {}: {e}", ctx.peer.peer_connect)),
        Err(_) => Err(format!(
            "peer gateway {}: no answer in time",
            ctx.peer.peer_connect
        )),
    }
}

/// Heartbeats until shutdown, auditing each change of the link state.
pub async fn heartbeat(ctx: Arc<Context>, every: Duration) {
    let stop = ctx.peer.shutdown.stop_token().clone();
    let mut was_up: Option<bool> = None;
    // Let the first head the peer anchors include our start record.
    let audit = ctx.peer.audit.clone();
    let _ = tokio::task::spawn_blocking(move || audit.flush()).await;
    loop {
        let result = heartbeat_once(&ctx).await;
        let up = result.is_ok();
        match &result {
            Ok(()) => ctx.peer.link.up(),
            Err(e) => ctx.peer.link.down(e.clone()),
        }
        if was_up != Some(up) {
            let error = result.err();
            match &error {
                None => tracing::info!(peer = %ctx.peer.peer_connect, "peer link up"),
                Some(e) => tracing::warn!(error = %e, "peer link down"),
            }
            ctx.peer.audit.record(Event::PeerLink(audit::PeerLink {
                state: if up { LinkState::Up } else { LinkState::Down },
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
            crls: vec![crate::tls::crl_offer::CrlNumber {
                issuer: "CN=a".into(),
                number: 3,
            }],
        };
        write_message(&mut a, &msg).await.unwrap();
        let mut b = BufReader::new(b);
        assert_eq!(read_message(&mut b, MAX_LINE).await.unwrap(), msg);
    }

    #[tokio::test]
    async fn oversize_garbage_and_eof_are_errors() {
        let (mut a, b) = tokio::io::duplex(64 * 1024);
        a.write_all(&vec![b'x'; 10_000]).await.unwrap();
        a.write_all(b"\n{not json}\n").await.unwrap();
        drop(a);
        let mut b = BufReader::new(b);
        assert!(read_message(&mut b, MAX_LINE).await.is_err(), "oversize");
        let mut rest = String::new();
        b.read_line(&mut rest).await.unwrap();
        assert!(read_message(&mut b, MAX_LINE).await.is_err(), "not JSON");
        assert!(read_message(&mut b, MAX_LINE).await.is_err(), "EOF");
    }
}
