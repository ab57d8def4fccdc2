//! Moving bytes both ways between two streams until both sides are done.
//!
//! Half-close is passed through: when one side finishes sending (EOF, or TLS
//! close_notify), the other side's write half is shut down and the opposite
//! direction keeps flowing until it ends too. A connection with no bytes in
//! either direction for the idle timeout is closed, and so is every relay when
//! the gateway's grace period runs out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use std::future::Future;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf};
use tokio_util::sync::CancellationToken;

/// Relay buffer per direction while data flows in bulk. A multiple of the
/// 16 KiB TLS record size.
const BUF_SIZE: usize = 64 * 1024;
/// Relay buffer per direction otherwise.
const SMALL_BUF: usize = 512;

/// Bytes moved in each direction.
#[derive(Debug, Default)]
pub struct Counters {
    /// From the first stream to the second.
    pub forward: AtomicU64,
    /// From the second stream to the first.
    pub backward: AtomicU64,
    /// Bumped on every transfer; the idle watchdog looks for change.
    activity: AtomicU64,
}

/// How a relay ended.
#[derive(Debug)]
pub enum End {
    /// Both directions reached EOF.
    Done,
    /// Nothing moved for the idle timeout.
    Idle,
    /// The gateway's shutdown grace period ran out.
    Shutdown,
    /// A read or write failed (reset, TLS error, …).
    Failed(std::io::Error),
}

impl End {
    /// A short text for the audit log's `error` field, if the end was abnormal.
    pub fn error_text(&self) -> Option<String> {
        match self {
            End::Done => None,
            End::Idle => Some("idle timeout".to_owned()),
            End::Shutdown => Some("closed at shutdown".to_owned()),
            End::Failed(e) => Some(e.to_string()),
        }
    }
}

/// Relays between `a` and `b` until both directions end, nothing moves for
/// `idle`, or `stop` is cancelled. Counts land in `counters` as they happen,
/// so a caller sees the totals however the relay ended.
pub async fn relay<A, B>(
    a: A,
    b: B,
    idle: Duration,
    stop: &CancellationToken,
    counters: &Counters,
) -> End
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    relay_gated(a, b, idle, stop, counters, |b_read| {
        std::future::ready(Ok(b_read))
    })
    .await
}

/// [`relay`], except that nothing moves from `b` to `a` until `gate` has
/// read what it needs from `b` (a `pg2` status frame) and handed the read
/// half back; `a` to `b` flows from the start. An error from `gate` ends
/// the relay with [`End::Failed`] carrying it.
pub async fn relay_gated<A, B, G, F>(
    a: A,
    b: B,
    idle: Duration,
    stop: &CancellationToken,
    counters: &Counters,
    gate: G,
) -> End
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
    G: FnOnce(ReadHalf<B>) -> F,
    F: Future<Output = std::io::Result<ReadHalf<B>>>,
{
    let (a_read, a_write) = tokio::io::split(a);
    let (b_read, b_write) = tokio::io::split(b);
    let (gated, mut gate_done) = tokio::sync::watch::channel(false);
    let backward = async {
        let b_read = gate(b_read).await;
        gated.send_replace(true);
        pump(b_read?, a_write, &counters.backward, &counters.activity).await
    };
    let forward = async {
        let sent = pump(a_read, b_write, &counters.forward, &counters.activity).await;
        if sent.is_err() {
            // A peer that refuses closes its end, and our write may fail
            // before the gate has read why: let the gate's answer (or its
            // error) come first.
            let _ = gate_done.wait_for(|done| *done).await;
        }
        sent
    };
    let both = async { tokio::try_join!(forward, backward) };
    tokio::select! {
        result = both => match result {
            Ok(_) => End::Done,
            Err(e) => End::Failed(e),
        },
        () = watch_idle(&counters.activity, idle) => End::Idle,
        () = stop.cancelled() => End::Shutdown,
    }
}

/// Copies one direction; on EOF shuts down the writer (half-close).
///
/// Reads start into a small buffer; only when data arrives faster than it
/// holds does a [`BUF_SIZE`] buffer take its place, and it is given back once
/// traffic turns small. Buffers are reserved without zeroing, so an idle
/// connection costs almost nothing and a bulk transfer gets big reads.
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    count: &AtomicU64,
    activity: &AtomicU64,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // Reserved, not zeroed: an idle connection touches almost none of it.
    let mut buf = BytesMut::with_capacity(SMALL_BUF);
    loop {
        let capacity = buf.capacity();
        let n = from.read_buf(&mut buf).await?;
        if n == 0 {
            // Ignore errors here: the other side may already be gone, and the
            // opposite direction reports its own failure.
            let _ = to.shutdown().await;
            return Ok(());
        }
        to.write_all(&buf).await?;
        to.flush().await?;
        buf.clear();
        count.fetch_add(n as u64, Ordering::Relaxed);
        activity.fetch_add(1, Ordering::Relaxed);
        if n == capacity && capacity < BUF_SIZE {
            buf = BytesMut::with_capacity(BUF_SIZE);
        } else if n < SMALL_BUF && capacity > SMALL_BUF {
            buf = BytesMut::with_capacity(SMALL_BUF);
        }
    }
}

/// Resolves once `activity` did not change for a whole `idle` period.
/// Detection happens between one and two periods after the last transfer.
async fn watch_idle(activity: &AtomicU64, idle: Duration) {
    let mut seen = activity.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(idle).await;
        let now = activity.load(Ordering::Relaxed);
        if now == seen {
            return;
        }
        seen = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[tokio::test]
    async fn copies_both_ways_with_half_close() {
        let (client, a) = duplex(1024);
        let (b, server) = duplex(1024);
        let counters = Counters::default();
        let stop = CancellationToken::new();
        let relay = relay(a, b, Duration::from_secs(60), &stop, &counters);
        let peers = async {
            let (mut c_read, mut c_write) = tokio::io::split(client);
            let (mut s_read, mut s_write) = tokio::io::split(server);
            let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
            let send = async {
                c_write.write_all(&payload).await.unwrap();
                c_write.shutdown().await.unwrap();
            };
            let echo = async {
                // The server reads to EOF (the client's half-close), then answers.
                let mut got = Vec::new();
                s_read.read_to_end(&mut got).await.unwrap();
                s_write.write_all(&got[..1000]).await.unwrap();
                s_write.shutdown().await.unwrap();
                got
            };
            let recv = async {
                let mut back = Vec::new();
                c_read.read_to_end(&mut back).await.unwrap();
                back
            };
            let ((), got, back) = tokio::join!(send, echo, recv);
            assert_eq!(got, payload);
            assert_eq!(back, payload[..1000]);
        };
        let (end, ()) = tokio::join!(relay, peers);
        assert!(matches!(end, End::Done), "{end:?}");
        assert_eq!(counters.forward.load(Ordering::Relaxed), 200_000);
        assert_eq!(counters.backward.load(Ordering::Relaxed), 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_are_closed() {
        let (_client, a) = duplex(64);
        let (b, _server) = duplex(64);
        let counters = Counters::default();
        let stop = CancellationToken::new();
        let end = relay(a, b, Duration::from_secs(30), &stop, &counters).await;
        assert!(matches!(end, End::Idle), "{end:?}");
    }

    #[tokio::test]
    async fn stop_closes_open_relays() {
        let (_client, a) = duplex(64);
        let (b, _server) = duplex(64);
        let counters = Counters::default();
        let stop = CancellationToken::new();
        stop.cancel();
        let end = relay(a, b, Duration::from_secs(30), &stop, &counters).await;
        assert!(matches!(end, End::Shutdown), "{end:?}");
    }
}
