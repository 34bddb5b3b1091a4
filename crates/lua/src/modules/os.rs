//! The Rust half of the `os` additions and the other globals (`globals.lua`): environment
//! variables and `os.exit`.

use std::io::Write;

use mlua::{Lua, Table, Value};

const GLOBALS: &str = include_str!("globals.lua");

pub fn install(lua: &Lua) -> mlua::Result<()> {
    let internal = lua.create_table()?;
    internal.set(
        "setenv",
        lua.create_function(|_, (name, value): (String, Option<String>)| {
            if name.is_empty() || name.contains(['=', '\0']) {
                return Ok(());
            }
            // The environment is read by other threads only at start-up (configuration), so
            // changing it from the TX thread later races with nothing.
            match value {
                Some(v) if !v.contains('\0') => std::env::set_var(&name, v),
                Some(_) => {}
                None => std::env::remove_var(&name),
            }
            Ok(())
        })?,
    )?;
    internal.set(
        "environ",
        lua.create_function(|lua, ()| -> mlua::Result<Table> {
            let t = lua.create_table()?;
            for (k, v) in std::env::vars_os() {
                t.raw_set(
                    lua.create_string(k.as_encoded_bytes())?,
                    lua.create_string(v.as_encoded_bytes())?,
                )?;
            }
            Ok(t)
        })?,
    )?;
    internal.set(
        "exit",
        lua.create_function(|_, code: Value| -> mlua::Result<()> {
            let code = match code {
                Value::Integer(i) => i as i32,
                Value::Number(n) => n as i32,
                _ => 0,
            };
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().flush();
            std::process::exit(code)
        })?,
    )?;
    lua.load(GLOBALS)
        .set_name("@builtin/globals.lua")
        .call::<()>(internal)
}
