//! The TX thread: the one may worker that owns all database state. It runs the dispatcher
//! fiber that drains the bus from the network and WAL threads, the pooled request fibers,
//! the schema and system spaces (`catalog`, `views`), users and privileges (`access`),
//! request execution (`db`), and start-up recovery (`recovery`, `bootstrap`).
//! Nothing here is touched from another thread: the state sits in a `TxCell`.

pub mod access;
pub mod bootstrap;
pub mod call;
pub mod catalog;
pub mod checkpoint;
pub mod db;
mod lone;
pub mod msg;
pub mod recovery;
pub mod replication;
pub mod reply;
pub mod runtime;
pub mod session;
pub mod views;

pub use msg::TxMsg;
pub use runtime::{TxHooks, WalMode};

use spindle_fiber::BusReceiver;
use tracing::error;

/// Runs the TX thread's main loop until a clean shutdown. Call from the first fiber of
/// `spindle_fiber::run_tx`.
pub fn run(db: db::Db, hooks: TxHooks, bus: BusReceiver<TxMsg>, admin_password: Option<String>) {
    run_with(db, hooks, bus, admin_password, None);
}

/// `run`, serving replicas with `replication` (None with `wal_mode = none`).
pub fn run_with(
    mut db: db::Db,
    hooks: TxHooks,
    bus: BusReceiver<TxMsg>,
    admin_password: Option<String>,
    replication: Option<replication::ReplSetup>,
) {
    replication::identify(&mut db);
    let mut t = runtime::Tx::new(db, hooks);
    if let Some(setup) = replication {
        t.repl.configure(setup);
    }
    let tx = runtime::install(t);
    if let Some(password) = admin_password {
        if let Err(e) = runtime::set_admin_password(tx, &password) {
            error!("cannot set the admin password: {e}");
        }
    }
    runtime::dispatch(tx, bus);
}
