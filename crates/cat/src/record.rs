//! One xlog row as the Lua record tarantoolctl prints: `{HEADER = {...}, BODY = {...}}`,
//! built the way Tarantool 2.6's `src/box/lua/xlog.c` builds it.
//!
//! Body values are decoded by one of two Tarantool decoders, which differ only in how they
//! size the tables they create (and so in the key order of decoded maps):
//! - `luamp_decode` (C) for most body values: maps are `lua_createtable(0, n)`;
//! - KEY and TUPLE arrays become box tuples, serialized through `tuple:totable()`, which
//!   decodes each field with `msgpackffi`: maps are `{}` filled key by key.

use spindle_emit::Value;
use spindle_proto::mp::{self, Value as Mp};
use spindle_xlog::Row;

use crate::lua::TableBuilder;

/// Deeper MessagePack nesting is refused (Tarantool would overflow the Lua stack).
const MAX_DEPTH: usize = 512;

/// `IPROTO_KEY_MAX` of Tarantool 2.6.0.
const IPROTO_KEY_MAX: u32 = 0x53;
const IPROTO_KEY: u32 = 0x20;
const IPROTO_TUPLE: u32 = 0x21;
const IPROTO_NOP: u32 = 12;

/// `iproto_type_name` of Tarantool 2.6.0.
pub fn type_name(t: u32) -> Option<&'static str> {
    Some(match t {
        1 => "SELECT",
        2 => "INSERT",
        3 => "REPLACE",
        4 => "UPDATE",
        5 => "DELETE",
        7 => "AUTH",
        8 => "EVAL",
        9 => "UPSERT",
        10 => "CALL",
        11 => "EXECUTE",
        12 => "NOP",
        13 => "PREPARE",
        100 => "RUNINFO",
        101 => "PAGEINFO",
        102 => "ROWINDEX",
        _ => return None,
    })
}

/// `iproto_type_is_dml`.
fn is_dml(t: u32) -> bool {
    (1..=5).contains(&t) || t == 9 || t == IPROTO_NOP
}

/// `iproto_key_name` of Tarantool 2.6.0, spaces already replaced by underscores as
/// `lbox_xlog_pushkey` does.
fn body_key_name(k: u32) -> Option<&'static str> {
    if k >= IPROTO_KEY_MAX {
        return None;
    }
    Some(match k {
        0x00 => "type",
        0x01 => "sync",
        0x02 => "replica_id",
        0x03 => "lsn",
        0x04 => "timestamp",
        0x05 => "schema_version",
        0x06 => "server_version",
        0x07 => "group_id",
        0x08 => "tsn",
        0x09 => "flags",
        0x10 => "space_id",
        0x11 => "index_id",
        0x12 => "limit",
        0x13 => "offset",
        0x14 => "iterator",
        0x15 => "index_base",
        0x20 => "key",
        0x21 => "tuple",
        0x22 => "function_name",
        0x23 => "user_name",
        0x24 => "instance_uuid",
        0x25 => "cluster_uuid",
        0x26 => "vector_clock",
        0x27 => "expression",
        0x28 => "operations",
        0x29 => "ballot",
        0x2a => "tuple_meta",
        0x2b => "options",
        0x30 => "data",
        0x31 => "error",
        0x32 => "metadata",
        0x33 => "bind_meta",
        0x34 => "bind_count",
        0x40 => "SQL_text",
        0x41 => "SQL_bind",
        0x42 => "SQL_info",
        0x43 => "stmt_id",
        _ => return None,
    })
}

/// Which Tarantool decoder builds the tables.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Decoder {
    /// `luamp_decode`: `lua_createtable(L, 0, n)` for maps.
    LuampC,
    /// `msgpackffi.decode_unchecked`: `{}` for maps.
    Ffi,
}

fn decode_err(what: &str) -> String {
    format!("undecodable MessagePack in the row body: {what}")
}

/// Decodes one value into a Lua value.
fn decode(cur: &mut &[u8], dec: Decoder, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("value nested deeper than {MAX_DEPTH} levels"));
    }
    let head = mp::read_value(cur).map_err(|e| decode_err(&format!("{e:?}")))?;
    Ok(match head {
        Mp::Nil => Value::Null,
        Mp::Bool(b) => Value::Bool(b),
        Mp::Uint(u) => Value::uint(u),
        Mp::Int(i) => Value::int(i),
        Mp::F32(f) => lua_number(f64::from(f), dec),
        Mp::F64(f) => lua_number(f, dec),
        Mp::Str(s) | Mp::Bin(s) => Value::Str(s.to_vec()),
        Mp::Array(n) => {
            let mut items = Vec::with_capacity((n as usize).min(cur.len()));
            for _ in 0..n {
                items.push(decode(cur, dec, depth + 1)?);
            }
            Value::seq(items)
        }
        Mp::Map(n) => {
            let mut t = match dec {
                Decoder::LuampC => TableBuilder::new(0, n),
                Decoder::Ffi => TableBuilder::new(0, 0),
            };
            for _ in 0..n {
                let k = decode(cur, dec, depth + 1)?;
                let v = decode(cur, dec, depth + 1)?;
                t.set(k, v);
            }
            Value::map(t.finish())
        }
        Mp::Ext(t, data) => decode_ext(t, data),
    })
}

/// A double as a Lua number. `lua_pushnumber` (the C decoder, the header) canonicalizes
/// every NaN to the one with the sign bit set, which glibc prints as `-nan`; the FFI decoder
/// of tuple fields keeps the stored bits.
fn lua_number(f: f64, dec: Decoder) -> Value {
    if f.is_nan() && dec == Decoder::LuampC {
        Value::Num(f64::from_bits(0xfff8_0000_0000_0000))
    } else {
        Value::Num(f)
    }
}

fn decode_ext(t: i8, data: &[u8]) -> Value {
    match t {
        1 => decimal_to_string(data).map_or_else(|| Value::Ext(t, data.to_vec()), Value::Decimal),
        // `tt_uuid_validate`: the variant bits 111x are reserved.
        2 if data.len() == 16 && data.get(8).is_some_and(|b| b & 0xe0 != 0xe0) => {
            Value::Uuid(uuid_to_string(data))
        }
        _ => Value::Ext(t, data.to_vec()),
    }
}

/// `tt_uuid_str`: the 16 bytes in the canonical 8-4-4-4-12 form.
fn uuid_to_string(b: &[u8]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let part = |r: std::ops::Range<usize>| hex.get(r).unwrap_or_default().to_string();
    format!(
        "{}-{}-{}-{}-{}",
        part(0..8),
        part(8..12),
        part(12..16),
        part(16..20),
        part(20..32)
    )
}

/// MP_DECIMAL (scale, then packed BCD with a sign nibble) as Tarantool's `decimal_to_string`;
/// `None` when Tarantool's `decimal_unpack` would reject it.
fn decimal_to_string(data: &[u8]) -> Option<String> {
    let mut cur = data;
    let scale: i64 = match mp::read_value(&mut cur).ok()? {
        Mp::Uint(u) => i64::try_from(u).ok()?,
        Mp::Int(i) => i,
        _ => return None,
    };
    if scale > 38 || scale <= -38 || cur.is_empty() {
        return None;
    }
    let mut digits: Vec<u8> = Vec::with_capacity(cur.len() * 2);
    let mut negative = false;
    for (i, byte) in cur.iter().enumerate() {
        let hi = byte >> 4;
        let lo = byte & 0x0f;
        if hi > 9 {
            return None;
        }
        digits.push(hi);
        if i + 1 == cur.len() {
            match lo {
                0x0b | 0x0d => negative = true,
                0x0a | 0x0c | 0x0e | 0x0f => {}
                _ => return None,
            }
        } else {
            if lo > 9 {
                return None;
            }
            digits.push(lo);
        }
    }
    let first = digits.iter().position(|&d| d != 0);
    let coeff: String = match first {
        Some(f) => digits
            .get(f..)
            .unwrap_or_default()
            .iter()
            .map(|d| char::from(b'0' + d))
            .collect(),
        None => "0".to_string(),
    };
    if coeff.len() > 38 {
        return None;
    }
    // Tarantool's decNumber is built with DECSTRING_NO_EXPONENT: always plain notation.
    let exponent = -scale;
    let len = coeff.len() as i64;
    let pre = len + exponent;
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if exponent == 0 {
        out.push_str(&coeff);
    } else if pre > 0 {
        if pre < len {
            let point = pre as usize;
            out.push_str(coeff.get(..point).unwrap_or_default());
            out.push('.');
            out.push_str(coeff.get(point..).unwrap_or_default());
        } else {
            out.push_str(&coeff);
            for _ in 0..(pre - len) {
                out.push('0');
            }
        }
    } else {
        out.push_str("0.");
        for _ in 0..-pre {
            out.push('0');
        }
        out.push_str(&coeff);
    }
    Some(out)
}

/// The record of one row. `Err` only for bodies nested deeper than any real row.
///
/// `struct xrow_header` keeps lsn and tsn as `int64_t` (pushed as Lua numbers, so a wrapped
/// tsn prints negative) and sync as `uint64_t` pushed through `lua_pushinteger`.
pub fn build(row: &Row) -> Result<Value, String> {
    let h = &row.header;
    let mut header = TableBuilder::new(0, 8);
    let typ = match type_name(h.req_type) {
        Some(name) => Value::str(name),
        None => Value::Num(f64::from(h.req_type)),
    };
    header.set(Value::str("type"), typ);
    if h.sync != 0 {
        header.set(Value::str("sync"), Value::Num(h.sync as i64 as f64));
    }
    if h.lsn != 0 {
        header.set(Value::str("lsn"), Value::Num(h.lsn as i64 as f64));
    }
    if h.replica_id != 0 {
        header.set(
            Value::str("replica_id"),
            Value::Num(f64::from(h.replica_id)),
        );
    }
    if h.group_id != 0 {
        header.set(Value::str("group_id"), Value::Num(f64::from(h.group_id)));
    }
    if h.timestamp != 0.0 {
        header.set(
            Value::str("timestamp"),
            lua_number(h.timestamp, Decoder::LuampC),
        );
    }
    if h.tsn != h.lsn || !h.is_commit {
        header.set(Value::str("tsn"), Value::Num(h.tsn as i64 as f64));
    }
    if h.is_commit && h.tsn != h.lsn {
        header.set(Value::str("commit"), Value::Bool(true));
    }
    let mut record = TableBuilder::new(0, 8);
    record.set(Value::str("HEADER"), Value::plain(header.finish()));
    if !row.body.is_empty() {
        let body = build_body(h.req_type, &row.body)?;
        record.set(Value::str("BODY"), body);
    }
    Ok(Value::plain(record.finish()))
}

/// `lbox_xlog_parse_body`.
fn build_body(req_type: u32, bytes: &[u8]) -> Result<Value, String> {
    let mut body = TableBuilder::new(0, 0);
    let mut cur = bytes;
    if let Ok(Mp::Map(n)) = mp::read_value(&mut cur) {
        for _ in 0..n {
            if cur.is_empty() {
                break;
            }
            let (key, key_num) = match mp::peek_type(cur) {
                Ok(mp::MpType::Uint) => {
                    // Tarantool keeps the key in a uint32_t.
                    let Ok(v) = mp::read_uint(&mut cur) else {
                        break;
                    };
                    let v = v as u32;
                    let name = if is_dml(req_type) {
                        body_key_name(v)
                    } else {
                        None
                    };
                    match name {
                        Some(name) => (Value::str(name), Some(v)),
                        None => (Value::Num(f64::from(v)), Some(v)),
                    }
                }
                // tarantoolctl stops with "Broken type of body key"; show the key instead.
                Ok(_) => (decode(&mut cur, Decoder::LuampC, 1)?, None),
                Err(_) => break,
            };
            let is_tuple = matches!(key_num, Some(IPROTO_KEY) | Some(IPROTO_TUPLE))
                && mp::peek_type(cur).ok() == Some(mp::MpType::Array);
            let value = if is_tuple {
                decode(&mut cur, Decoder::Ffi, 1)?
            } else if mp::check(cur).is_err() {
                let _ = mp::skip(&mut cur);
                Value::str("<invalid msgpack>")
            } else {
                decode(&mut cur, Decoder::LuampC, 1)?
            };
            body.set(key, value);
        }
    }
    Ok(Value::plain(body.finish()))
}

/// `record.BODY.space_id` for the filters.
pub fn space_id(record: &Value) -> Option<&Value> {
    record.get("BODY")?.get("space_id")
}

/// `record.HEADER.replica_id`.
pub fn replica_id(record: &Value) -> Option<&Value> {
    record.get("HEADER")?.get("replica_id")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_print_like_decnumber() {
        // scale, BCD digits + sign nibble.
        assert_eq!(
            decimal_to_string(&[0x01, 0x01, 0x5c]).as_deref(),
            Some("1.5")
        );
        assert_eq!(
            decimal_to_string(&[0x00, 0x12, 0x3d]).as_deref(),
            Some("-123")
        );
        assert_eq!(decimal_to_string(&[0x03, 0x1c]).as_deref(), Some("0.001"));
        assert_eq!(decimal_to_string(&[0xfe, 0x1c]).as_deref(), Some("100"));
        assert_eq!(decimal_to_string(&[0x00, 0x0c]).as_deref(), Some("0"));
        assert_eq!(
            decimal_to_string(&[0x0a, 0x1c]).as_deref(),
            Some("0.0000000001")
        );
        assert_eq!(decimal_to_string(&[0x00, 0xfc]), None);
    }

    #[test]
    fn uuids_print_canonically() {
        let b: Vec<u8> = (0u8..16).collect();
        assert_eq!(uuid_to_string(&b), "00010203-0405-0607-0809-0a0b0c0d0e0f");
    }
}
