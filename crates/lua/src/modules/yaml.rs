//! `yaml`: `encode`, `decode`, `NULL`, `cfg{}` and `new()` with Tarantool 2.6's output, and
//! the console's formatter of return values ([`console_format`]). Printing is
//! `spindle_emit`'s port of lyaml over libyaml's emitter; parsing is `yaml-rust2`, with
//! plain scalars resolved as Tarantool resolves them (`~`/`null`, `true`/`yes`,
//! `false`/`no`, numbers Lua reads) and collections tagged `seq`/`map` so they re-encode as
//! the same kind.

use mlua::{Lua, MultiValue, Table, Value};
use spindle_emit::Value as Out;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::serializer::{self, Options};

pub fn install(lua: &Lua) -> mlua::Result<()> {
    super::preload_rust(lua, "yaml", instance)
}

/// A `yaml` table with its own `cfg`: the module itself, or what `yaml.new()` returns.
fn instance(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    let cfg = serializer::new_cfg(lua)?;
    m.set("cfg", cfg.clone())?;
    m.set("NULL", super::null(lua))?;
    m.set(
        "encode",
        super::function(lua, move |lua, args: MultiValue| {
            let value = match (args.len(), args.get(1)) {
                (1, _) | (2, Some(Value::Table(_))) => args.front().cloned().unwrap_or(Value::Nil),
                _ => return Err(USAGE.to_string()),
            };
            let opts = Options {
                cycle_as_text: true,
                ..Options::from_cfg(&cfg)
            };
            let text = encode(lua, &value, &opts)?;
            lua.create_string(text).map_err(|e| super::message(&e))
        })?,
    )?;
    m.set(
        "decode",
        super::function(lua, |lua, s: Value| match s {
            Value::String(s) => decode(lua, &s.to_string_lossy()),
            _ => Err("yaml.decode: argument must be a string".to_string()),
        })?,
    )?;
    m.set("new", lua.create_function(|lua, ()| instance(lua))?)?;
    Ok(m)
}

const USAGE: &str = "Usage: encode(object, {tag_prefix = <string>, tag_handle = <string>})";

/// `yaml.encode(value)` with the options `opts`: one document, `---` to `...\n`.
pub fn encode(lua: &Lua, value: &Value, opts: &Options) -> Result<Vec<u8>, String> {
    let out = serializer::to_value(lua, value, opts)?;
    spindle_emit::to_yaml_document(&out).map_err(|e| e.to_string())
}

/// The options of the console's YAML formatter: what no format holds prints as its
/// `tostring` (`'function: 0x...'`).
fn console_options() -> Options {
    Options {
        use_tostring: true,
        invalid_as_nil: true,
        cycle_as_text: true,
        ..Options::default()
    }
}

/// What Tarantool's console prints for the return values `values` of one request: a YAML
/// document with one list item per value (`---\n- 1\n- null\n...\n`), `---\n...\n` for none.
pub fn console_format(lua: &Lua, values: &[Value]) -> String {
    if values.is_empty() {
        return "---\n...\n".to_string();
    }
    let opts = console_options();
    let mut items = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        let item = serializer::to_value(lua, v, &opts)
            .unwrap_or_else(|e| Out::plain(vec![(Out::str("error"), Out::Str(e.into_bytes()))]));
        items.push((Out::Num((i + 1) as f64), item));
    }
    match spindle_emit::to_yaml_document(&Out::plain(items)) {
        Ok(text) => String::from_utf8_lossy(&text).into_owned(),
        Err(e) => format!("---\n- error: {e}\n...\n"),
    }
}

/// Events of the first document, in order.
#[derive(Default)]
struct Events(Vec<Event>);

impl MarkedEventReceiver for Events {
    fn on_event(&mut self, ev: Event, _mark: Marker) {
        self.0.push(ev);
    }
}

/// `yaml.decode(text)`: one value per document; nothing for an empty stream.
fn decode(lua: &Lua, text: &str) -> Result<MultiValue, String> {
    if nesting_bound(text) > MAX_NESTING {
        return Err("yaml.decode: too deep".into());
    }
    let text = without_document_ends(text);
    let mut events = Events::default();
    Parser::new_from_str(&text)
        .load(&mut events, true)
        .map_err(|e| e.to_string())?;
    let mut b = Builder {
        lua,
        events: &events.0,
        pos: 0,
        anchors: Vec::new(),
    };
    let mut docs = Vec::new();
    while let Some(ev) = b.events.get(b.pos) {
        b.pos += 1;
        if matches!(ev, Event::DocumentStart) {
            docs.push(b.node(0).map_err(|e| super::message(&e))?);
        }
    }
    Ok(MultiValue::from_vec(docs))
}

/// `text` without the document end markers (`...`) that the end of the text or a `---` follows:
/// they add nothing there, and the parser refuses one right after a block scalar with an
/// indentation indicator (`--- |2+` then empty lines, what `yaml.encode('\n\n')` gives).
fn without_document_ends(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("\n...") {
        return std::borrow::Cow::Borrowed(text);
    }
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = String::with_capacity(text.len());
    for (i, line) in lines.iter().enumerate() {
        let is_end = i > 0 && line.trim_end() == "...";
        let next = lines
            .get(i + 1..)
            .unwrap_or_default()
            .iter()
            .find(|l| !l.trim().is_empty());
        if is_end && next.is_none_or(|l| l.starts_with("---")) {
            continue;
        }
        out.push_str(line);
    }
    std::borrow::Cow::Owned(out)
}

/// Deepest nesting decoded: the parser and the builder recurse per level on the fiber's
/// 512 KiB stack.
const MAX_NESTING: usize = 256;

/// An upper bound of a document's block nesting, computed before parsing (the parser itself
/// does not bound it): a level needs a column of indentation or an indicator (`- `, `? `,
/// `: `) on its line. Flow nesting the parser bounds itself.
fn nesting_bound(text: &str) -> usize {
    text.lines()
        .map(|line| {
            let indent = line.len() - line.trim_start_matches(' ').len();
            let b = line.as_bytes();
            let indicators = b
                .windows(2)
                .filter(|w| matches!(w, [b'-' | b'?' | b':', b' ']))
                .count()
                + usize::from(matches!(b.last(), Some(b'-' | b'?' | b':')));
            indent + indicators
        })
        .max()
        .unwrap_or(0)
}

struct Builder<'a> {
    lua: &'a Lua,
    events: &'a [Event],
    pos: usize,
    anchors: Vec<(usize, Value)>,
}

impl Builder<'_> {
    fn next(&mut self) -> Option<&Event> {
        let ev = self.events.get(self.pos);
        self.pos += 1;
        ev
    }

    fn remember(&mut self, anchor: usize, v: &Value) {
        if anchor != 0 {
            self.anchors.push((anchor, v.clone()));
        }
    }

    fn node(&mut self, depth: usize) -> mlua::Result<Value> {
        // Nesting costs stack on the fiber (512 KiB); deeper documents are refused.
        if depth > MAX_NESTING {
            return Err(mlua::Error::runtime("yaml.decode: too deep"));
        }
        let Some(ev) = self.next().cloned() else {
            return Ok(Value::Nil);
        };
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let v = self.scalar(&text, style, tag.as_ref())?;
                self.remember(anchor, &v);
                Ok(v)
            }
            Event::SequenceStart(anchor, _) => {
                let t = self.lua.create_table()?;
                t.set_metatable(Some(kind_meta(self.lua, "seq")?))?;
                self.remember(anchor, &Value::Table(t.clone()));
                let mut i = 1;
                while !matches!(self.events.get(self.pos), Some(Event::SequenceEnd) | None) {
                    t.raw_set(i, self.node(depth + 1)?)?;
                    i += 1;
                }
                self.pos += 1;
                Ok(Value::Table(t))
            }
            Event::MappingStart(anchor, _) => {
                let t = self.lua.create_table()?;
                t.set_metatable(Some(kind_meta(self.lua, "map")?))?;
                self.remember(anchor, &Value::Table(t.clone()));
                while !matches!(self.events.get(self.pos), Some(Event::MappingEnd) | None) {
                    let k = self.node(depth + 1)?;
                    let v = self.node(depth + 1)?;
                    if !matches!(k, Value::Nil) {
                        t.raw_set(k, v)?;
                    }
                }
                self.pos += 1;
                Ok(Value::Table(t))
            }
            Event::Alias(id) => Ok(self
                .anchors
                .iter()
                .rev()
                .find(|(a, _)| *a == id)
                .map(|(_, v)| v.clone())
                .unwrap_or(Value::Nil)),
            _ => Ok(Value::Nil),
        }
    }

    fn scalar(&self, text: &str, style: TScalarStyle, tag: Option<&Tag>) -> mlua::Result<Value> {
        let lua = self.lua;
        if let Some(tag) = tag {
            if tag.suffix.ends_with("binary") {
                use base64::Engine;
                let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(clean)
                    .map_err(|e| mlua::Error::runtime(format!("yaml.decode: bad !!binary: {e}")))?;
                return Ok(Value::String(lua.create_string(bytes)?));
            }
        }
        if style != TScalarStyle::Plain {
            return Ok(Value::String(lua.create_string(text)?));
        }
        Ok(match text {
            "~" | "null" => super::null(lua),
            "true" | "yes" => Value::Boolean(true),
            "false" | "no" => Value::Boolean(false),
            _ if spindle_emit::lua_isnumber(text.as_bytes()) => number(lua, text)?,
            _ => Value::String(lua.create_string(text)?),
        })
    }
}

/// A plain scalar Lua reads as a number: integers beyond ±(10^14 - 1) become int64 cdata, as
/// Tarantool decodes them.
fn number(lua: &Lua, text: &str) -> mlua::Result<Value> {
    let trimmed = text.trim();
    if let Ok(i) = trimmed.parse::<i64>() {
        if i.unsigned_abs() > 99_999_999_999_999 {
            return super::int64(lua, i);
        }
    } else if let Ok(u) = trimmed.parse::<u64>() {
        return super::uint64(lua, u);
    }
    let tonumber: mlua::Function = lua.named_registry_value("spindle.tonumber")?;
    tonumber.call::<Value>(text)
}

/// The metatables decoded arrays and maps share, kept where lookups are cheap.
struct Marks {
    seq: Table,
    map: Table,
}

/// The shared metatable `{__serialize = kind}` (`seq` or `map`) decoded collections carry.
pub fn kind_meta(lua: &Lua, kind: &str) -> mlua::Result<Table> {
    if let Some(marks) = lua.app_data_ref::<Marks>() {
        return Ok(if kind == "seq" {
            marks.seq.clone()
        } else {
            marks.map.clone()
        });
    }
    let make = |kind: &str| -> mlua::Result<Table> {
        let t = lua.create_table()?;
        t.raw_set("__serialize", kind)?;
        Ok(t)
    };
    let marks = Marks {
        seq: make("seq")?,
        map: make("map")?,
    };
    let t = if kind == "seq" {
        marks.seq.clone()
    } else {
        marks.map.clone()
    };
    lua.set_app_data(marks);
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lua() -> Lua {
        // SAFETY: loads LuaJIT's `ffi`, which the 64-bit helpers use; the state is local to
        // the test.
        let lua = unsafe { Lua::unsafe_new() };
        crate::modules::install(&lua).expect("install");
        lua
    }

    fn fmt(lua: &Lua, src: &str) -> String {
        let values: MultiValue = lua.load(src).eval().expect("eval");
        console_format(lua, &values.into_iter().collect::<Vec<_>>())
    }

    #[test]
    fn console_prints_values_as_a_list() {
        let l = lua();
        assert_eq!(fmt(&l, "return 1"), "---\n- 1\n...\n");
        assert_eq!(fmt(&l, "return"), "---\n...\n");
        assert_eq!(
            fmt(&l, "return 1, nil, 'x'"),
            "---\n- 1\n- null\n- x\n...\n"
        );
        assert_eq!(fmt(&l, "return {}"), "---\n- []\n...\n");
        assert_eq!(fmt(&l, "return ''"), "---\n-\n...\n");
        assert_eq!(
            fmt(&l, "return 10/3, 2^64, 0.1 + 0.2"),
            "---\n- 3.3333333333333\n- 1.844674407371e+19\n- 0.3\n...\n"
        );
        assert_eq!(
            fmt(&l, "return 'multi\\nline'"),
            "---\n- 'multi\n\n  line'\n...\n"
        );
        assert_eq!(
            fmt(&l, "return {a = {b = 'c'}}"),
            "---\n- a:\n    b: c\n...\n"
        );
        assert!(fmt(&l, "return function() end").starts_with("---\n- 'function: 0x"));
        let globals = fmt(&l, "return _G");
        assert!(globals.contains("_G: 'table: 0x"), "{globals}");
    }

    /// Replies of Tarantool 2.6's console (`require('console').eval(...)`) to the same values.
    #[test]
    fn console_matches_tarantool() {
        let l = lua();
        for (src, want) in [
            ("return nil, nil", "---\n- null\n- null\n...\n"),
            (
                "return 1, nil, 'x', box_null",
                "---\n- 1\n- null\n- x\n- null\n...\n",
            ),
            (
                "return setmetatable({}, {__serialize = function() return nil end})",
                "---\n- null\n...\n",
            ),
            (
                "return setmetatable({1}, {__serialize = function() return 's' end})",
                "---\n- s\n...\n",
            ),
            (
                "return 1/0, -1/0, 0/0, 10/3",
                "---\n- inf\n- -inf\n- -nan\n- 3.3333333333333\n...\n",
            ),
            ("return 'a\\n\\nb'", "---\n- |-\n  a\n\n  b\n...\n"),
            (
                "return setmetatable({'a\\n\\nb', 'x\\ty', '\\n\\n'}, {__serialize = 'seq'})",
                "---\n- ['a\n\n\n    b', \"x\\ty\", '\n\n\n    ']\n...\n",
            ),
            ("return 1ULL, 2LL", "---\n- 1\n- 2\n...\n"),
            ("return require('ffi').new('int', 5)", "---\n- 5\n...\n"),
            (
                "return setmetatable({}, {__index = function() error('x') end})",
                "---\n- []\n...\n",
            ),
            ("return {1, 2, 3}", "---\n- - 1\n  - 2\n  - 3\n...\n"),
            (
                "return {a = 1, b = {c = 'd'}}",
                "---\n- a: 1\n  b:\n    c: d\n...\n",
            ),
            (
                "return 2^63, -0.0",
                "---\n- 9223372036854775808\n- 0\n...\n",
            ),
        ] {
            let src = src.replace("box_null", "require('ffi').cast('void *', 0)");
            let got = fmt(&l, &src);
            // Only a two-key table's order could differ; these have one key or a fixed order.
            if src.contains("a = 1, b") {
                assert!(
                    got == want || got == "---\n- b:\n    c: d\n  a: 1\n...\n",
                    "{src}: {got}"
                );
            } else {
                assert_eq!(got, want, "{src}");
            }
        }
        let arr = fmt(&l, "return require('ffi').new('int[2]')");
        assert!(arr.starts_with("---\n- 'cdata<int [2]>: 0x"), "{arr}");
    }

    #[test]
    fn strings_that_read_as_other_types_are_quoted() {
        let l = lua();
        assert_eq!(
            fmt(
                &l,
                "return '1', 'true', 'null', 'yes', '~', 'No', ' x', 'a: b'"
            ),
            "---\n- '1'\n- 'true'\n- 'null'\n- 'yes'\n- '~'\n- No\n- ' x'\n- 'a: b'\n...\n"
        );
    }

    #[test]
    fn decode_resolves_plain_scalars() {
        let l = lua();
        let v: Value = l
            .load("return require('yaml').decode('[1, \"2\", yes, ~, x, 1.5]')")
            .eval()
            .expect("decode");
        let t = v.as_table().expect("table");
        assert_eq!(t.raw_get::<f64>(1).expect("1"), 1.0);
        assert_eq!(t.raw_get::<String>(2).expect("2"), "2");
        assert!(t.raw_get::<bool>(3).expect("3"));
        assert_eq!(t.raw_get::<String>(5).expect("5"), "x");
        assert_eq!(t.raw_get::<f64>(6).expect("6"), 1.5);
    }
}
