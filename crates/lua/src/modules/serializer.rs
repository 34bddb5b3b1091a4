//! What `yaml`, `json` and `msgpack` share: a serializer's options (`cfg{}`, Tarantool's
//! `luaL_serializer`) and the conversion of a Lua value into the model the emitters of
//! `spindle_emit` print (`luaL_tofield`): numbers, 64-bit cdata, `box.NULL`, tuples, tables
//! with their `__serialize` hints, and what happens to values no format can hold.

use std::cell::{Cell, RefCell};

use mlua::{Function, Lua, Table, Value};
use spindle_emit::Value as Out;

use crate::convert;

/// Deepest nesting a serializer follows (`encode_max_depth`).
const MAX_DEPTH: usize = 128;

/// The options of one serializer instance, read from its `cfg` table at each call.
#[derive(Clone, Debug)]
pub struct Options {
    pub use_tostring: bool,
    pub invalid_as_nil: bool,
    pub load_metatables: bool,
    pub max_depth: usize,
    /// What a table that contains itself becomes: YAML (whose Tarantool printer uses
    /// anchors) prints its `tostring`; JSON and MessagePack fail as Tarantool's do when the
    /// nesting runs out.
    pub cycle_as_text: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            use_tostring: false,
            invalid_as_nil: false,
            load_metatables: true,
            max_depth: MAX_DEPTH,
            cycle_as_text: false,
        }
    }
}

impl Options {
    /// The options of `cfg`, with those `overrides` sets taking precedence (`json.encode(v,
    /// {encode_use_tostring = true})`).
    pub fn with_overrides(lua: &Lua, cfg: &Table, overrides: &Table) -> Options {
        let Ok(copy) = lua.create_table() else {
            return Options::from_cfg(cfg);
        };
        for (k, v) in cfg.pairs::<Value, Value>().flatten() {
            let _ = copy.raw_set(k, v);
        }
        for (k, v) in overrides.pairs::<Value, Value>().flatten() {
            let _ = copy.raw_set(k, v);
        }
        Options::from_cfg(&copy)
    }

    /// The options a `cfg` table holds now.
    pub fn from_cfg(cfg: &Table) -> Options {
        let flag = |name: &str, default: bool| -> bool {
            match cfg.raw_get::<Value>(name) {
                Ok(Value::Boolean(b)) => b,
                Ok(Value::Integer(i)) => i != 0,
                Ok(Value::Number(n)) => n != 0.0,
                _ => default,
            }
        };
        let d = Options::default();
        // Deeper nesting than the default would recurse off the fiber's stack.
        let max_depth = match cfg.raw_get::<Value>("encode_max_depth") {
            Ok(Value::Integer(i)) if i > 0 => i as usize,
            Ok(Value::Number(n)) if n >= 1.0 => n as usize,
            _ => d.max_depth,
        }
        .min(MAX_DEPTH);
        Options {
            use_tostring: flag("encode_use_tostring", d.use_tostring),
            invalid_as_nil: flag("encode_invalid_as_nil", d.invalid_as_nil),
            load_metatables: flag("encode_load_metatables", d.load_metatables),
            max_depth,
            cycle_as_text: false,
        }
    }
}

const CFG_LUA: &str = r#"
local defaults = ...
local cfg = {}
for k, v in pairs(defaults) do cfg[k] = v end
return setmetatable(cfg, {
    __call = function(self, opts)
        if type(opts) ~= 'table' then
            error('Usage: cfg({option = value, ...})', 2)
        end
        for k, v in pairs(opts) do
            if rawget(self, k) ~= nil then rawset(self, k, v) end
        end
    end,
})
"#;

/// A new `cfg` table with Tarantool's serializer defaults; calling it (`m.cfg{k = v}`)
/// changes options, reading a field gives an option's value.
pub fn new_cfg(lua: &Lua) -> mlua::Result<Table> {
    let defaults = lua.create_table()?;
    for (k, v) in [
        ("encode_sparse_convert", Value::Boolean(true)),
        ("encode_sparse_ratio", Value::Integer(2)),
        ("encode_sparse_safe", Value::Integer(10)),
        ("encode_max_depth", Value::Integer(MAX_DEPTH as i64)),
        ("encode_deep_as_nil", Value::Boolean(false)),
        ("encode_invalid_numbers", Value::Boolean(true)),
        ("encode_number_precision", Value::Integer(14)),
        ("encode_load_metatables", Value::Boolean(true)),
        ("encode_use_tostring", Value::Boolean(false)),
        ("encode_invalid_as_nil", Value::Boolean(false)),
        ("decode_invalid_numbers", Value::Boolean(true)),
        ("decode_save_metatables", Value::Boolean(true)),
        ("decode_max_depth", Value::Integer(MAX_DEPTH as i64)),
    ] {
        defaults.raw_set(k, v)?;
    }
    lua.load(CFG_LUA)
        .set_name("=serializer.cfg")
        .call::<Table>(defaults)
}

/// A conversion that failed: the message Lua's `error` gets.
pub type Failure = String;

/// `v` as the emitters' value model.
pub fn to_value(lua: &Lua, v: &Value, opts: &Options) -> Result<Out, Failure> {
    Converter {
        lua,
        opts,
        path: RefCell::new(Vec::new()),
        budget: Cell::new(MAX_NODES),
    }
    .value(v, 0)
}

/// The most values one conversion makes: tables shared many times over could otherwise
/// expand without bound.
const MAX_NODES: usize = 10_000_000;

struct Converter<'a> {
    lua: &'a Lua,
    opts: &'a Options,
    /// The tables being converted, outermost first (a table met again among them is a cycle).
    path: RefCell<Vec<*const std::ffi::c_void>>,
    budget: Cell<usize>,
}

impl Converter<'_> {
    fn value(&self, v: &Value, depth: usize) -> Result<Out, Failure> {
        let left = self.budget.get();
        if left == 0 {
            return Err("too many values to serialize".into());
        }
        self.budget.set(left - 1);
        Ok(match v {
            Value::Nil => Out::Null,
            Value::Boolean(b) => Out::Bool(*b),
            Value::Integer(i) => Out::Num(*i as f64),
            Value::Number(n) => Out::Num(*n),
            Value::String(s) => Out::Str(s.as_bytes().to_vec()),
            Value::LightUserData(p) if p.0.is_null() => Out::Null,
            Value::Table(t) => {
                if depth >= self.opts.max_depth {
                    return Err("Too high nest level".into());
                }
                let ptr = t.to_pointer();
                if self.path.borrow().contains(&ptr) {
                    if self.opts.cycle_as_text {
                        return Ok(Out::Str(v.to_string().unwrap_or_default().into_bytes()));
                    }
                    return Err("Too high nest level".into());
                }
                self.path.borrow_mut().push(ptr);
                let out = self.table(t, depth);
                self.path.borrow_mut().pop();
                out?
            }
            Value::UserData(ud) => {
                if let Some((t, _)) = crate::tuple::of(ud) {
                    let decoded =
                        convert::decode(self.lua, &mut t.data()).map_err(|e| super::message(&e))?;
                    return self.flow_seq(&decoded, depth);
                }
                if let Some(text) = super::ext_text(ud) {
                    return Ok(text);
                }
                self.invalid(v)?
            }
            Value::Error(e) => Out::Str(e.to_string().into_bytes()),
            Value::Other(_) => self.cdata(v)?,
            _ => self.invalid(v)?,
        })
    }

    /// A value no format holds: its `tostring`, nil, or an error, as the options say.
    fn invalid(&self, v: &Value) -> Result<Out, Failure> {
        if self.opts.use_tostring {
            let text = v.to_string().map_err(|e| super::message(&e))?;
            return Ok(Out::Str(text.into_bytes()));
        }
        if self.opts.invalid_as_nil {
            return Ok(Out::Null);
        }
        let name = match v {
            Value::Other(_) => "cdata",
            other => other.type_name(),
        };
        Err(format!("unsupported Lua type '{name}'"))
    }

    /// FFI cdata: `box.NULL`, 64-bit integers, other numbers `tonumber` accepts.
    fn cdata(&self, v: &Value) -> Result<Out, Failure> {
        let text = v.to_string().unwrap_or_default();
        if text.ends_with(": NULL") {
            return Ok(Out::Null);
        }
        if let Some(digits) = text.strip_suffix("ULL") {
            if let Ok(u) = digits.parse::<u64>() {
                return Ok(Out::U64(u));
            }
        } else if let Some(digits) = text.strip_suffix("LL") {
            if let Ok(i) = digits.parse::<i64>() {
                return Ok(Out::I64(i));
            }
        }
        if let Ok(tonumber) = self
            .lua
            .named_registry_value::<Function>("spindle.tonumber")
        {
            match tonumber.call::<Value>(v.clone()) {
                Ok(Value::Number(n)) => return Ok(Out::Num(n)),
                Ok(Value::Integer(i)) => return Ok(Out::Num(i as f64)),
                _ => {}
            }
        }
        self.invalid(v)
    }

    fn table(&self, t: &Table, depth: usize) -> Result<Out, Failure> {
        let meta = if self.opts.load_metatables {
            t.metatable()
        } else {
            None
        };
        let Some(meta) = meta else {
            return self.plain(t, depth);
        };
        if meta.raw_get::<bool>("__box_error").unwrap_or(false) {
            let text = Value::Table(t.clone())
                .to_string()
                .map_err(|e| super::message(&e))?;
            return Ok(Out::Str(text.into_bytes()));
        }
        match meta.raw_get::<Value>("__serialize").unwrap_or(Value::Nil) {
            Value::Nil => self.plain(t, depth),
            Value::String(hint) => match hint.as_bytes().as_ref() {
                b"seq" => self.flow_seq(&Value::Table(t.clone()), depth),
                b"sequence" | b"array" => self.block_seq(t, depth),
                b"map" => Ok(Out::map(self.entries(t, depth)?)),
                b"mapping" => self.plain(t, depth),
                _ => Err("invalid __serialize value".into()),
            },
            Value::Function(f) => {
                let result: Value = f.call(t.clone()).map_err(|e| super::message(&e))?;
                match &result {
                    // The same table back: serialize it without asking again.
                    Value::Table(r) if r == t => self.plain(t, depth),
                    other => self.value(other, depth + 1),
                }
            }
            _ => Err("invalid __serialize value".into()),
        }
    }

    fn entries(&self, t: &Table, depth: usize) -> Result<Vec<(Out, Out)>, Failure> {
        let mut out = Vec::new();
        for pair in t.pairs::<Value, Value>() {
            let (k, v) = pair.map_err(|e| super::message(&e))?;
            out.push((self.value(&k, depth + 1)?, self.value(&v, depth + 1)?));
        }
        Ok(out)
    }

    fn plain(&self, t: &Table, depth: usize) -> Result<Out, Failure> {
        Ok(Out::plain(self.entries(t, depth)?))
    }

    fn items(&self, t: &Table, depth: usize) -> Result<Vec<Out>, Failure> {
        let mut items = Vec::new();
        for i in 1..=t.raw_len() {
            let item: Value = t.raw_get(i).map_err(|e| super::message(&e))?;
            items.push(self.value(&item, depth + 1)?);
        }
        Ok(items)
    }

    fn flow_seq(&self, v: &Value, depth: usize) -> Result<Out, Failure> {
        match v {
            Value::Table(t) => Ok(Out::seq(self.items(t, depth)?)),
            other => self.value(other, depth),
        }
    }

    /// An array in block style: `1..n` as plain-table keys, holes as nil.
    fn block_seq(&self, t: &Table, depth: usize) -> Result<Out, Failure> {
        let items = self.items(t, depth)?;
        Ok(Out::plain(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (Out::Num((i + 1) as f64), v))
                .collect(),
        ))
    }
}
