//! One client connection: socket, input and output buffers, and its state.

use std::io::{self, Read, Write};

use crate::ordering::Streams;
use crate::stream::Stream;
use spindle_types::limits::{CONN_READ_CHUNK, NET_BUFFER_POOL_MAX};

pub struct Conn {
    pub stream: Stream,
    pub generation: u32,
    /// Read buffer: `input[consumed..filled]` is read and not yet framed; the bytes past
    /// `filled` are zeroed spare room, kept so that reads never re-zero memory.
    pub input: Vec<u8>,
    /// Bytes of `input` already framed and dispatched.
    pub consumed: usize,
    /// Bytes of `input` holding data read from the socket.
    pub filled: usize,
    pub output: Vec<u8>,
    /// Bytes of `output` already written to the socket.
    pub written: usize,
    /// The socket may hold unread bytes (edge-triggered: we stopped before EAGAIN).
    pub readable: bool,
    /// Close once `output` is flushed (framing error or peer EOF).
    pub closing: bool,
    /// The peer shut its side: read on until EOF even after a short read.
    pub peer_closed: bool,
    /// Requests of this connection currently in the TX thread.
    pub in_flight: usize,
    /// In the thread's work queue (a connection is queued at most once, so each gets one
    /// turn per round).
    pub queued: bool,
    /// In the thread's list of connections waiting for its in-flight count to drop.
    pub paused: bool,
    /// Not read because of its unsent output; the next flush that ends that queues it again.
    pub stalled: bool,
    /// Unsent bytes counted in the thread's total at the last flush.
    pub counted: usize,
    /// Streams with a request in TX (2.10+); None until the first stream request.
    pub streams: Option<Box<Streams>>,
}

/// Output capacity a connection keeps between bursts.
const OUTPUT_KEEP_MAX: usize = 64 * 1024;

pub enum ReadOutcome {
    /// Read something; more may remain.
    Progress,
    /// EAGAIN: nothing more until the next readiness event.
    Drained,
    /// Peer closed or the socket failed.
    Closed,
}

impl Conn {
    pub fn new(stream: Stream, generation: u32) -> Conn {
        Conn {
            stream,
            generation,
            input: Vec::new(),
            consumed: 0,
            filled: 0,
            output: Vec::new(),
            written: 0,
            readable: true,
            closing: false,
            peer_closed: false,
            in_flight: 0,
            queued: false,
            paused: false,
            stalled: false,
            counted: 0,
            streams: None,
        }
    }

    /// Reads one chunk into `input`, taking a buffer from `pool` if the connection holds
    /// none.
    pub fn read_chunk(&mut self, pool: &mut BufferPool) -> ReadOutcome {
        self.compact_input();
        if self.input.is_empty() {
            self.input = pool.take();
        }
        let want = self.filled + CONN_READ_CHUNK;
        if self.input.len() < want {
            self.input.resize(want, 0);
        }
        let room = self.input.len() - self.filled;
        let result = self.stream.read(&mut self.input[self.filled..]);
        match result {
            Ok(0) => ReadOutcome::Closed,
            Ok(n) => {
                self.filled += n;
                // A short read of a stream socket drained it (epoll(7)): no EAGAIN read is
                // needed to know, and new data raises a new edge.
                if n < room && !self.peer_closed {
                    self.readable = false;
                }
                ReadOutcome::Progress
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.readable = false;
                ReadOutcome::Drained
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => ReadOutcome::Progress,
            Err(_) => ReadOutcome::Closed,
        }
    }

    fn compact_input(&mut self) {
        if self.consumed > 0 {
            self.input.copy_within(self.consumed..self.filled, 0);
            self.filled -= self.consumed;
            self.consumed = 0;
        }
    }

    pub fn pending_input(&self) -> &[u8] {
        self.input.get(self.consumed..self.filled).unwrap_or(&[])
    }

    /// Gives the read buffer back to `pool` when nothing in it is pending, so an idle
    /// connection holds no buffer.
    pub fn release_input(&mut self, pool: &mut BufferPool) {
        if self.consumed == self.filled && !self.input.is_empty() {
            pool.put(std::mem::take(&mut self.input));
            self.consumed = 0;
            self.filled = 0;
        }
    }

    /// Marks every byte read as consumed (the rest of the stream is dropped).
    pub fn discard_input(&mut self) {
        self.consumed = self.filled;
    }

    pub fn unsent(&self) -> usize {
        self.output.len() - self.written
    }

    /// Writes as much output as the socket takes. Err means the connection is dead.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.written < self.output.len() {
            match self.stream.write(&self.output[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.written == self.output.len() {
            self.written = 0;
            if self.output.capacity() > OUTPUT_KEEP_MAX {
                // A burst is over: an idle connection should not hold its peak.
                self.output = Vec::new();
            } else {
                self.output.clear();
            }
        }
        Ok(())
    }
}

/// Read buffers of a network thread's idle connections, reused by the next busy one: busy
/// connections never allocate per read, idle ones hold nothing.
#[derive(Default)]
pub struct BufferPool {
    buffers: Vec<Vec<u8>>,
}

impl BufferPool {
    fn take(&mut self) -> Vec<u8> {
        self.buffers.pop().unwrap_or_default()
    }

    fn put(&mut self, mut buffer: Vec<u8>) {
        // Oversized buffers (one huge packet) are not worth keeping.
        if self.buffers.len() < NET_BUFFER_POOL_MAX && buffer.capacity() <= 4 * CONN_READ_CHUNK {
            buffer.truncate(CONN_READ_CHUNK);
            self.buffers.push(buffer);
        }
    }
}
