//! The IPROTO network threads. Each thread owns its sockets (mio, edge-triggered, never
//! `may::net`): it accepts on its own `SO_REUSEPORT` listener, sends the greeting, frames and
//! decodes requests, and hands each decoded request to the TX thread over the bus. It stops
//! reading once `net_msg_max` requests are in flight (backpressure) or a connection's unsent
//! output passes its limit, and it writes all replies that arrived during a loop turn in one
//! pass. Requests whose bytes cannot be decoded are answered here with Tarantool's error; a
//! broken length prefix is answered and the connection closed.

mod conn;
mod thread;

pub use thread::{start, NetConfig, NetHandle, NetShared, NetStopper, ReplySink};
