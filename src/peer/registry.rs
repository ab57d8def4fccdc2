//! The open connections, with the certificate chain each peer presented and
//! the service each carries, so that a CRL reload can close established
//! connections of a newly revoked peer (a rotation, by contrast, leaves them
//! alone) and a policy reload those whose service is no longer allowed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rustls::pki_types::CertificateDer;
use tokio_util::sync::CancellationToken;

use crate::audit::Direction;
use crate::tls::Material;

struct Entry {
    direction: Direction,
    chain: Vec<CertificateDer<'static>>,
    /// The policy service the connection carries (tunnels; none for the
    /// spool and control links, which the policy governs at connect only).
    service: Option<String>,
    token: CancellationToken,
    revoked: Arc<AtomicBool>,
    disallowed: Arc<AtomicBool>,
}

#[derive(Default)]
pub struct Registry {
    open: Mutex<HashMap<u64, Entry>>,
}

/// A registered connection; unregisters itself when dropped.
pub struct Registration<'a> {
    registry: &'a Registry,
    id: u64,
    /// Cancelled when the connection must close (shutdown or revocation).
    pub token: CancellationToken,
    revoked: Arc<AtomicBool>,
    disallowed: Arc<AtomicBool>,
}

impl Registration<'_> {
    /// Whether the connection was closed because its peer was revoked.
    pub fn was_revoked(&self) -> bool {
        self.revoked.load(Ordering::Relaxed)
    }

    /// Whether the connection was closed because a reloaded policy no
    /// longer allows its service.
    pub fn was_disallowed(&self) -> bool {
        self.disallowed.load(Ordering::Relaxed)
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
    /// Registers connection `id` whose peer presented `chain`, carrying
    /// `service` (a tunnel's; `None` when a policy reload must not close
    /// it). Its token is a child of `parent` (the gateway's hard-stop token).
    pub fn register(
        &self,
        id: u64,
        direction: Direction,
        chain: Vec<CertificateDer<'static>>,
        service: Option<&str>,
        parent: &CancellationToken,
    ) -> Registration<'_> {
        let token = parent.child_token();
        let revoked = Arc::new(AtomicBool::new(false));
        let disallowed = Arc::new(AtomicBool::new(false));
        if let Ok(mut open) = self.open.lock() {
            open.insert(
                id,
                Entry {
                    direction,
                    chain,
                    service: service.map(str::to_owned),
                    token: token.clone(),
                    revoked: revoked.clone(),
                    disallowed: disallowed.clone(),
                },
            );
        }
        Registration {
            registry: self,
            id,
            token,
            revoked,
            disallowed,
        }
    }

    /// Closes every open connection whose service `allowed` now refuses
    /// (after a policy reload); returns how many.
    pub fn close_disallowed(&self, allowed: impl Fn(&str) -> bool) -> u64 {
        let Ok(open) = self.open.lock() else { return 0 };
        let mut closed = 0;
        for entry in open.values() {
            if entry.service.as_deref().is_some_and(|s| !allowed(s)) {
                entry.disallowed.store(true, Ordering::Relaxed);
                entry.token.cancel();
                closed += 1;
            }
        }
        closed
    }

    /// Closes every open connection whose peer certificate `material` now
    /// finds revoked; returns how many.
    pub fn close_revoked(&self, material: &Material, peer_pool: &str) -> u64 {
        let Ok(open) = self.open.lock() else { return 0 };
        let mut closed = 0;
        for entry in open.values() {
            let as_client = entry.direction == Direction::Inbound;
            if material.is_revoked(&entry.chain, as_client, peer_pool) {
                entry.revoked.store(true, Ordering::Relaxed);
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

    #[test]
    fn the_table_shrinks_after_a_burst() {
        let registry = Registry::default();
        let stop = CancellationToken::new();
        let burst: Vec<_> = (0..1000)
            .map(|id| registry.register(id, Direction::Inbound, vec![], None, &stop))
            .collect();
        let peak = registry.open.lock().unwrap().capacity();
        drop(burst);
        assert!(registry.is_empty());
        let after = registry.open.lock().unwrap().capacity();
        assert!(after <= 128 && after < peak, "capacity {peak} -> {after}");
    }
}
