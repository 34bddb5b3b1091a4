//! Spaces: a format and the indexes over one set of tuples, kept consistent by every DML
//! operation, with Tarantool 2.6's errors.
//!
//! Every operation checks everything that can fail (format, key validity, uniqueness in every
//! unique index, primary key immutability) before it touches an index, so an error leaves
//! the space exactly as it was. A successful mutation returns the replaced and the new tuple
//! ([`Change`]); [`Space::rollback`] undoes it exactly, which is how a transaction whose WAL
//! write failed is reverted (newest change first).

use crate::format::{PartConstraint, TupleFormat};
use crate::index::{Index, IndexDef, Lookup};
use crate::key_def::KeyDef;
use crate::tuple::Tuple;
use crate::update;
use spindle_types::iproto::IteratorType;
use spindle_types::limits::TUPLE_SIZE_MAX;
use spindle_types::{BoxError, BoxResult};
use std::cmp::Ordering;

/// Bytes memtx 2.6 adds to a tuple's data when it checks `memtx_max_tuple_size` (its tuple
/// header), plus 4 per offset slot, which [`Space`] approximates as one per indexed field
/// other than the first. Only the number in the error message depends on this.
const TUPLE_HEADER_SIZE: usize = 14;

/// Space options the engine keeps but does not interpret.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpaceFlags {
    /// Not persisted (`temporary = true`).
    pub temporary: bool,
    /// Not replicated (`group_id = 1`).
    pub is_local: bool,
}

/// The effect of one mutation: the tuple it removed or replaced, and the tuple it stored.
/// Both `None` when nothing changed (a delete or update of a missing key, a skipped upsert).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub old: Option<Tuple>,
    pub new: Option<Tuple>,
}

impl Change {
    fn none() -> Change {
        Change::default()
    }

    /// Whether the space was left unchanged.
    pub fn is_noop(&self) -> bool {
        self.old.is_none() && self.new.is_none()
    }
}

pub struct Space {
    pub id: u32,
    pub name: String,
    pub flags: SpaceFlags,
    /// Largest tuple accepted (`memtx_max_tuple_size`).
    pub max_tuple_size: usize,
    /// The format as `_space` defines it.
    user_format: TupleFormat,
    /// `user_format` merged with the constraints of every index part.
    format: TupleFormat,
    /// Ordered by index id; the primary index, when present, is first with id 0.
    indexes: Vec<Index>,
    /// Sum of the data sizes of the stored tuples (`space:bsize()`).
    tuple_bytes: usize,
    /// Tuple header bytes counted against `max_tuple_size` (see [`TUPLE_HEADER_SIZE`]).
    header_size: usize,
}

impl Space {
    /// An empty space without indexes (DML needs a primary index: see [`Space::add_index`]).
    pub fn new(id: u32, name: impl Into<String>, flags: SpaceFlags, format: TupleFormat) -> Space {
        Space {
            id,
            name: name.into(),
            flags,
            max_tuple_size: TUPLE_SIZE_MAX,
            user_format: format.clone(),
            format,
            indexes: Vec::new(),
            tuple_bytes: 0,
            header_size: TUPLE_HEADER_SIZE,
        }
    }

    /// The effective format: the space format with index part constraints merged in.
    pub fn format(&self) -> &TupleFormat {
        &self.format
    }

    /// The format as given to [`Space::new`] or [`Space::set_format`].
    pub fn user_format(&self) -> &TupleFormat {
        &self.user_format
    }

    /// Number of tuples.
    pub fn len(&self) -> usize {
        self.indexes.first().map_or(0, Index::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total MessagePack size of the stored tuples.
    pub fn bsize(&self) -> usize {
        self.tuple_bytes
    }

    pub fn indexes(&self) -> &[Index] {
        &self.indexes
    }

    pub fn index(&self, id: u32) -> Option<&Index> {
        self.indexes.iter().find(|i| i.id() == id)
    }

    pub fn index_by_name(&self, name: &str) -> Option<&Index> {
        self.indexes.iter().find(|i| i.name() == name)
    }

    /// The index with this id, or ER_NO_SUCH_INDEX_ID.
    pub fn index_or_err(&self, id: u32) -> BoxResult<&Index> {
        self.index(id)
            .ok_or_else(|| BoxError::no_such_index_id(id, &self.name))
    }

    /// The primary index, or ER_NO_SUCH_INDEX_ID for index 0 (what DML on a space without
    /// indexes reports).
    pub fn primary(&self) -> BoxResult<&Index> {
        self.indexes
            .first()
            .filter(|i| i.id() == 0)
            .ok_or_else(|| BoxError::no_such_index_id(0, &self.name))
    }

    // ---- reads ----

    /// SELECT through index `index_id` (see [`Index::select`]).
    pub fn select(
        &self,
        index_id: u32,
        iterator: IteratorType,
        key: &[u8],
        offset: u32,
        limit: u32,
    ) -> BoxResult<Vec<Tuple>> {
        self.select_from(index_id, iterator, key, offset, limit, None)
    }

    /// SELECT with a lower bound found already (see [`Index::select_from`]).
    pub fn select_from(
        &self,
        index_id: u32,
        iterator: IteratorType,
        key: &[u8],
        offset: u32,
        limit: u32,
        lookup: Option<Lookup>,
    ) -> BoxResult<Vec<Tuple>> {
        self.index_or_err(index_id)?
            .select_from(iterator, key, offset, limit, &self.name, lookup)
    }

    /// The tuple with exactly this key in a unique index (`index:get`).
    pub fn get(&self, index_id: u32, key: &[u8]) -> BoxResult<Option<Tuple>> {
        self.index_or_err(index_id)?.get(key)
    }

    /// How many tuples a select would return (`index:count`), ignoring offset and limit.
    pub fn count(&self, index_id: u32, iterator: IteratorType, key: &[u8]) -> BoxResult<usize> {
        let index = self.index_or_err(index_id)?;
        if iterator == IteratorType::Eq {
            let key = index.validate_select_key(iterator, key, &self.name)?;
            return Ok(index.count_eq(&key));
        }
        Ok(index.select(iterator, key, 0, u32::MAX, &self.name)?.len())
    }

    // ---- writes ----

    /// INSERT: ER_TUPLE_FOUND if any unique index (primary first) already has the key.
    pub fn insert(&mut self, tuple: Tuple) -> BoxResult<Change> {
        self.primary()?;
        self.check_new(&tuple)?;
        // The primary insert doubles as its own duplicate check (one tree descent instead of
        // two); a conflict, rare, is undone. The primary is checked first, as Tarantool does.
        let primary = self
            .indexes
            .first_mut()
            .ok_or_else(|| BoxError::no_such_index_id(0, &self.name))?;
        if let Some(old) = primary.insert_entry(tuple.clone()) {
            primary.insert_entry(old);
            return Err(BoxError::tuple_found(primary.name(), &self.name));
        }
        if let Err(e) = self.check_secondary_duplicates(&tuple, None) {
            if let Some(primary) = self.indexes.first_mut() {
                primary.remove_entry(&tuple);
            }
            return Err(e);
        }
        for index in self.indexes.iter_mut().skip(1) {
            index.insert_entry(tuple.clone());
        }
        self.tuple_bytes += tuple.bsize();
        Ok(Change {
            old: None,
            new: Some(tuple),
        })
    }

    /// What a recovery decoder thread needs to check tuples for this space and compute their
    /// primary-index hints, if the space has one TREE index (the common case worth it).
    pub fn replay_prep(&self) -> Option<ReplayPrep> {
        let [primary] = self.indexes.as_slice() else {
            return None;
        };
        Some(ReplayPrep {
            format: self.format.clone(),
            header_size: self.header_size,
            max_tuple_size: self.max_tuple_size,
            hinter: primary.hinter()?,
        })
    }

    /// INSERT (or REPLACE) of a tuple a `ReplayPrep` of this space checked, with its hint:
    /// the same outcome as `insert`/`replace`, without touching the tuple's bytes again.
    pub fn insert_prepared(
        &mut self,
        tuple: Tuple,
        hint: (u64, bool),
        replace: bool,
    ) -> BoxResult<Change> {
        let name = &self.name;
        let [primary] = self.indexes.as_mut_slice() else {
            return Err(BoxError::no_such_index_id(0, name));
        };
        let old = primary.insert_entry_hinted(tuple.clone(), hint.0, hint.1);
        if let Some(old) = old.as_ref().filter(|_| !replace) {
            primary.insert_entry(old.clone());
            return Err(BoxError::tuple_found(primary.name(), name));
        }
        self.tuple_bytes -= old.as_ref().map_or(0, Tuple::bsize).min(self.tuple_bytes);
        self.tuple_bytes += tuple.bsize();
        Ok(Change {
            old,
            new: Some(tuple),
        })
    }

    /// REPLACE: replaces the tuple with the same primary key, if any; a different tuple with
    /// the same key in a unique secondary index is ER_TUPLE_FOUND.
    pub fn replace(&mut self, tuple: Tuple) -> BoxResult<Change> {
        let primary = self.primary()?;
        self.check_new(&tuple)?;
        if self.indexes.len() == 1 {
            // No secondary can conflict: the insert itself finds and swaps out the old tuple,
            // one tree descent instead of two.
            let primary = self
                .indexes
                .first_mut()
                .ok_or_else(|| BoxError::no_such_index_id(0, &self.name))?;
            let old = primary.insert_entry(tuple.clone());
            self.tuple_bytes -= old.as_ref().map_or(0, Tuple::bsize).min(self.tuple_bytes);
            self.tuple_bytes += tuple.bsize();
            return Ok(Change {
                old,
                new: Some(tuple),
            });
        }
        let old = primary.find_duplicate(&tuple).cloned();
        // The primary index was just searched: its duplicate is `old` by definition.
        self.check_secondary_duplicates(&tuple, old.as_ref())?;
        self.apply(old.as_ref(), Some(&tuple));
        Ok(Change {
            old,
            new: Some(tuple),
        })
    }

    /// DELETE by an exact key of a unique index; deleting a missing key changes nothing.
    pub fn delete(&mut self, index_id: u32, key: &[u8]) -> BoxResult<Change> {
        self.primary()?;
        let index = self.index_or_err(index_id)?;
        let key = index.validate_exact_key(key)?;
        let Some(old) = index.find(&key).cloned() else {
            return Ok(Change::none());
        };
        self.apply(Some(&old), None);
        Ok(Change {
            old: Some(old),
            new: None,
        })
    }

    /// UPDATE the tuple with an exact key of a unique index. Checks, in Tarantool's order:
    /// the key, the operations (only when the tuple exists), the new tuple's format, uniqueness,
    /// then that the primary key is unchanged (ER_CANT_UPDATE_PRIMARY_KEY).
    pub fn update(
        &mut self,
        index_id: u32,
        key: &[u8],
        ops: &[u8],
        index_base: u32,
    ) -> BoxResult<Change> {
        let primary = self.primary()?;
        let index = self.index_or_err(index_id)?;
        let key = index.validate_exact_key(key)?;
        let Some(old) = index.find(&key).cloned() else {
            return Ok(Change::none());
        };
        let new = Tuple::from_vec(update::apply_update(
            old.data(),
            ops,
            index_base,
            &self.format,
        )?)?;
        self.check_new(&new)?;
        // Uniqueness first: a new primary key another tuple has is ER_TUPLE_FOUND, as in 2.6.
        self.check_duplicates(&new, Some(&old))?;
        if primary.key_def().compare(&old, &new) != Ordering::Equal {
            return Err(BoxError::cant_update_primary_key(
                primary.name(),
                &self.name,
            ));
        }
        self.apply(Some(&old), Some(&new));
        Ok(Change {
            old: Some(old),
            new: Some(new),
        })
    }

    /// UPSERT: inserts `tuple` when its primary key is absent, otherwise applies `ops` to the
    /// stored tuple. Verified against Tarantool 2.6: the tuple's format and the operations
    /// are checked first (errors returned even when the key exists); errors of individual
    /// operations are skipped by `apply_upsert`; a result that breaks the format or a unique
    /// index is an error; a result that changes the primary key is silently dropped.
    pub fn upsert(&mut self, tuple: Tuple, ops: &[u8], index_base: u32) -> BoxResult<Change> {
        let primary = self.primary()?;
        self.check_new(&tuple)?;
        update::check_upsert_ops_in(ops, index_base, &self.format)?;
        let Some(old) = primary.find_duplicate(&tuple).cloned() else {
            self.check_duplicates(&tuple, None)?;
            self.apply(None, Some(&tuple));
            return Ok(Change {
                old: None,
                new: Some(tuple),
            });
        };
        let new = Tuple::from_vec(update::apply_upsert(
            old.data(),
            ops,
            index_base,
            &self.format,
        ))?;
        self.check_new(&new)?;
        if primary.key_def().compare(&old, &new) != Ordering::Equal {
            return Ok(Change::none());
        }
        self.check_duplicates(&new, Some(&old))?;
        self.apply(Some(&old), Some(&new));
        Ok(Change {
            old: Some(old),
            new: Some(new),
        })
    }

    /// Undoes a change returned by a mutation of this space. Changes must be undone newest
    /// first; then the space is restored exactly.
    pub fn rollback(&mut self, old: Option<Tuple>, new: Option<Tuple>) {
        self.apply(new.as_ref(), old.as_ref());
    }

    /// Size limit, then format.
    fn check_new(&self, tuple: &Tuple) -> BoxResult<()> {
        let size = tuple.bsize() + self.header_size;
        if size > self.max_tuple_size {
            return Err(BoxError::memtx_max_tuple_size(size));
        }
        self.format.validate(tuple.data())
    }

    /// Recomputes `header_size` after the set of indexes changed.
    fn update_header_size(&mut self) {
        self.header_size = TUPLE_HEADER_SIZE + 4 * self.offset_slot_count();
    }

    fn offset_slot_count(&self) -> usize {
        let mut fieldnos: Vec<u32> = self
            .indexes
            .iter()
            .flat_map(|i| i.key_def().parts.iter().map(|p| p.fieldno))
            .filter(|&f| f > 0)
            .collect();
        fieldnos.sort_unstable();
        fieldnos.dedup();
        fieldnos.len()
    }

    /// ER_TUPLE_FOUND naming the first unique index (by id) holding a tuple other than `old`
    /// with `new`'s key.
    fn check_duplicates(&self, new: &Tuple, old: Option<&Tuple>) -> BoxResult<()> {
        self.check_unique(&self.indexes, new, old)
    }

    /// Like `check_duplicates`, for callers that already found `old` through the primary.
    fn check_secondary_duplicates(&self, new: &Tuple, old: Option<&Tuple>) -> BoxResult<()> {
        self.check_unique(self.indexes.get(1..).unwrap_or_default(), new, old)
    }

    fn check_unique(&self, indexes: &[Index], new: &Tuple, old: Option<&Tuple>) -> BoxResult<()> {
        for index in indexes {
            if let Some(dup) = index.find_duplicate(new) {
                if old.is_none_or(|o| !Tuple::ptr_eq(dup, o)) {
                    return Err(BoxError::tuple_found(index.name(), &self.name));
                }
            }
        }
        Ok(())
    }

    /// Replaces `old` by `new` in every index (either may be absent). Infallible: callers
    /// have checked uniqueness.
    fn apply(&mut self, old: Option<&Tuple>, new: Option<&Tuple>) {
        for index in &mut self.indexes {
            match (old, new) {
                (Some(o), Some(n)) if index.same_entry(o, n) => {
                    index.insert_entry(n.clone());
                }
                _ => {
                    if let Some(o) = old {
                        index.remove_entry(o);
                    }
                    if let Some(n) = new {
                        index.insert_entry(n.clone());
                    }
                }
            }
        }
        if !self.indexes.is_empty() {
            self.tuple_bytes -= old.map_or(0, Tuple::bsize).min(self.tuple_bytes);
            self.tuple_bytes += new.map_or(0, Tuple::bsize);
        }
    }

    // ---- DDL ----

    /// Creates an index and builds it over the existing tuples. Fails, leaving the space
    /// unchanged, on Tarantool's definition errors, when existing tuples violate the new part
    /// types, or with ER_TUPLE_FOUND when a new unique index meets a duplicate key.
    pub fn add_index(&mut self, def: IndexDef) -> BoxResult<()> {
        def.check(&self.name)?;
        if self
            .indexes
            .iter()
            .any(|i| i.id() == def.id || i.name() == def.name)
        {
            return Err(BoxError::index_exists(&def.name));
        }
        let primary_key_def = self.primary().ok().map(|p| p.key_def().clone());
        if def.id != 0 && primary_key_def.is_none() {
            return Err(BoxError::alter_space(
                &self.name,
                "can not add a secondary key before primary",
            ));
        }
        let mut parts = self.part_constraints();
        parts.extend(constraints_of(&def.key_def));
        let format = self.merged_format(&parts)?;
        self.validate_all(&format)?;
        let name = def.name.clone();
        let mut index = Index::new(def, primary_key_def.as_ref());
        let tuples: Vec<Tuple> = self
            .indexes
            .first()
            .map_or_else(Vec::new, |p| p.iter_all().cloned().collect());
        index
            .build(tuples)
            .map_err(|_| BoxError::tuple_found(&name, &self.name))?;
        let at = self.indexes.partition_point(|i| i.id() < index.id());
        self.indexes.insert(at, index);
        self.format = format;
        self.update_header_size();
        Ok(())
    }

    /// Changes an index definition in place (rename, new parts, type or uniqueness) and
    /// keeps the data: every index is rebuilt from the stored tuples, because secondary
    /// indexes order equal keys by the primary key, which may be the one changing. On error
    /// the space is unchanged.
    pub fn alter_index(&mut self, def: IndexDef) -> BoxResult<()> {
        def.check(&self.name)?;
        let at = self
            .indexes
            .iter()
            .position(|i| i.id() == def.id)
            .ok_or_else(|| BoxError::no_such_index_id(def.id, &self.name))?;
        if self
            .indexes
            .iter()
            .any(|i| i.id() != def.id && i.name() == def.name)
        {
            return Err(BoxError::index_exists(&def.name));
        }
        let mut defs: Vec<IndexDef> = self.indexes.iter().map(|i| i.def().clone()).collect();
        if let Some(slot) = defs.get_mut(at) {
            *slot = def;
        }
        let parts: Vec<PartConstraint> = defs
            .iter()
            .flat_map(|d| constraints_of(&d.key_def))
            .collect();
        let format = self.merged_format(&parts)?;
        self.validate_all(&format)?;
        let tuples: Vec<Tuple> = self.primary()?.iter_all().cloned().collect();
        let primary_key_def = defs
            .first()
            .filter(|d| d.id == 0)
            .map(|d| d.key_def.clone());
        let mut rebuilt = Vec::with_capacity(defs.len());
        for d in defs {
            let pk = if d.id == 0 {
                None
            } else {
                primary_key_def.as_ref()
            };
            let name = d.name.clone();
            let mut fresh = Index::new(d, pk);
            fresh
                .build(tuples.clone())
                .map_err(|_| BoxError::tuple_found(&name, &self.name))?;
            rebuilt.push(fresh);
        }
        self.indexes = rebuilt;
        self.format = format;
        self.update_header_size();
        Ok(())
    }

    /// Drops an index. The primary index goes only when it is the last one, and takes the
    /// tuples with it.
    pub fn drop_index(&mut self, id: u32) -> BoxResult<()> {
        let at = self
            .indexes
            .iter()
            .position(|i| i.id() == id)
            .ok_or_else(|| BoxError::no_such_index_id(id, &self.name))?;
        if id == 0 && self.indexes.len() > 1 {
            return Err(BoxError::drop_primary_key(&self.name));
        }
        let parts: Vec<PartConstraint> = self
            .indexes
            .iter()
            .filter(|i| i.id() != id)
            .flat_map(|i| constraints_of(i.key_def()))
            .collect();
        let format = self.merged_format(&parts)?;
        self.indexes.remove(at);
        self.format = format;
        self.update_header_size();
        if self.indexes.is_empty() {
            self.tuple_bytes = 0;
        }
        Ok(())
    }

    /// Changes the space format after checking every stored tuple against it (merged with
    /// the index part constraints); on error the space keeps its old format.
    pub fn set_format(&mut self, format: TupleFormat) -> BoxResult<()> {
        let parts = self.part_constraints();
        let merged = TupleFormat::new(format.fields.clone(), format.exact_field_count, &parts)?;
        self.validate_all(&merged)?;
        self.user_format = format;
        self.format = merged;
        Ok(())
    }

    /// Adds many tuples at once (recovery from a snapshot): validates them, then rebuilds
    /// every index in bulk, which is much faster than inserting one by one. On error (format,
    /// or ER_TUPLE_FOUND for a duplicate in any unique index) the space is unchanged.
    pub fn load(&mut self, tuples: Vec<Tuple>) -> BoxResult<()> {
        let primary = self.primary()?;
        let primary_key_def = primary.key_def().clone();
        for tuple in &tuples {
            self.check_new(tuple)?;
        }
        let mut all: Vec<Tuple> = primary.iter_all().cloned().collect();
        all.extend(tuples);
        let tuple_bytes = all.iter().map(Tuple::bsize).sum();
        let mut rebuilt = Vec::with_capacity(self.indexes.len());
        let last = self.indexes.len().saturating_sub(1);
        let mut all = Some(all);
        for (i, index) in self.indexes.iter().enumerate() {
            let pk = (index.id() != 0).then_some(&primary_key_def);
            let mut fresh = Index::new(index.def().clone(), pk);
            // The last index takes the vector itself: one clone per extra index, not per index.
            let tuples = if i == last {
                all.take().unwrap_or_default()
            } else {
                all.clone().unwrap_or_default()
            };
            fresh
                .build(tuples)
                .map_err(|_| BoxError::tuple_found(index.name(), &self.name))?;
            rebuilt.push(fresh);
        }
        self.tuple_bytes = tuple_bytes;
        self.indexes = rebuilt;
        Ok(())
    }

    /// Removes every tuple, keeping the indexes (`space:truncate()`).
    pub fn truncate(&mut self) {
        let primary_key_def = self.indexes.first().map(|p| p.key_def().clone());
        for index in &mut self.indexes {
            let pk = (index.id() != 0)
                .then_some(primary_key_def.as_ref())
                .flatten();
            *index = Index::new(index.def().clone(), pk);
        }
        self.tuple_bytes = 0;
    }

    fn part_constraints(&self) -> Vec<PartConstraint> {
        self.indexes
            .iter()
            .flat_map(|i| constraints_of(i.key_def()))
            .collect()
    }

    fn merged_format(&self, parts: &[PartConstraint]) -> BoxResult<TupleFormat> {
        let user = &self.user_format;
        TupleFormat::new(user.fields.clone(), user.exact_field_count, parts)
    }

    fn validate_all(&self, format: &TupleFormat) -> BoxResult<()> {
        let Some(primary) = self.indexes.first() else {
            return Ok(());
        };
        primary
            .iter_all()
            .try_for_each(|t| format.validate(t.data()))
    }
}

fn constraints_of(key_def: &KeyDef) -> impl Iterator<Item = PartConstraint> + '_ {
    key_def.parts.iter().map(|p| PartConstraint {
        fieldno: p.fieldno,
        field_type: p.field_type,
        is_nullable: p.is_nullable,
    })
}

/// A space's tuple checks and primary hint rule, sent to recovery decoder threads: valid
/// while the schema does not change.
#[derive(Clone)]
pub struct ReplayPrep {
    format: TupleFormat,
    header_size: usize,
    max_tuple_size: usize,
    hinter: crate::index::tree::Hinter,
}

impl ReplayPrep {
    /// Checks `tuple` as INSERT/REPLACE into the space would and returns its primary hint.
    pub fn prepare(&self, tuple: &Tuple) -> BoxResult<(u64, bool)> {
        let size = tuple.bsize() + self.header_size;
        if size > self.max_tuple_size {
            return Err(BoxError::memtx_max_tuple_size(size));
        }
        self.format.validate(tuple.data())?;
        Ok(self.hinter.hint(tuple))
    }
}
