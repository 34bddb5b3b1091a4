//! The TX thread's runtime: the dispatcher fiber, the bounded pool of request fibers, the
//! per-network-thread reply outboxes, and the commit protocol with the WAL thread.
//!
//! Order of execution matches Tarantool: every request starts in arrival order. Read-only
//! requests run inline in the dispatcher (they cannot yield); writes are handed to a pooled
//! fiber and the dispatcher yields once so the fiber applies its change at once — a later
//! SELECT from the same connection sees it — and then parks until the WAL reports the LSN
//! durable. Replies produced during one dispatcher turn leave as one batch per network
//! thread, and the journal writes of one turn leave as one WAL message (group commit).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;
use hashbrown::HashMap;
use tracing::{error, info, warn};

use spindle_fiber::{current_fiber, park, spawn_fiber, yield_now, BusReceiver, Fiber, TxCell};
use spindle_proto::iproto::{Header, Request};
use spindle_proto::route::{NetEvent, ReplyBatch, Route};
use spindle_types::limits::{TX_DISPATCH_BATCH, TX_FIBER_POOL_MAX, TX_FIBER_STACK_WORDS};
use spindle_types::{BoxError, BoxResult};
use spindle_xlog::journal::{JournalReply, JournalRequest, JournalTxn};
use spindle_xlog::Row;

use crate::checkpoint::{CheckpointOutcome, ReadView};
use crate::db::{Db, Undo, WriteOutcome};
use crate::msg::TxMsg;
use crate::reply;
use crate::session::Sessions;

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
    pub send_replies: Box<dyn Fn(u16, ReplyBatch) + Send>,
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

/// A write request waiting for (or running in) a fiber.
struct Job {
    route: Route,
    header: Header,
    request: Request,
    packet: Vec<u8>,
}

/// A transaction sent to the WAL and not yet confirmed.
struct InFlight {
    txn_id: u64,
    /// Origin and LSNs of its rows (this instance's, or an upstream's for applied rows).
    replica_id: u32,
    first_lsn: u64,
    last_lsn: u64,
    undo: Vec<Undo>,
}

#[derive(Default)]
struct Pool {
    idle: Vec<Fiber>,
    jobs: VecDeque<Job>,
    live: usize,
    /// Set when the dispatcher has stopped: idle fibers exit instead of waiting for work.
    stopped: bool,
}

struct Commit {
    epoch: u64,
    next_txn_id: u64,
    pending: Vec<JournalTxn>,
    in_flight: VecDeque<InFlight>,
    results: HashMap<u64, BoxResult<()>>,
    waiters: HashMap<u64, Fiber>,
}

pub struct Tx {
    pub db: Db,
    sessions: Sessions,
    hooks: TxHooks,
    outboxes: Vec<ReplyBatch>,
    pool: Pool,
    commit: Commit,
    /// True while the dispatcher is inside a turn: it will flush outboxes and the journal
    /// at the end. Fibers that run outside a turn flush for themselves.
    in_turn: bool,
    shutting_down: bool,
    checkpoint: CheckpointState,
    pub repl: crate::replication::Repl,
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
            pool: Pool::default(),
            commit: Commit {
                epoch: 0,
                next_txn_id: 1,
                pending: Vec::new(),
                in_flight: VecDeque::new(),
                results: HashMap::new(),
                waiters: HashMap::new(),
            },
            in_turn: false,
            shutting_down: false,
            checkpoint: CheckpointState::Idle,
            repl: Default::default(),
        }
    }

    fn outbox(&mut self, route: Route) -> Option<&mut ReplyBatch> {
        self.outboxes.get_mut(route.thread as usize)
    }

    fn flush_replies(&mut self) {
        for (thread, outbox) in self.outboxes.iter_mut().enumerate() {
            if !outbox.is_empty() {
                (self.hooks.send_replies)(thread as u16, std::mem::take(outbox));
            }
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
        if let Some(journal) = &self.hooks.journal {
            if journal.send(JournalRequest::Write { epoch, txns }).is_err() {
                error!("WAL thread is gone; failing the pending commits");
                let first = self.commit.in_flight.front().map_or(0, |f| f.last_lsn);
                self.on_wal_failed(epoch, first, "WAL thread exited");
            }
        }
    }

    pub(crate) fn publish_schema_version(&self) {
        self.hooks
            .schema_version
            .store(self.db.schema_version(), Ordering::Relaxed);
    }

    /// Registers a logged transaction: assigns LSNs, queues it for the WAL. Returns the
    /// transaction id to wait on, or None when nothing needs waiting (wal_mode none or no rows).
    fn submit(&mut self, outcome: &mut WriteOutcome) -> Option<u64> {
        if outcome.rows.is_empty() {
            return None;
        }
        self.db.assign_lsns(&mut outcome.rows);
        let rows = std::mem::take(&mut outcome.rows);
        let undo = std::mem::take(&mut outcome.undo);
        self.submit_logged(rows, undo)
    }

    /// Queues a transaction whose rows already carry their LSNs (its own, or an upstream's).
    pub(crate) fn submit_logged(&mut self, rows: Vec<Row>, undo: Vec<Undo>) -> Option<u64> {
        let last = rows.last()?.header;
        let (replica_id, last_lsn) = (last.replica_id, last.lsn);
        let first_lsn = rows.first().map_or(last_lsn, |r| r.header.lsn);
        self.hooks.journal.as_ref()?;
        let txn_id = self.commit.next_txn_id;
        self.commit.next_txn_id += 1;
        self.commit.pending.push(JournalTxn { rows });
        self.commit.in_flight.push_back(InFlight {
            txn_id,
            replica_id,
            first_lsn,
            last_lsn,
            undo,
        });
        Some(txn_id)
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
                self.commit.results.insert(done.txn_id, Ok(()));
                self.wake(done.txn_id);
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
        let mut rolled_back = Vec::new();
        while let Some(txn) = self.commit.in_flight.pop_back() {
            rolled_back.push((txn.replica_id, txn.first_lsn));
            self.db.rollback(txn.undo);
            self.commit
                .results
                .insert(txn.txn_id, Err(BoxError::wal_io()));
            self.wake(txn.txn_id);
        }
        let own = self.db.replica_id;
        let own_first = rolled_back
            .iter()
            .filter(|(id, _)| *id == own)
            .map(|(_, first)| *first)
            .min();
        // This instance's LSNs from the first rolled-back one on are reused; upstream rows
        // are fetched again by their applier.
        if let Some(first) = own_first {
            self.db.reset_lsn(first.saturating_sub(1));
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

    fn wake(&mut self, txn_id: u64) {
        if let Some(fiber) = self.commit.waiters.remove(&txn_id) {
            fiber.unpark();
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
        tx.with(|t| t.in_turn = true);
        let mut handled = 0;
        while handled < TX_DISPATCH_BATCH {
            let Ok(msg) = bus.try_recv() else { break };
            handled += 1;
            if handle(tx, msg) {
                yield_now();
            }
        }
        let done = tx.with(|t| {
            t.flush_journal();
            t.flush_replies();
            t.in_turn = false;
            t.shutting_down && shutdown_ready(t)
        });
        if done {
            close_journal(tx, &mut bus);
            stop_pool(tx);
            return;
        }
        if handled == TX_DISPATCH_BATCH {
            bus.poll_point();
        } else {
            bus.wait();
        }
    }
}

fn shutdown_ready(t: &Tx) -> bool {
    t.commit.in_flight.is_empty()
        && t.pool.jobs.is_empty()
        && t.commit.waiters.is_empty()
        && matches!(t.checkpoint, CheckpointState::Idle)
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

/// Handles one message; returns true if fibers were made runnable and should run now.
fn handle(tx: TxRef, msg: TxMsg) -> bool {
    match msg {
        TxMsg::Net(NetEvent::Connect { route, salt }) => {
            tx.with(|t| t.sessions.connect(route, salt));
            false
        }
        TxMsg::Net(NetEvent::Disconnect { route }) => {
            tx.with(|t| t.sessions.disconnect(route));
            false
        }
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
            false
        }
        TxMsg::Repl(event) => crate::replication::on_event(tx, event),
        TxMsg::Net(NetEvent::Request {
            route,
            header,
            request,
            packet,
        }) => {
            let job = Job {
                route,
                header,
                request,
                packet,
            };
            if crate::db::is_write(&job.request) {
                start_job(tx, job)
            } else {
                tx.with(|t| run_inline(t, job));
                false
            }
        }
        TxMsg::Wal(JournalReply::Written { lsn, replica_id }) => {
            tx.with(|t| t.on_wal_written(replica_id, lsn));
            true
        }
        TxMsg::Wal(JournalReply::Failed {
            epoch,
            first_lsn,
            error,
        }) => {
            tx.with(|t| t.on_wal_failed(epoch, first_lsn, &error));
            true
        }
        TxMsg::Wal(JournalReply::CheckpointReady { ok }) => {
            tx.with(|t| t.on_checkpoint_ready(ok));
            false
        }
        TxMsg::Wal(JournalReply::Closed) => false,
        TxMsg::Checkpoint => {
            tx.with(|t| t.begin_checkpoint());
            false
        }
        TxMsg::CheckpointDone(outcome) => {
            tx.with(|t| t.on_checkpoint_done(outcome));
            false
        }
        TxMsg::Shutdown => {
            tx.with(|t| t.shutting_down = true);
            false
        }
    }
}

fn run_inline(t: &mut Tx, job: Job) {
    let user = t.sessions.user(job.route);
    let sync = job.header.sync;
    let result = t.db.execute_read(
        &mut t.sessions,
        job.route,
        user,
        &job.header,
        &job.request,
        &job.packet,
    );
    let schema_version = t.db.schema_version();
    if let Some(outbox) = t.outbox(job.route) {
        outbox.push(job.route, |out| {
            reply::encode(out, sync, schema_version, result)
        });
    }
}

/// Queues a write for a pooled fiber; returns true if a fiber was woken.
fn start_job(tx: TxRef, job: Job) -> bool {
    let (woken, spawn) = tx.with(|t| {
        t.pool.jobs.push_back(job);
        if let Some(fiber) = t.pool.idle.pop() {
            fiber.unpark();
            (true, false)
        } else if t.pool.live < TX_FIBER_POOL_MAX {
            t.pool.live += 1;
            (false, true)
        } else {
            (false, false)
        }
    });
    if spawn {
        if let Err(e) = spawn_fiber(TX_FIBER_STACK_WORDS, move || worker(tx)) {
            error!("cannot spawn a request fiber: {e}");
            tx.with(|t| t.pool.live -= 1);
        }
    }
    woken
}

fn worker(tx: TxRef) {
    loop {
        match tx.with(|t| (t.pool.jobs.pop_front(), t.pool.stopped)) {
            (Some(job), _) => run_write(tx, job),
            (None, true) => return,
            (None, false) => {
                tx.with(|t| t.pool.idle.push(current_fiber()));
                park();
            }
        }
    }
}

/// Lets the pooled fibers finish once the dispatcher is gone.
fn stop_pool(tx: TxRef) {
    let idle = tx.with(|t| {
        t.pool.stopped = true;
        std::mem::take(&mut t.pool.idle)
    });
    for fiber in idle {
        fiber.unpark();
    }
}

fn run_write(tx: TxRef, job: Job) {
    let submitted = tx.with(|t| {
        let user = t.sessions.user(job.route);
        let result =
            t.db.execute_write(user, &job.header, &job.request, &job.packet);
        if t.db.schema_changed() {
            t.publish_schema_version();
        }
        match result {
            Ok(mut outcome) => {
                let txn = t.submit(&mut outcome);
                if !t.in_turn {
                    t.flush_journal();
                }
                Ok((outcome.reply, txn))
            }
            Err(e) => Err(e),
        }
    });
    let result = match submitted {
        Ok((reply, Some(txn_id))) => wait_commit(tx, txn_id).map(|()| reply),
        Ok((reply, None)) => Ok(reply),
        Err(e) => Err(e),
    };
    tx.with(|t| {
        let schema_version = t.db.schema_version();
        let sync = job.header.sync;
        if let Some(outbox) = t.outbox(job.route) {
            outbox.push(job.route, |out| {
                reply::encode(out, sync, schema_version, result)
            });
        }
        if !t.in_turn {
            t.flush_replies();
        }
    });
}

/// Parks the calling fiber until the WAL has confirmed or failed `txn_id`.
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
        let mut outcome = WriteOutcome {
            reply: crate::reply::Reply::Empty,
            rows: applied.log.into_iter().collect(),
            undo: applied.undo.into_iter().collect(),
        };
        t.submit(&mut outcome);
        t.flush_journal();
        t.publish_schema_version();
        Ok(())
    })
}
