//! The modules scripts `require` (`json`, `msgpack`, `fiber`, ...), each registered in
//! `package.preload` (or as a global) by its own file; `install` runs every installer once,
//! before the prelude.

use mlua::Lua;

/// Registers a module written in Lua: `require(name)` runs `source` once and caches what it
/// returns.
pub fn preload_lua(lua: &Lua, name: &str, source: &'static str) -> mlua::Result<()> {
    let preload: mlua::Table = lua
        .globals()
        .get::<mlua::Table>("package")?
        .get("preload")?;
    let chunk_name = format!("@builtin/{name}.lua");
    let loader = lua.load(source).set_name(chunk_name).into_function()?;
    preload.set(name, loader)
}

/// Installs every module.
pub fn install(lua: &Lua) -> mlua::Result<()> {
    crate::fiber::install(lua)?;
    Ok(())
}
