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

thread_local! {
    /// How many `Unlimited` sections the TX thread is inside.
    static UNLIMITED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// The Lua memory limit (`LUA_MEMORY_MAX`) lifted while Rust puts a few values into the Lua
/// state (a request's arguments, a statement's tuple). The limit is for Lua code: what runs
/// away is a script, and its allocation fails inside the script's `pcall`. With a limit set,
/// mlua wraps every value it creates in a protected call of a fresh C closure (the garbage of
/// which cost ~10% of a CALL); without one it creates values directly. A section never
/// parks (mlua callbacks and the Rust around a resume do not), so sections nest only within
/// one fiber's turn.
pub struct Unlimited<'a> {
    lua: &'a Lua,
}

impl<'a> Unlimited<'a> {
    pub fn new(lua: &'a Lua) -> Unlimited<'a> {
        if UNLIMITED.with(|d| d.replace(d.get() + 1)) == 0 {
            let _ = lua.set_memory_limit(0);
        }
        Unlimited { lua }
    }
}

impl Drop for Unlimited<'_> {
    fn drop(&mut self) {
        let depth = UNLIMITED.with(|d| {
            let left = d.get().saturating_sub(1);
            d.set(left);
            left
        });
        if depth == 0 {
            let _ = self
                .lua
                .set_memory_limit(spindle_types::limits::LUA_MEMORY_MAX);
        }
    }
}
