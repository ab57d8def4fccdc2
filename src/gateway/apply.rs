//! Applying a re-read config file live (SIGHUP), all or nothing.
//!
//! 1. **Prepare**: check the new config's services against the running
//!    policy and the capability a changed socket mark needs
//!    (`config_diff::mark_change`), then bind every listener it adds —
//!    tunnels, intercepts, the admin endpoint. Any failure drops what was
//!    bound and changes nothing: the running gateway serves exactly what it
//!    served before.
//! 2. **Commit** (cannot fail): set the socket mark for the sockets opened
//!    from then on and the `[limits]` for what comes next
//!    (`proxy::Context::apply_limits`), serve the new listeners, stop the
//!    removed ones, update the changed ones, publish the export routes, declare the
//!    services added (their series start at 0, `/status` tracks them), and
//!    make the new config the running one — later reloads compare against
//!    it, the policy reload checks it, `stop` takes its grace period.
//! 3. **Re-judge what is open** (`gateway::drain`): a connection whose
//!    client the changed `allow_sources` of its listener (or whose original
//!    destination an intercept's changed `destinations`) no longer admit is
//!    closed now (audited `policy_changed`, like a policy that drops its
//!    service);
//!    the connections of a removed listener or export drain — they go on
//!    for `limits.shutdown_grace_secs`, then the ones still open are closed
//!    (audited `listener_removed`). Unchanged listeners' connections are
//!    never touched.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::admin_endpoint;
use super::served::Applied;
use super::{configured_services, drain, Running};
use crate::config::{Config, Intercept, Tunnel};

/// What [`Running::prepare`] bound; nothing is served until the commit.
struct Prepared {
    /// The socket mark to switch to, when it changes.
    mark: Option<u32>,
    tunnels: Vec<(Tunnel, TcpListener)>,
    intercepts: Vec<(Intercept, TcpListener)>,
    admin: admin_endpoint::Prepared,
}

impl Running {
    /// Applies the listeners, routes and lists of a re-read config live
    /// (see the module doc); `new` becomes the running config. Blocking:
    /// call off the reactor, inside the runtime.
    ///
    /// # Errors
    /// What refused the change; nothing was changed then.
    pub(super) fn apply_config(&self, new: Config) -> Result<(), String> {
        let runtime = tokio::runtime::Handle::current();
        let prepared = runtime.block_on(self.prepare(&new))?;
        self.commit(new, prepared);
        Ok(())
    }

    async fn prepare(&self, new: &Config) -> Result<Prepared, String> {
        let policy = self.ctx.peer.snapshot().policy.clone();
        crate::config::check_against_policy(new, &policy).map_err(|e| e.to_string())?;
        let mark = super::config_diff::mark_change(
            self.ctx.peer.mark(),
            new,
            crate::intercept::socket::check_mark,
        )?;
        let refused = |what: &str, (addr, e): (SocketAddr, std::io::Error)| {
            format!(
                "{}: a new {what} cannot listen on {addr}: {e} — nothing was reloaded; {}",
                new.path.display(),
                super::bind_hint(&e)
            )
        };
        let backlog = new.limits.max_connections;
        let tunnels = self
            .tunnels
            .prepare(&new.tunnels, backlog)
            .await
            .map_err(|e| refused("[[tunnel]]", e))?;
        let intercepts = self
            .intercepts
            .prepare(&new.intercepts, backlog)
            .map_err(|e| refused("[[intercept]]", e))?;
        let admin = self
            .admin
            .prepare(new.admin.as_ref())
            .await
            .map_err(|e| refused("[admin] endpoint", e))?;
        Ok(Prepared {
            mark,
            tunnels,
            intercepts,
            admin,
        })
    }

    fn commit(&self, new: Config, prepared: Prepared) {
        let Prepared {
            mark,
            tunnels,
            intercepts,
            admin,
        } = prepared;
        // Before the listeners and exports that open marked sockets, and
        // the limits before a new listener's first connection.
        if let Some(mark) = mark {
            self.ctx.peer.set_mark(mark);
        }
        self.ctx.apply_limits(&new.limits);
        let admin_moved = self.admin.commit(&self.offer, new.admin.as_ref(), admin);
        let mut own = vec![self.peer_addr];
        own.extend(self.admin.addr());
        own.extend(new.tunnels.iter().map(|t| t.listen));
        let intercepts =
            self.intercepts
                .commit(&self.ctx, &self.offer, &new.intercepts, intercepts, own);
        let tunnels = self
            .tunnels
            .commit(&self.ctx, &self.offer, &new.tunnels, tunnels);
        let exports_removed = self.apply_exports(&new);
        log_applied("tunnels", &tunnels);
        log_applied("intercepts", &intercepts);
        if admin_moved {
            tracing::info!("admin endpoint applied live");
        }
        self.ctx.peer.metrics.declare_services(
            new.admin
                .as_ref()
                .map_or(crate::admin::DEFAULT_SYNC_INTERVAL, |a| a.sync_interval),
            &configured_services(&new),
        );
        // Re-judge the open connections of changed listeners now, with the
        // lists they were changed to.
        for addr in &tunnels.changed {
            if let Some(t) = new.tunnels.iter().find(|t| t.listen == *addr) {
                drain::close_refused(&self.ctx.peer, *addr, &t.allow_sources, None);
            }
        }
        for addr in &intercepts.changed {
            if let Some(i) = new.intercepts.iter().find(|i| i.listen == *addr) {
                let destinations = Some(&i.destinations);
                drain::close_refused(&self.ctx.peer, *addr, &i.allow_sources, destinations);
            }
        }
        let grace = new.limits.shutdown_grace;
        let removed: Vec<SocketAddr> = tunnels
            .removed
            .iter()
            .chain(&intercepts.removed)
            .copied()
            .collect();
        drain::after_grace(&self.ctx.peer, removed, exports_removed, grace);
        self.set_config(new);
    }
}

fn log_applied(what: &str, applied: &Applied) {
    if !applied.is_empty() {
        tracing::info!(
            added = ?applied.added,
            removed = ?applied.removed,
            changed = ?applied.changed,
            "{what} applied live"
        );
    }
}

// The running config is swapped as a whole under a lock; readers take an
// `Arc` of it and never hold the lock.
impl Running {
    /// The running config: the one started with, or the last one a reload
    /// applied.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_config(&self, new: Config) {
        *self
            .config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(new);
    }
}
