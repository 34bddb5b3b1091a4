//! Space triggers (`space:on_replace`, `space:before_replace`), the Rust half; the trigger
//! lists and the statement protocol are Lua (`triggers.lua`). A statement on a space with
//! triggers runs inside a transaction of its fiber (begun for it if none is open), so a
//! trigger's own DML joins it and an error rolls the whole statement back. Plain IPROTO DML
//! on such a space leaves the dispatcher for a procedure fiber (`flag` marks the space for
//! the route table; `dml_call` and `dml_reply` run it there). Nothing here parks.

use mlua::{AnyUserData, Function, Lua, MultiValue, Table, Value};
use spindle_box::{Dml, Reply};
use spindle_memtx::tuple::Tuple;
use spindle_proto::mp;
use spindle_tx::procs::DmlJob;
use spindle_types::{BoxError, BoxResult};

use crate::context::{current_user, from_mlua, lua_error};
use crate::convert;
use crate::tuple;

const TRIGGERS: &str = include_str!("triggers.lua");

pub fn install(lua: &Lua, internal: &Table) -> mlua::Result<()> {
    internal.set("trigger_apply", lua.create_function(apply)?)?;
    internal.set("trigger_key", lua.create_function(key)?)?;
    internal.set("trigger_same_key", lua.create_function(same_key)?)?;
    internal.set("trigger_flag", lua.create_function(flag)?)?;
    internal.set("txn_changes", lua.create_function(txn_changes)?)?;
    internal.set("trigger_conflict", lua.create_function(conflict)?)?;
    lua.load(TRIGGERS)
        .set_name("=triggers.lua")
        .call::<()>(internal.clone())
}

/// A tuple, key or operations argument as MessagePack: `raw` ones (from an IPROTO request)
/// already are; a Lua key may be a scalar.
fn arg_bytes(v: &Value, raw: bool, op: &str) -> mlua::Result<Vec<u8>> {
    let encode = |out: &mut Vec<u8>, v: &Value| {
        convert::encode(out, v).map_err(|e| mlua::Error::runtime(e.0))
    };
    let mut out = Vec::new();
    match v {
        Value::String(s) if raw => out.extend_from_slice(&s.as_bytes()),
        Value::Nil => {}
        Value::Table(_) | Value::UserData(_) => encode(&mut out, v)?,
        _ if op == "delete" || op == "update" => {
            mp::write_array_len(&mut out, 1);
            encode(&mut out, v)?;
        }
        _ => return Err(lua_error(BoxError::tuple_not_array())),
    }
    Ok(out)
}

type ApplyArgs = (String, u32, u32, u32, bool, Value, Value);

/// `internal.trigger_apply(op, space, index, index_base, raw, a, b)` → `result, old, new,
/// changed`: one statement joined to the fiber's open transaction (`triggers.lua` begins one
/// first), with the tuples it replaced and put if it changed anything.
fn apply(
    lua: &Lua,
    (op, space_id, index_id, index_base, raw, a, b): ApplyArgs,
) -> mlua::Result<MultiValue> {
    let user = current_user(lua);
    let (first, second) = (arg_bytes(&a, raw, &op)?, arg_bytes(&b, raw, &op)?);
    let statement = statement(&op, space_id, index_id, index_base, &first, &second)?;
    let Some(mut active) = crate::txn::take_active() else {
        return Err(mlua::Error::runtime(
            "a triggered statement needs a transaction",
        ));
    };
    if active.mvcc.is_some() {
        crate::txn::give_back(active);
        return Err(lua_error(BoxError::unsupported(
            "spindle",
            "writes to spaces with triggers inside an MVCC transaction yet",
        )));
    }
    let tx = crate::state::tx()?;
    let (result, change) = tx.with(|t| {
        let mark = active.txn.mark();
        let result = t.db.dml_as(user, &mut active.txn, statement);
        t.note_schema_change();
        let change = result.is_ok().then(|| active.txn.last_change(mark));
        (result, change.flatten())
    });
    crate::txn::give_back(active);
    let result = result.map_err(lua_error)?;
    let result = match statement {
        Dml::Upsert { .. } => Value::Nil,
        _ => tuple::push_of(lua, result, Some(space_id))?,
    };
    let changed = change.is_some();
    let (old, new) = change.unwrap_or((None, None));
    Ok(MultiValue::from_vec(vec![
        result,
        tuple::push_of(lua, old, Some(space_id))?,
        tuple::push_of(lua, new, Some(space_id))?,
        Value::Boolean(changed),
    ]))
}

fn statement<'a>(
    op: &str,
    space_id: u32,
    index_id: u32,
    index_base: u32,
    first: &'a [u8],
    second: &'a [u8],
) -> mlua::Result<Dml<'a>> {
    Ok(match op {
        "insert" => Dml::Insert {
            space_id,
            tuple: first,
        },
        "replace" => Dml::Replace {
            space_id,
            tuple: first,
        },
        "delete" => Dml::Delete {
            space_id,
            index_id,
            key: first,
        },
        "update" => Dml::Update {
            space_id,
            index_id,
            key: first,
            ops: second,
            index_base,
        },
        "upsert" => Dml::Upsert {
            space_id,
            tuple: first,
            ops: second,
            index_base,
        },
        _ => return Err(mlua::Error::runtime(format!("unknown operation {op}"))),
    })
}

/// The primary key of a tuple of `space_id`, as MessagePack; None if the space or its
/// primary index is gone.
fn primary_key(space_id: u32, t: &AnyUserData) -> mlua::Result<Option<Vec<u8>>> {
    let Some((tuple, _)) = tuple::of(t) else {
        return Err(mlua::Error::runtime("a tuple expected"));
    };
    Ok(crate::state::tx()?.with(|tx| {
        let entry = tx.db.catalog().get(space_id)?;
        let pk = entry.space.index(0)?;
        Some(pk.key_def().extract_key(&tuple))
    }))
}

/// `internal.trigger_conflict(space, raw, tuple)` → `old, new`: an INSERT that found its key
/// taken, as its before_replace triggers see it (2.6 runs them before the engine refuses).
fn conflict(lua: &Lua, (space_id, raw, v): (u32, bool, Value)) -> mlua::Result<(Value, Value)> {
    let new = Tuple::from_vec(arg_bytes(&v, raw, "insert")?).map_err(lua_error)?;
    let old = crate::state::tx()?.with(|t| {
        let pk = t.db.catalog().get(space_id)?.space.index(0)?;
        pk.get(&pk.key_def().extract_key(&new)).ok().flatten()
    });
    let space = Some(space_id);
    Ok((
        tuple::push_of(lua, old, space)?,
        tuple::push_of(lua, Some(new), space)?,
    ))
}

/// `internal.trigger_key(space, tuple)`: its primary key as raw MessagePack, for a delete.
fn key(lua: &Lua, (space_id, t): (u32, AnyUserData)) -> mlua::Result<Value> {
    match primary_key(space_id, &t)? {
        Some(k) => Ok(Value::String(lua.create_string(k)?)),
        None => Ok(Value::Nil),
    }
}

/// `internal.trigger_same_key(space, a, b)`: the two tuples have the same primary key.
fn same_key(_: &Lua, (space_id, a, b): (u32, AnyUserData, AnyUserData)) -> mlua::Result<bool> {
    Ok(primary_key(space_id, &a)? == primary_key(space_id, &b)?)
}

/// `internal.trigger_flag(space, on)`: whether IPROTO DML on the space must run its triggers.
fn flag(_: &Lua, (space_id, on): (u32, bool)) -> mlua::Result<()> {
    let Some(tx) = crate::state::tx_if_booted() else {
        return Ok(());
    };
    tx.with(|t| {
        if on {
            t.procs.triggered.insert(space_id);
        } else {
            t.procs.triggered.remove(&space_id);
        }
    });
    Ok(())
}

/// `internal.txn_changes()`: the changes of the fiber's open transaction, oldest first, as
/// `{old = t, new = t, space = id}` (for `box.on_commit` and `box.on_rollback` triggers).
fn txn_changes(lua: &Lua, (): ()) -> mlua::Result<Table> {
    let list = lua.create_table()?;
    let Some(active) = crate::txn::take_active() else {
        return Ok(list);
    };
    let changes: Vec<_> = active
        .txn
        .undo_records()
        .iter()
        .map(|u| (u.space_id(), u.tuples()))
        .collect();
    crate::txn::give_back(active);
    for (i, (space_id, (old, new))) in changes.into_iter().enumerate() {
        let change = lua.create_table()?;
        change.set("old", tuple::push_of(lua, old, Some(space_id))?)?;
        change.set("new", tuple::push_of(lua, new, Some(space_id))?)?;
        change.set("space", space_id)?;
        list.raw_set(i + 1, change)?;
    }
    Ok(list)
}

/// The Lua function an IPROTO DML request runs (`internal.iproto_dml`) and its arguments.
pub fn dml_call(lua: &Lua, job: &DmlJob) -> BoxResult<(Function, MultiValue)> {
    let build = || -> mlua::Result<(Function, MultiValue)> {
        let internal = crate::state::internal(lua)?;
        let f: Function = internal.get("iproto_dml")?;
        let args = MultiValue::from_vec(vec![
            Value::String(lua.create_string(job.op)?),
            Value::Integer(i64::from(job.space_id)),
            Value::Integer(i64::from(job.index_id)),
            Value::Integer(i64::from(job.index_base)),
            Value::String(lua.create_string(&job.first)?),
            Value::String(lua.create_string(&job.second)?),
        ]);
        Ok((f, args))
    };
    build().map_err(from_mlua)
}

/// The `pcall` results of `internal.iproto_dml` as the reply the plain path sends: the
/// statement's tuple, if any; `error_value` converts a Lua error (the runtime's rules).
pub fn dml_reply(results: MultiValue, error_value: fn(&Value) -> BoxError) -> BoxResult<Reply> {
    let mut values = results.into_iter();
    match values.next() {
        Some(Value::Boolean(true)) => {
            let tuples = match values.next() {
                Some(Value::UserData(ud)) => tuple::of(&ud).map(|(t, _)| t).into_iter().collect(),
                _ => Vec::new(),
            };
            Ok(Reply::Tuples(tuples))
        }
        Some(Value::Boolean(false)) => Err(error_value(&values.next().unwrap_or(Value::Nil))),
        _ => Err(BoxError::proc_lua("the statement did not return a status")),
    }
}
