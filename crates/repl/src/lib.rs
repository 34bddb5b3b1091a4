//! Replication, both sides, outside the TX thread (xlog-and-replication.md §5–§6).
//!
//! - `relay`: one OS thread per replica connection. JOIN: the initial stage from a read view
//!   the TX thread captured, the final stage and SUBSCRIBE from the `.xlog` files (`follow`),
//!   woken by the WAL thread's "new rows" watch; rows leave in large batched writes;
//!   heartbeats; the replica's ACKs feed the GC consumers (`gc`) and the status table.
//! - `applier`: one reader thread per upstream (plus an ACK writer): connect, authenticate,
//!   JOIN (at bootstrap) or SUBSCRIBE, hand whole transactions to the TX thread with
//!   backpressure, reconnect with backoff.
//! - `wire`: the packets; `status`: what the TX thread shows about each peer.
//!
//! Nothing here touches TX state: threads talk to the TX thread only through `ReplEvent`s
//! delivered by an `EventSink` (the TX bus).

pub mod applier;
pub mod follow;
pub mod gc;
pub mod relay;
pub mod status;
pub mod wire;

use std::net::TcpStream;
use std::sync::Arc;

use spindle_proto::iproto::{Header, Request};
use spindle_xlog::Row;

pub use applier::{ApplierLink, Uri};
pub use status::{Direction, PeerState, PeerStatus};

/// A connection carrying a replication request, owned by whoever serves it next.
#[derive(Debug)]
pub struct Handoff {
    pub header: Header,
    pub request: Request,
    pub packet: Vec<u8>,
    pub stream: TcpStream,
    /// Reply bytes not yet written to the peer.
    pub output: Vec<u8>,
    /// Bytes received after the request.
    pub input: Vec<u8>,
}

/// Replication threads → TX thread.
#[derive(Debug)]
pub enum ReplEvent {
    /// A peer's state, vclock or lag changed.
    Status(PeerStatus),
    /// After a JOIN, the replica sent another request (SUBSCRIBE) on the same connection;
    /// `user` is the session's user.
    Next { user: u32, handoff: Handoff },
    /// Whole transactions from an upstream, in order, to apply and write to the WAL.
    Apply {
        link: Arc<ApplierLink>,
        rows: Vec<Row>,
    },
}

/// The WAL thread's "new rows" notification: the vclock written so far, and where the data
/// of the file being written ends.
pub type WalWatch = spindle_fiber::Watch<spindle_xlog::journal::WalTip>;

/// Delivers events to the TX thread; false when it is gone.
pub type EventSink = Arc<dyn Fn(ReplEvent) -> bool + Send + Sync>;
