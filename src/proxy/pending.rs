//! Per-source accounting of connections still in their TLS handshake on the
//! peer listener.
//!
//! A host holds at most `max_handshakes_per_source` handshakes open at once.
//! When one more arrives, the *oldest* pending handshake of that host is
//! evicted (closed and audited as `too_many_connections`) rather than the new
//! one refused: idle or half-open sockets are by nature the oldest, and a
//! genuine peer gateway finishes its handshake in milliseconds, so it keeps
//! being served even when it shares its address with the sockets that flood
//! (a NAT, or an attacker on the same host). Authenticated connections are
//! not counted here.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

type Queues = Mutex<HashMap<IpAddr, VecDeque<(u64, CancellationToken)>>>;

#[derive(Default)]
pub struct Pending {
    by_source: Arc<Queues>,
}

/// One connection's place in the handshake count; released on drop.
pub struct PendingGuard {
    by_source: Arc<Queues>,
    source: IpAddr,
    id: u64,
    /// Cancelled when a newer handshake from the same source evicted this one.
    pub evicted: CancellationToken,
}

impl Pending {
    /// Takes a place for handshake `id` from `source`, evicting the oldest
    /// pending handshake of that source if it already holds `limit`.
    ///
    /// Called by the accept loop, in accept order, so "oldest" means the
    /// connection that arrived first.
    pub fn enter(&self, source: IpAddr, limit: usize, id: u64) -> PendingGuard {
        let evicted = CancellationToken::new();
        if let Ok(mut map) = self.by_source.lock() {
            let queue = map.entry(source).or_default();
            while queue.len() >= limit.max(1) {
                if let Some((_, oldest)) = queue.pop_front() {
                    oldest.cancel();
                }
            }
            queue.push_back((id, evicted.clone()));
        }
        PendingGuard {
            by_source: self.by_source.clone(),
            source,
            id,
            evicted,
        }
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if let Ok(mut map) = self.by_source.lock() {
            if let Some(queue) = map.get_mut(&self.source) {
                queue.retain(|(id, _)| *id != self.id);
                if queue.is_empty() {
                    map.remove(&self.source);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_handshake_of_a_full_source_is_evicted() {
        let p = Pending::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let g1 = p.enter(a, 2, 1);
        let g2 = p.enter(a, 2, 2);
        let gb = p.enter(b, 2, 3);
        assert!(!g1.evicted.is_cancelled());
        let g3 = p.enter(a, 2, 4);
        assert!(g1.evicted.is_cancelled(), "oldest of the full source goes");
        assert!(!g2.evicted.is_cancelled() && !g3.evicted.is_cancelled());
        assert!(!gb.evicted.is_cancelled(), "other sources are untouched");
        drop((g1, g2, g3, gb));
        assert!(
            p.by_source.lock().unwrap().is_empty(),
            "released entries are removed"
        );
    }
}
