//! Retry timing of the spool, on [`crate::backoff::Backoff`]: the
//! forwarder's connection retries ([`connection_backoff`]: capped,
//! exponential, with jitter) and [`Holds`], per-file backoff — a file the
//! peer refused, or that the inbox cannot take, is set aside with its own
//! timer while the rest of the queue flows: no head-of-line blocking, and
//! no retry loop that floods the log or the link. Sans-IO: `now` comes
//! from the caller.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

pub use crate::backoff::Backoff;

/// First retry delay after a failed connection.
pub const BACKOFF_START: Duration = Duration::from_millis(200);
/// Longest retry delay.
pub const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// The forwarder's reconnection backoff (use with [`Backoff::next_jittered`]).
pub fn connection_backoff() -> Backoff {
    Backoff::new(BACKOFF_START, BACKOFF_CAP)
}

/// One set-aside file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    pub until: Instant,
    backoff: Backoff,
}

/// Files set aside, by key (an id).
#[derive(Debug)]
pub struct Holds<K> {
    map: HashMap<K, Hold>,
}

impl<K> Default for Holds<K> {
    fn default() -> Self {
        Holds {
            map: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash + Clone> Holds<K> {
    /// Whether `key` is set aside at `now`.
    pub fn is_held(&self, key: &K, now: Instant) -> bool {
        self.map.get(key).is_some_and(|h| h.until > now)
    }

    /// Sets `key` aside: first for `first`, then twice as long each time up
    /// to `cap`. Returns true the first time (report it then, not on every
    /// retry) and when it will be due.
    pub fn hold(
        &mut self,
        key: &K,
        first: Duration,
        cap: Duration,
        now: Instant,
    ) -> (bool, Instant) {
        match self.map.get_mut(key) {
            Some(h) => {
                h.backoff.rebound(first, cap);
                h.until = now + h.backoff.next_delay();
                (false, h.until)
            }
            None => {
                let mut backoff = Backoff::new(first, cap);
                let h = Hold {
                    until: now + backoff.next_delay(),
                    backoff,
                };
                self.map.insert(key.clone(), h);
                (true, h.until)
            }
        }
    }

    /// Ends the hold of `key`; true if it was held.
    pub fn release(&mut self, key: &K) -> bool {
        self.map.remove(key).is_some()
    }

    /// When the next held key becomes due.
    pub fn next_due(&self) -> Option<Instant> {
        self.map.values().map(|h| h.until).min()
    }

    /// Forgets keys for which `keep` is false (files no longer there).
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.map.retain(|k, _| keep(k));
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_and_resets() {
        let mut b = connection_backoff();
        let first = b.next_jittered();
        assert!(first >= BACKOFF_START / 2 && first <= BACKOFF_START);
        let mut last = first;
        for _ in 0..20 {
            last = b.next_jittered();
            assert!(last <= BACKOFF_CAP);
        }
        assert!(last >= BACKOFF_CAP / 2);
        b.reset();
        assert!(b.next_jittered() <= BACKOFF_START);
    }

    #[test]
    fn a_hold_backs_off_per_key_and_reports_once() {
        let t0 = Instant::now();
        let mut h = Holds::default();
        let (s5, m5) = (Duration::from_secs(5), Duration::from_secs(300));
        assert_eq!(h.hold(&"big", s5, m5, t0), (true, t0 + s5));
        assert!(h.is_held(&"big", t0));
        assert!(!h.is_held(&"small", t0), "others are not held");
        assert!(!h.is_held(&"big", t0 + s5), "due again after the delay");
        let mut at = t0 + s5;
        let mut last = s5;
        for _ in 0..10 {
            let (first, until) = h.hold(&"big", s5, m5, at);
            assert!(!first);
            assert!(until - at >= last && until - at <= m5);
            last = until - at;
            at = until;
        }
        assert_eq!(last, m5);
        assert_eq!(h.next_due(), Some(at));
        h.hold(&"other", s5, m5, t0);
        assert_eq!(h.next_due(), Some(t0 + s5));
        h.retain(|k| *k != "other");
        assert_eq!(h.len(), 1);
        assert!(h.release(&"big"));
        assert!(!h.release(&"big"));
        assert!(h.is_empty());
    }
}
