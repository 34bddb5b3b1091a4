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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::tuple::{Header, Tuple};

/// Views alive; read without the lock on every free, so that freeing costs nothing extra
/// when no view exists. Changed only under `GRAVEYARD`'s lock.
static VIEWS: AtomicUsize = AtomicUsize::new(0);

static GRAVEYARD: Mutex<Graveyard> = Mutex::new(Graveyard {
    views: 0,
    dead: Vec::new(),
});

struct Graveyard {
    views: usize,
    dead: Vec<Dead>,
}

/// A tuple block no handle refers to any more, waiting for the last view to end.
struct Dead(NonNull<Header>);

// SAFETY: a dead block is owned by the graveyard alone (no handle refers to it); whichever
// thread ends the last view frees it.
unsafe impl Send for Dead {}

fn graveyard() -> std::sync::MutexGuard<'static, Graveyard> {
    // The graveyard's state stays consistent even if a holder panicked (push and take only).
    GRAVEYARD.lock().unwrap_or_else(|e| e.into_inner())
}

/// Called by `Tuple::drop` for a block whose last handle went: keeps it if a view may
/// still read it. Returns whether it was kept.
pub(crate) fn bury(block: NonNull<Header>) -> bool {
    if VIEWS.load(Ordering::SeqCst) == 0 {
        return false;
    }
    let mut g = graveyard();
    if g.views == 0 {
        return false;
    }
    g.dead.push(Dead(block));
    true
}

/// Holds delayed free on while it lives.
struct Freeze(());

impl Freeze {
    fn new() -> Freeze {
        let mut g = graveyard();
        g.views += 1;
        VIEWS.store(g.views, Ordering::SeqCst);
        Freeze(())
    }
}

impl Drop for Freeze {
    fn drop(&mut self) {
        let dead = {
            let mut g = graveyard();
            g.views -= 1;
            VIEWS.store(g.views, Ordering::SeqCst);
            if g.views > 0 {
                return;
            }
            std::mem::take(&mut g.dead)
        };
        for Dead(block) in dead {
            // SAFETY: buried blocks have no handles, and no view is left that could read them.
            unsafe { Tuple::free_block(block) };
        }
    }
}

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
        assert_eq!(VIEWS.load(Ordering::SeqCst), 0);
        assert!(graveyard().dead.is_empty());
    }
}
