//! The modules scripts `require` (`json`, `msgpack`, `fiber`, ...), each registered in
//! `package.preload` (or as a global) by its own file; `install` runs every installer once,
//! before the prelude.

use mlua::{FromLuaMulti, Function, IntoLuaMulti, Lua, Table, Value};

mod decimal;
mod digest;
mod fio;
mod json;
mod log;
mod msgpack;
mod os;
mod serializer;
mod socket;
mod uuid;
pub mod yaml;

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

/// Registers a module built in Rust: `require(name)` calls `build` once and caches the table.
pub fn preload_rust(
    lua: &Lua,
    name: &str,
    build: fn(&Lua) -> mlua::Result<Table>,
) -> mlua::Result<()> {
    let preload: Table = lua.globals().get::<Table>("package")?.get("preload")?;
    preload.set(name, lua.create_function(move |lua, ()| build(lua))?)
}

/// Turns `(ok, ...)` from a Rust function into its results or a Lua error whose value is the
/// message string: with no position prefix, as Tarantool's C functions mostly raise them, or
/// (`positioned`) prefixed with the caller's position, as `json.decode` does.
const CHECKER: &str = r#"
local raw = ...
local function check(ok, ...)
    if not ok then error((...), 0) end
    return ...
end
return function(...) return check(raw(...)) end
"#;

const CHECKER_AT: &str = r#"
local raw = ...
return function(...)
    local ok, v = raw(...)
    if not ok then error(v, 2) end
    return v
end
"#;

fn checked<A, R, F>(lua: &Lua, f: F, checker: &str) -> mlua::Result<Function>
where
    A: FromLuaMulti,
    R: IntoLuaMulti,
    F: Fn(&Lua, A) -> Result<R, String> + 'static,
{
    let raw = lua.create_function(move |lua, args: A| {
        let mut out = match f(lua, args) {
            Ok(r) => r.into_lua_multi(lua)?,
            Err(e) => return (false, e).into_lua_multi(lua),
        };
        out.push_front(Value::Boolean(true));
        Ok(out)
    })?;
    lua.load(checker).set_name("=checker").call::<Function>(raw)
}

/// A Lua function over `f`: an `Err(message)` raises `message` as a plain string error.
pub fn function<A, R, F>(lua: &Lua, f: F) -> mlua::Result<Function>
where
    A: FromLuaMulti,
    R: IntoLuaMulti,
    F: Fn(&Lua, A) -> Result<R, String> + 'static,
{
    checked(lua, f, CHECKER)
}

/// Like [`function`] for a function of one result, whose errors carry the caller's position.
pub fn function_at<A, R, F>(lua: &Lua, f: F) -> mlua::Result<Function>
where
    A: FromLuaMulti,
    R: IntoLuaMulti,
    F: Fn(&Lua, A) -> Result<R, String> + 'static,
{
    checked(lua, f, CHECKER_AT)
}

/// The text of an error as Lua code sees it (mlua's `Display` adds "runtime error: ").
pub fn message(e: &mlua::Error) -> String {
    match e {
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::CallbackError { cause, .. } => message(cause),
        other => other.to_string(),
    }
}

/// `box.NULL` (the registry value `spindle.NULL` the runtime stores after `install`; the
/// modules read it when first required).
pub fn null(lua: &Lua) -> Value {
    crate::convert::null(lua)
}

const SETUP: &str = r#"
local reg = ...
local ffi = require('ffi')
reg.tonumber = tonumber
-- Decimal text to a 64-bit cdata, digit by digit (Lua numbers cannot carry it).
local function parse(s, acc)
    local neg = s:sub(1, 1) == '-'
    for i = neg and 2 or 1, #s do
        local d = s:byte(i) - 48
        if neg then acc = acc * 10 - d else acc = acc * 10 + d end
    end
    return acc
end
reg.int64 = function(s) return parse(s, ffi.new('int64_t', 0)) end
reg.uint64 = function(s) return parse(s, ffi.new('uint64_t', 0)) end
"#;

/// An `int64_t` cdata holding `i` (`-1LL`).
pub fn int64(lua: &Lua, i: i64) -> mlua::Result<Value> {
    let f: Function = lua.named_registry_value("spindle.int64")?;
    f.call(i.to_string())
}

/// A `uint64_t` cdata holding `u` (`1ULL`).
pub fn uint64(lua: &Lua, u: u64) -> mlua::Result<Value> {
    let f: Function = lua.named_registry_value("spindle.uint64")?;
    f.call(u.to_string())
}

/// Installs every module.
pub fn install(lua: &Lua) -> mlua::Result<()> {
    let reg = lua.create_table()?;
    lua.load(SETUP)
        .set_name("=modules")
        .call::<()>(reg.clone())?;
    for name in ["tonumber", "int64", "uint64"] {
        lua.set_named_registry_value(&format!("spindle.{name}"), reg.get::<Function>(name)?)?;
    }
    crate::convert::set_hooks(crate::convert::Hooks {
        encode_ext,
        decode_ext,
        big_int,
        kind_meta,
    });
    yaml::install(lua)?;
    json::install(lua)?;
    msgpack::install(lua)?;
    uuid::install(lua)?;
    decimal::install(lua)?;
    digest::install(lua)?;
    fio::install(lua)?;
    os::install(lua)?;
    log::install(lua)?;
    socket::install(lua)?;
    preload_lua(lua, "clock", include_str!("clock.lua"))?;
    preload_lua(lua, "errno", include_str!("errno.lua"))?;
    preload_lua(lua, "fun", include_str!("fun.lua"))?;
    Ok(())
}

/// Appends a UUID or decimal object as its MessagePack extension; false for any other
/// userdata. The hook of `convert::encode`.
pub fn encode_ext(out: &mut Vec<u8>, ud: &mlua::AnyUserData) -> bool {
    if let Ok(u) = ud.borrow::<uuid::LuaUuid>() {
        msgpack::write_ext(out, uuid::EXT_UUID, &u.0);
        return true;
    }
    if let Ok(d) = ud.borrow::<decimal::LuaDecimal>() {
        msgpack::write_ext(out, decimal::EXT_DECIMAL, &decimal::ext_payload(&d.0));
        return true;
    }
    false
}

/// A MessagePack extension as a Lua value: UUIDs and decimals; others fail as in Tarantool.
/// The hook of `convert::decode`.
pub fn decode_ext(lua: &Lua, kind: i8, data: &[u8]) -> mlua::Result<Value> {
    let bad = || mlua::Error::runtime(format!("Unsuported MsgPack extension type: {kind}"));
    match kind {
        uuid::EXT_UUID => {
            let bytes = <[u8; 16]>::try_from(data).map_err(|_| bad())?;
            lua.create_userdata(uuid::LuaUuid(bytes))
                .map(Value::UserData)
        }
        spindle_types::iproto::MP_EXT_ERROR => error_object(lua, data),
        decimal::EXT_DECIMAL => {
            let d = decimal::from_ext(data).ok_or_else(bad)?;
            lua.create_userdata(decimal::LuaDecimal(d))
                .map(Value::UserData)
        }
        _ => Err(bad()),
    }
}

/// A UUID or decimal object as the emitters print it.
pub fn ext_text(ud: &mlua::AnyUserData) -> Option<spindle_emit::Value> {
    if let Ok(u) = ud.borrow::<uuid::LuaUuid>() {
        return Some(spindle_emit::Value::Uuid(u.text()));
    }
    ud.borrow::<decimal::LuaDecimal>()
        .ok()
        .map(|d| spindle_emit::Value::Decimal(d.text()))
}

/// The shared metatable `{__serialize = kind}` of decoded arrays (`seq`) and maps (`map`).
pub fn kind_meta(lua: &Lua, kind: &str) -> mlua::Result<Table> {
    yaml::kind_meta(lua, kind)
}

/// A decoded integer beyond ±(10^14 - 1) (Tarantool's `DBL_INT_MAX`) as the 64-bit cdata
/// Tarantool pushes for it; `None` for integers a Lua number holds.
pub fn big_int(lua: &Lua, n: i128) -> mlua::Result<Option<Value>> {
    const DBL_INT_MAX: i128 = 99_999_999_999_999;
    if (-DBL_INT_MAX..=DBL_INT_MAX).contains(&n) {
        return Ok(None);
    }
    match (u64::try_from(n), i64::try_from(n)) {
        (Ok(u), _) => uint64(lua, u).map(Some),
        (_, Ok(i)) => int64(lua, i).map(Some),
        _ => Ok(None),
    }
}

/// An MP_ERROR value as a box.error object (its causes as `prev`); a malformed payload is
/// ER_INVALID_MSGPACK.
fn error_object(lua: &Lua, data: &[u8]) -> mlua::Result<Value> {
    let entries = spindle_proto::iproto::decode_error_stack(data)
        .map_err(|e| mlua::Error::external(crate::context::LuaBoxError(e)))?;
    let box_: mlua::Table = lua.globals().raw_get("box")?;
    let internal: mlua::Table = box_.raw_get("internal")?;
    let meta: mlua::Table = internal.raw_get("error_mt")?;
    let mut prev = Value::Nil;
    for entry in entries.iter().rev() {
        let t = lua.create_table()?;
        // Payload fields first, so that the stack's own keys win over a field of that name.
        if let Some(mut fields) = entry.fields {
            if let Value::Table(f) = crate::convert::decode(lua, &mut fields)? {
                for pair in f.pairs::<Value, Value>() {
                    let (k, v) = pair?;
                    t.raw_set(k, v)?;
                }
            }
        }
        t.raw_set("code", entry.code)?;
        t.raw_set("message", lua.create_string(entry.message)?)?;
        t.raw_set("type", lua.create_string(entry.kind)?)?;
        let frame = lua.create_table()?;
        frame.raw_set("file", lua.create_string(entry.file)?)?;
        frame.raw_set("line", entry.line)?;
        t.raw_set("trace", lua.create_sequence_from([frame])?)?;
        if entry.errno != 0 {
            t.raw_set("errno", entry.errno)?;
        }
        t.raw_set("prev", prev)?;
        t.set_metatable(Some(meta.clone()))?;
        prev = Value::Table(t);
    }
    Ok(prev)
}
