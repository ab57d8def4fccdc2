//! One site gateway: wiring config, policy, TLS, the peer, the proxy, the
//! spool and audit for `pairgate run`.
//!
//! [`start`] builds each piece once, lower layers first: the [`Peer`]
//! (who and where the paired gateway is, the dialer, the link), then the
//! spool on it, then the proxy's [`Context`] with its routes (exports,
//! carried destinations, the spool's receiver registered for `spool`).
//!
//! Start-up validates everything before binding anything (a gateway that
//! starts is a gateway whose certificates chain, whose key matches and whose
//! policy pairs it with its peer). Reload builds a complete new snapshot of
//! policy and TLS material and publishes it only if it is valid; connections
//! already open keep the snapshot they started with.

mod config_diff;
mod expiry;
mod process;
mod reload;
mod replication;
mod spool_keys;
mod tls_watch;

pub use config_diff::restart_needed;
pub use process::run;
pub use reload::{Reload, Reloader, Request as ReloadRequest, WATCH_INTERVAL};

use expiry::{publish_cert_expiry, warn_expiry};
use process::systemd;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::admin::{self, Board, Metrics, ServiceRole};
use crate::audit::{AuditError, AuditLog, Direction, Event};
use crate::config::{Config, ConfigError};
use crate::names::ServiceName;
use crate::peer::{self, Live, Peer};
use crate::policy::{Policy, PolicyError};
use crate::proxy::{self, Context, Routes, TunnelSpec};
use crate::shutdown::Shutdown;
use crate::spool::{Spool, SpoolError};
use crate::tls::{Material, Sources, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("audit log: {0}")]
    Audit(#[from] AuditError),
    #[error("{file}: {key} = {addr}: cannot listen: {source} — is another gateway running, or is the address wrong?")]
    Bind {
        file: PathBuf,
        key: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{}: gateway.mark: cannot set SO_MARK {mark:#x} on the gateway's sockets: {source} — \
             interception marks the gateway's own connections so nftables can exempt them: grant \
             CAP_NET_ADMIN (systemd: AmbientCapabilities=CAP_NET_ADMIN), or set mark = 0 and \
             exempt the gateway's user in the ruleset (meta skuid \"pairgate\" return)", file.display())]
    Mark {
        file: PathBuf,
        mark: u32,
        source: std::io::Error,
    },
    #[error("spool: {0}")]
    Spool(#[from] SpoolError),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

impl GatewayError {
    /// Whether the error is about the operator's input (exit 2) rather than
    /// the environment (exit 1).
    pub fn is_invalid_input(&self) -> bool {
        !matches!(
            self,
            GatewayError::Bind { .. }
                | GatewayError::Mark { .. }
                | GatewayError::Runtime(_)
                | GatewayError::Audit(_)
                | GatewayError::Spool(SpoolError::Io { .. })
        )
    }
}

/// The TLS file paths of a config.
pub fn tls_sources(config: &Config) -> Sources {
    Sources {
        cert: config.tls.cert.clone(),
        key: config.tls.key.clone(),
        ca: config.tls.ca.clone(),
        crl: config.tls.crl.clone(),
        crl_kept: Some(crate::tls::crl::kept_path(&config.audit.path)),
        crl_overdue: config.tls.crl_overdue,
    }
}

/// Loads and validates everything `run` needs, binding nothing: the work of
/// `pairgate check`.
///
/// # Errors
/// The first invalid file, with its name and the fix.
pub fn load(path: &Path) -> Result<(Config, Policy, Material), GatewayError> {
    let (config, policy) = crate::config::load_with_policy(path)?;
    if let Some(spool) = &config.spool {
        // A missing, malformed or non-private spool key is caught here, not
        // only when the spool first opens.
        for key in std::iter::once(&spool.key).chain(&spool.old_keys) {
            crate::spool::MasterKey::load_key_file(key).map_err(crate::spool::SpoolError::from)?;
            crate::pki::check_key_permissions(key).map_err(TlsError::from)?;
        }
    }
    let material = Material::load(&tls_sources(&config), &config.gateway.pool)?;
    Ok((config, policy, material))
}

/// A started gateway: its bound addresses and the handle to stop it.
pub struct Running {
    pub peer_addr: SocketAddr,
    /// (service, bound address) of each tunnel listener, in config order.
    pub tunnel_addrs: Vec<(ServiceName, SocketAddr)>,
    /// (service, bound address) of each intercept listener, in config order.
    pub intercept_addrs: Vec<(ServiceName, SocketAddr)>,
    /// The admin endpoint's bound address, if `[admin]` is configured.
    pub admin_addr: Option<SocketAddr>,
    pub ctx: Arc<Context>,
    /// The spool, when `[spool]` is configured.
    pub spool: Option<Arc<Spool>>,
    config: Config,
}

async fn bind(config: &Config, key: String, addr: SocketAddr) -> Result<TcpListener, GatewayError> {
    proxy::bind(addr, config.limits.max_connections)
        .await
        .map_err(|source| GatewayError::Bind {
            file: config.path.clone(),
            key,
            addr,
            source,
        })
}

/// Binds every listener and starts serving. Must run inside a tokio runtime.
///
/// # Errors
/// [`GatewayError::Bind`] when a listener address is taken.
pub async fn start(
    config: Config,
    policy: Policy,
    material: Material,
    audit: AuditLog,
) -> Result<Running, GatewayError> {
    let peer_listener = bind(&config, "peer.listen".into(), config.peer.listen).await?;
    let mut tunnel_listeners = Vec::new();
    for (i, tunnel) in config.tunnels.iter().enumerate() {
        tunnel_listeners.push(bind(&config, format!("tunnel[{i}].listen"), tunnel.listen).await?);
    }
    let mut intercept_listeners = Vec::new();
    for (i, intercept) in config.intercepts.iter().enumerate() {
        let key = format!("intercept[{i}].listen");
        let listener = crate::intercept::bind_listener(
            intercept.listen,
            config.limits.max_connections,
            intercept.capture,
        )
        .map_err(|source| GatewayError::Bind {
            file: config.path.clone(),
            key,
            addr: intercept.listen,
            source,
        })?;
        intercept_listeners.push(listener);
    }
    let exports: HashMap<ServiceName, String> = config
        .exports
        .iter()
        .filter_map(|e| Some((e.service.clone(), e.target.fixed()?.to_owned())))
        .collect();
    let carried: HashMap<ServiceName, crate::intercept::Destinations> = config
        .exports
        .iter()
        .filter_map(|e| match &e.target {
            crate::config::ExportTarget::Carried(d) => Some((e.service.clone(), d.clone())),
            crate::config::ExportTarget::Fixed(_) => None,
        })
        .collect();
    let mark = config.socket_mark();
    crate::intercept::socket::check_mark(mark).map_err(|source| GatewayError::Mark {
        file: config.path.clone(),
        mark,
        source,
    })?;
    let admin_listener = match &config.admin {
        Some(admin) => Some(bind(&config, "admin.listen".into(), admin.listen).await?),
        None => None,
    };
    let shutdown = Shutdown::new();
    let spool = match &config.spool {
        Some(cfg) => {
            let (cfg, audit) = (cfg.clone(), audit.clone());
            let opened = tokio::task::spawn_blocking(move || Spool::open(&cfg, audit))
                .await
                .map_err(|e| GatewayError::Runtime(std::io::Error::other(e)))?;
            Some(opened?)
        }
        None => None,
    };
    let metrics = Arc::new(Metrics::new());
    metrics.declare_services(
        config
            .admin
            .as_ref()
            .map_or(admin::DEFAULT_SYNC_INTERVAL, |a| a.sync_interval),
        &configured_services(&config),
    );
    publish_cert_expiry(&metrics, &material);
    let peer = Arc::new(Peer::new(peer::Settings {
        local_pool: config.gateway.pool.clone(),
        peer_pool: config.gateway.peer_pool.clone(),
        peer_connect: config.peer.connect.clone(),
        mark,
        limits: config.limits.clone(),
        live: Live {
            policy: Arc::new(policy),
            material: Arc::new(material),
        },
        audit: audit.clone(),
        shutdown: shutdown.clone(),
        metrics: metrics.clone(),
    }));
    let mut routes = Routes {
        exports,
        carried,
        ..Routes::default()
    };
    if let Some(spool) = &spool {
        routes.services.insert(
            ServiceName::known(crate::tls::SPOOL_SERVICE),
            spool.receiver(&peer),
        );
        routes.backlog = Some(spool.clone());
        spool.spawn(&peer);
    }
    let ctx = Arc::new(Context::new(peer.clone(), routes));

    let peer_addr = peer_listener.local_addr().map_err(GatewayError::Runtime)?;
    shutdown.spawn(proxy::serve(
        peer_listener,
        ctx.clone(),
        Direction::Inbound,
        proxy::handle_inbound,
    ));
    let mut tunnel_addrs = Vec::new();
    for (tunnel, listener) in config.tunnels.iter().zip(tunnel_listeners) {
        tunnel_addrs.push((
            tunnel.service.clone(),
            listener.local_addr().map_err(GatewayError::Runtime)?,
        ));
        let spec = Arc::new(TunnelSpec {
            service: tunnel.service.clone(),
            allow_sources: tunnel.allow_sources.clone(),
        });
        shutdown.spawn(proxy::serve(
            listener,
            ctx.clone(),
            Direction::Outbound,
            move |ctx, tcp, addr, slot| proxy::handle_outbound(ctx, spec.clone(), tcp, addr, slot),
        ));
    }
    let intercept_addrs = serve_intercepts(
        &config,
        &ctx,
        intercept_listeners,
        own_listeners(peer_addr, &tunnel_addrs, admin_listener.as_ref()),
    )?;
    let replication = Arc::new(replication::Replication {
        peer: peer.clone(),
        spool: spool.clone(),
        peer_backlog: ctx.peer_backlog.clone(),
    });
    // Sampled at each scrape, not on a timer: an idle gateway does no work
    // for them. Weak: the metrics must not keep the replication view alive.
    let weak = Arc::downgrade(&replication);
    metrics.on_scrape(move || {
        if let Some(replication) = weak.upgrade() {
            replication::refresh_metrics(&replication);
        }
    });
    shutdown.spawn(replication::follow_peer_skew(
        replication.clone(),
        std::time::Duration::from_secs(2),
    ));
    let mut admin_addr = None;
    if let (Some(listener), Some(admin)) = (admin_listener, &config.admin) {
        admin_addr = Some(listener.local_addr().map_err(GatewayError::Runtime)?);
        let board = Board::new(
            config.gateway.pool.to_string(),
            config.gateway.peer_pool.to_string(),
            admin.sync_interval,
            peer.link.clone(),
            metrics.clone(),
        )
        .with_spool(replication.clone());
        shutdown.spawn(admin::serve(
            listener,
            metrics.clone(),
            Arc::new(board),
            shutdown.stop_token().clone(),
        ));
    }
    peer.audit.record(Event::GatewayStart {
        pool: config.gateway.pool.to_string(),
        peer_pool: config.gateway.peer_pool.to_string(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    });
    reload::start_crls(&peer.snapshot().material, &peer.audit, &peer.metrics);
    shutdown.spawn(proxy::control::heartbeat(
        ctx.clone(),
        config.peer.heartbeat,
    ));
    tracing::info!(pool = %config.gateway.pool, peer_pool = %config.gateway.peer_pool, %peer_addr, "gateway started");
    Ok(Running {
        peer_addr,
        tunnel_addrs,
        intercept_addrs,
        admin_addr,
        ctx,
        spool,
        config,
    })
}

impl Running {
    /// The one-line readiness message `pairgate run` prints on stdout.
    pub fn ready_line(&self) -> String {
        let mut line = format!(
            "ready pool={} peer={}",
            self.config.gateway.pool, self.peer_addr
        );
        for (service, addr) in &self.tunnel_addrs {
            line.push_str(&format!(" tunnel.{service}={addr}"));
        }
        for (service, addr) in &self.intercept_addrs {
            line.push_str(&format!(" intercept.{service}={addr}"));
        }
        if let Some(addr) = self.admin_addr {
            line.push_str(&format!(" admin={addr}"));
        }
        line
    }

    /// Graceful stop: stop accepting, let connections finish within the
    /// grace period, record the stop and flush the audit log.
    pub async fn stop(&self, reason: &str) {
        let clean = self
            .ctx
            .peer
            .shutdown
            .drain(self.config.limits.shutdown_grace)
            .await;
        if !clean {
            tracing::warn!("grace period over; remaining connections were closed");
        }
        self.ctx.peer.audit.record(Event::GatewayStop {
            reason: reason.to_owned(),
        });
        let audit = self.ctx.peer.audit.clone();
        let _ = tokio::task::spawn_blocking(move || audit.flush()).await;
    }
}

/// Every address the gateway listens on: the peer and admin listeners and
/// the tunnels (the intercepts are added by [`serve_intercepts`]).
fn own_listeners(
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
fn serve_intercepts(
    config: &Config,
    ctx: &Arc<Context>,
    listeners: Vec<TcpListener>,
    mut own: Vec<SocketAddr>,
) -> Result<Vec<(ServiceName, SocketAddr)>, GatewayError> {
    let mut addrs = Vec::new();
    for (intercept, listener) in config.intercepts.iter().zip(&listeners) {
        addrs.push((
            intercept.service.clone(),
            listener.local_addr().map_err(GatewayError::Runtime)?,
        ));
    }
    own.extend(addrs.iter().map(|(_, a)| *a));
    for (intercept, listener) in config.intercepts.iter().zip(listeners) {
        let spec = Arc::new(proxy::InterceptSpec {
            service: intercept.service.clone(),
            allow_sources: intercept.allow_sources.clone(),
            destinations: intercept.destinations.clone(),
            capture: intercept.capture,
            own: own.clone(),
        });
        ctx.peer.shutdown.spawn(proxy::serve(
            listener,
            ctx.clone(),
            Direction::Outbound,
            move |ctx, tcp, addr, slot| {
                proxy::handle_intercepted(ctx, spec.clone(), tcp, addr, slot)
            },
        ));
    }
    Ok(addrs)
}

/// Each tunnel and intercept (outbound) and export (inbound) of the config,
/// in config order.
fn configured_services(config: &Config) -> Vec<(ServiceRole, String)> {
    let tunnels = config
        .tunnels
        .iter()
        .map(|t| (ServiceRole::Tunnel, t.service.to_string()))
        .chain(
            config
                .intercepts
                .iter()
                .map(|i| (ServiceRole::Tunnel, i.service.to_string())),
        );
    let exports = config
        .exports
        .iter()
        .map(|e| (ServiceRole::Export, e.service.to_string()));
    tunnels.chain(exports).collect()
}
