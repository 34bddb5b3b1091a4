//! The IPROTO network threads. Each thread owns its sockets (mio, edge-triggered, never
//! `may::net`): thread 0 accepts on the listener (TCP or a Unix socket) and hands connections
//! out round-robin; each thread sends the greeting, frames and
//! decodes requests, and hands each decoded request to the TX thread over the bus. It stops
//! reading a connection once the thread or the connection has too many requests in flight or
//! too many unsent reply bytes (backpressure; the bounds are in `types::limits` and
//! docs/architecture.md), serves busy connections round-robin in shares that keep one round
//! near `net_msg_max` requests, and writes all replies that arrived during a loop turn in one
//! pass. Requests of one IPROTO stream (2.10+ STREAM_ID) go to TX one at a time, each after
//! the previous one's reply (`ordering`). Requests whose bytes cannot be decoded are answered here with Tarantool's error; a
//! broken length prefix is answered and the connection closed.

mod conn;
mod ordering;
mod stream;
mod thread;

pub use stream::ListenAddr;
pub use thread::{start, NetConfig, NetHandle, NetShared, NetStopper, ReplySink};
