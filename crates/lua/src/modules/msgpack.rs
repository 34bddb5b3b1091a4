//! `msgpack`: `encode(v)`, `decode(s[, pos])` (value and next position), `decode_unchecked`,
//! `NULL`, `cfg{}` (unknown keys ignored), `new()`,
//! `array_mt`/`map_mt`. Encoding with the default options is `convert::encode`, the encoder of
//! CALL and EVAL replies; other options go through the serializer model. Decoded arrays and
//! maps carry `__serialize` marks, integers beyond ±(10^14 - 1) are 64-bit cdata, UUIDs and
//! decimals (extensions 2 and 1) their objects.

use mlua::{Lua, MultiValue, Table, Value};
use spindle_emit::{Table as OutTable, Value as Out};
use spindle_proto::mp;

use super::serializer::{self, Options};
use crate::convert;

pub fn install(lua: &Lua) -> mlua::Result<()> {
    super::preload_rust(lua, "msgpack", instance)
}

fn instance(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    let cfg = serializer::new_cfg(lua)?;
    m.set("cfg", cfg.clone())?;
    m.set("NULL", super::null(lua))?;
    m.set("array_mt", super::yaml::kind_meta(lua, "seq")?)?;
    m.set("map_mt", super::yaml::kind_meta(lua, "map")?)?;
    m.set(
        "encode",
        super::function(lua, move |lua, args: MultiValue| {
            let value = match args.len() {
                1 => args.front().cloned().unwrap_or(Value::Nil),
                0 => return Err("msgpack.encode: a Lua object expected".into()),
                _ => return Err("msgpack.encode: argument 2 must be of type 'struct ibuf'".into()),
            };
            let bytes = encode(lua, &value, &Options::from_cfg(&cfg))?;
            lua.create_string(bytes).map_err(|e| super::message(&e))
        })?,
    )?;
    let decode = super::function(lua, |lua, args: MultiValue| decode_at(lua, &args))?;
    m.set("decode", decode.clone())?;
    m.set("decode_unchecked", decode)?;
    m.set("new", lua.create_function(|lua, ()| instance(lua))?)?;
    Ok(m)
}

fn is_default(opts: &Options) -> bool {
    !opts.use_tostring && !opts.invalid_as_nil && opts.load_metatables
}

/// `msgpack.encode(value)` with the options `opts`.
pub fn encode(lua: &Lua, value: &Value, opts: &Options) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    if is_default(opts) {
        convert::encode(&mut out, value).map_err(|e| e.0)?;
    } else {
        write(&mut out, &serializer::to_value(lua, value, opts)?);
    }
    Ok(out)
}

fn write(out: &mut Vec<u8>, v: &Out) {
    match v {
        Out::Nil | Out::Null => mp::write_nil(out),
        Out::Bool(b) => mp::write_bool(out, *b),
        Out::Num(n) => write_number(out, *n),
        Out::U64(u) => mp::write_uint(out, *u),
        Out::I64(i) => mp::write_int(out, *i),
        Out::Str(s) => mp::write_str_bytes(out, s),
        Out::Uuid(s) => match ::uuid::Uuid::parse_str(s) {
            Ok(u) => write_ext(out, super::uuid::EXT_UUID, u.as_bytes()),
            Err(_) => mp::write_str(out, s),
        },
        Out::Decimal(s) => match super::decimal::parse_text(s) {
            Some(d) => write_ext(
                out,
                super::decimal::EXT_DECIMAL,
                &super::decimal::ext_payload(&d),
            ),
            None => mp::write_str(out, s),
        },
        Out::Ext(kind, data) => write_ext(out, *kind, data),
        Out::Table(t) => match t.as_ref() {
            OutTable::Seq(items) => write_items(out, items.iter()),
            OutTable::Map(entries) => write_entries(out, entries),
            OutTable::Plain(entries) => match plain_array_len(entries) {
                Some(n) => {
                    let mut items = vec![&Out::Nil; n];
                    for (k, v) in entries {
                        if let Out::Num(i) = k {
                            if let Some(slot) = items.get_mut((*i as usize).wrapping_sub(1)) {
                                *slot = v;
                            }
                        }
                    }
                    write_items(out, items.into_iter());
                }
                None => write_entries(out, entries),
            },
        },
    }
}

fn write_items<'a>(out: &mut Vec<u8>, items: impl ExactSizeIterator<Item = &'a Out>) {
    mp::write_array_len(out, items.len() as u32);
    for item in items {
        write(out, item);
    }
}

fn write_entries(out: &mut Vec<u8>, entries: &[(Out, Out)]) {
    mp::write_map_len(out, entries.len() as u32);
    for (k, v) in entries {
        write(out, k);
        write(out, v);
    }
}

/// Keys `1..n` within the sparse-array limits: the array length.
fn plain_array_len(entries: &[(Out, Out)]) -> Option<usize> {
    let mut max = 0usize;
    for (k, _) in entries {
        match k {
            Out::Num(n) if *n >= 1.0 && n.fract() == 0.0 && *n < 4_294_967_296.0 => {
                max = max.max(*n as usize);
            }
            _ => return None,
        }
    }
    (max <= 10 || max <= 2 * entries.len()).then_some(max)
}

fn write_number(out: &mut Vec<u8>, n: f64) {
    const TWO_64: f64 = 18_446_744_073_709_551_616.0;
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if n.fract() == 0.0 && n.is_finite() {
        if (0.0..TWO_64).contains(&n) {
            return mp::write_uint(out, n as u64);
        }
        if (-TWO_63..0.0).contains(&n) {
            return mp::write_int(out, n as i64);
        }
    }
    mp::write_f64(out, n);
}

/// Appends a MessagePack extension value (fixext when the size allows).
pub use spindle_proto::mp::write_ext;

const INVALID: &str = "msgpack.decode: invalid MsgPack";

/// `decode(s[, pos])`: the value at 1-based `pos` and the position after it.
fn decode_at(lua: &Lua, args: &MultiValue) -> Result<(Value, usize), String> {
    let Some(Value::String(s)) = args.front() else {
        return Err("msgpack.decode: a Lua string or 'char *' expected".into());
    };
    let bytes = s.as_bytes();
    let pos = match args.get(1) {
        None | Some(Value::Nil) => 1,
        Some(Value::Integer(i)) => *i,
        Some(Value::Number(n)) => *n as i64,
        Some(_) => return Err("msgpack.decode: offset is out of bounds".into()),
    };
    if pos < 1 || pos as usize > bytes.len() {
        return Err(if bytes.is_empty() {
            INVALID.into()
        } else {
            "msgpack.decode: offset is out of bounds".into()
        });
    }
    let start = &bytes[pos as usize - 1..];
    mp::check(start).map_err(|_| INVALID.to_string())?;
    let mut cur = start;
    let v = decode(lua, &mut cur, 0)?;
    Ok((v, bytes.len() - cur.len() + 1))
}

/// One value with Tarantool's Lua marks (see the module doc).
pub fn decode(lua: &Lua, buf: &mut &[u8], depth: usize) -> Result<Value, String> {
    let err = |e: mlua::Error| super::message(&e);
    // Nesting costs stack on the fiber (512 KiB); deeper data is refused.
    if depth > 256 {
        return Err("msgpack.decode: too deep".into());
    }
    Ok(
        match mp::read_value(buf).map_err(|_| INVALID.to_string())? {
            mp::Value::Nil => super::null(lua),
            mp::Value::Bool(b) => Value::Boolean(b),
            mp::Value::Uint(u) if u > 99_999_999_999_999 => super::uint64(lua, u).map_err(err)?,
            mp::Value::Uint(u) => Value::Number(u as f64),
            mp::Value::Int(i) if i < -99_999_999_999_999 => super::int64(lua, i).map_err(err)?,
            mp::Value::Int(i) => Value::Number(i as f64),
            mp::Value::F32(f) => Value::Number(f64::from(f)),
            mp::Value::F64(f) => Value::Number(f),
            mp::Value::Str(s) | mp::Value::Bin(s) => {
                Value::String(lua.create_string(s).map_err(err)?)
            }
            mp::Value::Array(n) => {
                let t = lua
                    .create_table_with_capacity(n.min(1024) as usize, 0)
                    .map_err(err)?;
                t.set_metatable(Some(super::yaml::kind_meta(lua, "seq").map_err(err)?))
                    .map_err(err)?;
                for i in 1..=n {
                    t.raw_set(i, decode(lua, buf, depth + 1)?).map_err(err)?;
                }
                Value::Table(t)
            }
            mp::Value::Map(n) => {
                let t = lua
                    .create_table_with_capacity(0, n.min(1024) as usize)
                    .map_err(err)?;
                t.set_metatable(Some(super::yaml::kind_meta(lua, "map").map_err(err)?))
                    .map_err(err)?;
                for _ in 0..n {
                    let k = decode(lua, buf, depth + 1)?;
                    let v = decode(lua, buf, depth + 1)?;
                    if !matches!(k, Value::Nil) {
                        t.raw_set(k, v).map_err(err)?;
                    }
                }
                Value::Table(t)
            }
            mp::Value::Ext(super::decimal::EXT_DECIMAL, data)
                if super::decimal::from_ext(data).is_none() =>
            {
                return Err(INVALID.into());
            }
            mp::Value::Ext(kind, data) => super::decode_ext(lua, kind, data).map_err(err)?,
        },
    )
}
