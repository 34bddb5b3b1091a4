//! The common statement as one raw C function: `box.internal.dml_fast(op, space, a, b, c)`
//! reads its arguments off the Lua stack, encodes plain tables (no metatable; numbers,
//! strings, booleans and plain tables inside) straight to MessagePack, applies the statement
//! and, outside `box.begin`, parks its fiber until the WAL answers. That is one crossing from
//! Lua instead of an mlua callback (arguments as registry references, a table walk through
//! them) followed by the commit wait.
//!
//! Tuples are copied as they are. Anything else (cdata, `box.NULL`, tables with a
//! metatable, very deep nesting)
//! makes it answer `nil`, and box.lua takes the general path (`api::dml`, same rules through
//! `convert`). Results: `true, tuple` (nil for UPSERT), or `false, code, message, type`
//! and an access error's object type, object name and access type.

use std::os::raw::c_int;
use std::panic::AssertUnwindSafe;

use mlua::{ffi, Lua};
use spindle_box::{Dml, Txn};
use spindle_memtx::tuple::Tuple;
use spindle_proto::mp;
use spindle_tx::commit::wait_commit;
use spindle_types::BoxError;

use crate::context::fiber_user;
use crate::convert::write_number;

/// Deepest nesting this path encodes; deeper values take the general path (which also knows
/// the error for too deep ones).
const FAST_DEPTH_MAX: usize = 16;
/// Lua stack slots a walk of `FAST_DEPTH_MAX` nested tables needs (key, value, table).
pub(crate) const STACK_NEEDED: c_int = 3 * FAST_DEPTH_MAX as c_int + 8;
/// Bytes reserved for a statement's tuple or key: most fit without growing.
const ARG_CAPACITY: usize = 128;
/// Sparse arrays, as `convert` decides them.
const SPARSE_SAFE: usize = 10;
const SPARSE_RATIO: usize = 2;

/// Registers `dml_fast`.
pub fn install(lua: &Lua, internal: &mlua::Table) -> mlua::Result<()> {
    // SAFETY: `dml_fast` follows the lua_CFunction contract (see there).
    let raw = unsafe { lua.create_c_function(dml_fast)? };
    internal.set("dml_fast", raw)
}

/// What the statement came to.
enum Outcome {
    /// The arguments need the general path.
    Fallback,
    Done(Option<(Tuple, u32)>),
    Failed(BoxError),
}

/// `dml_fast(op, space, a, b, c)`.
unsafe extern "C-unwind" fn dml_fast(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: every call below works on the running C function's own stack. A memory error
    // can only come from the pushes at the end (the result tuple's userdata, an error's
    // strings): Lua code ran out of its memory limit, and the error unwinds to its `pcall`.
    unsafe {
        if ffi::lua_checkstack(l, STACK_NEEDED) == 0 || on_main_state(l) {
            return fallback(l);
        }
        let outcome = run_statement(l);
        match outcome {
            Outcome::Fallback => fallback(l),
            Outcome::Done(None) => {
                ffi::lua_pushboolean(l, 1);
                ffi::lua_pushnil(l);
                2
            }
            Outcome::Done(Some((tuple, space))) => {
                ffi::lua_pushboolean(l, 1);
                crate::tuple_block::push_raw(l, tuple, Some(space));
                2
            }
            Outcome::Failed(e) => {
                ffi::lua_pushboolean(l, 0);
                ffi::lua_pushnumber(l, f64::from(e.code));
                push_str(l, &e.message);
                push_str(l, e.kind.as_str());
                match &e.access {
                    Some(a) => {
                        push_str(l, &a.object_type);
                        push_str(l, &a.object_name);
                        push_str(l, &a.access_type);
                    }
                    None => {
                        for _ in 0..3 {
                            ffi::lua_pushnil(l);
                        }
                    }
                }
                drop(e);
                7
            }
        }
    }
}

unsafe fn fallback(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: one push onto the running C function's stack (LUA_MINSTACK free slots).
    unsafe { ffi::lua_pushnil(l) };
    1
}

unsafe fn push_str(l: *mut ffi::lua_State, s: &str) {
    // SAFETY: see `dml_fast`; the bytes are copied into Lua.
    unsafe {
        ffi::lua_pushlstring(l, s.as_ptr().cast(), s.len());
    }
}

/// Only Rust calls Lua on the main state; a park there would tangle every fiber's calls.
unsafe fn on_main_state(l: *mut ffi::lua_State) -> bool {
    // SAFETY: pushes one value and pops it again.
    unsafe {
        let main = ffi::lua_pushthread(l) == 1;
        ffi::lua_pop(l, 1);
        main
    }
}

/// Reads and runs the statement; parks for its commit.
unsafe fn run_statement(l: *mut ffi::lua_State) -> Outcome {
    // SAFETY: reads of the arguments (1 to 5) of the running C function.
    let (op, space_id, index_id) = unsafe {
        if ffi::lua_type(l, 1) != ffi::LUA_TNUMBER || ffi::lua_type(l, 2) != ffi::LUA_TNUMBER {
            return Outcome::Fallback;
        }
        let index_id = match ffi::lua_type(l, 5) {
            ffi::LUA_TNUMBER => ffi::lua_tonumber(l, 5) as u32,
            _ => 0,
        };
        (
            ffi::lua_tointeger(l, 1),
            ffi::lua_tonumber(l, 2) as u32,
            index_id,
        )
    };
    let is_key = matches!(op, 3 | 4);
    let (mut first, mut second) = (Vec::with_capacity(ARG_CAPACITY), Vec::new());
    // SAFETY: arguments 3 and 4 of the running C function; the walk stays within the slots
    // `dml_fast` checked.
    let encoded = unsafe { arg(l, 3, is_key, &mut first) && arg(l, 4, false, &mut second) };
    if !encoded {
        return Outcome::Fallback;
    }
    let Some(statement) = dml_of(op, space_id, index_id, &first, &second) else {
        return Outcome::Fallback;
    };
    let is_upsert = op == 5;
    let run = std::panic::catch_unwind(AssertUnwindSafe(|| apply(statement)));
    match run {
        Ok(Ok(tuple)) => Outcome::Done(tuple.filter(|_| !is_upsert).map(|t| (t, space_id))),
        Ok(Err(e)) => Outcome::Failed(e),
        Err(_) => Outcome::Failed(BoxError::proc_lua("the statement failed")),
    }
}

/// The statement `op` (1 insert, 2 replace, 3 delete, 4 update, 5 upsert, as box.lua numbers
/// them) on the arguments encoded already.
pub(crate) fn dml_of<'a>(
    op: i64,
    space_id: u32,
    index_id: u32,
    first: &'a [u8],
    second: &'a [u8],
) -> Option<Dml<'a>> {
    Some(match op {
        1 => Dml::Insert {
            space_id,
            tuple: first,
        },
        2 => Dml::Replace {
            space_id,
            tuple: first,
        },
        3 => Dml::Delete {
            space_id,
            index_id,
            key: first,
        },
        4 => Dml::Update {
            space_id,
            index_id,
            key: first,
            ops: second,
            index_base: 1,
        },
        5 => Dml::Upsert {
            space_id,
            tuple: first,
            ops: second,
            index_base: 1,
        },
        _ => return None,
    })
}

/// Applies `statement` in the fiber's transaction, or as a transaction of its own queued for
/// the WAL: its tuple and, for the latter, the sequence number to wait for (`wait_commit`).
pub(crate) fn apply_queued(
    tx: spindle_tx::TxRef,
    user: u32,
    statement: Dml<'_>,
) -> Result<(Option<Tuple>, Option<u64>), BoxError> {
    if let Some(mut active) = crate::txn::take_active() {
        if let Some(mvcc) = active.mvcc.as_mut() {
            let packet = crate::txn_mvcc::dml_packet(&statement);
            let result = tx.with(|t| crate::txn_mvcc::statement(t, mvcc, user, &packet));
            crate::txn::give_back(active);
            let tuple = result.map(|reply| crate::txn_mvcc::tuples(reply).into_iter().next());
            return tuple.map(|tuple| (tuple, None));
        }
        let result = tx.with(|t| {
            let result = t.db.dml_as(user, &mut active.txn, statement);
            t.note_schema_change();
            result
        });
        crate::txn::give_back(active);
        return result.map(|tuple| (tuple, None));
    }
    tx.with(|t| {
        let mut txn = Txn::new();
        let result = t.db.dml_as(user, &mut txn, statement);
        t.note_schema_change();
        let result = result?;
        let seq = t.commit_for_fiber(txn, true);
        if !t.in_turn {
            t.flush_journal();
        }
        Ok((result, seq))
    })
}

/// Applies `statement` and waits for its commit, if it is one of its own.
fn apply(statement: Dml<'_>) -> Result<Option<Tuple>, BoxError> {
    let Some(tx) = crate::state::tx_if_booted() else {
        return Err(BoxError::new(
            spindle_types::error::code::ER_UNKNOWN,
            "Please call box.cfg{} first",
        ));
    };
    let (result, seq) = apply_queued(tx, fiber_user(), statement)?;
    if let Some(seq) = seq {
        crate::fiber::commit_park_point();
        wait_commit(tx, seq)?;
    }
    Ok(result)
}

/// Argument `idx` as MessagePack: nil is nothing, a plain table or a tuple itself, a scalar
/// key `[key]`.
/// False if it needs the general path.
unsafe fn arg(l: *mut ffi::lua_State, idx: c_int, is_key: bool, out: &mut Vec<u8>) -> bool {
    // SAFETY: reads argument `idx`; see `encode`.
    unsafe {
        match ffi::lua_type(l, idx) {
            ffi::LUA_TNIL | ffi::LUA_TNONE => true,
            ffi::LUA_TTABLE | ffi::LUA_TUSERDATA => encode(l, idx, out, 0),
            ffi::LUA_TNUMBER | ffi::LUA_TSTRING if is_key => {
                mp::write_array_len(out, 1);
                encode(l, idx, out, 0)
            }
            _ => false,
        }
    }
}

/// Appends the value at stack slot `idx` (a positive index); false for what this path leaves
/// to `convert`. Leaves the stack as it found it.
pub(crate) unsafe fn encode(
    l: *mut ffi::lua_State,
    idx: c_int,
    out: &mut Vec<u8>,
    depth: usize,
) -> bool {
    // SAFETY: reads of slot `idx` of the running C function's stack; strings are read
    // without conversion (only for LUA_TSTRING).
    unsafe {
        match ffi::lua_type(l, idx) {
            ffi::LUA_TNIL => mp::write_nil(out),
            ffi::LUA_TBOOLEAN => mp::write_bool(out, ffi::lua_toboolean(l, idx) != 0),
            ffi::LUA_TNUMBER => write_number(out, ffi::lua_tonumber(l, idx)),
            ffi::LUA_TSTRING => {
                let mut len = 0usize;
                let p = ffi::lua_tolstring(l, idx, &mut len);
                if p.is_null() {
                    return false;
                }
                mp::write_str_bytes(out, std::slice::from_raw_parts(p.cast::<u8>(), len));
            }
            ffi::LUA_TTABLE => return encode_table(l, idx, out, depth),
            ffi::LUA_TUSERDATA => {
                return crate::tuple_block::with_raw(l, idx, |data| out.extend_from_slice(data))
                    .is_some()
            }
            _ => return false,
        }
        true
    }
}

unsafe fn encode_table(
    l: *mut ffi::lua_State,
    idx: c_int,
    out: &mut Vec<u8>,
    depth: usize,
) -> bool {
    if depth >= FAST_DEPTH_MAX {
        return false;
    }
    // SAFETY: the walk pushes at most 2 slots per level (`STACK_NEEDED` covers every level)
    // and pops them again; `lua_next` is given keys it returned itself.
    unsafe {
        if ffi::lua_getmetatable(l, idx) != 0 {
            ffi::lua_pop(l, 1);
            return false;
        }
        if let Some(ok) = encode_sequence(l, idx, out, depth) {
            return ok;
        }
        match array_len(l, idx) {
            Some(n) => {
                mp::write_array_len(out, n as u32);
                for i in 1..=n {
                    ffi::lua_rawgeti(l, idx, i as ffi::lua_Integer);
                    let top = ffi::lua_gettop(l);
                    let ok = encode(l, top, out, depth + 1);
                    ffi::lua_pop(l, 1);
                    if !ok {
                        return false;
                    }
                }
            }
            None => {
                let mut count = 0u32;
                ffi::lua_pushnil(l);
                while ffi::lua_next(l, idx) != 0 {
                    count += 1;
                    ffi::lua_pop(l, 1);
                }
                mp::write_map_len(out, count);
                ffi::lua_pushnil(l);
                while ffi::lua_next(l, idx) != 0 {
                    let top = ffi::lua_gettop(l);
                    // A number key must not be turned into a string: `lua_next` needs it.
                    let ok = encode(l, top - 1, out, depth + 1) && encode(l, top, out, depth + 1);
                    ffi::lua_pop(l, 1);
                    if !ok {
                        ffi::lua_pop(l, 1);
                        return false;
                    }
                }
            }
        }
        true
    }
}

/// A table whose walk gives the keys 1, 2, ..., n in that order — what a constructor or
/// appends make, nearly every table a procedure encodes — is an array, encoded in that one
/// walk. None when the walk shows another key: nothing is written, the stack is as it was.
///
/// # Safety
/// As `encode_table`: `idx` is an absolute slot holding a table without a metatable.
unsafe fn encode_sequence(
    l: *mut ffi::lua_State,
    idx: c_int,
    out: &mut Vec<u8>,
    depth: usize,
) -> Option<bool> {
    const HEAD_MAX: usize = 5;
    let start = out.len();
    out.extend_from_slice(&[0; HEAD_MAX]);
    let mut n: u32 = 0;
    // SAFETY: a `lua_next` walk (key and value pushed, popped again); keys are only read as
    // numbers, never converted.
    unsafe {
        ffi::lua_pushnil(l);
        while ffi::lua_next(l, idx) != 0 {
            let next = n.checked_add(1)?;
            if ffi::lua_type(l, -2) != ffi::LUA_TNUMBER
                || ffi::lua_tonumber(l, -2) != f64::from(next)
            {
                ffi::lua_pop(l, 2);
                out.truncate(start);
                return None;
            }
            n = next;
            let ok = encode(l, ffi::lua_gettop(l), out, depth + 1);
            ffi::lua_pop(l, 1);
            if !ok {
                ffi::lua_pop(l, 1);
                return Some(false);
            }
        }
    }
    let mut head = [0u8; HEAD_MAX];
    let head_len = match n {
        0..=15 => {
            head[0] = 0x90 | n as u8;
            1
        }
        16..=0xffff => {
            head[0] = 0xdc;
            head[1..3].copy_from_slice(&(n as u16).to_be_bytes());
            3
        }
        _ => {
            head[0] = 0xdd;
            head[1..5].copy_from_slice(&n.to_be_bytes());
            5
        }
    };
    out.copy_within(start + HEAD_MAX.., start + head_len);
    out.truncate(out.len() - (HEAD_MAX - head_len));
    out[start..start + head_len].copy_from_slice(&head[..head_len]);
    Some(true)
}

/// The array length of a plain table that encodes as an array (`convert::array_len`'s rule),
/// or None for a map.
unsafe fn array_len(l: *mut ffi::lua_State, idx: c_int) -> Option<usize> {
    let (mut count, mut max) = (0usize, 0usize);
    let mut is_array = true;
    // SAFETY: a `lua_next` walk of the table at `idx`; keys are only read as numbers.
    unsafe {
        ffi::lua_pushnil(l);
        while ffi::lua_next(l, idx) != 0 {
            ffi::lua_pop(l, 1);
            let n = if ffi::lua_type(l, -1) == ffi::LUA_TNUMBER {
                ffi::lua_tonumber(l, -1)
            } else {
                0.0
            };
            if n >= 1.0 && n.fract() == 0.0 && n < 4_294_967_296.0 {
                count += 1;
                max = max.max(n as usize);
            } else {
                ffi::lua_pop(l, 1);
                is_array = false;
                break;
            }
        }
    }
    (is_array && (max <= SPARSE_SAFE || max <= SPARSE_RATIO * count)).then_some(max)
}
