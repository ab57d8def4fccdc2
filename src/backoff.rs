//! Waiting longer after each failure: the one backoff of pairgate.
//!
//! Every retry that follows a failure doubles its wait up to a cap: the
//! accept loop after `accept` fails (out of descriptors), the spool
//! forwarder reconnecting to an unreachable peer, a spool file the peer
//! refused or the inbox cannot take ([`crate::spool::hold`]), an outbox
//! file intake could not read ([`crate::spool::settle`]). A persistent
//! failure then costs a few tries an hour, not a loop; the first success
//! resets it. Sans-IO: the caller sleeps.

use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};

/// Delays that start at `first` and double after each failure, up to `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    /// The delay handed out last; `None` before the first failure.
    last: Option<Duration>,
}

impl Backoff {
    pub const fn new(first: Duration, cap: Duration) -> Backoff {
        Backoff {
            first,
            cap,
            last: None,
        }
    }

    /// The delay to wait after this failure: `first`, then twice the last
    /// one, never more than `cap` (nor less than `first`).
    pub fn next_delay(&mut self) -> Duration {
        let floor = self.first.min(self.cap);
        let delay = match self.last {
            None => floor,
            Some(last) => last.saturating_mul(2).min(self.cap).max(floor),
        };
        self.last = Some(delay);
        delay
    }

    /// [`Backoff::next_delay`] with jitter: uniform in `[d/2, d]`, so
    /// clients that failed together do not retry together.
    pub fn next_jittered(&mut self) -> Duration {
        let d = self.next_delay();
        let mut r = [0u8; 4];
        let frac = if SystemRandom::new().fill(&mut r).is_ok() {
            f64::from(u32::from_be_bytes(r)) / f64::from(u32::MAX)
        } else {
            0.5
        };
        d / 2 + d.mul_f64(frac / 2.0)
    }

    /// The same backoff with other bounds from now on (a refusal whose
    /// kind changed); the wait still doubles from the last one.
    pub fn rebound(&mut self, first: Duration, cap: Duration) {
        self.first = first;
        self.cap = cap;
    }

    /// After a success: the next failure waits `first` again.
    pub fn reset(&mut self) {
        self.last = None;
    }

    /// Whether a failure was counted since the last reset.
    pub fn is_failing(&self) -> bool {
        self.last.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(MS(5), MS(1000));
        let delays: Vec<_> = (0..10).map(|_| b.next_delay()).collect();
        assert_eq!(delays[..3], [MS(5), MS(10), MS(20)]);
        assert_eq!(delays[9], MS(1000));
        assert!(b.is_failing());
        b.reset();
        assert!(!b.is_failing());
        assert_eq!(b.next_delay(), MS(5));
    }

    #[test]
    fn new_bounds_keep_doubling_from_the_last_wait() {
        let mut b = Backoff::new(MS(1000), MS(300_000));
        assert_eq!(b.next_delay(), MS(1000));
        b.rebound(MS(5000), MS(300_000));
        assert_eq!(b.next_delay(), MS(5000), "never below the new first");
        assert_eq!(b.next_delay(), MS(10_000));
        b.rebound(MS(5000), MS(8000));
        assert_eq!(b.next_delay(), MS(8000), "never above the new cap");
    }

    #[test]
    fn jitter_stays_within_half_to_the_whole_delay() {
        let mut b = Backoff::new(MS(200), MS(5000));
        for _ in 0..20 {
            let d = b.next_jittered();
            assert!(d <= MS(5000));
        }
        assert!(b.next_jittered() >= MS(2500));
    }
}
