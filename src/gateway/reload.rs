//! Live reload: SIGHUP re-reads the config file, then reloads policy and
//! TLS material; a watcher reloads the TLS material when the certificate,
//! key, CA bundle or CRL files change.
//!
//! One owner: every reload — SIGHUP or watcher — is a request to one task
//! ([`own`]), which runs them one at a time, off the reactor. Two reloads
//! never interleave, so a slow TLS reload cannot publish material loaded
//! before a newer one. Publication itself only ever replaces its own half of
//! the live snapshot (`send_modify`), so a policy published meanwhile by
//! anything else survives a TLS reload, and the reverse.
//!
//! Validate, then publish: a new snapshot is built completely and checked
//! (key matches, chain verifies, identity, validity window) before it
//! replaces the running one, so a half-written or broken file never takes the
//! gateway down — it is logged and audited, and the old material stays.
//! A config file that does not parse, or that changes keys only a restart
//! applies, refuses the whole SIGHUP reload ([`Running::reload_config`]).
//! Connections already open keep the snapshot they started with, except that
//! a CRL which now revokes an established peer closes that connection.
//!
//! The watcher ([`super::tls_watch`]) hashes the files when inotify says
//! their folder changed (and every 30 s as a safety net), and compares
//! digests. A change is acted on once the files stop changing, so a key and
//! certificate written one after the other are picked up together.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::admin::{Metrics, Reloaded};
use crate::audit::{CertReload, ConfigReload, Event, PolicyReload};
use crate::config::Config;
use crate::peer::Live;
use crate::policy::Policy;
use crate::tls::Material;

use super::{tls_sources, tls_watch, Running};

/// How often the watcher looks at the TLS files when inotify is not
/// available (with it: on change, and every [`tls_watch::SAFETY_NET`]).
pub const WATCH_INTERVAL: Duration = tls_watch::POLL_INTERVAL;
/// How often approaching certificate expiry is logged again.
const EXPIRY_CHECK_EVERY: Duration = Duration::from_secs(12 * 3600);
/// How long files must stay unchanged before a reload is attempted.
const SETTLE: Duration = Duration::from_millis(250);

/// What a reload request asks the owner for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Request {
    /// The watcher saw the TLS files change.
    Tls,
    /// SIGHUP: config file, then policy and TLS material.
    All,
}

/// Something the reload owner can reload: the running gateway, or a test double.
pub trait Reload: Send + Sync + 'static {
    /// Runs one reload to its end (blocking; called off the reactor).
    fn reload(&self, request: Request);
}

impl Reload for Running {
    fn reload(&self, request: Request) {
        match request {
            Request::All => {
                super::systemd(&[sd_notify::NotifyState::Reloading]);
                self.reload_all("signal");
                super::systemd(&[sd_notify::NotifyState::Ready]);
            }
            Request::Tls => {
                self.reload_tls("watch");
            }
        }
    }
}

/// The handle reloads are requested through; cheap to clone.
#[derive(Debug, Clone)]
pub struct Reloader {
    tx: mpsc::UnboundedSender<Request>,
}

impl Reloader {
    /// Asks the owner for a reload; returns at once. After shutdown the
    /// request is dropped.
    pub fn request(&self, request: Request) {
        let _ = self.tx.send(request);
    }
}

/// A reloader and its receiving end, for [`own`].
pub(super) fn reloader() -> (Reloader, mpsc::UnboundedReceiver<Request>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Reloader { tx }, rx)
}

/// The reload owner: runs requests one at a time until `stop` or until every
/// [`Reloader`] is gone. Requests that queued up while one ran are merged
/// (a SIGHUP covers a watcher's TLS reload), so a burst costs one reload.
pub(super) async fn own<R: Reload>(
    target: Arc<R>,
    mut requests: mpsc::UnboundedReceiver<Request>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        let first = tokio::select! {
            () = stop.cancelled() => return,
            next = requests.recv() => match next {
                Some(request) => request,
                None => return,
            },
        };
        let mut request = first;
        while let Ok(more) = requests.try_recv() {
            request = request.max(more);
        }
        let target = target.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || target.reload(request)).await {
            tracing::error!(error = %e, "reload task failed; the running configuration stays");
        }
    }
}

impl Running {
    /// SIGHUP: re-reads the config file and applies it live
    /// (`gateway::apply`); if that was accepted, reloads policy, TLS
    /// material and the spool's previous keys, each validated and published
    /// on its own (a failure keeps that part as it was). Blocking: call off
    /// the reactor.
    pub fn reload_all(&self, trigger: &str) {
        // logrotate moves the audit log away and then signals us.
        self.ctx.peer.audit.reopen();
        if !self.reload_config(trigger) {
            return;
        }
        self.reload_policy(trigger);
        self.reload_tls(trigger);
        self.reload_spool_keys(trigger);
    }

    /// Re-reads and validates the config file. Returns whether the reload
    /// may go on: the file is valid and changes no key that needs a restart.
    /// Otherwise nothing is reloaded; the outcome is logged and audited
    /// (`config_reload`) either way.
    pub fn reload_config(&self, trigger: &str) -> bool {
        let path = self.config().path.clone();
        let (error, restart_needed) = match Config::load(&path) {
            Err(e) => (Some(e.to_string()), Vec::new()),
            Ok(new) => {
                let changed = super::config_diff::restart_needed(&self.config(), &new);
                let error = if changed.is_empty() {
                    // All or nothing: see `gateway::apply`.
                    self.apply_config(new).err()
                } else {
                    Some(format!(
                        "{}: changed keys need a restart: {} — nothing was reloaded; restart the gateway to apply them, or undo the change",
                        path.display(),
                        changed.join(", ")
                    ))
                };
                (error, changed)
            }
        };
        let ok = error.is_none();
        match &error {
            None => tracing::info!(path = %path.display(), "config file re-read: unchanged"),
            Some(e) if restart_needed.is_empty() => {
                tracing::error!(error = %e, "config file refused; nothing reloaded, the running configuration stays")
            }
            Some(e) => {
                tracing::warn!(error = %e, "config change needs a restart; nothing reloaded")
            }
        }
        self.ctx.peer.metrics.reload(Reloaded::Config, ok);
        self.ctx
            .peer
            .metrics
            .config_reloaded(crate::admin::ConfigReloadStatus {
                ok,
                at: time::OffsetDateTime::now_utc(),
                error: error.clone(),
                restart_needed: restart_needed.clone(),
            });
        self.ctx
            .peer
            .audit
            .record(Event::ConfigReload(ConfigReload {
                trigger: trigger.to_owned(),
                ok,
                path: path.display().to_string(),
                error,
                restart_needed,
            }));
        ok
    }

    /// Re-reads the policy; publishes it if valid and it still pairs this
    /// gateway's pool with its peer. A service the new policy no longer
    /// allows is denied from now on and its established connections are
    /// closed (audited `policy_changed`); the config's tunnels and exports
    /// of it stay (warned), so the service can be switched off in an
    /// emergency without a restart. Returns whether it was published.
    pub fn reload_policy(&self, trigger: &str) -> bool {
        let path = self.config().gateway.policy.clone();
        let result = Policy::load(&path)
            .map_err(|e| e.to_string())
            .and_then(|p| {
                crate::config::check_pairing(&self.config(), &p)
                    .map(|()| p)
                    .map_err(|e| e.to_string())
            });
        let (ok, error) = match result {
            Ok(policy) => {
                if let Err(e) = crate::config::check_against_policy(&self.config(), &policy) {
                    tracing::warn!(error = %e, "the reloaded policy no longer allows a service this config uses: it is denied from now on");
                }
                let pair = policy.pair_of(&self.config().gateway.pool).cloned();
                let policy = Arc::new(policy);
                // Replace our half only, on whatever is live at this instant.
                self.ctx.peer.live.send_modify(|live| {
                    *live = Arc::new(Live {
                        policy,
                        material: live.material.clone(),
                    });
                });
                tracing::info!(path = %path.display(), "policy reloaded");
                let allowed =
                    |service: &str| pair.as_ref().is_some_and(|p| p.services.contains(service));
                let closed = self.ctx.peer.registry.close_disallowed(allowed);
                if closed > 0 {
                    tracing::warn!(
                        closed,
                        "closed established connections the reloaded policy no longer allows"
                    );
                }
                (true, None)
            }
            Err(e) => {
                tracing::error!(error = %e, "policy reload refused; keeping the running policy");
                (false, Some(e))
            }
        };
        self.ctx.peer.metrics.reload(Reloaded::Policy, ok);
        self.ctx
            .peer
            .audit
            .record(Event::PolicyReload(PolicyReload {
                trigger: trigger.to_owned(),
                ok,
                path: path.display().to_string(),
                error,
            }));
        ok
    }

    /// Re-reads certificate, key, CA bundle and CRL; publishes them if valid
    /// and closes established connections whose peer is now revoked.
    /// Returns whether new material was published.
    pub fn reload_tls(&self, trigger: &str) -> bool {
        let current = self.ctx.peer.snapshot();
        let old_sha256 = Some(current.material.identity.sha256.clone());
        let loaded = Material::load_after(
            &tls_sources(&self.config()),
            &self.config().gateway.pool,
            Some(&current.material),
        )
        .and_then(Material::refuse_crl_rollback);
        let event = match loaded {
            Ok(material) => {
                let material = Arc::new(material);
                let new_sha256 = Some(material.identity.sha256.clone());
                // Replace our half only: a policy published while the files
                // loaded stays.
                self.ctx.peer.live.send_modify(|live| {
                    *live = Arc::new(Live {
                        policy: live.policy.clone(),
                        material: material.clone(),
                    });
                });
                super::publish_cert_expiry(&self.ctx.peer.metrics, &material);
                let revoked_closed = self
                    .ctx
                    .peer
                    .registry
                    .close_revoked(&material, &self.config().gateway.peer_pool);
                // A revoked peer certificate is no longer shown as a peer.
                let peer_pool = self.config().gateway.peer_pool.to_string();
                self.ctx.peer.metrics.drop_peer_certs(|der| {
                    let chain = [rustls::pki_types::CertificateDer::from(der.to_vec())];
                    material.is_revoked(&chain, true, &peer_pool)
                        || material.is_revoked(&chain, false, &peer_pool)
                });
                tracing::info!(
                    trigger,
                    new_sha256 = new_sha256.as_deref(),
                    revoked_closed,
                    "TLS material reloaded"
                );
                material.after_publish();
                CertReload {
                    trigger: trigger.to_owned(),
                    ok: true,
                    old_sha256,
                    new_sha256,
                    error: None,
                    revoked_closed,
                    crls: material.crl_records(),
                }
            }
            Err(e) => {
                tracing::error!(trigger, error = %e, "TLS reload refused; keeping the running certificates");
                CertReload {
                    trigger: trigger.to_owned(),
                    ok: false,
                    old_sha256,
                    new_sha256: None,
                    error: Some(e.to_string()),
                    revoked_closed: 0,
                    crls: current.material.crl_records(),
                }
            }
        };
        let ok = event.ok;
        self.ctx.peer.metrics.reload(Reloaded::Certificates, ok);
        self.ctx.peer.audit.record(Event::CertReload(event));
        ok
    }

    /// The TLS files the watcher looks at.
    fn watched_files(&self) -> Vec<PathBuf> {
        let tls = &self.config().tls;
        let mut files = vec![tls.cert.clone(), tls.key.clone(), tls.ca.clone()];
        match &tls.crl {
            Some(crl) => files.push(crl.clone()),
            // Without `tls.crl`, CRLs taken from the peer land in the kept
            // copy (see `tls::crl_offer`).
            None => files.push(crate::tls::crl::kept_path(&self.config().audit.path)),
        }
        files
    }
}

/// At start: audits a refused (rolled back) `tls.crl` as a `cert_reload`
/// with trigger `start`, then [`Material::after_publish`].
pub(super) fn start_crls(material: &Material, audit: &crate::audit::AuditLog, metrics: &Metrics) {
    if let Some(why) = &material.crl_refused {
        tracing::error!(error = %why, "tls.crl refused at start; enforcing the CRL in force");
        metrics.reload(Reloaded::Certificates, false);
        audit.record(Event::CertReload(CertReload {
            trigger: "start".to_owned(),
            ok: false,
            old_sha256: Some(material.identity.sha256.clone()),
            new_sha256: None,
            error: Some(why.clone()),
            revoked_closed: 0,
            crls: material.crl_records(),
        }));
    }
    material.after_publish();
}

/// A digest of each file's bytes (None when unreadable).
fn digests(files: &[PathBuf]) -> Vec<Option<ring::digest::Digest>> {
    files
        .iter()
        .map(|f| {
            std::fs::read(f)
                .ok()
                .map(|b| ring::digest::digest(&ring::digest::SHA256, &b))
        })
        .collect()
}

/// [`digests`] on a blocking thread: a file on a hung mount (or a FIFO)
/// must not stall a runtime worker.
async fn digests_off_reactor(files: &Arc<Vec<PathBuf>>) -> Vec<Option<ring::digest::Digest>> {
    let files = files.clone();
    tokio::task::spawn_blocking(move || digests(&files))
        .await
        .unwrap_or_default()
}

fn same(a: &[Option<ring::digest::Digest>], b: &[Option<ring::digest::Digest>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Some(x), Some(y)) => x.as_ref() == y.as_ref(),
            (None, None) => true,
            _ => false,
        })
}

/// Watches the TLS files until shutdown, asking `reloader` for a TLS
/// reload when they change.
pub(super) async fn watch(running: Arc<Running>, reloader: Reloader) {
    let files = Arc::new(running.watched_files());
    let wake = Arc::new(tokio::sync::Notify::new());
    let watcher = tls_watch::watch(&files, wake.clone());
    let every = match watcher {
        Some(_) => tls_watch::SAFETY_NET,
        None => WATCH_INTERVAL,
    };
    let mut last = digests_off_reactor(&files).await;
    let stop = running.ctx.peer.shutdown.stop_token().clone();
    let mut last_expiry_check = std::time::Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(every) => {}
        }
        running
            .ctx
            .peer
            .snapshot()
            .material
            .note_crl_freshness(time::OffsetDateTime::now_utc());
        if last_expiry_check.elapsed() >= EXPIRY_CHECK_EVERY {
            super::warn_expiry(&running.ctx.peer.snapshot().material);
            last_expiry_check = std::time::Instant::now();
        }
        let now = digests_off_reactor(&files).await;
        if same(&now, &last) {
            continue;
        }
        // Wait until the writer is done (e.g. key, then certificate).
        let mut settled = now;
        loop {
            tokio::time::sleep(SETTLE).await;
            let again = digests_off_reactor(&files).await;
            if same(&again, &settled) {
                break;
            }
            settled = again;
        }
        reloader.request(Request::Tls);
        // A refused file is not retried until it changes again (or SIGHUP).
        last = settled;
    }
}

#[cfg(test)]
#[path = "reload_tests.rs"]
mod tests;
