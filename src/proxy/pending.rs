//! Per-source accounting of connections still in their TLS handshake on the
//! peer listener. A host that opens hundreds of sockets and never finishes a
//! handshake holds at most `max_handshakes_per_source` of them; the rest are
//! refused at once (`too_many_connections`), so legitimate peers keep being
//! served. Authenticated connections are not counted here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

#[derive(Default)]
pub struct Pending {
    by_source: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in the handshake count; released on drop.
pub struct PendingGuard<'a> {
    pending: &'a Pending,
    source: IpAddr,
}

impl Pending {
    /// Takes a place for `source` if it has fewer than `limit` handshakes open.
    pub fn enter(&self, source: IpAddr, limit: usize) -> Option<PendingGuard<'_>> {
        let mut map = self.by_source.lock().ok()?;
        let count = map.entry(source).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(PendingGuard {
            pending: self,
            source,
        })
    }
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.pending.by_source.lock() {
            if let Some(count) = map.get_mut(&self.source) {
                *count -= 1;
                if *count == 0 {
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
    fn caps_each_source_separately_and_releases() {
        let p = Pending::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let g1 = p.enter(a, 2).unwrap();
        let _g2 = p.enter(a, 2).unwrap();
        assert!(p.enter(a, 2).is_none());
        assert!(p.enter(b, 2).is_some());
        drop(g1);
        assert!(p.enter(a, 2).is_some());
        assert!(
            p.by_source.lock().unwrap().get(&b).is_none(),
            "released entries are removed"
        );
    }
}
