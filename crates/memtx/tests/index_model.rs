//! Property tests: TREE and HASH indexes (primary and non-unique secondary, single and
//! multipart, nullable) against a model, under random insert/replace/delete sequences and
//! random selects with every iterator type, key prefixes, offsets and limits.

mod common;

use common::*;
use proptest::prelude::*;
use rmpv::Value as V;
use spindle_memtx::index::{IndexDef, IndexKind, ER_UNSUPPORTED_INDEX_FEATURE};
use spindle_memtx::key_def::KeyDef;
use spindle_memtx::space::Space;
use spindle_memtx::FieldType::*;
use spindle_types::error::code;
use spindle_types::iproto::IteratorType;
use std::cmp::Ordering;
use std::collections::btree_map::{BTreeMap, Entry};

const ITERATORS: [IteratorType; 12] = [
    IteratorType::Eq,
    IteratorType::Req,
    IteratorType::All,
    IteratorType::Lt,
    IteratorType::Le,
    IteratorType::Ge,
    IteratorType::Gt,
    IteratorType::BitsAllSet,
    IteratorType::BitsAnySet,
    IteratorType::BitsAllNotSet,
    IteratorType::Overlaps,
    IteratorType::Neighbor,
];

#[derive(Clone, Debug)]
enum Op {
    Insert(V),
    Replace(V),
    Delete(u64),
    Select {
        index: usize,
        iterator: IteratorType,
        key: Vec<V>,
        offset: u32,
        limit: u32,
    },
}

fn schemas() -> Vec<Vec<IndexDef>> {
    use IndexKind::*;
    vec![
        vec![
            index_def(0, "pk", Tree, true, vec![part(0, Unsigned)]),
            index_def(
                1,
                "ab",
                Tree,
                false,
                vec![part(1, Unsigned), part(2, String)],
            ),
            index_def(2, "c", Tree, false, vec![part(3, Number)]),
            index_def(
                3,
                "de",
                Tree,
                false,
                vec![nullable(4, Scalar), part(5, Integer)],
            ),
        ],
        vec![
            index_def(0, "pk", Hash, true, vec![part(0, Unsigned)]),
            index_def(1, "b", Tree, false, vec![part(2, String)]),
            index_def(
                2,
                "eb",
                Tree,
                false,
                vec![part(5, Integer), part(2, String)],
            ),
        ],
        vec![
            index_def(
                0,
                "pk",
                Tree,
                true,
                vec![part(1, Unsigned), part(0, Unsigned)],
            ),
            index_def(1, "b", Tree, false, vec![part(2, String)]),
            index_def(
                2,
                "ce",
                Tree,
                false,
                vec![part(3, Number), part(5, Integer)],
            ),
        ],
    ]
}

fn op(defs: &[IndexDef]) -> BoxedStrategy<Op> {
    let key_defs: Vec<KeyDef> = defs.iter().map(|d| d.key_def.clone()).collect();
    let select = (0..key_defs.len())
        .prop_flat_map(move |index| {
            let key = key_for(&key_defs[index]);
            let limit = prop_oneof![0u32..6, Just(u32::MAX)];
            (
                Just(index),
                proptest::sample::select(ITERATORS.to_vec()),
                key,
                0u32..4,
                limit,
            )
        })
        .prop_map(|(index, iterator, key, offset, limit)| Op::Select {
            index,
            iterator,
            key,
            offset,
            limit,
        });
    prop_oneof![
        3 => row(40).prop_map(Op::Insert),
        2 => row(40).prop_map(Op::Replace),
        1 => (0u64..40).prop_map(Op::Delete),
        4 => select,
    ]
    .boxed()
}

/// The model: rows by primary key.
struct Model {
    defs: Vec<IndexDef>,
    rows: BTreeMap<Vec<u8>, V>,
}

impl Model {
    fn pk(&self, t: &V) -> Vec<u8> {
        let kd = &self.defs[0].key_def;
        enc(&arr(kd.parts.iter().map(|p| field(t, p.fieldno)).collect()))
    }

    fn cmp_def(&self, index: usize) -> KeyDef {
        let kd = &self.defs[index].key_def;
        if index == 0 {
            kd.clone()
        } else {
            kd.merge(&self.defs[0].key_def)
        }
    }

    fn sorted(&self, index: usize) -> Vec<V> {
        let cmp_def = self.cmp_def(index);
        let mut rows: Vec<V> = self.rows.values().cloned().collect();
        rows.sort_by(|a, b| ref_cmp(&cmp_def, a, b));
        rows
    }

    /// The expected error code of a select, or `None` when it should succeed.
    fn select_error(&self, index: usize, iterator: IteratorType, key_len: usize) -> Option<u32> {
        let def = &self.defs[index];
        let parts = def.key_def.parts.len();
        let hash = def.kind == IndexKind::Hash;
        let scan = key_len == 0 && matches!(iterator, IteratorType::All | IteratorType::Gt);
        let supported = match def.kind {
            IndexKind::Tree => (iterator as u32) <= IteratorType::Gt as u32,
            IndexKind::Hash => matches!(
                iterator,
                IteratorType::Eq | IteratorType::All | IteratorType::Gt
            ),
        };
        if key_len > parts {
            Some(code::ER_KEY_PART_COUNT)
        } else if hash && key_len < parts && !scan {
            Some(code::ER_PARTIAL_KEY)
        } else if !supported {
            Some(ER_UNSUPPORTED_INDEX_FEATURE)
        } else {
            None
        }
    }

    fn tree_select(&self, index: usize, iterator: IteratorType, key: &[V]) -> Vec<V> {
        let kd = &self.defs[index].key_def;
        let c = |t: &V| ref_cmp_key(kd, t, key);
        let all = key.is_empty();
        type Filter<'a> = Box<dyn Fn(&V) -> bool + 'a>;
        let (keep, desc): (Filter<'_>, bool) = match iterator {
            IteratorType::Eq => (Box::new(|t| c(t) == Ordering::Equal), false),
            IteratorType::Req => (Box::new(|t| c(t) == Ordering::Equal), true),
            IteratorType::All | IteratorType::Ge => (Box::new(|t| c(t) != Ordering::Less), false),
            IteratorType::Gt => (Box::new(|t| all || c(t) == Ordering::Greater), false),
            IteratorType::Le => (Box::new(|t| c(t) != Ordering::Greater), true),
            IteratorType::Lt => (Box::new(|t| all || c(t) == Ordering::Less), true),
            _ => unreachable!("refused before"),
        };
        let mut out: Vec<V> = self.sorted(index).into_iter().filter(|t| keep(t)).collect();
        if desc {
            out.reverse();
        }
        out
    }
}

fn window(rows: Vec<V>, offset: u32, limit: u32) -> Vec<V> {
    rows.into_iter()
        .skip(offset as usize)
        .take(limit as usize)
        .collect()
}

/// HASH order is the index's own; check the select against `iter_all` and the model.
fn check_hash_select(
    space: &Space,
    model: &Model,
    index: usize,
    (iterator, key, offset, limit): (IteratorType, &[V], u32, u32),
    got: Vec<V>,
) -> Result<(), TestCaseError> {
    let order: Vec<V> = space.indexes()[index].iter_all().map(val).collect();
    let mut sorted_order = order.clone();
    sorted_order.sort_by(|a, b| ref_cmp(&model.cmp_def(0), a, b));
    prop_assert_eq!(sorted_order, model.sorted(0), "hash holds exactly the rows");
    let kd = &model.defs[index].key_def;
    let position = order
        .iter()
        .position(|t| ref_cmp_key(kd, t, key) == Ordering::Equal);
    let expected = match iterator {
        IteratorType::Eq => position.map(|p| order[p].clone()).into_iter().collect(),
        IteratorType::All => order,
        _ if key.is_empty() => order,
        _ => position.map_or_else(Vec::new, |p| order[p + 1..].to_vec()),
    };
    prop_assert_eq!(got, window(expected, offset, limit));
    Ok(())
}

fn run_select(space: &Space, model: &Model, op: &Op) -> Result<(), TestCaseError> {
    let Op::Select {
        index,
        iterator,
        key,
        offset,
        limit,
    } = op
    else {
        return Ok(());
    };
    let (index, iterator, offset, limit) = (*index, *iterator, *offset, *limit);
    let id = model.defs[index].id;
    let key_bytes = enc(&arr(key.clone()));
    let result = space.select(id, iterator, &key_bytes, offset, limit);
    // The batched lower-bound path (a run of EQ selects) gives the same answer.
    let lookup = space.indexes()[index]
        .lower_bounds(std::iter::once(key_bytes.as_slice()))
        .pop()
        .flatten();
    let planned = space.select_from(id, iterator, &key_bytes, offset, limit, lookup);
    prop_assert_eq!(
        planned.as_ref().map(|t| vals(t)).map_err(|e| e.code),
        result.as_ref().map(|t| vals(t)).map_err(|e| e.code)
    );
    if let Some(code) = model.select_error(index, iterator, key.len()) {
        prop_assert_eq!(result.map_err(|e| e.code).err(), Some(code));
        return Ok(());
    }
    let got = vals(&result.map_err(|e| TestCaseError::fail(e.message))?);
    if model.defs[index].kind == IndexKind::Hash {
        return check_hash_select(space, model, index, (iterator, key, offset, limit), got);
    }
    prop_assert_eq!(
        got,
        window(model.tree_select(index, iterator, key), offset, limit)
    );
    Ok(())
}

fn run_write(space: &mut Space, model: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    match op {
        Op::Insert(t) => {
            let result = space.insert(tuple(t));
            let pk = model.pk(t);
            match model.rows.entry(pk) {
                Entry::Occupied(_) => {
                    prop_assert_eq!(result.map_err(|e| e.code).err(), Some(code::ER_TUPLE_FOUND));
                }
                Entry::Vacant(slot) => {
                    prop_assert!(result.is_ok());
                    slot.insert(t.clone());
                }
            }
        }
        Op::Replace(t) => {
            let change = space
                .replace(tuple(t))
                .map_err(|e| TestCaseError::fail(e.message))?;
            let old = model.rows.insert(model.pk(t), t.clone());
            prop_assert_eq!(change.old.as_ref().map(val), old);
        }
        Op::Delete(id) => {
            // The primary key of the third schema has two parts; delete through field 0 of the
            // row with this id, if there is one.
            let victim = model
                .rows
                .values()
                .find(|t| field(t, 0) == V::from(*id))
                .cloned();
            let key = match &victim {
                Some(t) => arr(model.defs[0]
                    .key_def
                    .parts
                    .iter()
                    .map(|p| field(t, p.fieldno))
                    .collect()),
                None => arr(model.defs[0]
                    .key_def
                    .parts
                    .iter()
                    .map(|_| V::from(*id))
                    .collect()),
            };
            let change = space
                .delete(0, &enc(&key))
                .map_err(|e| TestCaseError::fail(e.message))?;
            let old = victim.and_then(|t| model.rows.remove(&model.pk(&t)));
            prop_assert_eq!(change.old.as_ref().map(val), old);
        }
        Op::Select { .. } => run_select(space, model, op)?,
    }
    prop_assert_eq!(space.len(), model.rows.len());
    Ok(())
}

fn case() -> impl Strategy<Value = (usize, Vec<Op>)> {
    (0..schemas().len()).prop_flat_map(|s| {
        (
            Just(s),
            proptest::collection::vec(op(&schemas()[s]), 1..250),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn indexes_match_the_model((schema, ops) in case()) {
        let defs = schemas()[schema].clone();
        let mut space = new_space("model", defs.clone());
        let mut model = Model { defs, rows: BTreeMap::new() };
        for op in &ops {
            run_write(&mut space, &mut model, op)?;
        }
        for index in 0..model.defs.len() {
            let all = space.select(model.defs[index].id, IteratorType::All, &[0x90], 0, u32::MAX);
            let mut got = vals(&all.map_err(|e| TestCaseError::fail(e.message))?);
            if model.defs[index].kind == IndexKind::Hash {
                got.sort_by(|a, b| ref_cmp(&model.cmp_def(0), a, b));
                prop_assert_eq!(got, model.sorted(0));
            } else {
                prop_assert_eq!(got, model.sorted(index));
            }
        }
    }
}
