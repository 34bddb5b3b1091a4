//! The TX thread: may configured with one worker, the identity check, and `TxCell`.

use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;

pub use may::coroutine::Coroutine as Fiber;

static TX_THREAD: OnceLock<std::thread::ThreadId> = OnceLock::new();
static TX_TID: AtomicU64 = AtomicU64::new(0);
/// Open no-yield sections on the TX thread: `TxCell::with` calls and `NoYield` guards. Only
/// the TX thread touches it, so a plain load and store (no atomic read-modify-write) do.
static NO_YIELD: AtomicU32 = AtomicU32::new(0);

/// Configures may (once, before its first use) and runs `main` as the first fiber on the
/// single worker thread, which thereby becomes the TX thread. Blocks the calling OS thread
/// until `main` returns.
pub fn run_tx<F, T>(stack_words: usize, pool: usize, main: F) -> std::thread::Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    may::config()
        .set_workers(1)
        .set_stack_size(stack_words)
        .set_pool_capacity(pool);
    may::config().set_worker_pin(false);
    let entry = move || {
        let _ = TX_THREAD.set(std::thread::current().id());
        // SAFETY: gettid has no preconditions.
        TX_TID.store(unsafe { libc::gettid() } as u64, Ordering::Relaxed);
        name_thread(c"tx");
        main()
    };
    // SAFETY: may's spawn is unsafe because fibers must not rely on thread-local storage
    // across yields; TX code keeps its state in `TxCell`, never in TLS.
    let handle = unsafe {
        may::coroutine::Builder::new()
            .name("tx-main".into())
            .spawn(entry)
    };
    match handle {
        Ok(h) => h.join(),
        Err(e) => Err(Box::new(e)),
    }
}

fn name_thread(name: &std::ffi::CStr) {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0);
    }
}

/// True when called on the TX thread (the may worker).
pub fn is_tx_thread() -> bool {
    TX_THREAD
        .get()
        .is_some_and(|id| *id == std::thread::current().id())
}

/// Debug builds verify that TX-owned state is touched only on the TX thread. Catches fibers
/// resumed on may's timer thread (may.md P1) and accidental use from OS threads.
#[inline]
pub fn assert_tx_thread() {
    debug_assert!(is_tx_thread(), "TX state touched outside the TX thread");
}

/// Spawns a request fiber on the TX thread.
pub fn spawn_fiber<F>(stack_words: usize, f: F) -> std::io::Result<()>
where
    F: FnOnce() + Send + 'static,
{
    // SAFETY: see `run_tx`: TX fibers keep no state in TLS.
    unsafe {
        may::coroutine::Builder::new()
            .stack_size(stack_words)
            .spawn(f)
    }
    .map(|_| ())
}

/// The calling fiber's handle, for `unpark` by the dispatcher.
pub fn current_fiber() -> Fiber {
    may::coroutine::current()
}

/// Parks the calling fiber until another fiber on the TX thread unparks it. Callers loop on
/// their wake condition: a park may return for a stale token.
pub fn park() {
    assert_may_yield();
    may::coroutine::park();
}

pub fn yield_now() {
    assert_may_yield();
    may::coroutine::yield_now();
}

/// Every way a TX fiber gives up the thread (`park`, `yield_now`, the bus's waits) checks
/// this first: yielding inside `TxCell::with` would let another fiber alias its `&mut`, and
/// yielding inside a `NoYield` section breaks what that section promised. Checked in release
/// builds too: one load and a compare.
#[inline]
pub fn assert_may_yield() {
    assert!(
        NO_YIELD.load(Ordering::Relaxed) == 0,
        "a TX fiber yielded inside TxCell::with or a no-yield section"
    );
}

/// A section of TX code that must not yield (a memtx transaction in progress, a borrow of
/// TX state); any `park` or `yield_now` while it is alive panics.
pub struct NoYield(());

impl NoYield {
    #[inline]
    pub fn enter() -> NoYield {
        assert_tx_thread();
        NO_YIELD.store(NO_YIELD.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        NoYield(())
    }
}

impl Drop for NoYield {
    #[inline]
    fn drop(&mut self) {
        NO_YIELD.store(NO_YIELD.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
    }
}

/// State owned by the TX thread. All fibers run on that one thread and switch only at
/// explicit yields, so plain `&mut` access is sound as long as (a) only the TX thread touches
/// it, (b) `with` is never entered again while it runs, and (c) nothing yields inside it.
/// (a) is asserted in debug builds; (b) and (c) in every build: `with` sets a flag that a
/// nested call finds set, and opens a no-yield section that `park` and `yield_now` check.
pub struct TxCell<T> {
    inner: UnsafeCell<T>,
    entered: Cell<bool>,
}

// SAFETY: the value is only ever accessed from the TX thread (asserted in debug builds);
// `Send`/`Sync` are needed solely so fibers, whose closures must be `Send`, can hold a
// reference to it.
unsafe impl<T> Sync for TxCell<T> {}
// SAFETY: as above.
unsafe impl<T> Send for TxCell<T> {}

impl<T> TxCell<T> {
    pub const fn new(value: T) -> Self {
        TxCell {
            inner: UnsafeCell::new(value),
            entered: Cell::new(false),
        }
    }

    /// Runs `f` with exclusive access. A nested call panics, and so does a yield inside `f`.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        assert_tx_thread();
        assert!(
            !self.entered.get(),
            "TxCell::with entered while already inside it"
        );
        let _entered = Entered::new(&self.entered);
        // SAFETY: TX-thread only (asserted in debug builds); not nested (asserted above, the
        // flag stays set until `f` returns or unwinds); and `f` cannot yield (the no-yield
        // section `Entered` opens makes `park`/`yield_now` panic), so no other fiber runs
        // while the reference lives and none can create an aliasing one.
        f(unsafe { &mut *self.inner.get() })
    }
}

/// The inside of a `TxCell::with`: the cell's flag set and a no-yield section open, both
/// undone on return or unwind.
struct Entered<'a> {
    flag: &'a Cell<bool>,
    _no_yield: NoYield,
}

impl<'a> Entered<'a> {
    #[inline]
    fn new(flag: &'a Cell<bool>) -> Self {
        flag.set(true);
        Entered {
            flag,
            _no_yield: NoYield::enter(),
        }
    }
}

impl Drop for Entered<'_> {
    #[inline]
    fn drop(&mut self) {
        self.flag.set(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// These run on plain test threads, which are not the TX thread; debug builds assert the
    /// TX thread, so mark this one as it for the test.
    fn as_tx_thread() {
        let _ = TX_THREAD.set(std::thread::current().id());
    }

    #[test]
    fn nested_with_panics() {
        as_tx_thread();
        if !is_tx_thread() {
            return; // another test thread claimed the identity first; covered there
        }
        let cell = TxCell::new(1u32);
        let nested = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            cell.with(|outer| {
                *outer += 1;
                cell.with(|inner| *inner += 1);
            })
        }));
        assert!(nested.is_err(), "a nested with must panic");
        // The flag and the no-yield section were undone by the unwind.
        assert_eq!(cell.with(|v| *v), 2);
        assert_may_yield();
    }

    #[test]
    fn yielding_inside_a_no_yield_section_panics() {
        as_tx_thread();
        if !is_tx_thread() {
            return;
        }
        let guard = NoYield::enter();
        let inside = std::panic::catch_unwind(assert_may_yield);
        drop(guard);
        assert!(
            inside.is_err(),
            "a yield inside a no-yield section must panic"
        );
        assert_may_yield();
    }
}
