//! Hostile input: arbitrary bytes and arbitrary MessagePack values as tuples, keys and
//! operations must produce errors, never panics, and must leave the indexes consistent.

mod common;

use common::*;
use proptest::prelude::*;
use rmpv::Value as V;
use spindle_memtx::index::{iterator_from_code, IndexKind::*};
use spindle_memtx::space::Space;
use spindle_memtx::tuple::Tuple;
use spindle_memtx::FieldType::*;

fn any_value() -> impl Strategy<Value = V> {
    let leaf = prop_oneof![
        Just(V::Nil),
        any::<bool>().prop_map(V::Boolean),
        any::<u64>().prop_map(V::from),
        any::<i64>().prop_map(V::from),
        any::<f32>().prop_map(V::F32),
        any::<f64>().prop_map(V::F64),
        ".{0,3}".prop_map(V::from),
        proptest::collection::vec(any::<u8>(), 0..4).prop_map(V::Binary),
        (any::<i8>(), proptest::collection::vec(any::<u8>(), 0..18))
            .prop_map(|(t, d)| V::Ext(t, d)),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(V::Array),
            proptest::collection::vec((inner.clone(), inner), 0..3).prop_map(V::Map),
        ]
    })
}

fn any_msgpack() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..24),
        proptest::collection::vec(any_value(), 0..5).prop_map(|items| enc(&arr(items))),
        any_value().prop_map(|v| enc(&v)),
    ]
}

fn space() -> Space {
    new_space(
        "hostile",
        vec![
            index_def(0, "pk", Tree, true, vec![part(0, Scalar)]),
            index_def(1, "h", Hash, true, vec![part(1, Scalar)]),
            index_def(
                2,
                "n",
                Tree,
                false,
                vec![nullable(2, Scalar), nullable(3, Number)],
            ),
            index_def(3, "u", Tree, true, vec![nullable(3, Number)]),
        ],
    )
}

fn check_consistent(space: &Space) -> Result<(), TestCaseError> {
    let len = space.len();
    for index in space.indexes() {
        prop_assert_eq!(index.len(), len);
        prop_assert_eq!(index.iter_all().count(), len);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn hostile_requests_never_panic(
        requests in proptest::collection::vec((0u8..7, 0u32..5, 0u64..14, any_msgpack(), any_msgpack()), 1..40)
    ) {
        let mut space = space();
        for (kind, index, iterator, a, b) in requests {
            match kind {
                0 => {
                    if let Ok(it) = iterator_from_code(iterator) {
                        let _ = space.select(index, it, &a, 0, 10);
                    }
                }
                1 => { let _ = space.get(index, &a); }
                2 => { let _ = space.delete(index, &a); }
                3 => { let _ = space.update(index, &a, &b, 1); }
                4 => {
                    if let Ok(t) = Tuple::new(&a) {
                        let _ = space.upsert(t, &b, 0);
                    }
                }
                5 => {
                    if let Ok(t) = Tuple::new(&a) {
                        let _ = space.insert(t);
                    }
                }
                _ => {
                    if let Ok(t) = Tuple::new(&a) {
                        if let Ok(change) = space.replace(t) {
                            if iterator % 2 == 0 {
                                space.rollback(change.old, change.new);
                            }
                        }
                    }
                }
            }
            check_consistent(&space)?;
        }
    }
}
