//! UPSERT, pinned to Tarantool 2.6.0 (raw IPROTO UPSERT with INDEX_BASE 1 on a space without
//! format, primary key on field 1).
//!
//! * Tuple missing: the request still fails for malformed operations, bad argument types,
//!   `#` of 0, a splice offset below INDEX_BASE, field 0, unknown names and bad JSON — all
//!   found while *reading* the operations (`check_upsert_ops_in`).
//! * Tuple present: each operation that fails while being *applied* is skipped (2.6 logs it),
//!   the others still apply.

#![allow(clippy::unwrap_used)] // test helpers: a panic is a failed test

use rmpv::Value as V;
use spindle_memtx::format::{FieldDef, TupleFormat};
use spindle_memtx::update::{apply_upsert, check_upsert_ops, check_upsert_ops_in};
use spindle_memtx::FieldType;

fn enc(v: &V) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    out
}

fn dec(b: &[u8]) -> V {
    rmpv::decode::read_value(&mut &b[..]).unwrap()
}

fn i(n: i64) -> V {
    V::from(n)
}

fn s(x: &str) -> V {
    V::from(x)
}

fn op(c: &str, field: V, args: &[V]) -> V {
    let mut v = vec![s(c), field];
    v.extend_from_slice(args);
    V::Array(v)
}

/// {1, 'abc', 5}
fn t() -> V {
    V::Array(vec![i(1), s("abc"), i(5)])
}

fn upsert(ops: Vec<V>) -> V {
    dec(&apply_upsert(
        &enc(&t()),
        &enc(&V::Array(ops)),
        1,
        &TupleFormat::default(),
    ))
}

fn check(ops: Vec<V>) -> Result<(), String> {
    check_upsert_ops_in(&enc(&V::Array(ops)), 1, &TupleFormat::default())
        .map_err(|e| format!("{}: {}", e.code, e.message))
}

#[test]
fn failing_operations_are_skipped_one_by_one() {
    // {{'+',3,1},{'+',2,1},{'+',3,10}} -> [1,"abc",6]: the 2nd fails (string), the 3rd is a
    // double update
    let r = upsert(vec![
        op("+", i(3), &[i(1)]),
        op("+", i(2), &[i(1)]),
        op("+", i(3), &[i(10)]),
    ]);
    assert_eq!(r, V::Array(vec![i(1), s("abc"), i(6)]));
    // {{'+',3,1},{'=',10,1},{'-',3,10}} -> [1,"abc",6]
    let r = upsert(vec![
        op("+", i(3), &[i(1)]),
        op("=", i(10), &[i(1)]),
        op("-", i(3), &[i(10)]),
    ]);
    assert_eq!(r, V::Array(vec![i(1), s("abc"), i(6)]));
    // {{'+',2,1},{'=',2,'x'}} -> [1,"x",5]
    let r = upsert(vec![op("+", i(2), &[i(1)]), op("=", i(2), &[s("x")])]);
    assert_eq!(r, V::Array(vec![i(1), s("x"), i(5)]));
    // {{'+',3,2^64-1},{'=',2,'x'}} -> [1,"x",5] (overflow skipped)
    let r = upsert(vec![
        op("+", i(3), &[V::from(u64::MAX)]),
        op("=", i(2), &[s("x")]),
    ]);
    assert_eq!(r, V::Array(vec![i(1), s("x"), i(5)]));
    // {} -> unchanged
    assert_eq!(upsert(vec![]), t());
}

#[test]
fn read_errors_surface_even_without_a_tuple() {
    let ill = |m: &str| Err(format!("1: Illegal parameters, {m}"));
    assert_eq!(
        check(vec![op("?", i(3), &[i(1)])]),
        Err("28: Unknown UPDATE operation #1: \"?\"".into())
    );
    let arity = "28: Unknown UPDATE operation #1: wrong number of arguments, expected 3, got 2";
    assert_eq!(check(vec![op("+", i(3), &[])]), Err(arity.into()));
    let arg = |c: char, f: &str, e: &str| {
        Err(format!(
            "26: Argument type in operation '{c}' on field {f} does not match field type: expected {e}"
        ))
    };
    assert_eq!(
        check(vec![op("+", i(3), &[s("x")])]),
        arg('+', "3", "a number")
    );
    assert_eq!(
        check(vec![op("&", i(3), &[i(-1)])]),
        arg('&', "3", "a positive integer")
    );
    assert_eq!(
        check(vec![op("#", i(3), &[s("x")])]),
        arg('#', "3", "a positive integer")
    );
    assert_eq!(
        check(vec![op(":", i(2), &[s("a"), i(1), s("x")])]),
        arg(':', "2", "an integer")
    );
    assert_eq!(
        check(vec![op("#", i(3), &[i(0)])]),
        Err("29: Field 3 UPDATE error: cannot delete 0 fields".into())
    );
    let r = check(vec![op(":", i(2), &[i(0), i(1), s("x")])]);
    assert_eq!(
        r,
        Err("25: SPLICE error on field 2: offset is out of bound".into())
    );
    assert_eq!(
        check(vec![op("=", V::F64(1.5), &[i(1)])]),
        ill("field id must be a number or a string")
    );
    assert_eq!(
        check(vec![i(5)]),
        ill("update operation must be an array {op,..}")
    );
    assert_eq!(
        check(vec![V::Array(vec![])]),
        ill("update operation must be an array {op,..}, got empty array")
    );
    assert_eq!(
        check(vec![V::Array(vec![i(1), i(2), i(3)])]),
        ill("update operation name must be a string")
    );
    assert_eq!(
        check(vec![op("=", i(0), &[i(1)])]),
        Err("37: Field 0 was not found in the tuple".into())
    );
    // names are looked up in the format at request time, JSON is checked up to the first step
    assert_eq!(
        check(vec![op("=", s("nope"), &[i(1)])]),
        Err("201: Field 'nope' was not found in the tuple".into())
    );
    assert_eq!(
        check(vec![op("=", s("x.y"), &[i(1)])]),
        Err("201: Field 'x.y' was not found in the tuple".into())
    );
    let r = check(vec![op("=", s("[2"), &[i(1)])]);
    assert_eq!(
        r,
        Err("29: Field '[2' UPDATE error: invalid JSON in position 3".into())
    );
    let r = check(vec![op("=", s("[0]"), &[i(1)])]);
    assert_eq!(
        r,
        Err("29: Field '[0]' UPDATE error: invalid JSON in position 2".into())
    );
}

#[test]
fn apply_time_errors_do_not_surface() {
    // These pass the request checks (2.6 inserts the tuple, or skips the operation):
    // a missing field, a later bad JSON step, a double update, an overflow.
    for ops in [
        vec![op("=", i(10), &[i(1)])],
        vec![op("=", s("[2]."), &[i(5)])],
        vec![op("=", s("[2][*]"), &[i(5)])],
        vec![op("=", s("[2]..a"), &[i(5)])],
        vec![op("+", i(3), &[i(1)]), op("+", i(3), &[i(1)])],
        vec![op("+", i(3), &[V::from(u64::MAX)])],
    ] {
        assert_eq!(check(ops), Ok(()));
    }
    // {1,{a=1,b={1,2}}}: {{'=','[2].',5},{'=',1,1}} -> unchanged
    let tup = V::Array(vec![i(1), V::Map(vec![(s("a"), i(1))])]);
    let ops = V::Array(vec![op("=", s("[2]."), &[i(5)]), op("=", i(1), &[i(1)])]);
    let r = apply_upsert(&enc(&tup), &enc(&ops), 1, &TupleFormat::default());
    assert_eq!(dec(&r), tup);
}

#[test]
fn named_fields_in_upsert() {
    let fmt = TupleFormat::new(
        vec![
            FieldDef {
                name: "id".into(),
                field_type: FieldType::Unsigned,
                is_nullable: false,
            },
            FieldDef {
                name: "val".into(),
                field_type: FieldType::Any,
                is_nullable: false,
            },
        ],
        0,
        &[],
    )
    .unwrap();
    let ops = enc(&V::Array(vec![op("+", s("val"), &[i(1)])]));
    assert_eq!(check_upsert_ops_in(&ops, 1, &fmt), Ok(()));
    let r = apply_upsert(&enc(&V::Array(vec![i(1), i(41)])), &ops, 1, &fmt);
    assert_eq!(dec(&r), V::Array(vec![i(1), i(42)]));
    // Without a format, names are accepted unchecked.
    assert_eq!(check_upsert_ops(&ops, 1), Ok(()));
}
