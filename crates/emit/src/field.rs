//! What the serializers make of a Lua value: `luaL_tofield`/`luaL_checkfield` of
//! Tarantool's Lua glue with the default serializer options, shared by YAML and JSON.

use std::collections::HashMap;

use crate::value::{Table, Value};

/// A hole in a sparse array.
static NIL: Value = Value::Nil;

/// What `luaL_tofield` makes of a Lua number.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NumField {
    Uint(u64),
    Int(i64),
    Double(f64),
}

/// `luaL_tofield` for LUA_TNUMBER: integral values in the 64-bit ranges are integers.
pub fn num_field(num: f64) -> NumField {
    const TWO_64: f64 = 18_446_744_073_709_551_616.0;
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if num.is_finite() && num.fract() != 0.0 {
        NumField::Double(num)
    } else if (0.0..TWO_64).contains(&num) {
        NumField::Uint(num as u64)
    } else if (-TWO_63..TWO_63).contains(&num) {
        NumField::Int(num as i64)
    } else {
        NumField::Double(num)
    }
}

/// `struct luaL_field` as the YAML and JSON encoders see it.
pub enum Field<'a> {
    Nil,
    Bool(bool),
    Uint(u64),
    Int(i64),
    Double(f64),
    Str(&'a [u8]),
    /// Decimal or UUID, in text form.
    Ext(&'a str),
    /// An extension Tarantool cannot decode.
    UnknownExt(&'a [u8]),
    /// Items `1..=n` (`nil` for holes) and whether YAML prints it in flow style.
    Array(Vec<&'a Value>, bool),
    Map(&'a [(Value, Value)], bool),
}

/// `luaL_checkfield` with the default serializer options (`encode_sparse_ratio = 2`,
/// `encode_sparse_safe = 10`, metatables honoured).
pub fn to_field(v: &Value) -> Field<'_> {
    match v {
        Value::Nil | Value::Null => Field::Nil,
        Value::Bool(b) => Field::Bool(*b),
        Value::Num(n) => match num_field(*n) {
            NumField::Uint(u) => Field::Uint(u),
            NumField::Int(i) => Field::Int(i),
            NumField::Double(d) => Field::Double(d),
        },
        Value::U64(u) => Field::Uint(*u),
        Value::I64(i) => {
            if *i >= 0 {
                Field::Uint(*i as u64)
            } else {
                Field::Int(*i)
            }
        }
        Value::Str(s) => Field::Str(s),
        Value::Decimal(s) | Value::Uuid(s) => Field::Ext(s),
        Value::Ext(_, data) => Field::UnknownExt(data),
        Value::Table(t) => match t.as_ref() {
            Table::Seq(items) => Field::Array(items.iter().collect(), true),
            Table::Map(entries) => Field::Map(entries, true),
            Table::Plain(entries) => inspect_plain(entries),
        },
    }
}

/// `lua_field_inspect_table` for a table without a `__serialize` hint.
fn inspect_plain(entries: &[(Value, Value)]) -> Field<'_> {
    let mut size: u32 = 0;
    let mut max: u32 = 0;
    for (k, _) in entries {
        size += 1;
        let Value::Num(k) = k else {
            return Field::Map(entries, false);
        };
        if *k != f64::from(size) && (*k < 1.0 || k.floor() != *k) {
            return Field::Map(entries, false);
        }
        let k = *k as u32;
        if k > max {
            max = k;
        }
    }
    if u64::from(max) > u64::from(size) * 2 && max > 10 {
        return Field::Map(entries, false);
    }
    let by_index: HashMap<u32, &Value> = entries
        .iter()
        .filter_map(|(k, v)| match k {
            Value::Num(n) => Some((*n as u32, v)),
            _ => None,
        })
        .collect();
    let items = (1..=max)
        .map(|i| by_index.get(&i).copied().unwrap_or(&NIL))
        .collect();
    Field::Array(items, false)
}
