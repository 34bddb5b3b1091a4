//! `log`: the Lua module (`log.lua`) over one Rust writer that passes each line to `tracing`
//! at the matching level (Tarantool's verbose and debug are tracing's debug and trace).

use mlua::Lua;

const SOURCE: &str = include_str!("log.lua");

fn write(level: i64, text: &str) {
    match level {
        ..=3 => tracing::error!(target: "lua", "{text}"),
        4 => tracing::warn!(target: "lua", "{text}"),
        5 => tracing::info!(target: "lua", "{text}"),
        6 => tracing::debug!(target: "lua", "{text}"),
        _ => tracing::trace!(target: "lua", "{text}"),
    }
}

pub fn install(lua: &Lua) -> mlua::Result<()> {
    let writer = lua.create_function(|_, (level, text): (i64, mlua::String)| {
        write(level, &text.to_string_lossy());
        Ok(())
    })?;
    let loader = lua
        .load(SOURCE)
        .set_name("@builtin/log.lua")
        .into_function()?;
    let preload: mlua::Table = lua
        .globals()
        .get::<mlua::Table>("package")?
        .get("preload")?;
    preload.set(
        "log",
        lua.create_function(move |_, ()| loader.call::<mlua::Value>(writer.clone()))?,
    )
}
