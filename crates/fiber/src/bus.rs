//! OS thread → TX fiber messaging: a crossbeam unbounded queue plus an eventfd doorbell that
//! is rung only when the TX dispatcher sleeps (may.md A.3–A.4). While the TX thread is busy,
//! sending costs one queue push and one atomic swap, no syscall.

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use may::io::{CoIo, WaitIo};

/// An eventfd that wakes the TX dispatcher.
pub struct Doorbell {
    fd: RawFd,
    sleeping: AtomicBool,
}

impl Doorbell {
    fn new() -> std::io::Result<(Arc<Doorbell>, File)> {
        // SAFETY: eventfd has no memory preconditions; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor we own; the File closes it on drop. The Doorbell
        // keeps only the raw number and lives no longer than the receiver (both in the Arc'd bus).
        let file = unsafe { File::from_raw_fd(fd) };
        Ok((
            Arc::new(Doorbell {
                fd,
                sleeping: AtomicBool::new(false),
            }),
            file,
        ))
    }

    /// Rings unconditionally (used by the receiver itself to schedule a poll point).
    pub fn ring(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to an eventfd; failure (counter overflow)
        // only means the bell is already ringing.
        unsafe { libc::write(self.fd, (&one as *const u64).cast(), 8) };
    }

    /// Rings only if the receiver announced it is going to sleep.
    #[inline]
    pub fn ring_if_sleeping(&self) {
        if self.sleeping.swap(false, Ordering::SeqCst) {
            self.ring();
        }
    }
}

/// The sending side, cloned into every producer thread.
pub struct Bus<M> {
    sender: Sender<M>,
    bell: Arc<Doorbell>,
}

impl<M> Clone for Bus<M> {
    fn clone(&self) -> Self {
        Bus {
            sender: self.sender.clone(),
            bell: self.bell.clone(),
        }
    }
}

impl<M> Bus<M> {
    pub fn new() -> std::io::Result<(Bus<M>, BusReceiver<M>)> {
        let (sender, receiver) = crossbeam_channel::unbounded();
        let (bell, file) = Doorbell::new()?;
        Ok((
            Bus {
                sender,
                bell: bell.clone(),
            },
            BusReceiver {
                receiver,
                bell,
                file: Some(file),
                io: None,
            },
        ))
    }

    /// Sends a message; never blocks. Returns false if the TX side is gone.
    pub fn send(&self, msg: M) -> bool {
        let ok = self.sender.send(msg).is_ok();
        self.bell.ring_if_sleeping();
        ok
    }

    /// Queues a message without waking a sleeping receiver: the sender rings later (with
    /// `send` or `ring`), once for several messages.
    pub fn send_quiet(&self, msg: M) -> bool {
        self.sender.send(msg).is_ok()
    }

    /// Wakes the receiver if it sleeps.
    pub fn ring(&self) {
        self.bell.ring_if_sleeping();
    }
}

/// The TX side. `wait` parks the dispatcher fiber in may's epoll until the doorbell rings.
pub struct BusReceiver<M> {
    receiver: Receiver<M>,
    bell: Arc<Doorbell>,
    file: Option<File>,
    io: Option<CoIo<File>>,
}

impl<M> BusReceiver<M> {
    /// Must be called on the TX thread before the first `wait`: registers the eventfd with
    /// the worker's epoll.
    pub fn attach(&mut self) -> std::io::Result<()> {
        if let Some(file) = self.file.take() {
            self.io = Some(CoIo::new(file)?);
        }
        Ok(())
    }

    pub fn try_recv(&self) -> Result<M, TryRecvError> {
        self.receiver.try_recv()
    }

    /// Sleeps until a message may be available. Announces sleep first and re-checks the queue
    /// so a message sent in between is never missed.
    pub fn wait(&mut self) {
        crate::tx::assert_may_yield();
        self.reset();
        self.bell.sleeping.store(true, Ordering::SeqCst);
        if !self.receiver.is_empty() {
            self.bell.sleeping.store(false, Ordering::SeqCst);
            return;
        }
        if let Some(io) = self.io.as_mut() {
            let _ = io.wait_io();
        }
        self.bell.sleeping.store(false, Ordering::SeqCst);
    }

    /// Waits awake, for at most `limit`, until a message is queued; true if one was. The CPU is
    /// offered to any other runnable thread on every turn: the thread that will send the
    /// message may be waiting for this very CPU. No other fiber runs meanwhile, so `limit`
    /// must stay in microseconds.
    pub fn spin(&self, limit: std::time::Duration) -> bool {
        let start = std::time::Instant::now();
        while self.receiver.is_empty() {
            if start.elapsed() >= limit {
                return false;
            }
            // sched_yield(2): the OS thread, not a fiber (may's yield_now would switch fibers).
            std::thread::yield_now();
        }
        true
    }

    /// A poll point while busy: lets epoll and cross-thread wakeups run (may.md P3), then
    /// returns without waiting for new messages.
    pub fn poll_point(&mut self) {
        crate::tx::assert_may_yield();
        self.bell.ring();
        if let Some(io) = self.io.as_mut() {
            let _ = io.wait_io();
        }
    }

    fn reset(&mut self) {
        if let Some(io) = self.io.as_mut() {
            let mut buf = [0u8; 8];
            let _ = io.inner_mut().read(&mut buf);
        }
    }

    pub fn raw_fd(&self) -> Option<RawFd> {
        self.io.as_ref().map(|io| io.as_raw_fd())
    }
}
