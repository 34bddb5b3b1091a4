//! Tuples in Lua: a userdata holding a reference to the stored tuple, so it stays valid after
//! the tuple is replaced, deleted or its space truncated (the memtx tuple is reference
//! counted, as Tarantool's is). Fields are 1-based: `t[1]`, `#t`, `t:totable()`,
//! `t:unpack()`, `t:bsize()`; `tostring(t)` is its YAML flow text.
//!
//! The userdata is made with the raw C API (`tuple_block`), not as an mlua userdata: a
//! statement's result tuple is the one value every `space:replace{...}` makes, and mlua's kind
//! costs a heap cell, an environment table and a checked finalizer more. The metatable made
//! here is shared by every tuple; its methods find the tuple through `tuple_block::of`.

use std::os::raw::c_int;

use mlua::{ffi, AnyUserData, Lua, MultiValue, Table, Value};
use spindle_memtx::tuple::Tuple;
use spindle_proto::mp;

use crate::convert;
use crate::tuple_block as block;
pub use crate::tuple_block::{is_tuple, of, push_raw};

/// The registry field of the methods written in Lua (control.lua adds them).
const METHODS: &str = "spindle.tuple_methods";

/// Makes the tuples' metatable: the finalizer is a raw C function, the rest mlua functions
/// that find the tuple through `of`.
pub fn install(lua: &Lua) -> mlua::Result<()> {
    let mt = lua.create_table()?;
    // SAFETY: `gc` follows the lua_CFunction contract (see there).
    mt.raw_set("__gc", unsafe { lua.create_c_function(block::gc)? })?;
    mt.raw_set("__index", lua.create_function(index)?)?;
    mt.raw_set(
        "__len",
        lua.create_function(|_, ud: AnyUserData| Ok(field_count(&tuple_arg(&ud)?.0)))?,
    )?;
    mt.raw_set(
        "__tostring",
        lua.create_function(|lua, ud: AnyUserData| {
            let value = convert::decode(lua, &mut tuple_arg(&ud)?.0.data())?;
            crate::text::flow(lua, &value)
        })?,
    )?;
    block::install(lua, mt)?;
    let methods = lua.create_table()?;
    methods.raw_set(
        "totable",
        lua.create_function(|lua, ud: AnyUserData| {
            convert::decode(lua, &mut tuple_arg(&ud)?.0.data())
        })?,
    )?;
    methods.raw_set(
        "unpack",
        lua.create_function(
            |lua, (ud, from, to): (AnyUserData, Option<i64>, Option<i64>)| {
                fields(lua, &tuple_arg(&ud)?.0, from.unwrap_or(1), to)
            },
        )?,
    )?;
    methods.raw_set(
        "bsize",
        lua.create_function(|_, ud: AnyUserData| Ok(tuple_arg(&ud)?.0.data().len()))?,
    )?;
    lua.set_named_registry_value("spindle.tuple_rust_methods", methods)?;
    lua.set_named_registry_value(METHODS, lua.create_table()?)
}

fn tuple_arg(ud: &AnyUserData) -> mlua::Result<(Tuple, Option<u32>)> {
    of(ud).ok_or_else(|| mlua::Error::runtime("Usage: tuple:method()"))
}

/// A tuple or nil, for Lua.
pub fn push(lua: &Lua, tuple: Option<Tuple>) -> mlua::Result<Value> {
    push_of(lua, tuple, None)
}

/// A tuple of space `space` (its field names are the space's) or nil, for Lua.
pub fn push_of(lua: &Lua, tuple: Option<Tuple>, space: Option<u32>) -> mlua::Result<Value> {
    let Some(tuple) = tuple else {
        return Ok(Value::Nil);
    };
    // SAFETY: `exec_raw` gives the closure a stack with room for the one value it pushes.
    unsafe { lua.exec_raw::<Value>((), |state| push_raw(state, tuple, space)) }
}

/// Tuples of space `space` as a Lua array.
pub fn push_all(lua: &Lua, tuples: Vec<Tuple>, space: u32) -> mlua::Result<Value> {
    // SAFETY: as in `push_of`; each tuple is stored in the table as soon as it is pushed.
    unsafe {
        lua.exec_raw::<Value>((), |state| {
            let n = c_int::try_from(tuples.len()).unwrap_or(c_int::MAX);
            ffi::lua_createtable(state, n, 0);
            for (i, t) in tuples.into_iter().enumerate() {
                push_raw(state, t, Some(space));
                ffi::lua_rawseti(state, -2, i as ffi::lua_Integer + 1);
            }
        })
    }
}

/// `box.internal.tuple_names(t)`: the field names of a tuple's space format, in field order
/// (nil for a tuple of no space).
pub fn names(_: &Lua, t: AnyUserData) -> mlua::Result<Option<Vec<String>>> {
    Ok(tuple_arg(&t)?.1.and_then(format_names))
}

fn format_names(space: u32) -> Option<Vec<String>> {
    let tx = crate::state::tx_if_booted()?;
    tx.with(|t| {
        let entry = t.db.catalog().get(space)?;
        Some(entry.def.format.iter().map(|f| f.name.clone()).collect())
    })
}

/// The 0-based number of the field called `name` in the format of `space` as the space is
/// now (2.6 also names a tuple by its space's current format).
fn field_no(space: Option<u32>, name: &str) -> Option<u32> {
    let tx = crate::state::tx_if_booted()?;
    let no = tx.with(|t| {
        let entry = t.db.catalog().get(space?)?;
        entry.def.format.iter().position(|f| f.name == name)
    })?;
    u32::try_from(no).ok()
}

fn field_count(t: &Tuple) -> usize {
    let mut cur = t.data();
    mp::read_array_len(&mut cur).map_or(0, |n| n as usize)
}

/// Field `i` (1-based) as a Lua value; nil past the end.
fn field(lua: &Lua, t: &Tuple, i: i64) -> mlua::Result<Value> {
    if i < 1 {
        return Ok(Value::Nil);
    }
    match t.field((i - 1) as u32) {
        Some(mut bytes) => convert::decode(lua, &mut bytes),
        None => Ok(Value::Nil),
    }
}

fn fields(lua: &Lua, t: &Tuple, from: i64, to: Option<i64>) -> mlua::Result<MultiValue> {
    let count = field_count(t) as i64;
    let to = to.unwrap_or(count).min(count);
    let mut out = Vec::new();
    for i in from.max(1)..=to {
        out.push(field(lua, t, i)?);
    }
    Ok(MultiValue::from_vec(out))
}

/// `t[key]`: a field by number; by name the methods written in Rust first, then a field of
/// the space format (as in 2.6, a field named like a Lua-written method hides it), then the
/// methods written in Lua (control.lua).
fn index(lua: &Lua, (ud, key): (AnyUserData, Value)) -> mlua::Result<Value> {
    let (t, space) = tuple_arg(&ud)?;
    match key {
        Value::Integer(i) => field(lua, &t, i),
        Value::Number(n) if n.fract() == 0.0 => field(lua, &t, n as i64),
        Value::String(name) => {
            let rust: Table = lua.named_registry_value("spindle.tuple_rust_methods")?;
            let method: Value = rust.raw_get(&name)?;
            if !method.is_nil() {
                return Ok(method);
            }
            if let Some(no) = field_no(space, &name.to_str()?) {
                return field(lua, &t, i64::from(no) + 1);
            }
            let extra: Table = lua.named_registry_value(METHODS)?;
            extra.raw_get(name)
        }
        _ => Ok(Value::Nil),
    }
}
