//! UPDATE on top-level fields: every operation and error, pinned to Tarantool 2.6.0.
//!
//! Each case quotes the Lua that produced the expected answer on a real 2.6.0 (`s` is a space
//! without format and a primary key on field 1; `u(tuple, ops, ib)` replaces `tuple` and then
//! sends a raw IPROTO UPDATE with INDEX_BASE `ib`, which is how 0-based cases were checked).
//! Error messages always count fields from 1.

#![allow(clippy::unwrap_used)] // test helpers: a panic is a failed test

use rmpv::Value as V;
use spindle_memtx::format::{FieldDef, TupleFormat};
use spindle_memtx::update::{apply_update, UPDATE_OPS_MAX};
use spindle_memtx::FieldType;
use spindle_types::error::code;

fn enc(v: &V) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    out
}

fn dec(b: &[u8]) -> V {
    rmpv::decode::read_value(&mut &b[..]).unwrap()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn i(n: i64) -> V {
    V::from(n)
}

fn s(x: &str) -> V {
    V::from(x)
}

fn a(v: Vec<V>) -> V {
    V::Array(v)
}

/// `[code, field, args...]`.
fn op(c: &str, field: V, args: &[V]) -> V {
    let mut v = vec![s(c), field];
    v.extend_from_slice(args);
    V::Array(v)
}

fn run(tuple: &V, ops: &V, ib: u32, format: &TupleFormat) -> Result<Vec<u8>, (u32, String)> {
    apply_update(&enc(tuple), &enc(ops), ib, format).map_err(|e| (e.code, e.message))
}

/// The new tuple, or "code: message".
fn upd(tuple: V, ops: Vec<V>, ib: u32) -> Result<V, String> {
    run(&tuple, &a(ops), ib, &TupleFormat::default())
        .map(|b| dec(&b))
        .map_err(|(c, m)| format!("{c}: {m}"))
}

/// The new tuple's bytes in hex (encodings matter), or "code: message".
fn upd_hex(tuple: V, ops: Vec<V>, ib: u32) -> Result<String, String> {
    run(&tuple, &a(ops), ib, &TupleFormat::default())
        .map(|b| hex(&b))
        .map_err(|(c, m)| format!("{c}: {m}"))
}

fn t4() -> V {
    // {1, 'abcdef', 10, 20}
    a(vec![i(1), s("abcdef"), i(10), i(20)])
}

// ---- `=` ------------------------------------------------------------------------------------

#[test]
fn set_replaces_and_appends_at_len_plus_one() {
    // u({1,'abcdef',10,20}, {{'=',2,'x'},{'=',2,'y'}}, 1) -> [1,"y",10,20]
    let r = upd(
        t4(),
        vec![op("=", i(2), &[s("x")]), op("=", i(2), &[s("y")])],
        1,
    );
    assert_eq!(r, Ok(a(vec![i(1), s("y"), i(10), i(20)])));
    // {{'=',5,1},{'=',6,2}} -> [1,"abcdef",10,20,1,2]
    let r = upd(
        t4(),
        vec![op("=", i(5), &[i(1)]), op("=", i(6), &[i(2)])],
        1,
    );
    assert_eq!(r, Ok(a(vec![i(1), s("abcdef"), i(10), i(20), i(1), i(2)])));
    // {{'=',6,1}} -> ER_NO_SUCH_FIELD_NO "Field 6 was not found in the tuple"
    let r = upd(t4(), vec![op("=", i(6), &[i(1)])], 1);
    assert_eq!(r, Err("37: Field 6 was not found in the tuple".into()));
}

#[test]
fn set_negative_fields() {
    // {{'=',-4,1}} on 4 fields -> field 1 (unchanged pk value 1)
    assert_eq!(upd(t4(), vec![op("=", i(-4), &[i(1)])], 1), Ok(t4()));
    // {{'=',-5,1}} -> "Field -5 was not found in the tuple"
    let r = upd(t4(), vec![op("=", i(-5), &[i(1)])], 1);
    assert_eq!(r, Err("37: Field -5 was not found in the tuple".into()));
    // ib=0 {{'=',-1,1}} on {1,'abc',3} -> [1,"abc",1]
    let t = a(vec![i(1), s("abc"), i(3)]);
    assert_eq!(
        upd(t, vec![op("=", i(-1), &[i(1)])], 0),
        Ok(a(vec![i(1), s("abc"), i(1)]))
    );
}

#[test]
fn field_numbers_are_relative_to_index_base() {
    let t = || a(vec![i(1), s("abc"), i(3)]);
    // ib=0 {{'=',1,'Z'}} -> [1,"Z",3]
    assert_eq!(
        upd(t(), vec![op("=", i(1), &[s("Z")])], 0),
        Ok(a(vec![i(1), s("Z"), i(3)]))
    );
    // ib=0 {{'=',3,1}} -> appends; {{'=',4,1}} -> "Field 5 was not found in the tuple"
    assert_eq!(
        upd(t(), vec![op("=", i(3), &[i(1)])], 0),
        Ok(a(vec![i(1), s("abc"), i(3), i(1)]))
    );
    let r = upd(t(), vec![op("=", i(4), &[i(1)])], 0);
    assert_eq!(r, Err("37: Field 5 was not found in the tuple".into()));
    // ib=1 {{'+',0,1}} -> "Field 0 was not found in the tuple" (the number as given)
    let r = upd(t(), vec![op("+", i(0), &[i(1)])], 1);
    assert_eq!(r, Err("37: Field 0 was not found in the tuple".into()));
    // ib=2 {{'=',1,1}} -> "Field 1 was not found"; {{'=',4,1}} -> sets field 3; 5 appends
    let r = upd(t(), vec![op("=", i(1), &[i(1)])], 2);
    assert_eq!(r, Err("37: Field 1 was not found in the tuple".into()));
    assert_eq!(
        upd(t(), vec![op("=", i(4), &[i(1)])], 2),
        Ok(a(vec![i(1), s("abc"), i(1)]))
    );
    assert_eq!(
        upd(t(), vec![op("=", i(5), &[i(1)])], 2),
        Ok(a(vec![i(1), s("abc"), i(3), i(1)]))
    );
}

#[test]
fn index_base_wraps_like_a_c_int() {
    // IPROTO INDEX_BASE 4294967297 behaves as 1 (the server truncates to 32 bits, the caller
    // passes u32); 2^32-1 is -1 as an int: field 1 then means position 2.
    // u({1,'abc',3}, {{'=',1,'Z'}}, 4294967295) -> [1,"abc","Z"]; {{'=',0,'Z'}} -> [1,"Z",3]
    let t = || a(vec![i(1), s("abc"), i(3)]);
    let r = upd(t(), vec![op("=", i(1), &[s("Z")])], u32::MAX);
    assert_eq!(r, Ok(a(vec![i(1), s("abc"), s("Z")])));
    let r = upd(t(), vec![op("=", i(0), &[s("Z")])], u32::MAX);
    assert_eq!(r, Ok(a(vec![i(1), s("Z"), i(3)])));
    // INDEX_BASE 2147483648 (INT_MIN): u(.., {{'=',1,'Z'}}) -> "Field 1 was not found"
    let r = upd(t(), vec![op("=", i(1), &[s("Z")])], 1 << 31);
    assert_eq!(r, Err("37: Field 1 was not found in the tuple".into()));
}

// ---- `!` and `#` ----------------------------------------------------------------------------

#[test]
fn insert_positions() {
    // {{'!',5,1}} -> append; {{'!',6,1}} -> "Field 6 was not found in the tuple"
    let r = upd(t4(), vec![op("!", i(5), &[i(1)])], 1);
    assert_eq!(r, Ok(a(vec![i(1), s("abcdef"), i(10), i(20), i(1)])));
    let r = upd(t4(), vec![op("!", i(6), &[i(1)])], 1);
    assert_eq!(r, Err("37: Field 6 was not found in the tuple".into()));
    // {{'!',-1,'N'}} appends, {{'!',-2,'N'}} -> [1,"abcdef",10,"N",20]
    let r = upd(t4(), vec![op("!", i(-1), &[s("N")])], 1);
    assert_eq!(r, Ok(a(vec![i(1), s("abcdef"), i(10), i(20), s("N")])));
    let r = upd(t4(), vec![op("!", i(-2), &[s("N")])], 1);
    assert_eq!(r, Ok(a(vec![i(1), s("abcdef"), i(10), s("N"), i(20)])));
    // {{'!',-4,'N'}} -> [1,"N","abcdef",10,20]; {{'!',-6,'N'}} -> "Field -6 was not found"
    let r = upd(t4(), vec![op("!", i(-4), &[s("N")])], 1);
    assert_eq!(r, Ok(a(vec![i(1), s("N"), s("abcdef"), i(10), i(20)])));
    let r = upd(t4(), vec![op("!", i(-6), &[s("N")])], 1);
    assert_eq!(r, Err("37: Field -6 was not found in the tuple".into()));
    // {{'!',-5,'N'}} inserts before field 1 (the space then refuses the pk change)
    let r = upd(t4(), vec![op("!", i(-5), &[s("N")])], 1);
    assert_eq!(r, Ok(a(vec![s("N"), i(1), s("abcdef"), i(10), i(20)])));
}

#[test]
fn delete_counts() {
    // {{'#',3,10}} -> [1,"abcdef"]; {{'#',-1,10}} -> [1,"abcdef",10]
    assert_eq!(
        upd(t4(), vec![op("#", i(3), &[i(10)])], 1),
        Ok(a(vec![i(1), s("abcdef")]))
    );
    let r = upd(t4(), vec![op("#", i(-1), &[i(10)])], 1);
    assert_eq!(r, Ok(a(vec![i(1), s("abcdef"), i(10)])));
    // {{'#',5,1}} -> "Field 5 was not found in the tuple"
    let r = upd(t4(), vec![op("#", i(5), &[i(1)])], 1);
    assert_eq!(r, Err("37: Field 5 was not found in the tuple".into()));
    // {{'#',3,0}} -> ER_UPDATE_FIELD "Field 3 UPDATE error: cannot delete 0 fields"
    let r = upd(t4(), vec![op("#", i(3), &[i(0)])], 1);
    assert_eq!(
        r,
        Err("29: Field 3 UPDATE error: cannot delete 0 fields".into())
    );
    // {{'#',3,4294967296}}: the count is kept in 32 bits -> 0 -> the same error
    let r = upd(t4(), vec![op("#", i(3), &[i(1 << 32)])], 1);
    assert_eq!(
        r,
        Err("29: Field 3 UPDATE error: cannot delete 0 fields".into())
    );
    // {{'#',3,4294967295}} -> [1,"abcdef"]
    let r = upd(t4(), vec![op("#", i(3), &[i(u32::MAX as i64)])], 1);
    assert_eq!(r, Ok(a(vec![i(1), s("abcdef")])));
}

#[test]
fn delete_argument_must_be_positive_integer() {
    // {{'#',3,-1}} / {{'#',3,'x'}} / {{'#',3,1.5}} -> ER_UPDATE_ARG_TYPE
    let want = "26: Argument type in operation '#' on field 3 does not match field type: \
                expected a positive integer";
    for arg in [i(-1), s("x"), V::F64(1.5)] {
        assert_eq!(upd(t4(), vec![op("#", i(3), &[arg])], 1), Err(want.into()));
    }
}

#[test]
fn operations_see_earlier_inserts_and_deletes() {
    // {{'#',3,1},{'=',3,1}} -> [1,"abcdef",1]; {{'!',3,1},{'=',3,2}} -> [1,"abcdef",2,10,20]
    let r = upd(
        t4(),
        vec![op("#", i(3), &[i(1)]), op("=", i(3), &[i(1)])],
        1,
    );
    assert_eq!(r, Ok(a(vec![i(1), s("abcdef"), i(1)])));
    let r = upd(
        t4(),
        vec![op("!", i(3), &[i(1)]), op("=", i(3), &[i(2)])],
        1,
    );
    assert_eq!(r, Ok(a(vec![i(1), s("abcdef"), i(2), i(10), i(20)])));
    // {{'+',3,1},{'!',3,7}} -> [1,"abcdef",7,11,20]
    let r = upd(
        t4(),
        vec![op("+", i(3), &[i(1)]), op("!", i(3), &[i(7)])],
        1,
    );
    assert_eq!(r, Ok(a(vec![i(1), s("abcdef"), i(7), i(11), i(20)])));
}

// ---- double updates ---------------------------------------------------------------------------

#[test]
fn only_assignment_may_follow_a_change() {
    let dbl = |f: i64| {
        Err(format!(
            "29: Field {f} UPDATE error: double update of the same field"
        ))
    };
    // {{'+',3,1},{'+',3,1}} -> double update; {{'=',3,1},{'+',3,5}} -> double update
    assert_eq!(
        upd(
            t4(),
            vec![op("+", i(3), &[i(1)]), op("+", i(3), &[i(1)])],
            1
        ),
        dbl(3)
    );
    assert_eq!(
        upd(
            t4(),
            vec![op("=", i(3), &[i(1)]), op("+", i(3), &[i(5)])],
            1
        ),
        dbl(3)
    );
    // {{':',2,1,1,'X'},{':',2,1,1,'Y'}} -> double update of field 2
    let sp = |x: &str| op(":", i(2), &[i(1), i(1), s(x)]);
    assert_eq!(upd(t4(), vec![sp("X"), sp("Y")], 1), dbl(2));
    // {{'+',3,1},{'=',3,5}} -> [1,"abcdef",5,20]; {{'&',3,5},{'=',3,6}} likewise
    let r = upd(
        t4(),
        vec![op("+", i(3), &[i(1)]), op("=", i(3), &[i(5)])],
        1,
    );
    assert_eq!(r, Ok(a(vec![i(1), s("abcdef"), i(5), i(20)])));
    // {{'+',3,1},{'#',3,1}} -> [1,"abcdef",20]
    let r = upd(
        t4(),
        vec![op("+", i(3), &[i(1)]), op("#", i(3), &[i(1)])],
        1,
    );
    assert_eq!(r, Ok(a(vec![i(1), s("abcdef"), i(20)])));
}

#[test]
fn inserted_fields_are_fresh() {
    // {{'!',3,5},{'+',3,1}} -> [1,"abcdef",6,10,20]
    let r = upd(
        t4(),
        vec![op("!", i(3), &[i(5)]), op("+", i(3), &[i(1)])],
        1,
    );
    assert_eq!(r, Ok(a(vec![i(1), s("abcdef"), i(6), i(10), i(20)])));
    // {1,'abc'}: {{'=',3,5},{'+',3,1}} -> [1,"abc",6] (`=` on len+1 is an insert)
    let t = a(vec![i(1), s("abc")]);
    let r = upd(t, vec![op("=", i(3), &[i(5)]), op("+", i(3), &[i(1)])], 1);
    assert_eq!(r, Ok(a(vec![i(1), s("abc"), i(6)])));
    // {{'!',3,5},{'=',3,6},{'+',3,1}} -> double update
    let t = a(vec![i(1), s("abc")]);
    let ops = vec![
        op("!", i(3), &[i(5)]),
        op("=", i(3), &[i(6)]),
        op("+", i(3), &[i(1)]),
    ];
    let want = "29: Field 3 UPDATE error: double update of the same field";
    assert_eq!(upd(t, ops, 1), Err(want.into()));
}

#[test]
fn negative_fields_print_resolved_after_lookup() {
    // {{'+',-3,1}} on {1,'abc',3,4} -> "... on field 2 ..." (resolved);
    // {{'+',-1,1},{'+',-1,1}} -> "Field 4 UPDATE error: double update of the same field"
    let t = || a(vec![i(1), s("abc"), i(3), i(4)]);
    let r = upd(t(), vec![op("+", i(-3), &[i(1)])], 1);
    let want = "26: Argument type in operation '+' on field 2 does not match field type: \
                expected a number";
    assert_eq!(r, Err(want.into()));
    let r = upd(
        t(),
        vec![op("+", i(-1), &[i(1)]), op("+", i(-1), &[i(1)])],
        1,
    );
    assert_eq!(
        r,
        Err("29: Field 4 UPDATE error: double update of the same field".into())
    );
    // Read-time errors print the number as given: {{'+',-1,'x'}} -> "on field -1"
    let r = upd(t(), vec![op("+", i(-1), &[s("x")])], 1);
    let want = "26: Argument type in operation '+' on field -1 does not match field type: \
                expected a number";
    assert_eq!(r, Err(want.into()));
    // {{'+',-2147483648,'x'}} with ib=2 -> "on field 2147483647" (2.6's int wraps)
    let r = upd(t(), vec![op("+", i(i32::MIN as i64), &[s("x")])], 2);
    let want = "26: Argument type in operation '+' on field 2147483647 does not match field \
                type: expected a number";
    assert_eq!(r, Err(want.into()));
    // ib=0 {{'=',2147483647,1}} -> "Field -2147483648 was not found in the tuple"
    let r = upd(t(), vec![op("=", i(i32::MAX as i64), &[i(1)])], 0);
    assert_eq!(
        r,
        Err("37: Field -2147483648 was not found in the tuple".into())
    );
}

// ---- arithmetic -------------------------------------------------------------------------------

#[test]
fn integer_arithmetic_and_overflow() {
    let one = |v: V, c: &str, arg: V| upd(a(vec![i(1), v]), vec![op(c, i(2), &[arg])], 1);
    // {1,10}: '+' -100 -> -90 (d0a6); '-' 100 -> -90
    assert_eq!(one(i(10), "+", i(-100)), Ok(a(vec![i(1), i(-90)])));
    assert_eq!(one(i(10), "-", i(100)), Ok(a(vec![i(1), i(-90)])));
    // -9223372036854775807 - 1 fits; - 2 overflows
    assert_eq!(one(i(-i64::MAX), "-", i(1)), Ok(a(vec![i(1), i(i64::MIN)])));
    let ovf = |c: char| {
        Err(format!(
            "95: Integer overflow when performing '{c}' operation on field 2"
        ))
    };
    assert_eq!(one(i(-i64::MAX), "-", i(2)), ovf('-'));
    // 10 + 18446744073709551605 = 2^64-1 fits; 10 + (2^64-1) overflows
    assert_eq!(
        one(i(10), "+", V::from(u64::MAX - 10)),
        Ok(a(vec![i(1), V::from(u64::MAX)]))
    );
    assert_eq!(one(i(10), "+", V::from(u64::MAX)), ovf('+'));
    // -1 + (2^64-1) = 2^64-2; -1 - (2^64-1) overflows; 0 - 2^63 = -2^63; 0 - (2^63+1) overflows
    assert_eq!(
        one(i(-1), "+", V::from(u64::MAX)),
        Ok(a(vec![i(1), V::from(u64::MAX - 1)]))
    );
    assert_eq!(one(i(-1), "-", V::from(u64::MAX)), ovf('-'));
    assert_eq!(
        one(i(0), "-", V::from(1u64 << 63)),
        Ok(a(vec![i(1), i(i64::MIN)]))
    );
    assert_eq!(one(i(0), "-", V::from((1u64 << 63) + 1)), ovf('-'));
    // (2^64-1) - (2^64-1) = 0
    assert_eq!(
        one(V::from(u64::MAX), "-", V::from(u64::MAX)),
        Ok(a(vec![i(1), i(0)]))
    );
}

#[test]
fn integer_results_use_minimal_encodings() {
    // {1,-5} '+' 5 -> 920100; {1,10} '+' -100 -> 9201d0a6
    let r = upd_hex(a(vec![i(1), i(-5)]), vec![op("+", i(2), &[i(5)])], 1);
    assert_eq!(r, Ok("920100".into()));
    let r = upd_hex(a(vec![i(1), i(10)]), vec![op("+", i(2), &[i(-100)])], 1);
    assert_eq!(r, Ok("9201d0a6".into()));
}

#[test]
fn floating_results_become_float_when_exact() {
    let h = |v: V, c: &str, arg: V| upd_hex(a(vec![i(1), v]), vec![op(c, i(2), &[arg])], 1);
    // float 1.5 + 1 -> ca 2.5; float 1.5 + double 1.25 -> ca 2.75
    assert_eq!(h(V::F32(1.5), "+", i(1)), Ok("9201ca40200000".into()));
    assert_eq!(
        h(V::F32(1.5), "+", V::F64(1.25)),
        Ok("9201ca40300000".into())
    );
    // double 1.5 - double 1.5 -> ca 0.0; 10 + double 1.5 -> ca 11.5
    assert_eq!(
        h(V::F64(1.5), "-", V::F64(1.5)),
        Ok("9201ca00000000".into())
    );
    assert_eq!(h(i(10), "+", V::F64(1.5)), Ok("9201ca41380000".into()));
    // 10 + 0.1 is not exact in a float -> cb
    assert_eq!(
        h(i(10), "+", V::F64(0.1)),
        Ok("9201cb4024333333333333".into())
    );
    // float 3e38 + float 3e38: computed in double, too big for a float -> cb
    assert_eq!(
        h(V::F32(3e38), "+", V::F32(3e38)),
        Ok("9201cb47fc363cc0000000".into())
    );
    // float 0.1 + float 0.2: double arithmetic -> cb 3fd3333338000000
    assert_eq!(
        h(V::F32(0.1), "+", V::F32(0.2)),
        Ok("9201cb3fd3333338000000".into())
    );
    // 16777217 + 0.0 -> cb; 16777216 + 0.0 -> ca; 2^-149 -> ca 00000001; 2^-150 -> cb
    assert_eq!(
        h(i(16777217), "+", V::F64(0.0)),
        Ok("9201cb4170000010000000".into())
    );
    assert_eq!(
        h(i(16777216), "+", V::F64(0.0)),
        Ok("9201ca4b800000".into())
    );
    assert_eq!(
        h(V::F64(2f64.powi(-149)), "+", i(0)),
        Ok("9201ca00000001".into())
    );
    assert_eq!(
        h(V::F64(2f64.powi(-150)), "+", i(0)),
        Ok("9201cb3690000000000000".into())
    );
    // -0.0 + -0.0 -> ca 80000000; inf and nan stay doubles
    assert_eq!(
        h(V::F64(-0.0), "+", V::F64(-0.0)),
        Ok("9201ca80000000".into())
    );
    assert_eq!(
        h(i(10), "+", V::F64(f64::INFINITY)),
        Ok("9201cb7ff0000000000000".into())
    );
    assert_eq!(
        h(V::F64(1e308), "+", V::F64(1e308)),
        Ok("9201cb7ff0000000000000".into())
    );
    // (2^64-1) + 1.0 -> ca 5f800000
    assert_eq!(
        h(V::from(u64::MAX), "+", V::F64(1.0)),
        Ok("9201ca5f800000".into())
    );
}

#[test]
fn double_typed_fields_keep_doubles() {
    // format {id unsigned, d double, n number}; {1, 2.0, 5}:
    // {{'-',2,0.5}} -> cb 1.5; {{'+',3,0.5}} -> ca 5.5
    let fmt = TupleFormat::new(
        vec![
            FieldDef {
                name: "id".into(),
                field_type: FieldType::Unsigned,
                is_nullable: false,
            },
            FieldDef {
                name: "d".into(),
                field_type: FieldType::Double,
                is_nullable: false,
            },
            FieldDef {
                name: "n".into(),
                field_type: FieldType::Number,
                is_nullable: false,
            },
        ],
        0,
        &[],
    )
    .unwrap();
    let t = a(vec![i(1), V::F64(2.0), i(5)]);
    let r = run(&t, &a(vec![op("-", i(2), &[V::F64(0.5)])]), 1, &fmt).map(|b| hex(&b));
    assert_eq!(r, Ok("9301cb3ff800000000000005".into()));
    let r = run(&t, &a(vec![op("+", i(3), &[V::F64(0.5)])]), 1, &fmt).map(|b| hex(&b));
    assert_eq!(r, Ok("9301cb4000000000000000ca40b00000".into()));
    // The encoding follows where the value lands: computed in field 3, moved into the double
    // field 2 by a later delete -> cb (2.6 decides when it writes the tuple).
    let ops = a(vec![
        op("+", i(3), &[V::F64(0.5)]),
        op("#", i(2), &[i(1)]),
        op("!", i(2), &[i(0)]),
    ]);
    let r = run(&t, &ops, 1, &fmt).map(|b| hex(&b));
    assert_eq!(r, Ok("930100ca40b00000".into()));
    let ops = a(vec![op("+", i(3), &[V::F64(0.5)]), op("#", i(2), &[i(1)])]);
    let r = run(&t, &ops, 1, &fmt).map(|b| hex(&b));
    assert_eq!(r, Ok("9201cb4016000000000000".into()));
}

#[test]
fn arithmetic_type_errors() {
    let want = |c: char, f: i64| {
        Err(format!(
            "26: Argument type in operation '{c}' on field {f} does not match field type: \
             expected a number"
        ))
    };
    // {{'+',2,5}} on a string field; {{'+',3,'x'}}; nil, true and arrays are not numbers
    assert_eq!(upd(t4(), vec![op("+", i(2), &[i(5)])], 1), want('+', 2));
    assert_eq!(upd(t4(), vec![op("+", i(3), &[s("x")])], 1), want('+', 3));
    for v in [V::Nil, V::Boolean(true), a(vec![i(1)])] {
        assert_eq!(
            upd(a(vec![i(1), v.clone()]), vec![op("+", i(2), &[i(1)])], 1),
            want('+', 2)
        );
        assert_eq!(
            upd(a(vec![i(1), i(10)]), vec![op("-", i(2), &[v])], 1),
            want('-', 2)
        );
    }
}

// ---- bitwise ------------------------------------------------------------------------------

#[test]
fn bitwise_operations() {
    // {1,...,10,..}: '&' 6 -> 2, '|' 5 -> 15, '^' 6 -> 12; '|' 2^64-1 -> 2^64-1
    let r = |c: &str, arg: V| upd(t4(), vec![op(c, i(3), &[arg])], 1);
    assert_eq!(r("&", i(6)), Ok(a(vec![i(1), s("abcdef"), i(2), i(20)])));
    assert_eq!(r("|", i(5)), Ok(a(vec![i(1), s("abcdef"), i(15), i(20)])));
    assert_eq!(r("^", i(6)), Ok(a(vec![i(1), s("abcdef"), i(12), i(20)])));
    assert_eq!(
        r("|", V::from(u64::MAX)),
        Ok(a(vec![i(1), s("abcdef"), V::from(u64::MAX), i(20)]))
    );
    // negative or fractional argument, or a non-unsigned field -> "expected a positive integer"
    let want = |c: char, f: i64| {
        Err(format!(
            "26: Argument type in operation '{c}' on field {f} does not match field type: \
             expected a positive integer"
        ))
    };
    assert_eq!(r("&", i(-1)), want('&', 3));
    assert_eq!(r("&", V::F64(1.5)), want('&', 3));
    assert_eq!(upd(t4(), vec![op("&", i(2), &[i(1)])], 1), want('&', 2));
    assert_eq!(
        upd(a(vec![i(1), i(-10)]), vec![op("|", i(2), &[i(1)])], 1),
        want('|', 2)
    );
}

// ---- splice -----------------------------------------------------------------------------------

fn splice(t: &str, off: i64, cut: i64, paste: &str, ib: u32) -> Result<V, String> {
    // The string is field 2 (numbered per INDEX_BASE).
    let field = i(1 + i64::from(ib));
    upd(
        a(vec![i(1), s(t)]),
        vec![op(":", field, &[i(off), i(cut), s(paste)])],
        ib,
    )
}

fn sp_ok(x: &str) -> Result<V, String> {
    Ok(a(vec![i(1), s(x)]))
}

#[test]
fn splice_offsets() {
    // 1-based: {{':',2,1,1,'X'}} on 'abcdef' -> 'Xbcdef'; 6 -> 'abcdeX'; 7, 8, 100 -> append
    assert_eq!(splice("abcdef", 1, 1, "X", 1), sp_ok("Xbcdef"));
    assert_eq!(splice("abcdef", 6, 1, "X", 1), sp_ok("abcdeX"));
    for off in [7, 8, 100] {
        assert_eq!(splice("abcdef", off, 1, "X", 1), sp_ok("abcdefX"));
    }
    // negative: -1 appends, -6 -> 'aXcdef', -7 -> 'Xbcdef', -8 out of bound
    assert_eq!(splice("abcdef", -1, 1, "X", 1), sp_ok("abcdefX"));
    assert_eq!(splice("abcdef", -6, 1, "X", 1), sp_ok("aXcdef"));
    assert_eq!(splice("abcdef", -7, 1, "X", 1), sp_ok("Xbcdef"));
    let oob = Err("25: SPLICE error on field 2: offset is out of bound".to_string());
    assert_eq!(splice("abcdef", -8, 1, "X", 1), oob);
    // offset 0 with INDEX_BASE 1 is out of bound
    assert_eq!(splice("abcdef", 0, 1, "X", 1), oob);
    // 0-based: 'abc' offset 1 cut 0 -> 'aZbc', 0 -> 'Zabc', 3 and 4 -> 'abcZ', -4 -> 'Zabc'
    assert_eq!(splice("abc", 1, 0, "Z", 0), sp_ok("aZbc"));
    assert_eq!(splice("abc", 0, 0, "Z", 0), sp_ok("Zabc"));
    assert_eq!(splice("abc", 3, 0, "Z", 0), sp_ok("abcZ"));
    assert_eq!(splice("abc", 4, 0, "Z", 0), sp_ok("abcZ"));
    assert_eq!(splice("abc", -4, 0, "Z", 0), sp_ok("Zabc"));
    assert_eq!(splice("abc", -5, 0, "Z", 0), oob);
    // INDEX_BASE 3 shifts the offset too: 3 -> 'Zbc', 4 -> 'aZc', 2 out of bound
    let sp3 = |off: i64| {
        upd(
            a(vec![i(1), s("abc")]),
            vec![op(":", i(4), &[i(off), i(1), s("Z")])],
            3,
        )
    };
    assert_eq!(sp3(3), sp_ok("Zbc"));
    assert_eq!(sp3(4), sp_ok("aZc"));
    assert_eq!(sp3(2), oob);
    // '' : offset 1 or -1 -> 'Z'; -2 out of bound
    assert_eq!(splice("", 1, 0, "Z", 1), sp_ok("Z"));
    assert_eq!(splice("", -1, 0, "Z", 1), sp_ok("Z"));
    assert_eq!(splice("", -2, 0, "Z", 1), oob);
}

#[test]
fn splice_cut_lengths() {
    // 'abcdef' offset 2: cut -1 -> 'aXf', -2 -> 'aXef', -10 -> 'aXbcdef', 100 -> 'aX'
    assert_eq!(splice("abcdef", 2, -1, "X", 1), sp_ok("aXf"));
    assert_eq!(splice("abcdef", 2, -2, "X", 1), sp_ok("aXef"));
    assert_eq!(splice("abcdef", 2, -10, "X", 1), sp_ok("aXbcdef"));
    assert_eq!(splice("abcdef", 2, 100, "X", 1), sp_ok("aX"));
    assert_eq!(splice("abc", 2, i32::MAX as i64, "Z", 1), sp_ok("aZ"));
    // 'abc' {{':',2,1,1,''}} -> 'bc'
    assert_eq!(splice("abc", 1, 1, "", 1), sp_ok("bc"));
}

#[test]
fn splice_errors() {
    let want = |exp: &str, f: i64| {
        Err(format!(
            "26: Argument type in operation ':' on field {f} does not match field type: \
             expected {exp}"
        ))
    };
    // {{':',3,2,1,'X'}} on an integer field -> expected a string
    assert_eq!(
        upd(t4(), vec![op(":", i(3), &[i(2), i(1), s("X")])], 1),
        want("a string", 3)
    );
    // non-integer offset or cut -> expected an integer; non-string paste -> expected a string
    let sp = |o: V, c: V, p: V| upd(t4(), vec![op(":", i(2), &[o, c, p])], 1);
    assert_eq!(sp(s("a"), i(1), s("X")), want("an integer", 2));
    assert_eq!(sp(i(1), s("a"), s("X")), want("an integer", 2));
    assert_eq!(sp(V::F64(1.5), i(1), s("X")), want("an integer", 2));
    assert_eq!(sp(i(1), i(1), i(5)), want("a string", 2));
    assert_eq!(sp(i(1), i(1 << 31), s("X")), want("an integer", 2));
    // The offset is checked before the other arguments: {{':',2,0,'a','x'}} -> out of bound
    let r = sp(i(0), s("a"), s("x"));
    assert_eq!(
        r,
        Err("25: SPLICE error on field 2: offset is out of bound".into())
    );
}

// ---- malformed operations ---------------------------------------------------------------------

#[test]
fn malformed_operations() {
    let r = |ops: Vec<V>| upd(t4(), ops, 1);
    // {{'?',3,5}} -> ER_UNKNOWN_UPDATE_OP 'Unknown UPDATE operation #1: "?"'
    assert_eq!(
        r(vec![op("?", i(3), &[i(5)])]),
        Err("28: Unknown UPDATE operation #1: \"?\"".into())
    );
    assert_eq!(
        r(vec![op("==", i(3), &[i(5)])]),
        Err("28: Unknown UPDATE operation #1: \"==\"".into())
    );
    assert_eq!(
        r(vec![op("", i(3), &[i(5)])]),
        Err("28: Unknown UPDATE operation #1: \"\"".into())
    );
    // unknown op wins over arity: {{'?'}}
    assert_eq!(
        r(vec![a(vec![s("?")])]),
        Err("28: Unknown UPDATE operation #1: \"?\"".into())
    );
    // the op number counts from 1: {{'=',2,'x'},{'?',2,3}}
    let r2 = r(vec![op("=", i(2), &[s("x")]), op("?", i(2), &[i(3)])]);
    assert_eq!(r2, Err("28: Unknown UPDATE operation #2: \"?\"".into()));
    // arity
    let arity = |e: u32, g: u32| {
        Err(format!(
            "28: Unknown UPDATE operation #1: wrong number of arguments, expected {e}, got {g}"
        ))
    };
    assert_eq!(r(vec![op("+", i(3), &[])]), arity(3, 2));
    assert_eq!(r(vec![op("+", i(2), &[i(1), i(1)])]), arity(3, 4));
    assert_eq!(r(vec![a(vec![s("=")])]), arity(3, 1));
    assert_eq!(r(vec![op(":", i(2), &[i(1), i(1)])]), arity(5, 4));
    // not an array / empty / name not a string / bad field id
    let ill = |m: &str| Err(format!("1: Illegal parameters, {m}"));
    assert_eq!(
        r(vec![s("x")]),
        ill("update operation must be an array {op,..}")
    );
    assert_eq!(
        r(vec![a(vec![])]),
        ill("update operation must be an array {op,..}, got empty array")
    );
    assert_eq!(
        r(vec![a(vec![i(1), i(2), i(3)])]),
        ill("update operation name must be a string")
    );
    assert_eq!(
        r(vec![op("=", V::F64(1.5), &[i(3)])]),
        ill("field id must be a number or a string")
    );
    assert_eq!(
        r(vec![op("=", V::Boolean(true), &[i(3)])]),
        ill("field id must be a number or a string")
    );
    // an empty list changes nothing
    assert_eq!(r(vec![]), Ok(t4()));
}

#[test]
fn operation_list_limits() {
    // 4000 operations are fine, 4001 -> "Illegal parameters, too many operations for update"
    let many = |n: u32| (0..n).map(|_| op("=", i(2), &[s("x")])).collect::<Vec<_>>();
    assert_eq!(
        upd(t4(), many(UPDATE_OPS_MAX), 1),
        Ok(a(vec![i(1), s("x"), i(10), i(20)]))
    );
    let r = upd(t4(), many(UPDATE_OPS_MAX + 1), 1);
    assert_eq!(
        r,
        Err("1: Illegal parameters, too many operations for update".into())
    );
    // An operation list that is not an array: box refuses it as a tuple would be refused.
    let r = apply_update(&enc(&t4()), &enc(&s("x")), 1, &TupleFormat::default());
    assert_eq!(r.map_err(|e| e.code), Err(code::ER_TUPLE_NOT_ARRAY));
}

#[test]
fn field_ids_beyond_32_bits() {
    // {{'=',4294967296,1}}: 2.6 prints a stale field number here; we print the number given.
    let r = upd(t4(), vec![op("=", i(1 << 32), &[i(1)])], 1);
    let want = "26: Argument type in operation '=' on field 4294967296 does not match field \
                type: expected an integer";
    assert_eq!(r, Err(want.into()));
}

#[test]
fn failed_updates_change_nothing() {
    // The first operation would succeed, the second fails: the error is all one gets.
    let r = upd(
        t4(),
        vec![op("=", i(2), &[s("x")]), op("=", i(20), &[i(3)])],
        1,
    );
    assert_eq!(r, Err("37: Field 20 was not found in the tuple".into()));
}

// ---- decimals ---------------------------------------------------------------------------------

/// A Tarantool decimal (MP_EXT 1) from its scale and BCD nibbles.
fn decimal(scale: u8, bcd: &[u8]) -> V {
    let mut payload = vec![scale];
    payload.extend_from_slice(bcd);
    V::Ext(1, payload)
}

#[test]
fn decimal_arithmetic() {
    let h = |v: V, c: &str, arg: V| upd_hex(a(vec![i(1), v]), vec![op(c, i(2), &[arg])], 1);
    let d15 = || decimal(1, &[0x01, 0x5c]); // 1.5
                                            // 10 + 1.5 -> 11.5 (c7 03 01 01 11 5c)
    assert_eq!(h(i(10), "+", d15()), Ok("9201c7030101115c".into()));
    // 1.5 + 1.5 -> 3.0 (scale kept); 1.5 - 1.5 -> 0.0 (d5 01 01 0c)
    assert_eq!(h(d15(), "+", d15()), Ok("9201c7030101030c".into()));
    assert_eq!(h(d15(), "-", d15()), Ok("9201d501010c".into()));
    // 1.5 + double 0.1 -> 1.6; + float 0.1 -> 1.600000001490116 (15 significant digits)
    assert_eq!(h(d15(), "+", V::F64(0.1)), Ok("9201c7030101016c".into()));
    assert_eq!(
        h(d15(), "+", V::F32(0.1)),
        Ok("9201c70a010f01600000001490116c".into())
    );
    // -5 - 0.5 -> -5.5
    assert_eq!(
        h(i(-5), "-", decimal(1, &[0x5c])),
        Ok("9201c7030101055d".into())
    );
    // (2^64-1) + 1 -> 18446744073709551616
    assert_eq!(
        h(V::from(u64::MAX), "+", decimal(0, &[0x1c])),
        Ok("9201c70c0100018446744073709551616c".into())
    );
}

#[test]
fn decimal_rounding_and_overflow() {
    let h = |v: V, c: &str, arg: V| upd_hex(a(vec![i(1), v]), vec![op(c, i(2), &[arg])], 1);
    let mut bcd = vec![0x09];
    bcd.extend([0x99u8; 18]);
    bcd.push(0x9c);
    let nines = decimal(0, &bcd);
    // 38 nines + 0.5 rounds up to 39 digits -> ER_UPDATE_DECIMAL_OVERFLOW
    let r = h(nines.clone(), "+", decimal(1, &[0x5c]));
    assert_eq!(
        r,
        Err("160: Decimal overflow when performing operation '+' on field 2".into())
    );
    // 38 nines + 0.4 -> unchanged
    let r = h(nines.clone(), "+", decimal(1, &[0x4c]));
    assert_eq!(r, Ok(format!("9201{}", hex(&enc(&nines)))));
    // 1e30 + 0.00000025 -> ...0000003 (38 digits, rounded half up)
    let mut bcd = vec![0x10];
    bcd.extend([0u8; 14]);
    bcd.push(0x0c);
    let e30 = decimal(0, &bcd);
    let r = h(e30, "+", decimal(8, &[0x02, 0x5c]));
    assert_eq!(
        r,
        Ok("9201c7150107010000000000000000000000000000000000003c".into())
    );
    // doubles that are not numbers, or too big: "expected a number convertible to decimal"
    let want = "26: Argument type in operation '+' on field 2 does not match field type: \
                expected a number convertible to decimal";
    for d in [f64::INFINITY, f64::NAN, 1e38] {
        assert_eq!(
            h(decimal(1, &[0x01, 0x5c]), "+", V::F64(d)),
            Err(want.into())
        );
    }
    // 0 + 1e-39: the double converts at scale 38 -> 0 with scale 38 (d5 01 26 0c)
    assert_eq!(
        h(decimal(0, &[0x0c]), "+", V::F64(1e-39)),
        Ok("9201d501260c".into())
    );
    // -7 + 0.0 -> -7 (the double zero has scale 0)
    assert_eq!(
        h(decimal(0, &[0x7d]), "+", V::F64(0.0)),
        Ok("9201d501007d".into())
    );
    // bitwise operations do not take decimals
    let want = "26: Argument type in operation '&' on field 2 does not match field type: \
                expected a positive integer";
    assert_eq!(h(decimal(1, &[0x01, 0x5c]), "&", i(1)), Err(want.into()));
}
