//! UPDATE by field name and JSON path, pinned to Tarantool 2.6.0.
//!
//! `f` is a space with format {id unsigned, name string, val any, m map nullable} holding
//! {1, 'abc', 5, {a = 1, b = {1, 2, 3}}}; `t` a space without format. Expected results are the
//! exact bytes 2.6 returned over IPROTO (key order inside maps matters there).

#![allow(clippy::unwrap_used)] // test helpers: a panic is a failed test

use rmpv::Value as V;
use spindle_memtx::format::{FieldDef, TupleFormat};
use spindle_memtx::update::apply_update;
use spindle_memtx::FieldType;

fn enc(v: &V) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn i(n: i64) -> V {
    V::from(n)
}

fn s(x: &str) -> V {
    V::from(x)
}

fn op(c: &str, field: V, arg: V) -> V {
    V::Array(vec![s(c), field, arg])
}

fn map(pairs: Vec<(&str, V)>) -> V {
    V::Map(pairs.into_iter().map(|(k, v)| (s(k), v)).collect())
}

fn space_f() -> TupleFormat {
    let f = |n: &str, t: FieldType, nl: bool| FieldDef {
        name: n.into(),
        field_type: t,
        is_nullable: nl,
    };
    let fields = vec![
        f("id", FieldType::Unsigned, false),
        f("name", FieldType::String, false),
        f("val", FieldType::Any, false),
        f("m", FieldType::Map, true),
    ];
    TupleFormat::new(fields, 0, &[]).unwrap()
}

/// {1, 'abc', 5, {a = 1, b = {1, 2, 3}}}
fn tuple_f() -> V {
    let m = map(vec![("a", i(1)), ("b", V::Array(vec![i(1), i(2), i(3)]))]);
    V::Array(vec![i(1), s("abc"), i(5), m])
}

/// Result bytes in hex, or "code: message".
fn on(tuple: &V, format: &TupleFormat, ops: Vec<V>) -> Result<String, String> {
    apply_update(&enc(tuple), &enc(&V::Array(ops)), 1, format)
        .map(|b| hex(&b))
        .map_err(|e| format!("{}: {}", e.code, e.message))
}

fn f(ops: Vec<V>) -> Result<String, String> {
    on(&tuple_f(), &space_f(), ops)
}

/// {1, {a = 1, b = {1, 2}}} in a space without format.
fn t2(ops: Vec<V>) -> Result<String, String> {
    let m = map(vec![("a", i(1)), ("b", V::Array(vec![i(1), i(2)]))]);
    on(&V::Array(vec![i(1), m]), &TupleFormat::default(), ops)
}

fn json_err(path: &str, pos: usize) -> Result<String, String> {
    Err(format!(
        "29: Field '{path}' UPDATE error: invalid JSON in position {pos}"
    ))
}

#[test]
fn field_names_resolve_through_the_format() {
    // f:update(1, {{'+','val',1}}) -> [1,"abc",6,{...}]
    assert_eq!(
        f(vec![op("+", s("val"), i(1))]),
        Ok("9401a36162630682a16101a16293010203".into())
    );
    // {{'+','name',1}} -> "... on field 'name' ..."
    let want = "26: Argument type in operation '+' on field 'name' does not match field type: \
                expected a number";
    assert_eq!(f(vec![op("+", s("name"), i(1))]), Err(want.into()));
    // {{'=','[2]','q'}} -> name = 'q'; {{'=','[5]','q'}} appends
    assert_eq!(
        f(vec![op("=", s("[2]"), s("q"))]),
        Ok("9401a1710582a16101a16293010203".into())
    );
    assert_eq!(
        f(vec![op("=", s("[5]"), s("q"))]),
        Ok("9501a36162630582a16101a16293010203a171".into())
    );
    // {{'=','name','z'},{'+','val',1}} and {{'=',2,'z'},{'=','name','w'}}
    let r = f(vec![op("=", s("name"), s("z")), op("+", s("val"), i(1))]);
    assert_eq!(r, Ok("9401a17a0682a16101a16293010203".into()));
    let r = f(vec![op("=", i(2), s("z")), op("=", s("name"), s("w"))]);
    assert_eq!(r, Ok("9401a1770582a16101a16293010203".into()));
    // {{'+',3,1},{'+','val',1}} -> "Field 'val' UPDATE error: double update of the same field"
    let r = f(vec![op("+", i(3), i(1)), op("+", s("val"), i(1))]);
    assert_eq!(
        r,
        Err("29: Field 'val' UPDATE error: double update of the same field".into())
    );
}

#[test]
fn unknown_names_and_fields() {
    // {{'=','nope','q'}} -> ER_NO_SUCH_FIELD_NAME "Field 'nope' was not found in the tuple"
    let r = f(vec![op("=", s("nope"), s("q"))]);
    assert_eq!(
        r,
        Err("201: Field 'nope' was not found in the tuple".into())
    );
    assert_eq!(
        f(vec![op("=", s(""), s("q"))]),
        Err("201: Field '' was not found in the tuple".into())
    );
    assert_eq!(
        f(vec![op("=", s(".a"), s("q"))]),
        Err("201: Field '.a' was not found in the tuple".into())
    );
    // Not found while applying: 2.6 quotes the path twice.
    let r = f(vec![op("=", s("[6]"), s("q"))]);
    assert_eq!(
        r,
        Err("201: Field ''[6]'' was not found in the tuple".into())
    );
    let r = t2(vec![op("=", s("[99999999999]"), i(5))]);
    assert_eq!(
        r,
        Err("201: Field ''[99999999999]'' was not found in the tuple".into())
    );
    let r = t2(vec![op("=", s("[2147483647]"), i(5))]);
    assert_eq!(
        r,
        Err("201: Field ''[2147483647]'' was not found in the tuple".into())
    );
}

#[test]
fn invalid_json_positions() {
    // Each: t:update(1, {{'=', path, 5}}) on {1, {a=1, b={1,2}}}
    let cases: &[(&str, usize)] = &[
        ("[2", 3),
        ("[2]]", 4),
        ("[2]x", 4),
        ("[2].", 5),
        ("[2]..a", 5),
        ("[2][\"a]", 8),
        ("[2][a]", 5),
        ("[2][*]", 5),
        ("[2][1.5]", 6),
        ("[2] .a", 4),
        ("[2].1a", 5),
        ("[2].a-b", 6),
        ("[2][\"a\\\"b\"]", 9),
        ("[2].a[", 6),
        ("[2][4294967296]", 5),
        ("[2147483648]", 2),
        ("[2].\"a\"", 5),
        ("[2].a.", 7),
        ("[2][]", 5),
        ("[2].b[0]", 7),
        ("[2].b[-1]", 7),
        ("[2][\"b\"]x", 9),
        ("[ 2]", 2),
        ("[2 ]", 3),
        ("\t[2]", 1),
        ("[2].1", 5),
        ("[2].$a", 5),
        ("[2].a$", 6),
        ("[2].é$", 6),
        ("[", 1),
        ("[2].b[", 6),
        ("[2][\"", 6),
        ("[2][\"ab", 8),
        ("[2][1", 6),
        ("[0]", 2),
        ("[-1]", 2),
    ];
    for &(path, pos) in cases {
        assert_eq!(
            t2(vec![op("=", s(path), i(5))]),
            json_err(path, pos),
            "{path}"
        );
    }
}

#[test]
fn nested_assignment_and_keys() {
    let cases: &[(&str, &str)] = &[
        // {{'=', path, 5}} -> 2.6's bytes
        ("[2][\"a\"]", "920182a16105a162920102"),
        ("[2]['a']", "920182a16105a162920102"),
        ("[02]", "920105"),
        ("[2].a_b", "920183a3615f6205a16101a162920102"),
        ("[2].é", "920183a2c3a905a16101a162920102"),
        ("[2].aé", "920183a361c3a905a16101a162920102"),
        ("[2].é1", "920183a3c3a93105a16101a162920102"),
        ("[2]._", "920183a15f05a16101a162920102"),
        ("[2][\"\\u0061\"]", "920183a65c753030363105a16101a162920102"),
        ("[2].b[3]", "920182a16101a16293010205"),
        ("[2][\"b\"][1]", "920182a16101a162920502"),
        ("[2]['b'][2]", "920182a16101a162920105"),
    ];
    for &(path, want) in cases {
        assert_eq!(t2(vec![op("=", s(path), i(5))]), Ok(want.into()), "{path}");
    }
}

#[test]
fn nested_kind_errors() {
    let e = |p: &str, m: &str| Err(format!("29: Field '{p}' UPDATE error: {m}"));
    let idx = "can not access by index a non-array field";
    let key = "can not access by key a non-map field";
    assert_eq!(t2(vec![op("=", s("[2][01]"), i(5))]), e("[2][01]", idx));
    assert_eq!(
        t2(vec![op("=", s("[2].b[1][1]"), i(5))]),
        e("[2].b[1][1]", idx)
    );
    assert_eq!(t2(vec![op("=", s("[2].b.x"), i(5))]), e("[2].b.x", key));
    assert_eq!(t2(vec![op("=", s("[2].a.x"), i(5))]), e("[2].a.x", key));
    assert_eq!(t2(vec![op("=", s("[2].a[1]"), i(5))]), e("[2].a[1]", idx));
    assert_eq!(t2(vec![op("=", s("[2][1]"), i(5))]), e("[2][1]", idx));
    assert_eq!(f(vec![op("=", s("name.x"), i(9))]), e("name.x", key));
    // Only `=` and `!` look at a missing element's parent; the others need the whole path:
    // t:update(1, {{'#','[3][1]',1}}) on {1, 5, nil} -> "Field ''[3][1]'' was not found"
    let t = V::Array(vec![i(1), i(5), V::Nil]);
    let r = on(
        &t,
        &TupleFormat::default(),
        vec![op("#", s("[3][1]"), i(1))],
    );
    assert_eq!(
        r,
        Err("201: Field ''[3][1]'' was not found in the tuple".into())
    );
}

#[test]
fn nested_operations_on_maps_and_arrays() {
    let cases: Vec<(V, &str)> = vec![
        (
            op("=", s("m.a"), i(7)),
            "9401a36162630582a16107a16293010203",
        ),
        // a new key goes in front
        (
            op("=", s("m.c"), i(7)),
            "9401a36162630583a16307a16101a16293010203",
        ),
        (
            op("+", s("m.a"), i(7)),
            "9401a36162630582a16108a16293010203",
        ),
        (
            op("+", s("m.b[1]"), i(7)),
            "9401a36162630582a16101a16293080203",
        ),
        (
            op("=", s("m.b[4]"), i(7)),
            "9401a36162630582a16101a1629401020307",
        ),
        (
            op("!", s("m.b[1]"), i(7)),
            "9401a36162630582a16101a1629407010203",
        ),
        (op("#", s("m.b[1]"), i(2)), "9401a36162630582a16101a1629103"),
        (op("#", s("m.a"), i(1)), "9401a36162630581a16293010203"),
        (
            op("!", s("m.z"), i(1)),
            "9401a36162630583a17a01a16101a16293010203",
        ),
        (
            op("=", s("[4].a"), i(8)),
            "9401a36162630582a16108a16293010203",
        ),
        (
            op("=", s("[4][\"a\"]"), i(8)),
            "9401a36162630582a16108a16293010203",
        ),
        (op("=", s("m"), V::Nil), "9401a361626305c0"),
        (op("#", s("m"), i(1)), "9301a361626305"),
        (op("#", s("m.b"), i(1)), "9401a36162630581a16101"),
        (op("=", s("m.b"), V::Nil), "9401a36162630582a16101a162c0"),
    ];
    for (o, want) in cases {
        assert_eq!(f(vec![o.clone()]), Ok(want.into()), "{o}");
    }
    let nf = |p: &str| Err(format!("201: Field ''{p}'' was not found in the tuple"));
    assert_eq!(f(vec![op("+", s("m.c"), i(7))]), nf("m.c"));
    assert_eq!(f(vec![op("+", s("m.b[4]"), i(7))]), nf("m.b[4]"));
    let r = f(vec![op("!", s("m.a"), i(1))]);
    assert_eq!(
        r,
        Err("29: Field 'm.a' UPDATE error: the key exists already".into())
    );
    // t2: {{'#','[2].z',1}} -> not found; {{'#','[2].a',2}} -> only one key at a time
    assert_eq!(t2(vec![op("#", s("[2].z"), i(1))]), nf("[2].z"));
    assert_eq!(t2(vec![op("#", s("[2].z"), i(2))]), nf("[2].z"));
    let r = t2(vec![op("#", s("[2].a"), i(2))]);
    let want = "29: Field '[2].a' UPDATE error: can delete only 1 field from a map in a row";
    assert_eq!(r, Err(want.into()));
}

#[test]
fn several_operations_in_one_field() {
    // {{'=','m.a',8},{'=','m.b[1]',9}} -> b first, then a (2.6's order)
    let r = f(vec![op("=", s("m.a"), i(8)), op("=", s("m.b[1]"), i(9))]);
    assert_eq!(r, Ok("9401a36162630582a16293090203a16108".into()));
    // The same path twice is a double update, even for `=`
    let r = f(vec![op("=", s("m.a"), i(8)), op("=", s("m.a"), i(9))]);
    assert_eq!(
        r,
        Err("29: Field 'm.a' UPDATE error: double update of the same field".into())
    );
    // A plain `=` on the field replaces what paths did
    let r = f(vec![op("=", s("m.a"), i(8)), op("=", s("m"), i(9))]);
    assert_eq!(r, Ok("9401a36162630509".into()));
    // t2: a=5, b=6, a=7 -> {b:6, a:7}; a=5, b=6, '+' a -> double update
    let r = t2(vec![
        op("=", s("[2].a"), i(5)),
        op("=", s("[2].b"), i(6)),
        op("=", s("[2].a"), i(7)),
    ]);
    assert_eq!(r, Ok("920182a16206a16107".into()));
    let r = t2(vec![
        op("=", s("[2].a"), i(5)),
        op("=", s("[2].b"), i(6)),
        op("+", s("[2].a"), i(7)),
    ]);
    assert_eq!(
        r,
        Err("29: Field '[2].a' UPDATE error: double update of the same field".into())
    );
    // a=5 then deleting a missing key of the (now split) map: nothing happens
    let r = t2(vec![op("=", s("[2].a"), i(5)), op("#", s("[2].z"), i(1))]);
    assert_eq!(r, Ok("920182a16105a162920102".into()));
    // b[1]=5, a=6 then '=' b / '#' b / '+' b
    let base = || vec![op("=", s("[2].b[1]"), i(5)), op("=", s("[2].a"), i(6))];
    let with = |o: V| {
        let mut v = base();
        v.push(o);
        t2(v)
    };
    assert_eq!(
        with(op("=", s("[2].b"), i(7))),
        Ok("920182a16207a16106".into())
    );
    assert_eq!(with(op("#", s("[2].b"), i(1))), Ok("920181a16106".into()));
    let r = with(op("+", s("[2].b"), i(1)));
    assert_eq!(
        r,
        Err("29: Field '[2].b' UPDATE error: double update of the same field".into())
    );
}

#[test]
fn routes_and_top_level_operations() {
    let arr = |ops: Vec<V>| {
        let t = V::Array(vec![i(1), V::Array(vec![i(1), i(2), i(3)])]);
        on(&t, &TupleFormat::default(), ops)
    };
    let p = |x: &str| s(x);
    // [2][1]=5, [2][2]=6, [2][1]=7 -> [7,6,3]: inside an array node `=` may repeat
    let r = arr(vec![
        op("=", p("[2][1]"), i(5)),
        op("=", p("[2][2]"), i(6)),
        op("=", p("[2][1]"), i(7)),
    ]);
    assert_eq!(r, Ok("920193070603".into()));
    let r = arr(vec![
        op("+", p("[2][1]"), i(5)),
        op("+", p("[2][2]"), i(6)),
        op("=", p("[2][1]"), i(7)),
    ]);
    assert_eq!(r, Ok("920193070803".into()));
    let r = arr(vec![
        op("+", p("[2][1]"), i(5)),
        op("+", p("[2][2]"), i(6)),
        op("+", p("[2][1]"), i(7)),
    ]);
    assert_eq!(
        r,
        Err("29: Field '[2][1]' UPDATE error: double update of the same field".into())
    );
    // t2: b[1]=5, b[2]=6 then '=' on the route's end -> not found; on the whole field -> set
    let two = || vec![op("=", p("[2].b[1]"), i(5)), op("=", p("[2].b[2]"), i(6))];
    let with = |o: V| {
        let mut v = two();
        v.push(o);
        t2(v)
    };
    assert_eq!(
        with(op("=", p("[2].b"), i(7))),
        Err("201: Field ''[2].b'' was not found in the tuple".into())
    );
    assert_eq!(with(op("=", p("[2]"), i(1))), Ok("920101".into()));
    let r = with(op("+", p("[2]"), i(1)));
    assert_eq!(
        r,
        Err("29: Field '[2]' UPDATE error: double update of the same field".into())
    );
    // {1,{a=1}}: '=' '[2].a' 5 then top-level '=' / '#' / '+' / '!' on field 2
    let ta = |o: V| {
        let t = V::Array(vec![i(1), map(vec![("a", i(1))])]);
        on(
            &t,
            &TupleFormat::default(),
            vec![op("=", p("[2].a"), i(5)), o],
        )
    };
    assert_eq!(ta(op("=", i(2), i(7))), Ok("920107".into()));
    assert_eq!(ta(op("#", i(2), i(1))), Ok("9101".into()));
    assert_eq!(
        ta(op("+", i(2), i(1))),
        Err("29: Field 2 UPDATE error: double update of the same field".into())
    );
    assert_eq!(ta(op("!", i(2), i(1))), Ok("93010181a16105".into()));
    // {{'=',4,{1,2}},{'=','[4][1]',5}} on {1,'abcdef',10,20}: 2.6's odd message
    let t = V::Array(vec![i(1), s("abcdef"), i(10), i(20)]);
    let r = on(
        &t,
        &TupleFormat::default(),
        vec![
            op("=", i(4), V::Array(vec![i(1), i(2)])),
            op("=", p("[4][1]"), i(5)),
        ],
    );
    assert_eq!(
        r,
        Err("29: Field '[4][1]' UPDATE error: can't update a map by not a string key".into())
    );
}

#[test]
fn map_key_order_after_splitting() {
    // {1, {a={}, b={}, c={}, d={}}}; {{'=', '[2].K', 1}, ...} -> key order of 2.6's answer
    let raw = unhex("920184a16180a16280a16380a16480");
    let run = |keys: &[&str]| {
        let ops: Vec<V> = keys
            .iter()
            .map(|k| op("=", s(&format!("[2].{k}")), i(1)))
            .collect();
        let out = apply_update(&raw, &enc(&V::Array(ops)), 1, &TupleFormat::default()).unwrap();
        // the keys, in order
        out.windows(2)
            .filter(|w| w[0] == 0xa1)
            .map(|w| w[1] as char)
            .collect::<String>()
    };
    assert_eq!(run(&["c", "a"]), "cadb");
    assert_eq!(run(&["c", "a", "d"]), "dcab");
    assert_eq!(run(&["c", "d", "a"]), "dcab");
    assert_eq!(run(&["b", "d"]), "dbca");
    assert_eq!(run(&["d", "b"]), "bdca");
    assert_eq!(run(&["a", "b"]), "bacd");
    assert_eq!(run(&["a", "d"]), "dabc");
    assert_eq!(run(&["c", "b", "a"]), "bcad");
    assert_eq!(run(&["b", "z"]), "zbcda");
    assert_eq!(run(&["z", "b"]), "bzcda");
    // with deletes: {{'#','[2].c',1},{'=','[2].a',1}} -> adb; b=, #c -> bda
    let mixed = |ops: Vec<V>| {
        let out = apply_update(&raw, &enc(&V::Array(ops)), 1, &TupleFormat::default()).unwrap();
        out.windows(2)
            .filter(|w| w[0] == 0xa1)
            .map(|w| w[1] as char)
            .collect::<String>()
    };
    assert_eq!(
        mixed(vec![op("#", s("[2].c"), i(1)), op("=", s("[2].a"), i(1))]),
        "adb"
    );
    assert_eq!(
        mixed(vec![op("=", s("[2].b"), i(1)), op("#", s("[2].c"), i(1))]),
        "bda"
    );
    assert_eq!(
        mixed(vec![op("=", s("[2].b"), i(1)), op("#", s("[2].a"), i(1))]),
        "bcd"
    );
    let r = mixed(vec![
        op("=", s("[2].b"), i(1)),
        op("=", s("[2].c"), i(1)),
        op("#", s("[2].b"), i(1)),
    ]);
    assert_eq!(r, "cda");
}

#[test]
fn operations_crossing_a_bar() {
    // Fuzz cases, verbatim bytes (tuple, ops) -> 2.6's answer.
    let raw = |t: &str, o: &str| {
        apply_update(&unhex(t), &unhex(o), 1, &TupleFormat::default())
            .map(|b| hex(&b))
            .map_err(|e| format!("{}: {}", e.code, e.message))
    };
    // {1,{b={2,9,bin}},..}: '!' '[2].b[1]' {8}; '#' '[2]["b"]' 2 -> the op ends where the bar
    // goes through an array
    let r = raw(
        "930181a162930209c40362696ed38000000000000001",
        "9293a121a85b325d2e625b315d910893a123a85b325d5b2262225d02",
    );
    assert_eq!(
        r,
        Err(
            "29: Field '[2][\"b\"]' UPDATE error: can not update array by non-integer index".into()
        )
    );
    // '#' '[3].b[1]' 1; '!' '[3].b.a' 'adc' -> a key step into the split array
    let r = raw(
        "930183a16280a16104a16392c3cd010983a163cb0000000000000000a16292a6595964646465a56564596462a16481a164a65a5962646363",
        "9393a123a85b335d2e625b315d0193a121a75b335d2e622e61a361646395a13aab5b335d5b2263225d5b315d0100a151",
    );
    assert_eq!(
        r,
        Err("29: Field '[3].b.a' UPDATE error: can not update array by non-integer index".into())
    );
    // '=' '[2].z' ''; '#' '[2].d' 1 -> {z='', b=...}
    let r = raw(
        "920182a16482a163d38000000000000000a16118a1629305ccfd01",
        "9293a13da55b325d2e7aa093a123a55b325d2e6401",
    );
    assert_eq!(r, Ok("920182a17aa0a1629305ccfd01".into()));
}
