//! How far behind replication is, per direction — the figure that eats into
//! the recovery point objective.
//!
//! - **outbound** (this site → peer): files in our spool's `outgoing/`.
//! - **inbound** (peer → this site): files received but not yet delivered
//!   here, plus what the peer reported waiting in *its* `outgoing/` at its
//!   last heartbeat (carried on the control channel), so one site's
//!   `/status` shows both directions.
//!
//! One clock: every age shown is on this gateway's clock. The peer reports
//! *ages* it measured on its own clock (durations carry no skew), placed at
//! the moment its report arrived here. Files received here carry their
//! `created` time from the peer's clock; it is moved onto ours by the
//! measured clock offset (`/status` `peer_link.clock_skew_secs`) before
//! ageing them, so a peer clock 2 h behind does not add 2 h of lag (and one
//! ahead does not hide it).
//!
//! The same figures feed `/status` (through [`SpoolGauge`]) and the
//! `pairgate_spool_*` gauges, refreshed by [`publish`].

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::admin::{SpoolConditionStatus, SpoolDepth, SpoolGauge};
use crate::audit::Direction;
use crate::peer::Peer;
use crate::proxy::control::PeerBacklog;
use crate::spool::{Area, Spool};

/// Reads both directions' depth for `/status` and metrics.
pub(super) struct Replication {
    pub peer: Arc<Peer>,
    pub spool: Option<Arc<Spool>>,
    /// What the peer last reported waiting for us (control channel).
    pub peer_backlog: Arc<PeerBacklog>,
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

/// Files received from the peer and not yet delivered: their `created`
/// (peer clock) moved onto our clock by the peer's measured offset
/// (`peer_skew_secs`, peer minus ours; 0 while unmeasured).
fn received(items: &[(u64, Option<OffsetDateTime>)], peer_skew_secs: Option<f64>) -> SpoolDepth {
    let skew = time::Duration::seconds_f64(peer_skew_secs.unwrap_or(0.0));
    SpoolDepth {
        files: items.len() as u64,
        bytes: items.iter().map(|(size, _)| size).sum(),
        oldest_since: items
            .iter()
            .filter_map(|(_, created)| *created)
            .min()
            .and_then(|created| created.checked_sub(skew)),
    }
}

impl SpoolGauge for Replication {
    fn depth(&self, direction: Direction) -> SpoolDepth {
        match direction {
            Direction::Outbound => self
                .spool
                .as_ref()
                .map_or_else(SpoolDepth::default, |s| s.depth().outbound),
            Direction::Inbound => {
                let here = self.spool.as_ref().map_or_else(SpoolDepth::default, |s| {
                    let items: Vec<(u64, Option<OffsetDateTime>)> = s
                        .store
                        .entries(Area::Incoming)
                        .unwrap_or_default()
                        .iter()
                        .map(|e| match &e.meta {
                            Ok(m) => (m.size, Some(m.created)),
                            Err(_) => (0, None),
                        })
                        .collect();
                    received(&items, self.peer.link.skew_secs())
                });
                let there = self
                    .peer_backlog
                    .get()
                    .map_or_else(SpoolDepth::default, |(d, _at)| d);
                merge(here, there)
            }
        }
    }

    fn conditions(&self) -> Vec<SpoolConditionStatus> {
        let Some(spool) = &self.spool else {
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
pub(super) async fn publish(replication: Arc<Replication>, every: Duration) {
    let stop = replication.peer.shutdown.stop_token().clone();
    loop {
        let r = replication.clone();
        let depths = tokio::task::spawn_blocking(move || {
            [Direction::Outbound, Direction::Inbound].map(|d| (d, r.depth(d)))
        })
        .await;
        replication
            .peer
            .metrics
            .audit_total(replication.peer.audit.written());
        replication.peer.metrics.audit_state(
            replication.peer.audit.health().failing(),
            replication.peer.audit.health().on_failure(),
        );
        let link = replication.peer.link.state().state;
        replication.peer.metrics.peer_link(match link {
            crate::admin::LinkState::Up => Some(true),
            crate::admin::LinkState::Down => Some(false),
            _ => None,
        });
        replication
            .peer
            .metrics
            .peer_clock_skew(replication.peer.link.skew_secs());
        if let Some(spool) = &replication.spool {
            // `created` of received files is judged on the peer's clock.
            spool.store.set_peer_skew(replication.peer.link.skew_secs());
            let c = &spool.store.counters;
            let n = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            replication.peer.metrics.spool_totals(&[
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
                .peer
                .metrics
                .spool_conditions(&held, n(&c.stalls));
        }
        if let Ok(depths) = depths {
            let now = OffsetDateTime::now_utc();
            for (direction, d) in depths {
                let age = d.oldest_age(now);
                replication
                    .peer
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

    /// The reported field case: a file that waited 2 min, with the peer's
    /// clock 2 h behind (or ahead), shows 2 min of lag, not 2 h ± 2 min.
    #[test]
    fn received_files_age_on_our_clock_whatever_the_peer_clock() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let waited = time::Duration::minutes(2);
        for skew in [-7200.0, 0.0, 7200.0] {
            // The peer stamped `created` on its clock: ours + skew.
            let created = now - waited + time::Duration::seconds_f64(skew);
            let depth = received(&[(10, Some(created)), (0, None)], Some(skew));
            assert_eq!((depth.files, depth.bytes), (2, 10));
            let age = depth.oldest_age(now);
            assert_eq!(age, Some(Duration::from_secs(120)), "skew {skew}");
        }
        // Unmeasured: taken as in step.
        let depth = received(&[(1, Some(now - waited))], None);
        assert_eq!(depth.oldest_age(now), Some(Duration::from_secs(120)));
        assert_eq!(received(&[], Some(5.0)).oldest_since, None);
    }

    /// What the peer reports are ages on its own clock: placed at their
    /// arrival on ours, no skew enters.
    #[test]
    fn the_peer_reported_backlog_ages_from_its_arrival_on_our_clock() {
        let arrived = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let depth = SpoolDepth::aged(1, 1, Some(Duration::from_secs(120)), arrived);
        let later = arrived + time::Duration::seconds(30);
        assert_eq!(depth.oldest_age(later), Some(Duration::from_secs(150)));
    }

    #[test]
    fn ages_become_timestamps_at_the_time_of_measurement() {
        let at = OffsetDateTime::UNIX_EPOCH + time::Duration::days(1);
        assert_eq!(
            SpoolDepth::aged(1, 1, Some(Duration::from_secs(90)), at).oldest_since,
            Some(at - time::Duration::seconds(90))
        );
        assert_eq!(SpoolDepth::aged(0, 0, None, at).oldest_since, None);
    }
}
