//! What the peer listener hands a connection to when the service is not a
//! relayed one: a [`Service`] registered at start (the spool's receiver),
//! so the listener dispatches by ALPN without knowing what the service is.
//! And [`Backlog`]: what waits here for the peer, which the heartbeat
//! reports without knowing where it waits.

use std::future::Future;
use std::pin::Pin;

use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::PeerTcp;
use crate::admin::SpoolDepth;

/// An allowed, audited connection from the peer for a registered service.
pub struct Accepted {
    /// The peer's pool, as its certificate names it.
    pub peer_pool: String,
    /// Cancelled when the connection must close: its peer was revoked, or
    /// the gateway stops hard.
    pub closed: CancellationToken,
}

/// How a served connection ended, for its `close` record.
#[derive(Debug, Default)]
pub struct Served {
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Why it ended early, if it did.
    pub error: Option<String>,
}

/// A future a [`Service`] returns.
pub type Serving<'a> = Pin<Box<dyn Future<Output = Served> + Send + 'a>>;

/// A service the peer listener hands allowed connections to.
pub trait Service: Send + Sync {
    /// Serves one connection to its end.
    fn serve(&self, stream: TlsStream<PeerTcp>, accepted: Accepted) -> Serving<'_>;
}

/// What waits here to be sent to the peer.
pub trait Backlog: Send + Sync {
    /// The waiting files; blocking (reads a folder).
    fn outbound(&self) -> SpoolDepth;
}
