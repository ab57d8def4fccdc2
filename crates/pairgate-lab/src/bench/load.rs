//! The load generators: each drives one kind of traffic at an address for a
//! bounded time or count and returns plain numbers.
//!
//! They know nothing about what is behind the address — the backend itself,
//! a pairgate pair or a rival proxy pair — so every subject gets exactly the
//! same load. They verify what comes back (the discard backend's byte count,
//! the echoed bytes) so a proxy that drops or truncates data cannot look fast.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::BenchError;

/// Size of one bulk write.
const CHUNK: usize = 256 * 1024;
/// The payload of one latency probe and of one new-connection exchange.
pub const PING: usize = 64;
/// Round trips before latency sampling starts.
const WARMUP: usize = 100;
/// Idle connections opened at once by [`hold_idle`] (below pairgate's
/// per-source handshake cap, so the cap never shows up as a failure).
const OPEN_PARALLEL: usize = 16;

fn load_err(what: &str, addr: SocketAddr) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |source| BenchError::Load {
        what: format!("{what} via {addr}"),
        source,
    }
}

/// Bulk throughput in MB/s (10^6 bytes per second) over `streams`
/// concurrent connections to a discard backend, each sending for `duration`.
///
/// # Errors
/// When a connection fails or the backend's count differs from what was sent.
pub async fn bulk(addr: SocketAddr, streams: usize, duration: Duration) -> Result<f64, BenchError> {
    let (bytes, elapsed) = bulk_bytes(addr, streams, duration).await?;
    Ok(bytes as f64 / elapsed.as_secs_f64() / 1e6)
}

/// [`bulk`], as the bytes relayed (each counted by the backend) and the
/// wall time it took, for figures per byte.
///
/// # Errors
/// As [`bulk`].
pub async fn bulk_bytes(
    addr: SocketAddr,
    streams: usize,
    duration: Duration,
) -> Result<(u64, Duration), BenchError> {
    let chunk: Arc<[u8]> = crate::pattern(CHUNK).into();
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(streams);
    for _ in 0..streams {
        let chunk = chunk.clone();
        tasks.push(tokio::spawn(async move {
            one_bulk_stream(addr, &chunk, deadline).await
        }));
    }
    let mut total = 0u64;
    for task in tasks {
        total += task.await.map_err(|e| BenchError::Load {
            what: format!("bulk stream via {addr}"),
            source: std::io::Error::other(e),
        })??;
    }
    Ok((total, start.elapsed()))
}

async fn one_bulk_stream(
    addr: SocketAddr,
    chunk: &[u8],
    deadline: Instant,
) -> Result<u64, BenchError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(load_err("bulk connect", addr))?;
    let mut sent = 0u64;
    while Instant::now() < deadline {
        stream
            .write_all(chunk)
            .await
            .map_err(load_err("bulk write", addr))?;
        sent += chunk.len() as u64;
    }
    stream
        .shutdown()
        .await
        .map_err(load_err("bulk half-close", addr))?;
    let mut count = [0u8; 8];
    stream
        .read_exact(&mut count)
        .await
        .map_err(load_err("bulk count", addr))?;
    let got = u64::from_be_bytes(count);
    if got != sent {
        return Err(BenchError::Mismatch {
            what: format!("bulk via {addr}"),
            detail: format!("sent {sent} bytes, the backend counted {got}"),
        });
    }
    Ok(sent)
}

/// Round-trip times of `samples` 64-byte echoes on one persistent
/// connection, in microseconds, sorted ascending (after a short warm-up).
///
/// # Errors
/// When the connection fails or an echo differs from what was sent.
pub async fn latency(addr: SocketAddr, samples: usize) -> Result<Vec<f64>, BenchError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(load_err("latency connect", addr))?;
    let _ = stream.set_nodelay(true);
    let ping = crate::pattern(PING);
    let mut back = [0u8; PING];
    let mut times = Vec::with_capacity(samples);
    for i in 0..WARMUP + samples {
        let t = Instant::now();
        stream
            .write_all(&ping)
            .await
            .map_err(load_err("latency write", addr))?;
        stream
            .read_exact(&mut back)
            .await
            .map_err(load_err("latency read", addr))?;
        let rtt = t.elapsed();
        if back[..] != ping[..] {
            return Err(BenchError::Mismatch {
                what: format!("echo via {addr}"),
                detail: "the echo differs from what was sent".into(),
            });
        }
        if i >= WARMUP {
            times.push(rtt.as_secs_f64() * 1e6);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

/// Outcome of [`connect_rate`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectRate {
    /// Completed exchanges per second.
    pub per_sec: f64,
    /// Completed exchanges.
    pub ok: u64,
    /// Connections that failed (refused, reset, short echo).
    pub failed: u64,
}

/// New connections per second: `workers` loops, each connecting, sending
/// 64 bytes, reading the echo and closing, until `duration` is over.
///
/// # Errors
/// Only when a worker task itself dies; failed connections are counted.
pub async fn connect_rate(
    addr: SocketAddr,
    workers: usize,
    duration: Duration,
) -> Result<ConnectRate, BenchError> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(workers);
    for _ in 0..workers {
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            while Instant::now() < deadline {
                match ping_once(addr).await {
                    Ok(_) => ok += 1,
                    Err(_) => failed += 1,
                }
            }
            (ok, failed)
        }));
    }
    let (mut ok, mut failed) = (0u64, 0u64);
    for task in tasks {
        let (o, f) = task.await.map_err(|e| BenchError::Load {
            what: format!("connection worker via {addr}"),
            source: std::io::Error::other(e),
        })?;
        ok += o;
        failed += f;
    }
    Ok(ConnectRate {
        per_sec: ok as f64 / start.elapsed().as_secs_f64(),
        ok,
        failed,
    })
}

/// One connection and one verified 64-byte echo through `addr`: the check
/// that a subject really relays before it is measured.
///
/// # Errors
/// When the connection fails or the echo differs.
pub async fn probe(addr: SocketAddr) -> std::io::Result<()> {
    ping_once(addr).await.map(drop)
}

/// Connects, sends one 64-byte ping, checks the echo; returns the open stream.
async fn ping_once(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    let _ = stream.set_nodelay(true);
    let ping = [0x5au8; PING];
    stream.write_all(&ping).await?;
    let mut back = [0u8; PING];
    stream.read_exact(&mut back).await?;
    if back != ping {
        return Err(std::io::Error::other("echo differs from the ping"));
    }
    Ok(stream)
}

/// Opens `count` connections to an echo service, each verified with one
/// ping, and returns them open (idle). Closing is dropping them.
///
/// # Errors
/// When any connection cannot be opened or does not echo.
pub async fn hold_idle(addr: SocketAddr, count: usize) -> Result<Vec<TcpStream>, BenchError> {
    let mut held = Vec::with_capacity(count);
    let mut left = count;
    while left > 0 {
        let batch = left.min(OPEN_PARALLEL);
        let mut tasks = Vec::with_capacity(batch);
        for _ in 0..batch {
            tasks.push(tokio::spawn(ping_once(addr)));
        }
        for task in tasks {
            let stream = task
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r)
                .map_err(load_err("idle connection", addr))?;
            held.push(stream);
        }
        left -= batch;
    }
    Ok(held)
}

/// One more verified 64-byte echo on each connection of `held` (at most
/// [`OPEN_PARALLEL`] at a time, each within `timeout`). Returns the
/// connections, still open for the caller to drop, and how many did not
/// answer: connections the subject closed, or never really relayed.
pub async fn ping_held(held: Vec<TcpStream>, timeout: Duration) -> (Vec<TcpStream>, usize) {
    let mut kept = Vec::with_capacity(held.len());
    let mut failed = 0;
    let mut rest = held.into_iter();
    loop {
        let tasks: Vec<_> = rest
            .by_ref()
            .take(OPEN_PARALLEL)
            .map(|mut stream| {
                tokio::spawn(async move {
                    let ping = [0xa5u8; PING];
                    let exchange = async {
                        stream.write_all(&ping).await?;
                        let mut back = [0u8; PING];
                        stream.read_exact(&mut back).await?;
                        Ok::<bool, std::io::Error>(back == ping)
                    };
                    let ok = matches!(tokio::time::timeout(timeout, exchange).await, Ok(Ok(true)));
                    (stream, ok)
                })
            })
            .collect();
        if tasks.is_empty() {
            break;
        }
        for task in tasks {
            match task.await {
                Ok((stream, ok)) => {
                    failed += usize::from(!ok);
                    kept.push(stream);
                }
                Err(_) => failed += 1,
            }
        }
    }
    (kept, failed)
}

/// Opens `count` connections at once (each one verified ping within
/// `timeout`) and returns the open ones and how many failed.
pub async fn burst(addr: SocketAddr, count: usize, timeout: Duration) -> (Vec<TcpStream>, usize) {
    let tasks: Vec<_> = (0..count)
        .map(|_| tokio::spawn(tokio::time::timeout(timeout, ping_once(addr))))
        .collect();
    let mut open = Vec::with_capacity(count);
    let mut failed = 0;
    for task in tasks {
        match task.await {
            Ok(Ok(Ok(stream))) => open.push(stream),
            _ => failed += 1,
        }
    }
    (open, failed)
}

/// The value at percentile `p` (0–100) of ascending `sorted` values, by
/// nearest rank; `None` for no values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// The median of some values (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
        assert_eq!(median(&[]), None);
    }

    #[tokio::test]
    async fn generators_against_the_lab_backends() {
        let echo = crate::echo_backend().await.unwrap();
        let discard = crate::discard_backend().await.unwrap();
        let mbps = bulk(discard, 2, Duration::from_millis(50)).await.unwrap();
        assert!(mbps > 0.0);
        let times = latency(echo, 20).await.unwrap();
        assert_eq!(times.len(), 20);
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        let rate = connect_rate(echo, 2, Duration::from_millis(50))
            .await
            .unwrap();
        assert_eq!(rate.failed, 0);
        assert!(rate.per_sec > 0.0);
        let held = hold_idle(echo, 20).await.unwrap();
        assert_eq!(held.len(), 20);
    }

    #[tokio::test]
    async fn held_connections_are_checked_end_to_end() {
        let echo = crate::echo_backend().await.unwrap();
        let held = hold_idle(echo, 20).await.unwrap();
        let (held, failed) = ping_held(held, Duration::from_secs(20)).await;
        assert_eq!((held.len(), failed), (20, 0));
        // A server that answers the first ping, then closes: every
        // connection passes when opened, and fails the second check.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let once = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; PING];
                    if s.read_exact(&mut buf).await.is_ok() {
                        let _ = s.write_all(&buf).await;
                    }
                });
            }
        });
        let held = hold_idle(once, 5).await.unwrap();
        let (_, failed) = ping_held(held, Duration::from_secs(20)).await;
        assert_eq!(failed, 5);
    }

    #[tokio::test]
    async fn bursts_open_all_at_once_and_count_failures() {
        let echo = crate::echo_backend().await.unwrap();
        let (open, failed) = burst(echo, 50, Duration::from_secs(30)).await;
        assert_eq!((open.len(), failed), (50, 0));
        let port = crate::free_port().unwrap();
        let dead = SocketAddr::from(([127, 0, 0, 1], port));
        let (open, failed) = burst(dead, 3, Duration::from_secs(30)).await;
        assert_eq!((open.len(), failed), (0, 3));
    }

    #[tokio::test]
    async fn a_dead_address_is_an_error() {
        let port = crate::free_port().unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        assert!(latency(addr, 1).await.is_err());
        assert!(hold_idle(addr, 1).await.is_err());
        let rate = connect_rate(addr, 1, Duration::from_millis(20))
            .await
            .unwrap();
        assert!(rate.failed > 0);
        assert_eq!(rate.per_sec, 0.0);
    }
}
