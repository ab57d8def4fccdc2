//! One site gateway: wiring config, policy, TLS, proxy and audit for
//! `pairgate run`.
//!
//! Start-up validates everything before binding anything (a gateway that
//! starts is a gateway whose certificates chain, whose key matches and whose
//! policy pairs it with its peer). Reload builds a complete new snapshot of
//! policy and TLS material and publishes it only if it is valid; connections
//! already open keep the snapshot they started with.

mod config_diff;
pub mod handover;
mod reload;
mod replication;
mod spool_keys;
mod tunnels;

pub use config_diff::restart_needed;
pub use reload::{Reload, Reloader, Request as ReloadRequest, WATCH_INTERVAL};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::net::TcpListener;

use crate::admin::{self, Board, CertEntry, CertKind, Metrics, ServiceRole};
use crate::audit::{AuditError, AuditLog, Direction, Event};
use crate::config::{Config, ConfigError};
use crate::names::ServiceName;
use crate::peer::{self, Live, Peer};
use crate::pki::{self, Expiry, EXPIRY_WARNING_DAYS};
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
    #[error("takeover: {0}")]
    Handover(#[from] handover::HandoverError),
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
    /// The admin endpoint's bound address, if `[admin]` is configured.
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
    config: Config,
}

/// The listener for `key` at `addr`: the one inherited from the instance
/// this one takes over, else a fresh bind.
async fn bind(
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
        let key = format!("intercept[{i}].listen");
        let bind_err = |source| GatewayError::Bind {
            file: config.path.clone(),
            key: key.clone(),
            addr: intercept.listen,
            source,
        };
        let listener = match inherited.claim(intercept.listen).map_err(bind_err)? {
            Some(listener) => listener,
            None => crate::intercept::bind_listener(
                intercept.listen,
                config.limits.max_connections,
                intercept.capture,
            )
            .map_err(bind_err)?,
        };
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
    let tunnels = tunnels::Tunnels::default();
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
    )?;
    let replication = Arc::new(replication::Replication {
        peer: peer.clone(),
        spool: spool.clone(),
        peer_backlog: ctx.peer_backlog.clone(),
    });
    shutdown.spawn(replication::publish(
        replication.clone(),
        Duration::from_secs(2),
    ));
    let mut admin_addr = None;
    let serving = admin::Serving::new();
    if let (Some(listener), Some(admin)) = (admin_listener, &config.admin) {
        admin_addr = Some(listener.local_addr().map_err(GatewayError::Runtime)?);
        let board = Board::new(
            config.gateway.pool.to_string(),
            config.gateway.peer_pool.to_string(),
            admin.sync_interval,
            peer.link.clone(),
            metrics.clone(),
        )
        .with_spool(replication.clone())
        .with_readiness(audit.clone(), serving.clone());
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
    serving.start();
    Ok(Running {
        serving,
        offer: Arc::new(offer),
        tunnels,
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
        self.serving.stop();
        self.offer.withdraw();
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

/// `pairgate run`: load, start, serve until SIGTERM/SIGINT; SIGHUP reloads.
///
/// # Errors
/// Invalid input before start, or a listener that cannot bind.
pub fn run(path: &Path) -> Result<(), GatewayError> {
    run_with(path, false)
}

/// `pairgate run [--takeover]`: with `takeover`, the listening sockets are
/// taken from the instance running with the same config ([`handover`]),
/// which then drains and exits.
///
/// # Errors
/// As [`run`], and [`GatewayError::Handover`] when there is no running
/// instance to take over from.
pub fn run_with(path: &Path, takeover: bool) -> Result<(), GatewayError> {
    let (config, policy, material) = load(path)?;
    let handover_path = handover::socket_path(&config.audit.path);
    let mut inherited = if takeover {
        match Inherited::take(&handover_path) {
            Ok(inherited) => inherited,
            Err(handover::HandoverError::Connect { source, .. })
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                tracing::info!(socket = %handover_path.display(), "no running instance to take over from: starting normally");
                Inherited::default()
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        Inherited::default()
    };
    if running_as_root() {
        tracing::warn!(
            "running as root: run pairgate as an unprivileged user (with CAP_NET_BIND_SERVICE only if it must bind port 445); see docs/security.md"
        );
    }
    let wait = if inherited.is_takeover() {
        crate::exclusive::Wait::Block
    } else {
        crate::exclusive::Wait::No
    };
    let audit = AuditLog::open_with(&config.audit.path, wait)?;
    audit.health().set_on_failure(config.audit.on_failure);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(GatewayError::Runtime)?;
    runtime.block_on(async move {
        let running = Arc::new(start_with(config, policy, material, audit, &mut inherited).await?);
        let (reloader, requests) = reload::reloader();
        let stop = running.ctx.peer.shutdown.stop_token().clone();
        running
            .ctx
            .peer
            .shutdown
            .spawn(reload::own(running.clone(), requests, stop));
        running
            .ctx
            .peer
            .shutdown
            .spawn(reload::watch(running.clone(), reloader.clone()));
        if inherited.is_takeover() {
            // The previous instance stops accepting and drains once told.
            if let Err(e) = inherited.ready() {
                tracing::warn!(error = %e, "cannot tell the previous instance to drain; it keeps serving too");
            } else {
                tracing::info!("took over the listening sockets; the previous instance drains");
            }
        }
        let handed_over = Arc::new(tokio::sync::Notify::new());
        match handover::listen(&handover_path) {
            Ok(listener) => {
                running.ctx.peer.shutdown.spawn(serve_handover(
                    listener,
                    handover_path,
                    running.offer.clone(),
                    running.spool.clone(),
                    handed_over.clone(),
                    running.ctx.peer.shutdown.stop_token().clone(),
                ));
            }
            Err(e) => tracing::warn!(error = %e, "no takeover socket: an upgrade will need a restart"),
        }
        println!("{}", running.ready_line());
        systemd(&[NotifyState::Ready, NotifyState::Status("serving")]);
        let reason = tokio::select! {
            reason = wait_for_signals(&reloader) => reason.map_err(GatewayError::Runtime)?,
            () = handed_over.notified() => "handover",
        };
        systemd(&[NotifyState::Stopping]);
        running.stop(reason).await;
        Ok(())
    })
}

/// Answers takeover requests on the handover socket until one succeeds
/// (then `handed_over` is notified and this instance stops) or it stops.
async fn serve_handover(
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
    offer: Arc<handover::Offer>,
    spool: Option<Arc<Spool>>,
    handed_over: Arc<tokio::sync::Notify>,
    stop: tokio_util::sync::CancellationToken,
) {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "no takeover socket: an upgrade will need a restart");
            return;
        }
    };
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted.and_then(|(s, _)| s.into_std()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "takeover socket accept failed");
                continue;
            }
        };
        let (path, offer, handed) = (path.clone(), offer.clone(), spool.clone());
        let runtime = tokio::runtime::Handle::current();
        let answered = tokio::task::spawn_blocking(move || {
            stream.set_nonblocking(false)?;
            // The new instance opens the spool before it serves: hand it
            // over (tasks stopped, lock released) before the sockets.
            let prepare = || {
                if let Some(spool) = &handed {
                    runtime.block_on(spool.hand_over());
                }
            };
            handover::answer(stream, &path, &offer, prepare)
                .map_err(|e| std::io::Error::other(e.to_string()))
        })
        .await;
        match answered {
            Ok(Ok(true)) => {
                tracing::info!("a new instance took over the listening sockets: draining");
                handed_over.notify_one();
                return;
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "takeover failed; still serving"),
            Err(e) => tracing::warn!(error = %e, "takeover task failed; still serving"),
        }
        if spool.as_ref().is_some_and(|s| s.stop.is_cancelled()) {
            tracing::error!("the spool was handed to a takeover that failed: tunnels are still served here, but the spool runs again only after a restart (or a successful takeover)");
        }
    }
}

#[cfg(unix)]
async fn wait_for_signals(reloader: &Reloader) -> std::io::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok("SIGTERM"),
            _ = int.recv() => return Ok("SIGINT"),
            _ = hup.recv() => reloader.request(reload::Request::All),
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signals(_reloader: &Reloader) -> std::io::Result<&'static str> {
    tokio::signal::ctrl_c().await?;
    Ok("ctrl-c")
}

/// Whether this process runs as root (uid 0), read from /proc without libc.
fn running_as_root() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }
    #[cfg(not(unix))]
    {
        false
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

/// Publishes our own and the trusted CA certificates' expiry (metrics and
/// `/status`), and warns in the log from 30 days before either expires.
fn publish_cert_expiry(metrics: &Metrics, material: &Material) {
    let own = CertEntry {
        pool: Some(material.identity.pool.clone()),
        sha256: material.identity.sha256.clone(),
        not_after: material.identity.not_after,
    };
    metrics.replace_certs(CertKind::Own, &[own]);
    let cas: Vec<CertEntry> = material
        .ca_expiry
        .iter()
        .map(|(sha256, not_after)| CertEntry {
            pool: None,
            sha256: sha256.clone(),
            not_after: *not_after,
        })
        .collect();
    metrics.replace_certs(CertKind::Ca, &cas);
    metrics.replace_crls(&material.crl_next_updates());
    metrics.publish_crls(crl_status(material));
    warn_expiry(material);
}

/// The CRL row of `/status` (overdue flags are judged when it is read).
fn crl_status(material: &Material) -> Option<admin::CrlStatus> {
    if material.crls.is_empty() && material.crl_refused.is_none() {
        return None;
    }
    Some(admin::CrlStatus {
        crl_overdue: material.crl_overdue.as_str().to_owned(),
        overdue: false,
        refused: material.crl_refused.clone(),
        crls: material
            .crls
            .iter()
            .map(|c| admin::CrlRow {
                issuer: c.issuer.clone(),
                number: c.number,
                next_update: c.next_update,
                overdue: false,
            })
            .collect(),
    })
}

/// Warns in the log about our own and the trusted CA certificates when they
/// expire within [`EXPIRY_WARNING_DAYS`] (or have expired).
fn warn_expiry(material: &Material) {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let judge = |not_after: i64| {
        let days_left = pki::days_left_unix(not_after, now);
        let soon = Expiry::of_days_left(days_left, EXPIRY_WARNING_DAYS).needs_attention();
        soon.then_some(days_left)
    };
    if let Some(own) = judge(material.identity.not_after) {
        tracing::warn!(days_left = own, sha256 = %material.identity.sha256, "own certificate expires soon: run `pairgate cert rotate`");
    }
    for (sha256, not_after) in &material.ca_expiry {
        if let Some(left) = judge(*not_after) {
            tracing::warn!(days_left = left, %sha256, "trusted CA certificate expires soon: run `pairgate ca rotate`");
        }
    }
}

/// Tells systemd (`Type=notify`) about readiness, reloads and stopping; a
/// no-op when not started by systemd.
fn systemd(state: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}
