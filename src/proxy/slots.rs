//! The cap on connections open at once (`limits.max_connections`), across
//! every listener, resizable while connections are open.
//!
//! One semaphore permit per connection the cap admits; the accept loop
//! refuses an arrival that finds none (`too_many_connections`). A reload
//! that **raises** the cap adds the permits at once. One that **lowers** it
//! takes back the free permits at once and owes the rest: an established
//! connection is never closed for it. The owed permits are taken back as
//! connections end — before the next arrival is admitted — so a new
//! connection is refused until the open ones are under the new cap. A raise
//! while permits are still owed first cancels that debt.
//!
//! Why not a fresh semaphore on reload: the permits of open connections
//! belong to the old one; they would return there, and for as long as they
//! were open the gateway would admit the new cap on top of them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Slots {
    permits: Arc<Semaphore>,
    state: Mutex<State>,
    /// A copy of `State::owed` read without the lock: the accept loop's
    /// usual case (nothing owed) costs one atomic load.
    owed: AtomicUsize,
}

struct State {
    /// The cap in force.
    cap: usize,
    /// Permits a lowered cap still has to take back from open connections.
    owed: usize,
}

impl Slots {
    /// A cap of `cap` connections (at most what a semaphore holds).
    pub fn new(cap: usize) -> Slots {
        let cap = cap.min(Semaphore::MAX_PERMITS);
        Slots {
            permits: Arc::new(Semaphore::new(cap)),
            state: Mutex::new(State { cap, owed: 0 }),
            owed: AtomicUsize::new(0),
        }
    }

    /// A slot for one more connection, held until the permit is dropped;
    /// `None` when the cap is reached.
    pub fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        if self.owed.load(Ordering::Acquire) > 0 {
            self.reclaim(&mut self.lock());
        }
        self.permits.clone().try_acquire_owned().ok()
    }

    /// Sets a new cap; returns whether it changed. Never waits and never
    /// touches a held slot.
    pub fn resize(&self, cap: usize) -> bool {
        let cap = cap.min(Semaphore::MAX_PERMITS);
        let mut state = self.lock();
        if cap == state.cap {
            return false;
        }
        if cap > state.cap {
            let more = cap - state.cap;
            let repaid = more.min(state.owed);
            state.owed -= repaid;
            self.permits.add_permits(more - repaid);
        } else {
            state.owed += state.cap - cap;
        }
        state.cap = cap;
        self.reclaim(&mut state);
        true
    }

    /// The cap in force.
    pub fn cap(&self) -> usize {
        self.lock().cap
    }

    /// Slots held by open connections.
    pub fn in_use(&self) -> usize {
        let state = self.lock();
        (state.cap + state.owed).saturating_sub(self.permits.available_permits())
    }

    /// Takes back what is owed from the free permits.
    fn reclaim(&self, state: &mut State) {
        if state.owed > 0 {
            let free = state.owed.min(self.permits.available_permits());
            state.owed -= self.permits.forget_permits(free);
        }
        self.owed.store(state.owed, Ordering::Release);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is two counters updated together under the lock; a
        // panic elsewhere cannot leave them half-written.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(slots: &Slots, n: usize) -> Vec<OwnedSemaphorePermit> {
        (0..n)
            .map(|i| slots.try_acquire().unwrap_or_else(|| panic!("slot {i}")))
            .collect()
    }

    #[test]
    fn a_raised_cap_admits_more_at_once() {
        let slots = Slots::new(3);
        let held = hold(&slots, 3);
        assert!(slots.try_acquire().is_none(), "full");
        assert!(slots.resize(6));
        let more = hold(&slots, 3);
        assert!(slots.try_acquire().is_none(), "full at the new cap");
        assert_eq!((slots.cap(), slots.in_use()), (6, 6));
        drop((held, more));
        assert_eq!(slots.in_use(), 0);
        assert!(!slots.resize(6), "unchanged");
    }

    #[test]
    fn a_lowered_cap_keeps_open_slots_and_takes_them_back_as_they_end() {
        let slots = Slots::new(4);
        let mut held = hold(&slots, 3);
        // One free permit is taken back at once, two are owed.
        assert!(slots.resize(1));
        assert_eq!((slots.cap(), slots.in_use()), (1, 3));
        assert!(slots.try_acquire().is_none());
        held.pop();
        assert!(slots.try_acquire().is_none(), "2 open, cap 1");
        held.pop();
        assert!(slots.try_acquire().is_none(), "1 open, cap 1");
        assert_eq!(slots.in_use(), 1);
        held.pop();
        let again = slots.try_acquire();
        assert!(again.is_some(), "0 open: admitted");
        assert!(slots.try_acquire().is_none(), "and the cap is 1");
        drop(again);
        assert_eq!(slots.in_use(), 0);
        assert_eq!(
            slots.permits.available_permits(),
            1,
            "nothing owed any more"
        );
    }

    #[test]
    fn a_raise_while_permits_are_owed_cancels_the_debt_first() {
        let slots = Slots::new(3);
        let mut held = hold(&slots, 3);
        assert!(slots.resize(1)); // owes 2
        assert!(slots.resize(2)); // owes 1
        assert!(slots.try_acquire().is_none());
        held.pop(); // taken back
        assert!(slots.try_acquire().is_none(), "2 open, cap 2");
        assert!(slots.resize(5)); // 3 more, none owed
        let more = hold(&slots, 3);
        assert!(slots.try_acquire().is_none(), "5 open, cap 5");
        drop((held, more));
        assert_eq!(slots.permits.available_permits(), 5);
        assert_eq!(slots.in_use(), 0);
    }

    /// Connections ending over time while arrivals keep coming: the cap is
    /// never exceeded after it was lowered, and the gateway ends up with
    /// exactly the new cap.
    #[tokio::test(start_paused = true)]
    async fn under_churn_a_lowered_cap_is_reached_and_never_exceeded() {
        let slots = Arc::new(Slots::new(8));
        let held = hold(&slots, 8);
        assert!(slots.resize(3));
        let open = Arc::new(AtomicUsize::new(8));
        let peak_after = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for (i, permit) in held.into_iter().enumerate() {
            let open = open.clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_secs(1 + i as u64)).await;
                open.fetch_sub(1, Ordering::SeqCst);
                drop(permit);
            }));
        }
        let mut admitted = Vec::new();
        for _ in 0..20 {
            tokio::time::sleep(std::time::Duration::from_millis(700)).await;
            if let Some(permit) = slots.try_acquire() {
                let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                peak_after.fetch_max(now, Ordering::SeqCst);
                admitted.push(permit);
            }
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert!(
            peak_after.load(Ordering::SeqCst) <= 3,
            "the lowered cap held"
        );
        assert_eq!(admitted.len(), 3, "the new cap is reached");
        assert!(slots.try_acquire().is_none());
    }
}
