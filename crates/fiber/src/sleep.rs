//! Timed waits that are safe on the TX thread. A may fiber whose timed wait expires resumes on may's timer thread (may.md P1), so
//! each wait here yields once more before it returns: the caller is back on the TX thread
//! before it touches any state.

use std::time::Duration;

use crate::tx::assert_may_yield;

/// Sleeps for `d` (zero: until the scheduler's next round through the timer), then returns
/// on the TX thread.
pub fn sleep(d: Duration) {
    assert_may_yield();
    may::coroutine::sleep(d);
    may::coroutine::yield_now();
}

/// Parks until another fiber unparks this one or `d` has passed, then returns on the TX
/// thread. Callers loop on their wake condition: the return does not say which happened, and
/// an unpark that came while the fiber was not parked ends the next park at once.
///
/// may keeps a park's timeout in whole milliseconds, truncated, and reads 0 as "no timeout":
/// a wait under 1 ms would never end. So `d` is rounded up to the next millisecond.
pub fn park_timeout(d: Duration) {
    assert_may_yield();
    may::coroutine::park_timeout(whole_millis(d));
    may::coroutine::yield_now();
}

fn whole_millis(d: Duration) -> Duration {
    let millis = d.as_nanos().div_ceil(1_000_000).max(1);
    Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}

/// True inside a may fiber; parking anywhere else returns at once without waiting.
pub fn in_fiber() -> bool {
    may::coroutine::is_coroutine()
}

#[cfg(test)]
mod tests {
    use super::whole_millis;
    use std::time::Duration;

    #[test]
    fn timeouts_round_up_to_a_whole_millisecond() {
        assert_eq!(whole_millis(Duration::ZERO), Duration::from_millis(1));
        assert_eq!(
            whole_millis(Duration::from_micros(835)),
            Duration::from_millis(1)
        );
        assert_eq!(
            whole_millis(Duration::from_micros(9_999)),
            Duration::from_millis(10)
        );
        assert_eq!(
            whole_millis(Duration::from_millis(7)),
            Duration::from_millis(7)
        );
        assert_eq!(whole_millis(Duration::MAX), Duration::from_millis(u64::MAX));
    }
}
