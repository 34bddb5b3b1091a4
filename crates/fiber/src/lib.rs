//! The thin layer over `may` (see ../shared/docs/may.md). It owns the may configuration
//! (exactly one worker — the TX thread), the TX-thread identity check, the `TxCell` wrapper
//! for state that only the TX thread may touch, the crossbeam + eventfd doorbell `Bus` that
//! carries messages from OS threads to the TX dispatcher, and `spawn_cord` for named OS
//! threads. Every other crate reaches may only through here, so may's pitfalls are handled in
//! one place: no timed waits without a following yield, no busy yield loops, no
//! `FastBlocker`, no blocking calls on the TX thread.

mod bus;
mod sleep;
mod tx;
mod watch;

pub use bus::{Bus, BusReceiver, Doorbell};
pub use sleep::{in_fiber, park_timeout, sleep};
pub use tx::{
    assert_may_yield, assert_tx_thread, current_fiber, is_tx_thread, park, run_tx, spawn_fiber,
    yield_now, Fiber, NoYield, TxCell,
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    #[test]
    fn recv_nowait_returns_at_once() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut writer =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (reader, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 16];
        let empty = super::recv_nowait(&reader, &mut buf).expect_err("nothing to read");
        assert_eq!(empty.kind(), std::io::ErrorKind::WouldBlock);
        writer.write_all(b"ack").expect("write");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match super::recv_nowait(&reader, &mut buf) {
                Ok(n) => {
                    assert_eq!(&buf[..n], b"ack");
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the bytes never arrived"
                    );
                    std::thread::yield_now();
                }
                Err(e) => panic!("recv failed: {e}"),
            }
        }
    }
}
