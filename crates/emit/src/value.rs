//! The value model the emitters take: a Lua value as Tarantool's serializers (`yaml`,
//! `json`, both built on `luaL_tofield`) see it.
//!
//! Tables keep their entries in the order the caller gives, which is the order they are
//! printed in. Reproducing a particular Lua table order (`lua_next`) is the caller's job.

/// A Lua value as Tarantool's serializers see it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A real `nil`: a hole in a sparse array.
    Nil,
    /// `msgpack.NULL` (a `cdata<void *>` NULL), what MessagePack nil decodes to.
    Null,
    Bool(bool),
    /// A Lua number (double).
    Num(f64),
    /// A `uint64_t` cdata (integers above [`DBL_INT_MAX`] decode to it).
    U64(u64),
    /// An `int64_t` cdata.
    I64(i64),
    /// A Lua string: arbitrary bytes (printed as `!!binary` in YAML unless printable UTF-8).
    Str(Vec<u8>),
    /// A decimal cdata, already in `decNumberToString` form.
    Decimal(String),
    /// A UUID cdata, in its canonical text form.
    Uuid(String),
    /// A MessagePack extension Tarantool 2.6 cannot decode: its type and payload.
    Ext(i8, Vec<u8>),
    Table(Box<Table>),
}

/// A Lua table and the serializer hint of its metatable.
#[derive(Clone, Debug, PartialEq)]
pub enum Table {
    /// `__serialize = 'seq'`: decoded arrays and tuples. Items `1..=n`, flow style in YAML.
    Seq(Vec<Value>),
    /// `__serialize = 'map'`: decoded maps, in `lua_next` order. Flow style in YAML.
    Map(Vec<(Value, Value)>),
    /// No metatable, in `lua_next` order. Block style in YAML; encoded as an array when its
    /// keys are `1..n` (sparse arrays included, within `encode_sparse_ratio`).
    Plain(Vec<(Value, Value)>),
}

/// `DBL_INT_MAX` of Tarantool's Lua glue: integers beyond ±(1e14 - 1) become 64-bit cdata.
pub const DBL_INT_MAX: u64 = 100_000_000_000_000 - 1;

impl Value {
    /// A Lua string from UTF-8 text.
    pub fn str(s: &str) -> Value {
        Value::Str(s.as_bytes().to_vec())
    }

    /// A MessagePack unsigned integer as Tarantool pushes it: a Lua number up to
    /// [`DBL_INT_MAX`], a `uint64_t` cdata above.
    pub fn uint(u: u64) -> Value {
        if u <= DBL_INT_MAX {
            Value::Num(u as f64)
        } else {
            Value::U64(u)
        }
    }

    /// A MessagePack signed integer as Tarantool pushes it: a Lua number down to
    /// `-DBL_INT_MAX`, an `int64_t` cdata below.
    pub fn int(i: i64) -> Value {
        if i >= -(DBL_INT_MAX as i64) {
            Value::Num(i as f64)
        } else {
            Value::I64(i)
        }
    }

    /// A table with `__serialize = 'seq'`.
    pub fn seq(items: Vec<Value>) -> Value {
        Value::Table(Box::new(Table::Seq(items)))
    }

    /// A table with `__serialize = 'map'`.
    pub fn map(entries: Vec<(Value, Value)>) -> Value {
        Value::Table(Box::new(Table::Map(entries)))
    }

    /// A table without a metatable.
    pub fn plain(entries: Vec<(Value, Value)>) -> Value {
        Value::Table(Box::new(Table::Plain(entries)))
    }

    /// `t[name]` for a string key of a map or plain table; `None` for anything else.
    pub fn get(&self, name: &str) -> Option<&Value> {
        let Value::Table(t) = self else { return None };
        let entries = match t.as_ref() {
            Table::Plain(e) | Table::Map(e) => e,
            Table::Seq(_) => return None,
        };
        entries.iter().find_map(|(k, v)| match k {
            Value::Str(s) if s == name.as_bytes() => Some(v),
            _ => None,
        })
    }

    /// The value as a Lua number, for numbers and 64-bit integer cdata.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Num(n) => Some(*n),
            Value::U64(u) => Some(*u as f64),
            Value::I64(i) => Some(*i as f64),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_become_cdata_beyond_dbl_int_max() {
        assert_eq!(Value::uint(DBL_INT_MAX), Value::Num(DBL_INT_MAX as f64));
        assert_eq!(Value::uint(DBL_INT_MAX + 1), Value::U64(DBL_INT_MAX + 1));
        assert_eq!(Value::int(-5), Value::Num(-5.0));
        let min = -(DBL_INT_MAX as i64);
        assert_eq!(Value::int(min), Value::Num(min as f64));
        assert_eq!(Value::int(min - 1), Value::I64(min - 1));
    }

    #[test]
    fn get_finds_string_keys_only() {
        let t = Value::plain(vec![
            (Value::Num(1.0), Value::str("one")),
            (Value::str("a"), Value::Bool(true)),
        ]);
        assert_eq!(t.get("a"), Some(&Value::Bool(true)));
        assert_eq!(t.get("1"), None);
        assert_eq!(Value::seq(vec![Value::str("a")]).get("a"), None);
        assert_eq!(Value::Num(1.0).get("a"), None);
    }
}
