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
//!
//! **The paired peer gets a larger allowance** (`max_handshakes_per_peer`).
//! Every tunnelled connection from the peer site handshakes from the peer
//! gateway's address, as many at once as its local clients open: 2,000
//! concurrent Front End connections are 2,000 handshakes from one address,
//! and the stranger's cap of 64 evicted most of them. Counting per source
//! only until the client certificate is verified does not help — the
//! pending part *is* the handshake. So an address earns the peer allowance
//! by evidence, and keeps it while the evidence is fresh ([`VOUCH_TTL`],
//! renewed by every heartbeat and connection):
//! - a handshake from it completed with a verified certificate of the
//!   paired pool ([`PendingGuard::vouch`]), or
//! - our own dial to `peer.connect` reached it and verified the paired
//!   pool's certificate ([`Pending::vouch`]) — this covers a gateway that has
//!   just started, before any inbound connection proved anything.
//!
//! Strangers keep the tight cap; a host that shares the peer's address (a
//! NAT) shares its allowance, and eviction of the oldest still protects the
//! peer's fresh handshakes from that host's idle sockets. At most
//! [`MAX_VOUCHED`] addresses are remembered.
//!
//! Both allowances change live on a config reload ([`Pending::set_allowances`]):
//! the next handshake is counted against the new ones. A source that holds
//! more than a lowered allowance keeps its handshakes until its next one
//! arrives, which then evicts the oldest down to the new allowance.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// How long an address keeps the peer allowance after the peer last proved
/// to be there. Heartbeats renew it every few seconds while the link is up.
pub const VOUCH_TTL: Duration = Duration::from_secs(600);
/// Addresses remembered as the peer's (a gateway has one peer, seen from one
/// or a few addresses).
pub const MAX_VOUCHED: usize = 16;

#[derive(Default)]
struct Inner {
    queues: Mutex<HashMap<IpAddr, VecDeque<(u64, CancellationToken)>>>,
    /// Address → when the paired peer last proved to be there.
    vouched: Mutex<HashMap<IpAddr, Instant>>,
}

pub struct Pending {
    inner: Arc<Inner>,
    per_source: AtomicUsize,
    per_peer: AtomicUsize,
}

/// One connection's place in the handshake count; released on drop.
pub struct PendingGuard {
    inner: Arc<Inner>,
    source: IpAddr,
    id: u64,
    /// Cancelled when a newer handshake from the same source evicted this one.
    pub evicted: CancellationToken,
}

impl Pending {
    /// Strangers may hold `per_source` handshakes at once, the peer's
    /// addresses `per_peer`.
    pub fn new(per_source: usize, per_peer: usize) -> Pending {
        let pending = Pending {
            inner: Arc::default(),
            per_source: AtomicUsize::new(1),
            per_peer: AtomicUsize::new(1),
        };
        pending.set_allowances(per_source, per_peer);
        pending
    }

    /// Counts the next handshakes against new allowances (a config reload).
    pub fn set_allowances(&self, per_source: usize, per_peer: usize) {
        self.per_source.store(per_source.max(1), Ordering::Relaxed);
        self.per_peer
            .store(per_peer.max(per_source).max(1), Ordering::Relaxed);
    }

    /// Takes a place for handshake `id` from `source`, evicting the oldest
    /// pending handshake of that source if it already holds its allowance.
    ///
    /// Called by the accept loop, in accept order, so "oldest" means the
    /// connection that arrived first.
    pub fn enter(&self, source: IpAddr, id: u64, now: Instant) -> PendingGuard {
        let source = source.to_canonical();
        let limit = if self.inner.is_vouched(source, now) {
            self.per_peer.load(Ordering::Relaxed)
        } else {
            self.per_source.load(Ordering::Relaxed)
        };
        let evicted = CancellationToken::new();
        if let Ok(mut map) = self.inner.queues.lock() {
            let queue = map.entry(source).or_default();
            while queue.len() >= limit {
                if let Some((_, oldest)) = queue.pop_front() {
                    oldest.cancel();
                }
            }
            queue.push_back((id, evicted.clone()));
        }
        PendingGuard {
            inner: self.inner.clone(),
            source,
            id,
            evicted,
        }
    }

    /// Records that the paired peer proved to be at `addr` (our dial to it
    /// verified its certificate).
    pub fn vouch(&self, addr: IpAddr, now: Instant) {
        self.inner.vouch(addr.to_canonical(), now);
    }
}

impl Inner {
    fn is_vouched(&self, addr: IpAddr, now: Instant) -> bool {
        self.vouched.lock().is_ok_and(|v| {
            v.get(&addr)
                .is_some_and(|at| now.saturating_duration_since(*at) < VOUCH_TTL)
        })
    }

    fn vouch(&self, addr: IpAddr, now: Instant) {
        let Ok(mut v) = self.vouched.lock() else {
            return;
        };
        v.insert(addr, now);
        if v.len() > MAX_VOUCHED {
            v.retain(|_, at| now.saturating_duration_since(*at) < VOUCH_TTL);
            while v.len() > MAX_VOUCHED {
                let oldest = v.iter().min_by_key(|(_, at)| **at).map(|(a, _)| *a);
                match oldest {
                    Some(a) => v.remove(&a),
                    None => break,
                };
            }
        }
    }
}

impl PendingGuard {
    /// Records that this handshake's source is the paired peer: its
    /// certificate verified and names the paired pool.
    pub fn vouch(&self, now: Instant) {
        self.inner.vouch(self.source, now);
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if let Ok(mut map) = self.inner.queues.lock() {
            if let Some(queue) = map.get_mut(&self.source) {
                queue.retain(|(id, _)| *id != self.id);
                if queue.is_empty() {
                    map.remove(&self.source);
                    // A burst grew the table; give the memory back once it
                    // is mostly empty again.
                    if map.capacity() > 64 && map.len() < map.capacity() / 4 {
                        map.shrink_to_fit();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_oldest_handshake_of_a_full_source_is_evicted() {
        let p = Pending::new(2, 4);
        let now = Instant::now();
        let (a, b) = (ip("127.0.0.1"), ip("127.0.0.2"));
        let g1 = p.enter(a, 1, now);
        let g2 = p.enter(a, 2, now);
        let gb = p.enter(b, 3, now);
        assert!(!g1.evicted.is_cancelled());
        let g3 = p.enter(a, 4, now);
        assert!(g1.evicted.is_cancelled(), "oldest of the full source goes");
        assert!(!g2.evicted.is_cancelled() && !g3.evicted.is_cancelled());
        assert!(!gb.evicted.is_cancelled(), "other sources are untouched");
        drop((g1, g2, g3, gb));
        assert!(
            p.inner.queues.lock().unwrap().is_empty(),
            "released entries are removed"
        );
    }

    #[test]
    fn an_address_the_peer_proved_to_be_at_gets_the_peer_allowance_for_a_while() {
        let p = Pending::new(2, 5);
        let now = Instant::now();
        let peer = ip("127.0.0.9");
        let first = p.enter(peer, 1, now);
        first.vouch(now);
        let more: Vec<_> = (2..=5).map(|id| p.enter(peer, id, now)).collect();
        assert!(!first.evicted.is_cancelled(), "5 fit in the peer allowance");
        let sixth = p.enter(peer, 6, now);
        assert!(
            first.evicted.is_cancelled(),
            "the allowance still has a cap"
        );
        drop((first, more, sixth));

        // A stranger, and the same address once the evidence is stale.
        let s1 = p.enter(ip("127.0.0.7"), 7, now);
        let _s2 = p.enter(ip("127.0.0.7"), 8, now);
        let _s3 = p.enter(ip("127.0.0.7"), 9, now);
        assert!(s1.evicted.is_cancelled(), "strangers keep the tight cap");
        let later = now + VOUCH_TTL;
        let old1 = p.enter(peer, 10, later);
        let _old2 = p.enter(peer, 11, later);
        let _old3 = p.enter(peer, 12, later);
        assert!(old1.evicted.is_cancelled(), "the allowance expires");
    }

    #[test]
    fn new_allowances_count_from_the_next_handshake() {
        let p = Pending::new(2, 4);
        let now = Instant::now();
        let (stranger, peer) = (ip("127.0.0.7"), ip("127.0.0.9"));
        p.vouch(peer, now);
        let s: Vec<_> = (1..=2).map(|id| p.enter(stranger, id, now)).collect();

        // Raised: a third stranger handshake no longer evicts.
        p.set_allowances(3, 6);
        let s3 = p.enter(stranger, 3, now);
        assert!(s.iter().all(|g| !g.evicted.is_cancelled()), "raised live");
        let peers: Vec<_> = (10..16).map(|id| p.enter(peer, id, now)).collect();
        assert!(
            peers.iter().all(|g| !g.evicted.is_cancelled()),
            "the peer allowance raised live"
        );

        // Lowered: nothing is evicted by the change itself; the next
        // handshake evicts the oldest down to the new allowance.
        p.set_allowances(1, 2);
        assert!(!s[0].evicted.is_cancelled() && !s3.evicted.is_cancelled());
        let s4 = p.enter(stranger, 4, now);
        assert!(s[0].evicted.is_cancelled() && s[1].evicted.is_cancelled());
        assert!(s3.evicted.is_cancelled(), "down to the new allowance of 1");
        assert!(!s4.evicted.is_cancelled());
        let p7 = p.enter(peer, 16, now);
        let kept = peers.iter().filter(|g| !g.evicted.is_cancelled()).count();
        assert_eq!(kept, 1, "one held + the new one = the peer allowance of 2");
        assert!(!p7.evicted.is_cancelled());

        // The peer allowance is never below a stranger's.
        p.set_allowances(5, 2);
        assert_eq!(p.per_peer.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn our_dial_vouches_for_mapped_and_plain_forms_alike() {
        let p = Pending::new(1, 3);
        let now = Instant::now();
        p.vouch(ip("::ffff:127.0.0.9"), now);
        let g1 = p.enter(ip("127.0.0.9"), 1, now);
        let _g2 = p.enter(ip("127.0.0.9"), 2, now);
        assert!(!g1.evicted.is_cancelled());
    }

    #[test]
    fn the_vouched_table_stays_small() {
        let p = Pending::new(1, 3);
        let now = Instant::now();
        for i in 0..100u8 {
            p.vouch(
                IpAddr::from([10, 0, 1, i]),
                now + Duration::from_millis(i.into()),
            );
        }
        let v = p.inner.vouched.lock().unwrap();
        assert_eq!(v.len(), MAX_VOUCHED);
        assert!(v.contains_key(&IpAddr::from([10, 0, 1, 99])), "newest kept");
    }
}
