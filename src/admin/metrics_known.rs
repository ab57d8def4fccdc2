//! The series of [`Metrics`] that exist from start (at 0) and the
//! per-service sessions: the part of the registry that follows the config.
//!
//! An `increase()` alert sees the first event only if the series existed
//! before it. Series whose labels are known without config start in
//! [`Metrics::new`] ([`Metrics::start_known_series`], iterating the label
//! enums, so a new denial reason or reload kind needs nothing here); those
//! that follow the config's tunnels and exports start in
//! [`Metrics::declare_services`]. A family added to the registry must start
//! its series in one of the two — `metrics_tests` fails for an empty one.

use std::time::Duration;

use strum::IntoEnumIterator;

use super::super::labels::{
    direction_label, ConnLabels, DenyLabels, DirLabels, FlowLabels, ReloadLabels, Reloaded,
    ServiceLabels, SessionLabels, SpoolConditionLabels, DIRECTIONS,
};
use super::super::sessions::{ServiceRole, ServiceStatus, SessionOutcome};
use super::{is_handshake_failure, Metrics};
use crate::audit::Direction;
use crate::policy::DenyReason;

impl Metrics {
    /// Creates (at 0) every series whose labels are known without config:
    /// per direction, each denial reason (and the handshake-failure ones),
    /// the gauges and the handshake histogram; each reload kind × outcome.
    pub(super) fn start_known_series(&self) {
        for direction in DIRECTIONS {
            let labels = DirLabels { direction };
            self.active.get_or_create(&labels).set(0);
            self.spool_files.get_or_create(&labels).set(0);
            self.spool_bytes.get_or_create(&labels).set(0);
            self.spool_oldest.get_or_create(&labels).set(0.0);
            drop(self.handshake_seconds.get_or_create(&labels));
            for reason in DenyReason::iter() {
                let labels = DenyLabels {
                    direction,
                    reason: reason.as_str(),
                };
                drop(self.denials.get_or_create(&labels));
                if is_handshake_failure(reason) {
                    drop(self.handshake_failures.get_or_create(&labels));
                }
            }
        }
        for condition in crate::audit::Condition::ALL {
            self.spool_held
                .get_or_create(&SpoolConditionLabels {
                    condition: condition.as_str(),
                })
                .set(0);
        }
        for what in Reloaded::iter() {
            for result in ["ok", "error"] {
                drop(self.reloads.get_or_create(&ReloadLabels {
                    what: what.as_str(),
                    result,
                }));
            }
        }
    }

    /// Declares the configured services — each tunnel (`outbound`) and
    /// export (`inbound`) — and the sync interval that "sessions in the
    /// last interval" counts over. Their connection, byte and session
    /// series start at 0, and their sessions are tracked for `/status`.
    /// Call at start, before traffic, and again after a live reload: a
    /// service declared before keeps its series and sessions as they are.
    pub fn declare_services(&self, interval: Duration, services: &[(ServiceRole, String)]) {
        self.sessions.set_interval(interval);
        let declared = self.sessions.declared();
        for (role, service) in services {
            if declared
                .iter()
                .any(|(d, s)| *d == role.direction() && s == service)
            {
                continue;
            }
            self.sessions.declare(*role, service);
            let direction = direction_label(role.direction());
            let service = self.service_label(Some(service));
            for decision in ["allow", "deny"] {
                drop(self.connections.get_or_create(&ConnLabels {
                    direction,
                    service: service.clone(),
                    decision,
                }));
            }
            for flow in ["in", "out"] {
                drop(self.bytes.get_or_create(&FlowLabels {
                    direction,
                    service: service.clone(),
                    flow,
                }));
            }
            for result in ["ok", "failed"] {
                drop(self.sessions_total.get_or_create(&SessionLabels {
                    direction,
                    service: service.clone(),
                    result,
                }));
            }
            let labels = ServiceLabels { direction, service };
            self.session_last_success.get_or_create(&labels).set(0);
            self.session_last_success_bytes
                .get_or_create(&labels)
                .set(0);
            self.session_last_failure.get_or_create(&labels).set(0);
            drop(self.export_failures.get_or_create(&labels));
        }
    }

    /// Records how a session of `service` ended; the proxy calls it once
    /// per session (a refusal, or the close of a relayed connection).
    /// Services not declared with [`Metrics::declare_services`] (the spool,
    /// the control channel, names a peer made up) are ignored.
    pub fn session_ended(
        &self,
        direction: Direction,
        service: Option<&str>,
        outcome: SessionOutcome<'_>,
    ) {
        let Some(service) = service else { return };
        let now = time::OffsetDateTime::now_utc();
        if !self.sessions.ended(direction, service, outcome, now) {
            return;
        }
        let direction = direction_label(direction);
        let failed = matches!(outcome, SessionOutcome::Failed { .. });
        self.sessions_total
            .get_or_create(&SessionLabels {
                direction,
                service: service.to_owned(),
                result: if failed { "failed" } else { "ok" },
            })
            .inc();
        let labels = ServiceLabels {
            direction,
            service: service.to_owned(),
        };
        match outcome {
            SessionOutcome::Failed { .. } => {
                self.session_last_failure
                    .get_or_create(&labels)
                    .set(now.unix_timestamp());
            }
            SessionOutcome::Ok {
                bytes_in,
                bytes_out,
            } => {
                self.session_last_success
                    .get_or_create(&labels)
                    .set(now.unix_timestamp());
                let bytes = i64::try_from(bytes_in.saturating_add(bytes_out)).unwrap_or(i64::MAX);
                self.session_last_success_bytes
                    .get_or_create(&labels)
                    .set(bytes);
            }
        }
    }

    /// Each declared service's sessions as of `now`, for `/status`.
    pub fn services(&self, now: time::OffsetDateTime) -> Vec<ServiceStatus> {
        self.sessions.status_at(now)
    }
}
