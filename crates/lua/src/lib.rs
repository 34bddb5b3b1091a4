//! Lua on the TX thread: one LuaJIT state (through `mlua`, built from source), owned by the TX
//! thread and touched by nothing else. CALL and EVAL run in it (`runtime`, the `ProcRuntime`
//! of the route table's procedure fibers), each request in a Lua thread of its own; the `box`
//! API is a Lua prelude (`box.lua`) over Rust functions (`api`), with tuples as userdata
//! (`tuple`) and Lua values converted to and from MessagePack by Tarantool's rules
//! (`convert`). A statement's commit parks its fiber until the WAL answers. `box.watch` and
//! `box.broadcast` (`watch`) serve the TX thread's watcher registry to Lua fibers.

mod api;
mod cfg;
mod console;
mod context;
mod convert;
mod fast;
mod fiber;
pub mod modules;
mod raw;
mod runtime;
mod schema;
mod script;
mod session;
mod sockfile;
mod state;
mod text;
mod triggers;
mod tuple;
mod tuple_block;
pub mod txn;
mod txn_mvcc;
mod watch;

pub use cfg::{BootParts, Host};
pub use modules::yaml::console_format;
pub use runtime::LuaRuntime;
pub use script::{run_main, Start};
