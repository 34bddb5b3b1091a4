//! The TX side of committing: transactions go into the commit queue (`spindle_box::commit`,
//! which decides what completes and what rolls back) and leave for the WAL one group per
//! dispatcher turn; this module carries out what the queue decides — replies, unparked
//! fibers, undone changes, reused LSNs.
//!
//! A plain write request never yields before its commit, so it needs no fiber: its reply is a
//! continuation kept with its transaction (`Waiter::Client`). A fiber that commits (the
//! applier, a replica's registration, later stored procedures) parks in `wait_commit` until
//! the WAL answers.

use tracing::{error, warn};

use spindle_box::Txn;
use spindle_fiber::{current_fiber, park};
use spindle_types::{BoxError, BoxResult};
use spindle_xlog::journal::{Acks, JournalRequest};
use spindle_xlog::Row;

use spindle_box::reply;
use spindle_proto::route::ReplyBatch;

use crate::state::{PendingReply, Tx, TxRef, Waiter};

/// Writes of fewer transactions keep their replies on TX. Measured on 2 CPUs, a lone
/// commit's reply reached the client ~40 µs later from the WAL thread than through TX (p50
/// 110 against 68 µs at one request in flight; not pinned down further), while groups gain
/// from skipping the hop (replace 4×64: +30–50%).
const ACKS_MIN_TXNS: usize = 2;

impl Tx {
    /// Commits a client's autocommit write: LSNs now, the reply once durable. A transaction
    /// with nothing to log (no rows, or `wal_mode = none`) is committed already: its reply
    /// goes out now.
    pub fn commit_autocommit(&mut self, txn: Txn, reply: PendingReply) {
        let (mut rows, undo) = txn.into_parts();
        if !rows.is_empty() {
            self.db.assign_lsns(&mut rows);
        }
        if let Err(waiter) = self.queue(rows, undo, Waiter::Client(reply)) {
            self.complete(waiter, Ok(()));
        }
    }

    /// Commits a transaction whose outcome goes to `waiter`: LSNs now, the outcome once
    /// durable (at once when nothing is logged).
    pub(crate) fn commit_waiting(&mut self, txn: Txn, waiter: Waiter) {
        let (mut rows, undo) = txn.into_parts();
        if !rows.is_empty() {
            self.db.assign_lsns(&mut rows);
        }
        if let Err(waiter) = self.queue(rows, undo, waiter) {
            self.complete(waiter, Ok(()));
        }
    }

    /// Commits a transaction nobody waits for (the admin password at start-up).
    pub fn commit_detached(&mut self, txn: Txn) {
        let (mut rows, undo) = txn.into_parts();
        if !rows.is_empty() {
            self.db.assign_lsns(&mut rows);
        }
        let _ = self.queue(rows, undo, Waiter::Nobody);
    }

    /// Queues a transaction for a fiber that will `wait_commit` on the returned sequence
    /// number; `None` if nothing is logged (it is committed already). `own` says whether its
    /// rows get this instance's LSNs now; an upstream's rows carry their own.
    pub fn commit_for_fiber(&mut self, txn: Txn, own: bool) -> Option<u64> {
        let (mut rows, undo) = txn.into_parts();
        if own && !rows.is_empty() {
            self.db.assign_lsns(&mut rows);
        }
        self.queue_for_fiber(rows, undo)
    }

    fn queue_for_fiber(&mut self, rows: Vec<Row>, undo: Vec<spindle_box::Undo>) -> Option<u64> {
        // The sequence number is the fiber's ticket to its outcome.
        let seq = self.commits.next_seq();
        self.queue(rows, undo, Waiter::Fiber(seq)).ok()
    }

    /// Queues rows for the WAL; gives the waiter back when there is nothing to wait for.
    fn queue(
        &mut self,
        rows: Vec<Row>,
        undo: Vec<spindle_box::Undo>,
        waiter: Waiter,
    ) -> Result<u64, Waiter> {
        let durable = self.hooks.journal.is_none() || rows.is_empty();
        if self.mvcc_open() > 0 && !undo.is_empty() {
            // The sequence number `submit` is about to give it, while it waits for the WAL.
            let seq = (!durable).then(|| self.commits.next_seq());
            self.mvcc.record(&self.db, &undo, seq);
        }
        if self.hooks.journal.is_none() {
            return Err(waiter);
        }
        self.commits.submit(rows, undo, waiter)
    }

    /// Hands the queued transactions to the WAL early once enough have gathered.
    pub fn flush_journal_if(&mut self, at_least: usize) {
        if self.commits.queued() >= at_least {
            self.flush_journal();
        }
    }

    /// Hands every queued transaction to the WAL as one group.
    pub fn flush_journal(&mut self) {
        let Some(group) = self.commits.take_group() else {
            return;
        };
        let acks = self.success_replies(group.txns.len());
        let Some(journal) = &self.hooks.journal else {
            return;
        };
        let (epoch, txns) = (group.epoch, group.txns);
        if journal
            .send(JournalRequest::Write { epoch, txns, acks })
            .is_err()
        {
            error!("WAL thread is gone; failing every commit in flight");
            self.on_wal_failed(epoch, 0, "WAL thread exited");
        }
    }

    /// Encodes now the success replies of the last `count` transactions (the group about to
    /// go to the WAL) and returns them as the write's acks: the WAL thread hands them to the
    /// network threads as soon as the write is durable, without a hop through TX. Their
    /// waiters keep the route, for an error reply if the write fails.
    fn success_replies(&mut self, count: usize) -> Option<Acks> {
        if count < ACKS_MIN_TXNS {
            return None;
        }
        let schema_version = self.db.schema_version();
        let mut batches: Vec<ReplyBatch> = Vec::new();
        for waiter in self.commits.newest_mut(count) {
            let Some(pending) = waiter.take_reply() else {
                continue;
            };
            let (route, sync) = (pending.route, pending.sync);
            let thread = route.thread as usize;
            if batches.len() <= thread {
                batches.resize_with(thread + 1, ReplyBatch::default);
            }
            if let Some(batch) = batches.get_mut(thread) {
                batch.push(route, |out| {
                    reply::encode(out, sync, schema_version, Ok(pending.reply))
                });
            }
        }
        if batches.iter().all(ReplyBatch::is_empty) {
            return None;
        }
        let send = self.outboxes.sender();
        Some(Acks(Box::new(move || {
            for (thread, batch) in batches.into_iter().enumerate() {
                if !batch.is_empty() {
                    send(thread as u16, batch);
                }
            }
        })))
    }

    /// Hands a transaction's outcome to whoever waits for it.
    fn complete(&mut self, waiter: Waiter, result: BoxResult<()>) {
        match waiter {
            Waiter::Nobody => {}
            Waiter::Client(r) => self.send_reply(r.route, r.sync, result.map(|()| r.reply)),
            Waiter::Acked { route, sync } => {
                if let Err(e) = result {
                    self.send_reply(route, sync, Err(e));
                }
            }
            Waiter::Kv(pending) => crate::kv::on_commit(self, pending, result),
            Waiter::Fiber(seq) => {
                self.fiber_commits.results.insert(seq, result);
                if let Some(fiber) = self.fiber_commits.parked.remove(&seq) {
                    fiber.unpark();
                    self.fibers_woken = true;
                }
            }
        }
    }

    /// The WAL wrote every transaction up to `seq`.
    pub fn on_wal_written(&mut self, seq: u64) {
        self.mvcc.confirmed(seq);
        while let Some(waiter) = self.commits.pop_written(seq) {
            self.complete(waiter, Ok(()));
        }
    }

    /// Cascading rollback: every transaction from `seq` on is undone, newest first, and
    /// answered with ER_WAL_IO; the LSNs they took are used again.
    pub fn on_wal_failed(&mut self, epoch: u64, seq: u64, reason: &str) {
        let Some(rollback) = self.commits.failed(epoch, seq) else {
            return;
        };
        warn!(
            "WAL write failed ({reason}); rolling back {} transactions",
            rollback.txns.len()
        );
        self.mvcc.failed_from(seq);
        for (undo, waiter) in rollback.txns {
            self.db.rollback(undo);
            self.complete(waiter, Err(BoxError::wal_io()));
        }
        for (component, first) in rollback.reuse_from {
            self.db.reset_lsn(component, first.saturating_sub(1));
        }
        self.publish_schema_version();
    }
}

/// Parks the calling fiber until the WAL has confirmed or failed the transaction `seq` (from
/// `commit_for_fiber`).
pub fn wait_commit(tx: TxRef, seq: u64) -> BoxResult<()> {
    loop {
        let ready = tx.with(|t| match t.fiber_commits.results.remove(&seq) {
            Some(result) => Some(result),
            None => {
                t.fiber_commits.parked.insert(seq, current_fiber());
                None
            }
        });
        match ready {
            Some(result) => return result,
            None => park(),
        }
    }
}
