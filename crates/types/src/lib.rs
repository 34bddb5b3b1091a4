//! Pure vocabulary shared by every spindle crate: the IPROTO wire constants (one table), the
//! limits every queue and buffer obeys (one module), and Tarantool's error codes with their
//! 2.6 message texts, the Tarantool version the process announces (`compat`) and the
//! transaction settings (`txn_cfg`). No threads, no I/O, no dependencies.

pub mod compat;
pub mod error;
pub mod iproto;
pub mod limits;
pub mod txn_cfg;

pub use error::{BoxError, BoxResult, ErrorKind};
