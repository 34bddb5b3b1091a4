//! Tuple heap blocks: every block's size is its header and bytes rounded up to `GRAIN`, and
//! the thread that writes tuples (TX, once `keep_freed_blocks` is called there) keeps the
//! blocks it frees, by size, for its next tuples.
//!
//! Why: a REPLACE frees the old tuple's block right after touching its header, and the next
//! write needs a block of the same size. The general allocator would hand out another block
//! from its current page — cold in cache, and with random replaces over a large space its
//! pages hold one free block each, so it keeps searching for one. The block just freed is
//! warm and found in one step. The lists are bounded (`PER_CLASS`); beyond that, and on every
//! other thread, blocks go back to the allocator.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::cell::RefCell;
use std::ptr::NonNull;

/// Block sizes are multiples of this (and so is the allocator's smallest size classes).
const GRAIN: usize = 8;
/// Sizes kept: up to `CLASSES * GRAIN` bytes.
const CLASSES: usize = 64;
/// Blocks kept per size: at most `CLASSES * PER_CLASS * GRAIN * (CLASSES + 1) / 2` bytes in
/// all (2 MiB), far less in practice (a steady write load keeps a few per size).
const PER_CLASS: usize = 128;
/// Tuple blocks start with a 4-byte-aligned header.
const ALIGN: usize = 4;

struct Kept {
    lists: Vec<Vec<NonNull<u8>>>,
}

impl Drop for Kept {
    fn drop(&mut self) {
        for (class, list) in self.lists.iter().enumerate() {
            for block in list {
                // SAFETY: a kept block was allocated with its class's layout and is unused.
                unsafe { dealloc(block.as_ptr(), class_layout(class)) };
            }
        }
    }
}

thread_local! {
    /// The blocks this thread freed for reuse; None where blocks are not kept.
    static KEPT: RefCell<Option<Kept>> = const { RefCell::new(None) };
}

/// From now on this thread keeps the blocks it frees for the tuples it makes.
pub fn keep_freed_blocks() {
    KEPT.with(|k| {
        k.borrow_mut().get_or_insert_with(|| Kept {
            lists: (0..CLASSES)
                .map(|_| Vec::with_capacity(PER_CLASS))
                .collect(),
        });
    });
}

/// The size a block of `bytes` really has; None if it overflows.
pub fn block_size(bytes: usize) -> Option<usize> {
    Some(bytes.checked_add(GRAIN - 1)? & !(GRAIN - 1))
}

fn class_of(size: usize) -> Option<usize> {
    (size / GRAIN).checked_sub(1).filter(|&c| c < CLASSES)
}

fn class_layout(class: usize) -> Layout {
    // A size below `CLASSES * GRAIN` with a power-of-two alignment is always a layout.
    Layout::from_size_align((class + 1) * GRAIN, ALIGN).unwrap_or(Layout::new::<u32>())
}

fn layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size, ALIGN).ok()
}

/// A block of `size` bytes (a `block_size`), uninitialised; None if `size` is no layout.
pub fn take(size: usize) -> Option<NonNull<u8>> {
    if let Some(class) = class_of(size) {
        let reused = KEPT.with(|k| {
            k.borrow_mut()
                .as_mut()
                .and_then(|kept| kept.lists.get_mut(class)?.pop())
        });
        if reused.is_some() {
            return reused;
        }
    }
    let layout = layout(size)?;
    // SAFETY: `size` is at least one grain, so the layout is not zero-sized.
    let block = unsafe { alloc(layout) };
    Some(NonNull::new(block).unwrap_or_else(|| handle_alloc_error(layout)))
}

/// Gives back a block `take(size)` returned.
///
/// # Safety
/// `block` came from `take(size)` with this `size` and nothing uses it any more.
pub unsafe fn give(block: NonNull<u8>, size: usize) {
    let kept = class_of(size).is_some_and(|class| {
        KEPT.with(|k| {
            match k
                .borrow_mut()
                .as_mut()
                .and_then(|kept| kept.lists.get_mut(class))
            {
                Some(list) if list.len() < PER_CLASS => {
                    list.push(block);
                    true
                }
                _ => false,
            }
        })
    });
    if !kept {
        if let Some(layout) = layout(size) {
            // SAFETY: the caller guarantees `block` came from `take(size)`, which allocated
            // it with this layout (a kept block of the class has the same one).
            unsafe { dealloc(block.as_ptr(), layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_up_to_the_grain() {
        assert_eq!(block_size(9), Some(16));
        assert_eq!(block_size(16), Some(16));
        assert_eq!(block_size(17), Some(24));
        assert_eq!(block_size(usize::MAX), None);
        assert_eq!(class_of(8), Some(0));
        assert_eq!(class_of(CLASSES * GRAIN), Some(CLASSES - 1));
        assert_eq!(class_of(CLASSES * GRAIN + GRAIN), None);
    }

    #[test]
    fn a_freed_block_is_reused_where_blocks_are_kept() {
        std::thread::spawn(|| {
            keep_freed_blocks();
            let a = take(48).expect("block");
            // SAFETY: `a` came from take(48) and is unused.
            unsafe { give(a, 48) };
            assert_eq!(take(48), Some(a));
            let big = take(4096).expect("block");
            // SAFETY: as above; a size past the classes goes back to the allocator.
            unsafe { give(big, 4096) };
            // SAFETY: as above.
            unsafe { give(a, 48) };
        })
        .join()
        .expect("thread");
    }

    #[test]
    fn lists_are_bounded_and_other_threads_keep_nothing() {
        std::thread::spawn(|| {
            let a = take(24).expect("block");
            // SAFETY: from take(24), unused.
            unsafe { give(a, 24) };
            assert!(KEPT.with(|k| k.borrow().is_none()));
            keep_freed_blocks();
            let blocks: Vec<_> = (0..PER_CLASS + 10)
                .map(|_| take(24).expect("block"))
                .collect();
            for b in blocks {
                // SAFETY: each from take(24), unused.
                unsafe { give(b, 24) };
            }
            let kept = KEPT.with(|k| k.borrow().as_ref().map(|kept| kept.lists[2].len()));
            assert_eq!(kept, Some(PER_CLASS));
        })
        .join()
        .expect("thread");
    }
}
