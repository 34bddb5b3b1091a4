//! Tuples: immutable MessagePack arrays shared by reference count between every index of a
//! space, the transaction that created them and the snapshot thread.
//!
//! A tuple is one heap block — a 4-byte reference count, a 4-byte length, then the bytes —
//! behind a one-word pointer. Against `Arc<[u8]>` (two-word pointer, two 8-byte counts) this
//! saves 8 bytes in every index entry and 8 in every block: with small tuples that decides
//! whether memory per tuple beats Tarantool's. Cloning is one atomic increment; the bytes are
//! validated once, at construction, so readers may decode fields without re-checking
//! well-formedness (they still never panic on bad bytes).

use spindle_proto::mp::{self, Value};
use spindle_types::{BoxError, BoxResult};

use crate::blocks;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;

/// The start of a tuple's heap block; the bytes follow it.
#[repr(C)]
pub(crate) struct Header {
    refs: AtomicU32,
    len: u32,
}

const HEADER_SIZE: usize = std::mem::size_of::<Header>();
/// References beyond this abort the process (as `Arc` does) instead of wrapping around.
const REFS_MAX: u32 = u32::MAX / 2;

/// An immutable, validated MessagePack array.
pub struct Tuple {
    ptr: NonNull<Header>,
}

// SAFETY: the bytes are immutable after construction and the reference count is atomic, so
// handles may move to and be shared with other threads exactly like `Arc<[u8]>`.
unsafe impl Send for Tuple {}
// SAFETY: as above; `&Tuple` only gives shared access to immutable bytes.
unsafe impl Sync for Tuple {}

impl Tuple {
    /// Validates `data` (exactly one well-formed MessagePack value, which must be an array)
    /// and copies it into a new tuple.
    pub fn new(data: &[u8]) -> BoxResult<Tuple> {
        check_array(data)?;
        Tuple::copy_of(data)
    }

    /// For bytes already validated as exactly one well-formed MessagePack value (a log row
    /// body checked on read): only checks that the value is an array.
    pub fn from_validated(data: &[u8]) -> BoxResult<Tuple> {
        match data.first() {
            Some(0x90..=0x9f | 0xdc | 0xdd) => Tuple::copy_of(data),
            _ => Err(BoxError::tuple_not_array()),
        }
    }

    /// Like [`Tuple::new`], for bytes already in a vector.
    pub fn from_vec(data: Vec<u8>) -> BoxResult<Tuple> {
        Tuple::new(&data)
    }

    /// The size of the block of a tuple of `len` bytes.
    fn block_size(len: usize) -> Option<usize> {
        blocks::block_size(HEADER_SIZE.checked_add(len)?)
    }

    fn copy_of(data: &[u8]) -> BoxResult<Tuple> {
        let too_big = || BoxError::memtx_max_tuple_size(data.len());
        let len = u32::try_from(data.len()).map_err(|_| too_big())?;
        let block = Tuple::block_size(data.len())
            .and_then(blocks::take)
            .ok_or_else(too_big)?;
        let ptr = block.cast::<Header>();
        // SAFETY: the block is at least the header and `len` bytes, aligned for the header,
        // and ours alone; it is written before any read: the header first, then the bytes
        // right after it. The source cannot overlap a block nobody else holds.
        unsafe {
            ptr.as_ptr().write(Header {
                refs: AtomicU32::new(1),
                len,
            });
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                block.as_ptr().add(HEADER_SIZE),
                data.len(),
            );
        }
        Ok(Tuple { ptr })
    }

    fn header(&self) -> &Header {
        // SAFETY: `ptr` points at a live block while any handle exists (we hold one).
        unsafe { self.ptr.as_ref() }
    }

    /// The whole MessagePack array.
    pub fn data(&self) -> &[u8] {
        let len = self.header().len as usize;
        // SAFETY: the block holds `len` initialised, never-mutated bytes after the header,
        // alive as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<u8>().add(HEADER_SIZE), len) }
    }

    /// Size of the MessagePack encoding in bytes (Tarantool's `bsize`).
    pub fn bsize(&self) -> usize {
        self.header().len as usize
    }

    /// Number of fields (elements of the array).
    pub fn field_count(&self) -> u32 {
        let mut cur = self.data();
        match mp::read_value(&mut cur) {
            Ok(Value::Array(n)) => n,
            _ => 0,
        }
    }

    /// The raw bytes of field `fieldno` (0-based), or `None` past the end.
    pub fn field(&self, fieldno: u32) -> Option<&[u8]> {
        field_of(self.data(), fieldno)
    }

    /// The fields in order, as raw MessagePack values.
    pub fn fields(&self) -> Fields<'_> {
        Fields::new(self.data())
    }

    /// The heap block, for a frozen read view (`crate::frozen`).
    pub(crate) fn block(&self) -> NonNull<Header> {
        self.ptr
    }

    /// The bytes of a block that a frozen view keeps alive.
    ///
    /// # Safety
    /// `block` must come from [`Tuple::block`] of a tuple that is not freed for `'a`.
    pub(crate) unsafe fn block_data<'a>(block: NonNull<Header>) -> &'a [u8] {
        // SAFETY: the caller guarantees the block is live for 'a; it holds `len` initialised,
        // never-mutated bytes after the header.
        unsafe {
            let len = block.as_ref().len as usize;
            std::slice::from_raw_parts(block.as_ptr().cast::<u8>().add(HEADER_SIZE), len)
        }
    }

    /// Frees a block.
    ///
    /// # Safety
    /// No handle or view may refer to `block` any more.
    pub(crate) unsafe fn free_block(block: NonNull<Header>) {
        // SAFETY: the caller guarantees the block is live and unreachable; `copy_of` took
        // it with the size of its own length.
        unsafe {
            let len = block.as_ref().len as usize;
            if let Some(size) = Tuple::block_size(len) {
                blocks::give(block.cast::<u8>(), size);
            }
        }
    }

    /// Whether both handles share one allocation (the same stored tuple).
    pub fn ptr_eq(a: &Tuple, b: &Tuple) -> bool {
        a.ptr == b.ptr
    }

    /// Bytes this tuple occupies on the heap, including its header.
    pub fn heap_size(&self) -> usize {
        Tuple::block_size(self.bsize()).unwrap_or(usize::MAX)
    }
}

impl Clone for Tuple {
    fn clone(&self) -> Tuple {
        // Relaxed suffices for an increment: the new handle is derived from a live one.
        if self.header().refs.fetch_add(1, Ordering::Relaxed) >= REFS_MAX {
            std::process::abort();
        }
        Tuple { ptr: self.ptr }
    }
}

impl Drop for Tuple {
    fn drop(&mut self) {
        if self.header().refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // Every other handle's last use happens before the block is freed.
        fence(Ordering::Acquire);
        // A frozen read view taken while the tuple was stored may still read it.
        if bury(self.ptr) {
            return;
        }
        // SAFETY: this was the last handle and no view can read the block.
        unsafe { Tuple::free_block(self.ptr) }
    }
}

impl PartialEq for Tuple {
    fn eq(&self, other: &Tuple) -> bool {
        self.data() == other.data()
    }
}

impl Eq for Tuple {}

impl Hash for Tuple {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.data().hash(state)
    }
}

impl fmt::Debug for Tuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tuple(")?;
        for (i, b) in self.data().iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// Checks that `data` is exactly one well-formed MessagePack array.
fn check_array(data: &[u8]) -> BoxResult<()> {
    if mp::peek_type(data) != Ok(mp::MpType::Array) {
        return Err(BoxError::tuple_not_array());
    }
    match mp::check(data) {
        Ok(len) if len == data.len() => Ok(()),
        _ => Err(BoxError::invalid_msgpack("tuple")),
    }
}

/// The raw bytes of element `fieldno` of the MessagePack array `array`.
pub(crate) fn field_of(array: &[u8], fieldno: u32) -> Option<&[u8]> {
    Fields::new(array).nth(fieldno as usize)
}

/// Iterator over the elements of a MessagePack array, yielding each element's raw bytes.
/// Stops early (without panicking) if the bytes are malformed.
pub struct Fields<'a> {
    rest: &'a [u8],
    remaining: u32,
}

impl<'a> Fields<'a> {
    /// Starts at the array header of `array`; a non-array yields nothing.
    pub fn new(array: &'a [u8]) -> Fields<'a> {
        let mut rest = array;
        let remaining = match mp::read_value(&mut rest) {
            Ok(Value::Array(n)) => n,
            _ => 0,
        };
        Fields { rest, remaining }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        match mp::take_value(&mut self.rest) {
            Ok(v) => Some(v),
            Err(_) => {
                self.remaining = 0;
                None
            }
        }
    }

    fn nth(&mut self, n: usize) -> Option<&'a [u8]> {
        for _ in 0..n {
            if self.remaining == 0 {
                return None;
            }
            self.remaining -= 1;
            if mp::skip(&mut self.rest).is_err() {
                self.remaining = 0;
                return None;
            }
        }
        self.next()
    }
}

// ---- delayed free, for frozen read views (`crate::frozen`) ----

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
pub(crate) struct Freeze(());

impl Freeze {
    pub(crate) fn new() -> Freeze {
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

/// True when no view lives and nothing waits in the graveyard (for tests).
#[cfg(test)]
pub(crate) fn no_views_and_no_dead() -> bool {
    VIEWS.load(Ordering::SeqCst) == 0 && graveyard().dead.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use spindle_types::error::code;

    #[test]
    fn validates_and_reads_fields() {
        // [1, "ab", [2]]
        let t = Tuple::new(&[0x93, 0x01, 0xa2, b'a', b'b', 0x91, 0x02]).unwrap();
        assert_eq!(t.field_count(), 3);
        assert_eq!(t.field(0), Some(&[0x01][..]));
        assert_eq!(t.field(1), Some(&[0xa2, b'a', b'b'][..]));
        assert_eq!(t.field(2), Some(&[0x91, 0x02][..]));
        assert_eq!(t.field(3), None);
        assert_eq!(t.fields().count(), 3);
    }

    #[test]
    fn rejects_non_arrays_and_garbage() {
        assert_eq!(
            Tuple::new(&[0x01]).unwrap_err().code,
            code::ER_TUPLE_NOT_ARRAY
        );
        assert_eq!(Tuple::new(&[]).unwrap_err().code, code::ER_TUPLE_NOT_ARRAY);
        assert_eq!(
            Tuple::new(&[0x92, 0x01]).unwrap_err().code,
            code::ER_INVALID_MSGPACK
        );
        assert_eq!(
            Tuple::new(&[0x91, 0x01, 0x02]).unwrap_err().code,
            code::ER_INVALID_MSGPACK
        );
    }

    #[test]
    fn handles_are_shared_and_dropped_across_threads() {
        let tuple = Tuple::new(&[0x92, 0x01, 0xa3, b'a', b'b', b'c']).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let mine = tuple.clone();
                std::thread::spawn(move || {
                    let copies: Vec<Tuple> = (0..10_000).map(|_| mine.clone()).collect();
                    copies
                        .iter()
                        .all(|c| Tuple::ptr_eq(c, &mine) && c.bsize() == 6)
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().unwrap());
        }
        assert_eq!(tuple.header().refs.load(Ordering::SeqCst), 1);
        assert_eq!(tuple.data(), &[0x92, 0x01, 0xa3, b'a', b'b', b'c']);
        assert_eq!(tuple, Tuple::from_validated(tuple.data()).unwrap());
        // 8 bytes of header, 6 of data, rounded up to the block grain.
        assert_eq!(tuple.heap_size(), 16);
    }

    #[test]
    fn is_send_sync_and_small() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Tuple>();
        assert_eq!(std::mem::size_of::<Tuple>(), std::mem::size_of::<usize>());
        assert_eq!(
            std::mem::size_of::<Option<Tuple>>(),
            std::mem::size_of::<Tuple>()
        );
    }
}
