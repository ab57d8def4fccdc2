//! The gateway's listening sockets: each one taken over from the instance
//! this one replaces (`pairgate run --takeover`, [`super::handover`]) when
//! its address matches, else bound fresh; and the intercept listeners
//! served once the proxy's context exists.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::handover::Inherited;
use super::GatewayError;
use crate::config::{Config, Intercept};
use crate::names::ServiceName;
use crate::proxy::{self, Context};

/// The listener for `key` at `addr`: the one inherited from the instance
/// this one takes over, else a fresh bind.
pub(super) async fn bind(
    config: &Config,
    key: String,
    addr: SocketAddr,
    inherited: &mut Inherited,
) -> Result<TcpListener, GatewayError> {
    let bind_err = |key, source| GatewayError::Bind {
        file: config.path.clone(),
        key,
        addr,
        source,
    };
    if let Some(listener) = inherited
        .claim(addr)
        .map_err(|e| bind_err(key.clone(), e))?
    {
        return Ok(listener);
    }
    proxy::bind(addr, config.limits.max_connections)
        .await
        .map_err(|source| bind_err(key, source))
}

/// The listener of `[[intercept]]` number `i`: inherited, else bound with
/// its capture mode.
pub(super) fn bind_intercept(
    config: &Config,
    i: usize,
    intercept: &Intercept,
    inherited: &mut Inherited,
) -> Result<TcpListener, GatewayError> {
    let bind_err = |source| GatewayError::Bind {
        file: config.path.clone(),
        key: format!("intercept[{i}].listen"),
        addr: intercept.listen,
        source,
    };
    match inherited.claim(intercept.listen).map_err(bind_err)? {
        Some(listener) => Ok(listener),
        None => crate::intercept::bind_listener(
            intercept.listen,
            config.limits.max_connections,
            intercept.capture,
        )
        .map_err(bind_err),
    }
}

/// Every address the gateway listens on: the peer and admin listeners and
/// the tunnels (the intercepts are added by [`serve_intercepts`]).
pub(super) fn own_listeners(
    peer: SocketAddr,
    tunnels: &[(ServiceName, SocketAddr)],
    admin: Option<&TcpListener>,
) -> Vec<SocketAddr> {
    let mut own = vec![peer];
    own.extend(tunnels.iter().map(|(_, a)| *a));
    own.extend(admin.and_then(|l| l.local_addr().ok()));
    own
}

/// Serves each `[[intercept]]` listener; returns (service, bound address).
pub(super) fn serve_intercepts(
    config: &Config,
    ctx: &Arc<Context>,
    listeners: Vec<TcpListener>,
    mut own: Vec<SocketAddr>,
    served: &super::intercepts::Intercepts,
) -> Result<Vec<(ServiceName, SocketAddr)>, GatewayError> {
    let mut addrs = Vec::new();
    for (intercept, listener) in config.intercepts.iter().zip(&listeners) {
        addrs.push((
            intercept.service.clone(),
            listener.local_addr().map_err(GatewayError::Runtime)?,
        ));
    }
    own.extend(addrs.iter().map(|(_, a)| *a));
    for ((intercept, listener), (_, addr)) in config.intercepts.iter().zip(listeners).zip(&addrs) {
        served.serve(ctx, intercept, *addr, listener, &own);
    }
    Ok(addrs)
}
