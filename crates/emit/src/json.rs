//! `json.encode(value)` of Tarantool 2.6: lua-cjson as bundled with it, with the default
//! options (`%.14g` numbers, `/` escaped, `nan`/`inf` printed bare, integer map keys as
//! strings, tables with `1..n` keys as arrays).

use crate::field::{to_field, Field};
use crate::number::fmt_g14;
use crate::value::Value;

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

fn json_value(out: &mut Vec<u8>, v: &Value) {
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

/// Appends `json.encode(value)` to `out`: one line, no trailing newline.
pub fn write_json(out: &mut Vec<u8>, value: &Value) {
    json_value(out, value);
}

/// `json.encode(value)`.
pub fn to_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    json_value(&mut out, value);
    out
}
