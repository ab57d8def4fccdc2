//! The `[[export]]` routes, applied live on SIGHUP: an export added,
//! removed or re-pointed (target, or `destinations`/`ports`) applies to the
//! next inbound connection. Established connections are not touched: each
//! was connected with the snapshot in force when it was decided
//! ([`crate::proxy::Exports`]), and ends on its own or at shutdown.

use std::sync::Arc;

use crate::config::{Config, ExportTarget};
use crate::names::ServiceName;
use crate::proxy::Exports;

/// The export routes of `config`.
pub(super) fn of(config: &Config) -> Exports {
    let mut exports = Exports::default();
    for e in &config.exports {
        match &e.target {
            ExportTarget::Fixed(target) => {
                exports.fixed.insert(e.service.clone(), target.clone());
            }
            ExportTarget::Carried(d) => {
                exports.carried.insert(e.service.clone(), d.clone());
            }
        }
    }
    exports
}

impl super::Running {
    /// Publishes the `[[export]]` routes of a re-read config (already
    /// checked against the running policy); the next inbound connection
    /// uses them. Returns the services no longer exported (their open
    /// connections drain, `gateway::drain`).
    pub(super) fn apply_exports(&self, new: &Config) -> Vec<ServiceName> {
        let wanted = of(new);
        let mut removed = Vec::new();
        self.ctx.routes.exports.send_if_modified(|live| {
            if **live == wanted {
                return false;
            }
            removed = live
                .fixed
                .keys()
                .chain(live.carried.keys())
                .filter(|s| !wanted.fixed.contains_key(*s) && !wanted.carried.contains_key(*s))
                .cloned()
                .collect();
            *live = Arc::new(wanted);
            let services: Vec<String> = new.exports.iter().map(|e| e.service.to_string()).collect();
            tracing::info!(exports = ?services, removed = ?removed, "exports applied live");
            true
        });
        removed
    }
}
