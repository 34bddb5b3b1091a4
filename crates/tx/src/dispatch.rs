//! The dispatcher fiber: drains the bus from the network, WAL, snapshot and replication
//! threads, and runs every request in arrival order, each to its end or its commit point —
//! a later SELECT sees an earlier INSERT, as in Tarantool. Requests run under one borrow of
//! the TX state per turn; what needs a fiber (a procedure, a replication request, an upstream
//! transaction) runs outside it, and the dispatcher yields to that fiber before going on.
//! Replies produced during one turn leave as one batch per network thread, and the journal
//! writes of one turn as one WAL message (group commit).

use tracing::{error, info};

use spindle_box::plan::SelectPlan;
use spindle_fiber::{yield_now, BusReceiver};
use spindle_proto::route::{NetEvent, RequestBatch};
use spindle_types::limits::{PIPELINE_CHUNK, PROC_BATCH_MAX, TX_DISPATCH_BATCH, TX_LONE_SPIN};
use spindle_xlog::journal::{JournalReply, JournalRequest};

use crate::msg::TxMsg;
use crate::pool::ProcJob;
use crate::procs::{self, ProcRuntime};
use crate::state::{CheckpointState, Tx, TxRef};

/// Work the dispatcher leaves its borrow of the TX state for.
enum Outside {
    /// A message that starts or wakes fibers (replication).
    Msg(Box<TxMsg>),
    /// Procedures to start, in order, then the rest of their batch from item `next`.
    Procs {
        jobs: Vec<ProcJob>,
        batch: Option<(RequestBatch, usize)>,
    },
}

/// The dispatcher fiber's loop. Returns after a clean shutdown.
pub fn dispatch(tx: TxRef, mut bus: BusReceiver<TxMsg>, runtime: &'static dyn ProcRuntime) {
    if let Err(e) = bus.attach() {
        error!("cannot attach the TX doorbell: {e}");
        return;
    }
    loop {
        let handled = run_turn(tx, &mut bus, runtime);
        let (done, woken) = tx.with(|t| {
            t.flush_journal();
            t.outboxes.flush();
            let woken = std::mem::take(&mut t.fibers_woken);
            (t.shutting_down && shutdown_ready(t), woken)
        });
        if done {
            tx.with(|t| t.in_turn = false);
            close_journal(tx, &mut bus);
            return;
        }
        if woken {
            // Woken fibers run now, not when the bus happens to be empty; still in the turn,
            // so they leave flushing to the dispatcher.
            yield_now();
            tx.with(|t| {
                t.flush_journal();
                t.outboxes.flush();
            });
        }
        tx.with(|t| t.in_turn = false);
        wait(tx, &mut bus, handled);
    }
}

/// Handles up to `TX_DISPATCH_BATCH` requests; returns how many.
fn run_turn(tx: TxRef, bus: &mut BusReceiver<TxMsg>, runtime: &'static dyn ProcRuntime) -> usize {
    let mut handled = 0;
    while handled < TX_DISPATCH_BATCH {
        let outside = tx.with(|t| {
            t.in_turn = true;
            while handled < TX_DISPATCH_BATCH {
                let Ok(msg) = bus.try_recv() else { break };
                handled += match &msg {
                    TxMsg::Net(NetEvent::Requests(batch)) => batch.len().max(1),
                    _ => 1,
                };
                if let Some(outside) = handle(t, msg) {
                    return Some(outside);
                }
                t.flush_journal_if(PIPELINE_CHUNK);
                t.outboxes.flush_if(PIPELINE_CHUNK);
            }
            None
        });
        match outside {
            Some(outside) => run_outside(tx, outside, runtime),
            None => break,
        }
    }
    handled
}

/// Sleeps until the next message, or waits awake for a lone synchronous client's.
fn wait(tx: TxRef, bus: &mut BusReceiver<TxMsg>, handled: usize) {
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

fn shutdown_ready(t: &Tx) -> bool {
    t.commits.is_idle()
        && t.fiber_commits.parked.is_empty()
        && matches!(t.checkpoint, CheckpointState::Idle)
}

/// Runs what needs fibers, outside any borrow of the TX state (the fibers borrow it
/// themselves), then the rest of an interrupted batch.
fn run_outside(tx: TxRef, outside: Outside, runtime: &'static dyn ProcRuntime) {
    let mut next = Some(outside);
    while let Some(outside) = next.take() {
        match outside {
            Outside::Msg(msg) => handle_with_fibers(tx, *msg),
            Outside::Procs { jobs, batch } => {
                procs::start(tx, runtime, jobs);
                // As after any message: a deep pipeline's commits go to the WAL, and its
                // replies out, while the rest of the turn runs.
                tx.with(|t| {
                    t.flush_journal_if(PIPELINE_CHUNK);
                    t.outboxes.flush_if(PIPELINE_CHUNK);
                });
                if let Some((batch, from)) = batch {
                    next = tx.with(|t| run_batch(t, batch, from));
                }
            }
        }
    }
}

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
                t.watch.drop_session(route);
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
        tx.with(|t| t.outboxes.flush());
        return;
    }
    loop {
        match bus.try_recv() {
            Ok(TxMsg::Wal(JournalReply::Closed)) => break,
            Ok(TxMsg::Wal(JournalReply::Written { seq })) => tx.with(|t| t.on_wal_written(seq)),
            Ok(_) => {}
            Err(crossbeam_channel::TryRecvError::Empty) => bus.wait(),
            Err(crossbeam_channel::TryRecvError::Disconnected) => break,
        }
    }
    tx.with(|t| t.outboxes.flush());
    info!("TX thread stopped");
}

/// Handles one message, or gives back what needs to run outside the borrow.
fn handle(t: &mut Tx, msg: TxMsg) -> Option<Outside> {
    match msg {
        msg @ (TxMsg::Net(NetEvent::Handoff { .. }) | TxMsg::Repl(_)) => {
            return Some(Outside::Msg(Box::new(msg)))
        }
        TxMsg::Net(NetEvent::Connect { route, salt }) => t.sessions.connect(route, salt),
        TxMsg::Net(NetEvent::Disconnect { route }) => {
            t.sessions.disconnect(route);
            t.stream_txns.disconnect(route);
            t.watch.drop_session(route);
            t.settle_mvcc();
        }
        TxMsg::Net(NetEvent::Request {
            route,
            header,
            request,
            packet,
        }) => {
            let job = crate::routes::run(t, route, &header, &request, &packet, None);
            return job.map(|job| Outside::Procs {
                jobs: vec![job],
                batch: None,
            });
        }
        TxMsg::Net(NetEvent::Requests(batch)) => {
            let only = match batch.items.as_slice() {
                [item] => Some(item.route),
                _ => None,
            };
            t.lone.observe(only);
            return run_batch(t, batch, 0);
        }
        TxMsg::Wal(JournalReply::Written { seq }) => t.on_wal_written(seq),
        TxMsg::Wal(JournalReply::Failed { epoch, seq, error }) => {
            t.on_wal_failed(epoch, seq, &error)
        }
        TxMsg::Wal(JournalReply::CheckpointReady { ok }) => t.on_checkpoint_ready(ok),
        TxMsg::Wal(JournalReply::Closed) => {}
        TxMsg::Checkpoint => {
            t.begin_checkpoint();
        }
        TxMsg::CheckpointDone(outcome) => t.on_checkpoint_done(outcome),
        TxMsg::Kv(event) => crate::kv::handle(t, event),
        TxMsg::Shutdown => {
            t.shutting_down = true;
            crate::watch::broadcast_shutdown(t);
        }
    }
    None
}

/// Runs the requests of `batch` from item `from` on, until one needs a procedure fiber; the
/// CALLs and EVALs right after it go with it (their fibers start in order, each running to
/// its first park before the next, and all before the request after them).
fn run_batch(t: &mut Tx, batch: RequestBatch, from: usize) -> Option<Outside> {
    let mut plan = SelectPlan::default();
    for i in from..batch.items.len() {
        let Some(item) = batch.items.get(i) else {
            break;
        };
        let lookup = plan.lookup(&t.db, &batch, i);
        let packet = batch.packet(item);
        let job = crate::routes::run(t, item.route, &item.header, &item.request, packet, lookup);
        if let Some(job) = job {
            let mut jobs = vec![job];
            let next = more_procs(t, &batch, i + 1, &mut jobs);
            let rest = (next < batch.items.len()).then_some((batch, next));
            return Some(Outside::Procs { jobs, batch: rest });
        }
    }
    None
}

/// Adds the jobs of the procedure requests from item `from` on, up to the first other
/// request; the index of that one.
fn more_procs(t: &mut Tx, batch: &RequestBatch, from: usize, jobs: &mut Vec<ProcJob>) -> usize {
    let mut next = from;
    while let Some(item) = batch.items.get(next) {
        if !crate::routes::is_proc(&item.request) || jobs.len() >= PROC_BATCH_MAX {
            break;
        }
        let packet = batch.packet(item);
        let job = crate::routes::run(t, item.route, &item.header, &item.request, packet, None);
        jobs.extend(job);
        next += 1;
    }
    next
}
