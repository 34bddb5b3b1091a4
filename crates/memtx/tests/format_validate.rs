//! Tuple validation against a space format merged with index parts, pinned to Tarantool
//! 2.6.0 (`box.schema.space.create(..., {format = ...})`, `create_index`, `insert`).

#![allow(clippy::unwrap_used)] // test helpers: a panic is a failed test

use rmpv::Value as V;
use spindle_memtx::format::{FieldDef, PartConstraint, TupleFormat};
use spindle_memtx::FieldType;
use spindle_memtx::FieldType::{
    Any, Array, Boolean, Decimal, Double, Integer, Map, Number, Scalar, Unsigned, Uuid, Varbinary,
};

fn enc(v: &V) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    out
}

fn i(n: i64) -> V {
    V::from(n)
}

fn s(x: &str) -> V {
    V::from(x)
}

fn t(v: Vec<V>) -> V {
    V::Array(v)
}

fn field(name: &str, field_type: FieldType, is_nullable: bool) -> FieldDef {
    FieldDef {
        name: name.into(),
        field_type,
        is_nullable,
    }
}

fn part(fieldno: u32, field_type: FieldType, is_nullable: bool) -> PartConstraint {
    PartConstraint {
        fieldno: fieldno - 1,
        field_type,
        is_nullable,
    }
}

fn pk() -> PartConstraint {
    part(1, Unsigned, false)
}

fn check(format: &TupleFormat, tuple: &V) -> Result<(), String> {
    format
        .validate(&enc(tuple))
        .map_err(|e| format!("{}: {}", e.code, e.message))
}

fn type_err(field: u32, ty: &str) -> Result<(), String> {
    Err(format!(
        "23: Tuple field {field} type does not match one required by operation: expected {ty}"
    ))
}

fn missing(field: u32) -> Result<(), String> {
    Err(format!(
        "39: Tuple field {field} required by space format is missing"
    ))
}

fn ddl(fields: Vec<FieldDef>, parts: &[PartConstraint]) -> Result<TupleFormat, String> {
    TupleFormat::new(fields, 0, parts).map_err(|e| format!("{}: {}", e.code, e.message))
}

/// {id unsigned, name string, d double nullable, n number, i integer nullable} + pk
fn s1() -> TupleFormat {
    let fields = vec![
        field("id", Unsigned, false),
        field("name", FieldType::String, false),
        field("d", Double, true),
        field("n", Number, false),
        field("i", Integer, true),
    ];
    TupleFormat::new(fields, 0, &[pk()]).unwrap()
}

#[test]
fn required_fields_and_types() {
    let f = s1();
    assert_eq!(
        check(&f, &t(vec![i(1), s("a"), V::F64(1.5), i(2), i(-1)])),
        Ok(())
    );
    // {2} -> field 2 missing; {3,'a',1.5} -> field 4; {4,'a'} -> field 4 (3 is nullable)
    assert_eq!(check(&f, &t(vec![i(2)])), missing(2));
    assert_eq!(check(&f, &t(vec![i(3), s("a"), V::F64(1.5)])), missing(4));
    assert_eq!(check(&f, &t(vec![i(4), s("a")])), missing(4));
    // nil where not nullable is a type error
    assert_eq!(
        check(&f, &t(vec![i(5), s("a"), V::Nil, V::Nil])),
        type_err(4, "number")
    );
    assert_eq!(
        check(&f, &t(vec![i(6), V::Nil, V::F64(1.5), i(2)])),
        type_err(2, "string")
    );
    // 2.6's double takes no integers
    assert_eq!(
        check(&f, &t(vec![i(7), s("a"), i(1), i(2)])),
        type_err(3, "double")
    );
    assert_eq!(
        check(&f, &t(vec![i(9), s("a"), i(-1), i(2)])),
        type_err(3, "double")
    );
    assert_eq!(
        check(&f, &t(vec![i(8), s("a"), V::from(u64::MAX), i(2)])),
        type_err(3, "double")
    );
    assert_eq!(
        check(&f, &t(vec![i(11), s("a"), V::F64(1.5), s("x")])),
        type_err(4, "number")
    );
    assert_eq!(
        check(&f, &t(vec![i(12), s("a"), V::F64(1.5), i(1), V::F64(1.5)])),
        type_err(5, "integer")
    );
    assert_eq!(
        check(&f, &t(vec![i(13), s("a"), V::F64(1.5), i(1), V::F64(2.0)])),
        type_err(5, "integer")
    );
    assert_eq!(
        check(&f, &t(vec![i(-1), s("a"), V::F64(1.5), i(1)])),
        type_err(1, "unsigned")
    );
    assert_eq!(
        check(&f, &t(vec![i(15), i(5), V::F64(1.5), i(1)])),
        type_err(2, "string")
    );
    // fields beyond the format are free
    let extra = t(vec![
        i(16),
        s("a"),
        V::F64(1.5),
        i(1),
        i(1),
        s("extra"),
        t(vec![i(1)]),
    ]);
    assert_eq!(check(&f, &extra), Ok(()));
    // a number field takes floats
    assert_eq!(
        check(&f, &t(vec![i(3), s("a"), V::F64(2.0), V::F32(1.5)])),
        Ok(())
    );
}

#[test]
fn double_fields_refuse_floats() {
    // s:insert{10, 'a', ffi.cast('float', 1.5), 2} -> field 3 expected double
    let f = s1();
    assert_eq!(
        check(&f, &t(vec![i(10), s("a"), V::F32(1.5), i(2)])),
        type_err(3, "double")
    );
}

#[test]
fn scalar_fields_refuse_uuids() {
    // a:insert{3, 1, uuid.new()} with field 3 scalar nullable -> expected scalar
    let f = TupleFormat::new(
        vec![
            field("id", Unsigned, false),
            field("v", Any, false),
            field("sc", Scalar, true),
        ],
        0,
        &[pk()],
    )
    .unwrap();
    let uuid = V::Ext(2, vec![0x11; 16]);
    assert_eq!(check(&f, &t(vec![i(3), i(1), uuid])), type_err(3, "scalar"));
}

#[test]
fn types_are_checked_before_missing_fields() {
    // {'x'} -> field 1 type (not "field 2 missing"); {1, 5} -> field 2 type
    let f = s1();
    assert_eq!(check(&f, &t(vec![s("x")])), type_err(1, "unsigned"));
    assert_eq!(check(&f, &t(vec![i(1), i(5)])), type_err(2, "string"));
}

#[test]
fn not_an_array() {
    let r = s1().validate(&enc(&i(5))).map_err(|e| (e.code, e.message));
    assert_eq!(r, Err((22, "Tuple/Key must be MsgPack array".into())));
}

#[test]
fn exact_field_count() {
    // field_count = 3: {1,'a'} / {1,'a',3,4} / {1} fail, {1,'a',3} passes
    let f = TupleFormat::new(
        vec![
            field("id", Unsigned, false),
            field("x", FieldType::String, false),
        ],
        3,
        &[pk()],
    )
    .unwrap();
    let ec = |n: u32| {
        Err(format!(
            "38: Tuple field count {n} does not match space field count 3"
        ))
    };
    assert_eq!(check(&f, &t(vec![i(1), s("a")])), ec(2));
    assert_eq!(check(&f, &t(vec![i(1), s("a"), i(3), i(4)])), ec(4));
    assert_eq!(check(&f, &t(vec![i(1)])), ec(1));
    assert_eq!(check(&f, &t(vec![i(1), s("a"), i(3)])), Ok(()));
}

#[test]
fn any_fields() {
    // {id unsigned, v any}: nil is fine, absence is not
    let f = TupleFormat::new(
        vec![field("id", Unsigned, false), field("v", Any, false)],
        0,
        &[pk()],
    )
    .unwrap();
    assert_eq!(check(&f, &t(vec![i(1), V::Nil])), Ok(()));
    assert_eq!(check(&f, &t(vec![i(2)])), missing(2));
}

#[test]
fn index_parts_on_unformatted_fields() {
    // format {id}; sk on field 3 string
    let fields = || vec![field("id", Unsigned, false)];
    let f = ddl(fields(), &[pk(), part(3, FieldType::String, false)]).unwrap();
    assert_eq!(check(&f, &t(vec![i(1)])), missing(3));
    assert_eq!(check(&f, &t(vec![i(1), i(2)])), missing(3));
    assert_eq!(check(&f, &t(vec![i(1), i(2), i(3)])), type_err(3, "string"));
    assert_eq!(check(&f, &t(vec![i(1), i(2), s("x")])), Ok(()));
    // a second index with another type -> ER_INDEX_PART_TYPE_MISMATCH
    let r = ddl(
        fields(),
        &[
            pk(),
            part(3, FieldType::String, false),
            part(3, Unsigned, false),
        ],
    );
    assert_eq!(
        r.err(),
        Some("24: Field 3 has type 'string' in one index, but type 'unsigned' in another".into())
    );
    // scalar is compatible; a nullable integer part on field 4 makes field 4 optional
    let f = ddl(
        fields(),
        &[
            pk(),
            part(3, FieldType::String, false),
            part(3, Scalar, false),
            part(4, Integer, true),
        ],
    )
    .unwrap();
    assert_eq!(check(&f, &t(vec![i(2), i(2), s("y")])), Ok(()));
    assert_eq!(check(&f, &t(vec![i(3), i(2), s("z"), V::Nil])), Ok(()));
    assert_eq!(
        check(&f, &t(vec![i(4), i(2), s("w"), s("q")])),
        type_err(4, "integer")
    );
}

#[test]
fn format_against_index_parts() {
    // {id unsigned, name string, a any, n number, sc scalar, i integer}
    let fields = || {
        vec![
            field("id", Unsigned, false),
            field("name", FieldType::String, false),
            field("a", Any, false),
            field("n", Number, false),
            field("sc", Scalar, false),
            field("i", Integer, false),
        ]
    };
    let r = ddl(fields(), &[pk(), part(2, Unsigned, false)]);
    let want =
        "27: Field 2 has type 'string' in space format, but type 'unsigned' in index definition";
    assert_eq!(r.err(), Some(want.into()));
    for p in [
        part(3, Unsigned, false),
        part(4, Integer, false),
        part(5, FieldType::String, false),
        part(6, Number, false),
        part(6, Unsigned, false),
        part(2, Scalar, false),
        part(2, FieldType::String, true),
    ] {
        assert!(ddl(fields(), &[pk(), p]).is_ok(), "{p:?}");
    }
    // the index narrows an `any` field
    let f = ddl(fields(), &[pk(), part(3, Unsigned, false)]).unwrap();
    let tup = t(vec![i(1), s("a"), s("str"), i(1), i(1), i(1)]);
    assert_eq!(check(&f, &tup), type_err(3, "unsigned"));
}

#[test]
fn which_ddl_error() {
    let one = |ft: FieldType| vec![field("id", Unsigned, false), field("x", ft, false)];
    let e27 = |f: &str, p: &str| {
        Some(format!(
            "27: Field 2 has type '{f}' in space format, but type '{p}' in index definition"
        ))
    };
    let e24 = |a: &str, b: &str| {
        Some(format!(
            "24: Field 2 has type '{a}' in one index, but type '{b}' in another"
        ))
    };
    // double/integer -> 27 while only the format constrains the field ...
    assert_eq!(
        ddl(one(Double), &[pk(), part(2, Integer, false)]).err(),
        e27("double", "integer")
    );
    // ... but 24 (naming the merged type) once an index has: double + number, then unsigned
    let r = ddl(
        one(Double),
        &[
            pk(),
            part(2, Number, false),
            part(2, Scalar, false),
            part(2, Unsigned, false),
        ],
    );
    assert_eq!(r.err(), e24("double", "unsigned"));
    // number + double index, then decimal / integer
    let r = ddl(
        one(Number),
        &[pk(), part(2, Double, false), part(2, Decimal, false)],
    );
    assert_eq!(r.err(), e24("double", "decimal"));
    assert_eq!(
        ddl(one(Integer), &[pk(), part(2, Double, false)]).err(),
        e27("integer", "double")
    );
    assert_eq!(
        ddl(one(Varbinary), &[pk(), part(2, FieldType::String, false)]).err(),
        e27("varbinary", "string")
    );
    assert_eq!(
        ddl(one(Boolean), &[pk(), part(2, Unsigned, false)]).err(),
        e27("boolean", "unsigned")
    );
    // uuid is not a scalar in 2.6; arrays and maps take no index parts
    assert_eq!(
        ddl(one(Uuid), &[pk(), part(2, Scalar, false)]).err(),
        e27("uuid", "scalar")
    );
    assert_eq!(
        ddl(one(Uuid), &[pk(), part(2, FieldType::String, false)]).err(),
        e27("uuid", "string")
    );
    assert_eq!(
        ddl(one(Array), &[pk(), part(2, Unsigned, false)]).err(),
        e27("array", "unsigned")
    );
    assert_eq!(
        ddl(one(Map), &[pk(), part(2, Scalar, false)]).err(),
        e27("map", "scalar")
    );
    for (f, p) in [
        (Decimal, Scalar),
        (Decimal, Number),
        (Boolean, Scalar),
        (Varbinary, Scalar),
        (Integer, Scalar),
        (Double, Scalar),
        (Number, Scalar),
    ] {
        assert!(
            ddl(one(f), &[pk(), part(2, p, false)]).is_ok(),
            "{f:?}/{p:?}"
        );
    }
    // number + integer + unsigned parts: unsigned wins
    let f = ddl(
        vec![
            field("id", Unsigned, false),
            field("a", Number, false),
            field("b", Scalar, false),
        ],
        &[pk(), part(2, Integer, false), part(2, Unsigned, false)],
    )
    .unwrap();
    assert_eq!(
        check(&f, &t(vec![i(1), i(-1), i(1)])),
        type_err(2, "unsigned")
    );
    assert_eq!(
        check(&f, &t(vec![i(1), V::F64(1.5), i(1)])),
        type_err(2, "unsigned")
    );
    // scalar + string part, then number -> 24 with 'string'
    let r = ddl(
        vec![
            field("id", Unsigned, false),
            field("a", Number, false),
            field("b", Scalar, false),
        ],
        &[
            pk(),
            part(3, FieldType::String, false),
            part(3, Number, false),
        ],
    );
    assert_eq!(
        r.err(),
        Some("24: Field 3 has type 'string' in one index, but type 'number' in another".into())
    );
}

#[test]
fn nullability_needs_every_constraint() {
    // format not nullable, index part nullable: nil is still refused
    let f = ddl(
        vec![
            field("id", Unsigned, false),
            field("name", FieldType::String, false),
        ],
        &[pk(), part(2, FieldType::String, true)],
    )
    .unwrap();
    assert_eq!(check(&f, &t(vec![i(4), V::Nil])), type_err(2, "string"));
    // format nullable, index part (explicitly) not nullable: refused, and required
    let f = ddl(
        vec![
            field("id", Unsigned, false),
            field("name", FieldType::String, true),
        ],
        &[pk(), part(2, FieldType::String, false)],
    )
    .unwrap();
    assert_eq!(check(&f, &t(vec![i(1), V::Nil])), type_err(2, "string"));
    assert_eq!(check(&f, &t(vec![i(2)])), missing(2));
    // unformatted field 3: one nullable part and one not -> required
    let f = ddl(
        vec![
            field("id", Unsigned, false),
            field("name", FieldType::String, true),
        ],
        &[
            pk(),
            part(3, FieldType::String, true),
            part(3, FieldType::String, false),
        ],
    )
    .unwrap();
    assert_eq!(check(&f, &t(vec![i(1)])), missing(3));
    assert_eq!(
        check(&f, &t(vec![i(1), s("a"), V::Nil])),
        type_err(3, "string")
    );
}

#[test]
fn field_lookup_by_name() {
    let f = s1();
    assert_eq!(f.field_by_name("n"), Some(3));
    assert_eq!(f.field_by_name("nope"), None);
    assert_eq!(f.constraint(0).field_type, Unsigned);
    assert_eq!(f.constraint(99).field_type, Any);
    assert_eq!(f.constrained_field_count(), 5);
}
