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

mod admin_endpoint;
mod apply;
mod config_diff;
mod drain;
mod expiry;
mod exports;
pub mod handover;
mod intercepts;
mod listeners;
mod process;
mod reload;
mod replication;
mod served;
mod spool_keys;
mod stop;
mod tls_watch;
mod tunnels;

pub use config_diff::restart_needed;
pub use process::{run, run_with};
pub use reload::{Reload, Reloader, Request as ReloadRequest, WATCH_INTERVAL};

use expiry::{publish_cert_expiry, warn_expiry};
use listeners::{bind, bind_intercept, own_listeners, serve_intercepts};
use process::systemd;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::admin::{self, Board, Metrics, ServiceRole};
use crate::audit::{AuditError, AuditLog, Direction, Event};
use crate::config::{Config, ConfigError};
use crate::names::ServiceName;
use crate::peer::{self, Live, Peer};
use crate::policy::{Policy, PolicyError};
use crate::proxy::{self, Context, Routes};
use crate::shutdown::Shutdown;
use crate::spool::{Spool, SpoolError};
use crate::tls::{Material, Sources, TlsError};
use handover::Inherited;

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
    #[error(
        "{file}: {key} = {addr}: cannot listen: {source} — {}",
        bind_hint(source)
    )]
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
    #[error("takeover: {0}")]
    Handover(#[from] handover::HandoverError),
}

/// What to do when a listener cannot bind: an address this host does not
/// hold is the usual case for active/standby (keepalived brings it later).
pub(super) fn bind_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::AddrNotAvailable => {
            "the address is not on this host: fix it, or, for an address that keepalived moves \
             here, allow binding it first (sysctl -w net.ipv4.ip_nonlocal_bind=1)"
        }
        _ => "is another gateway running, or is the address wrong?",
    }
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
                | GatewayError::Handover(_)
                | GatewayError::Audit(_)
                | GatewayError::Spool(SpoolError::Io { .. } | SpoolError::Locked { .. })
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
    /// The admin endpoint's bound address at start, if `[admin]` is
    /// configured (a reload may move it; `gateway::admin_endpoint` knows
    /// where it is served now).
    pub admin_addr: Option<SocketAddr>,
    pub ctx: Arc<Context>,
    /// The spool, when `[spool]` is configured.
    pub spool: Option<Arc<Spool>>,
    /// Whether this instance serves (for `/readyz`); cleared on stop.
    pub serving: admin::Serving,
    /// The listening sockets a `--takeover` instance may take.
    pub offer: Arc<handover::Offer>,
    /// The `[[tunnel]]` listeners, applied live on SIGHUP.
    pub(crate) tunnels: tunnels::Tunnels,
    /// The `[[intercept]]` listeners, applied live on SIGHUP.
    pub(crate) intercepts: intercepts::Intercepts,
    /// `[admin]`, applied live on SIGHUP.
    admin: admin_endpoint::AdminEndpoint,
    /// The running config ([`Running::config`]); a reload replaces it.
    config: std::sync::RwLock<Arc<Config>>,
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
    start_with(config, policy, material, audit, &mut Inherited::default()).await
}

/// [`start`], serving on the listeners `inherited` from a running instance
/// where the addresses match ([`handover`]); on a takeover the spool starts
/// once the previous instance has let go of it.
///
/// # Errors
/// As [`start`].
pub async fn start_with(
    config: Config,
    policy: Policy,
    material: Material,
    audit: AuditLog,
    inherited: &mut Inherited,
) -> Result<Running, GatewayError> {
    let peer_listener = bind(&config, "peer.listen".into(), config.peer.listen, inherited).await?;
    let mut tunnel_listeners = Vec::new();
    for (i, tunnel) in config.tunnels.iter().enumerate() {
        let key = format!("tunnel[{i}].listen");
        tunnel_listeners.push(bind(&config, key, tunnel.listen, inherited).await?);
    }
    let mut intercept_listeners = Vec::new();
    for (i, intercept) in config.intercepts.iter().enumerate() {
        intercept_listeners.push(bind_intercept(&config, i, intercept, inherited)?);
    }
    let mark = config.socket_mark();
    crate::intercept::socket::check_mark(mark).map_err(|source| GatewayError::Mark {
        file: config.path.clone(),
        mark,
        source,
    })?;
    let admin_listener = match &config.admin {
        Some(admin) => Some(bind(&config, "admin.listen".into(), admin.listen, inherited).await?),
        None => None,
    };
    let offer = handover::Offer::new(
        std::iter::once(&peer_listener)
            .chain(&tunnel_listeners)
            .chain(&intercept_listeners)
            .chain(admin_listener.as_ref()),
    )
    .map_err(GatewayError::Runtime)?;
    let shutdown = Shutdown::new();
    let spool = match &config.spool {
        Some(cfg) => {
            // On a takeover the previous instance hands its spool over
            // before its sockets; its lock may take a moment to go.
            let wait = if inherited.is_takeover() {
                crate::exclusive::Wait::Block
            } else {
                crate::exclusive::Wait::No
            };
            let (cfg, audit) = (cfg.clone(), audit.clone());
            let opened = tokio::task::spawn_blocking(move || Spool::open_with(&cfg, audit, wait))
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
        exports: tokio::sync::watch::Sender::new(Arc::new(exports::of(&config))),
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
    let tunnels = tunnels::Tunnels::default();
    let intercepts = intercepts::Intercepts::default();
    for (tunnel, listener) in config.tunnels.iter().zip(tunnel_listeners) {
        tunnel_addrs.push((
            tunnel.service.clone(),
            listener.local_addr().map_err(GatewayError::Runtime)?,
        ));
        tunnels.serve(&ctx, tunnel, listener);
    }
    let intercept_addrs = serve_intercepts(
        &config,
        &ctx,
        intercept_listeners,
        own_listeners(peer_addr, &tunnel_addrs, admin_listener.as_ref()),
        &intercepts,
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
    let serving = admin::Serving::new();
    // The board outlives a moved or re-added admin endpoint.
    let board = Board::new(
        config.gateway.pool.to_string(),
        config.gateway.peer_pool.to_string(),
        config
            .admin
            .as_ref()
            .map_or(admin::DEFAULT_SYNC_INTERVAL, |a| a.sync_interval),
        peer.link.clone(),
        metrics.clone(),
    )
    .with_spool(replication.clone())
    .with_readiness(audit.clone(), serving.clone());
    let admin =
        admin_endpoint::AdminEndpoint::new(Arc::new(board), metrics.clone(), shutdown.clone());
    if let (Some(listener), Some(cfg)) = (admin_listener, &config.admin) {
        admin
            .serve(cfg.listen, listener)
            .map_err(GatewayError::Runtime)?;
    }
    let admin_addr = admin.addr();
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
    serving.start();
    Ok(Running {
        serving,
        offer: Arc::new(offer),
        tunnels,
        intercepts,
        admin,
        peer_addr,
        tunnel_addrs,
        intercept_addrs,
        admin_addr,
        ctx,
        spool,
        config: std::sync::RwLock::new(Arc::new(config)),
    })
}

impl Running {
    /// The one-line readiness message `pairgate run` prints on stdout.
    pub fn ready_line(&self) -> String {
        let mut line = format!(
            "ready pool={} peer={}",
            self.config().gateway.pool,
            self.peer_addr
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
