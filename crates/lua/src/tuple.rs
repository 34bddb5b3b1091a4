//! Tuples in Lua: a userdata holding a reference to the stored tuple, so it stays valid after
//! the tuple is replaced, deleted or its space truncated (the memtx tuple is reference
//! counted, as Tarantool's is). Fields are 1-based: `t[1]`, `#t`, `t:totable()`,
//! `t:unpack()`, `t:bsize()`; `tostring(t)` is its YAML flow text.

use mlua::{IntoLuaMulti, Lua, MetaMethod, MultiValue, UserData, UserDataMethods, Value};
use spindle_memtx::tuple::Tuple;
use spindle_proto::mp;

use crate::convert::{self, LuaTuple};

/// `box.internal.tuple_names(t)`: the field names of a tuple's space format, in field order
/// (nil for a tuple of no space).
pub fn names(_: &Lua, t: mlua::AnyUserData) -> mlua::Result<Option<Vec<String>>> {
    let space = t.borrow::<LuaTuple>()?.1;
    Ok(space.and_then(format_names))
}

fn format_names(space: u32) -> Option<Vec<String>> {
    let tx = crate::state::tx_if_booted()?;
    tx.with(|t| {
        let entry = t.db.catalog().get(space)?;
        Some(entry.def.format.iter().map(|f| f.name.clone()).collect())
    })
}

impl LuaTuple {
    /// The 0-based number of the field called `name` in the format of the tuple's space, as
    /// the space is now (2.6 also names a tuple by its space's current format).
    fn field_no(&self, name: &str) -> Option<u32> {
        let space = self.1?;
        let tx = crate::state::tx_if_booted()?;
        let no = tx.with(|t| {
            let entry = t.db.catalog().get(space)?;
            entry.def.format.iter().position(|f| f.name == name)
        })?;
        u32::try_from(no).ok()
    }

    fn field_count(&self) -> usize {
        let mut cur = self.0.data();
        mp::read_array_len(&mut cur).map_or(0, |n| n as usize)
    }

    /// Field `i` (1-based) as a Lua value; nil past the end.
    fn field(&self, lua: &Lua, i: i64) -> mlua::Result<Value> {
        if i < 1 {
            return Ok(Value::Nil);
        }
        match self.0.field((i - 1) as u32) {
            Some(mut bytes) => convert::decode(lua, &mut bytes),
            None => Ok(Value::Nil),
        }
    }

    fn fields(&self, lua: &Lua, from: i64, to: Option<i64>) -> mlua::Result<MultiValue> {
        let count = self.field_count() as i64;
        let to = to.unwrap_or(count).min(count);
        let mut out = Vec::new();
        for i in from.max(1)..=to {
            out.push(self.field(lua, i)?);
        }
        Ok(MultiValue::from_vec(out))
    }
}

impl UserData for LuaTuple {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::Index, |lua, t, key: Value| match key {
            Value::Integer(i) => t.field(lua, i),
            Value::Number(n) if n.fract() == 0.0 => t.field(lua, n as i64),
            // A field of the space format by name first (as in 2.6, a field named like a
            // method hides it), then the methods written in Lua (control.lua).
            Value::String(name) => {
                if let Some(no) = t.field_no(&name.to_str()?) {
                    return t.field(lua, i64::from(no) + 1);
                }
                let extra: mlua::Table = lua.named_registry_value("spindle.tuple_methods")?;
                extra.raw_get(name)
            }
            _ => Ok(Value::Nil),
        });
        methods.add_meta_method(MetaMethod::Len, |_, t, ()| Ok(t.field_count()));
        methods.add_meta_method(MetaMethod::ToString, |lua, t, ()| {
            let value = convert::decode(lua, &mut t.0.data())?;
            crate::text::flow(lua, &value)
        });
        methods.add_method("totable", |lua, t, ()| {
            convert::decode(lua, &mut t.0.data())
        });
        methods.add_method(
            "unpack",
            |lua, t, (from, to): (Option<i64>, Option<i64>)| t.fields(lua, from.unwrap_or(1), to),
        );
        methods.add_method("bsize", |_, t, ()| Ok(t.0.data().len()));
        methods.add_method("len", |_, t, ()| Ok(t.field_count()));
    }
}

/// A tuple or nil, for Lua.
pub fn push(lua: &Lua, tuple: Option<Tuple>) -> mlua::Result<Value> {
    push_of(lua, tuple, None)
}

/// A tuple of space `space` (its field names are the space's) or nil, for Lua.
pub fn push_of(lua: &Lua, tuple: Option<Tuple>, space: Option<u32>) -> mlua::Result<Value> {
    match tuple {
        Some(t) => Ok(Value::UserData(lua.create_userdata(LuaTuple(t, space))?)),
        None => Ok(Value::Nil),
    }
}

/// Tuples of space `space` as a Lua array.
pub fn push_all(lua: &Lua, tuples: Vec<Tuple>, space: u32) -> mlua::Result<Value> {
    let table = lua.create_table_with_capacity(tuples.len(), 0)?;
    for (i, t) in tuples.into_iter().enumerate() {
        table.raw_set(i + 1, LuaTuple(t, Some(space)))?;
    }
    table
        .into_lua_multi(lua)
        .map(|mut m| m.pop_front().unwrap_or(Value::Nil))
}
