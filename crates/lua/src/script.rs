//! The TX thread's first fiber: it builds the Lua runtime, then runs the init script
//! (`spindle SCRIPT.lua ARGS...`, as `tarantool SCRIPT.lua` does) or the one `box.cfg{}` of
//! `spindle serve`, and once the database is booted waits for the shutdown.

use std::path::PathBuf;

use mlua::{Lua, MultiValue, Value};
use tracing::error;

use crate::cfg::{booted, Host};
use crate::context::from_mlua;
use crate::runtime::LuaRuntime;

/// What the first fiber runs.
pub enum Start {
    /// An init script and its arguments; `binary` is `arg[-1]`.
    Script {
        path: PathBuf,
        args: Vec<String>,
        binary: String,
    },
    /// `box.cfg(options)` with the options of `spindle serve`, then an admin console on
    /// `console` if given.
    Serve {
        options: serde_json::Value,
        console: Option<String>,
    },
}

/// Runs the first fiber to its end; the process exit code.
pub fn run_main(host: Box<dyn Host>, start: Start) -> i32 {
    let runtime = match LuaRuntime::new() {
        Ok(r) => &*Box::leak(Box::new(r)),
        Err(e) => {
            eprintln!("cannot start Lua: {e}");
            return 1;
        }
    };
    if let Err(e) = runtime.install_cfg(host) {
        eprintln!("cannot start Lua: {e}");
        return 1;
    }
    let lua = runtime.lua();
    let outcome = match start {
        Start::Script { path, args, binary } => run_script(lua, &path, &args, &binary),
        Start::Serve { options, console } => run_serve(lua, &options, console.as_deref()),
    };
    let failed = match outcome {
        Ok(()) => false,
        Err(e) => {
            let e = from_mlua(e);
            eprintln!("{}: {}", e.kind.as_str(), e.message);
            eprintln!("fatal error, exiting the event loop");
            error!("fatal error, exiting the event loop");
            true
        }
    };
    let Some(tx) = booted(lua) else {
        return i32::from(failed);
    };
    if failed {
        crate::cfg::request_shutdown(lua);
    }
    spindle_tx::wait_stopped(tx);
    i32::from(failed)
}

fn run_script(
    lua: &Lua,
    path: &std::path::Path,
    args: &[String],
    binary: &str,
) -> mlua::Result<()> {
    let source = std::fs::read(path)
        .map_err(|e| mlua::Error::runtime(format!("cannot open {}: {e}", path.display())))?;
    let arg = lua.create_table()?;
    arg.raw_set(-1, binary)?;
    arg.raw_set(0, path.display().to_string())?;
    for (i, a) in args.iter().enumerate() {
        arg.raw_set(i + 1, a.as_str())?;
    }
    lua.globals().set("arg", arg)?;
    let source = strip_shebang(&source);
    let chunk = lua
        .load(source)
        .set_name(format!("@{}", path.display()))
        .into_function()?;
    let thread = lua.create_thread(chunk)?;
    let values: Vec<Value> = args
        .iter()
        .map(|a| lua.create_string(a).map(Value::String))
        .collect::<mlua::Result<_>>()?;
    thread.resume::<()>(MultiValue::from_vec(values))
}

/// A `#!` first line is a comment to the shell, not Lua.
fn strip_shebang(source: &[u8]) -> Vec<u8> {
    if source.starts_with(b"#") {
        let end = source
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(source.len());
        // Keep the newline so that line numbers in messages stay right.
        return source[end..].to_vec();
    }
    source.to_vec()
}

fn run_serve(lua: &Lua, options: &serde_json::Value, console: Option<&str>) -> mlua::Result<()> {
    let table = from_json(lua, options)?;
    let boot = lua
        .load("local options, console = ... box.cfg(options) if console ~= nil then require('console').listen(console) end")
        .set_name("=serve")
        .into_function()?;
    let thread = lua.create_thread(boot)?;
    let console = match console {
        Some(uri) => Value::String(lua.create_string(uri)?),
        None => Value::Nil,
    };
    thread.resume::<()>((table, console))
}

fn from_json(lua: &Lua, v: &serde_json::Value) -> mlua::Result<Value> {
    use serde_json::Value as J;
    Ok(match v {
        J::Null => Value::Nil,
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Number(n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => Value::String(lua.create_string(s)?),
        J::Array(items) => {
            let t = lua.create_table()?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, from_json(lua, item)?)?;
            }
            Value::Table(t)
        }
        J::Object(map) => {
            let t = lua.create_table()?;
            for (k, item) in map {
                t.raw_set(k.as_str(), from_json(lua, item)?)?;
            }
            Value::Table(t)
        }
    })
}
