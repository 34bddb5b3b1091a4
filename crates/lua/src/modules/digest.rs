//! `digest`: `md5`, `sha1`, `sha224`, `sha256`, `sha384`, `sha512` (raw and `_hex`),
//! `base64_encode` (72-column lines unless `nowrap`; `nopad`, `urlsafe`), `base64_decode`
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
    }
}
