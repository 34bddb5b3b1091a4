//! `box.begin/commit/rollback` and savepoints: a transaction belongs to the Lua thread (the
//! fiber) that began it. As in Tarantool 2.6's memtx, a transaction must not yield: the first
//! park of its fiber rolls back what it did so far and flags it, later statements still join
//! it, and its commit fails with ER_TRANSACTION_YIELD. A request that returns with a
//! transaction open gets ER_FUNCTION_TX_ACTIVE, the transaction rolled back.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use mlua::{Lua, Table, Value};
use spindle_box::txn::TxnMark;
use spindle_box::Txn;
use spindle_types::error::code;
use spindle_types::BoxError;

use crate::context::lua_error;

pub struct Active {
    pub txn: Txn,
    /// The fiber yielded inside the transaction: its changes so far are rolled back.
    pub aborted: bool,
    savepoints: Vec<TxnMark>,
}

/// Open transactions by Lua thread address. TX-thread only, like the whole Lua state.
pub type Txns = Rc<RefCell<HashMap<usize, Active>>>;

pub fn install(lua: &Lua, internal: &Table) -> mlua::Result<()> {
    lua.set_app_data(Txns::default());
    internal.set("txn_begin", lua.create_function(begin)?)?;
    internal.set("txn_active", lua.create_function(is_active)?)?;
    internal.set("txn_commit", lua.create_function(commit)?)?;
    internal.set("txn_rollback", lua.create_function(rollback)?)?;
    internal.set("txn_savepoint", lua.create_function(savepoint)?)?;
    internal.set("txn_rollback_to", lua.create_function(rollback_to)?)?;
    Ok(())
}

fn txns(lua: &Lua) -> Txns {
    lua.app_data_ref::<Txns>()
        .map(|t| t.clone())
        .unwrap_or_default()
}

fn key(lua: &Lua) -> usize {
    lua.current_thread().to_pointer() as usize
}

fn begin(lua: &Lua, (): ()) -> mlua::Result<()> {
    let txns = txns(lua);
    let mut txns = txns.borrow_mut();
    let k = key(lua);
    if txns.contains_key(&k) {
        return Err(lua_error(BoxError::new(
            code::ER_ACTIVE_TRANSACTION,
            "Operation is not permitted when there is an active transaction ",
        )));
    }
    txns.insert(
        k,
        Active {
            txn: Txn::new(),
            aborted: false,
            savepoints: Vec::new(),
        },
    );
    Ok(())
}

fn is_active(lua: &Lua, (): ()) -> mlua::Result<bool> {
    Ok(txns(lua).borrow().contains_key(&key(lua)))
}

/// Queues the transaction for the WAL: the sequence number to wait for, or nil.
fn commit(lua: &Lua, (): ()) -> mlua::Result<Value> {
    let Some(active) = txns(lua).borrow_mut().remove(&key(lua)) else {
        return Ok(Value::Nil);
    };
    let tx = crate::api::tx()?;
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

fn rollback(lua: &Lua, (): ()) -> mlua::Result<()> {
    if let Some(active) = txns(lua).borrow_mut().remove(&key(lua)) {
        crate::api::tx()?.with(|t| t.db.rollback_txn(active.txn));
    }
    Ok(())
}

fn savepoint(lua: &Lua, (): ()) -> mlua::Result<usize> {
    let txns = txns(lua);
    let mut txns = txns.borrow_mut();
    let Some(active) = txns.get_mut(&key(lua)) else {
        return Err(lua_error(BoxError::new(
            code::ER_NO_TRANSACTION,
            "No active transaction",
        )));
    };
    active.savepoints.push(active.txn.mark());
    Ok(active.savepoints.len())
}

fn rollback_to(lua: &Lua, id: usize) -> mlua::Result<()> {
    let txns = txns(lua);
    let mut txns = txns.borrow_mut();
    let active = txns
        .get_mut(&key(lua))
        .filter(|a| (1..=a.savepoints.len()).contains(&id));
    let Some(active) = active else {
        return Err(lua_error(BoxError::new(
            code::ER_NO_SUCH_SAVEPOINT,
            "Can not rollback to savepoint: the savepoint does not exist",
        )));
    };
    let mark = active.savepoints[id - 1];
    active.savepoints.truncate(id);
    let undone = active.txn.split_off(mark);
    crate::api::tx()?.with(|t| t.db.rollback_txn(undone));
    Ok(())
}

fn yield_error() -> BoxError {
    BoxError::new(
        code::ER_TRANSACTION_YIELD,
        "Transaction has been aborted by a fiber yield",
    )
}

/// Runs `f` on the thread's open transaction, if any (a statement joins it).
pub fn with_active<R>(lua: &Lua, f: impl FnOnce(&mut Active) -> R) -> Option<R> {
    let txns = txns(lua);
    let mut txns = txns.borrow_mut();
    txns.get_mut(&key(lua)).map(f)
}

/// The fiber of Lua thread `thread` is about to park: its open transaction, if any, is
/// rolled back and flagged, as 2.6's memtx does at a yield.
pub fn on_yield(lua: &Lua, thread: usize) {
    let txns = txns(lua);
    let mut txns = txns.borrow_mut();
    let Some(active) = txns.get_mut(&thread) else {
        return;
    };
    active.aborted = true;
    let undone = std::mem::take(&mut active.txn);
    if let Ok(tx) = crate::api::tx() {
        tx.with(|t| t.db.rollback_txn(undone));
    }
}

/// The request running in `thread` returned: an open transaction is rolled back and the
/// request fails with ER_FUNCTION_TX_ACTIVE.
pub fn finish(lua: &Lua, thread: usize) -> Result<(), BoxError> {
    let Some(active) = txns(lua).borrow_mut().remove(&thread) else {
        return Ok(());
    };
    if let Ok(tx) = crate::api::tx() {
        tx.with(|t| t.db.rollback_txn(active.txn));
    }
    Err(BoxError::new(
        code::ER_FUNCTION_TX_ACTIVE,
        "Transaction is active at return from function",
    ))
}
