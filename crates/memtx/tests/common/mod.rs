//! Shared helpers of the model tests: tuple encoding, generators, and a reference comparator
//! written independently of `compare.rs` (it only needs to handle the small values the
//! generators produce, where every number is exact as a double).

#![allow(dead_code)]

use proptest::prelude::*;
use rmpv::Value as V;
use spindle_memtx::format::TupleFormat;
use spindle_memtx::index::{IndexDef, IndexKind};
use spindle_memtx::key_def::{KeyDef, KeyPart};
use spindle_memtx::space::{Space, SpaceFlags};
use spindle_memtx::tuple::Tuple;
use spindle_memtx::FieldType;
use std::cmp::Ordering;

pub fn enc(v: &V) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).expect("encoding into a Vec cannot fail");
    out
}

pub fn dec(bytes: &[u8]) -> V {
    rmpv::decode::read_value(&mut &bytes[..]).expect("test data is valid MessagePack")
}

pub fn tuple(v: &V) -> Tuple {
    Tuple::new(&enc(v)).expect("test tuples are arrays")
}

pub fn arr(items: Vec<V>) -> V {
    V::Array(items)
}

/// Decodes a tuple back into a value.
pub fn val(t: &Tuple) -> V {
    dec(t.data())
}

pub fn vals(ts: &[Tuple]) -> Vec<V> {
    ts.iter().map(val).collect()
}

// ---- the reference order ----

fn class(v: &V) -> u8 {
    match v {
        V::Nil => 0,
        V::Boolean(_) => 1,
        V::Integer(_) | V::F32(_) | V::F64(_) => 2,
        V::String(_) => 3,
        V::Binary(_) => 4,
        _ => 5,
    }
}

fn as_f64(v: &V) -> f64 {
    match v {
        V::Integer(i) => i.as_f64().expect("integers convert"),
        V::F32(f) => *f as f64,
        V::F64(f) => *f,
        _ => unreachable!("numbers only"),
    }
}

/// Tarantool's scalar order for the values the generators produce.
pub fn ref_cmp_value(a: &V, b: &V) -> Ordering {
    match class(a).cmp(&class(b)) {
        Ordering::Equal => {}
        other => return other,
    }
    match (a, b) {
        (V::Nil, V::Nil) => Ordering::Equal,
        (V::Boolean(x), V::Boolean(y)) => x.cmp(y),
        (V::String(x), V::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (V::Binary(x), V::Binary(y)) => x.cmp(y),
        _ => as_f64(a).partial_cmp(&as_f64(b)).expect("no NaN generated"),
    }
}

pub fn field(t: &V, fieldno: u32) -> V {
    match t {
        V::Array(items) => items.get(fieldno as usize).cloned().unwrap_or(V::Nil),
        _ => V::Nil,
    }
}

/// Compares tuple values on the parts of `kd`.
pub fn ref_cmp(kd: &KeyDef, a: &V, b: &V) -> Ordering {
    for part in &kd.parts {
        match ref_cmp_value(&field(a, part.fieldno), &field(b, part.fieldno)) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    Ordering::Equal
}

/// Compares a tuple value with a key prefix.
pub fn ref_cmp_key(kd: &KeyDef, t: &V, key: &[V]) -> Ordering {
    for (part, k) in kd.parts.iter().zip(key) {
        match ref_cmp_value(&field(t, part.fieldno), k) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    Ordering::Equal
}

// ---- schema used by the model tests ----
//
// Tuples are [id: unsigned, a: unsigned, b: string, c: number, d: scalar or nil, e: integer].

pub fn part(fieldno: u32, field_type: FieldType) -> KeyPart {
    KeyPart::new(fieldno, field_type)
}

pub fn nullable(fieldno: u32, field_type: FieldType) -> KeyPart {
    KeyPart {
        is_nullable: true,
        ..KeyPart::new(fieldno, field_type)
    }
}

pub fn index_def(
    id: u32,
    name: &str,
    kind: IndexKind,
    unique: bool,
    parts: Vec<KeyPart>,
) -> IndexDef {
    IndexDef {
        id,
        name: name.to_string(),
        kind,
        unique,
        key_def: KeyDef::new(parts),
    }
}

pub fn new_space(name: &str, defs: Vec<IndexDef>) -> Space {
    let mut space = Space::new(512, name, SpaceFlags::default(), TupleFormat::default());
    for def in defs {
        space
            .add_index(def)
            .expect("test index definitions are valid");
    }
    space
}

pub fn number() -> impl Strategy<Value = V> {
    prop_oneof![
        (-3i64..4).prop_map(V::from),
        (-6i64..7).prop_map(|h| V::F64(h as f64 / 2.0)),
        (-2i64..3).prop_map(|h| V::F32(h as f32)),
    ]
}

pub fn short_str() -> impl Strategy<Value = String> {
    prop_oneof![Just(""), Just("a"), Just("ab"), Just("b"), Just("B")].prop_map(String::from)
}

pub fn scalar_or_nil() -> impl Strategy<Value = V> {
    prop_oneof![
        Just(V::Nil),
        any::<bool>().prop_map(V::Boolean),
        number(),
        short_str().prop_map(V::from),
        prop_oneof![Just(vec![]), Just(vec![0u8]), Just(vec![b'a'])].prop_map(V::Binary),
    ]
}

/// A tuple of the test schema with id in `0..ids`.
pub fn row(ids: u64) -> impl Strategy<Value = V> {
    (
        0..ids,
        0u64..4,
        short_str(),
        number(),
        scalar_or_nil(),
        -2i64..3,
    )
        .prop_map(|(id, a, b, c, d, e)| {
            arr(vec![V::from(id), V::from(a), V::from(b), c, d, V::from(e)])
        })
}

/// A value acceptable for part `p` of the test schema.
pub fn value_for(p: &KeyPart) -> BoxedStrategy<V> {
    match p.fieldno {
        0 => (0u64..45).prop_map(V::from).boxed(),
        1 => (0u64..5).prop_map(V::from).boxed(),
        2 => short_str().prop_map(V::from).boxed(),
        3 => number().boxed(),
        4 => scalar_or_nil().boxed(),
        _ => (-3i64..4).prop_map(V::from).boxed(),
    }
}

/// A key prefix of random length (0..=part count) for `kd`.
pub fn key_for(kd: &KeyDef) -> BoxedStrategy<Vec<V>> {
    let parts = kd.parts.clone();
    (0..=parts.len())
        .prop_flat_map(move |n| {
            let strategies: Vec<BoxedStrategy<V>> = parts.iter().take(n).map(value_for).collect();
            strategies
        })
        .boxed()
}
