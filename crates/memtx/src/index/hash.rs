//! The HASH index (unique only in 2.6): tuples in a hash table keyed by their full key.
//!
//! Iteration order is bucket order. GT resumes after the bucket holding the given key, which
//! is how clients page through a HASH index (Tarantool's order differs, and nobody can rely
//! on either). The hasher is seeded per index, so hostile keys cannot target collisions.

use crate::key_def::KeyDef;
use crate::tuple::Tuple;
use foldhash::fast::RandomState;
use hashbrown::hash_table::{Entry, HashTable};
use spindle_types::iproto::IteratorType;
use std::cmp::Ordering;
use std::hash::{BuildHasher, Hasher};

use super::tree::Window;

pub struct HashIndex {
    table: HashTable<Tuple>,
    key_def: KeyDef,
    state: RandomState,
}

/// Hash of a tuple's key; a free function so closures can borrow it apart from the table.
fn tuple_hash(key_def: &KeyDef, state: &RandomState, tuple: &Tuple) -> u64 {
    let mut h = state.build_hasher();
    key_def.hash_tuple(tuple, &mut h);
    h.finish()
}

impl HashIndex {
    pub fn new(key_def: &KeyDef) -> HashIndex {
        HashIndex {
            table: HashTable::new(),
            key_def: key_def.clone(),
            state: RandomState::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn mem_size(&self) -> usize {
        self.table.allocation_size()
    }

    fn hash_key(&self, key: &[&[u8]]) -> u64 {
        let mut h = self.state.build_hasher();
        self.key_def.hash_key(key, &mut h);
        h.finish()
    }

    /// Inserts `tuple`, replacing and returning the entry with the same key.
    pub fn insert(&mut self, tuple: Tuple) -> Option<Tuple> {
        let HashIndex {
            table,
            key_def,
            state,
        } = self;
        let hash = tuple_hash(key_def, state, &tuple);
        let eq = |x: &Tuple| key_def.compare(x, &tuple) == Ordering::Equal;
        match table.entry(hash, eq, |x| tuple_hash(key_def, state, x)) {
            Entry::Occupied(mut e) => Some(std::mem::replace(e.get_mut(), tuple)),
            Entry::Vacant(e) => {
                e.insert(tuple);
                None
            }
        }
    }

    /// Removes the entry with the same key as `tuple`.
    pub fn remove(&mut self, tuple: &Tuple) -> Option<Tuple> {
        let hash = tuple_hash(&self.key_def, &self.state, tuple);
        let key_def = &self.key_def;
        let entry = self
            .table
            .find_entry(hash, |x| key_def.compare(x, tuple) == Ordering::Equal);
        entry.ok().map(|e| e.remove().0)
    }

    /// Whether `a` and `b` occupy the same entry of this index.
    pub fn same_entry(&self, a: &Tuple, b: &Tuple) -> bool {
        self.key_def.compare(a, b) == Ordering::Equal
    }

    /// The entry with this full key.
    pub fn find(&self, key: &[&[u8]]) -> Option<&Tuple> {
        let key_def = &self.key_def;
        self.table.find(self.hash_key(key), |x| {
            key_def.compare_with_key(x, key) == Ordering::Equal
        })
    }

    /// The entry with the same key as `tuple`.
    pub fn find_duplicate(&self, tuple: &Tuple) -> Option<&Tuple> {
        let hash = tuple_hash(&self.key_def, &self.state, tuple);
        let key_def = &self.key_def;
        self.table
            .find(hash, |x| key_def.compare(x, tuple) == Ordering::Equal)
    }

    /// Runs EQ (full key), ALL, or GT (after `key` in bucket order; everything for an empty
    /// key, nothing when the key is absent). Other iterators yield nothing.
    pub fn select(&self, iterator: IteratorType, key: &[&[u8]], window: Window) -> Vec<Tuple> {
        let start = match iterator {
            IteratorType::Eq => {
                let found = self
                    .find(key)
                    .filter(|_| window.offset == 0 && window.limit > 0);
                return found.into_iter().cloned().collect();
            }
            IteratorType::All => 0,
            IteratorType::Gt if key.is_empty() => 0,
            IteratorType::Gt => match self.bucket_of(key) {
                Some(bucket) => bucket + 1,
                None => return Vec::new(),
            },
            _ => return Vec::new(),
        };
        let matching = self.entries_from_bucket(start).skip(window.offset as usize);
        matching.take(window.limit as usize).cloned().collect()
    }

    fn bucket_of(&self, key: &[&[u8]]) -> Option<usize> {
        let key_def = &self.key_def;
        let eq = |x: &Tuple| key_def.compare_with_key(x, key) == Ordering::Equal;
        self.table.find_bucket_index(self.hash_key(key), eq)
    }

    /// Entries from bucket `start` on, in bucket order.
    fn entries_from_bucket(&self, start: usize) -> impl Iterator<Item = &Tuple> + '_ {
        (start..self.table.num_buckets()).filter_map(|b| self.table.get_bucket(b))
    }

    /// All entries in bucket order.
    pub fn iter(&self) -> impl Iterator<Item = &Tuple> + '_ {
        self.entries_from_bucket(0)
    }

    /// Replaces the contents with `tuples`; fails with the first two that share a key,
    /// leaving the index unchanged.
    pub fn build(&mut self, tuples: Vec<Tuple>) -> Result<(), (Tuple, Tuple)> {
        let mut fresh = HashIndex {
            table: HashTable::with_capacity(tuples.len()),
            key_def: self.key_def.clone(),
            state: self.state,
        };
        for tuple in tuples {
            if let Some(old) = fresh.insert(tuple.clone()) {
                return Err((old, tuple));
            }
        }
        *self = fresh;
        Ok(())
    }
}
