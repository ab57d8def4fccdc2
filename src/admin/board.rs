//! [`Board`]: a ready-made [`StatusSource`] that assembles `/status` from
//! the pieces a gateway already has — its names, the [`LinkTracker`], the
//! [`Metrics`] (connection totals, certificates, per-service sessions) and
//! the spool's depth.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::metrics::Metrics;
use super::ready::{self, Facts, Serving};
use super::status::{
    CertificateStatus, DirectionStatus, LinkTracker, SpoolConditionStatus, SpoolDepth, Status,
    StatusSource,
};
use crate::audit::{AuditLog, Direction};

/// What waits in the spool, per direction; the spool implements it. A
/// gateway without `[spool]` passes none and both directions show empty.
pub trait SpoolGauge: Send + Sync {
    /// What waits in `direction` now (may read the disk; called off the reactor).
    fn depth(&self, direction: Direction) -> SpoolDepth;

    /// The spool's persistent conditions now (none by default).
    fn conditions(&self) -> Vec<SpoolConditionStatus> {
        Vec::new()
    }
}

/// The status of one gateway, assembled on request.
pub struct Board {
    pub pool: String,
    pub peer_pool: String,
    pub started: OffsetDateTime,
    /// `admin.sync_interval_secs` in milliseconds; a reload may change it.
    sync_interval_ms: AtomicU64,
    pub link: Arc<LinkTracker>,
    pub metrics: Arc<Metrics>,
    pub spool: Option<Arc<dyn SpoolGauge>>,
    /// The audit log whose writability `/readyz` checks (none: not checked).
    pub audit: Option<AuditLog>,
    /// Whether the instance serves its configuration (`/readyz`).
    pub serving: Serving,
}

impl Board {
    /// A board started now, with no spool.
    pub fn new(
        pool: String,
        peer_pool: String,
        sync_interval: Duration,
        link: Arc<LinkTracker>,
        metrics: Arc<Metrics>,
    ) -> Board {
        Board {
            pool,
            peer_pool,
            started: OffsetDateTime::now_utc(),
            sync_interval_ms: AtomicU64::new(millis(sync_interval)),
            link,
            metrics,
            spool: None,
            audit: None,
            serving: Serving::new(),
        }
    }

    /// The same board checking `audit` and `serving` for `/readyz`.
    pub fn with_readiness(self, audit: AuditLog, serving: Serving) -> Board {
        Board {
            audit: Some(audit),
            serving,
            ..self
        }
    }

    /// The interval replication is expected to keep up with.
    pub fn sync_interval(&self) -> Duration {
        Duration::from_millis(self.sync_interval_ms.load(Ordering::Relaxed))
    }

    /// Takes a new `admin.sync_interval_secs` (live reload).
    pub fn set_sync_interval(&self, interval: Duration) {
        self.sync_interval_ms
            .store(millis(interval), Ordering::Relaxed);
    }

    /// Why the instance is not ready at `now` (empty: ready); see [`ready`].
    pub fn not_ready_at(&self, now: OffsetDateTime) -> Vec<String> {
        let certificates = self.metrics.certificates();
        let link = self.link.state();
        ready::not_ready(&Facts {
            serving: self.serving.is_serving(),
            certificates: &certificates,
            audit: self.audit.as_ref().map_or(Ok(()), AuditLog::writable),
            link: &link,
            now,
        })
    }

    /// The same board reading spool depth from `spool`.
    pub fn with_spool(self, spool: Arc<dyn SpoolGauge>) -> Board {
        Board {
            spool: Some(spool),
            ..self
        }
    }

    /// The status as of `now`.
    pub fn status_at(&self, now: OffsetDateTime) -> Status {
        let link_up = self.link.is_up();
        let sync_interval = self.sync_interval();
        let directions = [Direction::Outbound, Direction::Inbound]
            .into_iter()
            .map(|direction| {
                let depth = self
                    .spool
                    .as_ref()
                    .map_or_else(SpoolDepth::default, |s| s.depth(direction));
                DirectionStatus::new(direction, link_up, &depth, sync_interval, now)
            })
            .collect();
        let certificates = self
            .metrics
            .certificates()
            .iter()
            .map(|(kind, entry)| CertificateStatus::new(*kind, entry, now))
            .collect();
        Status {
            pool: self.pool.clone(),
            peer_pool: self.peer_pool.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started: self.started,
            uptime_secs: Duration::try_from(now - self.started).map_or(0, |d| d.as_secs()),
            peer_link: self.link.state(),
            directions,
            sync_interval_secs: sync_interval.as_secs(),
            certificates,
            connections: self.metrics.connection_counts(),
            services: self.metrics.services(now),
            spool_conditions: self
                .spool
                .as_ref()
                .map(|s| s.conditions())
                .unwrap_or_default(),
            last_config_reload: self.metrics.last_config_reload(),
            audit: self.metrics.audit_status(),
            crl: self.metrics.crl_status(now),
        }
    }
}

impl StatusSource for Board {
    fn status(&self) -> Status {
        self.status_at(OffsetDateTime::now_utc())
    }

    fn not_ready(&self) -> Vec<String> {
        self.not_ready_at(OffsetDateTime::now_utc())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
