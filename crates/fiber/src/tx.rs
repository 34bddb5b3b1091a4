//! The TX thread: may configured with one worker, the identity check, and `TxCell`.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

pub use may::coroutine::Coroutine as Fiber;

static TX_THREAD: OnceLock<std::thread::ThreadId> = OnceLock::new();
static TX_TID: AtomicU64 = AtomicU64::new(0);

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
    may::coroutine::park();
}

pub fn yield_now() {
    may::coroutine::yield_now();
}

/// State owned by the TX thread. All fibers run on that one thread and switch only at
/// explicit yields, so plain `&mut` access is sound as long as (a) only the TX thread touches
/// it and (b) no borrow is held across a yield. (a) is asserted in debug builds; (b) is the
/// caller's discipline: `with` takes a closure that cannot yield-and-return a borrow.
pub struct TxCell<T> {
    inner: UnsafeCell<T>,
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
        }
    }

    /// Runs `f` with exclusive access. Must not be nested and `f` must not yield.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        assert_tx_thread();
        // SAFETY: TX-thread only (asserted) and the closure cannot yield while it holds the
        // reference (TX code never calls may blocking APIs inside `with`), so no other
        // fiber can observe or create an aliasing reference.
        f(unsafe { &mut *self.inner.get() })
    }
}
