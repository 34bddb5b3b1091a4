//! The fibers that run stored procedures (CALL, EVAL): a bounded pool. A procedure may park
//! (on a commit, later on Lua's `fiber.sleep`), so each runs in a fiber of its own, outside
//! the dispatcher's borrow of the TX state. Idle fibers park and are reused; at most
//! `PROC_FIBERS_MAX` exist, and jobs past that wait in the queue, which `net_msg_max` bounds.

use std::collections::VecDeque;

use spindle_fiber::Fiber;
use spindle_proto::route::Route;

/// A CALL or EVAL to run, with what its reply needs.
pub struct ProcJob {
    pub route: Route,
    pub sync: u64,
    pub user: u32,
    pub kind: ProcKind,
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
}
