//! The open connections, with the certificate chain each peer presented and
//! the service each carries, so that a CRL reload can close established
//! connections of a newly revoked peer (a rotation, by contrast, leaves them
//! alone), a policy reload those whose service is no longer allowed, and a
//! config reload those of a removed listener or a narrowed `allow_sources`
//! (`gateway::drain`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use rustls::pki_types::CertificateDer;
use tokio_util::sync::CancellationToken;

use crate::audit::Direction;
use crate::tls::Material;

/// What a reload judges an open connection by.
#[derive(Debug, Clone)]
pub struct Origin {
    pub direction: Direction,
    /// The policy service the connection carries (tunnels; none for the
    /// spool and control links, which the policy governs at connect only).
    pub service: Option<String>,
    /// The gateway listener that accepted it (outbound: a tunnel or an
    /// intercept; none for inbound).
    pub listener: Option<SocketAddr>,
    /// The local client (outbound), judged against `allow_sources`.
    pub client: Option<IpAddr>,
    /// The original destination (intercepted), judged against `destinations`.
    pub destination: Option<SocketAddr>,
}

/// Why the gateway closed an open connection itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Closed {
    /// A CRL now revokes the peer's certificate.
    Revoked = 1,
    /// The reloaded policy no longer allows its service.
    Disallowed = 2,
    /// The changed `allow_sources` of its listener no longer admits its client.
    SourceRefused = 3,
    /// The changed `destinations` of its intercept no longer admit its
    /// original destination.
    DestinationRefused = 4,
    /// Its listener or export was removed, and the grace period is over.
    Drained = 5,
}

impl Closed {
    fn from_u8(v: u8) -> Option<Closed> {
        [
            Closed::Revoked,
            Closed::Disallowed,
            Closed::SourceRefused,
            Closed::DestinationRefused,
            Closed::Drained,
        ]
        .into_iter()
        .find(|c| *c as u8 == v)
    }
}

struct Entry {
    origin: Origin,
    chain: Vec<CertificateDer<'static>>,
    token: CancellationToken,
    closed: Arc<AtomicU8>,
}

#[derive(Default)]
pub struct Registry {
    open: Mutex<HashMap<u64, Entry>>,
}

/// A registered connection; unregisters itself when dropped.
pub struct Registration<'a> {
    registry: &'a Registry,
    id: u64,
    /// Cancelled when the connection must close (shutdown, or [`Closed`]).
    pub token: CancellationToken,
    closed: Arc<AtomicU8>,
}

impl Registration<'_> {
    /// Why the gateway closed the connection, if it did (not at shutdown).
    pub fn closed(&self) -> Option<Closed> {
        Closed::from_u8(self.closed.load(Ordering::Relaxed))
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if let Ok(mut open) = self.registry.open.lock() {
            open.remove(&self.id);
            // A burst grew the table; give the memory back once it is
            // mostly empty again (amortised: at most once per halving).
            if open.capacity() > 64 && open.len() < open.capacity() / 4 {
                let keep = open.len() * 2;
                open.shrink_to(keep);
            }
        }
    }
}

impl Registry {
    /// Registers connection `id` of `origin` whose peer presented `chain`.
    /// Its token is a child of `parent` (the gateway's hard-stop token).
    pub fn register(
        &self,
        id: u64,
        origin: Origin,
        chain: Vec<CertificateDer<'static>>,
        parent: &CancellationToken,
    ) -> Registration<'_> {
        let token = parent.child_token();
        let closed = Arc::new(AtomicU8::new(0));
        if let Ok(mut open) = self.open.lock() {
            open.insert(
                id,
                Entry {
                    origin,
                    chain,
                    token: token.clone(),
                    closed: closed.clone(),
                },
            );
        }
        Registration {
            registry: self,
            id,
            token,
            closed,
        }
    }

    /// Closes every open connection `close` picks (by id and origin), for
    /// `why` (the first reason given to a connection stays); returns how many.
    pub fn close_where(&self, why: Closed, close: impl Fn(u64, &Origin) -> bool) -> u64 {
        let Ok(open) = self.open.lock() else { return 0 };
        let mut closed = 0;
        for (id, entry) in open.iter() {
            if close(*id, &entry.origin) {
                let _ = entry.closed.compare_exchange(
                    0,
                    why as u8,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                entry.token.cancel();
                closed += 1;
            }
        }
        closed
    }

    /// How many open connections `pick` picks.
    pub fn count_where(&self, pick: impl Fn(u64, &Origin) -> bool) -> usize {
        let Ok(open) = self.open.lock() else { return 0 };
        open.iter().filter(|(id, e)| pick(**id, &e.origin)).count()
    }

    /// Closes every open connection whose service `allowed` now refuses
    /// (after a policy reload); returns how many.
    pub fn close_disallowed(&self, allowed: impl Fn(&str) -> bool) -> u64 {
        self.close_where(Closed::Disallowed, |_, o| {
            o.service.as_deref().is_some_and(|s| !allowed(s))
        })
    }

    /// Closes every open connection whose peer certificate `material` now
    /// finds revoked; returns how many.
    pub fn close_revoked(&self, material: &Material, peer_pool: &str) -> u64 {
        let Ok(open) = self.open.lock() else { return 0 };
        let mut closed = 0;
        for entry in open.values() {
            let as_client = entry.origin.direction == Direction::Inbound;
            if material.is_revoked(&entry.chain, as_client, peer_pool) {
                let _ = entry.closed.compare_exchange(
                    0,
                    Closed::Revoked as u8,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                entry.token.cancel();
                closed += 1;
            }
        }
        closed
    }

    pub fn len(&self) -> usize {
        self.open.lock().map(|o| o.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            direction: Direction::Outbound,
            service: Some("backup-smb".into()),
            listener: Some(([127, 0, 0, 1], 8445).into()),
            client: Some([127, 0, 0, 5].into()),
            destination: None,
        }
    }

    #[test]
    fn the_first_reason_to_close_stays_and_only_the_picked_close() {
        let registry = Registry::default();
        let stop = CancellationToken::new();
        let mut other = origin();
        other.listener = Some(([127, 0, 0, 1], 9445).into());
        let a = registry.register(1, origin(), vec![], &stop);
        let b = registry.register(2, other, vec![], &stop);
        let on_8445 = |_: u64, o: &Origin| o.listener.is_some_and(|l| l.port() == 8445);
        assert_eq!(registry.count_where(on_8445), 1);
        assert_eq!(registry.close_where(Closed::Drained, on_8445), 1);
        assert_eq!(registry.close_where(Closed::Disallowed, |_, _| true), 2);
        assert_eq!(a.closed(), Some(Closed::Drained));
        assert!(a.token.is_cancelled());
        assert_eq!(b.closed(), Some(Closed::Disallowed));
        let c = registry.register(3, origin(), vec![], &stop);
        assert_eq!(c.closed(), None);
        assert!(!c.token.is_cancelled());
    }

    #[test]
    fn the_table_shrinks_after_a_burst() {
        let registry = Registry::default();
        let stop = CancellationToken::new();
        let burst: Vec<_> = (0..1000)
            .map(|id| registry.register(id, origin(), vec![], &stop))
            .collect();
        let peak = registry.open.lock().unwrap().capacity();
        drop(burst);
        assert!(registry.is_empty());
        let after = registry.open.lock().unwrap().capacity();
        assert!(after <= 128 && after < peak, "capacity {peak} -> {after}");
    }
}
