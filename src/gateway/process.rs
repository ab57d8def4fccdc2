//! The `pairgate run` process around a started gateway: the runtime, the
//! signals (SIGTERM/SIGINT stop, SIGHUP reloads) and systemd's `Type=notify`
//! protocol.

use std::path::Path;
use std::sync::Arc;

use sd_notify::NotifyState;

use super::{load, reload, start, GatewayError, Reloader};
use crate::audit::AuditLog;

/// `pairgate run`: load, start, serve until SIGTERM/SIGINT; SIGHUP reloads.
///
/// # Errors
/// Invalid input before start, or a listener that cannot bind.
pub fn run(path: &Path) -> Result<(), GatewayError> {
    let (config, policy, material) = load(path)?;
    if running_as_root() {
        tracing::warn!(
            "running as root: run pairgate as an unprivileged user (with CAP_NET_BIND_SERVICE only if it must bind port 445); see docs/security.md"
        );
    }
    let audit = AuditLog::open(&config.audit.path)?;
    audit.health().set_on_failure(config.audit.on_failure);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(GatewayError::Runtime)?;
    runtime.block_on(async move {
        let running = Arc::new(start(config, policy, material, audit).await?);
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
        println!("{}", running.ready_line());
        systemd(&[NotifyState::Ready, NotifyState::Status("serving")]);
        let reason = wait_for_signals(&reloader)
            .await
            .map_err(GatewayError::Runtime)?;
        systemd(&[NotifyState::Stopping]);
        running.stop(reason).await;
        Ok(())
    })
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

/// Tells systemd (`Type=notify`) about readiness, reloads and stopping; a
/// no-op when not started by systemd.
pub(super) fn systemd(state: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}
