//! The servers behind the lab's exports — echo, digest, discard — and the
//! clients that push traffic through a tunnel and check what comes back.
//! They run in the caller's tokio runtime, on 127.0.0.1.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{io, LabError};

/// A loopback server that echoes every connection, half-close included.
///
/// # Errors
/// When it cannot bind.
pub async fn echo_backend() -> Result<SocketAddr, LabError> {
    echo_backend_at(SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// [`echo_backend`] on a chosen address (e.g. a lab "file server"'s own).
///
/// # Errors
/// When it cannot bind.
pub async fn echo_backend_at(addr: SocketAddr) -> Result<SocketAddr, LabError> {
    serve_backend(addr, |stream| async move {
        let (mut r, mut w) = stream.into_split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
        let _ = w.shutdown().await;
    })
    .await
}

/// A loopback server that reads each connection to EOF (the client's
/// half-close), then answers with the SHA-256 of what it got and closes.
///
/// # Errors
/// When it cannot bind.
pub async fn digest_backend() -> Result<SocketAddr, LabError> {
    digest_backend_at(SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// [`digest_backend`] on a chosen address (e.g. a lab "file server"'s own).
///
/// # Errors
/// When it cannot bind.
pub async fn digest_backend_at(addr: SocketAddr) -> Result<SocketAddr, LabError> {
    serve_backend(addr, |mut stream| async move {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => ctx.update(&buf[..n]),
                Err(_) => return,
            }
        }
        let _ = stream.write_all(ctx.finish().as_ref()).await;
        let _ = stream.shutdown().await;
    })
    .await
}

async fn serve_backend<F, Fut>(addr: SocketAddr, handle: F) -> Result<SocketAddr, LabError>
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind(addr)
        .await
        .map_err(io(format!("bind backend {addr}")))?;
    let addr = listener.local_addr().map_err(io("backend address"))?;
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(handle(stream));
                }
                // e.g. a connection reset while it waited to be accepted:
                // keep serving the others.
                Err(e) => {
                    eprintln!("lab backend: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
        }
    });
    Ok(addr)
}

/// Sends `payload`, half-closes, and returns everything that comes back.
///
/// # Errors
/// When the connection fails.
pub async fn round_trip(addr: SocketAddr, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let stream = TcpStream::connect(addr).await?;
    round_trip_on(stream, payload).await
}

/// [`round_trip`] on a stream the caller connected (e.g. from a chosen source).
///
/// # Errors
/// When the connection fails.
pub async fn round_trip_on(stream: TcpStream, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let _ = stream.set_nodelay(true);
    let (mut r, mut w) = stream.into_split();
    let send = async {
        w.write_all(payload).await?;
        w.shutdown().await
    };
    let recv = async {
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.map(|_| back)
    };
    let (sent, back) = tokio::join!(send, recv);
    sent?;
    back
}

/// Streams `total` bytes of a fixed pattern, half-closes, and returns the
/// answer (with [`digest_backend`]: the SHA-256 of the stream).
///
/// # Errors
/// When the connection fails.
pub async fn stream_bulk(addr: SocketAddr, total: u64) -> std::io::Result<Vec<u8>> {
    let stream = TcpStream::connect(addr).await?;
    let (mut r, mut w) = stream.into_split();
    let chunk = pattern(256 * 1024);
    let send = async {
        let mut left = total;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            w.write_all(&chunk[..n]).await?;
            left -= n as u64;
        }
        w.shutdown().await
    };
    let recv = async {
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.map(|_| back)
    };
    let (sent, back) = tokio::join!(send, recv);
    sent?;
    back
}

/// The SHA-256 that [`stream_bulk`] of `total` bytes should get back.
pub fn bulk_digest(total: u64) -> Vec<u8> {
    let chunk = pattern(256 * 1024);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut left = total;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        ctx.update(&chunk[..n]);
        left -= n as u64;
    }
    ctx.finish().as_ref().to_vec()
}

/// Deterministic, non-repeating-looking test bytes.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// A loopback server that reads each connection to EOF (the client's
/// half-close), counting the bytes without looking at them, then answers the
/// count as a big-endian `u64` and closes. Cheap on purpose: the benchmark
/// measures the path in front of it, not the backend.
///
/// # Errors
/// When it cannot bind.
pub async fn discard_backend() -> Result<SocketAddr, LabError> {
    serve_backend(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        |mut stream| async move {
            let mut buf = vec![0u8; 256 * 1024];
            let mut total: u64 = 0;
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => total += n as u64,
                    Err(_) => return,
                }
            }
            let _ = stream.write_all(&total.to_be_bytes()).await;
            let _ = stream.shutdown().await;
        },
    )
    .await
}
