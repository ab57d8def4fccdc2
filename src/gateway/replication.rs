//! How far behind replication is, per direction — the figure that eats into
//! the recovery point objective.
//!
//! - **outbound** (this site → peer): files in our spool's `outgoing/`.
//! - **inbound** (peer → this site): files received but not yet delivered
//!   here, plus what the peer reported waiting in *its* `outgoing/` at its
//!   last heartbeat (carried on the control channel), so one site's
//!   `/status` shows both directions.
//!
//! The same figures feed `/status` (through [`SpoolGauge`]) and the
//! `pairgate_spool_*` gauges, refreshed by [`publish`].

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::admin::{SpoolConditionStatus, SpoolDepth, SpoolGauge};
use crate::audit::Direction;
use crate::proxy::Context;
use crate::spool::DirDepth;

/// Reads both directions' depth for `/status` and metrics.
pub struct Replication {
    pub ctx: Arc<Context>,
}

fn to_status(d: &DirDepth, measured_at: OffsetDateTime) -> SpoolDepth {
    SpoolDepth {
        files: d.files,
        bytes: d.bytes,
        oldest_since: d.oldest_age.and_then(|age| {
            time::Duration::try_from(age)
                .ok()
                .map(|age| measured_at - age)
        }),
    }
}

fn merge(a: SpoolDepth, b: SpoolDepth) -> SpoolDepth {
    SpoolDepth {
        files: a.files + b.files,
        bytes: a.bytes + b.bytes,
        oldest_since: match (a.oldest_since, b.oldest_since) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        },
    }
}

impl SpoolGauge for Replication {
    fn depth(&self, direction: Direction) -> SpoolDepth {
        let now = OffsetDateTime::now_utc();
        let local = self.ctx.spool.as_ref().map(|s| s.depth());
        match direction {
            Direction::Outbound => {
                local.map_or_else(SpoolDepth::default, |d| to_status(&d.outbound, now))
            }
            Direction::Inbound => {
                let here = local.map_or_else(SpoolDepth::default, |d| to_status(&d.inbound, now));
                let there = self
                    .ctx
                    .peer_backlog
                    .get()
                    .map_or_else(SpoolDepth::default, |(d, at)| to_status(&d, at));
                merge(here, there)
            }
        }
    }

    fn conditions(&self) -> Vec<SpoolConditionStatus> {
        let Some(spool) = &self.ctx.spool else {
            return Vec::new();
        };
        spool
            .store
            .conditions
            .snapshot()
            .into_iter()
            .map(|a| SpoolConditionStatus {
                condition: a.condition.as_str().to_owned(),
                name: a.subject.name,
                id: a.subject.id,
                size: a.subject.size,
                key_id: a.subject.key_id,
                files: a.files,
                detail: a.detail,
                since: a.since,
            })
            .collect()
    }
}

/// Refreshes the `pairgate_spool_*` gauges until shutdown.
pub async fn publish(replication: Arc<Replication>, every: Duration) {
    let stop = replication.ctx.shutdown.stop_token().clone();
    loop {
        let r = replication.clone();
        let depths = tokio::task::spawn_blocking(move || {
            [Direction::Outbound, Direction::Inbound].map(|d| (d, r.depth(d)))
        })
        .await;
        replication
            .ctx
            .metrics
            .audit_total(replication.ctx.audit.recorded());
        let link = replication.ctx.link.state().state;
        replication.ctx.metrics.peer_link(match link {
            crate::admin::LinkState::Up => Some(true),
            crate::admin::LinkState::Down => Some(false),
            _ => None,
        });
        if let Some(spool) = &replication.ctx.spool {
            let c = &spool.store.counters;
            let n = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            replication.ctx.metrics.spool_totals(&[
                ("ingested", n(&c.ingested)),
                ("sent", n(&c.sent)),
                ("received", n(&c.received)),
                ("delivered", n(&c.delivered)),
                ("quarantined", n(&c.quarantined)),
                ("refused", n(&c.refused)),
                ("refused_by_peer", n(&c.refused_by_peer)),
            ]);
            let held: Vec<(&'static str, u64)> = spool
                .store
                .conditions
                .files_by_condition()
                .into_iter()
                .map(|(c, files)| (c.as_str(), files))
                .collect();
            replication
                .ctx
                .metrics
                .spool_conditions(&held, n(&c.stalls));
        }
        if let Ok(depths) = depths {
            let now = OffsetDateTime::now_utc();
            for (direction, d) in depths {
                let age = d.oldest_age(now);
                replication
                    .ctx
                    .metrics
                    .spool(direction, d.files, d.bytes, age);
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_the_oldest_and_sums() {
        let t = OffsetDateTime::UNIX_EPOCH + time::Duration::days(1);
        let a = SpoolDepth {
            files: 1,
            bytes: 10,
            oldest_since: Some(t),
        };
        let b = SpoolDepth {
            files: 2,
            bytes: 5,
            oldest_since: Some(t - time::Duration::hours(1)),
        };
        let m = merge(a, b);
        assert_eq!((m.files, m.bytes), (3, 15));
        assert_eq!(m.oldest_since, b.oldest_since);
        assert_eq!(merge(a, SpoolDepth::default()).oldest_since, Some(t));
    }

    #[test]
    fn ages_become_timestamps_at_the_time_of_measurement() {
        let at = OffsetDateTime::UNIX_EPOCH + time::Duration::days(1);
        let d = DirDepth {
            files: 1,
            bytes: 1,
            oldest_age: Some(Duration::from_secs(90)),
        };
        assert_eq!(
            to_status(&d, at).oldest_since,
            Some(at - time::Duration::seconds(90))
        );
        assert_eq!(to_status(&DirDepth::default(), at).oldest_since, None);
    }
}
