//! Everything the TX thread owns, in one `Tx` value behind one `TxCell`: the database, the
//! sessions, the commit queue and who waits on it, the reply outboxes, the checkpoint in
//! progress, replication state, the procedure fiber pool, and the hooks to the other threads.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;
use hashbrown::HashMap;

use spindle_box::checkpoint::ReadView;
use spindle_box::session::Sessions;
use spindle_box::{CommitQueue, Db, Reply};
use spindle_fiber::{Fiber, TxCell};
use spindle_proto::route::Route;
use spindle_types::BoxResult;
use spindle_xlog::journal::JournalRequest;

use crate::lone::LoneClient;
use crate::outbox::{Outboxes, SendReplies};
use crate::pool::Pool;
use crate::repl_state::Repl;

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
    pub send_replies: SendReplies,
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
pub enum CheckpointState {
    Idle,
    /// The view is captured; waiting for the WAL to confirm everything in it is written.
    WaitingWal(Box<ReadView>),
    /// A snapshot thread is writing the file.
    Writing,
}

/// The rest of a write request once its transaction is durable: its reply.
pub struct PendingReply {
    pub route: Route,
    pub sync: u64,
    pub reply: Reply,
}

/// Who learns the outcome of a transaction once the WAL has written it (or failed).
pub enum Waiter {
    /// Nobody: the admin password at start-up.
    Nobody,
    /// A client request's reply: the commit continuation of a request that never yields.
    Client(PendingReply),
    /// A client whose success reply travels with the WAL write (`JournalRequest::Write`'s
    /// acks); only a failure is still TX's to answer.
    Acked { route: Route, sync: u64 },
    /// A fiber parked in `wait_commit` on this transaction's sequence number.
    Fiber(u64),
    /// An HTTP commit (`kv`): its answer goes back to the HTTP thread once durable.
    Kv(crate::kv_state::KvPending),
}

impl Waiter {
    /// A client's pending reply, taken out to travel with the WAL write; the waiter becomes
    /// `Acked`, keeping the route for an error reply.
    pub fn take_reply(&mut self) -> Option<PendingReply> {
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

/// Outcomes of transactions that fibers wait for, and the fibers parked on them.
#[derive(Default)]
pub struct FiberCommits {
    /// Outcomes not yet collected by their parked fibers, by sequence number.
    pub results: HashMap<u64, BoxResult<()>>,
    pub parked: HashMap<u64, Fiber>,
}

pub struct Tx {
    pub db: Db,
    pub sessions: Sessions,
    pub hooks: TxHooks,
    pub outboxes: Outboxes,
    pub commits: CommitQueue<Waiter>,
    pub fiber_commits: FiberCommits,
    /// True while the dispatcher handles messages (or runs the fibers it woke): it flushes
    /// the journal and the outboxes at the end. Fibers running at other times flush for
    /// themselves.
    pub in_turn: bool,
    /// A fiber was made runnable during this turn: the dispatcher yields to it.
    pub fibers_woken: bool,
    pub shutting_down: bool,
    pub checkpoint: CheckpointState,
    pub repl: Repl,
    pub lone: LoneClient,
    pub procs: Pool,
    /// The dispatcher has finished a clean shutdown; `stop_waiter` is woken then.
    pub stopped: bool,
    pub stop_waiter: Option<Fiber>,
    pub checkpoints: Checkpoints,
    /// BEGIN/COMMIT/ROLLBACK transactions of IPROTO streams.
    pub stream_txns: crate::stream_txn::StreamTxns,
    /// Watched and broadcast keys, and their watchers (`watch`).
    pub watch: spindle_box::watch::Registry,
    pub watch_state: BuiltinState,
    /// The commits the MVCC transactions among them need to know of.
    pub mvcc: spindle_box::mvcc::Engine,
    /// The HTTP commit API's state, once its listener is up (`kv`).
    pub kv: Option<crate::kv_state::KvState>,
    /// Open MVCC transactions of Lua fibers (`box.begin()`, crates/lua), which own them.
    pub fiber_mvcc_open: usize,
}

/// What the built-in watch keys were last broadcast from (`watch::refresh_builtins`).
#[derive(Default)]
pub struct BuiltinState {
    /// The built-in keys exist (`box.cfg{}` has ended).
    pub started: bool,
    pub schema_version: u32,
    pub replica_id: u32,
    pub read_only: bool,
}

/// Finished checkpoints, for fibers waiting on one (`box.snapshot()`).
#[derive(Default)]
pub struct Checkpoints {
    pub done: u64,
    /// Why the last one failed; None if it succeeded.
    pub last_error: Option<String>,
    pub waiters: Vec<Fiber>,
}

impl Tx {
    pub fn new(db: Db, hooks: TxHooks) -> Tx {
        let outboxes = Outboxes::new(hooks.net_threads, hooks.send_replies.clone());
        hooks
            .schema_version
            .store(db.schema_version(), Ordering::SeqCst);
        Tx {
            db,
            sessions: Sessions::default(),
            hooks,
            outboxes,
            commits: CommitQueue::new(),
            fiber_commits: FiberCommits::default(),
            in_turn: false,
            fibers_woken: false,
            shutting_down: false,
            checkpoint: CheckpointState::Idle,
            repl: Repl::default(),
            lone: LoneClient::default(),
            procs: Pool::default(),
            stopped: false,
            stop_waiter: None,
            checkpoints: Checkpoints::default(),
            stream_txns: crate::stream_txn::StreamTxns::default(),
            watch: spindle_box::watch::Registry::default(),
            watch_state: BuiltinState::default(),
            mvcc: spindle_box::mvcc::Engine::new(),
            kv: None,
            fiber_mvcc_open: 0,
        }
    }

    /// Queues a reply for the end of the turn.
    pub fn send_reply(&mut self, route: Route, sync: u64, result: BoxResult<Reply>) {
        let schema_version = self.db.schema_version();
        self.outboxes.push(route, sync, schema_version, result);
    }

    /// Open MVCC transactions, of streams and of Lua fibers: while any is, commits are
    /// recorded for them.
    pub fn mvcc_open(&self) -> usize {
        self.stream_txns.mvcc_open() + self.fiber_mvcc_open
    }

    /// After an MVCC transaction ended: with none left, the commits kept for them go.
    pub fn settle_mvcc(&mut self) {
        if self.mvcc_open() == 0 {
            self.mvcc.forget_all();
        }
    }
}

/// The TX state, reachable from every fiber. Leaked once at start: it lives as long as the
/// process.
pub type TxRef = &'static TxCell<Tx>;

pub fn install(tx: Tx) -> TxRef {
    Box::leak(Box::new(TxCell::new(tx)))
}
