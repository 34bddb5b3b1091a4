//! Per-connection ordering of IPROTO streams (2.10+ STREAM_ID), as Tarantool's network
//! thread does it: a stream's next request goes to TX only once its previous one has been
//! answered; other streams and plain requests are not held back. A stream exists here only
//! while it has a request in TX, so its queue and the number of streams are bounded by the
//! connection's in-flight bound (`CONN_MSG_MAX`: queued requests count as in flight).
//!
//! A reply is matched to its stream by its SYNC. Clients number their requests (every
//! connector does); one that reuses a SYNC of a running stream request only loosens the order
//! of its own streams — every reply releases at most one waiting request, so nothing stalls.

use std::collections::{HashMap, VecDeque};

use spindle_proto::iproto::{Header, Request};

/// A request waiting for its stream's previous one.
pub struct Waiting {
    pub header: Header,
    pub request: Request,
    pub packet: Vec<u8>,
}

struct Stream {
    /// SYNC of the request in TX.
    running: u64,
    waiting: VecDeque<Waiting>,
}

#[derive(Default)]
pub struct Streams {
    by_id: HashMap<u64, Stream>,
}

impl Streams {
    /// A request of `stream` was read: true if it may go to TX now (its stream was idle);
    /// false if the caller must `hold` it.
    pub fn admit(&mut self, stream: u64, sync: u64) -> bool {
        if self.by_id.contains_key(&stream) {
            return false;
        }
        self.by_id.insert(
            stream,
            Stream {
                running: sync,
                waiting: VecDeque::new(),
            },
        );
        true
    }

    /// Queues a request `admit` refused.
    pub fn hold(&mut self, stream: u64, waiting: Waiting) {
        if let Some(s) = self.by_id.get_mut(&stream) {
            s.waiting.push_back(waiting);
        }
    }

    /// A reply with `sync` went out: the stream it finished (if any) passes its next request
    /// to the caller, or is forgotten if it has none.
    pub fn on_reply(&mut self, sync: u64) -> Option<Waiting> {
        let (&id, stream) = self.by_id.iter_mut().find(|(_, s)| s.running == sync)?;
        match stream.waiting.pop_front() {
            Some(next) => {
                stream.running = next.header.sync;
                Some(next)
            }
            None => {
                self.by_id.remove(&id);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Every waiting request, each stream's in order (the connection is closing: what was
    /// read still runs).
    pub fn drain(&mut self) -> Vec<Waiting> {
        self.by_id
            .drain()
            .flat_map(|(_, s)| s.waiting.into_iter())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(sync: u64) -> Waiting {
        Waiting {
            header: Header {
                sync,
                ..Header::default()
            },
            request: Request::Ping,
            packet: Vec::new(),
        }
    }

    #[test]
    fn a_stream_runs_one_request_at_a_time() {
        let mut s = Streams::default();
        assert!(s.admit(1, 10));
        assert!(s.admit(2, 20));
        assert!(!s.admit(1, 11));
        s.hold(1, waiting(11));
        assert!(!s.admit(1, 12));
        s.hold(1, waiting(12));
        // A plain request's reply releases nothing.
        assert!(s.on_reply(99).is_none());
        assert!(s.on_reply(20).is_none());
        assert_eq!(s.on_reply(10).map(|w| w.header.sync), Some(11));
        assert!(s.on_reply(10).is_none());
        assert_eq!(s.on_reply(11).map(|w| w.header.sync), Some(12));
        assert!(!s.is_empty());
        assert!(s.on_reply(12).is_none());
        assert!(s.is_empty());
        // The stream id is free again.
        assert!(s.admit(1, 13));
        s.hold(1, waiting(14));
        assert_eq!(s.drain().len(), 1);
        assert!(s.is_empty());
    }
}
