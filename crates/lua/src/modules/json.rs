//! `json`: `encode`, `decode`, `NULL`, `cfg{}` and `new()` as Tarantool 2.6's bundled
//! lua-cjson: compact output with `%.14g` numbers (`spindle_emit`'s printer), `{}` as `[]`,
//! integer keys as strings; decoding by cjson's tokens, with its error messages (`Expected
//! comma or array end but found T_INT on line 1 at character 4`), `null` as `box.NULL`,
//! objects and arrays tagged `map`/`seq` so they re-encode as the same kind.

use mlua::{Lua, MultiValue, Table, Value};
use spindle_emit::Value as Out;

use super::serializer::{self, Options};

pub fn install(lua: &Lua) -> mlua::Result<()> {
    super::preload_rust(lua, "json", instance)
}

const ARGS: &str = "bad argument #1 to '?' (expected 1 or 2 arguments)";

fn instance(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    let cfg = serializer::new_cfg(lua)?;
    m.set("cfg", cfg.clone())?;
    m.set("NULL", super::null(lua))?;
    m.set(
        "encode",
        super::function(lua, move |lua, args: MultiValue| {
            let opts = match (args.len(), args.get(1)) {
                (1, _) | (2, Some(Value::Nil)) => Options::from_cfg(&cfg),
                (2, Some(Value::Table(t))) => Options::with_overrides(lua, &cfg, t),
                (2, Some(_)) => return Err("attempt to index a number value".into()),
                _ => return Err(ARGS.into()),
            };
            let value = args.front().cloned().unwrap_or(Value::Nil);
            let text = encode(lua, &value, &opts)?;
            lua.create_string(text).map_err(|e| super::message(&e))
        })?,
    )?;
    let decode = super::function_at(lua, |lua, args: MultiValue| {
        let s = match (args.len(), args.front()) {
            (1 | 2, Some(Value::String(s))) => s.as_bytes().to_vec(),
            (1 | 2, Some(Value::Integer(i))) => i.to_string().into_bytes(),
            (1 | 2, Some(Value::Number(n))) => spindle_emit::fmt_g14(*n).into_bytes(),
            (1 | 2, _) => return Err("bad argument #1 to '?' (string expected)".into()),
            _ => return Err(ARGS.into()),
        };
        Decoder::new(lua, &s).document()
    })?;
    m.set("decode", decode)?;
    m.set("new", lua.create_function(|lua, ()| instance(lua))?)?;
    Ok(m)
}

/// `json.encode(value)` with the options `opts`.
pub fn encode(lua: &Lua, value: &Value, opts: &Options) -> Result<Vec<u8>, String> {
    let out = serializer::to_value(lua, value, opts)?;
    check_keys(&out, 0)?;
    Ok(spindle_emit::to_json(&out))
}

/// cjson accepts map keys that are strings or integral numbers only.
fn check_keys(v: &Out, depth: usize) -> Result<(), String> {
    let Out::Table(t) = v else { return Ok(()) };
    if depth > 1000 {
        return Err("Too high nest level".into());
    }
    use spindle_emit::Table as T;
    match t.as_ref() {
        T::Seq(items) => items.iter().try_for_each(|i| check_keys(i, depth + 1)),
        T::Map(entries) | T::Plain(entries) => {
            let is_array = matches!(t.as_ref(), T::Plain(_))
                && entries
                    .iter()
                    .all(|(k, _)| matches!(k, Out::Num(n) if *n >= 1.0 && n.fract() == 0.0));
            for (k, val) in entries {
                let ok = match k {
                    Out::Str(_) | Out::U64(_) | Out::I64(_) => true,
                    Out::Num(n) => n.fract() == 0.0 || is_array,
                    _ => false,
                };
                if !ok {
                    return Err("table key must be a number or string".into());
                }
                check_keys(val, depth + 1)?;
            }
            Ok(())
        }
    }
}

/// cjson's tokens.
#[derive(Clone, Debug, PartialEq)]
enum Tok {
    ObjBegin,
    ObjEnd,
    ArrBegin,
    ArrEnd,
    Str(Vec<u8>),
    Int(String),
    Number(f64),
    Bool(bool),
    Null,
    Colon,
    Comma,
    End,
    Error(&'static str),
}

impl Tok {
    fn name(&self) -> &'static str {
        match self {
            Tok::ObjBegin => "T_OBJ_BEGIN",
            Tok::ObjEnd => "T_OBJ_END",
            Tok::ArrBegin => "T_ARR_BEGIN",
            Tok::ArrEnd => "T_ARR_END",
            Tok::Str(_) => "T_STRING",
            Tok::Int(_) => "T_INT",
            Tok::Number(_) => "T_NUMBER",
            Tok::Bool(_) => "T_BOOLEAN",
            Tok::Null => "T_NULL",
            Tok::Colon => "T_COLON",
            Tok::Comma => "T_COMMA",
            Tok::End => "T_END",
            Tok::Error(e) => e,
        }
    }
}

const MAX_DEPTH: usize = 128;

struct Decoder<'a> {
    lua: &'a Lua,
    s: &'a [u8],
    pos: usize,
    line: usize,
    line_start: usize,
    /// Where the last token began (its line and column go into messages).
    at: (usize, usize),
    depth: usize,
}

impl<'a> Decoder<'a> {
    fn new(lua: &'a Lua, s: &'a [u8]) -> Self {
        Decoder {
            lua,
            s,
            pos: 0,
            line: 1,
            line_start: 0,
            at: (1, 1),
            depth: 0,
        }
    }

    fn byte(&self, i: usize) -> u8 {
        self.s.get(i).copied().unwrap_or(0)
    }

    fn mark(&mut self, pos: usize) {
        self.at = (self.line, pos.saturating_sub(self.line_start) + 1);
    }

    fn fail(&self, expected: &str, found: &Tok) -> String {
        format!(
            "Expected {expected} but found {} on line {} at character {}",
            found.name(),
            self.at.0,
            self.at.1
        )
    }

    fn token(&mut self) -> Tok {
        while let Some(&c) = self.s.get(self.pos) {
            match c {
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'\n' => {
                    self.pos += 1;
                    self.line += 1;
                    self.line_start = self.pos;
                }
                _ => break,
            }
        }
        self.mark(self.pos);
        let Some(&c) = self.s.get(self.pos) else {
            return Tok::End;
        };
        let single = match c {
            b'{' => Some(Tok::ObjBegin),
            b'}' => Some(Tok::ObjEnd),
            b'[' => Some(Tok::ArrBegin),
            b']' => Some(Tok::ArrEnd),
            b':' => Some(Tok::Colon),
            b',' => Some(Tok::Comma),
            _ => None,
        };
        if let Some(t) = single {
            self.pos += 1;
            return t;
        }
        match c {
            b'"' => self.string(),
            b'-' | b'0'..=b'9' | b'i' | b'n' => {
                if let Some(t) = self.number() {
                    return t;
                }
                self.word()
            }
            _ => self.word(),
        }
    }

    fn word(&mut self) -> Tok {
        for (text, tok) in [
            (&b"true"[..], Tok::Bool(true)),
            (b"false", Tok::Bool(false)),
            (b"null", Tok::Null),
        ] {
            if self.s[self.pos..].starts_with(text) {
                self.pos += text.len();
                return tok;
            }
        }
        Tok::Error("invalid token")
    }

    /// A number as cjson reads it with `strtod`: `nan`, `inf`, `-inf` included, no hex, no
    /// leading zeros.
    fn number(&mut self) -> Option<Tok> {
        let rest = &self.s[self.pos..];
        for (text, value) in [
            (&b"-inf"[..], f64::NEG_INFINITY),
            (b"inf", f64::INFINITY),
            (b"nan", f64::NAN),
            (b"-nan", f64::NAN),
        ] {
            if rest.starts_with(text) {
                self.pos += text.len();
                return Some(Tok::Number(value));
            }
        }
        let digits_at = usize::from(rest.first() == Some(&b'-'));
        let first = rest.get(digits_at).copied().unwrap_or(0);
        if !first.is_ascii_digit() {
            return None;
        }
        if first == b'0' && matches!(rest.get(digits_at + 1), Some(b'0'..=b'9' | b'x' | b'X')) {
            return None;
        }
        let mut end = digits_at;
        while rest.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        let mut is_int = true;
        if rest.get(end) == Some(&b'.') {
            is_int = false;
            end += 1;
            while rest.get(end).is_some_and(u8::is_ascii_digit) {
                end += 1;
            }
        }
        if matches!(rest.get(end), Some(b'e' | b'E')) {
            let mut e = end + 1;
            if matches!(rest.get(e), Some(b'+' | b'-')) {
                e += 1;
            }
            if rest.get(e).is_some_and(u8::is_ascii_digit) {
                is_int = false;
                while rest.get(e).is_some_and(u8::is_ascii_digit) {
                    e += 1;
                }
                end = e;
            }
        }
        let text = String::from_utf8_lossy(rest.get(..end)?).into_owned();
        self.pos += end;
        if is_int {
            return Some(Tok::Int(text));
        }
        Some(Tok::Number(text.parse().unwrap_or(f64::NAN)))
    }

    fn string(&mut self) -> Tok {
        let mut out = Vec::new();
        self.pos += 1;
        loop {
            let Some(&c) = self.s.get(self.pos) else {
                self.mark(self.pos);
                return Tok::Error("unexpected end of string");
            };
            match c {
                b'"' => {
                    self.pos += 1;
                    return Tok::Str(out);
                }
                b'\\' => {
                    let esc_at = self.pos;
                    let e = self.byte(self.pos + 1);
                    let simple = match e {
                        b'"' => Some(b'"'),
                        b'\\' => Some(b'\\'),
                        b'/' => Some(b'/'),
                        b'b' => Some(8),
                        b'f' => Some(12),
                        b'n' => Some(b'\n'),
                        b'r' => Some(b'\r'),
                        b't' => Some(b'\t'),
                        _ => None,
                    };
                    if let Some(b) = simple {
                        out.push(b);
                        self.pos += 2;
                    } else if e == b'u' {
                        match self.unicode_escape() {
                            Some(ch) => {
                                let mut buf = [0u8; 4];
                                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                            }
                            None => {
                                self.mark(esc_at);
                                return Tok::Error("invalid unicode escape code");
                            }
                        }
                    } else {
                        self.mark(esc_at);
                        return Tok::Error("invalid escape code");
                    }
                }
                _ => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let text = self.s.get(at..at + 4)?;
        u32::from_str_radix(std::str::from_utf8(text).ok()?, 16).ok()
    }

    /// `\uXXXX`, with a following low surrogate for a high one.
    fn unicode_escape(&mut self) -> Option<char> {
        let hi = self.hex4(self.pos + 2)?;
        self.pos += 6;
        if (0xD800..0xDC00).contains(&hi) {
            if self.byte(self.pos) != b'\\' || self.byte(self.pos + 1) != b'u' {
                return None;
            }
            let lo = self.hex4(self.pos + 2)?;
            if !(0xDC00..0xE000).contains(&lo) {
                return None;
            }
            self.pos += 6;
            return char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00));
        }
        char::from_u32(hi)
    }

    fn document(&mut self) -> Result<Value, String> {
        let first = self.token();
        let v = self.value(first)?;
        let end = self.token();
        if end != Tok::End {
            return Err(self.fail("the end", &end));
        }
        Ok(v)
    }

    fn lua_err(e: mlua::Error) -> String {
        super::message(&e)
    }

    fn value(&mut self, tok: Tok) -> Result<Value, String> {
        let lua = self.lua;
        match tok {
            Tok::Str(s) => lua
                .create_string(s)
                .map(Value::String)
                .map_err(Self::lua_err),
            Tok::Int(text) => int_value(lua, &text).map_err(Self::lua_err),
            Tok::Number(n) => Ok(Value::Number(n)),
            Tok::Bool(b) => Ok(Value::Boolean(b)),
            Tok::Null => Ok(super::null(lua)),
            Tok::ObjBegin => self.nested(Self::object),
            Tok::ArrBegin => self.nested(Self::array),
            other => Err(self.fail("value", &other)),
        }
    }

    fn nested(&mut self, f: fn(&mut Self) -> Result<Value, String>) -> Result<Value, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!(
                "Found too many nested data structures ({}) on line {} at character {}",
                self.depth, self.at.0, self.at.1
            ));
        }
        let v = f(self);
        self.depth -= 1;
        v
    }

    fn object(&mut self) -> Result<Value, String> {
        let t = self.lua.create_table().map_err(Self::lua_err)?;
        t.set_metatable(Some(
            super::yaml::kind_meta(self.lua, "map").map_err(Self::lua_err)?,
        ))
        .map_err(Self::lua_err)?;
        let mut tok = self.token();
        if tok == Tok::ObjEnd {
            return Ok(Value::Table(t));
        }
        loop {
            let Tok::Str(key) = tok else {
                return Err(self.fail("object key string", &tok));
            };
            let colon = self.token();
            if colon != Tok::Colon {
                return Err(self.fail("colon", &colon));
            }
            let next = self.token();
            let v = self.value(next)?;
            t.raw_set(self.lua.create_string(key).map_err(Self::lua_err)?, v)
                .map_err(Self::lua_err)?;
            match self.token() {
                Tok::ObjEnd => return Ok(Value::Table(t)),
                Tok::Comma => tok = self.token(),
                other => return Err(self.fail("comma or object end", &other)),
            }
        }
    }

    fn array(&mut self) -> Result<Value, String> {
        let t = self.lua.create_table().map_err(Self::lua_err)?;
        t.set_metatable(Some(
            super::yaml::kind_meta(self.lua, "seq").map_err(Self::lua_err)?,
        ))
        .map_err(Self::lua_err)?;
        let mut tok = self.token();
        if tok == Tok::ArrEnd {
            return Ok(Value::Table(t));
        }
        let mut i = 1;
        loop {
            let v = self.value(tok)?;
            t.raw_set(i, v).map_err(Self::lua_err)?;
            i += 1;
            match self.token() {
                Tok::ArrEnd => return Ok(Value::Table(t)),
                Tok::Comma => tok = self.token(),
                other => return Err(self.fail("comma or array end", &other)),
            }
        }
    }
}

/// An integer token: a Lua number up to ±(10^14 - 1), a 64-bit cdata beyond (as Tarantool
/// pushes integers), a double when it does not fit 64 bits.
fn int_value(lua: &Lua, text: &str) -> mlua::Result<Value> {
    if let Ok(i) = text.parse::<i64>() {
        if i.unsigned_abs() > 99_999_999_999_999 {
            return if i < 0 {
                super::int64(lua, i)
            } else {
                super::uint64(lua, i as u64)
            };
        }
        return Ok(Value::Number(i as f64));
    }
    if let Ok(u) = text.parse::<u64>() {
        return super::uint64(lua, u);
    }
    Ok(Value::Number(text.parse().unwrap_or(f64::NAN)))
}
