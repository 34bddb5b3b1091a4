//! "New rows" notifications from the WAL thread to relays and appliers: the vclock of
//! everything written so far, a generation counter bumped on each write, and a condition
//! variable to wait for the next one. Readers are OS threads (never the TX thread), so a
//! blocking wait with a timeout is fine here.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use spindle_xlog::Vclock;

#[derive(Default, Debug)]
pub struct WalWatch {
    state: Mutex<(u64, Vclock)>,
    changed: Condvar,
}

impl WalWatch {
    fn lock(&self) -> MutexGuard<'_, (u64, Vclock)> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called by the WAL thread after each write: wakes every waiter.
    pub fn publish(&self, vclock: &Vclock) {
        let mut state = self.lock();
        state.0 += 1;
        state.1 = *vclock;
        drop(state);
        self.changed.notify_all();
    }

    /// (generation, vclock written so far).
    pub fn current(&self) -> (u64, Vclock) {
        *self.lock()
    }

    /// Waits until the generation differs from `seen` or `timeout` passes; returns the
    /// current state either way.
    pub fn wait_change(&self, seen: u64, timeout: Duration) -> (u64, Vclock) {
        let guard = self.lock();
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |s| s.0 == seen)
            .unwrap_or_else(PoisonError::into_inner);
        *guard
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn waiter_wakes_on_publish() {
        let watch = Arc::new(WalWatch::default());
        let (gen0, _) = watch.current();
        let w = watch.clone();
        let t = std::thread::spawn(move || w.wait_change(gen0, Duration::from_secs(10)));
        let mut v = Vclock::new();
        v.follow(1, 7);
        watch.publish(&v);
        let (gen, seen) = t.join().expect("waiter");
        assert_ne!(gen, gen0);
        assert_eq!(seen.get(1), 7);
    }

    #[test]
    fn wait_times_out_without_publish() {
        let watch = WalWatch::default();
        let (gen, _) = watch.wait_change(0, Duration::from_millis(10));
        assert_eq!(gen, 0);
    }
}
