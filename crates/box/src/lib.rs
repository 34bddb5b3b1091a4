//! The database core, free of threads and fibers: the catalog and system spaces (`catalog`,
//! `views`, `bootstrap`), users and privileges (`access`), sessions, DML applied to memory
//! with its undo and log rows (`dml`), transactions (`txn`), the commit queue between memory
//! and the WAL (`commit`), conflict detection for transactions that span yields
//! (`conflict`) and the MVCC engine of stream transactions built on it (`mvcc`), request
//! execution (`execute`, `plan`, `call`), the HTTP API's keyspace and its preconditions
//! (`kv`), `_cluster` (`cluster`), read views and the
//! snapshot writer (`checkpoint`), the watchers' key registry and its coalescing (`watch`),
//! and start-up recovery (`recovery`, whose decoder threads are its only threads).
//!
//! It depends on neither `may`, the fiber layer nor the replication threads, so it can be
//! driven and tested without them. The TX thread (`spindle-tx`) owns the one `Db` and is
//! the only caller at run time; recovery, the snapshot thread and the replica bootstrap use
//! their own `Db` or read view before or beside it.

pub mod access;
pub mod bootstrap;
pub mod call;
pub mod catalog;
pub mod checkpoint;
pub mod cluster;
pub mod commit;
pub mod conflict;
pub mod db;
mod ddl;
pub mod dml;
pub mod execute;
pub mod kv;
pub mod mvcc;
pub mod plan;
pub mod recovery;
pub mod reply;
pub mod session;
pub mod txn;
pub mod views;
pub mod watch;

pub use commit::CommitQueue;
pub use db::Db;
pub use dml::{Dml, Undo};
pub use reply::Reply;
pub use txn::Txn;
