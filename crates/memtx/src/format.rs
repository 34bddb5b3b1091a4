//! Space format: field names, types and nullability, merged with the constraints index parts
//! impose, and validation of tuples against it. (Stub signatures; implementation pending.)

use crate::FieldType;
use spindle_types::BoxResult;

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

#[derive(Clone, Debug, Default)]
pub struct TupleFormat {
    pub fields: Vec<FieldDef>,
    /// Exact field count from `_space` (0 = not fixed).
    pub exact_field_count: u32,
}

impl TupleFormat {
    /// Builds the effective format. Fails with Tarantool's DDL errors when an index part's type
    /// contradicts the format or another index.
    pub fn new(
        fields: Vec<FieldDef>,
        exact_field_count: u32,
        parts: &[PartConstraint],
    ) -> BoxResult<TupleFormat> {
        let _ = parts;
        Ok(TupleFormat { fields, exact_field_count })
    }

    /// Checks a tuple (a complete MessagePack array) against the format.
    pub fn validate(&self, tuple: &[u8]) -> BoxResult<()> {
        let _ = tuple;
        Ok(())
    }

    /// The 0-based field number of a named field.
    pub fn field_by_name(&self, name: &str) -> Option<u32> {
        self.fields.iter().position(|f| f.name == name).map(|p| p as u32)
    }
}
