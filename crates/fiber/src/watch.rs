//! A value one OS thread publishes and others wait for: the WAL thread's "new rows"
//! notification (its written vclock) for relays and appliers. Waiters are OS threads, never
//! the TX thread, so a blocking wait with a timeout is fine here (it must not be used on TX).

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

#[derive(Default, Debug)]
pub struct Watch<T> {
    /// (generation, value): the generation counts publications.
    state: Mutex<(u64, T)>,
    changed: Condvar,
}

impl<T: Copy> Watch<T> {
    fn lock(&self) -> MutexGuard<'_, (u64, T)> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes a new value and wakes every waiter.
    pub fn publish(&self, value: T) {
        let mut state = self.lock();
        state.0 += 1;
        state.1 = value;
        drop(state);
        self.changed.notify_all();
    }

    /// (generation, value).
    pub fn current(&self) -> (u64, T) {
        *self.lock()
    }

    /// Waits until the generation differs from `seen` or `timeout` passes; returns the
    /// current state either way.
    pub fn wait_change(&self, seen: u64, timeout: Duration) -> (u64, T) {
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
        let watch = Arc::new(Watch::<u64>::default());
        let (gen0, _) = watch.current();
        let w = watch.clone();
        let t = std::thread::spawn(move || w.wait_change(gen0, Duration::from_secs(10)));
        watch.publish(7);
        let (gen, seen) = t.join().expect("waiter");
        assert_ne!(gen, gen0);
        assert_eq!(seen, 7);
    }

    #[test]
    fn wait_times_out_without_publish() {
        let watch = Watch::<u64>::default();
        let (gen, _) = watch.wait_change(0, Duration::from_millis(10));
        assert_eq!(gen, 0);
    }
}
