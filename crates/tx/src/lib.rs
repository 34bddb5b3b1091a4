//! The TX thread: the one may worker that owns all database state (`spindle_box::Db`) and
//! everything that must not be shared — sessions, the commit queue, reply outboxes. It runs
//! the dispatcher fiber (`dispatch`) that drains the bus from the network, WAL, snapshot and
//! replication threads and routes each request (`routes`); the commit shell that hands
//! transactions to the WAL thread and acts on its answers (`commit`); the procedure fiber
//! pool (`procs`, `pool`); the replication fibers (`replication`); the checkpoint state
//! machine (`checkpoint`); IPROTO_ID and stream transactions (`stream_routes`, `stream_txn`); watchers (`watch`); the HTTP commit API's TX side (`kv`). Nothing here is touched from another thread: the state sits in a
//! `TxCell` (`state`).

pub mod admin;
mod checkpoint;
pub mod commit;
pub mod dispatch;
pub mod kv;
mod kv_state;
mod lone;
pub mod msg;
mod outbox;
mod pool;
pub mod procs;
mod repl_state;
pub mod replication;
pub mod routes;
pub mod state;
pub mod stream_routes;
pub mod stream_txn;
pub mod watch;

pub use msg::TxMsg;
pub use procs::{Builtin, ProcRuntime};
pub use repl_state::ReplSetup;
pub use state::{Tx, TxHooks, TxRef, WalMode};

use spindle_box::Db;
use spindle_fiber::BusReceiver;
use spindle_types::limits::TX_FIBER_STACK_WORDS;
use tracing::error;

/// Installs the TX state and starts the dispatcher in a fiber of its own, then returns: the
/// calling fiber (an init script's) goes on. `wait_stopped` parks until a clean shutdown.
pub fn start(
    db: Db,
    hooks: TxHooks,
    bus: BusReceiver<TxMsg>,
    admin_password: Option<String>,
    replication: Option<ReplSetup>,
    runtime: &'static dyn ProcRuntime,
) -> Result<TxRef, String> {
    let tx = install(db, hooks, admin_password, replication);
    spindle_fiber::spawn_fiber(TX_FIBER_STACK_WORDS, move || {
        dispatch::dispatch(tx, bus, runtime);
        let waiter = tx.with(|t| {
            t.stopped = true;
            t.stop_waiter.take()
        });
        if let Some(fiber) = waiter {
            fiber.unpark();
        }
    })
    .map_err(|e| format!("cannot start the TX dispatcher: {e}"))?;
    Ok(tx)
}

/// The TX state made from the recovered database, with the admin password set.
fn install(
    mut db: Db,
    hooks: TxHooks,
    admin_password: Option<String>,
    replication: Option<ReplSetup>,
) -> TxRef {
    db.identify();
    // The TX thread writes the tuples: it reuses the blocks of the ones it frees.
    spindle_memtx::blocks::keep_freed_blocks();
    let mut t = Tx::new(db, hooks);
    if let Some(setup) = replication {
        t.repl.configure(setup);
    }
    watch::start_builtins(&mut t);
    let tx = state::install(t);
    if let Some(password) = admin_password {
        if let Err(e) = admin::set_admin_password(tx, &password) {
            error!("cannot set the admin password: {e}");
        }
    }
    tx
}

/// Parks the calling fiber until the dispatcher `start` began has shut down cleanly.
pub fn wait_stopped(tx: TxRef) {
    loop {
        let stopped = tx.with(|t| {
            if !t.stopped {
                t.stop_waiter = Some(spindle_fiber::current_fiber());
            }
            t.stopped
        });
        if stopped {
            return;
        }
        spindle_fiber::park();
    }
}
