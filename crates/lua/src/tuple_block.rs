//! The raw representation of a tuple in Lua, a leaf the conversions and the tuple methods
//! share: a userdata whose block holds the tuple reference and its space, with the tuples'
//! shared metatable (made by `tuple::install`, referenced from the registry). A userdata is
//! a tuple when it has that metatable and a block's size: no table of the blocks alive is
//! kept, which would cost a hash insert per tuple pushed and a remove per tuple collected.
//! The TX thread has one Lua state, so the metatable's reference and address are kept in
//! thread-locals (a registry lookup by name or light userdata costs a string or pointer
//! hash per tuple).

use std::cell::{Cell, RefCell};
use std::os::raw::{c_int, c_void};

use mlua::{ffi, AnyUserData, Lua, Table, Value, WeakLua};
use spindle_memtx::tuple::Tuple;

/// A tuple userdata's block. `tuple` is None once the finalizer has run.
struct Block {
    tuple: Option<Tuple>,
    space: Option<u32>,
}

thread_local! {
    /// The state `install` was called for (TX thread only): `of` checks a userdata there.
    static STATE: RefCell<Option<WeakLua>> = const { RefCell::new(None) };
    /// The tuples' metatable: its registry reference and its address.
    static MT: Cell<(c_int, *const c_void)> = const { Cell::new((ffi::LUA_NOREF, std::ptr::null())) };
}

/// Makes `mt` the tuples' metatable of `lua`.
pub fn install(lua: &Lua, mt: Table) -> mlua::Result<()> {
    STATE.with(|s| *s.borrow_mut() = Some(lua.weak()));
    // SAFETY: `exec_raw` gives a stack holding `mt` with room for the key.
    unsafe {
        lua.exec_raw::<()>(mt, |l| {
            let address = ffi::lua_topointer(l, -1);
            let reference = ffi::luaL_ref(l, ffi::LUA_REGISTRYINDEX);
            MT.with(|m| m.set((reference, address)));
        })
    }
}

/// Whether slot `idx` of `l` holds a tuple block.
///
/// # Safety
/// `l` is a Lua thread of the TX thread's state that is not running; `idx` a valid slot.
unsafe fn is_block(l: *mut ffi::lua_State, idx: c_int) -> bool {
    // SAFETY: reads of slot `idx` and of the registry; what is pushed is popped.
    unsafe {
        if ffi::lua_type(l, idx) != ffi::LUA_TUSERDATA
            || ffi::lua_objlen(l, idx) != std::mem::size_of::<Block>()
            || ffi::lua_checkstack(l, 1) == 0
            || ffi::lua_getmetatable(l, idx) == 0
        {
            return false;
        }
        let address = ffi::lua_topointer(l, -1);
        ffi::lua_settop(l, -2);
        address == MT.with(|m| m.get().1)
    }
}

/// The tuple (and its space) a userdata holds, if it is a tuple.
pub fn of(ud: &AnyUserData) -> Option<(Tuple, Option<u32>)> {
    let lua = STATE.with(|s| s.borrow().as_ref().and_then(WeakLua::try_upgrade))?;
    // SAFETY: the closure reads the userdata `exec_raw` pushed; a block it holds stays
    // alive while `ud` refers to it, and blocks are only used on this thread.
    let found: Option<(Option<Tuple>, Option<u32>)> = unsafe {
        let mut found = None;
        lua.exec_raw::<()>(ud, |l| {
            if is_block(l, -1) {
                let block = &*ffi::lua_touserdata(l, -1).cast::<Block>();
                found = Some((block.tuple.clone(), block.space));
            }
        })
        .ok()?;
        found
    };
    let (tuple, space) = found?;
    Some((tuple?, space))
}

pub fn is_tuple(v: &Value) -> bool {
    matches!(v, Value::UserData(ud) if of(ud).is_some())
}

/// Pushes a tuple userdata onto `l`.
///
/// # Safety
/// `l` is a Lua thread of the TX thread's state with two free stack slots.
pub unsafe fn push_raw(l: *mut ffi::lua_State, tuple: Tuple, space: Option<u32>) {
    // SAFETY: a new userdata big enough for a `Block`, which LuaJIT aligns for 8-byte
    // fields; it is written before anything can see it.
    unsafe {
        let p = ffi::lua_newuserdata(l, std::mem::size_of::<Block>()).cast::<Block>();
        p.write(Block {
            tuple: Some(tuple),
            space,
        });
        ffi::lua_rawgeti(l, ffi::LUA_REGISTRYINDEX, MT.with(|m| m.get().0).into());
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
    // SAFETY: reads of slot `idx`; the block is alive while the slot holds it.
    unsafe {
        if !is_block(l, idx) {
            return None;
        }
        let block = &*ffi::lua_touserdata(l, idx).cast::<Block>();
        Some(f(block.tuple.as_ref()?.data()))
    }
}

/// `__gc`: drops the block's tuple reference.
pub unsafe extern "C-unwind" fn gc(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: LuaJIT calls the finalizer with the userdata as its only argument; only tuple
    // userdata carry this metatable (`push_raw`), and a finalized block has `tuple` None.
    unsafe {
        if is_block(l, 1) {
            let block = &mut *ffi::lua_touserdata(l, 1).cast::<Block>();
            block.tuple = None;
        }
    }
    0
}
