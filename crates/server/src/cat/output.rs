//! What the serializers make of a Lua value (`luaL_checkfield`), and the JSON (lua-cjson)
//! and Lua (`tarantoolctl cat --format lua`) encoders.

use std::collections::HashMap;

use super::lua::{fmt_g14, num_field, LTable, LVal, NumField};
use super::record::{field, space_id};

/// A hole in a sparse array.
static NIL: LVal = LVal::Nil;

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
    Array(Vec<&'a LVal>, bool),
    Map(&'a [(LVal, LVal)], bool),
}

/// `luaL_checkfield` with the default serializer options (`encode_sparse_ratio = 2`,
/// `encode_sparse_safe = 10`, metatables honoured).
pub fn to_field(v: &LVal) -> Field<'_> {
    match v {
        LVal::Nil | LVal::Null => Field::Nil,
        LVal::Bool(b) => Field::Bool(*b),
        LVal::Num(n) => match num_field(*n) {
            NumField::Uint(u) => Field::Uint(u),
            NumField::Int(i) => Field::Int(i),
            NumField::Double(d) => Field::Double(d),
        },
        LVal::U64(u) => Field::Uint(*u),
        LVal::I64(i) => {
            if *i >= 0 {
                Field::Uint(*i as u64)
            } else {
                Field::Int(*i)
            }
        }
        LVal::Str(s) => Field::Str(s),
        LVal::Decimal(s) | LVal::Uuid(s) => Field::Ext(s),
        LVal::Ext(_, data) => Field::UnknownExt(data),
        LVal::Table(t) => match t.as_ref() {
            LTable::Seq(items) => Field::Array(items.iter().collect(), true),
            LTable::Map(entries) => Field::Map(entries, true),
            LTable::Plain(entries) => inspect_plain(entries),
        },
    }
}

/// `lua_field_inspect_table` for a table without a `__serialize` hint.
fn inspect_plain(entries: &[(LVal, LVal)]) -> Field<'_> {
    let mut size: u32 = 0;
    let mut max: u32 = 0;
    for (k, _) in entries {
        size += 1;
        let LVal::Num(k) = k else {
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
    let by_index: HashMap<u32, &LVal> = entries
        .iter()
        .filter_map(|(k, v)| match k {
            LVal::Num(n) => Some((*n as u32, v)),
            _ => None,
        })
        .collect();
    let items = (1..=max)
        .map(|i| by_index.get(&i).copied().unwrap_or(&NIL))
        .collect();
    Field::Array(items, false)
}

// ---------------------------------------------------------------------------------------
// JSON (lua-cjson as bundled with Tarantool 2.6)

fn json_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &c in s {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0x00..=0x1f | 0x7f => out.extend_from_slice(format!("\\u{c:04x}").as_bytes()),
            _ => out.push(c),
        }
    }
    out.push(b'"');
}

fn json_number(out: &mut Vec<u8>, d: f64) {
    if d.is_nan() {
        out.extend_from_slice(b"nan");
    } else {
        out.extend_from_slice(fmt_g14(d).as_bytes());
    }
}

fn json_value(out: &mut Vec<u8>, v: &LVal) {
    match to_field(v) {
        Field::Nil => out.extend_from_slice(b"null"),
        Field::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Field::Uint(u) => out.extend_from_slice(u.to_string().as_bytes()),
        Field::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Field::Double(d) => json_number(out, d),
        Field::Str(s) => json_string(out, s),
        Field::Ext(s) => json_string(out, s.as_bytes()),
        // cjson cannot encode it either; print the payload bytes as a string.
        Field::UnknownExt(data) => json_string(out, data),
        Field::Array(items, _) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_value(out, item);
            }
            out.push(b']');
        }
        Field::Map(entries, _) => {
            out.push(b'{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match to_field(k) {
                    Field::Uint(u) => json_string(out, u.to_string().as_bytes()),
                    Field::Int(n) => json_string(out, n.to_string().as_bytes()),
                    Field::Str(s) => json_string(out, s),
                    // cjson refuses other keys ("table key must be a number or string").
                    _ => {
                        let mut key = Vec::new();
                        json_value(&mut key, k);
                        json_string(out, &key);
                    }
                }
                out.push(b':');
                json_value(out, v);
            }
            out.push(b'}');
        }
    }
}

/// `print(json.encode(record))`.
pub fn json_record(record: &LVal) -> Vec<u8> {
    let mut out = Vec::new();
    json_value(&mut out, record);
    out.push(b'\n');
    out
}

// ---------------------------------------------------------------------------------------
// Lua (`cat_lua_cb`)

/// Lua's `tostring` of a scalar.
fn lua_tostring(v: &LVal) -> String {
    match v {
        LVal::Nil => "nil".into(),
        LVal::Null => "cdata<void *>: NULL".into(),
        LVal::Bool(b) => b.to_string(),
        LVal::Num(n) => {
            if n.is_nan() {
                "nan".into()
            } else {
                fmt_g14(*n)
            }
        }
        LVal::U64(u) => format!("{u}ULL"),
        LVal::I64(i) => format!("{i}LL"),
        LVal::Str(s) => String::from_utf8_lossy(s).into_owned(),
        LVal::Decimal(s) | LVal::Uuid(s) => s.clone(),
        LVal::Ext(t, _) => format!("<msgpack extension {t}>"),
        LVal::Table(_) => "table".into(),
    }
}

fn lua_value(out: &mut Vec<u8>, v: &LVal) {
    match v {
        LVal::Str(s) => {
            out.push(b'\'');
            for b in s {
                out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
            }
            out.push(b'\'');
        }
        LVal::Table(_) => lua_table(out, v),
        other => out.extend_from_slice(lua_tostring(other).as_bytes()),
    }
}

/// `write_lua_table`: `{[k] = v, ...}` in `pairs()` order.
fn lua_table(out: &mut Vec<u8>, v: &LVal) {
    let LVal::Table(t) = v else {
        lua_value(out, v);
        return;
    };
    out.push(b'{');
    let pair = |out: &mut Vec<u8>, first: bool, k: &LVal, val: &LVal| {
        if !first {
            out.extend_from_slice(b", ");
        }
        out.push(b'[');
        lua_value(out, k);
        out.extend_from_slice(b"] = ");
        lua_value(out, val);
    };
    match t.as_ref() {
        LTable::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                pair(out, i == 0, &LVal::Num((i + 1) as f64), item);
            }
        }
        LTable::Map(entries) | LTable::Plain(entries) => {
            for (i, (k, val)) in entries.iter().enumerate() {
                pair(out, i == 0, k, val);
            }
        }
    }
    out.push(b'}');
}

/// `cat_lua_cb`: `box.space[N]:op(...)`, or nothing for rows that are not DML on a space.
pub fn lua_record(record: &LVal) -> Vec<u8> {
    let mut out = Vec::new();
    let typ = field(record, "HEADER").and_then(|h| field(h, "type"));
    let Some(LVal::Str(typ)) = typ else {
        return out;
    };
    let body = field(record, "BODY");
    let sid = space_id(record);
    let (Some(body), Some(sid)) = (body, sid) else {
        return out;
    };
    if typ.as_slice() == b"NOP" {
        return out;
    }
    let op = String::from_utf8_lossy(typ).to_lowercase();
    let sid = match sid {
        LVal::Num(n) if n.fract() == 0.0 => format!("{}", *n as i64),
        other => lua_tostring(other),
    };
    out.extend_from_slice(format!("box.space[{sid}]:{op}(").as_bytes());
    let arg = |name: &str| field(body, name).unwrap_or(&NIL);
    match op.as_str() {
        "insert" | "replace" => lua_table(&mut out, arg("tuple")),
        "delete" => lua_table(&mut out, arg("key")),
        "update" => {
            lua_table(&mut out, arg("key"));
            out.extend_from_slice(b", ");
            lua_table(&mut out, arg("tuple"));
        }
        "upsert" => {
            lua_table(&mut out, arg("tuple"));
            out.extend_from_slice(b", ");
            lua_table(&mut out, arg("operations"));
        }
        _ => {}
    }
    out.extend_from_slice(b")\n");
    out
}
