//! What every part of the Lua runtime reaches for: the TX state once `box.cfg{}` has made it,
//! and the `box.internal` table the Rust functions are registered in. A leaf module, so that
//! the others can share it without depending on each other.

use std::sync::OnceLock;

use mlua::{Lua, Table};
use spindle_tx::TxRef;

/// The TX state, for the raw C functions too (they get no `Lua` handle to look it up in).
static TX: OnceLock<TxRef> = OnceLock::new();

/// Gives the box API the TX state, once `box.cfg{}` has made it.
pub fn attach(tx: TxRef) {
    let _ = TX.set(tx);
}

/// The TX state; before `box.cfg{}`, Tarantool's error.
pub fn tx() -> mlua::Result<TxRef> {
    TX.get()
        .copied()
        .ok_or_else(|| mlua::Error::runtime("Please call box.cfg{} first"))
}

/// The TX state if booted, for code that must not fail (raw C functions).
pub fn tx_if_booted() -> Option<TxRef> {
    TX.get().copied()
}

/// The `box.internal` table.
pub fn internal(lua: &Lua) -> mlua::Result<Table> {
    lua.named_registry_value("spindle.internal")
}
