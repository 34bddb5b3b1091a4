//! Lua values to MessagePack and back, with Tarantool's rules: integral numbers in the 64-bit
//! range become integers, tables that are sequences become arrays (holes as nil, within
//! Tarantool's sparse-array limits), other tables maps, `nil` and `box.NULL` nil, a tuple its
//! stored array; a function (or anything else without an encoding) fails the whole value with
//! "unsupported Lua type". Decoding gives MessagePack nil as `box.NULL`, arrays and maps
//! marked `__serialize = 'seq'`/`'map'` and integers beyond ±(10^14 - 1) as 64-bit cdata, as
//! Tarantool does.

use std::cell::Cell;

use mlua::{Lua, Table, Value};
use spindle_proto::mp;
use spindle_types::error::{code, AccessFields};
use spindle_types::{BoxError, ErrorKind};

/// Deepest nesting encoded (Tarantool's `encode_max_depth`); deeper tables fail.
const MAX_DEPTH: usize = 128;
/// Sparse arrays: a table with positive integer keys up to `n` is an array if `n` is at most
/// `SPARSE_SAFE` or at most `SPARSE_RATIO` times its number of elements.
const SPARSE_SAFE: usize = 10;
const SPARSE_RATIO: usize = 2;

#[derive(Debug, PartialEq, Eq)]
pub struct EncodeError(pub String);

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn unsupported(v: &Value) -> EncodeError {
    EncodeError(format!("unsupported Lua type '{}'", v.type_name()))
}

/// Appends `v` as one MessagePack value.
pub fn encode(out: &mut Vec<u8>, v: &Value) -> Result<(), EncodeError> {
    encode_at(out, v, 0)
}

fn encode_at(out: &mut Vec<u8>, v: &Value, depth: usize) -> Result<(), EncodeError> {
    match v {
        Value::Nil => mp::write_nil(out),
        Value::Boolean(b) => mp::write_bool(out, *b),
        Value::Integer(i) => write_i64(out, *i),
        Value::Number(n) => write_number(out, *n),
        Value::String(s) => mp::write_str_bytes(out, &s.as_bytes()),
        Value::LightUserData(p) if p.0.is_null() => mp::write_nil(out),
        Value::Table(t) => {
            if depth >= MAX_DEPTH {
                return Err(EncodeError("Too high nest level".into()));
            }
            if let Some(message) = box_error_message(t) {
                write_box_error(out, v, &message);
                return Ok(());
            }
            encode_table(out, t, depth)?;
        }
        Value::UserData(ud) => match crate::tuple_block::of(ud) {
            Some((t, _)) => out.extend_from_slice(t.data()),
            None if (hooks().encode_ext)(out, ud) => {}
            None => return Err(unsupported(v)),
        },
        Value::Error(e) => mp::write_str(out, &e.to_string()),
        Value::Other(_) => return encode_cdata(out, v),
        _ => return Err(unsupported(v)),
    }
    Ok(())
}

fn write_i64(out: &mut Vec<u8>, i: i64) {
    if i >= 0 {
        mp::write_uint(out, i as u64);
    } else {
        mp::write_int(out, i);
    }
}

/// Integral doubles in the int64/uint64 range are integers on the wire; everything else is a
/// float64.
pub(crate) fn write_number(out: &mut Vec<u8>, n: f64) {
    const TWO_64: f64 = 18_446_744_073_709_551_616.0;
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if n.fract() == 0.0 && n.is_finite() {
        if (0.0..TWO_64).contains(&n) {
            mp::write_uint(out, n as u64);
            return;
        }
        if (-TWO_63..0.0).contains(&n) {
            mp::write_int(out, n as i64);
            return;
        }
    }
    mp::write_f64(out, n);
}

/// LuaJIT cdata: `box.NULL` (a NULL pointer) and 64-bit integers (`1ULL`, `-1LL`), told apart
/// by their text (`tostring` gives `cdata<void *>: NULL`, `1ULL`, `-1LL`).
fn encode_cdata(out: &mut Vec<u8>, v: &Value) -> Result<(), EncodeError> {
    let text = v.to_string().map_err(|_| unsupported(v))?;
    if text.ends_with(": NULL") {
        mp::write_nil(out);
    } else if let Some(digits) = text.strip_suffix("ULL") {
        let n: u64 = digits.parse().map_err(|_| unsupported(v))?;
        mp::write_uint(out, n);
    } else if let Some(digits) = text.strip_suffix("LL") {
        let n: i64 = digits.parse().map_err(|_| unsupported(v))?;
        write_i64(out, n);
    } else {
        return Err(EncodeError("unsupported Lua type 'cdata'".into()));
    }
    Ok(())
}

fn encode_table(out: &mut Vec<u8>, t: &Table, depth: usize) -> Result<(), EncodeError> {
    match array_len(t) {
        Some(n) => {
            mp::write_array_len(out, n as u32);
            for i in 1..=n {
                let item: Value = t.raw_get(i).map_err(|e| EncodeError(e.to_string()))?;
                encode_at(out, &item, depth + 1)?;
            }
        }
        None => {
            let pairs: Vec<(Value, Value)> = t
                .pairs::<Value, Value>()
                .collect::<mlua::Result<_>>()
                .map_err(|e| EncodeError(e.to_string()))?;
            mp::write_map_len(out, pairs.len() as u32);
            for (k, v) in &pairs {
                encode_at(out, k, depth + 1)?;
                encode_at(out, v, depth + 1)?;
            }
        }
    }
    Ok(())
}

/// The array length of a table that encodes as an array, or None for a map. `{}` is an
/// empty array. A `__serialize` of `seq`/`array` or `map`/`mapping` in its metatable decides.
fn array_len(t: &Table) -> Option<usize> {
    if let Some(kind) = serialize_hint(t) {
        return match kind.as_str() {
            "seq" | "sequence" | "array" => Some(t.raw_len()),
            _ => None,
        };
    }
    let (mut count, mut max) = (0usize, 0usize);
    for pair in t.pairs::<Value, Value>() {
        let Ok((k, _)) = pair else { return None };
        let index = match k {
            Value::Integer(i) if i > 0 => i as usize,
            Value::Number(n) if n >= 1.0 && n.fract() == 0.0 && n < 4_294_967_296.0 => n as usize,
            _ => return None,
        };
        count += 1;
        max = max.max(index);
    }
    (max <= SPARSE_SAFE || max <= SPARSE_RATIO * count).then_some(max)
}

thread_local! {
    /// Encode box.error values as MP_ERROR rather than as their message: set while the
    /// results of a request from an ERROR_EXTENSION session are encoded (TX thread only,
    /// and encoding never parks, so no other request sees it).
    static ERROR_EXT: Cell<bool> = const { Cell::new(false) };
}

/// Sets `ERROR_EXT` for its lifetime.
pub struct ErrorExt(bool);

impl ErrorExt {
    pub fn set(on: bool) -> ErrorExt {
        ErrorExt(ERROR_EXT.with(|c| c.replace(on)))
    }
}

impl Drop for ErrorExt {
    fn drop(&mut self) {
        ERROR_EXT.with(|c| c.set(self.0));
    }
}

/// A box.error value: MP_ERROR while `ERROR_EXT` is set, else its message (2.6's encoding).
fn write_box_error(out: &mut Vec<u8>, v: &Value, message: &str) {
    let as_ext = ERROR_EXT.with(Cell::get);
    match box_error(v, ERROR_CHAIN_MAX).filter(|_| as_ext) {
        Some(e) => spindle_proto::iproto::encode_mp_error(out, &e),
        None => mp::write_str(out, message),
    }
}

/// Causes of an error followed at most (`set_prev` can make a cycle).
pub(crate) const ERROR_CHAIN_MAX: usize = 16;

/// A box.error object (a table with the prelude's error metatable) as a BoxError: its code,
/// message, type, where it was made and its `prev` chain.
pub(crate) fn box_error(v: &Value, depth: usize) -> Option<BoxError> {
    let Value::Table(t) = v else { return None };
    let is_box_error = t
        .metatable()
        .and_then(|m| m.raw_get::<bool>("__box_error").ok())
        .unwrap_or(false);
    if !is_box_error {
        return None;
    }
    let code: u32 = t.raw_get("code").unwrap_or(code::ER_UNKNOWN);
    let message: String = t.raw_get("message").unwrap_or_default();
    let kind: String = t.raw_get("type").unwrap_or_default();
    let mut e = BoxError::new(code, message);
    if kind == "AccessDeniedError" {
        e = e.with_kind(ErrorKind::AccessDeniedError);
        e.access = access_fields(t).map(Box::new);
    }
    let frame: Option<mlua::Table> = t
        .raw_get::<mlua::Table>("trace")
        .ok()
        .and_then(|trace| trace.raw_get(1).ok());
    if let Some(frame) = frame {
        if let (Ok(file), Ok(line)) = (
            frame.raw_get::<String>("file"),
            frame.raw_get::<u32>("line"),
        ) {
            e.trace = Some(Box::new((file, line)));
        }
    }
    if depth > 0 {
        let prev: Value = t.raw_get("prev").unwrap_or(Value::Nil);
        e.prev = box_error(&prev, depth - 1).map(Box::new);
    }
    Some(e)
}

/// The MP_ERROR fields an access error object carries.
fn access_fields(t: &mlua::Table) -> Option<AccessFields> {
    Some(AccessFields {
        object_type: t.raw_get("object_type").ok()?,
        object_name: t.raw_get("object_name").ok()?,
        access_type: t.raw_get("access_type").ok()?,
    })
}

/// The message of a box.error object (a table whose metatable says `__box_error`).
fn box_error_message(t: &Table) -> Option<String> {
    let meta = t.metatable()?;
    if !meta.raw_get::<bool>("__box_error").unwrap_or(false) {
        return None;
    }
    t.raw_get::<String>("message").ok()
}

fn serialize_hint(t: &Table) -> Option<String> {
    let meta = t.metatable()?;
    match meta.raw_get::<Value>("__serialize").ok()? {
        Value::String(s) => Some(s.to_string_lossy()),
        _ => None,
    }
}

/// Reads one MessagePack value as a Lua value.
pub fn decode(lua: &Lua, buf: &mut &[u8]) -> mlua::Result<Value> {
    decode_at(lua, buf, 0)
}

fn bad_msgpack() -> mlua::Error {
    mlua::Error::runtime("msgpack.decode: invalid MessagePack")
}

fn decode_at(lua: &Lua, buf: &mut &[u8], depth: usize) -> mlua::Result<Value> {
    if depth > MAX_DEPTH * 8 {
        return Err(mlua::Error::runtime("msgpack.decode: too deep"));
    }
    let head = mp::read_value(buf).map_err(|_| bad_msgpack())?;
    Ok(match head {
        mp::Value::Nil => null(lua),
        mp::Value::Bool(b) => Value::Boolean(b),
        mp::Value::Uint(u) => (hooks().big_int)(lua, i128::from(u))?.unwrap_or(uint(u)),
        mp::Value::Int(i) => (hooks().big_int)(lua, i128::from(i))?.unwrap_or(int(i)),
        mp::Value::F32(f) => Value::Number(f64::from(f)),
        mp::Value::F64(f) => Value::Number(f),
        mp::Value::Str(s) | mp::Value::Bin(s) => Value::String(lua.create_string(s)?),
        mp::Value::Array(n) => {
            let t = lua.create_table_with_capacity(n.min(1024) as usize, 0)?;
            t.set_metatable(Some((hooks().kind_meta)(lua, "seq")?))?;
            for i in 1..=n {
                t.raw_set(i, decode_at(lua, buf, depth + 1)?)?;
            }
            Value::Table(t)
        }
        mp::Value::Map(n) => {
            let t = lua.create_table_with_capacity(0, n.min(1024) as usize)?;
            t.set_metatable(Some((hooks().kind_meta)(lua, "map")?))?;
            for _ in 0..n {
                let k = decode_at(lua, buf, depth + 1)?;
                let v = decode_at(lua, buf, depth + 1)?;
                if !matches!(k, Value::Nil) {
                    t.raw_set(k, v)?;
                }
            }
            Value::Table(t)
        }
        mp::Value::Ext(kind, data) => (hooks().decode_ext)(lua, kind, data)?,
    })
}

/// Integers Lua numbers hold exactly are numbers; larger ones lose precision as doubles,
/// as plain Lua numbers do (64-bit cdata come later with the FFI layer).
fn uint(u: u64) -> Value {
    match i64::try_from(u) {
        Ok(i) => Value::Integer(i),
        Err(_) => Value::Number(u as f64),
    }
}

fn int(i: i64) -> Value {
    Value::Integer(i)
}

/// What the modules add to the conversion (uuid and decimal extensions, 64-bit integers as
/// cdata, the array/map marks of decoded tables); set once by `modules::install`, so that
/// this file does not depend on the modules that depend on it.
pub struct Hooks {
    pub encode_ext: fn(&mut Vec<u8>, &mlua::AnyUserData) -> bool,
    pub decode_ext: fn(&Lua, i8, &[u8]) -> mlua::Result<Value>,
    pub big_int: fn(&Lua, i128) -> mlua::Result<Option<Value>>,
    pub kind_meta: fn(&Lua, &str) -> mlua::Result<Table>,
}

static HOOKS: std::sync::OnceLock<Hooks> = std::sync::OnceLock::new();

pub fn set_hooks(hooks: Hooks) {
    let _ = HOOKS.set(hooks);
}

fn hooks() -> &'static Hooks {
    HOOKS.get_or_init(|| Hooks {
        encode_ext: |_, _| false,
        decode_ext: |_, kind, _| {
            Err(mlua::Error::runtime(format!(
                "Unsuported MsgPack extension type: {kind}"
            )))
        },
        big_int: |_, _| Ok(None),
        kind_meta: |lua, _| lua.create_table(),
    })
}

/// `box.NULL`, kept in the registry by the runtime.
pub fn null(lua: &Lua) -> Value {
    lua.named_registry_value::<Value>("spindle.NULL")
        .unwrap_or(Value::Nil)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn lua() -> Lua {
        // SAFETY: the tests need `ffi` for box.NULL, which only the unsafe constructor loads.
        unsafe { Lua::unsafe_new() }
    }

    fn enc(lua: &Lua, src: &str) -> Result<Vec<u8>, EncodeError> {
        let v: Value = lua.load(src).eval().expect("eval");
        let mut out = Vec::new();
        encode(&mut out, &v).map(|()| out)
    }

    #[test]
    fn numbers_follow_tarantool() {
        let l = lua();
        assert_eq!(enc(&l, "return 1").unwrap(), [0x01]);
        assert_eq!(enc(&l, "return -1").unwrap(), [0xff]);
        assert_eq!(
            enc(&l, "return 2^53").unwrap(),
            [0xcf, 0, 0x20, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(enc(&l, "return 1.5").unwrap()[0], 0xcb);
        assert_eq!(enc(&l, "return 2^64").unwrap()[0], 0xcb);
    }

    #[test]
    fn tables_become_arrays_or_maps() {
        let l = lua();
        assert_eq!(enc(&l, "return {}").unwrap(), [0x90]);
        assert_eq!(enc(&l, "return {1, nil, 3}").unwrap(), [0x93, 1, 0xc0, 3]);
        assert_eq!(enc(&l, "return {a = 1}").unwrap(), [0x81, 0xa1, b'a', 1]);
        // Too sparse for an array: a map.
        assert_eq!(enc(&l, "return {[100] = 1}").unwrap(), [0x81, 100, 1]);
        assert_eq!(
            enc(&l, "return function() end"),
            Err(EncodeError("unsupported Lua type 'function'".into()))
        );
    }

    #[test]
    fn round_trip_through_lua() {
        let l = lua();
        let mut wire = Vec::new();
        for v in [
            rmpv::Value::from(1),
            rmpv::Value::from(-5),
            rmpv::Value::from("x"),
            rmpv::Value::Array(vec![1.into(), "a".into(), rmpv::Value::Array(vec![])]),
            rmpv::Value::Map(vec![("k".into(), 2.5.into())]),
            rmpv::Value::Boolean(true),
        ] {
            wire.clear();
            rmpv::encode::write_value(&mut wire, &v).expect("encode");
            let mut cur = wire.as_slice();
            let lv = decode(&l, &mut cur).expect("decode");
            let mut back = Vec::new();
            encode(&mut back, &lv).expect("encode back");
            assert_eq!(back, wire, "{v:?}");
        }
    }

    /// What a value looks like after a trip through Lua, by Tarantool's rules: binary strings
    /// come back as strings, integral doubles as integers, an empty map as an empty array,
    /// and map order is Lua's (compared as sets).
    fn normalized(v: &rmpv::Value) -> rmpv::Value {
        use rmpv::Value as V;
        match v {
            V::Binary(b) => V::String(rmpv::Utf8String::from(
                String::from_utf8_lossy(b).into_owned(),
            )),
            // Integral numbers in [-2^63, 2^64) travel as integers, as Tarantool sends them.
            V::F64(f) if f.fract() == 0.0 && *f >= 0.0 && *f < 18_446_744_073_709_551_616.0 => {
                V::from(*f as u64)
            }
            V::F64(f) if f.fract() == 0.0 && *f >= -9_223_372_036_854_775_808.0 => {
                V::from(*f as i64)
            }
            V::F32(f) => normalized(&V::F64(f64::from(*f))),
            V::Integer(i) => match (i.as_u64(), i.as_i64()) {
                (Some(n), _) => V::from(n),
                (None, Some(n)) => V::from(n),
                _ => v.clone(),
            },
            V::Array(items) => V::Array(items.iter().map(normalized).collect()),
            V::Map(pairs) if pairs.is_empty() => V::Array(vec![]),
            V::Map(pairs) => {
                let mut pairs: Vec<(V, V)> = pairs
                    .iter()
                    .map(|(k, v)| (normalized(k), normalized(v)))
                    .collect();
                pairs.sort_by_key(|(k, _)| format!("{k}"));
                V::Map(pairs)
            }
            other => other.clone(),
        }
    }

    pub(crate) fn value_strategy() -> impl proptest::strategy::Strategy<Value = rmpv::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(rmpv::Value::Nil),
            any::<bool>().prop_map(rmpv::Value::Boolean),
            (-(1i64 << 53)..(1i64 << 53)).prop_map(rmpv::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(rmpv::Value::F64),
            "[a-z0-9 ]{0,12}".prop_map(rmpv::Value::from),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(|b| rmpv::Value::Binary(
                String::from_utf8_lossy(&b).into_owned().into_bytes()
            )),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(rmpv::Value::Array),
                proptest::collection::btree_map("[a-z]{1,6}", inner, 0..5).prop_map(|m| {
                    rmpv::Value::Map(m.into_iter().map(|(k, v)| (k.into(), v)).collect())
                }),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(512))]
        /// MessagePack → Lua → MessagePack keeps every value, up to Tarantool's
        /// normalisations.
        #[test]
        fn messagepack_survives_lua(v in value_strategy()) {
            let l = lua();
            let null: Value = l.load("return require('ffi').cast('void *', 0)").eval().expect("null");
            l.set_named_registry_value("spindle.NULL", null).expect("registry");
            let mut wire = Vec::new();
            rmpv::encode::write_value(&mut wire, &v).expect("encode");
            let mut cur = wire.as_slice();
            let lv = decode(&l, &mut cur).expect("decode");
            proptest::prop_assert!(cur.is_empty());
            let mut back = Vec::new();
            encode(&mut back, &lv).expect("encode back");
            let got = rmpv::decode::read_value(&mut back.as_slice()).expect("decode back");
            proptest::prop_assert_eq!(normalized(&got), normalized(&v));
        }
    }
}
