//! Frozen read views: the tuples of an index at one moment, without a reference per tuple.
//!
//! Taking a reference is an atomic increment on a tuple that is rarely in cache; for a
//! million tuples that held the TX thread for 15–25 ms at every checkpoint. A frozen view
//! copies only the pointers. What keeps them valid is delayed free (as in Tarantool's memtx
//! snapshots): while any view exists, a tuple whose last reference goes is kept in a
//! graveyard instead of freed, and the graveyard is freed when the last view ends. A tuple
//! in a view was in an index when the view was taken, so it cannot be freed before then,
//! and any later free sees the view (see `Tuple::drop`).

use std::marker::PhantomData;
use std::ptr::NonNull;

use crate::tuple::{Freeze, Header, Tuple};

/// The tuples of one index as they were when the view was taken, in index order. May move
/// to another thread (a snapshot or relay thread) and outlive any change to the index.
pub struct FrozenTuples {
    blocks: Vec<NonNull<Header>>,
    // Declared after `blocks` only for readability: the pointers need no drop.
    _freeze: Freeze,
}

// SAFETY: the blocks are immutable tuple bytes kept alive by the freeze (see the module
// comment), so they may be read from any thread, as `Tuple`s may.
unsafe impl Send for FrozenTuples {}
// SAFETY: as above; shared access only reads immutable bytes.
unsafe impl Sync for FrozenTuples {}

impl FrozenTuples {
    /// Starts a view; `fill` must push the blocks of tuples held by an index right now.
    pub(crate) fn take(capacity: usize, fill: impl FnOnce(&mut Vec<NonNull<Header>>)) -> Self {
        // The freeze starts before the first pointer is copied.
        let freeze = Freeze::new();
        let mut blocks = Vec::with_capacity(capacity);
        fill(&mut blocks);
        FrozenTuples {
            blocks,
            _freeze: freeze,
        }
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// The tuples' MessagePack arrays, in index order.
    pub fn iter(&self) -> impl Iterator<Item = FrozenTuple<'_>> + '_ {
        self.blocks.iter().map(|&block| FrozenTuple {
            block,
            _view: PhantomData,
        })
    }
}

/// One tuple of a frozen view, readable while the view lives.
#[derive(Clone, Copy)]
pub struct FrozenTuple<'a> {
    block: NonNull<Header>,
    _view: PhantomData<&'a FrozenTuples>,
}

impl<'a> FrozenTuple<'a> {
    pub fn data(&self) -> &'a [u8] {
        // SAFETY: the block was a live tuple when the view was taken and is neither freed
        // nor changed while the view (borrowed for 'a) holds its freeze.
        unsafe { Tuple::block_data(self.block) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(n: u8, text: &str) -> Tuple {
        let mut data = vec![0x92, n & 0x7f, 0xa0 | text.len() as u8];
        data.extend_from_slice(text.as_bytes());
        Tuple::new(&data).unwrap()
    }

    #[test]
    fn a_view_reads_tuples_freed_after_it_was_taken() {
        let stored: Vec<Tuple> = (0..200).map(|i| tuple(i, "stored tuple")).collect();
        let expected: Vec<Vec<u8>> = stored.iter().map(|t| t.data().to_vec()).collect();
        let view = FrozenTuples::take(stored.len(), |out| {
            out.extend(stored.iter().map(Tuple::block));
        });
        drop(stored);
        // Same-sized allocations would reuse the blocks had they been freed.
        let reuse: Vec<Tuple> = (0..200).map(|i| tuple(i, "OVERWRITTEN!")).collect();
        let seen: Vec<Vec<u8>> = view.iter().map(|t| t.data().to_vec()).collect();
        assert_eq!(seen, expected);
        let second = FrozenTuples::take(reuse.len(), |out| {
            out.extend(reuse.iter().map(Tuple::block));
        });
        drop(view);
        drop(reuse);
        assert_eq!(second.iter().count(), 200);
        assert!(second.iter().all(|t| t.data().ends_with(b"OVERWRITTEN!")));
        drop(second);
        assert!(crate::tuple::no_views_and_no_dead());
    }
}
