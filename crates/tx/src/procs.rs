//! Stored procedures: CALL and EVAL run behind `ProcRuntime`, each in a fiber of the bounded
//! pool (`pool`), outside the dispatcher's borrow of the TX state, so a procedure may park —
//! on its commits, later on Lua's fibers — while other requests go on. The first runtime is
//! `Builtin`: spindle's CALL without Lua (`spindle_box::call`).
//!
//! Order is kept as Tarantool keeps it: the dispatcher starts a procedure's fiber and yields
//! to it before it runs the next request, so a procedure that does not park runs to its end
//! between the requests that came before and after it.

use spindle_box::access::PRIV_X;
use spindle_box::Reply;
use spindle_fiber::{current_fiber, park, spawn_fiber, yield_now, Fiber};
use spindle_proto::route::Route;
use spindle_types::limits::{PROC_BATCH_MAX, PROC_FIBERS_MAX, TX_FIBER_STACK_WORDS};
use spindle_types::{BoxError, BoxResult};
use tracing::error;

pub use crate::pool::DmlJob;
use crate::pool::{ProcJob, ProcKind};
use crate::state::TxRef;

/// Who called, for access checks and for the reply.
#[derive(Clone, Copy, Debug)]
pub struct ProcCtx {
    pub user: u32,
    pub route: Route,
    pub sync: u64,
    /// The request's stream, 0 if none (see `ProcJob`).
    pub stream: u64,
    /// It starts inside its stream's open transaction.
    pub in_txn: bool,
}

/// Runs CALL and EVAL. Called in a pool fiber, never inside `TxCell::with`: an implementation
/// borrows the TX state in short `tx.with` sections of its own and may park between them.
pub trait ProcRuntime: Sync {
    fn call(
        &self,
        tx: TxRef,
        ctx: &ProcCtx,
        name: &str,
        args: &[u8],
        is_16: bool,
    ) -> BoxResult<Reply>;

    fn eval(&self, tx: TxRef, ctx: &ProcCtx, expr: &str, args: &[u8]) -> BoxResult<Reply>;

    /// A DML request on a space with triggers; the reply is the plain path's.
    fn dml(&self, _tx: TxRef, _ctx: &ProcCtx, _job: &DmlJob) -> BoxResult<Reply> {
        Err(BoxError::unsupported(
            "spindle",
            "space triggers without Lua",
        ))
    }
}

/// CALL of the built-in `box.space.<name>:<method>` procedures; EVAL needs Lua.
pub struct Builtin;

impl ProcRuntime for Builtin {
    fn call(
        &self,
        tx: TxRef,
        ctx: &ProcCtx,
        name: &str,
        args: &[u8],
        is_16: bool,
    ) -> BoxResult<Reply> {
        tx.with(|t| spindle_box::call::call(&mut t.db, ctx.user, name, args, is_16))
    }

    fn eval(&self, tx: TxRef, ctx: &ProcCtx, _expr: &str, _args: &[u8]) -> BoxResult<Reply> {
        tx.with(|t| t.db.check_universe(ctx.user, PRIV_X))?;
        Err(BoxError::unsupported("spindle", "Lua EVAL"))
    }
}

/// Queues procedures and lets pool fibers run them; returns once each has run up to its end or
/// its first park, in order, so the next request runs after them. With every fiber busy the
/// rest wait for the next free one.
///
/// A woken fiber takes the next job, and the next after that if its job ends without
/// parking: one fiber runs a row of EVALs that do not park. Jobs left after a round (their
/// fibers parked, on a commit say) get twice as many fibers in the next one, so a row of
/// CALLs that each park costs the dispatcher a few switches, not one per job, and no fiber
/// is woken for nothing. Fibers woken by their commits go first, so in a deep pipeline a
/// fiber that replies takes the next job without an idle park. may runs fibers woken on the
/// TX thread before one that yields after waking them (its local run queue is FIFO), but a
/// new fiber only once nothing else is runnable: for a new one the dispatcher parks until
/// the fiber, as it starts, wakes it.
pub fn start(tx: TxRef, runtime: &'static dyn ProcRuntime, jobs: Vec<ProcJob>) {
    let (mut wake, commits_done) = tx.with(|t| {
        t.procs.queue.extend(jobs);
        (
            t.procs.wake_hint.max(1),
            std::mem::take(&mut t.fibers_woken),
        )
    });
    if commits_done {
        // Fibers whose commits the WAL has answered run first: each finishes its request and
        // takes the next job straight away, instead of parking idle to be woken for it.
        yield_now();
    }
    // The dispatcher stays inside its turn (`in_turn`): it flushes what the procedures queued.
    loop {
        match next_round(tx, wake) {
            Round::Done => return,
            Round::Woken(fibers) => {
                for fiber in &fibers {
                    fiber.unpark();
                }
                yield_now();
                wake = tx.with(|t| {
                    let wasted = std::mem::take(&mut t.procs.woken_for_nothing);
                    let next = if wasted > 0 {
                        fibers.len().saturating_sub(wasted).max(1)
                    } else if t.procs.queue.is_empty() {
                        fibers.len()
                    } else {
                        fibers.len().saturating_mul(2).min(PROC_BATCH_MAX)
                    };
                    t.procs.wake_hint = next;
                    next
                });
            }
            Round::Spawn => {
                if !spawn_worker(tx, runtime) {
                    return;
                }
            }
        }
    }
}

enum Round {
    /// No job waits, or none can start until a fiber is free.
    Done,
    Woken(Vec<Fiber>),
    /// No fiber is idle; the pool may grow by one.
    Spawn,
}

/// Up to `wake` idle fibers to run the queued jobs.
fn next_round(tx: TxRef, wake: usize) -> Round {
    tx.with(|t| {
        let queued = t.procs.queue.len();
        if queued == 0 {
            return Round::Done;
        }
        let idle = t.procs.idle.len();
        if idle == 0 {
            if t.procs.fibers < PROC_FIBERS_MAX {
                return Round::Spawn;
            }
            return Round::Done;
        }
        let n = wake.min(queued).min(idle);
        Round::Woken(t.procs.idle.split_off(idle - n))
    })
}

/// Starts a pool fiber and parks until it has started (it takes a job at once). False if it
/// could not be started: the queued jobs are answered with the error.
fn spawn_worker(tx: TxRef, runtime: &'static dyn ProcRuntime) -> bool {
    tx.with(|t| {
        t.procs.fibers += 1;
        t.procs.starter = Some(current_fiber());
    });
    if let Err(e) = spawn_fiber(TX_FIBER_STACK_WORDS, move || worker(tx, runtime)) {
        error!("cannot start a procedure fiber: {e}");
        tx.with(|t| {
            t.procs.fibers -= 1;
            t.procs.starter = None;
        });
        fail_queued(tx, &e.to_string());
        return false;
    }
    while tx.with(|t| t.procs.starter.is_some()) {
        park();
    }
    true
}

/// With no fiber to run them, queued procedures are answered with an error.
fn fail_queued(tx: TxRef, why: &str) {
    tx.with(|t| {
        while let Some(job) = t.procs.queue.pop_front() {
            let e = BoxError::unsupported("spindle", &format!("procedures now ({why})"));
            t.send_reply(job.route, job.sync, Err(e));
        }
    });
}

/// A pool fiber: runs queued procedures, parks when there are none.
fn worker(tx: TxRef, runtime: &'static dyn ProcRuntime) {
    // Runs on once woken: the dispatcher resumes when this fiber first parks or ends a job.
    if let Some(starter) = tx.with(|t| t.procs.starter.take()) {
        starter.unpark();
    }
    let me = current_fiber();
    let mut woken = false;
    loop {
        match tx.with(|t| t.procs.queue.pop_front()) {
            Some(job) => run(tx, runtime, job),
            None => {
                tx.with(|t| {
                    t.procs.woken_for_nothing += usize::from(woken);
                    t.procs.idle.push(me.clone());
                });
                park();
                woken = true;
                continue;
            }
        }
        woken = false;
    }
}

fn run(tx: TxRef, runtime: &dyn ProcRuntime, job: ProcJob) {
    let ctx = ProcCtx {
        user: tx.with(|t| t.sessions.user(job.route)),
        route: job.route,
        sync: job.sync,
        stream: job.stream,
        in_txn: job.in_txn,
    };
    let result = match &job.kind {
        ProcKind::Call { name, args, is_16 } => runtime.call(tx, &ctx, name, args, *is_16),
        ProcKind::Eval { expr, args } => runtime.eval(tx, &ctx, expr, args),
        ProcKind::Dml(dml) => runtime.dml(tx, &ctx, dml),
    };
    tx.with(|t| {
        t.send_reply(ctx.route, ctx.sync, result);
        // Outside a dispatcher turn nobody else will flush this reply.
        if !t.in_turn {
            t.flush_journal();
            t.outboxes.flush();
        }
    });
}
