//! The fibers that run stored procedures (CALL, EVAL): a bounded pool. A procedure may park
//! (on a commit, later on Lua's `fiber.sleep`), so each runs in a fiber of its own, outside
//! the dispatcher's borrow of the TX state. Idle fibers park and are reused; at most
//! `PROC_FIBERS_MAX` exist, and jobs past that wait in the queue, which `net_msg_max` bounds.

use std::collections::{BTreeSet, VecDeque};

use spindle_fiber::Fiber;
use spindle_proto::route::Route;

/// A CALL or EVAL to run, with what its reply needs. It runs for the session's user as it is
/// when the job starts (an earlier procedure of the connection may have changed it).
pub struct ProcJob {
    pub route: Route,
    pub sync: u64,
    pub kind: ProcKind,
    /// The request's stream (0: none, or streams are off): a transaction left open at its
    /// end stays with the stream instead of failing the request.
    pub stream: u64,
    /// It runs inside its stream's open transaction.
    pub in_txn: bool,
}

pub enum ProcKind {
    Call {
        name: String,
        args: Vec<u8>,
        is_16: bool,
    },
    Eval {
        expr: String,
        args: Vec<u8>,
    },
    /// A DML request on a space with triggers (see `DmlJob`).
    Dml(DmlJob),
}

/// A plain INSERT, REPLACE, UPDATE, DELETE or UPSERT on a space with triggers: the triggers
/// are Lua, so the statement runs in a procedure fiber instead of the dispatcher. `first` is
/// the tuple (INSERT, REPLACE, UPSERT) or key (UPDATE, DELETE), `second` the operations.
pub struct DmlJob {
    /// Lower-case: `insert`, `replace`, `update`, `delete` or `upsert`.
    pub op: &'static str,
    pub space_id: u32,
    pub index_id: u32,
    pub index_base: u32,
    pub first: Vec<u8>,
    pub second: Vec<u8>,
}

#[derive(Default)]
pub struct Pool {
    pub queue: VecDeque<ProcJob>,
    /// Parked fibers waiting for a job.
    pub idle: Vec<Fiber>,
    /// Fibers started, busy or idle.
    pub fibers: usize,
    /// The dispatcher, parked while a new pool fiber starts (see `procs::start`).
    pub starter: Option<Fiber>,
    /// Spaces with triggers: their DML requests run as procedures (`DmlJob`).
    pub triggered: BTreeSet<u32>,
    /// How many idle fibers `procs::start` wakes first: it learns from the last rounds
    /// whether jobs park (more fibers, fewer switches) or one fiber runs them all.
    pub wake_hint: usize,
    /// Fibers woken that found no job (their wake was for nothing).
    pub woken_for_nothing: usize,
}
