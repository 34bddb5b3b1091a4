//! The Rust side of the `box` API: functions the Lua prelude (`box.lua`) calls as
//! `box.internal.*`. Every one runs on the TX thread inside a procedure fiber, borrows the TX
//! state for one short `tx.with` and never parks — except `wait`, a raw C function, which parks
//! the fiber until the WAL has answered a commit (an mlua callback must never park: mlua keeps
//! a "current state" pointer that interleaved parks would corrupt).

use std::os::raw::c_int;
use std::panic::AssertUnwindSafe;

use mlua::{ffi, Lua, Value};
use spindle_box::catalog::Engine;
use spindle_box::Dml;
use spindle_proto::mp;
use spindle_tx::commit::wait_commit;
use spindle_tx::TxRef;
use spindle_types::iproto::IteratorType;
use spindle_types::BoxError;

use crate::context::{current_user, from_mlua, lua_error};
use crate::convert;
use crate::state::Unlimited;
use crate::tuple;

pub fn install(lua: &Lua) -> mlua::Result<()> {
    let internal = lua.create_table()?;
    internal.set("space", lua.create_function(space)?)?;
    internal.set("schema_version", lua.create_function(schema_version)?)?;
    internal.set("select", lua.create_function(select)?)?;
    internal.set("len", lua.create_function(len)?)?;
    internal.set("dml", lua.create_function(dml)?)?;
    internal.set("unpack_error", lua.create_function(unpack_error)?)?;
    internal.set("tuple_names", lua.create_function(tuple::names)?)?;
    // SAFETY: `wait` follows the lua_CFunction contract: it reads its one argument with the
    // C API, pushes its results and returns their count, and never lets a panic unwind into
    // LuaJIT (see `wait`).
    internal.set("wait", unsafe { lua.create_c_function(wait)? })?;
    // SAFETY: as for `wait`.
    internal.set("wait_snapshot", unsafe {
        lua.create_c_function(wait_snapshot)?
    })?;
    lua.set_named_registry_value("spindle.internal", internal)?;
    Ok(())
}

fn tx() -> mlua::Result<TxRef> {
    crate::state::tx()
}

/// Runs `f` with the TX state; a BoxError becomes a Lua error carrying it.
fn with_tx<R>(f: impl FnOnce(&mut spindle_tx::Tx) -> Result<R, BoxError>) -> mlua::Result<R> {
    tx()?.with(f).map_err(lua_error)
}

/// `box.internal.space(id or name)`: the space's description for the prelude, or nil.
fn space(lua: &Lua, key: Value) -> mlua::Result<Value> {
    let found = tx()?.with(|t| {
        let catalog = t.db.catalog();
        let id = match &key {
            Value::Integer(i) => u32::try_from(*i).ok(),
            Value::Number(n) => Some(*n as u32),
            Value::String(s) => catalog.id_by_name(&s.to_string_lossy()),
            _ => None,
        }?;
        let entry = catalog.get(id)?;
        let indexes: Vec<(u32, String, &'static str, bool)> = entry
            .space
            .indexes()
            .iter()
            .map(|i| {
                (
                    i.id(),
                    i.name().to_string(),
                    i.def().kind.name(),
                    i.def().unique,
                )
            })
            .collect();
        let engine = match entry.def.engine {
            Engine::Memtx => "memtx",
            Engine::Sysview => "sysview",
            Engine::Blackhole => "blackhole",
            Engine::Service => "service",
        };
        Some((
            entry.def.id,
            entry.def.name.clone(),
            engine,
            entry.def.field_count,
            indexes,
        ))
    });
    let Some((id, name, engine, field_count, indexes)) = found else {
        return Ok(Value::Nil);
    };
    let t = lua.create_table()?;
    t.set("id", id)?;
    t.set("name", name)?;
    t.set("engine", engine)?;
    t.set("field_count", field_count)?;
    let list = lua.create_table()?;
    for (iid, iname, kind, unique) in indexes {
        let index = lua.create_table()?;
        index.set("id", iid)?;
        index.set("name", iname)?;
        index.set("type", kind)?;
        index.set("unique", unique)?;
        list.raw_set(iid + 1, index)?;
    }
    t.set("indexes", list)?;
    Ok(Value::Table(t))
}

fn schema_version(_: &Lua, (): ()) -> mlua::Result<u32> {
    Ok(tx()?.with(|t| t.db.schema_version()))
}

/// A key argument as MessagePack: nil is `[]`, a scalar `[scalar]`, a table itself.
fn key_bytes(key: &Value) -> mlua::Result<Vec<u8>> {
    let mut out = Vec::new();
    match key {
        Value::Nil => mp::write_array_len(&mut out, 0),
        Value::Table(_) => encode(&mut out, key)?,
        Value::UserData(_) => encode(&mut out, key)?,
        scalar => {
            mp::write_array_len(&mut out, 1);
            encode(&mut out, scalar)?;
        }
    }
    Ok(out)
}

fn encode(out: &mut Vec<u8>, v: &Value) -> mlua::Result<()> {
    convert::encode(out, v).map_err(|e| mlua::Error::runtime(e.0))
}

/// An iterator given by number or by name (`'GE'`, `box.index.GE`).
fn iterator(v: &Value) -> mlua::Result<u32> {
    let code = match v {
        Value::Nil => Some(0),
        Value::Integer(i) => u32::try_from(*i).ok(),
        Value::Number(n) => Some(*n as u32),
        Value::String(s) => {
            let name = s.to_string_lossy().to_uppercase();
            (0..12u32).find(|&c| {
                IteratorType::from_code(u64::from(c)).is_some_and(|it| it.name() == name)
            })
        }
        _ => None,
    };
    code.ok_or_else(|| lua_error(BoxError::illegal_params("Invalid iterator type")))
}

/// `box.internal.select(space, index, iterator, key, offset, limit)` → array of tuples.
fn select(
    lua: &Lua,
    (space_id, index_id, it, key, offset, limit): (
        u32,
        u32,
        Value,
        Value,
        Option<u32>,
        Option<u32>,
    ),
) -> mlua::Result<Value> {
    let user = current_user(lua);
    let key = key_bytes(&key)?;
    let it = iterator(&it)?;
    let (offset, limit) = (offset.unwrap_or(0), limit.unwrap_or(u32::MAX));
    let packet = || crate::txn_mvcc::select_packet(space_id, index_id, it, &key, offset, limit);
    let tuples = match in_mvcc_txn(user, packet)? {
        Some(tuples) => tuples,
        None => with_tx(|t| {
            t.db.select_as(user, space_id, index_id, it, &key, offset, limit)
        })?,
    };
    tuple::push_all(lua, tuples, space_id)
}

/// Runs a SELECT in the fiber's MVCC transaction, if it has one: the tuples its view holds.
fn in_mvcc_txn(
    user: u32,
    packet: impl FnOnce() -> Vec<u8>,
) -> mlua::Result<Option<Vec<spindle_memtx::tuple::Tuple>>> {
    let Some(mut active) = crate::txn::take_active() else {
        return Ok(None);
    };
    let result = active.mvcc.as_mut().map(|mvcc| {
        let packet = packet();
        tx().map(|tx| tx.with(|t| crate::txn_mvcc::statement(t, mvcc, user, &packet)))
    });
    crate::txn::give_back(active);
    match result {
        None => Ok(None),
        Some(reply) => Ok(Some(crate::txn_mvcc::tuples(reply?.map_err(lua_error)?))),
    }
}

/// `box.internal.len(space)`: in an MVCC transaction, what its view holds (a full scan, read
/// as such).
fn len(lua: &Lua, space_id: u32) -> mlua::Result<usize> {
    let user = current_user(lua);
    let all = || {
        let mut key = Vec::new();
        mp::write_array_len(&mut key, 0);
        let it = 2; // ALL
        crate::txn_mvcc::select_packet(space_id, 0, it, &key, 0, u32::MAX)
    };
    if let Some(tuples) = in_mvcc_txn(user, all)? {
        return Ok(tuples.len());
    }
    with_tx(|t| Ok(t.db.space(space_id)?.space.len()))
}

/// `box.internal.dml(op, space, ...)`: applies one statement (`op`: 1 insert, 2 replace,
/// 3 delete, 4 update, 5 upsert, as box.lua numbers them) as its own transaction and queues
/// it for the WAL. Returns the statement's tuple and, if something must be waited for, the
/// commit's sequence number (for `wait`).
fn dml(
    lua: &Lua,
    (op, space_id, a, b, c): (u8, u32, Value, Value, Value),
) -> mlua::Result<(Value, Value)> {
    let _unlimited = Unlimited::new(lua);
    let user = current_user(lua);
    let is_key = matches!(op, 3 | 4);
    let (first, second) = (arg_bytes(&a, is_key)?, arg_bytes(&b, is_key)?);
    let index_id = match &c {
        Value::Integer(i) => u32::try_from(*i).unwrap_or(u32::MAX),
        Value::Number(n) => *n as u32,
        _ => 0,
    };
    let statement = crate::fast::dml_of(i64::from(op), space_id, index_id, &first, &second)
        .ok_or_else(|| mlua::Error::runtime(format!("unknown operation {op}")))?;
    let tx = tx()?;
    let (result, seq) = crate::fast::apply_queued(tx, user, statement).map_err(lua_error)?;
    let result = match statement {
        Dml::Upsert { .. } => Value::Nil,
        _ => tuple::push_of(lua, result, Some(space_id))?,
    };
    Ok((result, seq.map_or(Value::Nil, |s| Value::Number(s as f64))))
}

/// A tuple, key or operations argument as MessagePack; a key may be a scalar.
fn arg_bytes(v: &Value, is_key: bool) -> mlua::Result<Vec<u8>> {
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::Table(_) | Value::UserData(_) => {
            let mut out = Vec::new();
            encode(&mut out, v)?;
            Ok(out)
        }
        _ if is_key => key_bytes(v),
        _ => Err(lua_error(BoxError::tuple_not_array())),
    }
}

/// `box.internal.wait(seq)` → `true`, or `false, code, message`: parks the fiber until the
/// commit `seq` is durable or rolled back.
unsafe extern "C-unwind" fn wait(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: reading argument 1 of the running C function is always valid.
    let seq = unsafe { ffi::lua_tonumber(l, 1) } as u64;
    let outcome =
        std::panic::catch_unwind(AssertUnwindSafe(|| match crate::state::tx_if_booted() {
            Some(tx) => wait_commit(tx, seq),
            None => Err(BoxError::unknown()),
        }));
    let result = match outcome {
        Ok(result) => result,
        Err(_) => Err(BoxError::proc_lua(
            "fiber cancelled while waiting for a commit",
        )),
    };
    // SAFETY: pushing values onto the running C function's own stack; LuaJIT guarantees
    // LUA_MINSTACK (20) free slots to a C function, and we push at most 3.
    unsafe {
        match result {
            Ok(()) => {
                ffi::lua_pushboolean(l, 1);
                1
            }
            Err(e) => {
                ffi::lua_pushboolean(l, 0);
                ffi::lua_pushnumber(l, f64::from(e.code));
                ffi::lua_pushlstring(l, e.message.as_ptr().cast(), e.message.len());
                3
            }
        }
    }
}

/// `box.internal.wait_snapshot(done)` → `true`, or `false, code, message`: parks the fiber
/// until more than `done` checkpoints have finished; the outcome of the newest.
unsafe extern "C-unwind" fn wait_snapshot(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: reading argument 1 of the running C function is always valid.
    let seen = unsafe { ffi::lua_tonumber(l, 1) } as u64;
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let tx = crate::state::tx_if_booted()?;
        loop {
            let done = tx.with(|t| {
                if t.checkpoints.done > seen {
                    return Some(t.checkpoints.last_error.clone());
                }
                t.checkpoints.waiters.push(spindle_fiber::current_fiber());
                None
            });
            if let Some(result) = done {
                return Some(result);
            }
            spindle_fiber::park();
        }
    }));
    let error = match outcome {
        Ok(Some(None)) => None,
        Ok(Some(Some(e))) => Some(e),
        Ok(None) | Err(_) => Some("the checkpoint was not finished".to_string()),
    };
    // SAFETY: pushing at most 3 values onto the running C function's stack (LUA_MINSTACK 20).
    unsafe {
        match error {
            None => {
                ffi::lua_pushboolean(l, 1);
                1
            }
            Some(message) => {
                ffi::lua_pushboolean(l, 0);
                ffi::lua_pushnumber(l, f64::from(spindle_types::error::code::ER_SYSTEM));
                ffi::lua_pushlstring(l, message.as_ptr().cast(), message.len());
                3
            }
        }
    }
}

/// An access error's object type, object name and access type (all nil for other errors).
type AccessParts = (Option<String>, Option<String>, Option<String>);

/// `box.internal.unpack_error(e)`: code, message, type and the access fields of an error a
/// callback raised, for the prelude to raise as a box.error object.
fn unpack_error(_: &Lua, e: Value) -> mlua::Result<(u32, String, &'static str, AccessParts)> {
    let e = match e {
        Value::Error(e) => from_mlua(*e),
        other => BoxError::proc_lua(&other.to_string()?),
    };
    let access = match e.access {
        Some(a) => (
            Some(a.object_type),
            Some(a.object_name),
            Some(a.access_type),
        ),
        None => (None, None, None),
    };
    Ok((e.code, e.message, e.kind.as_str(), access))
}
