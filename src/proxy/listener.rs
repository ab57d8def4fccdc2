//! The accept loop shared by every listener: a cap on concurrent connections,
//! backoff when accepting fails (e.g. out of file descriptors), one tracked
//! task per connection, and a clean stop when the gateway shuts down.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;

use super::Context;
use crate::audit::Direction;
use crate::backoff::Backoff;
use crate::peer::pending::PendingGuard;
use crate::peer::Track;
use crate::policy::{Decision, DenyReason};

/// Binds a listener whose accept queue holds `backlog` connections (the
/// kernel caps it at `net.core.somaxconn`).
///
/// The usual 1,024 is too short for a burst: 2,000 clients connecting at
/// once to a busy gateway overflowed it, and the kernel dropped their
/// handshakes silently — clients then waited in SYN retransmission for up
/// to two minutes, with nothing in either audit log. Pass
/// `limits.max_connections`: the queue then holds whatever the cap admits.
///
/// # Errors
/// When the address cannot be bound.
pub async fn bind(addr: SocketAddr, backlog: usize) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(u32::try_from(backlog).unwrap_or(u32::MAX).max(128))
}

/// What the accept loop grants a connection: its slot under the global cap
/// and, on the peer listener, its place among its source's pending
/// handshakes (taken here, in accept order).
pub struct Admission {
    pub slot: OwnedSemaphorePermit,
    pub pending: Option<PendingGuard>,
}

/// Accepts until shutdown, handing each connection with its admission to `handle`.
pub async fn serve<H, Fut>(
    listener: TcpListener,
    ctx: Arc<Context>,
    direction: Direction,
    handle: H,
) where
    H: Fn(Arc<Context>, TcpStream, SocketAddr, Admission) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let stop = ctx.peer.shutdown.stop_token().clone();
    serve_until(listener, ctx, direction, stop, handle).await;
}

/// [`serve`] until `stop` (a child of the gateway's stop token: a listener
/// a live reload removes stops alone; its connections go on).
pub async fn serve_until<H, Fut>(
    listener: TcpListener,
    ctx: Arc<Context>,
    direction: Direction,
    stop: tokio_util::sync::CancellationToken,
    handle: H,
) where
    H: Fn(Arc<Context>, TcpStream, SocketAddr, Admission) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut backoff = Backoff::new(Duration::from_millis(5), Duration::from_secs(1));
    let mut arrivals = 0u64;
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, addr) = match accepted {
            Ok(pair) => {
                backoff.reset();
                pair
            }
            Err(e) => {
                // Usually EMFILE/ENFILE: wait for connections to close.
                let wait = backoff.next_delay();
                tracing::warn!(error = %e, backoff_ms = wait.as_millis() as u64, "accept failed");
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        crate::peer::keepalive::enable(&stream);
        match ctx.slots.try_acquire() {
            Some(slot) => {
                arrivals += 1;
                let pending = (direction == Direction::Inbound)
                    .then(|| ctx.peer.pending.enter(addr.ip(), arrivals, Instant::now()));
                let admission = Admission { slot, pending };
                ctx.peer
                    .shutdown
                    .spawn(handle(ctx.clone(), stream, addr, admission));
            }
            None => {
                let track = Track::new(&ctx.peer, direction, addr);
                track.decide(
                    &ctx.peer,
                    Decision::Deny(DenyReason::TooManyConnections),
                    None,
                );
                drop(stream);
            }
        }
    }
}
