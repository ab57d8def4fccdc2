//! `[limits]` applied live: a config reload hands the new section to
//! [`Context::apply_limits`], and each limit reaches what comes next,
//! never a connection already established.
//!
//! - `handshake_timeout_secs`: the next handshake (and the next export
//!   connect, PROXY header read and control exchange); a handshake under
//!   way keeps the timeout it started with.
//! - `idle_timeout_secs`: the next connection. An established relay keeps
//!   the idle timeout it started with: it is read once when the relay
//!   starts, so a lowered value never closes a quiet session that was
//!   admitted under the old one.
//! - `max_connections`: raised, the new slots are there at once (and the
//!   open-file limit is raised for it); lowered, the free slots go at once
//!   and the rest are taken back as connections end ([`super::slots`]) —
//!   no open connection is closed for it. The accept queues of listeners
//!   already bound keep their length; the listeners a reload adds (the same
//!   reload included: `gateway::apply` binds them with the new value) get
//!   the new one.
//! - `max_handshakes_per_source`, `max_handshakes_per_peer`: the next
//!   handshake on the peer listener (`peer::pending`).
//! - `shutdown_grace_secs`, `shutdown_delay_secs`: read (from the running
//!   config) when the gateway stops.
//!
//! Every limit is read through `Peer::limits` where it is applied, so
//! there is one place that changes.

use crate::config::Limits;

use super::{fds, Context};

impl Context {
    /// Applies a reloaded `[limits]` section; returns whether anything
    /// changed (logged once, naming each changed key with both values).
    pub fn apply_limits(&self, new: &Limits) -> bool {
        let old = self.peer.limits();
        let changed = changed(&old, new);
        if changed.is_empty() {
            return false;
        }
        if new.max_connections > old.max_connections {
            // The cap is only real with descriptors for both sockets of each connection.
            fds::ensure_for(new.max_connections);
        }
        self.slots.resize(new.max_connections);
        self.peer
            .pending
            .set_allowances(new.max_handshakes_per_source, new.max_handshakes_per_peer);
        self.peer.set_limits(new.clone());
        tracing::info!(changed = ?changed, "limits applied live");
        true
    }
}

/// `key: old -> new` for each limit that differs. Destructured
/// exhaustively: a new limit does not compile until it is compared here.
fn changed(old: &Limits, new: &Limits) -> Vec<String> {
    let Limits {
        handshake_timeout,
        idle_timeout,
        max_connections,
        max_handshakes_per_source,
        max_handshakes_per_peer,
        shutdown_grace,
        shutdown_delay,
    } = old;
    let secs = [
        (
            "limits.handshake_timeout_secs",
            handshake_timeout,
            &new.handshake_timeout,
        ),
        ("limits.idle_timeout_secs", idle_timeout, &new.idle_timeout),
        (
            "limits.shutdown_grace_secs",
            shutdown_grace,
            &new.shutdown_grace,
        ),
        (
            "limits.shutdown_delay_secs",
            shutdown_delay,
            &new.shutdown_delay,
        ),
    ];
    let counts = [
        (
            "limits.max_connections",
            max_connections,
            &new.max_connections,
        ),
        (
            "limits.max_handshakes_per_source",
            max_handshakes_per_source,
            &new.max_handshakes_per_source,
        ),
        (
            "limits.max_handshakes_per_peer",
            max_handshakes_per_peer,
            &new.max_handshakes_per_peer,
        ),
    ];
    let secs = secs
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(key, a, b)| format!("{key}: {} -> {}", a.as_secs(), b.as_secs()));
    let counts = counts
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(key, a, b)| format!("{key}: {a} -> {b}"));
    secs.chain(counts).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn each_changed_limit_is_named_with_both_values() {
        let old = Limits::default();
        assert!(changed(&old, &old.clone()).is_empty());
        let new = Limits {
            handshake_timeout: Duration::from_secs(3),
            max_connections: 6,
            ..old.clone()
        };
        assert_eq!(
            changed(&old, &new),
            [
                "limits.handshake_timeout_secs: 10 -> 3",
                "limits.max_connections: 4096 -> 6"
            ]
        );
    }
}
