//! Properties of the update engine on arbitrary input: it never panics, whatever it returns
//! is one well-formed MessagePack array, `=` writes what it is given, and UPSERT never fails.

#![allow(clippy::unwrap_used)] // test helpers: a panic is a failed test

use proptest::prelude::*;
use rmpv::Value as V;
use spindle_memtx::format::TupleFormat;
use spindle_memtx::update::{apply_update, apply_upsert, check_upsert_ops};
use spindle_proto::mp;

fn enc(v: &V) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    out
}

fn leaf() -> impl Strategy<Value = V> {
    prop_oneof![
        Just(V::Nil),
        any::<bool>().prop_map(V::from),
        any::<u64>().prop_map(V::from),
        any::<i64>().prop_map(V::from),
        (-50i64..300).prop_map(V::from),
        any::<f32>().prop_map(V::F32),
        any::<f64>().prop_map(V::F64),
        "[a-d]{0,6}".prop_map(V::from),
        proptest::collection::vec(any::<u8>(), 0..4).prop_map(V::Binary),
        // decimals, valid and not
        (0u8..40, proptest::collection::vec(any::<u8>(), 1..6)).prop_map(|(sc, b)| {
            let mut p = vec![sc];
            p.extend(b);
            V::Ext(1, p)
        }),
    ]
}

fn value() -> impl Strategy<Value = V> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(V::Array),
            proptest::collection::vec(("[a-d]", inner), 0..4)
                .prop_map(|kv| V::Map(kv.into_iter().map(|(k, v)| (V::from(k), v)).collect())),
        ]
    })
}

fn field() -> impl Strategy<Value = V> {
    prop_oneof![
        4 => (-8i64..10).prop_map(V::from),
        1 => any::<i64>().prop_map(V::from),
        2 => "\\[[1-5]\\]((\\[[0-4]\\])|(\\.[a-d])){0,3}".prop_map(V::from),
        1 => "[\\[\\]a-d.0-9\"]{0,8}".prop_map(V::from),
        1 => leaf(),
    ]
}

fn operation() -> impl Strategy<Value = V> {
    let code = prop_oneof![
        8 => prop::sample::select(vec!["=", "+", "-", "&", "|", "^", ":", "!", "#"]),
        1 => Just("?"),
    ];
    (
        code,
        field(),
        proptest::collection::vec(leaf(), 1..5),
        value(),
    )
        .prop_map(|(c, f, args, v)| {
            let mut op = vec![V::from(c), f];
            match c {
                "=" | "!" => op.push(v),
                ":" if args.len() >= 3 => op.extend(args.into_iter().take(3)),
                _ => op.extend(args.into_iter().take(1)),
            }
            V::Array(op)
        })
}

fn tuple() -> impl Strategy<Value = V> {
    proptest::collection::vec(value(), 0..7).prop_map(V::Array)
}

fn well_formed_array(b: &[u8]) -> bool {
    mp::check(b) == Ok(b.len()) && matches!(mp::peek_type(b), Ok(mp::MpType::Array))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_tuples_well_formed(
        t in tuple(),
        ops in proptest::collection::vec(operation(), 0..6),
        ib in 0u32..3,
    ) {
        let (t, ops) = (enc(&t), enc(&V::Array(ops)));
        if let Ok(new) = apply_update(&t, &ops, ib, &TupleFormat::default()) {
            prop_assert!(well_formed_array(&new));
        }
        let new = apply_upsert(&t, &ops, ib, &TupleFormat::default());
        prop_assert!(well_formed_array(&new));
        let _ = check_upsert_ops(&ops, ib);
    }

    #[test]
    fn garbage_never_panics(t in proptest::collection::vec(any::<u8>(), 0..40),
                            ops in proptest::collection::vec(any::<u8>(), 0..40),
                            ib in any::<u32>()) {
        let _ = apply_update(&t, &ops, ib, &TupleFormat::default());
        let _ = apply_upsert(&t, &ops, ib, &TupleFormat::default());
        let _ = check_upsert_ops(&ops, ib);
    }

    #[test]
    fn assignment_reads_back(t in proptest::collection::vec(value(), 1..7), v in value(),
                             pick in any::<prop::sample::Index>(), ib in 0u32..2) {
        let n = t.len();
        let pos = pick.index(n + 1); // n: append
        let ops = V::Array(vec![V::Array(vec![V::from("="), V::from(pos as u64 + u64::from(ib)), v.clone()])]);
        let new = apply_update(&enc(&V::Array(t.clone())), &enc(&ops), ib, &TupleFormat::default()).unwrap();
        prop_assert!(well_formed_array(&new));
        // Compared as bytes: NaNs never compare equal as values.
        let mut want = t;
        if pos == n { want.push(v) } else { want[pos] = v }
        prop_assert_eq!(new, enc(&V::Array(want)));
    }

    #[test]
    fn untouched_fields_keep_their_bytes(t in proptest::collection::vec(value(), 2..7),
                                         v in value()) {
        // `=` on the last field: every other field is copied verbatim.
        let n = t.len() as i64;
        let tb = enc(&V::Array(t.clone()));
        let ops = V::Array(vec![V::Array(vec![V::from("="), V::from(-1i64), v.clone()])]);
        let new = apply_update(&tb, &enc(&ops), 1, &TupleFormat::default()).unwrap();
        let mut expected = enc(&V::Array(t[..(n as usize - 1)].to_vec()));
        // same header length here: fewer than 16 fields
        expected[0] += 1;
        expected.extend(enc(&v));
        prop_assert_eq!(new, expected);
    }
}

#[test]
fn large_tuples_and_many_operations_stay_fast() {
    // 60 000 fields, 4 000 inserts and deletes spread over them: the segment list keeps
    // every operation linear in the number of operations, not of fields.
    let t = V::Array((0..60_000).map(V::from).collect());
    let ops: Vec<V> = (0..4000i64)
        .map(|k| {
            let code = if k % 2 == 0 { "!" } else { "#" };
            V::Array(vec![
                V::from(code),
                V::from((k * 7919) % 59_000 + 1),
                V::from(1),
            ])
        })
        .collect();
    let started = std::time::Instant::now();
    let new = apply_update(&enc(&t), &enc(&V::Array(ops)), 1, &TupleFormat::default()).unwrap();
    assert!(well_formed_array(&new));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
