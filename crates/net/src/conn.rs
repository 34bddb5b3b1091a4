//! One client connection: socket, input and output buffers, and its state.

use mio::net::TcpStream;
use std::io::{self, Read, Write};

use spindle_types::limits::CONN_READ_CHUNK;

pub struct Conn {
    pub stream: TcpStream,
    pub generation: u32,
    pub input: Vec<u8>,
    /// Bytes of `input` already framed and dispatched.
    pub consumed: usize,
    pub output: Vec<u8>,
    /// Bytes of `output` already written to the socket.
    pub written: usize,
    /// The socket may hold unread bytes (edge-triggered: we stopped before EAGAIN).
    pub readable: bool,
    /// Close once `output` is flushed (framing error or peer EOF).
    pub closing: bool,
    /// Requests of this connection currently in the TX thread.
    pub in_flight: usize,
}

pub enum ReadOutcome {
    /// Read something; more may remain.
    Progress,
    /// EAGAIN: nothing more until the next readiness event.
    Drained,
    /// Peer closed or the socket failed.
    Closed,
}

impl Conn {
    pub fn new(stream: TcpStream, generation: u32) -> Conn {
        Conn {
            stream,
            generation,
            input: Vec::new(),
            consumed: 0,
            output: Vec::new(),
            written: 0,
            readable: true,
            closing: false,
            in_flight: 0,
        }
    }

    /// Reads one chunk into `input`.
    pub fn read_chunk(&mut self) -> ReadOutcome {
        self.compact_input();
        let start = self.input.len();
        self.input.resize(start + CONN_READ_CHUNK, 0);
        let result = self.stream.read(&mut self.input[start..]);
        match result {
            Ok(0) => {
                self.input.truncate(start);
                ReadOutcome::Closed
            }
            Ok(n) => {
                self.input.truncate(start + n);
                ReadOutcome::Progress
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.input.truncate(start);
                self.readable = false;
                ReadOutcome::Drained
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.input.truncate(start);
                ReadOutcome::Progress
            }
            Err(_) => {
                self.input.truncate(start);
                ReadOutcome::Closed
            }
        }
    }

    fn compact_input(&mut self) {
        if self.consumed > 0 {
            self.input.drain(..self.consumed);
            self.consumed = 0;
        }
    }

    pub fn pending_input(&self) -> &[u8] {
        self.input.get(self.consumed..).unwrap_or(&[])
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
            self.output.clear();
            self.written = 0;
        }
        Ok(())
    }
}
