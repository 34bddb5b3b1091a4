//! `box.begin/commit/rollback` and savepoints: a transaction belongs to the Lua thread (the
//! fiber) that began it. As in Tarantool 2.6's memtx, a transaction must not yield: the first
//! park of its fiber rolls back what it did so far and flags it, later statements still join
//! it, and its commit fails with ER_TRANSACTION_YIELD. A request that returns with a
//! transaction open gets ER_FUNCTION_TX_ACTIVE, the transaction rolled back — except in an
//! IPROTO stream, where the transaction belongs to the stream (`finish_in_stream`).

use std::collections::BTreeMap;

use mlua::{Lua, Table, Value};
use spindle_box::txn::TxnMark;
use spindle_box::Txn;
use spindle_fiber::TxCell;
use spindle_tx::stream_txn::ProcEnd;
use spindle_types::error::code;
use spindle_types::BoxError;

use crate::context::lua_error;

pub struct Active {
    pub txn: Txn,
    /// The fiber yielded inside the transaction: its changes so far are rolled back.
    pub aborted: bool,
    savepoints: Vec<TxnMark>,
}

/// Open transactions by fiber id (a transaction belongs to its fiber, as in Tarantool).
static TXNS: TxCell<BTreeMap<u64, Active>> = TxCell::new(BTreeMap::new());

pub fn install(lua: &Lua, internal: &Table) -> mlua::Result<()> {
    crate::fiber::set_yield_hook(on_yield);
    internal.set("txn_begin", lua.create_function(begin)?)?;
    internal.set("txn_active", lua.create_function(is_active)?)?;
    internal.set("txn_commit", lua.create_function(commit)?)?;
    internal.set("txn_rollback", lua.create_function(rollback)?)?;
    internal.set("txn_savepoint", lua.create_function(savepoint)?)?;
    internal.set("txn_rollback_to", lua.create_function(rollback_to)?)?;
    Ok(())
}

fn key() -> u64 {
    crate::fiber::current_fiber_id()
}

fn begin(_: &Lua, (): ()) -> mlua::Result<()> {
    let k = key();
    let begun = TXNS.with(|txns| {
        if txns.contains_key(&k) {
            return false;
        }
        txns.insert(
            k,
            Active {
                txn: Txn::new(),
                aborted: false,
                savepoints: Vec::new(),
            },
        );
        true
    });
    if !begun {
        return Err(lua_error(BoxError::new(
            code::ER_ACTIVE_TRANSACTION,
            "Operation is not permitted when there is an active transaction ",
        )));
    }
    Ok(())
}

fn is_active(_: &Lua, (): ()) -> mlua::Result<bool> {
    let k = key();
    Ok(TXNS.with(|txns| txns.contains_key(&k)))
}

fn take(k: u64) -> Option<Active> {
    TXNS.with(|txns| txns.remove(&k))
}

/// No fiber has a transaction open: the common case, known without the fiber's id.
fn none_open() -> bool {
    TXNS.with(|txns| txns.is_empty())
}

/// Queues the transaction for the WAL: the sequence number to wait for, or nil.
fn commit(_: &Lua, (): ()) -> mlua::Result<Value> {
    let Some(active) = take(key()) else {
        return Ok(Value::Nil);
    };
    let tx = crate::state::tx()?;
    if active.aborted {
        tx.with(|t| t.db.rollback_txn(active.txn));
        return Err(lua_error(yield_error()));
    }
    let seq = tx.with(|t| {
        let seq = t.commit_for_fiber(active.txn, true);
        if !t.in_turn {
            t.flush_journal();
        }
        seq
    });
    Ok(seq.map_or(Value::Nil, |s| Value::Number(s as f64)))
}

fn rollback(_: &Lua, (): ()) -> mlua::Result<()> {
    if let Some(active) = take(key()) {
        crate::state::tx()?.with(|t| t.db.rollback_txn(active.txn));
    }
    Ok(())
}

fn savepoint(_: &Lua, (): ()) -> mlua::Result<usize> {
    let k = key();
    let id = TXNS.with(|txns| {
        let active = txns.get_mut(&k)?;
        active.savepoints.push(active.txn.mark());
        Some(active.savepoints.len())
    });
    id.ok_or_else(|| {
        lua_error(BoxError::new(
            code::ER_NO_TRANSACTION,
            "No active transaction",
        ))
    })
}

fn rollback_to(_: &Lua, id: usize) -> mlua::Result<()> {
    let k = key();
    let undone = TXNS.with(|txns| {
        let active = txns.get_mut(&k)?;
        let mark = *active.savepoints.get(id.checked_sub(1)?)?;
        active.savepoints.truncate(id);
        Some(active.txn.split_off(mark))
    });
    let Some(undone) = undone else {
        return Err(lua_error(BoxError::new(
            code::ER_NO_SUCH_SAVEPOINT,
            "Can not rollback to savepoint: the savepoint does not exist",
        )));
    };
    crate::state::tx()?.with(|t| t.db.rollback_txn(undone));
    Ok(())
}

fn yield_error() -> BoxError {
    BoxError::new(
        code::ER_TRANSACTION_YIELD,
        "Transaction has been aborted by a fiber yield",
    )
}

/// Takes the calling fiber's open transaction, if any, for a statement to join; `give_back`
/// returns it. (Taken out, not borrowed: the statement borrows the TX state meanwhile.)
pub fn take_active() -> Option<Active> {
    if none_open() {
        return None;
    }
    take(key())
}

pub fn give_back(active: Active) {
    let k = key();
    TXNS.with(|txns| txns.insert(k, active));
}

/// Fiber `fiber` is about to yield: its open transaction, if any, is rolled back and
/// flagged, as 2.6's memtx does at a yield.
pub fn on_yield(fiber: u64) {
    let undone = TXNS.with(|txns| {
        let active = txns.get_mut(&fiber)?;
        active.aborted = true;
        Some(std::mem::take(&mut active.txn))
    });
    if let (Some(undone), Ok(tx)) = (undone, crate::state::tx()) {
        tx.with(|t| t.db.rollback_txn(undone));
    }
}

/// A request of a stream starts inside the stream's open transaction (`ProcCtx::in_txn`): the
/// fiber gets an empty one, as if it had called `box.begin()`.
pub fn begin_in_stream() {
    let k = key();
    TXNS.with(|txns| {
        txns.entry(k).or_insert_with(|| Active {
            txn: Txn::new(),
            aborted: false,
            savepoints: Vec::new(),
        });
    });
}

/// A request of a stream returned: what became of its transaction, for the stream. One that
/// holds changes (or yielded) is rolled back and aborted, since the end of the request is a
/// yield and the MVCC engine is off; an empty one stays open.
pub fn finish_in_stream() -> ProcEnd {
    if none_open() {
        return ProcEnd::Closed;
    }
    let Some(active) = take(key()) else {
        return ProcEnd::Closed;
    };
    if !active.aborted && active.txn.is_empty() {
        return ProcEnd::Open;
    }
    if let Ok(tx) = crate::state::tx() {
        tx.with(|t| t.db.rollback_txn(active.txn));
    }
    ProcEnd::Aborted
}

/// The request running in the calling fiber returned: an open transaction is rolled back
/// and the request fails with ER_FUNCTION_TX_ACTIVE.
pub fn finish() -> Result<(), BoxError> {
    if none_open() {
        return Ok(());
    }
    let Some(active) = take(key()) else {
        return Ok(());
    };
    if let Ok(tx) = crate::state::tx() {
        tx.with(|t| t.db.rollback_txn(active.txn));
    }
    Err(BoxError::new(
        code::ER_FUNCTION_TX_ACTIVE,
        "Transaction is active at return from function",
    ))
}
