//! Behaviours and error texts pinned to what Tarantool 2.6.0 (`/usr/bin/tarantool`,
//! 2.6.0-0-g47aa4e01e) did. Each test names the Lua that was run; results were printed with
//! `pcall` as `err.code, tostring(err)`. Lua is 1-based (`{1, 'unsigned'}` is field 0 here).

mod common;

use common::*;
use rmpv::Value as V;
use spindle_memtx::format::TupleFormat;
use spindle_memtx::index::{
    iterator_from_code, IndexDef, IndexKind::*, ER_UNSUPPORTED_INDEX_FEATURE,
};
use spindle_memtx::space::{Space, SpaceFlags};
use spindle_memtx::FieldType::{self, Number, Unsigned};
use spindle_types::error::code;
use spindle_types::iproto::IteratorType::{self, *};
use spindle_types::BoxError;

fn key(items: Vec<V>) -> Vec<u8> {
    enc(&arr(items))
}

fn t(items: Vec<V>) -> spindle_memtx::tuple::Tuple {
    tuple(&arr(items))
}

fn u(v: u64) -> V {
    V::from(v)
}

fn s(v: &str) -> V {
    V::from(v)
}

fn err_of<T: std::fmt::Debug>(r: Result<T, BoxError>) -> (u32, String) {
    let e = r.expect_err("Tarantool 2.6 failed here");
    (e.code, e.message)
}

fn select(space: &Space, index: u32, it: IteratorType, k: Vec<V>) -> Vec<V> {
    vals(
        &space
            .select(index, it, &key(k), 0, u32::MAX)
            .expect("select succeeds"),
    )
}

/// `box.schema.space.create('test')`; `pk` {1,'unsigned'}; `sk` {2,'string'} non-unique;
/// `u2` {3,'unsigned'},{4,'string'} unique; rows {1,'a',1,'x'}, {2,'a',2,'x'}, {3,'b',3,'x'}.
fn test_space() -> Space {
    let mut space = new_space(
        "test",
        vec![
            index_def(0, "pk", Tree, true, vec![part(0, Unsigned)]),
            index_def(1, "sk", Tree, false, vec![part(1, FieldType::String)]),
            index_def(
                2,
                "u2",
                Tree,
                true,
                vec![part(2, Unsigned), part(3, FieldType::String)],
            ),
        ],
    );
    for i in 1..=3 {
        let b = if i == 3 { "b" } else { "a" };
        space
            .insert(t(vec![u(i), s(b), u(i), s("x")]))
            .expect("fresh rows insert");
    }
    space
}

/// Lua: `s:select({1,2})`, `s:select({'a',2})`, `s:select({'a'})`, `s.index.u2:select({1,2})`,
/// `s:select({box.NULL})`, `s:select({1.5})`, `s:select({-1})`.
#[test]
fn select_key_errors() {
    let space = test_space();
    let count = (
        31,
        "Invalid key part count (expected [0..1], got 2)".to_string(),
    );
    assert_eq!(
        err_of(space.select(0, Eq, &key(vec![u(1), u(2)]), 0, 10)),
        count
    );
    assert_eq!(
        err_of(space.select(0, Eq, &key(vec![s("a"), u(2)]), 0, 10)),
        count
    );
    let type0 = (
        18,
        "Supplied key type of part 0 does not match index part type: expected unsigned".to_string(),
    );
    for bad in [s("a"), V::Nil, V::F64(1.5), V::from(-1)] {
        assert_eq!(err_of(space.select(0, Eq, &key(vec![bad]), 0, 10)), type0);
    }
    assert_eq!(
        err_of(space.select(2, Eq, &key(vec![u(1), u(2)]), 0, 10)),
        (
            18,
            "Supplied key type of part 1 does not match index part type: expected string"
                .to_string()
        )
    );
    assert_eq!(
        err_of(space.select(2, Eq, &key(vec![s("z"), u(2)]), 0, 10)).1,
        type0.1
    );
}

/// Lua: `s.index.u2:get({1})`, `get({1,'x',3})`, `s:get({1,2})`, `s.index.sk:get({'a'})`,
/// `sk:get({1})`, `sk:get({'a',1})`, `s:get({'a'})`, `u2:get({'a'})`, `s:delete({})`,
/// `s.index.sk:update({'a'}, ...)`, `s.index.u2:update({1}, ...)`.
#[test]
fn exact_key_errors_in_tarantool_order() {
    let mut space = test_space();
    let exact = |e: u32, g: u32| {
        (
            19,
            format!("Invalid key part count in an exact match (expected {e}, got {g})"),
        )
    };
    assert_eq!(err_of(space.get(2, &key(vec![u(1)]))), exact(2, 1));
    assert_eq!(
        err_of(space.get(2, &key(vec![u(1), s("x"), u(3)]))),
        exact(2, 3)
    );
    assert_eq!(err_of(space.get(0, &key(vec![u(1), u(2)]))), exact(1, 2));
    assert_eq!(err_of(space.get(2, &key(vec![s("a")]))), exact(2, 1));
    let more = (
        41,
        "Get() doesn't support partial keys and non-unique indexes".to_string(),
    );
    for k in [vec![s("a")], vec![u(1)], vec![s("a"), u(1)]] {
        assert_eq!(err_of(space.get(1, &key(k.clone()))), more);
        assert_eq!(err_of(space.delete(1, &key(k.clone()))), more);
        assert_eq!(err_of(space.update(1, &key(k), &key(vec![]), 1)), more);
    }
    assert_eq!(err_of(space.get(0, &key(vec![s("a")]))).0, 18);
    assert_eq!(err_of(space.delete(0, &key(vec![]))), exact(1, 0));
    assert_eq!(err_of(space.delete(2, &key(vec![u(1)]))), exact(2, 1));
    assert_eq!(
        err_of(space.update(2, &key(vec![u(1)]), &key(vec![]), 1)),
        exact(2, 1)
    );
    assert_eq!(space.len(), 3);
}

/// Lua: `s:select({1},{iterator='BITS_ALL_SET'})` (also OVERLAPS, NEIGHBOR) and
/// `s:select({'a'},{iterator='BITS_ALL_SET'})`.
#[test]
fn tree_refuses_bitset_and_rtree_iterators_after_key_checks() {
    let space = test_space();
    let msg = "Index 'pk' (TREE) of space 'test' (memtx) does not support requested iterator type";
    for it in [BitsAllSet, BitsAnySet, BitsAllNotSet, Overlaps, Neighbor] {
        assert_eq!(
            err_of(space.select(0, it, &key(vec![u(1)]), 0, 10)),
            (112, msg.to_string())
        );
    }
    assert_eq!(
        err_of(space.select(0, BitsAllSet, &key(vec![s("a")]), 0, 10)).0,
        18
    );
}

/// Lua (after the t1 run replaced {1,'a',...} by {1,'q',1,'x'}): `s:select({10},
/// {iterator='LT'})` = [[3..],[2..],[1..]]; `s:select({}, {iterator='REQ'})` descending;
/// `u2:select({2},{iterator='LE'})` = [[2..],[1..]]; `u2:select({2},{iterator='GT'})` =
/// [[3..]]; `s:select({2},{iterator='ALL'})` = [[2..],[3..]] (ALL with a key acts as GE).
#[test]
fn tree_iterator_semantics() {
    let space = test_space();
    let ids = |rows: Vec<V>| rows.iter().map(|r| field(r, 0)).collect::<Vec<_>>();
    assert_eq!(
        ids(select(&space, 0, Lt, vec![u(10)])),
        vec![u(3), u(2), u(1)]
    );
    assert_eq!(ids(select(&space, 0, Req, vec![])), vec![u(3), u(2), u(1)]);
    assert_eq!(ids(select(&space, 2, Le, vec![u(2)])), vec![u(2), u(1)]);
    assert_eq!(ids(select(&space, 2, Gt, vec![u(2)])), vec![u(3)]);
    assert_eq!(ids(select(&space, 0, All, vec![u(2)])), vec![u(2), u(3)]);
    assert_eq!(ids(select(&space, 2, All, vec![u(2)])), vec![u(2), u(3)]);
    // `s:select({}, {iterator=it})` for every iterator: GT and EQ/GE/ALL ascending,
    // LT/LE/REQ descending.
    for it in [Eq, All, Ge, Gt] {
        assert_eq!(ids(select(&space, 0, it, vec![])), vec![u(1), u(2), u(3)]);
    }
    for it in [Req, Le, Lt] {
        assert_eq!(ids(select(&space, 0, it, vec![])), vec![u(3), u(2), u(1)]);
    }
    // `s:select({}, {iterator='LE', offset=1, limit=2})`.
    let page = space.select(0, Le, &key(vec![]), 1, 2).unwrap();
    assert_eq!(ids(vals(&page)), vec![u(2), u(1)]);
}

/// Lua: pk; `sk` {2,'unsigned'} non-unique; `mk` {2,'unsigned'},{3,'string'} non-unique;
/// rows `{i, i % 3, i % 2 == 0 and 'a' or 'b'}` for i = 1..6. Equal keys order by primary key.
#[test]
fn non_unique_orders_duplicates_by_primary_key() {
    let mut space = new_space(
        "t",
        vec![
            index_def(0, "pk", Tree, true, vec![part(0, Unsigned)]),
            index_def(1, "sk", Tree, false, vec![part(1, Unsigned)]),
            index_def(
                2,
                "mk",
                Tree,
                false,
                vec![part(1, Unsigned), part(2, FieldType::String)],
            ),
        ],
    );
    for i in (1..=6).rev() {
        space
            .insert(t(vec![
                u(i),
                u(i % 3),
                s(if i % 2 == 0 { "a" } else { "b" }),
            ]))
            .unwrap();
    }
    let ids = |rows: Vec<V>| rows.iter().map(|r| field(r, 0)).collect::<Vec<_>>();
    assert_eq!(ids(select(&space, 1, Eq, vec![u(1)])), vec![u(1), u(4)]);
    assert_eq!(ids(select(&space, 1, Req, vec![u(1)])), vec![u(4), u(1)]);
    assert_eq!(ids(select(&space, 1, Lt, vec![u(1)])), vec![u(6), u(3)]);
    assert_eq!(
        ids(select(&space, 1, Le, vec![u(1)])),
        vec![u(4), u(1), u(6), u(3)]
    );
    assert_eq!(ids(select(&space, 1, Gt, vec![u(1)])), vec![u(2), u(5)]);
    assert_eq!(ids(select(&space, 2, Eq, vec![u(1)])), vec![u(4), u(1)]);
    assert_eq!(ids(select(&space, 2, Req, vec![u(1)])), vec![u(1), u(4)]);
    assert_eq!(
        ids(select(&space, 2, Lt, vec![u(1), s("b")])),
        vec![u(4), u(3), u(6)]
    );
    assert_eq!(
        err_of(space.select(2, Eq, &key(vec![u(1), s("b"), u(4)]), 0, 10)),
        (
            31,
            "Invalid key part count (expected [0..2], got 3)".to_string()
        )
    );
    assert_eq!(space.count(1, Eq, &key(vec![u(1)])).unwrap(), 2);
}

/// Lua: space `h`, `pk` HASH {1,'unsigned'}, `h2` HASH {2,'unsigned'},{3,'string'}; rows
/// `{i, i*10, 's'..i}`; selects with every iterator, locally and through net.box (same
/// results both ways).
#[test]
fn hash_iterators_and_errors() {
    let mut space = new_space(
        "h",
        vec![
            index_def(0, "pk", Hash, true, vec![part(0, Unsigned)]),
            index_def(
                1,
                "h2",
                Hash,
                true,
                vec![part(1, Unsigned), part(2, FieldType::String)],
            ),
        ],
    );
    for i in 1..=6 {
        space
            .insert(t(vec![u(i), u(i * 10), s(&format!("s{i}"))]))
            .unwrap();
    }
    let unsupported = (
        112,
        "Index 'pk' (HASH) of space 'h' (memtx) does not support requested iterator type"
            .to_string(),
    );
    for it in [
        Req,
        Lt,
        Le,
        Ge,
        BitsAllSet,
        BitsAnySet,
        BitsAllNotSet,
        Overlaps,
        Neighbor,
    ] {
        assert_eq!(
            err_of(space.select(0, it, &key(vec![u(3)]), 0, 10)),
            unsupported
        );
    }
    let partial = |e: u32, g: u32| {
        (136, format!("HASH index  does not support selects via a partial key (expected {e} parts, got {g}). Please Consider changing index type to TREE."))
    };
    for it in [Eq, Req, Lt, Le, Ge] {
        assert_eq!(
            err_of(space.select(0, it, &key(vec![]), 0, 10)),
            partial(1, 0)
        );
    }
    for it in [Eq, Req, All, Lt, Le, Ge, Gt] {
        assert_eq!(
            err_of(space.select(1, it, &key(vec![u(10)]), 0, 10)),
            partial(2, 1)
        );
        // The partial-key check comes before the type check.
        assert_eq!(
            err_of(space.select(1, it, &key(vec![s("x")]), 0, 10)),
            partial(2, 1)
        );
        assert_eq!(err_of(space.select(0, it, &key(vec![s("x")]), 0, 10)).0, 18);
        assert_eq!(
            err_of(space.select(0, it, &key(vec![u(1), u(2)]), 0, 10)).0,
            31
        );
    }
    assert_eq!(
        select(&space, 0, Eq, vec![u(3)]),
        vec![arr(vec![u(3), u(30), s("s3")])]
    );
    // ALL ignores a (valid) key; GT/ALL with an empty key is everything.
    assert_eq!(select(&space, 0, All, vec![u(3)]).len(), 6);
    assert_eq!(select(&space, 0, All, vec![]).len(), 6);
    assert_eq!(select(&space, 0, Gt, vec![]).len(), 6);
    assert_eq!(select(&space, 0, Gt, vec![u(100)]), Vec::<V>::new());
    // GT pages through the whole index in its order.
    let mut seen = Vec::new();
    let mut next_key = vec![];
    loop {
        let page = select(&space, 0, Gt, next_key.clone())
            .into_iter()
            .take(2)
            .collect::<Vec<_>>();
        let Some(last) = page.last() else { break };
        next_key = vec![field(last, 0)];
        seen.extend(page);
    }
    assert_eq!(seen, select(&space, 0, All, vec![]));
}

/// Lua: `s:insert{1,'a',2,'x'}` (dup pk and u2), `s:insert{9,'a',2,'x'}`, `s:replace{1,'a',2,'x'}`,
/// `s:replace{1,'q',1,'x'}`; space `r` with unique `a` {2} and `b` {3}, rows {1,1,1},{2,2,2}:
/// `r:replace{3,1,2}` (conflicts in a and b), `r:replace{3,3,2}`, `r:replace{1,2,1}`.
#[test]
fn duplicate_key_names_the_first_conflicting_index() {
    let mut space = test_space();
    let found = |i: &str, sp: &str| {
        (
            3,
            format!("Duplicate key exists in unique index '{i}' in space '{sp}'"),
        )
    };
    assert_eq!(
        err_of(space.insert(t(vec![u(1), s("a"), u(2), s("x")]))),
        found("pk", "test")
    );
    assert_eq!(
        err_of(space.insert(t(vec![u(9), s("a"), u(2), s("x")]))),
        found("u2", "test")
    );
    assert_eq!(
        err_of(space.replace(t(vec![u(1), s("a"), u(2), s("x")]))),
        found("u2", "test")
    );
    let change = space.replace(t(vec![u(1), s("q"), u(1), s("x")])).unwrap();
    assert_eq!(
        change.old.as_ref().map(val),
        Some(arr(vec![u(1), s("a"), u(1), s("x")]))
    );

    let mut r = new_space(
        "r",
        vec![
            index_def(0, "pk", Tree, true, vec![part(0, Unsigned)]),
            index_def(1, "a", Tree, true, vec![part(1, Unsigned)]),
            index_def(2, "b", Tree, true, vec![part(2, Unsigned)]),
        ],
    );
    r.insert(t(vec![u(1), u(1), u(1)])).unwrap();
    r.insert(t(vec![u(2), u(2), u(2)])).unwrap();
    assert_eq!(
        err_of(r.replace(t(vec![u(3), u(1), u(2)]))),
        found("a", "r")
    );
    assert_eq!(
        err_of(r.replace(t(vec![u(3), u(3), u(2)]))),
        found("b", "r")
    );
    assert_eq!(
        err_of(r.replace(t(vec![u(1), u(2), u(1)]))),
        found("a", "r")
    );
    assert_eq!(
        err_of(r.insert(t(vec![u(1), u(2), u(9)]))),
        found("pk", "r")
    );
    // `r:update({1}, {{'=', 3, 2}})`, `r:update({9}, {{'?', 3, 2}})` (missing: no error),
    // `r:update({'x'}, ...)`, `r:delete({9})`.
    assert_eq!(
        err_of(r.update(
            0,
            &key(vec![u(1)]),
            &key(vec![arr(vec![s("="), u(3), u(2)])]),
            1
        )),
        found("b", "r")
    );
    assert!(r
        .update(
            0,
            &key(vec![u(9)]),
            &key(vec![arr(vec![s("?"), u(3), u(2)])]),
            1
        )
        .unwrap()
        .is_noop());
    assert_eq!(
        err_of(r.update(0, &key(vec![s("x")]), &key(vec![]), 1)).0,
        18
    );
    assert!(r.delete(0, &key(vec![u(9)])).unwrap().is_noop());
}

/// Lua: `s:update({1}, {{'=', 1, 5}})`, `s:update({1}, {{'=', 1, 1}})`,
/// `s.index.u2:update({1,'x'}, {{'=', 1, 7}})`.
#[test]
fn update_cannot_change_the_primary_key() {
    let mut space = test_space();
    let msg = (
        94,
        "Attempt to modify a tuple field which is part of index 'pk' in space 'test'".to_string(),
    );
    let set_id = |v: u64| key(vec![arr(vec![s("="), u(1), u(v)])]);
    assert_eq!(
        err_of(space.update(0, &key(vec![u(1)]), &set_id(5), 1)),
        msg
    );
    assert_eq!(
        err_of(space.update(2, &key(vec![u(1), s("x")]), &set_id(7), 1)),
        msg
    );
    let change = space.update(0, &key(vec![u(1)]), &set_id(1), 1).unwrap();
    assert_eq!(
        change.new.as_ref().map(val),
        Some(arr(vec![u(1), s("a"), u(1), s("x")]))
    );
    let change = space
        .update(
            0,
            &key(vec![u(2)]),
            &key(vec![arr(vec![s("="), u(2), s("z")])]),
            1,
        )
        .unwrap();
    assert_eq!(
        select(&space, 1, Eq, vec![s("z")]),
        vec![change.new.as_ref().map(val).unwrap()]
    );
    space.rollback(change.old, change.new);
    assert_eq!(select(&space, 1, Eq, vec![s("a")]).len(), 2);
    assert_eq!(select(&space, 1, Eq, vec![s("z")]).len(), 0);
}

/// Lua: `up` with pk {1} and unique `sk` {2}, rows {1,10},{2,20}:
/// `s:upsert({1,5}, {{'=',2,20}})` → ER_TUPLE_FOUND 'sk'; `s:upsert({3,20}, ...)` → same;
/// `s:upsert({1,5}, {{'=',1,7}})` → silently skipped; `s:upsert({1,5}, {{'+',3,1}})` on a
/// string field → skipped; `s:upsert({3,5}, {{'?',2,1}})` → 28 even though {3} is absent;
/// `s:upsert({1,5}, {{'?',2,1}})` → 28 too.
#[test]
fn upsert_rules() {
    let mut space = new_space(
        "up",
        vec![
            index_def(0, "pk", Tree, true, vec![part(0, Unsigned)]),
            index_def(1, "sk", Tree, true, vec![part(1, Unsigned)]),
        ],
    );
    space.insert(t(vec![u(1), u(10), s("y")])).unwrap();
    space.insert(t(vec![u(2), u(20)])).unwrap();
    let ops = |op: &str, f: u64, v: V| key(vec![arr(vec![s(op), u(f), v])]);
    let found = (
        3,
        "Duplicate key exists in unique index 'sk' in space 'up'".to_string(),
    );
    assert_eq!(
        err_of(space.upsert(t(vec![u(1), u(5)]), &ops("=", 2, u(20)), 1)),
        found
    );
    assert_eq!(
        err_of(space.upsert(t(vec![u(3), u(20)]), &ops("=", 2, u(20)), 1)),
        found
    );
    assert!(space
        .upsert(t(vec![u(1), u(5)]), &ops("=", 1, u(7)), 1)
        .unwrap()
        .is_noop());
    let unknown = (28, "Unknown UPDATE operation #1: \"?\"".to_string());
    assert_eq!(
        err_of(space.upsert(t(vec![u(3), u(5)]), &ops("?", 2, u(1)), 1)),
        unknown
    );
    assert_eq!(
        err_of(space.upsert(t(vec![u(1), u(5)]), &ops("?", 2, u(1)), 1)),
        unknown
    );
    space
        .upsert(t(vec![u(1), u(5)]), &ops("+", 3, u(1)), 1)
        .unwrap();
    assert_eq!(
        select(&space, 0, All, vec![]),
        vec![arr(vec![u(1), u(10), s("y")]), arr(vec![u(2), u(20)])]
    );
    // `s:upsert({1, 5}, {{'+', 2, 5}})` applies; a missing key inserts the tuple as given.
    let change = space
        .upsert(t(vec![u(1), u(5)]), &ops("+", 2, u(5)), 1)
        .unwrap();
    assert_eq!(
        change.new.as_ref().map(val),
        Some(arr(vec![u(1), u(15), s("y")]))
    );
    let change = space
        .upsert(t(vec![u(5), u(50)]), &ops("+", 2, u(5)), 1)
        .unwrap();
    assert_eq!(change.new.as_ref().map(val), Some(arr(vec![u(5), u(50)])));
}

/// Lua: `nl` with pk and unique nullable `un` {2,'unsigned',is_nullable=true}:
/// inserts {1,box.NULL}, {2,box.NULL}, {3} succeed, {4,7} then {5,7} → 'un';
/// `un:select{box.NULL}` = [[1,null],[2,null],[3]]; `un:get{box.NULL}` → 18.
#[test]
fn nullable_unique_index_admits_many_nils() {
    let mut space = new_space(
        "nl",
        vec![
            index_def(0, "pk", Tree, true, vec![part(0, Unsigned)]),
            index_def(1, "un", Tree, true, vec![nullable(1, Unsigned)]),
        ],
    );
    space.insert(t(vec![u(1), V::Nil])).unwrap();
    space.insert(t(vec![u(2), V::Nil])).unwrap();
    space.insert(t(vec![u(3)])).unwrap();
    space.insert(t(vec![u(4), u(7)])).unwrap();
    assert_eq!(
        err_of(space.insert(t(vec![u(5), u(7)]))).1,
        "Duplicate key exists in unique index 'un' in space 'nl'"
    );
    let nils = select(&space, 1, Eq, vec![V::Nil]);
    assert_eq!(
        nils,
        vec![
            arr(vec![u(1), V::Nil]),
            arr(vec![u(2), V::Nil]),
            arr(vec![u(3)])
        ]
    );
    assert_eq!(
        select(&space, 1, Gt, vec![V::Nil]),
        vec![arr(vec![u(4), u(7)])]
    );
    assert_eq!(
        err_of(space.get(1, &key(vec![V::Nil]))),
        (
            18,
            "Supplied key type of part 0 does not match index part type: expected unsigned"
                .to_string()
        )
    );
    assert_eq!(err_of(space.delete(1, &key(vec![V::Nil]))).0, 18);
    assert_eq!(err_of(space.select(0, Eq, &key(vec![V::Nil]), 0, 1)).0, 18);
}

/// Lua: space `u` with pk {1,'number'}; inserting 1, then `ffi.cast('double', 1)`,
/// `ffi.cast('float', 1)`, -0.0 after 0, `0/0` after NaN, 2^63 as uint and as double: each
/// second insert is a duplicate. A HASH `number` index finds {1} by `ffi.cast('double', 1)`
/// and {0} by -0.0; a HASH `scalar` index finds {1} by 1.0.
#[test]
fn numbers_equal_across_encodings_collide() {
    for kind in [Tree, Hash] {
        let space_of = || {
            new_space(
                "u",
                vec![index_def(0, "pk", kind, true, vec![part(0, Number)])],
            )
        };
        let pairs = [
            (V::from(1), V::F64(1.0)),
            (V::from(1), V::F32(1.0)),
            (V::from(0), V::F64(-0.0)),
            (V::F64(f64::NAN), V::F32(f32::NAN)),
            (V::from(1u64 << 63), V::F64(9_223_372_036_854_775_808.0)),
            (V::from(18_000_000_000_000_000_000u64), V::F64(1.8e19)),
        ];
        for (a, b) in pairs {
            let mut space = space_of();
            space.insert(t(vec![a.clone()])).unwrap();
            let e = err_of(space.insert(t(vec![b.clone()])));
            assert_eq!(
                e.1,
                "Duplicate key exists in unique index 'pk' in space 'u'"
            );
            let found = space
                .get(0, &key(vec![b]))
                .unwrap()
                .map(|x| x.data().to_vec());
            assert_eq!(found, Some(enc(&arr(vec![a]))));
        }
        let mut space = space_of();
        space.insert(t(vec![V::from(u64::MAX)])).unwrap();
        space
            .insert(t(vec![V::F64(18_446_744_073_709_551_616.0)]))
            .unwrap();
    }
}

/// Lua: `n` with a non-unique `number` index over `{i, v}` for big integers and doubles
/// (forced with `ffi.cast('double', x)`); `s.index.num:pairs()` printed, in order:
/// nan, -inf, -9.3e18, -2^63 (int), -2^63 (double), -2^63+1, -0.0, 0, 1 ×3, 2^53 (double),
/// 2^53+1 (uint), 2^53+2 (double), 2^63-1, 2^63 (uint), 2^63 (double), 1.8e19-1, 1.8e19
/// (double), 1.8e19 (uint), 1.8e19+1, 2^64-1, 2^64 (double), inf.
#[test]
fn number_index_order() {
    let mut space = new_space(
        "n",
        vec![
            index_def(0, "pk", Tree, true, vec![part(0, Unsigned)]),
            index_def(1, "num", Tree, false, vec![part(1, Number)]),
        ],
    );
    let expected = vec![
        V::F64(f64::NAN),
        V::F64(f64::NEG_INFINITY),
        V::F64(-9.3e18),
        V::from(i64::MIN),
        V::F64(-9_223_372_036_854_775_808.0),
        V::from(i64::MIN + 1),
        V::F64(-0.0),
        V::from(0),
        V::from(1),
        V::F64(1.0),
        V::F32(1.0),
        V::F64(9_007_199_254_740_992.0),
        V::from(9_007_199_254_740_993u64),
        V::F64(9_007_199_254_740_994.0),
        V::from(i64::MAX as u64),
        V::from(1u64 << 63),
        V::F64(9_223_372_036_854_775_808.0),
        V::from(17_999_999_999_999_999_999u64),
        V::F64(1.8e19),
        V::from(18_000_000_000_000_000_000u64),
        V::from(18_000_000_000_000_000_001u64),
        V::from(u64::MAX),
        V::F64(18_446_744_073_709_551_616.0),
        V::F64(f64::INFINITY),
    ];
    // Insert in reverse so that equal values (ordered by primary key) keep the list order.
    for (i, v) in expected.iter().enumerate().rev() {
        space.insert(t(vec![u(i as u64), v.clone()])).unwrap();
    }
    let got: Vec<u64> = select(&space, 1, All, vec![])
        .iter()
        .map(|r| field(r, 0).as_u64().unwrap())
        .collect();
    assert_eq!(got, (0..expected.len() as u64).collect::<Vec<_>>());
}

/// Lua: `s:create_index('pk', {unique=false})`, `{parts={{1,'unsigned',is_nullable=true}}}`,
/// `{type='hash', unique=false}` on a secondary, `{type='hash', parts={{2,'unsigned',
/// is_nullable=true}}}`, `s:create_index('pk')` twice, `s.index.pk:drop()` with a secondary,
/// `s:create_index('sk', {id=1, ...})` before any primary, unique `sk` over duplicates, and
/// `s:insert{1}` without indexes.
#[test]
fn ddl_errors() {
    let mut space = Space::new(600, "t", SpaceFlags::default(), TupleFormat::default());
    assert_eq!(
        err_of(space.insert(t(vec![u(1)]))),
        (35, "No index #0 is defined in space 't'".to_string())
    );
    assert_eq!(err_of(space.select(0, Eq, &key(vec![]), 0, 1)).0, 35);
    let sk = index_def(1, "sk", Tree, true, vec![part(1, Unsigned)]);
    assert_eq!(
        err_of(space.add_index(sk.clone())),
        (
            12,
            "Can't modify space 't': can not add a secondary key before primary".to_string()
        )
    );
    let pk = |kind, unique, p| index_def(0, "pk", kind, unique, vec![p]);
    assert_eq!(
        err_of(space.add_index(pk(Tree, false, part(0, Unsigned)))),
        (
            14,
            "Can't create or modify index 'pk' in space 't': primary key must be unique"
                .to_string()
        )
    );
    assert_eq!(
        err_of(space.add_index(pk(Tree, true, nullable(0, Unsigned)))),
        (
            152,
            "Primary index of space 't' can not contain nullable parts".to_string()
        )
    );
    space.add_index(pk(Tree, true, part(0, Unsigned))).unwrap();
    assert_eq!(
        err_of(space.add_index(pk(Tree, true, part(0, Unsigned)))),
        (85, "Index 'pk' already exists".to_string())
    );
    let hash = |unique, p| IndexDef {
        id: 2,
        name: "hx".into(),
        kind: Hash,
        unique,
        key_def: spindle_memtx::key_def::KeyDef::new(vec![p]),
    };
    assert_eq!(
        err_of(space.add_index(hash(false, part(1, Unsigned)))),
        (
            14,
            "Can't create or modify index 'hx' in space 't': HASH index must be unique".to_string()
        )
    );
    assert_eq!(
        err_of(space.add_index(hash(true, nullable(1, Unsigned)))),
        (5, "HASH does not support nullable parts".to_string())
    );
    space.insert(t(vec![u(1), u(1)])).unwrap();
    space.insert(t(vec![u(2), u(1)])).unwrap();
    assert_eq!(
        err_of(space.add_index(sk.clone())),
        (
            3,
            "Duplicate key exists in unique index 'sk' in space 't'".to_string()
        )
    );
    assert_eq!(space.indexes().len(), 1);
    space
        .add_index(IndexDef {
            unique: false,
            ..sk
        })
        .unwrap();
    assert_eq!(
        err_of(space.drop_index(0)),
        (
            17,
            "Can't drop primary key in space 't' while secondary keys exist".to_string()
        )
    );
    assert_eq!(select(&space, 1, Eq, vec![u(1)]).len(), 2);
    space.drop_index(1).unwrap();
    space.drop_index(0).unwrap();
    assert_eq!(space.len(), 0);
}

/// Lua: `s:insert{10, string.rep('a', 1024*1024)}` with only a primary key, default
/// `memtx_max_tuple_size`: "Failed to allocate 1048597 bytes for tuple: ...".
#[test]
fn max_tuple_size() {
    let mut space = new_space(
        "t",
        vec![index_def(0, "pk", Tree, true, vec![part(0, Unsigned)])],
    );
    let big = "a".repeat(1024 * 1024);
    assert_eq!(
        err_of(space.insert(t(vec![u(10), s(&big)]))),
        (110, "Failed to allocate 1048597 bytes for tuple: tuple is too large. Check 'memtx_max_tuple_size' configuration option.".to_string())
    );
    space.insert(t(vec![u(10), s(&big[100..])])).unwrap();
    // With secondary indexes on fields 2 and 4, `s:insert{10, 1, string.rep('a', 1024*1024), 5}`
    // reports 1048607 bytes: 4 more per indexed field after the first.
    let mut space = new_space(
        "t",
        vec![index_def(0, "pk", Tree, true, vec![part(0, Unsigned)])],
    );
    space
        .add_index(index_def(1, "sk", Tree, true, vec![part(1, Unsigned)]))
        .unwrap();
    space
        .add_index(index_def(2, "sk3", Tree, true, vec![part(3, Unsigned)]))
        .unwrap();
    let e = err_of(space.insert(t(vec![u(11), u(1), s(&big), u(5)])));
    assert!(
        e.1.starts_with("Failed to allocate 1048607 bytes for tuple"),
        "{}",
        e.1
    );
}

/// Lua: `s:select({1}, {iterator=77})` and `s:select({'a'}, {iterator=77})`, locally and via
/// net.box (also code 12): the iterator is refused before the key is looked at.
#[test]
fn unknown_iterator_code() {
    for code in [12, 77, u64::MAX] {
        let e = iterator_from_code(code).expect_err("unknown code");
        assert_eq!(
            (e.code, e.message.as_str()),
            (1, "Illegal parameters, Invalid iterator type")
        );
    }
    assert_eq!(iterator_from_code(6).ok(), Some(Gt));
}

/// Lua: `s:insert{1, 'x'}`, then `s:format({{'a','unsigned'},{'b','unsigned'}})` fails and
/// leaves the format alone (`s:insert{2, 3}` still works); then a `string` format for field 2
/// fails because of {2, 3}.
#[test]
fn set_format_checks_stored_tuples() {
    use spindle_memtx::format::FieldDef;
    let mut space = new_space(
        "t",
        vec![index_def(0, "pk", Tree, true, vec![part(0, Unsigned)])],
    );
    space.insert(t(vec![u(1), s("x")])).unwrap();
    let format = |second| {
        let field = |name: &str, field_type| FieldDef {
            name: name.into(),
            field_type,
            is_nullable: false,
        };
        TupleFormat::new(vec![field("a", Unsigned), field("b", second)], 0, &[]).unwrap()
    };
    let msg = |ty: &str| {
        (
            23,
            format!("Tuple field 2 type does not match one required by operation: expected {ty}"),
        )
    };
    assert_eq!(err_of(space.set_format(format(Unsigned))), msg("unsigned"));
    space.insert(t(vec![u(2), u(3)])).unwrap();
    assert_eq!(
        err_of(space.set_format(format(FieldType::String))),
        msg("string")
    );
    space.insert(t(vec![u(3), u(3)])).unwrap();
    space.delete(0, &key(vec![u(1)])).unwrap();
    space.set_format(format(Unsigned)).unwrap();
    assert_eq!(err_of(space.insert(t(vec![u(4), s("x")]))), msg("unsigned"));
}

#[test]
fn unsupported_feature_code_is_112() {
    assert_eq!(ER_UNSUPPORTED_INDEX_FEATURE, 112);
    assert_eq!(code::ER_PARTIAL_KEY, 136);
}
