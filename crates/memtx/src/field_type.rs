//! Field types of space formats and index parts, with Tarantool 2.6's names and the rule for
//! which MessagePack values each type accepts.

use spindle_proto::mp::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldType {
    Any,
    Unsigned,
    String,
    Number,
    Double,
    Integer,
    Boolean,
    Varbinary,
    Scalar,
    Decimal,
    Uuid,
    Array,
    Map,
}

impl FieldType {
    /// Parses a type name as found in `_space` formats and `_index` parts. Tarantool accepts
    /// the 1.6 aliases `num`/`str` (and upper case) in index parts.
    pub fn parse(name: &str) -> Option<FieldType> {
        Some(match name.to_ascii_lowercase().as_str() {
            "any" | "*" => FieldType::Any,
            "unsigned" | "num" | "uint" => FieldType::Unsigned,
            "string" | "str" => FieldType::String,
            "number" => FieldType::Number,
            "double" => FieldType::Double,
            "integer" | "int" => FieldType::Integer,
            "boolean" | "bool" => FieldType::Boolean,
            "varbinary" => FieldType::Varbinary,
            "scalar" => FieldType::Scalar,
            "decimal" => FieldType::Decimal,
            "uuid" => FieldType::Uuid,
            "array" => FieldType::Array,
            "map" => FieldType::Map,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            FieldType::Any => "any",
            FieldType::Unsigned => "unsigned",
            FieldType::String => "string",
            FieldType::Number => "number",
            FieldType::Double => "double",
            FieldType::Integer => "integer",
            FieldType::Boolean => "boolean",
            FieldType::Varbinary => "varbinary",
            FieldType::Scalar => "scalar",
            FieldType::Decimal => "decimal",
            FieldType::Uuid => "uuid",
            FieldType::Array => "array",
            FieldType::Map => "map",
        }
    }

    /// Whether an index may be built on this type (2.6: not any, array or map).
    pub fn is_indexable(self) -> bool {
        !matches!(self, FieldType::Any | FieldType::Array | FieldType::Map)
    }

    /// Whether a value (its head, from `mp::read_value`) is acceptable for a field of this type.
    /// Nil is handled by the caller through `is_nullable`.
    pub fn accepts(self, v: &Value<'_>) -> bool {
        match self {
            FieldType::Any => true,
            FieldType::Unsigned => matches!(v, Value::Uint(_)),
            FieldType::Integer => matches!(v, Value::Uint(_) | Value::Int(_)),
            FieldType::Number => {
                matches!(
                    v,
                    Value::Uint(_) | Value::Int(_) | Value::F32(_) | Value::F64(_)
                ) || is_ext(v, EXT_DECIMAL)
            }
            // 2.6 refuses MP_FLOAT in a double field.
            FieldType::Double => matches!(v, Value::F64(_)),
            FieldType::String => matches!(v, Value::Str(_)),
            FieldType::Boolean => matches!(v, Value::Bool(_)),
            FieldType::Varbinary => matches!(v, Value::Bin(_)),
            // 2.6.0 refuses uuid in a scalar field ("expected scalar").
            FieldType::Scalar => {
                !matches!(v, Value::Array(_) | Value::Map(_) | Value::Nil) && !is_ext(v, EXT_UUID)
            }
            FieldType::Decimal => is_ext(v, EXT_DECIMAL),
            FieldType::Uuid => is_ext(v, EXT_UUID),
            FieldType::Array => matches!(v, Value::Array(_)),
            FieldType::Map => matches!(v, Value::Map(_)),
        }
    }
}

/// MessagePack extension type ids Tarantool uses.
pub const EXT_DECIMAL: i8 = 1;
pub const EXT_UUID: i8 = 2;

fn is_ext(v: &Value<'_>, t: i8) -> bool {
    matches!(v, Value::Ext(et, _) if *et == t)
}
