//! Space format: field names, types and nullability, merged with the constraints index parts
//! impose, and validation of tuples against it. Also the parser of the `_space` format array.
//!
//! Rules, as Tarantool 2.6 applies them (each pinned by a test in `tests/format_*.rs`):
//! * a field's effective type is its format type narrowed by every index part on it; an index
//!   part whose type neither contains nor is contained in the current type is refused — with
//!   ER_FORMAT_MISMATCH_INDEX_PART while only the format has spoken for the field, with
//!   ER_INDEX_PART_TYPE_MISMATCH once another index part has;
//! * a field is nullable only if the format and every index part on it allow nil; fields the
//!   format lists or an index covers are required unless nullable;
//! * messages name fields by 1-based number only (2.6 never prints the field name there).

use crate::FieldType;
use spindle_proto::mp::{self, Value};
use spindle_types::{BoxError, BoxResult};

/// One entry of a `_space` format array.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldDef {
    pub name: String,
    pub field_type: FieldType,
    pub is_nullable: bool,
}

/// A constraint an index part puts on a field: its type and whether nil is allowed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PartConstraint {
    pub fieldno: u32,
    pub field_type: FieldType,
    pub is_nullable: bool,
}

/// What the format and the index parts together demand of one field.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FieldConstraint {
    pub field_type: FieldType,
    pub is_nullable: bool,
}

impl FieldConstraint {
    /// A field nobody constrains: anything goes, and it may be absent.
    pub const FREE: FieldConstraint = FieldConstraint {
        field_type: FieldType::Any,
        is_nullable: true,
    };
}

#[derive(Clone, Debug, Default)]
pub struct TupleFormat {
    pub fields: Vec<FieldDef>,
    /// Exact field count from `_space` (0 = not fixed).
    pub exact_field_count: u32,
    /// Effective constraint of every field up to the last one the format or an index covers.
    /// Private so that a format can only be built through `new`, which merges the parts.
    constraints: Vec<FieldConstraint>,
}

/// Per-field state while the index parts are merged into the format.
#[derive(Clone, Copy)]
struct Merging {
    c: FieldConstraint,
    in_format: bool,
    /// Whether an index part has already constrained the field (decides which DDL error).
    indexed: bool,
}

impl TupleFormat {
    /// Builds the effective format. Fails with Tarantool's DDL errors when an index part's type
    /// contradicts the format or another index. Parts are merged in the order given, which
    /// should be index id order, part order (Tarantool reports the later part as the culprit).
    pub fn new(
        fields: Vec<FieldDef>,
        exact_field_count: u32,
        parts: &[PartConstraint],
    ) -> BoxResult<TupleFormat> {
        let mut merging: Vec<Merging> = fields
            .iter()
            .map(|f| Merging {
                c: FieldConstraint {
                    field_type: f.field_type,
                    is_nullable: f.is_nullable,
                },
                in_format: true,
                indexed: false,
            })
            .collect();
        for part in parts {
            merge_part(&mut merging, part)?;
        }
        let constraints = merging.into_iter().map(|m| m.c).collect();
        Ok(TupleFormat {
            fields,
            exact_field_count,
            constraints,
        })
    }

    /// The effective constraint of a 0-based field (`FREE` beyond the constrained ones).
    pub fn constraint(&self, fieldno: u32) -> FieldConstraint {
        self.constraints
            .get(fieldno as usize)
            .copied()
            .unwrap_or(FieldConstraint::FREE)
    }

    /// Number of leading fields with a constraint (the rest are `FREE`).
    pub fn constrained_field_count(&self) -> u32 {
        self.constraints.len() as u32
    }

    /// Checks a tuple (a complete MessagePack array) against the format.
    pub fn validate(&self, tuple: &[u8]) -> BoxResult<()> {
        let mut cur = tuple;
        let count = match mp::read_value(&mut cur) {
            Ok(Value::Array(n)) => n,
            _ => return Err(BoxError::tuple_not_array()),
        };
        if self.exact_field_count != 0 && count != self.exact_field_count {
            return Err(BoxError::exact_field_count(count, self.exact_field_count));
        }
        let present = (count as usize).min(self.constraints.len());
        for (i, c) in self.constraints.iter().take(present).enumerate() {
            check_field(&mut cur, i, c)?;
        }
        // Type errors win over missing fields: 2.6 checks the fields that are there first.
        let missing = self
            .constraints
            .iter()
            .skip(present)
            .position(|c| !c.is_nullable);
        match missing {
            Some(j) => Err(BoxError::field_missing(&(present + j + 1).to_string())),
            None => Ok(()),
        }
    }

    /// The 0-based field number of a named field.
    pub fn field_by_name(&self, name: &str) -> Option<u32> {
        self.fields
            .iter()
            .position(|f| f.name == name)
            .map(|p| p as u32)
    }

    /// `field_by_name` for a name given as raw bytes (update operations carry MP_STR bytes).
    pub fn field_by_name_bytes(&self, name: &[u8]) -> Option<u32> {
        self.fields
            .iter()
            .position(|f| f.name.as_bytes() == name)
            .map(|p| p as u32)
    }
}

/// Narrows a field by one index part, or refuses the part.
fn merge_part(merging: &mut Vec<Merging>, part: &PartConstraint) -> BoxResult<()> {
    let idx = part.fieldno as usize;
    if merging.len() <= idx {
        let free = Merging {
            c: FieldConstraint::FREE,
            in_format: false,
            indexed: false,
        };
        merging.resize(idx + 1, free);
    }
    let Some(m) = merging.get_mut(idx) else {
        return Ok(());
    };
    let current = m.c.field_type;
    let field = (part.fieldno + 1).to_string();
    let narrowed = if type_contains(current, part.field_type) {
        part.field_type
    } else if type_contains(part.field_type, current) {
        current
    } else if m.in_format && !m.indexed {
        let (actual, expected) = (current.name(), part.field_type.name());
        return Err(BoxError::format_mismatch_index_part(
            &field, actual, expected,
        ));
    } else {
        let (actual, expected) = (current.name(), part.field_type.name());
        return Err(BoxError::index_part_type_mismatch(&field, actual, expected));
    };
    m.c.field_type = narrowed;
    m.c.is_nullable &= part.is_nullable;
    m.indexed = true;
    Ok(())
}

/// Whether every value of type `b` is also a value of type `a` (2.6's type lattice: `uuid`
/// is not a scalar there, and `double` is not an integer type).
pub fn type_contains(a: FieldType, b: FieldType) -> bool {
    use FieldType::*;
    if a == b || a == Any {
        return true;
    }
    match a {
        Scalar => matches!(
            b,
            Unsigned | String | Number | Double | Integer | Boolean | Varbinary | Decimal
        ),
        Number => matches!(b, Unsigned | Integer | Double | Decimal),
        Integer => b == Unsigned,
        _ => false,
    }
}

/// Reads field `i` (0-based) and checks it against its constraint.
fn check_field(cur: &mut &[u8], i: usize, c: &FieldConstraint) -> BoxResult<()> {
    let start = *cur;
    let v = mp::read_value(cur).map_err(|_| BoxError::invalid_msgpack("tuple"))?;
    let ok = c.field_type.accepts(&v) || (matches!(v, Value::Nil) && c.is_nullable);
    if !ok {
        return Err(BoxError::field_type(
            &(i + 1).to_string(),
            c.field_type.name(),
        ));
    }
    if matches!(v, Value::Array(_) | Value::Map(_)) {
        // Containers: skip the elements too.
        *cur = start;
        mp::skip(cur).map_err(|_| BoxError::invalid_msgpack("tuple"))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// `_space` format parsing
// ---------------------------------------------------------------------------------------------

/// Longest field name (`BOX_NAME_MAX`).
pub const FIELD_NAME_MAX: usize = 65000;
/// Collation ids a stock 2.6 instance has (`_collation`: 0 "none" … 276).
pub const COLLATION_ID_MAX: u64 = 276;
/// The `_space` field holding the format (1-based, as errors print it).
const SPACE_FORMAT_FIELDNO: &str = "7";

/// The DDL a format arrives with: Tarantool's errors name the space and the statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatDdl<'a> {
    /// `_space` insert: errors are ER_CREATE_SPACE "Failed to create space '…': …".
    Create(&'a str),
    /// `_space` replace/update: errors are ER_ALTER_SPACE "Can't modify space '…': …".
    Alter(&'a str),
}

impl FormatDdl<'_> {
    fn error(self, details: &str) -> BoxError {
        match self {
            FormatDdl::Create(space) => BoxError::create_space(space, details),
            FormatDdl::Alter(space) => BoxError::alter_space(space, details),
        }
    }
}

/// `nullable_action` of a format field (SQL's ON CONFLICT for NOT NULL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NullableAction {
    None,
    Rollback,
    Abort,
    Fail,
    Ignore,
    Replace,
    Default,
}

impl NullableAction {
    /// Case-insensitive, as 2.6 decodes enums.
    pub fn parse(name: &[u8]) -> Option<NullableAction> {
        let lower = name.to_ascii_lowercase();
        Some(match lower.as_slice() {
            b"none" => NullableAction::None,
            b"rollback" => NullableAction::Rollback,
            b"abort" => NullableAction::Abort,
            b"fail" => NullableAction::Fail,
            b"ignore" => NullableAction::Ignore,
            b"replace" => NullableAction::Replace,
            b"default" => NullableAction::Default,
            _ => return None,
        })
    }
}

/// One parsed format entry with the options that do not affect validation.
#[derive(Clone, Debug, PartialEq)]
pub struct FormatField {
    pub def: FieldDef,
    /// Collation id (0 = none); only string, scalar and any fields may have one.
    pub collation: Option<u32>,
    pub nullable_action: NullableAction,
    /// SQL default expression text.
    pub default: Option<String>,
}

/// Parses field 6 (0-based) of a `_space` tuple: an array of maps with `name`, `type`,
/// `is_nullable`, `collation`, `nullable_action`, `default`. Errors name an empty space;
/// DDL code should prefer `parse_space_format_in`.
pub fn parse_space_format(format_array_bytes: &[u8]) -> BoxResult<Vec<FieldDef>> {
    let fields = parse_space_format_in(FormatDdl::Create(""), format_array_bytes)?;
    Ok(fields.into_iter().map(|f| f.def).collect())
}

/// `parse_space_format` with Tarantool's exact errors for the given DDL.
pub fn parse_space_format_in(ddl: FormatDdl<'_>, bytes: &[u8]) -> BoxResult<Vec<FormatField>> {
    let mut cur = bytes;
    let count = match mp::read_value(&mut cur) {
        Ok(Value::Array(n)) => n,
        // `_space`'s own format declares field 7 an array.
        _ => return Err(BoxError::field_type(SPACE_FORMAT_FIELDNO, "array")),
    };
    let mut out: Vec<FormatField> = Vec::new();
    for i in 0..count {
        out.push(parse_format_field(ddl, i + 1, &mut cur)?);
    }
    // Duplicates are found once every entry has parsed (a bad entry wins).
    for (i, f) in out.iter().enumerate() {
        if out.iter().take(i).any(|g| g.def.name == f.def.name) {
            return Err(BoxError::space_field_is_duplicate(&f.def.name));
        }
    }
    Ok(out)
}

/// Raw option values of one format entry, as decoded from its map.
#[derive(Default)]
struct RawField<'a> {
    name: Option<&'a [u8]>,
    field_type: Option<&'a [u8]>,
    is_nullable: Option<bool>,
    nullable_action: Option<&'a [u8]>,
    collation: Option<u32>,
    default: Option<&'a [u8]>,
}

/// Parses entry `fieldno` (1-based).
fn parse_format_field(ddl: FormatDdl<'_>, fieldno: u32, cur: &mut &[u8]) -> BoxResult<FormatField> {
    let entry = mp::take_value(cur).map_err(|_| BoxError::invalid_msgpack("format"))?;
    let raw = decode_field_map(ddl, fieldno, entry)?;
    let name = check_field_name(ddl, fieldno, raw.name)?;
    let field_type = match raw.field_type {
        None => FieldType::Any,
        Some(t) => parse_format_type(t)
            .ok_or_else(|| ddl.error(&format!("field {fieldno} has unknown field type")))?,
    };
    let is_nullable = raw.is_nullable.unwrap_or(false);
    let nullable_action = check_nullable_action(ddl, fieldno, &raw, is_nullable)?;
    check_collation(ddl, fieldno, raw.collation, field_type)?;
    Ok(FormatField {
        def: FieldDef {
            name,
            field_type,
            is_nullable,
        },
        collation: raw.collation,
        nullable_action,
        default: raw.default.map(|d| String::from_utf8_lossy(d).into_owned()),
    })
}

/// Decodes the option map of one entry; value type errors are ER_WRONG_SPACE_FORMAT and come
/// in map order, before any semantic check.
fn decode_field_map<'a>(
    ddl: FormatDdl<'_>,
    fieldno: u32,
    entry: &'a [u8],
) -> BoxResult<RawField<'a>> {
    let not_map = || ddl.error(&format!("field {fieldno} is not map"));
    let mut cur = entry;
    let n = match mp::read_value(&mut cur) {
        Ok(Value::Map(n)) => n,
        _ => return Err(not_map()),
    };
    if !map_has_string_keys(cur, n) {
        return Err(ddl.error(&format!(
            "field {fieldno} format is not map with string keys"
        )));
    }
    let mut raw = RawField::default();
    for _ in 0..n {
        let key = mp::read_str(&mut cur).map_err(|_| not_map())?;
        let val = mp::take_value(&mut cur).map_err(|_| not_map())?;
        decode_option(&mut raw, key, val)
            .map_err(|what| BoxError::wrong_space_format(fieldno, what))?;
    }
    Ok(raw)
}

fn map_has_string_keys(mut cur: &[u8], n: u32) -> bool {
    for _ in 0..n {
        if mp::read_str(&mut cur).is_err() || mp::skip(&mut cur).is_err() {
            return false;
        }
    }
    true
}

/// Stores one known option; unknown keys are ignored, as 2.6 does.
fn decode_option<'a>(
    raw: &mut RawField<'a>,
    key: &[u8],
    val: &'a [u8],
) -> Result<(), &'static str> {
    let v = mp::read_value(&mut &val[..]).map_err(|_| "invalid value")?;
    match key {
        b"name" => raw.name = Some(as_str(v).ok_or("'name' must be string")?),
        b"type" => raw.field_type = Some(as_str(v).ok_or("'type' must be enum")?),
        b"is_nullable" => match v {
            Value::Bool(b) => raw.is_nullable = Some(b),
            _ => return Err("'is_nullable' must be boolean"),
        },
        b"nullable_action" => {
            raw.nullable_action = Some(as_str(v).ok_or("'nullable_action' must be enum")?)
        }
        b"collation" => match v {
            Value::Uint(id) if id <= u32::MAX as u64 => raw.collation = Some(id as u32),
            _ => return Err("'collation' must be unsigned"),
        },
        b"default" => raw.default = Some(as_str(v).ok_or("'default' must be string")?),
        _ => {}
    }
    Ok(())
}

fn as_str(v: Value<'_>) -> Option<&[u8]> {
    match v {
        Value::Str(s) => Some(s),
        _ => None,
    }
}

fn check_field_name(ddl: FormatDdl<'_>, fieldno: u32, name: Option<&[u8]>) -> BoxResult<String> {
    let name = match name {
        Some(n) if !n.is_empty() => n,
        _ => return Err(ddl.error(&format!("field {fieldno} name is not specified"))),
    };
    if name.len() > FIELD_NAME_MAX {
        return Err(ddl.error(&format!("field {fieldno} name is too long")));
    }
    match std::str::from_utf8(name) {
        Ok(s) if !s.chars().any(char::is_control) => Ok(s.to_string()),
        _ => Err(BoxError::identifier(&String::from_utf8_lossy(name))),
    }
}

fn check_nullable_action(
    ddl: FormatDdl<'_>,
    fieldno: u32,
    raw: &RawField<'_>,
    is_nullable: bool,
) -> BoxResult<NullableAction> {
    let action = match raw.nullable_action {
        None if is_nullable => NullableAction::None,
        None => NullableAction::Default,
        Some(a) => NullableAction::parse(a).ok_or_else(|| {
            ddl.error(&format!(
                "field {fieldno} has unknown field on conflict nullable action"
            ))
        })?,
    };
    if is_nullable != (action == NullableAction::None) {
        let details =
            format!("field {fieldno} has conflicting nullability and nullable action properties");
        return Err(ddl.error(&details));
    }
    Ok(action)
}

fn check_collation(
    ddl: FormatDdl<'_>,
    fieldno: u32,
    collation: Option<u32>,
    field_type: FieldType,
) -> BoxResult<()> {
    let Some(id) = collation else {
        return Ok(());
    };
    if !matches!(
        field_type,
        FieldType::String | FieldType::Scalar | FieldType::Any
    ) {
        return Err(ddl.error("collation is reasonable only for string, scalar and any fields"));
    }
    if u64::from(id) > COLLATION_ID_MAX {
        return Err(BoxError::wrong_collation_options(
            fieldno,
            "collation was not found by ID",
        ));
    }
    Ok(())
}

/// Parses a field type name the way 2.6 does for formats and index parts: the 13 names
/// case-insensitively, `*` for any, and any case-insensitive prefix of the 1.6 aliases `num`
/// (unsigned) and `str` (string) — including the empty string, which means unsigned.
/// `uint`, `int` and `bool` are not accepted.
pub fn parse_format_type(name: &[u8]) -> Option<FieldType> {
    const NAMES: [FieldType; 13] = [
        FieldType::Any,
        FieldType::Unsigned,
        FieldType::String,
        FieldType::Number,
        FieldType::Double,
        FieldType::Integer,
        FieldType::Boolean,
        FieldType::Varbinary,
        FieldType::Scalar,
        FieldType::Decimal,
        FieldType::Uuid,
        FieldType::Array,
        FieldType::Map,
    ];
    if let Some(t) = NAMES
        .iter()
        .find(|t| t.name().as_bytes().eq_ignore_ascii_case(name))
    {
        return Some(*t);
    }
    let is_prefix_of = |alias: &[u8]| {
        name.len() <= alias.len()
            && alias
                .get(..name.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(name))
    };
    if name == b"*" {
        Some(FieldType::Any)
    } else if is_prefix_of(b"num") {
        Some(FieldType::Unsigned)
    } else if is_prefix_of(b"str") {
        Some(FieldType::String)
    } else {
        None
    }
}
