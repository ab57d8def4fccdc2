//! The `pairgate run` process around a started gateway: the runtime, the
//! signals (SIGTERM/SIGINT stop, SIGHUP reloads), the takeover socket
//! (`run --takeover` takes the listeners of the running instance, which
//! then drains: [`handover`]) and systemd's `Type=notify` protocol.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sd_notify::NotifyState;

use super::handover::{self, Inherited};
use super::{load, reload, start_with, GatewayError, Reloader};
use crate::audit::AuditLog;
use crate::spool::Spool;

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
        // Before "ready": a SIGHUP's default action ends the process, and a
        // service manager may send one (`systemctl reload`) the moment it
        // is told the gateway is ready.
        let mut signals = Signals::install().map_err(GatewayError::Runtime)?;
        println!("{}", running.ready_line());
        systemd(&[NotifyState::Ready, NotifyState::Status("serving")]);
        let reason = tokio::select! {
            reason = signals.wait(&reloader) => reason.map_err(GatewayError::Runtime)?,
            () = handed_over.notified() => "handover",
        };
        systemd(&[NotifyState::Stopping]);
        if reason != "handover" {
            running.leave_rotation(signals.wait(&reloader)).await;
        }
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

/// The signals `run` answers: SIGTERM/SIGINT stop, SIGHUP reloads.
#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    /// Takes the signals over from their default actions (which end the
    /// process); one that arrives from now on waits for [`Signals::wait`].
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Requests a reload for each SIGHUP until a stop signal; returns its name.
    async fn wait(&mut self, reloader: &Reloader) -> std::io::Result<&'static str> {
        loop {
            tokio::select! {
                _ = self.term.recv() => return Ok("SIGTERM"),
                _ = self.int.recv() => return Ok("SIGINT"),
                _ = self.hup.recv() => reloader.request(reload::Request::All),
            }
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals)
    }

    async fn wait(&mut self, _reloader: &Reloader) -> std::io::Result<&'static str> {
        tokio::signal::ctrl_c().await?;
        Ok("ctrl-c")
    }
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

/// Tells systemd (`Type=notify`) about readiness, reloads and stopping; a
/// no-op when not started by systemd.
pub(super) fn systemd(state: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}
