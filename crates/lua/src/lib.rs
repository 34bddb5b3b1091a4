//! Lua on the TX thread: one LuaJIT state (through `mlua`, built from source), owned by the TX
//! thread and touched by nothing else. CALL and EVAL run in it (`runtime`, the `ProcRuntime`
//! of the route table's procedure fibers), each request in a Lua thread of its own; the `box`
//! API is a Lua prelude (`box.lua`) over Rust functions (`api`), with tuples as userdata
//! (`tuple`) and Lua values converted to and from MessagePack by Tarantool's rules
//! (`convert`). A statement's commit parks its fiber until the WAL answers.

mod api;
mod console;
mod context;
mod convert;
mod modules;
mod runtime;
mod text;
mod tuple;

pub use modules::yaml::console_format;
pub use runtime::LuaRuntime;

use spindle_tx::{ProcRuntime, TxRef};

/// Creates the Lua runtime for the TX state `tx`; it lives as long as the process.
pub fn runtime(tx: TxRef) -> Result<&'static dyn ProcRuntime, String> {
    let runtime = LuaRuntime::new(tx).map_err(|e| format!("cannot start Lua: {e}"))?;
    Ok(Box::leak(Box::new(runtime)))
}
