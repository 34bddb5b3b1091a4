//! The thin layer over `may` (see ../shared/docs/may.md). It owns the may configuration
//! (exactly one worker — the TX thread), the TX-thread identity check, the `TxCell` wrapper
//! for state that only the TX thread may touch, the crossbeam + eventfd doorbell `Bus` that
//! carries messages from OS threads to the TX dispatcher, and `spawn_cord` for named OS
//! threads. Every other crate reaches may only through here, so may's pitfalls are handled in
//! one place: no timed waits without a following yield, no busy yield loops, no
//! `FastBlocker`, no blocking calls on the TX thread.

mod bus;
mod tx;
mod watch;

pub use bus::{Bus, BusReceiver, Doorbell};
pub use tx::{
    assert_tx_thread, current_fiber, is_tx_thread, park, run_tx, spawn_fiber, yield_now, Fiber,
    TxCell,
};
pub use watch::Watch;

/// Reads what a socket already holds without waiting (`recv` with `MSG_DONTWAIT`), on a
/// blocking socket whose other operations must keep blocking (a relay polls for ACKs on the
/// socket it writes rows to). `WouldBlock` when nothing is there. A read timeout cannot do
/// this: the kernel rounds it up to a scheduler tick, which would delay the relay by
/// milliseconds on every poll.
pub fn recv_nowait(stream: &std::net::TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes and the descriptor stays open
    // while `stream` is borrowed.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Spawns a named OS thread ("cord"). All long-lived threads of the server start here.
pub fn spawn_cord<F, T>(name: &str, f: F) -> std::io::Result<std::thread::JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    std::thread::Builder::new().name(name.to_string()).spawn(f)
}
