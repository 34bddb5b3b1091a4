//! One record as `tarantoolctl cat` prints it in each format: YAML and JSON through
//! `spindle_emit`, and the Lua form (`cat_lua_cb`) here.

use spindle_emit::{fmt_g14, to_json, to_yaml_document, Table, Value, YamlError};

use crate::record::space_id;

/// A missing argument of a Lua call.
static NIL: Value = Value::Nil;

/// What tarantoolctl prints for one record in YAML: `print(yaml.encode(record):sub(1, -6))`,
/// i.e. the document without its closing `...` line.
pub fn yaml_record(record: &Value) -> Result<Vec<u8>, YamlError> {
    let mut text = to_yaml_document(record)?;
    text.truncate(text.len().saturating_sub(5));
    text.push(b'\n');
    Ok(text)
}

/// `print(json.encode(record))`.
pub fn json_record(record: &Value) -> Vec<u8> {
    let mut out = to_json(record);
    out.push(b'\n');
    out
}

// ---------------------------------------------------------------------------------------
// Lua (`cat_lua_cb`)

/// Lua's `tostring` of a scalar.
fn lua_tostring(v: &Value) -> String {
    match v {
        Value::Nil => "nil".into(),
        Value::Null => "cdata<void *>: NULL".into(),
        Value::Bool(b) => b.to_string(),
        Value::Num(n) => {
            if n.is_nan() {
                "nan".into()
            } else {
                fmt_g14(*n)
            }
        }
        Value::U64(u) => format!("{u}ULL"),
        Value::I64(i) => format!("{i}LL"),
        Value::Str(s) => String::from_utf8_lossy(s).into_owned(),
        Value::Decimal(s) | Value::Uuid(s) => s.clone(),
        Value::Ext(t, _) => format!("<msgpack extension {t}>"),
        Value::Table(_) => "table".into(),
    }
}

fn lua_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Str(s) => {
            out.push(b'\'');
            for b in s {
                out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
            }
            out.push(b'\'');
        }
        Value::Table(_) => lua_table(out, v),
        other => out.extend_from_slice(lua_tostring(other).as_bytes()),
    }
}

/// `write_lua_table`: `{[k] = v, ...}` in `pairs()` order.
fn lua_table(out: &mut Vec<u8>, v: &Value) {
    let Value::Table(t) = v else {
        lua_value(out, v);
        return;
    };
    out.push(b'{');
    let pair = |out: &mut Vec<u8>, first: bool, k: &Value, val: &Value| {
        if !first {
            out.extend_from_slice(b", ");
        }
        out.push(b'[');
        lua_value(out, k);
        out.extend_from_slice(b"] = ");
        lua_value(out, val);
    };
    match t.as_ref() {
        Table::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                pair(out, i == 0, &Value::Num((i + 1) as f64), item);
            }
        }
        Table::Map(entries) | Table::Plain(entries) => {
            for (i, (k, val)) in entries.iter().enumerate() {
                pair(out, i == 0, k, val);
            }
        }
    }
    out.push(b'}');
}

/// `cat_lua_cb`: `box.space[N]:op(...)`, or nothing for rows that are not DML on a space.
pub fn lua_record(record: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let typ = record.get("HEADER").and_then(|h| h.get("type"));
    let Some(Value::Str(typ)) = typ else {
        return out;
    };
    let body = record.get("BODY");
    let sid = space_id(record);
    let (Some(body), Some(sid)) = (body, sid) else {
        return out;
    };
    if typ.as_slice() == b"NOP" {
        return out;
    }
    let op = String::from_utf8_lossy(typ).to_lowercase();
    let sid = match sid {
        Value::Num(n) if n.fract() == 0.0 => format!("{}", *n as i64),
        other => lua_tostring(other),
    };
    out.extend_from_slice(format!("box.space[{sid}]:{op}(").as_bytes());
    let arg = |name: &str| body.get(name).unwrap_or(&NIL);
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
