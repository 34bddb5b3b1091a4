//! Messages between the network threads and the TX thread. Plain data: each request carries
//! its return route, so replies find their connection without any shared lookup table.

use crate::iproto::{Header, Request};

/// Where a reply goes: the network thread, the connection slot in it, and the slot's
/// generation (a reply for a closed connection whose slot was reused is dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    pub thread: u16,
    pub slot: u32,
    pub generation: u32,
}

/// Network thread → TX thread.
#[derive(Debug)]
pub enum NetEvent {
    /// A client connected and was sent a greeting with this salt.
    Connect { route: Route, salt: [u8; 32] },
    /// A decoded request; spans in `request` index into `packet`.
    Request {
        route: Route,
        header: Header,
        request: Request,
        packet: Vec<u8>,
    },
    /// Every request one network thread decoded in one loop turn (one bus hand-off for
    /// many requests).
    Requests(RequestBatch),
    /// The connection is gone; TX forgets its session.
    Disconnect { route: Route },
    /// A replication request (JOIN, SUBSCRIBE, REGISTER, FETCH_SNAPSHOT): the network thread
    /// has let go of the connection, whose socket (blocking) now travels with the request —
    /// a relay thread serves it from here on. `output` holds reply bytes not yet written and
    /// `input` bytes received after the request. The session at `route` ends with this.
    Handoff {
        route: Route,
        header: Header,
        request: Request,
        packet: Vec<u8>,
        stream: std::net::TcpStream,
        output: Vec<u8>,
        input: Vec<u8>,
    },
}

/// Whether a request takes the connection over (the replication stream requests).
pub fn is_handoff(request: &Request) -> bool {
    matches!(
        request,
        Request::Join { .. }
            | Request::Subscribe { .. }
            | Request::Register { .. }
            | Request::FetchSnapshot
    )
}

/// One request inside a batch: its packet is `buf[start..end]`, and the spans of `request`
/// index into that packet.
#[derive(Clone, Debug)]
pub struct BatchItem {
    pub route: Route,
    pub header: Header,
    pub request: Request,
    pub start: u32,
    pub end: u32,
}

/// Requests decoded by a network thread, packets back to back in one buffer.
#[derive(Debug, Default)]
pub struct RequestBatch {
    pub buf: Vec<u8>,
    pub items: Vec<BatchItem>,
}

impl RequestBatch {
    /// The packet of `item`.
    pub fn packet(&self, item: &BatchItem) -> &[u8] {
        self.buf
            .get(item.start as usize..item.end as usize)
            .unwrap_or(&[])
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }
}

/// One reply inside a batch: the bytes `buf[previous end .. end]` go to `route`.
#[derive(Clone, Copy, Debug)]
pub struct ReplyItem {
    pub route: Route,
    pub end: u32,
    /// A push (IPROTO_CHUNK) ahead of the request's reply: it does not finish the request.
    pub partial: bool,
}

/// TX thread → one network thread: every reply produced during one dispatcher turn.
#[derive(Debug, Default)]
pub struct ReplyBatch {
    pub buf: Vec<u8>,
    pub items: Vec<ReplyItem>,
}

impl ReplyBatch {
    /// Appends one reply; `encode` writes it at the end of `buf`.
    pub fn push(&mut self, route: Route, encode: impl FnOnce(&mut Vec<u8>)) {
        self.push_item(route, false, encode);
    }

    /// Appends a push (`box.session.push`): bytes for the client that do not end its request.
    pub fn push_partial(&mut self, route: Route, encode: impl FnOnce(&mut Vec<u8>)) {
        self.push_item(route, true, encode);
    }

    fn push_item(&mut self, route: Route, partial: bool, encode: impl FnOnce(&mut Vec<u8>)) {
        encode(&mut self.buf);
        self.items.push(ReplyItem {
            route,
            end: self.buf.len() as u32,
            partial,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Iterates (route, bytes) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (Route, &[u8])> {
        self.iter_items().map(|(route, bytes, _)| (route, bytes))
    }

    /// Iterates (route, bytes, partial) triples.
    pub fn iter_items(&self) -> impl Iterator<Item = (Route, &[u8], bool)> {
        let mut start = 0usize;
        self.items.iter().map(move |item| {
            let end = item.end as usize;
            let bytes = self.buf.get(start..end).unwrap_or(&[]);
            start = end;
            (item.route, bytes, item.partial)
        })
    }
}
