//! The public API against what Tarantool 2.6.0 prints: every expected text below is the
//! output of `yaml.encode(v)` / `json.encode(v)` of the equivalent Lua value, run once with
//! the installed `tarantool` (the test itself needs no Tarantool). Then round trips of the
//! JSON writer through a JSON parser.

// Test helpers panic on purpose: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use spindle_emit::{fmt_g, fmt_g14, to_json, to_yaml_document, write_json, Value, DBL_INT_MAX};

fn s(x: &str) -> Value {
    Value::str(x)
}

fn entry(k: &str, v: Value) -> (Value, Value) {
    (s(k), v)
}

fn yaml(v: &Value) -> String {
    String::from_utf8(to_yaml_document(v).unwrap()).unwrap()
}

fn json(v: &Value) -> String {
    String::from_utf8(to_json(v)).unwrap()
}

/// (what, value, yaml.encode, json.encode) for values whose JSON is valid UTF-8.
fn cases() -> Vec<(&'static str, Value, &'static str, &'static str)> {
    vec![
        // Strings a YAML reader would take for something else are single-quoted.
        ("bool word", s("yes"), "--- 'yes'\n...\n", "\"yes\""),
        ("null word", s("null"), "--- 'null'\n...\n", "\"null\""),
        ("tilde", s("~"), "--- '~'\n...\n", "\"~\""),
        ("number", s("1e5"), "--- '1e5'\n...\n", "\"1e5\""),
        (
            "padded hex",
            s(" 0x1F "),
            "--- ' 0x1F '\n...\n",
            "\" 0x1F \"",
        ),
        ("empty", s(""), "---\n...\n", "\"\""),
        (
            "leading space",
            s(" lead"),
            "--- ' lead'\n...\n",
            "\" lead\"",
        ),
        (
            "trailing space",
            s("trail "),
            "--- 'trail '\n...\n",
            "\"trail \"",
        ),
        ("colon space", s("a: b"), "--- 'a: b'\n...\n", "\"a: b\""),
        ("dash space", s("- a"), "--- '- a'\n...\n", "\"- a\""),
        ("leading hash", s("#x"), "--- '#x'\n...\n", "\"#x\""),
        ("space hash", s("x #y"), "--- 'x #y'\n...\n", "\"x #y\""),
        ("document marker", s("---"), "--- '---'\n...\n", "\"---\""),
        ("trailing colon", s("key:"), "--- 'key:'\n...\n", "\"key:\""),
        ("leading at", s("@x"), "--- '@x'\n...\n", "\"@x\""),
        // ... and the rest are plain, double-quoted or block scalars as libyaml picks.
        ("apostrophe", s("it's"), "--- it's\n...\n", "\"it's\""),
        (
            "double quotes",
            s("say \"hi\""),
            "--- say \"hi\"\n...\n",
            "\"say \\\"hi\\\"\"",
        ),
        ("slash", s("a/b"), "--- a/b\n...\n", "\"a\\/b\""),
        ("tab", s("a\tb"), "--- \"a\\tb\"\n...\n", "\"a\\tb\""),
        (
            "words",
            s("hello world"),
            "--- hello world\n...\n",
            "\"hello world\"",
        ),
        ("utf-8", s("é"), "--- é\n...\n", "\"é\""),
        ("newline", s("a\nb"), "--- 'a\n\n  b'\n...\n", "\"a\\nb\""),
        (
            "blank line",
            s("a\n\nb"),
            "--- |-\n  a\n\n  b\n...\n",
            "\"a\\n\\nb\"",
        ),
        (
            "long line",
            s(&"word ".repeat(20)),
            "--- 'word word word word word word word word word word word word word word word \
             word\n  word word word word '\n...\n",
            "\"word word word word word word word word word word word word word word word word \
             word word word word \"",
        ),
        // Empty and nested tables.
        ("empty map", Value::map(vec![]), "--- {}\n...\n", "{}"),
        ("empty seq", Value::seq(vec![]), "--- []\n...\n", "[]"),
        ("empty plain", Value::plain(vec![]), "--- []\n...\n", "[]"),
        (
            "nested plain",
            Value::plain(vec![entry(
                "a",
                Value::plain(vec![
                    (Value::Num(1.0), Value::Num(1.0)),
                    (Value::Num(2.0), Value::Num(2.0)),
                    (Value::Num(3.0), Value::plain(vec![entry("b", s("c"))])),
                ]),
            )]),
            "---\na:\n- 1\n- 2\n- b: c\n...\n",
            "{\"a\":[1,2,{\"b\":\"c\"}]}",
        ),
        (
            "nested flow",
            Value::seq(vec![
                Value::Num(1.0),
                Value::map(vec![entry(
                    "k",
                    Value::seq(vec![s("x"), Value::map(vec![])]),
                )]),
                Value::seq(vec![]),
            ]),
            "--- [1, {'k': ['x', {}]}, []]\n...\n",
            "[1,{\"k\":[\"x\",{}]},[]]",
        ),
        (
            "strings in flow",
            Value::seq(vec![s("a"), s("yes"), s(""), s("x y"), s("1")]),
            "--- ['a', 'yes', '', 'x y', '1']\n...\n",
            "[\"a\",\"yes\",\"\",\"x y\",\"1\"]",
        ),
        (
            "flow map",
            Value::map(vec![entry("k", s("v"))]),
            "--- {'k': 'v'}\n...\n",
            "{\"k\":\"v\"}",
        ),
        (
            "integer map key",
            Value::map(vec![(Value::Num(5.0), s("five"))]),
            "--- {5: 'five'}\n...\n",
            "{\"5\":\"five\"}",
        ),
        (
            "sparse array",
            Value::plain(vec![
                (Value::Num(1.0), Value::Num(1.0)),
                (Value::Num(3.0), Value::Num(3.0)),
            ]),
            "---\n- 1\n- null\n- 3\n...\n",
            "[1,null,3]",
        ),
        (
            "too sparse for an array",
            Value::plain(vec![(Value::Num(20.0), Value::Num(1.0))]),
            "---\n20: 1\n...\n",
            "{\"20\":1}",
        ),
        // Scalars: `%.14g` doubles, integral doubles as integers, 64-bit cdata.
        ("1.5", Value::Num(1.5), "--- 1.5\n...\n", "1.5"),
        ("0.1", Value::Num(0.1), "--- 0.1\n...\n", "0.1"),
        ("1e100", Value::Num(1e100), "--- 1e+100\n...\n", "1e+100"),
        ("-0", Value::Num(-0.0), "--- 0\n...\n", "0"),
        (
            "1/3",
            Value::Num(1.0 / 3.0),
            "--- 0.33333333333333\n...\n",
            "0.33333333333333",
        ),
        (
            "15 significant digits",
            Value::Num(123_456_789_012_345.6),
            "--- 1.2345678901235e+14\n...\n",
            "1.2345678901235e+14",
        ),
        (
            "2^53",
            Value::Num(9_007_199_254_740_992.0),
            "--- 9007199254740992\n...\n",
            "9007199254740992",
        ),
        ("inf", Value::Num(f64::INFINITY), "--- inf\n...\n", "inf"),
        (
            "-inf",
            Value::Num(f64::NEG_INFINITY),
            "--- -inf\n...\n",
            "-inf",
        ),
        ("1e-5", Value::Num(1e-5), "--- 1e-05\n...\n", "1e-05"),
        ("-2.5", Value::Num(-2.5), "--- -2.5\n...\n", "-2.5"),
        (
            "u64 max",
            Value::U64(u64::MAX),
            "--- 18446744073709551615\n...\n",
            "18446744073709551615",
        ),
        (
            "i64 min",
            Value::I64(i64::MIN),
            "--- -9223372036854775808\n...\n",
            "-9223372036854775808",
        ),
        ("null", Value::Null, "--- null\n...\n", "null"),
        (
            "bools",
            Value::seq(vec![Value::Bool(true), Value::Bool(false)]),
            "--- [true, false]\n...\n",
            "[true,false]",
        ),
    ]
}

#[test]
fn yaml_and_json_match_tarantool() {
    for (what, value, yaml_text, json_text) in cases() {
        assert_eq!(yaml(&value), yaml_text, "yaml.encode of {what}");
        assert_eq!(json(&value), json_text, "json.encode of {what}");
    }
}

#[test]
fn binary_strings() {
    // Not valid UTF-8: `!!binary` in YAML, the raw bytes in JSON (as lua-cjson does).
    let v = Value::Str(vec![0xff, 0x00, b'a']);
    assert_eq!(yaml(&v), "--- !!binary /wBh\n...\n");
    assert_eq!(to_json(&v), b"\"\xff\\u0000a\"");
}

#[test]
fn write_json_appends() {
    let mut out = b"x=".to_vec();
    write_json(&mut out, &Value::seq(vec![Value::Num(1.0)]));
    assert_eq!(out, b"x=[1]");
}

#[test]
fn g_formatting_at_other_precisions() {
    assert_eq!(fmt_g(0.5, 1), "0.5");
    assert_eq!(fmt_g(123_456.0, 3), "1.23e+05");
    assert_eq!(fmt_g(100.0, 0), "1e+02");
    assert_eq!(fmt_g14(1e14), "1e+14");
    assert_eq!(fmt_g14(99_999_999_999_999.0), "99999999999999");
    assert_eq!(fmt_g14(-0.0), "-0");
}

#[test]
fn dbl_int_max_is_the_cdata_threshold() {
    assert_eq!(DBL_INT_MAX, 99_999_999_999_999);
    assert_eq!(json(&Value::uint(DBL_INT_MAX + 1)), "100000000000000");
}

/// A JSON value for the parser to compare against: what `to_json` should have said.
fn expected_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Num(n) => serde_json::json!(*n as i64),
        Value::Str(b) => serde_json::Value::String(String::from_utf8(b.clone()).unwrap()),
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Null => serde_json::Value::Null,
        Value::Table(t) => match t.as_ref() {
            spindle_emit::Table::Seq(items) => {
                serde_json::Value::Array(items.iter().map(expected_json).collect())
            }
            spindle_emit::Table::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| match k {
                        Value::Str(k) => (String::from_utf8(k.clone()).unwrap(), expected_json(v)),
                        other => panic!("unexpected key {other:?}"),
                    })
                    .collect(),
            ),
            spindle_emit::Table::Plain(_) => panic!("not generated"),
        },
        other => panic!("not generated: {other:?}"),
    }
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(DBL_INT_MAX as i64)..=DBL_INT_MAX as i64).prop_map(|i| Value::Num(i as f64)),
        any::<String>().prop_map(|t| Value::Str(t.into_bytes())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::seq),
            // Distinct keys, as a Lua table has.
            prop::collection::btree_map(any::<String>(), inner, 0..6).prop_map(|m| {
                Value::map(
                    m.into_iter()
                        .map(|(k, v)| (Value::Str(k.into_bytes()), v))
                        .collect(),
                )
            }),
        ]
    })
}

proptest! {
    #[test]
    fn json_round_trips_through_a_parser(v in arb_value()) {
        let text = to_json(&v);
        let parsed: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&text))))?;
        prop_assert_eq!(parsed, expected_json(&v));
    }

    #[test]
    fn yaml_never_fails_and_is_one_document(v in arb_value()) {
        let text = to_yaml_document(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(text.starts_with(b"---"));
        prop_assert!(text.ends_with(b"\n...\n"));
    }
}
