//! The TX thread's runtime: the dispatcher fiber, the per-network-thread reply outboxes, and
//! the commit protocol with the WAL thread.
//!
//! Order of execution matches Tarantool: every request starts in arrival order and runs to
//! its end or its commit point at once — a later SELECT sees an earlier INSERT. No request
//! can yield before it commits (a single-statement DML touches only memory), so none needs
//! a stack of its own: a write's remaining work — reply once the WAL confirms its LSN — is a
//! continuation kept with its in-flight transaction, exactly what a parked fiber would hold,
//! minus the stack and two context switches. Replies produced during one dispatcher turn
//! leave as one batch per network thread, and the journal writes of one turn leave as one
//! WAL message (group commit).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;
use hashbrown::HashMap;
use tracing::{error, info, warn};

use spindle_fiber::{current_fiber, park, yield_now, BusReceiver, Fiber, TxCell};
use spindle_proto::iproto::{Header, Request};
use spindle_proto::route::{NetEvent, ReplyBatch, Route};
use spindle_types::limits::{
    PIPELINE_CHUNK, REPLY_BATCH_RESERVE_MAX, TX_DISPATCH_BATCH, TX_LONE_SPIN,
};
use spindle_types::{BoxError, BoxResult};
use spindle_xlog::journal::{Acks, JournalReply, JournalRequest, JournalTxn};
use spindle_xlog::Row;

use crate::checkpoint::{CheckpointOutcome, ReadView};
use crate::db::{Db, SelectPlan, Undo, WriteOutcome};
use crate::lone::LoneClient;
use crate::msg::TxMsg;
use crate::reply::{self, Reply};
use crate::session::Sessions;
use spindle_memtx::index::Lookup;

/// Writes of fewer transactions keep their replies on TX. Measured on 2 CPUs, a lone
/// commit's reply reached the client ~40 µs later from the WAL thread than through TX (p50
/// 110 against 68 µs at one request in flight; not pinned down further), while groups gain
/// from skipping the hop (replace 4×64: +30–50%).
const ACKS_MIN_TXNS: usize = 2;

/// How commits reach disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalMode {
    None,
    Write,
    Fsync,
}

/// What the TX thread needs from the rest of the server.
pub struct TxHooks {
    /// Delivers a batch of replies to a network thread.
    pub send_replies: Arc<dyn Fn(u16, ReplyBatch) + Send + Sync>,
    pub net_threads: usize,
    /// The WAL thread's queue; `None` with `wal_mode = none`.
    pub journal: Option<Sender<JournalRequest>>,
    /// Published schema version (network threads stamp it on errors they answer).
    pub schema_version: Arc<AtomicU32>,
    /// Hands a read view to a snapshot thread, which reports back with
    /// `TxMsg::CheckpointDone`.
    pub start_snapshot: Box<dyn Fn(ReadView) + Send>,
}

/// Where the one checkpoint that may run at a time is.
enum CheckpointState {
    Idle,
    /// The view is captured; waiting for the WAL to confirm everything in it is written.
    WaitingWal(Box<ReadView>),
    /// A snapshot thread is writing the file.
    Writing,
}

/// The rest of a write request once its transaction is durable: its reply.
struct PendingReply {
    route: Route,
    sync: u64,
    reply: Reply,
}

/// Who learns the outcome of a transaction once the WAL has written it (or failed).
enum Waiter {
    /// Nobody: the admin password at start-up.
    Nobody,
    /// A client request's reply: the commit continuation of a request that never yields.
    Client(PendingReply),
    /// A client whose success reply travels with the WAL write (`JournalRequest::Write`'s
    /// acks); only a failure is still TX's to answer.
    Acked { route: Route, sync: u64 },
    /// A fiber parked in `wait_commit` on this transaction id (replication).
    Fiber(u64),
}

impl Waiter {
    /// A client's pending reply, taken out to travel with the WAL write; the waiter becomes
    /// `Acked`, keeping the route for an error reply.
    fn take_reply(&mut self) -> Option<PendingReply> {
        let Waiter::Client(p) = self else {
            return None;
        };
        let acked = Waiter::Acked {
            route: p.route,
            sync: p.sync,
        };
        match std::mem::replace(self, acked) {
            Waiter::Client(p) => Some(p),
            _ => None,
        }
    }
}

/// A transaction sent to the WAL and not yet confirmed.
struct InFlight {
    /// Origin and LSN of its last row (this instance's, 0 for a local row, or an upstream's
    /// for applied rows), and the first LSN of that origin in it.
    replica_id: u32,
    first_lsn: u64,
    last_lsn: u64,
    /// The first local (component 0) LSN in it, if it ends with a replicated row.
    first_local: Option<u64>,
    undo: Vec<Undo>,
    waiter: Waiter,
}

struct Commit {
    epoch: u64,
    next_txn_id: u64,
    pending: Vec<JournalTxn>,
    in_flight: VecDeque<InFlight>,
    /// Outcomes not yet collected by their parked fibers.
    results: HashMap<u64, BoxResult<()>>,
    waiters: HashMap<u64, Fiber>,
}

pub struct Tx {
    pub db: Db,
    sessions: Sessions,
    hooks: TxHooks,
    outboxes: Vec<ReplyBatch>,
    commit: Commit,
    /// True while the dispatcher handles messages: it flushes the journal and the outboxes
    /// at the end of its turn. Fibers run between turns and flush for themselves.
    in_turn: bool,
    /// A fiber was made runnable during this turn: the dispatcher yields to it.
    fibers_woken: bool,
    shutting_down: bool,
    checkpoint: CheckpointState,
    pub repl: crate::replication::Repl,
    lone: LoneClient,
}

impl Tx {
    pub fn new(db: Db, hooks: TxHooks) -> Tx {
        let outboxes = (0..hooks.net_threads)
            .map(|_| ReplyBatch::default())
            .collect();
        hooks
            .schema_version
            .store(db.schema_version(), Ordering::SeqCst);
        Tx {
            db,
            sessions: Sessions::default(),
            hooks,
            outboxes,
            commit: Commit {
                epoch: 0,
                next_txn_id: 1,
                pending: Vec::new(),
                in_flight: VecDeque::new(),
                results: HashMap::new(),
                waiters: HashMap::new(),
            },
            in_turn: false,
            fibers_woken: false,
            shutting_down: false,
            checkpoint: CheckpointState::Idle,
            repl: Default::default(),
            lone: LoneClient::default(),
        }
    }

    /// Queues a reply for the end of the turn.
    fn send_reply(&mut self, route: Route, sync: u64, result: BoxResult<Reply>) {
        let schema_version = self.db.schema_version();
        if let Some(outbox) = self.outboxes.get_mut(route.thread as usize) {
            outbox.push(route, |out| {
                reply::encode(out, sync, schema_version, result)
            });
        }
    }

    fn flush_replies(&mut self) {
        for (thread, outbox) in self.outboxes.iter_mut().enumerate() {
            if !outbox.is_empty() {
                // The next turn's batch starts at this one's size instead of regrowing (one
                // huge reply does not make every later batch huge).
                let next = ReplyBatch {
                    buf: Vec::with_capacity(outbox.buf.len().min(REPLY_BATCH_RESERVE_MAX)),
                    items: Vec::with_capacity(outbox.items.len()),
                };
                (self.hooks.send_replies)(thread as u16, std::mem::replace(outbox, next));
            }
        }
    }

    /// Hands the pending transactions to the WAL early once enough have gathered.
    fn flush_journal_if(&mut self, at_least: usize) {
        if self.commit.pending.len() >= at_least {
            self.flush_journal();
        }
    }

    /// Sends the replies early once enough have gathered (see `PIPELINE_CHUNK`).
    fn flush_replies_if(&mut self, at_least: usize) {
        if self.outboxes.iter().any(|o| o.len() >= at_least) {
            self.flush_replies();
        }
    }

    pub(crate) fn in_turn(&self) -> bool {
        self.in_turn
    }

    pub(crate) fn shutting_down(&self) -> bool {
        self.shutting_down
    }

    pub(crate) fn flush_journal(&mut self) {
        if self.commit.pending.is_empty() {
            return;
        }
        let txns = std::mem::take(&mut self.commit.pending);
        let epoch = self.commit.epoch;
        let acks = self.success_replies(txns.len());
        if let Some(journal) = &self.hooks.journal {
            if journal
                .send(JournalRequest::Write { epoch, txns, acks })
                .is_err()
            {
                error!("WAL thread is gone; failing the pending commits");
                let first = self.commit.in_flight.front().map_or(0, |f| f.last_lsn);
                self.on_wal_failed(epoch, first, "WAL thread exited");
            }
        }
    }

    /// Encodes now the success replies of the last `count` in-flight transactions (the ones
    /// about to go to the WAL) and returns them as the write's acks: the WAL thread hands
    /// them to the network threads as soon as the write is durable, without a hop through
    /// TX. Their waiters keep the route, for an error reply if the write fails.
    fn success_replies(&mut self, count: usize) -> Option<Acks> {
        if count < ACKS_MIN_TXNS {
            return None;
        }
        let schema_version = self.db.schema_version();
        let mut batches: Vec<ReplyBatch> = Vec::new();
        let skip = self.commit.in_flight.len().saturating_sub(count);
        for txn in self.commit.in_flight.iter_mut().skip(skip) {
            let Some(pending) = txn.waiter.take_reply() else {
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
        let send = self.hooks.send_replies.clone();
        Some(Acks(Box::new(move || {
            for (thread, batch) in batches.into_iter().enumerate() {
                if !batch.is_empty() {
                    send(thread as u16, batch);
                }
            }
        })))
    }

    pub(crate) fn publish_schema_version(&self) {
        self.hooks
            .schema_version
            .store(self.db.schema_version(), Ordering::Relaxed);
    }

    /// Registers a logged transaction: assigns LSNs and queues it for the WAL, with the reply
    /// to send once it is durable. A transaction with nothing to log (no rows, or
    /// `wal_mode = none`) is committed already: its reply goes out now.
    fn submit(&mut self, outcome: WriteOutcome, reply: Option<PendingReply>) {
        let WriteOutcome { mut rows, undo, .. } = outcome;
        if !rows.is_empty() {
            self.db.assign_lsns(&mut rows);
        }
        let waiter = reply.map_or(Waiter::Nobody, Waiter::Client);
        if let Err(waiter) = self.queue_txn(rows, undo, waiter) {
            self.complete(waiter, Ok(()));
        }
    }

    /// Queues a transaction whose rows already carry their LSNs (its own, or an upstream's)
    /// for a fiber that will `wait_commit` on the returned id; `None` if nothing is logged.
    pub(crate) fn submit_logged(&mut self, rows: Vec<Row>, undo: Vec<Undo>) -> Option<u64> {
        let txn_id = self.commit.next_txn_id;
        self.commit.next_txn_id += 1;
        self.queue_txn(rows, undo, Waiter::Fiber(txn_id))
            .ok()
            .map(|()| txn_id)
    }

    /// Queues rows for the WAL; gives the waiter back when there is nothing to wait for.
    fn queue_txn(&mut self, rows: Vec<Row>, undo: Vec<Undo>, waiter: Waiter) -> Result<(), Waiter> {
        let Some(last) = rows.last().map(|r| r.header) else {
            return Err(waiter);
        };
        if self.hooks.journal.is_none() {
            return Err(waiter);
        }
        let first_of = |id: u32| rows.iter().find(|r| r.header.replica_id == id);
        let first_lsn = first_of(last.replica_id).map_or(last.lsn, |r| r.header.lsn);
        let first_local = (last.replica_id != 0)
            .then(|| first_of(0).map(|r| r.header.lsn))
            .flatten();
        self.commit.pending.push(JournalTxn { rows });
        self.commit.in_flight.push_back(InFlight {
            replica_id: last.replica_id,
            first_lsn,
            last_lsn: last.lsn,
            first_local,
            undo,
            waiter,
        });
        Ok(())
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
            Waiter::Fiber(txn_id) => {
                self.commit.results.insert(txn_id, result);
                if let Some(fiber) = self.commit.waiters.remove(&txn_id) {
                    fiber.unpark();
                    self.fibers_woken = true;
                }
            }
        }
    }

    /// Completes every transaction up to the one ending with row `{replica_id: lsn}`. The WAL
    /// writes in submission order, so that is a prefix of `in_flight`.
    fn on_wal_written(&mut self, replica_id: u32, lsn: u64) {
        let end = self
            .commit
            .in_flight
            .iter()
            .position(|f| f.replica_id == replica_id && f.last_lsn == lsn);
        let count = match end {
            Some(i) => i + 1,
            None => self
                .commit
                .in_flight
                .iter()
                .take_while(|f| f.last_lsn <= lsn)
                .count(),
        };
        for _ in 0..count {
            if let Some(done) = self.commit.in_flight.pop_front() {
                self.complete(done.waiter, Ok(()));
            }
        }
    }

    /// Cascading rollback: every in-flight transaction from `first_lsn` on is undone, newest
    /// first, and answered with ER_WAL_IO.
    fn on_wal_failed(&mut self, epoch: u64, first_lsn: u64, reason: &str) {
        if epoch != self.commit.epoch {
            return;
        }
        warn!("WAL write failed ({reason}); rolling back transactions from LSN {first_lsn}");
        self.commit.pending.clear();
        let own = self.db.replica_id;
        let (mut own_first, mut local_first) = (None, None);
        let earliest = |at: &mut Option<u64>, lsn: u64| *at = Some(at.map_or(lsn, |f| f.min(lsn)));
        while let Some(txn) = self.commit.in_flight.pop_back() {
            match txn.replica_id {
                0 => earliest(&mut local_first, txn.first_lsn),
                id if id == own => earliest(&mut own_first, txn.first_lsn),
                _ => {}
            }
            if let Some(lsn) = txn.first_local {
                earliest(&mut local_first, lsn);
            }
            self.db.rollback(txn.undo);
            self.complete(txn.waiter, Err(BoxError::wal_io()));
        }
        // This instance's LSNs (and local ones) from the first rolled-back one on are reused;
        // upstream rows are fetched again by their applier.
        if let Some(first) = own_first {
            self.db.reset_lsn(own, first.saturating_sub(1));
        }
        if let Some(first) = local_first {
            self.db.reset_lsn(0, first.saturating_sub(1));
        }
        self.commit.epoch += 1;
        self.publish_schema_version();
    }

    /// Captures a read view and queues the checkpoint marker behind every write in it.
    fn begin_checkpoint(&mut self) {
        if self.shutting_down {
            return;
        }
        if !matches!(self.checkpoint, CheckpointState::Idle) {
            info!("checkpoint already in progress");
            return;
        }
        let started = std::time::Instant::now();
        let view = ReadView::capture(&self.db);
        info!(
            "checkpoint started at vclock {} ({} rows; read view taken in {:.1} ms)",
            view.vclock,
            view.rows(),
            started.elapsed().as_secs_f64() * 1000.0
        );
        self.flush_journal();
        let marker = JournalRequest::Checkpoint {
            epoch: self.commit.epoch,
        };
        match &self.hooks.journal {
            Some(journal) if journal.send(marker).is_ok() => {
                self.checkpoint = CheckpointState::WaitingWal(Box::new(view));
            }
            Some(_) => warn!("checkpoint failed: the WAL thread is gone"),
            None => {
                (self.hooks.start_snapshot)(view);
                self.checkpoint = CheckpointState::Writing;
            }
        }
    }

    fn on_checkpoint_ready(&mut self, ok: bool) {
        let state = std::mem::replace(&mut self.checkpoint, CheckpointState::Idle);
        if let CheckpointState::WaitingWal(view) = state {
            if ok {
                (self.hooks.start_snapshot)(*view);
                self.checkpoint = CheckpointState::Writing;
            } else {
                warn!("checkpoint failed: a WAL write in its read view failed and was rolled back");
            }
        }
    }

    fn on_checkpoint_done(&mut self, outcome: CheckpointOutcome) {
        self.checkpoint = CheckpointState::Idle;
        match outcome.result {
            Ok(path) => info!(
                "checkpoint complete: {} ({} rows in {:.2} s)",
                path.display(),
                outcome.rows,
                outcome.seconds
            ),
            Err(e) => warn!("checkpoint failed: {e}"),
        }
    }
}

/// The TX state, reachable from every fiber. Leaked once at start: it lives as long as the
/// process.
pub type TxRef = &'static TxCell<Tx>;

pub fn install(tx: Tx) -> TxRef {
    Box::leak(Box::new(TxCell::new(tx)))
}

/// The dispatcher fiber's loop. Returns after a clean shutdown.
pub fn dispatch(tx: TxRef, mut bus: BusReceiver<TxMsg>) {
    if let Err(e) = bus.attach() {
        error!("cannot attach the TX doorbell: {e}");
        return;
    }
    loop {
        let mut handled = 0;
        while handled < TX_DISPATCH_BATCH {
            // Messages run under one borrow of the TX state until one needs to start or
            // wake fibers (replication), which runs outside it.
            let outside = tx.with(|t| {
                t.in_turn = true;
                while handled < TX_DISPATCH_BATCH {
                    let Ok(msg) = bus.try_recv() else { break };
                    handled += match &msg {
                        TxMsg::Net(NetEvent::Requests(batch)) => batch.len().max(1),
                        _ => 1,
                    };
                    if let Some(msg) = handle(t, msg) {
                        return Some(msg);
                    }
                    t.flush_journal_if(PIPELINE_CHUNK);
                    t.flush_replies_if(PIPELINE_CHUNK);
                }
                None
            });
            match outside {
                Some(msg) => handle_with_fibers(tx, msg),
                None => break,
            }
        }
        let (done, woken) = tx.with(|t| {
            t.flush_journal();
            t.flush_replies();
            t.in_turn = false;
            let woken = std::mem::take(&mut t.fibers_woken);
            (t.shutting_down && shutdown_ready(t), woken)
        });
        if done {
            close_journal(tx, &mut bus);
            return;
        }
        if woken {
            // Woken fibers run now, not when the bus happens to be empty.
            yield_now();
        }
        if handled >= TX_DISPATCH_BATCH {
            bus.poll_point();
        } else if !tx.with(|t| t.lone.active()) {
            bus.wait();
        } else if bus.spin(TX_LONE_SPIN) {
            // Spinning never passes through may's epoll: other fibers and cross-thread
            // wakeups still get a turn now and then (may.md P3).
            if tx.with(|t| t.lone.spun()) {
                bus.poll_point();
            }
        } else {
            tx.with(|t| t.lone.forget());
            bus.wait();
        }
    }
}

fn shutdown_ready(t: &Tx) -> bool {
    t.commit.in_flight.is_empty()
        && t.commit.waiters.is_empty()
        && matches!(t.checkpoint, CheckpointState::Idle)
}

/// Messages that start or wake replication fibers: handled outside any borrow of the TX
/// state (the fibers borrow it themselves).
fn handle_with_fibers(tx: TxRef, msg: TxMsg) {
    match msg {
        TxMsg::Net(NetEvent::Handoff {
            route,
            header,
            request,
            packet,
            stream,
            output,
            input,
        }) => {
            let user = tx.with(|t| {
                let user = t.sessions.user(route);
                t.sessions.disconnect(route);
                user
            });
            let handoff = spindle_repl::Handoff {
                header,
                request,
                packet,
                stream,
                output,
                input,
            };
            crate::replication::handoff(tx, user, handoff);
        }
        TxMsg::Repl(event) => {
            let woken = crate::replication::on_event(tx, event);
            tx.with(|t| t.fibers_woken |= woken);
        }
        _ => {}
    }
}

/// Asks the WAL to close the log and waits for its acknowledgement.
fn close_journal(tx: TxRef, bus: &mut BusReceiver<TxMsg>) {
    let sent = tx.with(|t| {
        t.hooks
            .journal
            .as_ref()
            .is_some_and(|j| j.send(JournalRequest::Shutdown).is_ok())
    });
    if !sent {
        tx.with(|t| t.flush_replies());
        return;
    }
    loop {
        match bus.try_recv() {
            Ok(TxMsg::Wal(JournalReply::Closed)) => break,
            Ok(TxMsg::Wal(JournalReply::Written { lsn, replica_id })) => {
                tx.with(|t| t.on_wal_written(replica_id, lsn))
            }
            Ok(_) => {}
            Err(crossbeam_channel::TryRecvError::Empty) => bus.wait(),
            Err(crossbeam_channel::TryRecvError::Disconnected) => break,
        }
    }
    tx.with(|t| t.flush_replies());
    info!("TX thread stopped");
}

/// Handles one message, or gives it back if it needs `handle_with_fibers`.
fn handle(t: &mut Tx, msg: TxMsg) -> Option<TxMsg> {
    match msg {
        msg @ (TxMsg::Net(NetEvent::Handoff { .. }) | TxMsg::Repl(_)) => return Some(msg),
        TxMsg::Net(NetEvent::Connect { route, salt }) => t.sessions.connect(route, salt),
        TxMsg::Net(NetEvent::Disconnect { route }) => t.sessions.disconnect(route),
        TxMsg::Net(NetEvent::Request {
            route,
            header,
            request,
            packet,
        }) => run_request(t, route, &header, &request, &packet, None),
        TxMsg::Net(NetEvent::Requests(batch)) => {
            let only = match batch.items.as_slice() {
                [item] => Some(item.route),
                _ => None,
            };
            t.lone.observe(only);
            let mut plan = SelectPlan::default();
            for (i, item) in batch.items.iter().enumerate() {
                let lookup = plan.lookup(&t.db, &batch, i);
                run_request(
                    t,
                    item.route,
                    &item.header,
                    &item.request,
                    batch.packet(item),
                    lookup,
                );
            }
        }
        TxMsg::Wal(JournalReply::Written { lsn, replica_id }) => t.on_wal_written(replica_id, lsn),
        TxMsg::Wal(JournalReply::Failed {
            epoch,
            first_lsn,
            error,
        }) => t.on_wal_failed(epoch, first_lsn, &error),
        TxMsg::Wal(JournalReply::CheckpointReady { ok }) => t.on_checkpoint_ready(ok),
        TxMsg::Wal(JournalReply::Closed) => {}
        TxMsg::Checkpoint => t.begin_checkpoint(),
        TxMsg::CheckpointDone(outcome) => t.on_checkpoint_done(outcome),
        TxMsg::Shutdown => t.shutting_down = true,
    }
    None
}

/// Runs one request; `lookup` is its select's lower bound if a batched walk found it.
fn run_request(
    t: &mut Tx,
    route: Route,
    header: &Header,
    request: &Request,
    packet: &[u8],
    lookup: Option<Lookup>,
) {
    if crate::db::is_write(request) {
        run_write(t, route, header, request, packet);
    } else {
        run_read(t, route, header, request, packet, lookup);
    }
}

fn run_read(
    t: &mut Tx,
    route: Route,
    header: &Header,
    request: &Request,
    packet: &[u8],
    lookup: Option<Lookup>,
) {
    let user = t.sessions.user(route);
    let result = t.db.execute_read(
        &mut t.sessions,
        route,
        user,
        header,
        request,
        packet,
        lookup,
    );
    t.send_reply(route, header.sync, result);
}

/// Applies a write at once; its reply waits for the WAL (see the module comment).
fn run_write(t: &mut Tx, route: Route, header: &Header, request: &Request, packet: &[u8]) {
    let user = t.sessions.user(route);
    let result = t.db.execute_write(user, header, request, packet);
    if t.db.schema_changed() {
        t.publish_schema_version();
    }
    match result {
        Ok(mut outcome) => {
            let reply = PendingReply {
                route,
                sync: header.sync,
                reply: std::mem::replace(&mut outcome.reply, Reply::Empty),
            };
            t.submit(outcome, Some(reply));
        }
        Err(e) => t.send_reply(route, header.sync, Err(e)),
    }
}

/// Sets `admin`'s password (a logged `_user` replace) if it differs from the stored one.
pub fn set_admin_password(tx: TxRef, password: &str) -> BoxResult<()> {
    tx.with(|t| {
        let row = crate::bootstrap::admin_row(password);
        let admin_key = [0x91, 0x01];
        let users = &t.db.catalog.space(crate::catalog::sys::USER)?.space;
        let current = users.select(0, spindle_types::iproto::IteratorType::Eq, &admin_key, 0, 1)?;
        if current.first().is_some_and(|c| c.data() == row.as_slice()) {
            return Ok(());
        }
        let applied = t.db.apply_dml(crate::db::Dml::Replace {
            space_id: crate::catalog::sys::USER,
            tuple: &row,
        })?;
        let outcome = WriteOutcome {
            reply: Reply::Empty,
            rows: applied.log.into_iter().collect(),
            undo: applied.undo.into_iter().collect(),
        };
        t.submit(outcome, None);
        t.flush_journal();
        t.publish_schema_version();
        Ok(())
    })
}

/// Parks the calling fiber until the WAL has confirmed or failed `txn_id` (a transaction
/// queued with `submit_logged`).
pub(crate) fn wait_commit(tx: TxRef, txn_id: u64) -> BoxResult<()> {
    loop {
        let ready = tx.with(|t| match t.commit.results.remove(&txn_id) {
            Some(result) => Some(result),
            None => {
                t.commit.waiters.insert(txn_id, current_fiber());
                None
            }
        });
        match ready {
            Some(result) => return result,
            None => park(),
        }
    }
}
