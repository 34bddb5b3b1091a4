//! Parsing `_space` field 6 (the format), pinned to what Tarantool 2.6.0 answers to
//! `box.space._space:insert{id, 1, 'x<id>', 'memtx', 0, {}, format}` (and `:replace` for
//! ALTER) with a bad format.

#![allow(clippy::unwrap_used)] // test helpers: a panic is a failed test

use rmpv::Value as V;
use spindle_memtx::format::{
    parse_format_type, parse_space_format, parse_space_format_in, FormatDdl, NullableAction,
};
use spindle_memtx::FieldType;

fn enc(v: &V) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    out
}

fn s(x: &str) -> V {
    V::from(x)
}

fn m(pairs: Vec<(&str, V)>) -> V {
    V::Map(pairs.into_iter().map(|(k, v)| (s(k), v)).collect())
}

fn nt(name: &str, ty: &str) -> V {
    m(vec![("name", s(name)), ("type", s(ty))])
}

/// Parses a format of the given entries for a space named `x`; errors as "code: message".
fn parse(entries: Vec<V>) -> Result<Vec<(String, FieldType, bool)>, String> {
    parse_space_format_in(FormatDdl::Create("x"), &enc(&V::Array(entries)))
        .map(|v| {
            v.into_iter()
                .map(|f| (f.def.name, f.def.field_type, f.def.is_nullable))
                .collect()
        })
        .map_err(|e| format!("{}: {}", e.code, e.message))
}

fn create_err(details: &str) -> String {
    format!("9: Failed to create space 'x': {details}")
}

fn fmt_err(field: u32, details: &str) -> String {
    format!("141: Wrong space format (field {field}): {details}")
}

#[test]
fn good_formats() {
    let r = parse(vec![
        nt("id", "unsigned"),
        m(vec![
            ("type", s("string")),
            ("name", s("name")),
            ("is_nullable", V::Boolean(true)),
        ]),
        m(vec![("name", s("val")), ("type", s("any"))]),
    ]);
    let want = vec![
        ("id".to_string(), FieldType::Unsigned, false),
        ("name".to_string(), FieldType::String, true),
        ("val".to_string(), FieldType::Any, false),
    ];
    assert_eq!(r, Ok(want));
    // no type -> any; unknown keys are ignored; empty format
    assert_eq!(
        parse(vec![m(vec![("name", s("a"))])]),
        Ok(vec![("a".into(), FieldType::Any, false)])
    );
    assert!(parse(vec![m(vec![
        ("name", s("a")),
        ("type", s("unsigned")),
        ("foo", V::from(1))
    ])])
    .is_ok());
    assert!(parse(vec![m(vec![
        ("name", s("a")),
        ("type", s("string")),
        ("extra", V::Array(vec![]))
    ])])
    .is_ok());
    assert_eq!(parse(vec![]), Ok(vec![]));
    // names: any printable text, case matters for duplicates, up to 65000 bytes
    assert!(parse(vec![nt("a b", "string")]).is_ok());
    assert!(parse(vec![nt("имя", "string")]).is_ok());
    assert!(parse(vec![nt("a", "string"), nt("A", "string")]).is_ok());
    assert!(parse(vec![nt(&"a".repeat(65000), "string")]).is_ok());
    // the untouched entry point
    let r = parse_space_format(&enc(&V::Array(vec![nt("a", "num")]))).unwrap();
    assert_eq!(r[0].field_type, FieldType::Unsigned);
}

#[test]
fn type_names() {
    // accepted as 2.6 does, including prefixes of the 1.6 aliases num and str
    let cases: &[(&str, Option<FieldType>)] = &[
        ("unsigned", Some(FieldType::Unsigned)),
        ("UNSIGNED", Some(FieldType::Unsigned)),
        ("Boolean", Some(FieldType::Boolean)),
        ("*", Some(FieldType::Any)),
        ("num", Some(FieldType::Unsigned)),
        ("Num", Some(FieldType::Unsigned)),
        ("nu", Some(FieldType::Unsigned)),
        ("n", Some(FieldType::Unsigned)),
        ("", Some(FieldType::Unsigned)),
        ("str", Some(FieldType::String)),
        ("STR", Some(FieldType::String)),
        ("st", Some(FieldType::String)),
        ("s", Some(FieldType::String)),
        ("uint", None),
        ("int", None),
        ("bool", None),
        ("u", None),
        ("unsignedx", None),
        ("stri", None),
        ("numb", None),
        ("d", None),
        ("sc", None),
        ("*x", None),
        ("foo", None),
    ];
    for &(name, want) in cases {
        assert_eq!(parse_format_type(name.as_bytes()), want, "{name:?}");
        let r = parse(vec![nt("a", name)]);
        match want {
            Some(t) => assert_eq!(r, Ok(vec![("a".into(), t, false)]), "{name:?}"),
            None => assert_eq!(
                r,
                Err(create_err("field 1 has unknown field type")),
                "{name:?}"
            ),
        }
    }
}

#[test]
fn entry_shape_errors() {
    assert_eq!(parse(vec![s("a")]), Err(create_err("field 1 is not map")));
    assert_eq!(
        parse(vec![V::Array(vec![s("a"), s("unsigned")])]),
        Err(create_err("field 1 is not map"))
    );
    assert_eq!(
        parse(vec![nt("a", "string"), V::from(5)]),
        Err(create_err("field 2 is not map"))
    );
    let r = parse(vec![V::Map(vec![
        (V::from(1), s("x")),
        (s("name"), s("a")),
    ])]);
    assert_eq!(
        r,
        Err(create_err("field 1 format is not map with string keys"))
    );
    // not an array at all: _space's own format says field 7 is an array
    let r = parse_space_format(&enc(&m(vec![("a", V::from(1))]))).map_err(|e| (e.code, e.message));
    let want = "Tuple field 7 type does not match one required by operation: expected array";
    assert_eq!(r, Err((23, want.into())));
}

#[test]
fn option_type_errors() {
    let one = |k: &str, v: V| {
        parse(vec![m(vec![
            ("name", s("a")),
            ("type", s("string")),
            (k, v),
        ])])
    };
    assert_eq!(
        one("is_nullable", s("yes")),
        Err(fmt_err(1, "'is_nullable' must be boolean"))
    );
    assert_eq!(
        one("is_nullable", V::Nil),
        Err(fmt_err(1, "'is_nullable' must be boolean"))
    );
    assert_eq!(
        one("collation", s("unicode")),
        Err(fmt_err(1, "'collation' must be unsigned"))
    );
    assert_eq!(
        one("collation", V::from(-1)),
        Err(fmt_err(1, "'collation' must be unsigned"))
    );
    assert_eq!(
        one("collation", V::F64(1.5)),
        Err(fmt_err(1, "'collation' must be unsigned"))
    );
    assert_eq!(
        one("collation", V::Nil),
        Err(fmt_err(1, "'collation' must be unsigned"))
    );
    assert_eq!(
        one("nullable_action", V::from(5)),
        Err(fmt_err(1, "'nullable_action' must be enum"))
    );
    assert_eq!(
        one("default", V::from(5)),
        Err(fmt_err(1, "'default' must be string"))
    );
    assert_eq!(
        parse(vec![m(vec![("name", V::from(5)), ("type", s("unsigned"))])]),
        Err(fmt_err(1, "'name' must be string"))
    );
    assert_eq!(
        parse(vec![m(vec![("name", V::Nil), ("type", s("unsigned"))])]),
        Err(fmt_err(1, "'name' must be string"))
    );
    assert_eq!(
        parse(vec![m(vec![("name", s("a")), ("type", V::from(5))])]),
        Err(fmt_err(1, "'type' must be enum"))
    );
    assert_eq!(
        parse(vec![m(vec![("name", s("a")), ("type", V::Nil)])]),
        Err(fmt_err(1, "'type' must be enum"))
    );
}

#[test]
fn check_order() {
    // value types first (141), then the name, then the type name
    assert_eq!(
        parse(vec![m(vec![("type", s("foo"))])]),
        Err(create_err("field 1 name is not specified"))
    );
    assert_eq!(
        parse(vec![m(vec![("name", V::from(5)), ("type", s("foo"))])]),
        Err(fmt_err(1, "'name' must be string"))
    );
    assert_eq!(
        parse(vec![m(vec![("type", s("foo")), ("name", V::from(5))])]),
        Err(fmt_err(1, "'name' must be string"))
    );
    assert_eq!(
        parse(vec![m(vec![("is_nullable", s("x"))])]),
        Err(fmt_err(1, "'is_nullable' must be boolean"))
    );
    let r = parse(vec![m(vec![
        ("name", s("a")),
        ("type", s("number")),
        ("collation", V::from(1)),
        ("is_nullable", s("x")),
    ])]);
    assert_eq!(r, Err(fmt_err(1, "'is_nullable' must be boolean")));
    // a bad entry beats a duplicate name
    assert_eq!(
        parse(vec![nt("a", "unsigned"), nt("a", "foo")]),
        Err(create_err("field 2 has unknown field type"))
    );
    // collation on a wrong type beats an unknown collation
    let r = parse(vec![m(vec![
        ("name", s("a")),
        ("type", s("number")),
        ("collation", V::from(999)),
    ])]);
    assert_eq!(
        r,
        Err(create_err(
            "collation is reasonable only for string, scalar and any fields"
        ))
    );
}

#[test]
fn names() {
    assert_eq!(
        parse(vec![m(vec![("type", s("unsigned"))])]),
        Err(create_err("field 1 name is not specified"))
    );
    assert_eq!(
        parse(vec![nt("", "unsigned")]),
        Err(create_err("field 1 name is not specified"))
    );
    assert_eq!(
        parse(vec![m(vec![])]),
        Err(create_err("field 1 name is not specified"))
    );
    assert_eq!(
        parse(vec![nt("a", "unsigned"), m(vec![("type", s("unsigned"))])]),
        Err(create_err("field 2 name is not specified"))
    );
    assert_eq!(
        parse(vec![nt(&"a".repeat(65001), "string")]),
        Err(create_err("field 1 name is too long"))
    );
    let r = parse(vec![nt("a\u{1}", "string")]);
    assert_eq!(
        r,
        Err(
            "70: Invalid identifier 'a\u{1}' (expected printable symbols only or it is too long)"
                .into()
        )
    );
    let r = parse(vec![nt("a\tb", "string")]);
    assert_eq!(
        r,
        Err(
            "70: Invalid identifier 'a\tb' (expected printable symbols only or it is too long)"
                .into()
        )
    );
    // duplicates: ER_SPACE_FIELD_IS_DUPLICATE
    assert_eq!(
        parse(vec![nt("a", "unsigned"), nt("a", "string")]),
        Err("149: Space field 'a' is duplicate".into())
    );
    let r = parse(vec![
        nt("a", "unsigned"),
        nt("b", "unsigned"),
        nt("b", "unsigned"),
    ]);
    assert_eq!(r, Err("149: Space field 'b' is duplicate".into()));
}

#[test]
fn nullable_actions() {
    let with = |na: &str, nl: Option<bool>| {
        let mut kv = vec![
            ("name", s("a")),
            ("type", s("string")),
            ("nullable_action", s(na)),
        ];
        if let Some(b) = nl {
            kv.push(("is_nullable", V::Boolean(b)));
        }
        parse(vec![m(kv)])
    };
    let conflict = Err(create_err(
        "field 1 has conflicting nullability and nullable action properties",
    ));
    for na in [
        "abort", "rollback", "fail", "ignore", "replace", "default", "ABORT",
    ] {
        assert!(with(na, None).is_ok(), "{na}");
    }
    assert_eq!(with("none", None), conflict);
    assert_eq!(with("abort", Some(true)), conflict);
    assert_eq!(with("default", Some(true)), conflict);
    assert_eq!(with("none", Some(false)), conflict);
    assert!(with("abort", Some(false)).is_ok());
    assert!(with("none", Some(true)).is_ok());
    assert_eq!(
        with("foo", None),
        Err(create_err(
            "field 1 has unknown field on conflict nullable action"
        ))
    );
    let r = parse_space_format_in(
        FormatDdl::Create("x"),
        &enc(&V::Array(vec![m(vec![
            ("name", s("a")),
            ("is_nullable", V::Boolean(true)),
        ])])),
    );
    assert_eq!(r.map(|v| v[0].nullable_action), Ok(NullableAction::None));
}

#[test]
fn collations() {
    let with = |ty: &str, id: i64| {
        parse(vec![m(vec![
            ("name", s("a")),
            ("type", s(ty)),
            ("collation", V::from(id)),
        ])])
    };
    for (ty, id) in [
        ("string", 1),
        ("string", 0),
        ("scalar", 2),
        ("any", 3),
        ("string", 276),
    ] {
        assert!(with(ty, id).is_ok(), "{ty} {id}");
    }
    assert_eq!(
        with("string", 277),
        Err("151: Wrong collation options (field 1): collation was not found by ID".into())
    );
    assert_eq!(
        with("string", 9999),
        Err("151: Wrong collation options (field 1): collation was not found by ID".into())
    );
    assert_eq!(
        with("unsigned", 1),
        Err(create_err(
            "collation is reasonable only for string, scalar and any fields"
        ))
    );
    let r = parse_space_format_in(
        FormatDdl::Create("x"),
        &enc(&V::Array(vec![m(vec![
            ("name", s("a")),
            ("type", s("string")),
            ("collation", V::from(2)),
        ])])),
    );
    assert_eq!(r.map(|v| v[0].collation), Ok(Some(2)));
}

#[test]
fn alter_errors_name_the_statement() {
    // _space:replace of an existing space -> ER_ALTER_SPACE
    let r = parse_space_format_in(
        FormatDdl::Alter("alt"),
        &enc(&V::Array(vec![m(vec![("type", s("unsigned"))])])),
    );
    let r = r.map_err(|e| format!("{}: {}", e.code, e.message));
    assert_eq!(
        r.err(),
        Some("12: Can't modify space 'alt': field 1 name is not specified".into())
    );
}
