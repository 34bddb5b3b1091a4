//! Indexes: the definition (`IndexDef`), and `Index`, which validates request keys and
//! iterator types with Tarantool 2.6's errors and dispatches to a TREE or HASH structure.

pub mod bptree;
pub mod hash;
pub mod tree;

use crate::frozen::FrozenTuples;
use crate::key_def::{Key, KeyDef};
use crate::tuple::Tuple;
use hash::HashIndex;
use spindle_types::iproto::IteratorType;
use spindle_types::{BoxError, BoxResult};
use tree::TreeIndex;

pub use tree::Window;

/// Where a key's lower bound is in a TREE index: valid only until the index changes.
#[derive(Clone, Copy, Debug)]
pub struct Lookup(bptree::Pos);

/// `ER_UNSUPPORTED_INDEX_FEATURE`: not (yet) in `spindle_types::error::code`.
pub const ER_UNSUPPORTED_INDEX_FEATURE: u32 = 112;
/// `ER_NULLABLE_PRIMARY`: not (yet) in `spindle_types::error::code`.
pub const ER_NULLABLE_PRIMARY: u32 = 152;

/// The iterator type of an `IPROTO_ITERATOR` code; unknown codes are ER_ILLEGAL_PARAMS, which
/// Tarantool reports before looking at the key.
pub fn iterator_from_code(code: u64) -> BoxResult<IteratorType> {
    IteratorType::from_code(code).ok_or_else(|| BoxError::illegal_params("Invalid iterator type"))
}

/// The index structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexKind {
    Tree,
    Hash,
}

impl IndexKind {
    /// Parses an `_index` type name (case-insensitive, as Tarantool accepts it).
    pub fn parse(name: &str) -> Option<IndexKind> {
        match name.to_ascii_lowercase().as_str() {
            "tree" => Some(IndexKind::Tree),
            "hash" => Some(IndexKind::Hash),
            _ => None,
        }
    }

    /// The upper-case name Tarantool prints in errors.
    pub fn name(self) -> &'static str {
        match self {
            IndexKind::Tree => "TREE",
            IndexKind::Hash => "HASH",
        }
    }
}

/// An index definition as `_index` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexDef {
    pub id: u32,
    pub name: String,
    pub kind: IndexKind,
    pub unique: bool,
    pub key_def: KeyDef,
}

impl IndexDef {
    /// Checks the structural rules Tarantool 2.6 enforces when an index is created.
    pub fn check(&self, space_name: &str) -> BoxResult<()> {
        let nullable = self.key_def.is_nullable();
        if self.id == 0 && !self.unique {
            return Err(BoxError::modify_index(
                &self.name,
                space_name,
                "primary key must be unique",
            ));
        }
        if self.id == 0 && nullable {
            return Err(BoxError::new(
                ER_NULLABLE_PRIMARY,
                format!("Primary index of space '{space_name}' can not contain nullable parts"),
            ));
        }
        if self.kind == IndexKind::Hash && !self.unique {
            return Err(BoxError::modify_index(
                &self.name,
                space_name,
                "HASH index must be unique",
            ));
        }
        if self.kind == IndexKind::Hash && nullable {
            return Err(BoxError::unsupported("HASH", "nullable parts"));
        }
        Ok(())
    }
}

enum Imp {
    Tree(TreeIndex),
    Hash(HashIndex),
}

/// One index of a space: its definition and its entries.
pub struct Index {
    def: IndexDef,
    imp: Imp,
}

impl Index {
    /// An empty index. `primary` is the primary key definition for secondary indexes (their
    /// entries order by it after their own parts), `None` for the primary index itself.
    pub fn new(def: IndexDef, primary: Option<&KeyDef>) -> Index {
        let imp = match def.kind {
            IndexKind::Tree => Imp::Tree(TreeIndex::new(&def.key_def, primary)),
            IndexKind::Hash => Imp::Hash(HashIndex::new(&def.key_def)),
        };
        Index { def, imp }
    }

    pub fn def(&self) -> &IndexDef {
        &self.def
    }

    pub fn id(&self) -> u32 {
        self.def.id
    }

    pub fn name(&self) -> &str {
        &self.def.name
    }

    pub fn key_def(&self) -> &KeyDef {
        &self.def.key_def
    }

    pub fn len(&self) -> usize {
        match &self.imp {
            Imp::Tree(t) => t.len(),
            Imp::Hash(h) => h.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Memory the index structure holds (not the tuples), like `index:bsize()`.
    pub fn bsize(&self) -> usize {
        match &self.imp {
            Imp::Tree(t) => t.mem_size(),
            Imp::Hash(h) => h.mem_size(),
        }
    }

    /// Every entry: ascending for TREE, bucket order for HASH. Used for snapshots and to
    /// build new indexes.
    pub fn iter_all(&self) -> Box<dyn Iterator<Item = &Tuple> + '_> {
        match &self.imp {
            Imp::Tree(t) => Box::new(t.iter()),
            Imp::Hash(h) => Box::new(h.iter()),
        }
    }

    /// Every tuple as of now, in index order for TREE, without a reference per tuple (a read
    /// view for checkpoints and replica joins; see `crate::frozen`).
    pub fn read_view(&self) -> FrozenTuples {
        FrozenTuples::take(self.len(), |out| match &self.imp {
            Imp::Tree(t) => t.collect_blocks(out),
            Imp::Hash(h) => out.extend(h.iter().map(Tuple::block)),
        })
    }

    // ---- reads ----

    /// SELECT: validates `key` (a MessagePack array) and the iterator for this index, then
    /// returns the matching tuples after `offset`, at most `limit` of them. `space_name` is
    /// for error messages.
    pub fn select(
        &self,
        iterator: IteratorType,
        key: &[u8],
        offset: u32,
        limit: u32,
        space_name: &str,
    ) -> BoxResult<Vec<Tuple>> {
        self.select_from(iterator, key, offset, limit, space_name, None)
    }

    /// For a run of EQ selects on this index with no change in between: every key's lower
    /// bound in one batched walk, so that the selects' cache misses overlap (a lookup in a
    /// tree of 1M tuples otherwise waits for about five misses in a row). `None` for a key
    /// that is not a valid full or partial key of this index (its select reports why), and
    /// for every key of a HASH index.
    pub fn lower_bounds<'k>(&self, keys: impl Iterator<Item = &'k [u8]>) -> Vec<Option<Lookup>> {
        let Imp::Tree(t) = &self.imp else {
            return keys.map(|_| None).collect();
        };
        let key_def = &self.def.key_def;
        let parsed: Vec<Option<Key<'k>>> = keys
            .map(|k| {
                Key::parse(k).ok().filter(|k| {
                    !k.is_empty()
                        && key_def.check_key_part_count(k).is_ok()
                        && key_def.check_key_part_types(k, true).is_ok()
                })
            })
            .collect();
        let valid: Vec<&[&[u8]]> = parsed.iter().flatten().map(|k| k.parts()).collect();
        let mut found = t.lower_bounds(&valid).into_iter();
        parsed
            .iter()
            .map(|k| k.as_ref().and_then(|_| found.next()).map(Lookup))
            .collect()
    }

    /// `select`, with the lower bound of an EQ select found already by `lower_bounds` on this
    /// index in its current state (if `lookup` is set). The key is validated once either way.
    pub fn select_from(
        &self,
        iterator: IteratorType,
        key: &[u8],
        offset: u32,
        limit: u32,
        space_name: &str,
        lookup: Option<Lookup>,
    ) -> BoxResult<Vec<Tuple>> {
        let key = self.validate_select_key(iterator, key, space_name)?;
        let window = Window { offset, limit };
        Ok(match (&self.imp, lookup) {
            // `lower_bounds` gives no lookup for an empty key; no lookup is needed for one.
            (Imp::Tree(t), Some(Lookup(from)))
                if matches!(iterator, IteratorType::Eq) && !key.is_empty() =>
            {
                t.select_eq_from(from, key.parts(), window)
            }
            (Imp::Tree(t), _) => t.select(iterator, key.parts(), window),
            (Imp::Hash(h), _) => h.select(iterator, key.parts(), window),
        })
    }

    /// The checks of a select in Tarantool's order: part count (ER_KEY_PART_COUNT), HASH
    /// partial keys (ER_PARTIAL_KEY), part types (ER_KEY_PART_TYPE), then iterator support
    /// (ER_UNSUPPORTED_INDEX_FEATURE).
    pub fn validate_select_key<'k>(
        &self,
        iterator: IteratorType,
        key: &'k [u8],
        space_name: &str,
    ) -> BoxResult<Key<'k>> {
        let key = Key::parse(key)?;
        let key_def = &self.def.key_def;
        key_def.check_key_part_count(&key)?;
        if self.def.kind == IndexKind::Hash {
            let scan = key.is_empty() && matches!(iterator, IteratorType::All | IteratorType::Gt);
            if key.len() < key_def.parts.len() && !scan {
                let expected = key_def.part_count();
                return Err(BoxError::partial_key("HASH", expected, key.len() as u32));
            }
        }
        key_def.check_key_part_types(&key, true)?;
        if !self.supports(iterator) {
            return Err(self.unsupported_iterator(space_name));
        }
        Ok(key)
    }

    fn supports(&self, iterator: IteratorType) -> bool {
        use IteratorType::*;
        match self.def.kind {
            IndexKind::Tree => matches!(iterator, Eq | Req | All | Lt | Le | Ge | Gt),
            IndexKind::Hash => matches!(iterator, Eq | All | Gt),
        }
    }

    fn unsupported_iterator(&self, space_name: &str) -> BoxError {
        BoxError::new(
            ER_UNSUPPORTED_INDEX_FEATURE,
            format!(
                "Index '{}' ({}) of space '{}' (memtx) does not support requested iterator type",
                self.def.name,
                self.def.kind.name(),
                space_name
            ),
        )
    }

    /// Validates the key of get/delete/update: ER_MORE_THAN_ONE_TUPLE for a non-unique index
    /// (whatever the key), then ER_EXACT_MATCH, then ER_KEY_PART_TYPE (nil refused).
    pub fn validate_exact_key<'k>(&self, key: &'k [u8]) -> BoxResult<Key<'k>> {
        if !self.def.unique {
            return Err(BoxError::more_than_one_tuple());
        }
        self.def.key_def.validate_exact_key(key)
    }

    /// The tuple with exactly this key (`index:get`), with the checks of
    /// [`Index::validate_exact_key`].
    pub fn get(&self, key: &[u8]) -> BoxResult<Option<Tuple>> {
        let key = self.validate_exact_key(key)?;
        Ok(self.find(&key).cloned())
    }

    /// The entry whose key equals a validated full key.
    pub fn find(&self, key: &Key<'_>) -> Option<&Tuple> {
        match &self.imp {
            Imp::Tree(t) => t.find(key.parts()),
            Imp::Hash(h) => h.find(key.parts()),
        }
    }

    /// Number of tuples an EQ select with this validated key prefix would return.
    pub fn count_eq(&self, key: &Key<'_>) -> usize {
        match &self.imp {
            Imp::Tree(t) => t.count_eq(key.parts()),
            Imp::Hash(h) if key.is_empty() => h.len(),
            Imp::Hash(h) => usize::from(h.find(key.parts()).is_some()),
        }
    }

    // ---- writes (no uniqueness checks: the space makes them first) ----

    /// For a unique index, the entry whose key equals `tuple`'s key (keys with a nil part
    /// never collide). `None` for non-unique indexes.
    pub fn find_duplicate(&self, tuple: &Tuple) -> Option<&Tuple> {
        if !self.def.unique {
            return None;
        }
        match &self.imp {
            Imp::Tree(t) => t.find_duplicate(tuple),
            Imp::Hash(h) => h.find_duplicate(tuple),
        }
    }

    /// Inserts `tuple`, replacing and returning the entry it is equal to in this index's
    /// order (same key for unique indexes without nils, same key and primary key otherwise).
    pub fn insert_entry(&mut self, tuple: Tuple) -> Option<Tuple> {
        match &mut self.imp {
            Imp::Tree(t) => t.insert(tuple),
            Imp::Hash(h) => h.insert(tuple),
        }
    }

    /// The hint rule of a TREE index, to run on another thread; `None` for HASH.
    pub fn hinter(&self) -> Option<tree::Hinter> {
        match &self.imp {
            Imp::Tree(t) => t.hinter(),
            Imp::Hash(_) => None,
        }
    }

    /// `insert_entry` with a hint from this index's `hinter`.
    pub fn insert_entry_hinted(&mut self, tuple: Tuple, hint: u64, exact: bool) -> Option<Tuple> {
        match &mut self.imp {
            Imp::Tree(t) => t.insert_hinted(tuple, hint, exact),
            Imp::Hash(h) => h.insert(tuple),
        }
    }

    /// Removes the entry equal to `tuple` in this index's order.
    pub fn remove_entry(&mut self, tuple: &Tuple) -> Option<Tuple> {
        match &mut self.imp {
            Imp::Tree(t) => t.remove(tuple),
            Imp::Hash(h) => h.remove(tuple),
        }
    }

    /// Whether `a` and `b` occupy the same entry (so replacing one by the other is one swap).
    pub fn same_entry(&self, a: &Tuple, b: &Tuple) -> bool {
        match &self.imp {
            Imp::Tree(t) => t.same_entry(a, b),
            Imp::Hash(h) => h.same_entry(a, b),
        }
    }

    /// Replaces the contents with `tuples` (any order) in one bulk build. For a unique index
    /// fails with two tuples sharing a key, leaving the index unchanged.
    pub fn build(&mut self, tuples: Vec<Tuple>) -> Result<(), (Tuple, Tuple)> {
        match &mut self.imp {
            Imp::Tree(t) => t.build(tuples, self.def.unique),
            Imp::Hash(h) => h.build(tuples),
        }
    }
}
