//! Property test: a space with unique TREE and HASH secondaries (one nullable), a non-unique
//! secondary, against a model, under random insert/replace/delete (through any index),
//! rollbacks of recent changes, bulk reloads, and creation/removal of a unique index.
//! Every error must name the right index and leave the space unchanged.

mod common;

use common::*;
use proptest::prelude::*;
use rmpv::Value as V;
use spindle_memtx::index::{IndexDef, IndexKind};
use spindle_memtx::key_def::KeyDef;
use spindle_memtx::space::{Change, Space};
use spindle_memtx::FieldType::*;
use spindle_types::error::code;
use spindle_types::iproto::IteratorType;
use spindle_types::BoxError;
use std::cmp::Ordering;

const SPACE: &str = "model";

fn defs() -> Vec<IndexDef> {
    use IndexKind::*;
    vec![
        index_def(0, "pk", Tree, true, vec![part(0, Unsigned)]),
        index_def(
            1,
            "u_ba",
            Tree,
            true,
            vec![part(2, String), part(1, Unsigned)],
        ),
        index_def(
            2,
            "u_ea",
            Hash,
            true,
            vec![part(5, Integer), part(1, Unsigned)],
        ),
        index_def(3, "u_d", Tree, true, vec![nullable(4, Scalar)]),
        index_def(4, "n_c", Tree, false, vec![part(3, Number)]),
    ]
}

/// The index that [`Op::ToggleIndex`] creates and drops.
fn extra_def() -> IndexDef {
    index_def(
        7,
        "u_x",
        IndexKind::Tree,
        true,
        vec![part(1, Unsigned), part(3, Number)],
    )
}

#[derive(Clone, Debug)]
enum Op {
    Insert(V),
    Replace(V),
    /// Delete through `index` by the key of the `pick`-th row (or of `fallback` when empty).
    Delete {
        index: usize,
        pick: usize,
        fallback: V,
    },
    Rollback(usize),
    Reload,
    ToggleIndex,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => row(30).prop_map(Op::Insert),
        3 => row(30).prop_map(Op::Replace),
        2 => (0usize..5, any::<usize>(), row(30)).prop_map(|(index, pick, fallback)| Op::Delete { index, pick, fallback }),
        1 => (1usize..4).prop_map(Op::Rollback),
        1 => Just(Op::Reload),
        1 => Just(Op::ToggleIndex),
    ]
}

#[derive(Clone)]
struct Model {
    defs: Vec<IndexDef>,
    rows: Vec<V>,
}

fn key_values(kd: &KeyDef, t: &V) -> Vec<V> {
    kd.parts.iter().map(|p| field(t, p.fieldno)).collect()
}

impl Model {
    fn pk_of(&self, t: &V) -> usize {
        self.rows
            .iter()
            .position(|r| ref_cmp(&self.defs[0].key_def, r, t) == Ordering::Equal)
            .unwrap_or(usize::MAX)
    }

    /// The first unique index (by id) where a row other than `except` shares `t`'s key.
    fn conflict(&self, t: &V, except: Option<usize>) -> Option<&IndexDef> {
        self.defs.iter().filter(|d| d.unique).find(|d| {
            let key = key_values(&d.key_def, t);
            !key.contains(&V::Nil)
                && self.rows.iter().enumerate().any(|(i, r)| {
                    Some(i) != except && ref_cmp_key(&d.key_def, r, &key) == Ordering::Equal
                })
        })
    }

    fn sorted_by(&self, index: usize) -> Vec<V> {
        let def = &self.defs[index];
        let cmp_def = if def.kind == IndexKind::Hash || index == 0 {
            self.defs[0].key_def.clone()
        } else {
            def.key_def.merge(&self.defs[0].key_def)
        };
        let mut rows = self.rows.clone();
        rows.sort_by(|a, b| ref_cmp(&cmp_def, a, b));
        rows
    }
}

fn check_state(space: &Space, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(space.indexes().len(), model.defs.len());
    prop_assert_eq!(space.len(), model.rows.len());
    let bytes: usize = model.rows.iter().map(|r| enc(r).len()).sum();
    prop_assert_eq!(space.bsize(), bytes);
    for (i, def) in model.defs.iter().enumerate() {
        let all = space.select(def.id, IteratorType::All, &[0x90], 0, u32::MAX);
        let mut got = vals(&all.map_err(|e| TestCaseError::fail(e.message))?);
        if def.kind == IndexKind::Hash {
            got.sort_by(|a, b| ref_cmp(&model.defs[0].key_def, a, b));
        }
        prop_assert_eq!(got, model.sorted_by(i), "index {}", def.name);
    }
    Ok(())
}

fn expect_err(result: Result<Change, BoxError>, expected: &BoxError) -> Result<(), TestCaseError> {
    let err = result.err();
    prop_assert_eq!(err.as_ref(), Some(expected));
    Ok(())
}

struct Harness {
    space: Space,
    model: Model,
    /// Applied changes with the model as it was before each, newest last.
    log: Vec<(Change, Model)>,
}

impl Harness {
    fn record(
        &mut self,
        result: Result<Change, BoxError>,
        before: Model,
    ) -> Result<(), TestCaseError> {
        let change = result.map_err(|e| TestCaseError::fail(e.message))?;
        if !change.is_noop() {
            self.log.push((change, before));
        }
        Ok(())
    }

    fn insert(&mut self, t: &V) -> Result<(), TestCaseError> {
        let result = self.space.insert(tuple(t));
        if let Some(def) = self.model.conflict(t, None) {
            return expect_err(result, &BoxError::tuple_found(&def.name, SPACE));
        }
        let before = self.model.clone();
        self.model.rows.push(t.clone());
        self.record(result, before)
    }

    fn replace(&mut self, t: &V) -> Result<(), TestCaseError> {
        let result = self.space.replace(tuple(t));
        let old = self.model.pk_of(t);
        let except = (old != usize::MAX).then_some(old);
        if let Some(def) = self.model.conflict(t, except) {
            return expect_err(result, &BoxError::tuple_found(&def.name, SPACE));
        }
        let before = self.model.clone();
        match except {
            Some(i) => self.model.rows[i] = t.clone(),
            None => self.model.rows.push(t.clone()),
        }
        self.record(result, before)
    }

    fn delete(&mut self, index: usize, pick: usize, fallback: &V) -> Result<(), TestCaseError> {
        let def = self.model.defs[index].clone();
        let source = if self.model.rows.is_empty() {
            fallback
        } else {
            &self.model.rows[pick % self.model.rows.len()]
        };
        let key = key_values(&def.key_def, source);
        let result = self.space.delete(def.id, &enc(&arr(key.clone())));
        if !def.unique {
            return expect_err(result, &BoxError::more_than_one_tuple());
        }
        if let Some(nil_at) = key.iter().position(|v| *v == V::Nil) {
            let expected =
                BoxError::key_part_type(nil_at as u32, def.key_def.parts[nil_at].field_type.name());
            return expect_err(result, &expected);
        }
        let victim = self
            .model
            .rows
            .iter()
            .position(|r| ref_cmp_key(&def.key_def, r, &key) == Ordering::Equal);
        let before = self.model.clone();
        let removed = victim.map(|i| self.model.rows.remove(i));
        let change = result
            .as_ref()
            .map_err(|e| TestCaseError::fail(e.message.clone()))?;
        prop_assert_eq!(change.old.as_ref().map(val), removed);
        self.record(result, before)
    }

    fn rollback(&mut self, count: usize) {
        for _ in 0..count {
            let Some((change, before)) = self.log.pop() else {
                return;
            };
            self.space.rollback(change.old, change.new);
            self.model = before;
        }
    }

    fn reload(&mut self) -> Result<(), TestCaseError> {
        let mut fresh = new_space(SPACE, self.model.defs.clone());
        let mut rows: Vec<_> = self.model.rows.iter().map(tuple).collect();
        rows.reverse();
        fresh
            .load(rows)
            .map_err(|e| TestCaseError::fail(e.message))?;
        self.space = fresh;
        self.log.clear();
        Ok(())
    }

    fn toggle_index(&mut self) -> Result<(), TestCaseError> {
        self.log.clear();
        let extra = extra_def();
        if self.model.defs.iter().any(|d| d.id == extra.id) {
            self.space
                .drop_index(extra.id)
                .map_err(|e| TestCaseError::fail(e.message))?;
            self.model.defs.retain(|d| d.id != extra.id);
            return Ok(());
        }
        let duplicated = self.model.rows.iter().enumerate().any(|(i, a)| {
            self.model.rows[i + 1..]
                .iter()
                .any(|b| ref_cmp(&extra.key_def, a, b) == Ordering::Equal)
        });
        let result = self.space.add_index(extra.clone());
        if duplicated {
            prop_assert_eq!(result.err(), Some(BoxError::tuple_found("u_x", SPACE)));
        } else {
            prop_assert!(result.is_ok());
            self.model.defs.push(extra);
        }
        Ok(())
    }

    fn run(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Insert(t) => self.insert(t)?,
            Op::Replace(t) => self.replace(t)?,
            Op::Delete {
                index,
                pick,
                fallback,
            } => self.delete(*index, *pick, fallback)?,
            Op::Rollback(n) => self.rollback(*n),
            Op::Reload => self.reload()?,
            Op::ToggleIndex => self.toggle_index()?,
        }
        check_state(&self.space, &self.model)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn space_matches_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        let model = Model { defs: defs(), rows: Vec::new() };
        let mut h = Harness { space: new_space(SPACE, defs()), model, log: Vec::new() };
        for op in &ops {
            h.run(op)?;
        }
        h.rollback(usize::MAX);
        check_state(&h.space, &h.model)?;
    }
}

#[test]
fn errors_leave_the_space_unchanged() {
    let mut space = new_space(SPACE, defs());
    let t1 = arr(vec![
        V::from(1),
        V::from(1),
        V::from("a"),
        V::from(0),
        V::Nil,
        V::from(0),
    ]);
    let t2 = arr(vec![
        V::from(2),
        V::from(2),
        V::from("b"),
        V::from(0),
        V::from(true),
        V::from(0),
    ]);
    space.insert(tuple(&t1)).unwrap();
    space.insert(tuple(&t2)).unwrap();
    // Conflicts with t2 in u_ba and with t1's primary key: the primary key is reported.
    let bad = arr(vec![
        V::from(1),
        V::from(2),
        V::from("b"),
        V::from(0),
        V::Nil,
        V::from(0),
    ]);
    assert_eq!(
        space.insert(tuple(&bad)).unwrap_err(),
        BoxError::tuple_found("pk", SPACE)
    );
    // As a replace it takes t1's slot but collides with t2 in u_ba.
    assert_eq!(
        space.replace(tuple(&bad)).unwrap_err(),
        BoxError::tuple_found("u_ba", SPACE)
    );
    // A null in the nullable unique index never collides.
    let t3 = arr(vec![
        V::from(3),
        V::from(3),
        V::from("c"),
        V::from(0),
        V::Nil,
        V::from(0),
    ]);
    space.insert(tuple(&t3)).unwrap();
    let got = space
        .select(3, IteratorType::Eq, &enc(&arr(vec![V::Nil])), 0, 10)
        .unwrap();
    assert_eq!(vals(&got), vec![t1.clone(), t3.clone()]);
    assert_eq!(
        space
            .insert(tuple(&arr(vec![
                V::from(4),
                V::from(4),
                V::from("d"),
                V::from(0),
                V::from(true),
                V::from(0)
            ])))
            .unwrap_err(),
        BoxError::tuple_found("u_d", SPACE)
    );
    assert_eq!(
        vals(&space.select(0, IteratorType::All, &[0x90], 0, 10).unwrap()),
        vec![t1, t2, t3]
    );
    assert_eq!(
        space
            .delete(4, &enc(&arr(vec![V::from(0)])))
            .unwrap_err()
            .code,
        code::ER_MORE_THAN_ONE_TUPLE
    );
    assert_eq!(
        space.delete(9, &[0x90]).unwrap_err(),
        BoxError::no_such_index_id(9, SPACE)
    );
}
