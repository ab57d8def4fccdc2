//! A minimal HTTP/1.1 GET for the admin endpoint (loopback, small JSON or
//! text), used by `pairgate status` and the tests. One connection per
//! request, bounded in time and size.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::status::Status;

/// The whole exchange (connect, request, body) must finish within this.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest body accepted.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Why the admin endpoint could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to the admin endpoint {addr}: {source} — is the gateway running, and is admin.listen right?")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the admin endpoint {addr} did not answer within {} s — is something else listening on admin.listen?", TIMEOUT.as_secs())]
    Timeout { addr: SocketAddr },
    #[error("HTTP exchange with the admin endpoint {addr} failed: {message} — is something else listening on admin.listen?")]
    Http { addr: SocketAddr, message: String },
    #[error("the admin endpoint {addr} answered {path} with HTTP {status} — is it a pairgate gateway of this version?")]
    Status {
        addr: SocketAddr,
        path: String,
        status: u16,
    },
    #[error("the admin endpoint {addr} sent a /status that is not valid: {source} — is pairgate status the same version as the gateway?")]
    Decode {
        addr: SocketAddr,
        #[source]
        source: serde_json::Error,
    },
}

/// An answer from the admin endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    /// The body as text (lossy UTF-8).
    pub body: String,
}

/// `GET path` on `addr`.
///
/// # Errors
/// Connect failure, timeout, or a broken HTTP exchange.
pub async fn get(addr: SocketAddr, path: &str) -> Result<Reply, ClientError> {
    tokio::time::timeout(TIMEOUT, exchange(addr, path))
        .await
        .unwrap_or(Err(ClientError::Timeout { addr }))
}

async fn exchange(addr: SocketAddr, path: &str) -> Result<Reply, ClientError> {
    let http = |e: &dyn std::fmt::Display| ClientError::Http {
        addr,
        message: e.to_string(),
    };
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|source| ClientError::Connect { addr, source })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| http(&e))?;
    let driver = tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| http(&e))?;
    let response = sender.send_request(request).await.map_err(|e| http(&e))?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| http(&*e))?
        .to_bytes();
    driver.abort();
    Ok(Reply {
        status,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// `GET /status`, returning the raw JSON and its parsed form.
///
/// # Errors
/// As [`get`], a non-200 answer, or JSON that is not a [`Status`].
pub async fn status(addr: SocketAddr) -> Result<(String, Status), ClientError> {
    let Reply { status, body, .. } = get(addr, "/status").await?;
    if status != 200 {
        return Err(ClientError::Status {
            addr,
            path: "/status".into(),
            status,
        });
    }
    let parsed =
        serde_json::from_str(&body).map_err(|source| ClientError::Decode { addr, source })?;
    Ok((body, parsed))
}
