//! The raw representation of a tuple in Lua, a leaf the conversions and the tuple methods
//! share: a userdata whose block holds the tuple reference and its space, with the tuples'
//! shared metatable (registry field `spindle.tuple_mt`, made by `tuple::install`). The blocks
//! alive are listed (`LIVE`), so code holding any userdata can tell a tuple (`of`) without
//! the raw API.

use std::cell::RefCell;
use std::ffi::CStr;
use std::os::raw::c_int;

use hashbrown::HashSet;
use mlua::{ffi, AnyUserData, Value};
use spindle_memtx::tuple::Tuple;

/// The registry field of the tuples' metatable.
const TUPLE_MT: &CStr = c"spindle.tuple_mt";

/// A tuple userdata's block. `tuple` is None once the finalizer has run.
struct Block {
    tuple: Option<Tuple>,
    space: Option<u32>,
}

thread_local! {
    /// Addresses of the tuple blocks not yet finalized (TX thread only).
    static LIVE: RefCell<HashSet<usize>> = RefCell::new(HashSet::new());
}

/// The tuple (and its space) a userdata holds, if it is a tuple.
pub fn of(ud: &AnyUserData) -> Option<(Tuple, Option<u32>)> {
    let p = ud.to_pointer();
    if !LIVE.with(|l| l.borrow().contains(&(p as usize))) {
        return None;
    }
    // SAFETY: `p` is the block of a tuple userdata that is alive (listed in `LIVE` until its
    // finalizer runs, and `ud` holds it); blocks are only read and written on this thread.
    let block = unsafe { &*p.cast::<Block>() };
    Some((block.tuple.clone()?, block.space))
}

pub fn is_tuple(v: &Value) -> bool {
    matches!(v, Value::UserData(ud) if of(ud).is_some())
}

/// Pushes a tuple userdata onto `l`.
///
/// # Safety
/// `l` is a Lua thread of the TX thread's state with a free stack slot.
pub unsafe fn push_raw(l: *mut ffi::lua_State, tuple: Tuple, space: Option<u32>) {
    // SAFETY: a new userdata big enough for a `Block`, which LuaJIT aligns for 8-byte
    // fields; it is written before anything can see it.
    unsafe {
        let p = ffi::lua_newuserdata(l, std::mem::size_of::<Block>()).cast::<Block>();
        p.write(Block {
            tuple: Some(tuple),
            space,
        });
        LIVE.with(|live| live.borrow_mut().insert(p as usize));
        ffi::lua_getfield(l, ffi::LUA_REGISTRYINDEX, TUPLE_MT.as_ptr());
        ffi::lua_setmetatable(l, -2);
    }
}

/// `f` of the stored bytes of the tuple in slot `idx` of `l`; None if the value there is
/// not a tuple.
///
/// # Safety
/// `l` is a Lua thread of the TX thread's state that is not running; `idx` a valid slot.
pub unsafe fn with_raw<R>(
    l: *mut ffi::lua_State,
    idx: c_int,
    f: impl FnOnce(&[u8]) -> R,
) -> Option<R> {
    // SAFETY: reads of slot `idx`; the block is alive (listed) while the slot holds it.
    unsafe {
        if ffi::lua_type(l, idx) != ffi::LUA_TUSERDATA {
            return None;
        }
        let p = ffi::lua_touserdata(l, idx);
        if !LIVE.with(|live| live.borrow().contains(&(p as usize))) {
            return None;
        }
        let block = &*p.cast::<Block>();
        Some(f(block.tuple.as_ref()?.data()))
    }
}

/// `__gc`: drops the block's tuple reference.
pub unsafe extern "C-unwind" fn gc(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: LuaJIT calls the finalizer with the userdata as its only argument; only tuple
    // userdata carry this metatable (`push_raw`), and a finalized block has `tuple` None.
    unsafe {
        let p = ffi::lua_touserdata(l, 1);
        if !p.is_null() && LIVE.with(|live| live.borrow_mut().remove(&(p as usize))) {
            let block = &mut *p.cast::<Block>();
            block.tuple = None;
        }
    }
    0
}
