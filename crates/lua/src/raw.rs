//! CALL and EVAL values without mlua: a request's arguments decoded from MessagePack straight
//! onto its Lua thread's stack, and its results encoded straight off it (`fast::encode`).
//! mlua's way makes a registry reference per argument and per result and a vector of each;
//! for the plain values most procedures take and return that was a tenth of a CALL.
//!
//! What this path does not know (extensions, integers past ±(10^14 - 1), tables with a
//! metatable or nested deeper than `RAW_DEPTH_MAX`, tuples, cdata) makes it give up with the
//! stack as it found it, and the caller takes `convert`'s path, which knows them all.

use std::os::raw::c_int;

use mlua::ffi;
use spindle_proto::mp;

/// Registry fields of the values decoding needs: box.NULL and the `__serialize` marks of
/// decoded arrays and maps (set by `install`).
const NULL_KEY: &std::ffi::CStr = c"spindle.NULL";
const SEQ_MT_KEY: &std::ffi::CStr = c"spindle.seq_mt";
const MAP_MT_KEY: &std::ffi::CStr = c"spindle.map_mt";

/// Deepest nesting decoded here; deeper arguments take `convert`'s path.
const RAW_DEPTH_MAX: usize = 16;
/// Integers beyond this are 64-bit cdata in Tarantool (`modules::big_int`).
const DBL_INT_MAX: i64 = 99_999_999_999_999;
/// Table slots reserved up front at most (the rest grow as they are filled).
const PREALLOC_MAX: u32 = 1024;

/// Keeps the array and map marks where the raw decoder finds them.
pub fn install(lua: &mlua::Lua) -> mlua::Result<()> {
    lua.set_named_registry_value("spindle.seq_mt", crate::modules::kind_meta(lua, "seq")?)?;
    lua.set_named_registry_value("spindle.map_mt", crate::modules::kind_meta(lua, "map")?)
}

/// Pushes the elements of the MessagePack array `packed` onto `l`: how many, or None with the
/// stack as it was.
///
/// # Safety
/// `l` is a Lua thread of the TX thread's state that is not running, in an `Unlimited`
/// section (so that no allocation fails and raises through Rust frames).
pub unsafe fn push_args(l: *mut ffi::lua_State, packed: &[u8]) -> Option<c_int> {
    let mut cur = packed;
    let n = mp::read_array_len(&mut cur).ok()?;
    let n = c_int::try_from(n).ok()?;
    // SAFETY: per this function's contract; every push is preceded by a stack check.
    unsafe {
        let base = ffi::lua_gettop(l);
        if ffi::lua_checkstack(l, n.saturating_add(4)) == 0 {
            return None;
        }
        for _ in 0..n {
            if !push_value(l, &mut cur, 0) {
                ffi::lua_settop(l, base);
                return None;
            }
        }
        Some(n)
    }
}

/// Pushes the next value of `cur`; false (with any partial value left for the caller to cut
/// off) if `convert` must decode it.
unsafe fn push_value(l: *mut ffi::lua_State, cur: &mut &[u8], depth: usize) -> bool {
    let Ok(head) = mp::read_value(cur) else {
        return false;
    };
    // SAFETY: the caller checked room for this slot (and a table's key-value pair).
    unsafe {
        match head {
            mp::Value::Nil => {
                ffi::lua_getfield(l, ffi::LUA_REGISTRYINDEX, NULL_KEY.as_ptr());
            }
            mp::Value::Bool(b) => ffi::lua_pushboolean(l, c_int::from(b)),
            mp::Value::Uint(u) => match i64::try_from(u) {
                Ok(i) if i <= DBL_INT_MAX => ffi::lua_pushnumber(l, i as f64),
                _ => return false,
            },
            mp::Value::Int(i) if i >= -DBL_INT_MAX => ffi::lua_pushnumber(l, i as f64),
            mp::Value::F32(f) => ffi::lua_pushnumber(l, f64::from(f)),
            mp::Value::F64(f) => ffi::lua_pushnumber(l, f),
            mp::Value::Str(s) | mp::Value::Bin(s) => {
                ffi::lua_pushlstring(l, s.as_ptr().cast(), s.len());
            }
            mp::Value::Array(n) => return push_array(l, cur, n, depth),
            mp::Value::Map(n) => return push_map(l, cur, n, depth),
            mp::Value::Int(_) | mp::Value::Ext(..) => return false,
        }
    }
    true
}

unsafe fn push_array(l: *mut ffi::lua_State, cur: &mut &[u8], n: u32, depth: usize) -> bool {
    if depth >= RAW_DEPTH_MAX {
        return false;
    }
    // SAFETY: one new slot for the table (checked by the caller) and two for its elements.
    unsafe {
        if ffi::lua_checkstack(l, 3) == 0 {
            return false;
        }
        ffi::lua_createtable(l, n.min(PREALLOC_MAX) as c_int, 0);
        set_mark(l, SEQ_MT_KEY);
        for i in 1..=n {
            if !push_value(l, cur, depth + 1) {
                return false;
            }
            ffi::lua_rawseti(l, -2, ffi::lua_Integer::from(i));
        }
    }
    true
}

unsafe fn push_map(l: *mut ffi::lua_State, cur: &mut &[u8], n: u32, depth: usize) -> bool {
    if depth >= RAW_DEPTH_MAX {
        return false;
    }
    // SAFETY: one new slot for the table (checked by the caller) and three for a pair.
    unsafe {
        if ffi::lua_checkstack(l, 4) == 0 {
            return false;
        }
        ffi::lua_createtable(l, 0, n.min(PREALLOC_MAX) as c_int);
        set_mark(l, MAP_MT_KEY);
        for _ in 0..n {
            // A key that could make `lua_rawset` raise (NaN) or be nil takes the other path.
            let plain_key = matches!(
                cur.first(),
                Some(0x00..=0x7f | 0xa0..=0xbf | 0xcc..=0xcf | 0xd9..=0xdb | 0xe0..=0xff)
            );
            if !plain_key || !push_value(l, cur, depth + 1) || !push_value(l, cur, depth + 1) {
                return false;
            }
            ffi::lua_rawset(l, -3);
        }
    }
    true
}

/// Gives the table on top its registry metatable `key`.
unsafe fn set_mark(l: *mut ffi::lua_State, key: &std::ffi::CStr) {
    // SAFETY: one push, popped by `lua_setmetatable`; the caller checked the room.
    unsafe {
        ffi::lua_getfield(l, ffi::LUA_REGISTRYINDEX, key.as_ptr());
        if ffi::lua_type(l, -1) == ffi::LUA_TTABLE {
            ffi::lua_setmetatable(l, -2);
        } else {
            ffi::lua_pop(l, 1);
        }
    }
}

/// The values in slots `from..=top` of `l` as a MessagePack sequence, or None if one needs
/// `convert` (which knows every value).
///
/// # Safety
/// `l` is a Lua thread of the TX thread's state that is not running, with room for a table
/// walk (`fast::STACK_NEEDED`).
pub unsafe fn encode_slots(l: *mut ffi::lua_State, from: c_int) -> Option<(u32, Vec<u8>)> {
    let mut data = Vec::new();
    // SAFETY: per this function's contract.
    unsafe {
        let top = ffi::lua_gettop(l);
        if ffi::lua_checkstack(l, crate::fast::STACK_NEEDED) == 0 {
            return None;
        }
        for i in from..=top {
            if !crate::fast::encode(l, i, &mut data, 0) {
                return None;
            }
        }
        Some((u32::try_from(top - from + 1).ok()?, data))
    }
}

#[cfg(test)]
mod tests {
    use mlua::{Lua, MultiValue, Value};

    use super::*;
    use crate::convert;

    fn lua() -> Lua {
        // SAFETY: the tests need `ffi` for box.NULL, which only the unsafe constructor loads.
        let l = unsafe { Lua::unsafe_new() };
        let null: Value = l
            .load("return require('ffi').cast('void *', 0)")
            .eval()
            .expect("null");
        l.set_named_registry_value("spindle.NULL", null)
            .expect("registry");
        l
    }

    /// Arguments, each encoded by `convert::encode`; all of them by `encode_slots`, if it
    /// could.
    type Encoded = (Vec<Vec<u8>>, Option<Vec<u8>>);

    /// The arguments of `wire` (a MessagePack array) through this path; None if the decoder
    /// gives up.
    fn through_raw(l: &Lua, wire: &[u8]) -> Option<Encoded> {
        let thread = l
            .create_thread(l.load("return").into_function().expect("chunk"))
            .expect("thread");
        let t = thread.state();
        // SAFETY: a thread that is not running, holding only its function.
        let n = unsafe { push_args(t, wire)? };
        // SAFETY: as above; the arguments are slots 2..=n+1.
        let slots = unsafe { encode_slots(t, 2) }.map(|(_, data)| data);
        // SAFETY: moves the `n` arguments to the stack `exec_raw` gives (room checked).
        let values = unsafe {
            l.exec_raw::<MultiValue>((), |s| {
                if ffi::lua_checkstack(s, n + 1) != 0 {
                    ffi::lua_xmove(t, s, n);
                }
            })
        }
        .expect("values");
        let each = values
            .iter()
            .map(|v| {
                let mut out = Vec::new();
                convert::encode(&mut out, v).expect("encode");
                out
            })
            .collect();
        Some((each, slots))
    }

    /// The same arguments through `convert`.
    fn through_convert(l: &Lua, wire: &[u8]) -> Vec<Vec<u8>> {
        let mut cur = wire;
        let n = mp::read_array_len(&mut cur).expect("array");
        (0..n)
            .map(|_| {
                let v = convert::decode(l, &mut cur).expect("decode");
                let mut out = Vec::new();
                convert::encode(&mut out, &v).expect("encode");
                out
            })
            .collect()
    }

    /// Tables Lua code builds (no metatable) encode here as `convert` encodes them: in
    /// order or not, with holes, with other keys, nested, past the short array header.
    #[test]
    fn lua_tables_as_convert_encodes_them() {
        let l = lua();
        for src in [
            "return {}",
            "return {1, 'two', {3, {4}}}",
            "local t = {} t[2] = 'b' t[1] = 'a' return t",
            "local t = {} t[3] = 'c' t[1] = 'a' return t",
            "return {1, nil, 3}",
            "return {1, 2, x = 3}",
            "return {[1.5] = 1}",
            "return {[0] = 'zero', 'one'}",
            "local t = {} for i = 1, 20 do t[i] = i * 1.5 end return t",
            "local t = {} for i = 1, 70000 do t[i] = i end return t",
            "local t = {} for i = 20, 1, -1 do t[i] = i end return t",
        ] {
            let value: Value = l.load(src).eval().expect(src);
            let mut expected = Vec::new();
            convert::encode(&mut expected, &value).expect("encode");
            let thread = l
                .create_thread(l.load("return").into_function().expect("chunk"))
                .expect("thread");
            let t = thread.state();
            // SAFETY: the thread is not running; the table moves onto its stack from the
            // one `exec_raw` gives, then its one slot is encoded.
            let got = unsafe {
                l.exec_raw::<()>(value, |s| ffi::lua_xmove(s, t, 1))
                    .expect("move");
                encode_slots(t, 2).map(|(_, data)| data)
            };
            assert_eq!(got, Some(expected), "{src}");
        }
    }

    #[test]
    fn gives_up_on_what_convert_knows_better() {
        let l = lua();
        for wire in [
            &[0x91, 0xcf, 0, 0, 0x5a, 0xf3, 0x10, 0x7a, 0x40, 0x00][..], // 10^14: 64-bit cdata
            &[0x91, 0xd4, 0x01, 0x00][..],                               // an extension
            &[0x91, 0x81, 0xd0, 0x80, 0x01][..],                         // an int8 map key
            &[0x91, 0x81, 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0, 0x01][..], // a NaN map key
        ] {
            assert!(through_raw(&l, wire).is_none(), "{wire:x?}");
        }
        for wire in [
            &[0x91, 0xcf, 0, 0, 0x5a, 0xf3, 0x10, 0x7a, 0x3f, 0xff][..], // 10^14 - 1
            &[0x91, 0x82, 0x01, 0xa1, b'a', 0xff, 0xa1, b'b'][..],       // {1: 'a', -1: 'b'}
            &[0x92, 0xc0, 0x93, 0xc3, 0xc0, 0xc4, 0x01, 0x00][..],       // nil, [true, nil, bin]
        ] {
            let (each, _) = through_raw(&l, wire).expect("plain values");
            assert_eq!(each, through_convert(&l, wire), "{wire:x?}");
        }
    }

    /// `v` with its integers brought within ±(10^14 - 1), which this path decodes itself.
    fn tame(v: &rmpv::Value) -> rmpv::Value {
        use rmpv::Value as V;
        match v {
            V::Integer(i) => V::from(i.as_i64().unwrap_or(0) % DBL_INT_MAX),
            V::Array(items) => V::Array(items.iter().map(tame).collect()),
            V::Map(pairs) => V::Map(pairs.iter().map(|(k, v)| (tame(k), tame(v))).collect()),
            other => other.clone(),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(512))]
        /// Arguments decoded here are the values `convert` makes, and results encoded here
        /// are the bytes `convert` writes.
        #[test]
        fn same_values_as_convert(args in proptest::collection::vec(
            convert::tests::value_strategy(), 0..5)) {
            let l = lua();
            let mut wire = Vec::new();
            let args = rmpv::Value::Array(args.iter().map(tame).collect());
            rmpv::encode::write_value(&mut wire, &args).expect("encode");
            let raw = through_raw(&l, &wire);
            proptest::prop_assert!(raw.is_some(), "plain values, yet the raw path gave up");
            if let Some((each, slots)) = raw {
                let expected = through_convert(&l, &wire);
                proptest::prop_assert_eq!(&each, &expected);
                if let Some(slots) = slots {
                    proptest::prop_assert_eq!(slots, expected.concat());
                }
            }
        }
    }
}
