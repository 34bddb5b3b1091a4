//! `box.cfg` and the process around it: the `Host` the binary provides (recovery, the WAL,
//! network and replication threads), the first `box.cfg{}` that boots the database from the
//! running fiber — an init script's, or the one `spindle serve` runs — and the later calls
//! that change dynamic options. Options cross to the host as JSON with Tarantool's names.

use std::cell::RefCell;

use mlua::{Lua, Table, Value};
use spindle_box::Db;
use spindle_fiber::BusReceiver;
use spindle_tx::{ProcRuntime, ReplSetup, TxHooks, TxMsg, TxRef};

use crate::context::lua_error;

/// What the TX state is made of, once the host has recovered the data and started its threads.
pub struct BootParts {
    pub db: Db,
    pub hooks: TxHooks,
    pub bus: BusReceiver<TxMsg>,
    pub admin_password: Option<String>,
    pub replication: Option<ReplSetup>,
}

/// The binary's side of `box.cfg`. Both calls run on the TX thread inside a Lua callback:
/// they may block the thread (recovery does) but must never park the fiber.
pub trait Host {
    /// The first `box.cfg{}`: every option, defaults filled in.
    fn boot(&mut self, options: &serde_json::Value) -> Result<BootParts, String>;
    /// A later `box.cfg{}`: the options it changed (dynamic ones only).
    fn reconfigure(&mut self, changed: &serde_json::Value) -> Result<(), String>;
    /// Stops the process as SIGTERM would (the init script failed after booting).
    fn shutdown(&mut self);
}

struct HostCell {
    host: RefCell<Box<dyn Host>>,
    runtime: &'static dyn ProcRuntime,
}

/// The TX state once booted, for the caller of the script: it waits for the shutdown.
#[derive(Default, Clone, Copy)]
pub struct Booted(pub Option<TxRef>);

pub fn install(
    lua: &Lua,
    internal: &Table,
    host: Box<dyn Host>,
    runtime: &'static dyn ProcRuntime,
) -> mlua::Result<()> {
    lua.set_app_data(HostCell {
        host: RefCell::new(host),
        runtime,
    });
    lua.set_app_data(Booted::default());
    internal.set("cfg_boot", lua.create_function(boot)?)?;
    internal.set("cfg_reconfigure", lua.create_function(reconfigure)?)?;
    Ok(())
}

fn boot(lua: &Lua, options: Table) -> mlua::Result<()> {
    let json = to_json(&Value::Table(options), 0)?;
    let (parts, runtime) = {
        let cell = lua
            .app_data_ref::<HostCell>()
            .ok_or_else(|| mlua::Error::runtime("box.cfg has no host"))?;
        let parts = cell.host.borrow_mut().boot(&json);
        (parts, cell.runtime)
    };
    let parts = parts.map_err(cfg_error)?;
    let tx = spindle_tx::start(
        parts.db,
        parts.hooks,
        parts.bus,
        parts.admin_password,
        parts.replication,
        runtime,
    )
    .map_err(cfg_error)?;
    crate::state::attach(tx);
    lua.set_app_data(Booted(Some(tx)));
    // box.cfg may have changed the announced version (`compat_version`).
    let version = spindle_types::compat::announced();
    lua.globals()
        .set("_TARANTOOL", format!("{version}-0-spindle"))?;
    Ok(())
}

fn reconfigure(lua: &Lua, changed: Table) -> mlua::Result<()> {
    let json = to_json(&Value::Table(changed), 0)?;
    let cell = lua
        .app_data_ref::<HostCell>()
        .ok_or_else(|| mlua::Error::runtime("box.cfg has no host"))?;
    let result = cell.host.borrow_mut().reconfigure(&json);
    drop(cell);
    result.map_err(cfg_error)?;
    if let (Some(read_only), Some(tx)) = (json.get("read_only"), booted(lua)) {
        let read_only = read_only.as_bool().unwrap_or(false);
        tx.with(|t| {
            t.db.set_read_only(read_only);
            spindle_tx::watch::refresh_builtins(t);
        });
    }
    Ok(())
}

/// A host failure as Tarantool's ER_CFG-style error.
fn cfg_error(message: String) -> mlua::Error {
    lua_error(spindle_types::BoxError::new(
        spindle_types::error::code::ER_CFG,
        message,
    ))
}

pub fn request_shutdown(lua: &Lua) {
    if let Some(cell) = lua.app_data_ref::<HostCell>() {
        cell.host.borrow_mut().shutdown();
    }
}

/// The booted TX state, if `box.cfg{}` has run.
pub fn booted(lua: &Lua) -> Option<TxRef> {
    lua.app_data_ref::<Booted>().and_then(|b| b.0)
}

const JSON_DEPTH_MAX: usize = 16;

/// An option value as JSON: tables with keys 1..n are arrays, other tables objects.
pub fn to_json(v: &Value, depth: usize) -> mlua::Result<serde_json::Value> {
    use serde_json::Value as J;
    if depth > JSON_DEPTH_MAX {
        return Err(mlua::Error::runtime("box.cfg option nested too deep"));
    }
    Ok(match v {
        Value::Nil | Value::LightUserData(_) => J::Null,
        Value::Boolean(b) => J::Bool(*b),
        Value::Integer(i) => J::from(*i),
        Value::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => J::from(*n as i64),
        Value::Number(n) => serde_json::Number::from_f64(*n).map_or(J::Null, J::Number),
        Value::String(s) => J::String(s.to_string_lossy()),
        Value::Table(t) => table_to_json(t, depth)?,
        Value::UserData(_) | Value::Function(_) | Value::Thread(_) | Value::Error(_) => {
            J::String(v.to_string()?)
        }
        _ => J::Null,
    })
}

fn table_to_json(t: &Table, depth: usize) -> mlua::Result<serde_json::Value> {
    let len = t.raw_len();
    let mut count = 0;
    for pair in t.clone().pairs::<Value, Value>() {
        pair?;
        count += 1;
    }
    if count == len && len > 0 {
        let mut items = Vec::with_capacity(len);
        for v in t.clone().sequence_values::<Value>() {
            items.push(to_json(&v?, depth + 1)?);
        }
        return Ok(serde_json::Value::Array(items));
    }
    let mut map = serde_json::Map::new();
    for pair in t.clone().pairs::<Value, Value>() {
        let (k, v) = pair?;
        let key = match &k {
            Value::String(s) => s.to_string_lossy(),
            other => other.to_string()?,
        };
        map.insert(key, to_json(&v, depth + 1)?);
    }
    Ok(serde_json::Value::Object(map))
}
