//! Replies on their way out of the TX thread: one batch per network thread, sent at the end of
//! a dispatcher turn (or early, once a batch is big enough), so each network thread gets one
//! message per turn whatever the number of replies.

use std::sync::Arc;

use spindle_box::reply::{self, Reply};
use spindle_proto::route::{ReplyBatch, Route};
use spindle_types::limits::REPLY_BATCH_RESERVE_MAX;
use spindle_types::BoxResult;

/// Delivers a batch of replies to network thread `thread`.
pub type SendReplies = Arc<dyn Fn(u16, ReplyBatch) + Send + Sync>;

pub struct Outboxes {
    batches: Vec<ReplyBatch>,
    send: SendReplies,
}

impl Outboxes {
    pub fn new(threads: usize, send: SendReplies) -> Outboxes {
        Outboxes {
            batches: (0..threads).map(|_| ReplyBatch::default()).collect(),
            send,
        }
    }

    /// Queues a reply for the end of the turn.
    pub fn push(&mut self, route: Route, sync: u64, schema_version: u32, result: BoxResult<Reply>) {
        if let Some(batch) = self.batches.get_mut(route.thread as usize) {
            batch.push(route, |out| {
                reply::encode(out, sync, schema_version, result)
            });
        }
    }

    /// Queues a push (IPROTO_CHUNK with the request's sync) of the MessagePack value `data`.
    pub fn push_chunk(&mut self, route: Route, sync: u64, schema_version: u32, data: &[u8]) {
        if let Some(batch) = self.batches.get_mut(route.thread as usize) {
            batch.push_partial(route, |out| {
                reply::encode_chunk(out, sync, schema_version, data)
            });
        }
    }

    /// Queues bytes that are no request's reply (an EVENT): they end no request.
    pub fn push_unsolicited(&mut self, route: Route, encode: impl FnOnce(&mut Vec<u8>)) {
        if let Some(batch) = self.batches.get_mut(route.thread as usize) {
            batch.push_partial(route, encode);
        }
    }

    /// Ends a request that has no reply (WATCH, UNWATCH): nothing for the client, but the
    /// network thread stops counting the request as in flight.
    pub fn push_no_reply(&mut self, route: Route) {
        if let Some(batch) = self.batches.get_mut(route.thread as usize) {
            batch.push(route, |_| {});
        }
    }

    /// Sends every non-empty batch.
    pub fn flush(&mut self) {
        for (thread, batch) in self.batches.iter_mut().enumerate() {
            if !batch.is_empty() {
                // The next turn's batch starts at this one's size instead of regrowing (one
                // huge reply does not make every later batch huge).
                let next = ReplyBatch {
                    buf: Vec::with_capacity(batch.buf.len().min(REPLY_BATCH_RESERVE_MAX)),
                    items: Vec::with_capacity(batch.items.len()),
                };
                (self.send)(thread as u16, std::mem::replace(batch, next));
            }
        }
    }

    /// Sends the batches early once one holds `at_least` replies (see `PIPELINE_CHUNK`).
    pub fn flush_if(&mut self, at_least: usize) {
        if self.batches.iter().any(|b| b.len() >= at_least) {
            self.flush();
        }
    }

    /// The sender, for replies that leave from another thread (the WAL's acks).
    pub fn sender(&self) -> SendReplies {
        self.send.clone()
    }
}
