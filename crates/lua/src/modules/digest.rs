//! `digest`: `md5`, `sha1`, `sha224`, `sha256`, `sha384`, `sha512` (raw and `_hex`),
//! `murmur` (MurmurHash3, seed 13), `guava` (consistent hash), `base64_encode` (72-column lines unless `nowrap`; `nopad`, `urlsafe`), `base64_decode`
//! (skipping what is not base64), `crc32` (CRC-32C without the final inversion, as
//! Tarantool computes it), `crc32_update`, `crc32.new()`, `urandom(n)`.

use base64::Engine;
use md5::Digest;
use mlua::{Lua, Table, Value};

pub fn install(lua: &Lua) -> mlua::Result<()> {
    super::preload_rust(lua, "digest", module)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash<D: Digest>(s: &[u8]) -> Vec<u8> {
    D::digest(s).to_vec()
}

type HashFn = fn(&[u8]) -> Vec<u8>;

fn add_hash(lua: &Lua, m: &Table, name: &'static str, f: HashFn) -> mlua::Result<()> {
    let usage = move |hex_form: bool| {
        format!(
            "Usage: digest.{name}{}(string)",
            if hex_form { "_hex" } else { "" }
        )
    };
    m.set(
        name,
        super::function(lua, move |lua, s: Value| match s {
            Value::String(s) => lua
                .create_string(f(&s.as_bytes()))
                .map_err(|e| super::message(&e)),
            _ => Err(usage(false)),
        })?,
    )?;
    m.set(
        format!("{name}_hex"),
        super::function(lua, move |_, s: Value| match s {
            Value::String(s) => Ok(hex(&f(&s.as_bytes()))),
            _ => Err(usage(true)),
        })?,
    )
}

/// MurmurHash3 (x86, 32-bit) of `data` with `seed`.
fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let mut chunks = data.chunks_exact(4);
    for block in &mut chunks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut k: u32 = 0;
        for (i, b) in tail.iter().enumerate() {
            k |= u32::from(*b) << (8 * i);
        }
        h ^= k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Tarantool's `digest.murmur` seed.
const MURMUR_SEED: u32 = 13;

/// Guava's consistent hash: the bucket in `0..buckets` of `state`.
fn guava(state: i64, buckets: i32) -> i32 {
    let mut state = state as u64;
    let mut candidate: i64 = 0;
    loop {
        state = state
            .wrapping_mul(2_862_933_555_777_941_757)
            .wrapping_add(1);
        let next_double = f64::from(((state >> 33) as i32).wrapping_add(1)) / 2_147_483_648.0;
        let next = ((candidate + 1) as f64 / next_double) as i64;
        if next >= 0 && next < i64::from(buckets) {
            candidate = next;
        } else {
            return candidate as i32;
        }
    }
}

/// Tarantool's CRC-32: CRC-32C from `crc`, without the final inversion.
fn crc32_update(crc: u32, data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!crc, data)
}

fn base64_encode(data: &[u8], opts: Option<Table>) -> String {
    let flag = |name: &str| {
        opts.as_ref()
            .and_then(|t| t.get::<Option<bool>>(name).ok().flatten())
            .unwrap_or(false)
    };
    let urlsafe = flag("urlsafe");
    use base64::engine::general_purpose as gp;
    let engine = match (urlsafe, urlsafe || flag("nopad")) {
        (true, _) => gp::URL_SAFE_NO_PAD,
        (false, true) => gp::STANDARD_NO_PAD,
        (false, false) => gp::STANDARD,
    };
    let text = engine.encode(data);
    if urlsafe || flag("nowrap") {
        return text;
    }
    let mut out = String::with_capacity(text.len() + text.len() / 72);
    for (i, c) in text.chars().enumerate() {
        if i > 0 && i % 72 == 0 {
            out.push('\n');
        }
        out.push(c);
    }
    out
}

/// Decodes whatever base64 characters (either alphabet) the text holds, ignoring the rest.
fn base64_decode(text: &[u8]) -> Vec<u8> {
    let mut bits: u32 = 0;
    let mut nbits = 0;
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for &c in text {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => continue,
        };
        bits = (bits << 6) | u32::from(v);
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    out
}

const CRC32_LUA: &str = r#"
local update = ...
local methods = {}
methods.__index = methods
function methods:update(s) self.value = update(self.value, s) end
function methods:result() return self.value end
function methods:copy() return setmetatable({value = self.value}, methods) end
return setmetatable({
    new = function() return setmetatable({value = 4294967295}, methods) end,
}, {__call = function(_, s) return update(4294967295, s) end})
"#;

/// `digest.murmur(s)` and `digest.murmur.new({seed = n})`, whose `update`s hash everything
/// fed so far.
const MURMUR_LUA: &str = r#"
local hash = ...
local methods = {}
methods.__index = methods
function methods:update(s) self.data = self.data .. s end
function methods:result() return hash(self.data, self.seed) end
function methods:copy() return setmetatable({data = self.data, seed = self.seed}, methods) end
return setmetatable({
    new = function(opts)
        return setmetatable({data = '', seed = opts and opts.seed or 13}, methods)
    end,
}, {__call = function(_, s) return hash(s) end})
"#;

fn module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    add_hash(lua, &m, "md5", hash::<md5::Md5>)?;
    add_hash(lua, &m, "sha1", hash::<sha1::Sha1>)?;
    add_hash(lua, &m, "sha224", hash::<sha2::Sha224>)?;
    add_hash(lua, &m, "sha256", hash::<sha2::Sha256>)?;
    add_hash(lua, &m, "sha384", hash::<sha2::Sha384>)?;
    add_hash(lua, &m, "sha512", hash::<sha2::Sha512>)?;
    m.set(
        "base64_encode",
        super::function(lua, |_, (s, opts): (Value, Option<Table>)| match s {
            Value::String(s) => Ok(base64_encode(&s.as_bytes(), opts)),
            _ => Err("Usage: digest.base64_encode(string)".to_string()),
        })?,
    )?;
    m.set(
        "base64_decode",
        super::function(lua, |lua, s: Value| match s {
            Value::String(s) => lua
                .create_string(base64_decode(&s.as_bytes()))
                .map_err(|e| super::message(&e)),
            _ => Err("Usage: digest.base64_decode(string)".to_string()),
        })?,
    )?;
    let update = super::function(lua, |_, (crc, s): (f64, mlua::String)| {
        Ok(crc32_update(crc as u32, &s.as_bytes()))
    })?;
    m.set("crc32_update", update.clone())?;
    m.set(
        "crc32",
        lua.load(CRC32_LUA)
            .set_name("=digest.crc32")
            .call::<Table>(update)?,
    )?;
    m.set(
        "murmur",
        lua.load(MURMUR_LUA)
            .set_name("=digest.murmur")
            .call::<Table>(lua.create_function(
                |_, (s, seed): (mlua::String, Option<u32>)| {
                    Ok(murmur3_32(&s.as_bytes(), seed.unwrap_or(MURMUR_SEED)))
                },
            )?)?,
    )?;
    m.set(
        "guava",
        lua.create_function(|_, (state, buckets): (i64, i32)| Ok(guava(state, buckets)))?,
    )?;
    m.set(
        "urandom",
        lua.create_function(|lua, n: usize| {
            let bytes: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
            lua.create_string(bytes)
        })?,
    )?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        assert_eq!(
            hex(&hash::<md5::Md5>(b"abc")),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(crc32_update(u32::MAX, b"abc"), 3_384_066_120);
        assert_eq!(base64_encode(b"abc", None), "YWJj");
        assert_eq!(base64_decode(b"YW Jj!!"), b"abc");
        assert_eq!(base64_decode(b"YWI"), b"ab");
        assert_eq!(murmur3_32(b"abc", MURMUR_SEED), 3_408_160_902);
        assert_eq!(murmur3_32(b"abcde", MURMUR_SEED), 3_580_978_379);
        assert_eq!(guava(12345, 100), 29);
        assert_eq!(guava(123_456_789, 1000), 294);
    }
}
