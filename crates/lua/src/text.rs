//! Lua values as YAML flow text, the way Tarantool prints a tuple: `[1, 'a', [2, 3],
//! {'k': 'v'}, null]`.

use mlua::{Lua, Value};

/// `value` as flow YAML.
pub fn flow(_lua: &Lua, value: &Value) -> mlua::Result<String> {
    let mut out = String::new();
    write(&mut out, value, 0)?;
    Ok(out)
}

fn write(out: &mut String, value: &Value, depth: usize) -> mlua::Result<()> {
    if depth > 128 {
        return Err(mlua::Error::runtime("too deep to print"));
    }
    match value {
        Value::Nil => out.push_str("null"),
        Value::LightUserData(p) if p.0.is_null() => out.push_str("null"),
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Integer(i) => out.push_str(&i.to_string()),
        Value::Number(n) => out.push_str(&number(*n)),
        Value::String(s) => quote(out, &s.to_string_lossy()),
        Value::Table(t) => {
            let mut wire = Vec::new();
            let is_array = crate::convert::encode(&mut wire, value).is_ok()
                && wire
                    .first()
                    .is_some_and(|b| matches!(b, 0x90..=0x9f | 0xdc | 0xdd));
            if is_array {
                out.push('[');
                for i in 1..=t.raw_len() {
                    if i > 1 {
                        out.push_str(", ");
                    }
                    write(out, &t.raw_get::<Value>(i)?, depth + 1)?;
                }
                out.push(']');
            } else {
                out.push('{');
                for (i, pair) in t.pairs::<Value, Value>().enumerate() {
                    let (k, v) = pair?;
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write(out, &k, depth + 1)?;
                    out.push_str(": ");
                    write(out, &v, depth + 1)?;
                }
                out.push('}');
            }
        }
        other => out.push_str(&other.to_string()?),
    }
    Ok(())
}

fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        spindle_emit::fmt_g14(n)
    }
}

fn quote(out: &mut String, s: &str) {
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
}
