//! Live reload: SIGHUP reloads policy and TLS material; a watcher reloads
//! the TLS material when the certificate, key, CA bundle or CRL files change.
//!
//! Validate, then publish: a new snapshot is built completely and checked
//! (key matches, chain verifies, identity, validity window) before it
//! replaces the running one, so a half-written or broken file never takes the
//! gateway down — it is logged and audited, and the old material stays.
//! Connections already open keep the snapshot they started with, except that
//! a CRL which now revokes an established peer closes that connection.
//!
//! The watcher polls file digests instead of using inotify: certificate
//! rotation replaces files by rename (which detaches inotify watches on the
//! file), secrets may sit behind symlinks that are swapped atomically, and a
//! few small reads a second cost nothing. A change is acted on once the files
//! stop changing, so a key and certificate written one after the other are
//! picked up together.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::admin::Reloaded;
use crate::audit::{CertReload, Event, PolicyReload};
use crate::policy::Policy;
use crate::proxy::Live;
use crate::tls::Material;

use super::{tls_sources, Running};

/// How often the watcher looks at the TLS files.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(1000);
/// How often approaching certificate expiry is logged again.
const EXPIRY_CHECK_EVERY: Duration = Duration::from_secs(12 * 3600);
/// How long files must stay unchanged before a reload is attempted.
const SETTLE: Duration = Duration::from_millis(250);

impl Running {
    /// Reloads policy and TLS material (SIGHUP). Each half is validated and
    /// published on its own; a failure keeps that half as it was.
    pub fn reload_all(&self, trigger: &str) {
        // logrotate moves the audit log away and then signals us.
        self.ctx.audit.reopen();
        self.reload_policy(trigger);
        self.reload_tls(trigger);
    }

    /// Re-reads the policy; publishes it if valid and still consistent with
    /// this gateway's config. Returns whether it was published.
    pub fn reload_policy(&self, trigger: &str) -> bool {
        let path = self.config.gateway.policy.clone();
        let result = Policy::load(&path)
            .map_err(|e| e.to_string())
            .and_then(|p| {
                crate::config::check_against_policy(&self.config, &p)
                    .map(|()| p)
                    .map_err(|e| e.to_string())
            });
        let (ok, error) = match result {
            Ok(policy) => {
                let current = self.ctx.snapshot();
                self.ctx.live.send_replace(Arc::new(Live {
                    policy: Arc::new(policy),
                    material: current.material.clone(),
                }));
                tracing::info!(path = %path.display(), "policy reloaded");
                (true, None)
            }
            Err(e) => {
                tracing::error!(error = %e, "policy reload refused; keeping the running policy");
                (false, Some(e))
            }
        };
        self.ctx.metrics.reload(Reloaded::Policy, ok);
        self.ctx.audit.record(Event::PolicyReload(PolicyReload {
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
        let current = self.ctx.snapshot();
        let old_sha256 = Some(current.material.identity.sha256.clone());
        let loaded = Material::load_after(
            &tls_sources(&self.config),
            &self.config.gateway.pool,
            Some(&current.material),
        )
        .and_then(Material::refuse_crl_rollback);
        let event = match loaded {
            Ok(material) => {
                let material = Arc::new(material);
                let new_sha256 = Some(material.identity.sha256.clone());
                self.ctx.live.send_replace(Arc::new(Live {
                    policy: current.policy.clone(),
                    material: material.clone(),
                }));
                super::publish_cert_expiry(&self.ctx.metrics, &material);
                let revoked_closed = self
                    .ctx
                    .registry
                    .close_revoked(&material, &self.config.gateway.peer_pool);
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
        self.ctx.metrics.reload(Reloaded::Certificates, ok);
        self.ctx.audit.record(Event::CertReload(event));
        ok
    }

    /// The TLS files the watcher looks at.
    fn watched_files(&self) -> Vec<PathBuf> {
        let tls = &self.config.tls;
        let mut files = vec![tls.cert.clone(), tls.key.clone(), tls.ca.clone()];
        files.extend(tls.crl.clone());
        files
    }
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

fn same(a: &[Option<ring::digest::Digest>], b: &[Option<ring::digest::Digest>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Some(x), Some(y)) => x.as_ref() == y.as_ref(),
            (None, None) => true,
            _ => false,
        })
}

/// Watches the TLS files until shutdown, reloading when they change.
pub async fn watch(running: Arc<Running>) {
    let files = running.watched_files();
    let mut last = digests(&files);
    let stop = running.ctx.shutdown.stop_token().clone();
    let mut last_expiry_check = std::time::Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(WATCH_INTERVAL) => {}
        }
        running
            .ctx
            .snapshot()
            .material
            .note_crl_freshness(time::OffsetDateTime::now_utc());
        if last_expiry_check.elapsed() >= EXPIRY_CHECK_EVERY {
            super::warn_expiry(&running.ctx.snapshot().material);
            last_expiry_check = std::time::Instant::now();
        }
        let now = digests(&files);
        if same(&now, &last) {
            continue;
        }
        // Wait until the writer is done (e.g. key, then certificate).
        let mut settled = now;
        loop {
            tokio::time::sleep(SETTLE).await;
            let again = digests(&files);
            if same(&again, &settled) {
                break;
            }
            settled = again;
        }
        running.reload_tls("watch");
        // A refused file is not retried until it changes again (or SIGHUP).
        last = settled;
    }
}
