//! `box.watch` and `box.broadcast`, the Rust half: Lua watchers in the TX thread's registry
//! (`spindle_box::watch`, owned by `Tx`), each served by a fiber of its own that `watch.lua`
//! runs. A change wakes that fiber (`spindle_tx::watch::notify` calls `fiber::wake`); the
//! fiber reads the newest value itself, so a value is decoded into Lua only when a callback
//! is about to run.

use mlua::{Lua, Table, Value};
use spindle_box::watch::{Owner, Take};

use crate::context::lua_error;
use crate::state::{tx, Unlimited};

const SOURCE: &str = include_str!("watch.lua");

pub fn install(lua: &Lua, internal: &Table) -> mlua::Result<()> {
    spindle_tx::watch::set_fiber_waker(crate::fiber::wake);
    internal.set("watch_register", lua.create_function(register)?)?;
    internal.set("watch_take", lua.create_function(take)?)?;
    internal.set("watch_ack", lua.create_function(ack)?)?;
    internal.set("watch_unregister", lua.create_function(unregister)?)?;
    internal.set("broadcast", lua.create_function(broadcast)?)?;
    lua.load(SOURCE)
        .set_name("=watch.lua")
        .call::<()>(internal.clone())
}

/// A watcher of `key` served by Lua fiber `fiber`; its first notice is waiting.
fn register(_: &Lua, (key, fiber): (mlua::String, u64)) -> mlua::Result<u64> {
    let key = key.as_bytes().to_vec();
    tx()?
        .with(|t| t.watch.register(&key, Owner::Fiber(fiber)))
        .map(|notice| notice.id)
        .map_err(lua_error)
}

/// `"event", has_value, value` if a notice waits, `"none"` if not, `"gone"` once
/// unregistered.
fn take(lua: &Lua, id: u64) -> mlua::Result<(&'static str, bool, Value)> {
    let taken = tx()?.with(|t| match t.watch.take(id) {
        Take::Gone => None,
        Take::Nothing => Some(None),
        Take::Event(_, value) => Some(Some(value.map(<[u8]>::to_vec))),
    });
    Ok(match taken {
        None => ("gone", false, Value::Nil),
        Some(None) => ("none", false, Value::Nil),
        Some(Some(None)) => ("event", false, Value::Nil),
        Some(Some(Some(bytes))) => {
            let _unlimited = Unlimited::new(lua);
            let value = crate::convert::decode(lua, &mut bytes.as_slice())?;
            ("event", true, value)
        }
    })
}

/// The callback returned: the next change (or one made while it ran) notifies again.
fn ack(_: &Lua, id: u64) -> mlua::Result<()> {
    tx()?.with(|t| {
        let notice = t.watch.ack(id);
        spindle_tx::watch::notify(t, notice);
    });
    Ok(())
}

/// `w:unregister()`: a fiber waiting for a change is woken to end; one running the callback
/// ends when it returns.
fn unregister(_: &Lua, (id, fiber): (u64, u64)) -> mlua::Result<()> {
    let waiting = tx()?.with(|t| t.watch.unregister(id));
    if waiting == Some(true) {
        crate::fiber::wake(fiber);
    }
    Ok(())
}

/// `box.broadcast(key[, value])`: the value as MessagePack (none clears the key).
fn broadcast(_: &Lua, (key, has_value, value): (mlua::String, bool, Value)) -> mlua::Result<()> {
    let mut data = Vec::new();
    if has_value {
        crate::convert::encode(&mut data, &value).map_err(|e| mlua::Error::runtime(e.0))?;
    }
    let key = key.as_bytes().to_vec();
    tx()?
        .with(|t| spindle_tx::watch::broadcast(t, &key, has_value.then_some(data.as_slice())))
        .map_err(lua_error)
}
