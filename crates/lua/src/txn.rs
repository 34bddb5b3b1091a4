//! `box.begin/commit/rollback` and savepoints: a transaction belongs to the Lua thread (the
//! fiber) that began it. With the MVCC engine off, as in Tarantool 2.6's memtx, a transaction
//! must not yield: the first park of its fiber rolls back what it did so far and flags it,
//! later statements still join it, and its commit fails with ER_TRANSACTION_YIELD. With it on
//! (`txn_cfg::mvcc`), the transaction is an MVCC one (`txn_mvcc`) that yields freely, as in
//! 2.11. A request that returns with a transaction open gets ER_FUNCTION_TX_ACTIVE, the
//! transaction rolled back — except in an IPROTO stream, where the transaction belongs to the
//! stream (`finish_in_stream`). A fiber that ends with one open has it rolled back (`on_end`).

use std::collections::BTreeMap;

use mlua::{Lua, Table, Value};
use spindle_box::txn::TxnMark;
use spindle_box::Txn;
use spindle_fiber::TxCell;
use spindle_proto::route::Route;
use spindle_tx::stream_txn::ProcEnd;
use spindle_types::error::code;
use spindle_types::{txn_cfg, BoxError};

use crate::context::{fiber_user, lua_error};
use crate::txn_mvcc::{self, Mvcc};

pub struct Active {
    /// The memtx transaction (MVCC off); empty while `mvcc` is set.
    pub txn: Txn,
    /// The fiber yielded inside the transaction: its changes so far are rolled back.
    pub aborted: bool,
    savepoints: Vec<Savepoint>,
    /// The MVCC transaction, with the engine on.
    pub mvcc: Option<Mvcc>,
}

#[derive(Clone, Copy)]
enum Savepoint {
    Memtx(TxnMark),
    Mvcc(usize),
}

impl Active {
    fn memtx() -> Active {
        Active {
            txn: Txn::new(),
            aborted: false,
            savepoints: Vec::new(),
            mvcc: None,
        }
    }

    fn mvcc(mvcc: Mvcc) -> Active {
        Active {
            mvcc: Some(mvcc),
            ..Active::memtx()
        }
    }
}

/// Open transactions by fiber id (a transaction belongs to its fiber, as in Tarantool).
static TXNS: TxCell<BTreeMap<u64, Active>> = TxCell::new(BTreeMap::new());

/// The stream whose CALL or EVAL a fiber runs, while it runs it, by fiber id (MVCC on only:
/// a `box.begin()` there begins the stream's transaction).
static STREAMS: TxCell<BTreeMap<u64, (Route, u64)>> = TxCell::new(BTreeMap::new());

pub fn install(lua: &Lua, internal: &Table) -> mlua::Result<()> {
    crate::fiber::set_yield_hook(on_yield);
    crate::fiber::set_end_hook(on_end);
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

/// `internal.txn_begin(isolation, memtx, timeout)`: box.begin's `txn_isolation` (a name or a
/// number, nil for the default) and `timeout` options, which only the MVCC engine reads (a
/// memtx transaction cannot outlive a yield); `memtx` asks for a plain memtx transaction
/// whatever the engine (a triggered statement's own, which never yields).
fn begin(
    _: &Lua,
    (isolation, memtx, timeout): (Value, Option<bool>, Option<f64>),
) -> mlua::Result<()> {
    let k = key();
    if TXNS.with(|txns| txns.contains_key(&k)) {
        return Err(lua_error(BoxError::new(
            code::ER_ACTIVE_TRANSACTION,
            "Operation is not permitted when there is an active transaction ",
        )));
    }
    if timeout.is_some_and(|t| t.is_nan() || t <= 0.0) {
        return Err(lua_error(BoxError::illegal_params(
            "timeout must be a number greater than 0",
        )));
    }
    let active = if txn_cfg::mvcc() && memtx != Some(true) {
        let isolation = isolation_level(&isolation)?;
        let stream = STREAMS.with(|s| s.get(&k).copied());
        let tx = crate::state::tx()?;
        let mvcc = tx.with(|t| txn_mvcc::begin(t, isolation, timeout, stream));
        Active::mvcc(mvcc.map_err(lua_error)?)
    } else {
        Active::memtx()
    };
    TXNS.with(|txns| txns.insert(k, active));
    Ok(())
}

/// box.begin's `txn_isolation`: 'default' (or 0, or nil) is the configured level.
fn isolation_level(v: &Value) -> mlua::Result<u8> {
    let parsed = match v {
        Value::Nil => return Ok(txn_cfg::default_isolation()),
        Value::String(s) if s.to_string_lossy() == "default" => {
            return Ok(txn_cfg::default_isolation())
        }
        Value::Integer(0) => return Ok(txn_cfg::default_isolation()),
        Value::Number(n) if *n == 0.0 => return Ok(txn_cfg::default_isolation()),
        Value::String(s) => txn_cfg::parse_isolation(Some(&s.to_string_lossy()), None),
        Value::Integer(i) => txn_cfg::parse_isolation(None, Some(*i as f64)),
        Value::Number(n) => txn_cfg::parse_isolation(None, Some(*n)),
        _ => Err(String::new()),
    };
    parsed.map_err(|_| {
        lua_error(BoxError::illegal_params(
            "txn_isolation must be one of box.txn_isolation_level (linearizable is not implemented)",
        ))
    })
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
    if let Some(mvcc) = active.mvcc {
        let seq = tx.with(|t| txn_mvcc::commit(t, mvcc, fiber_user()));
        return Ok(seq
            .map_err(lua_error)?
            .map_or(Value::Nil, |s| Value::Number(s as f64)));
    }
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
        discard(active);
    }
    Ok(())
}

/// Rolls back a transaction that will not commit.
fn discard(active: Active) {
    let Ok(tx) = crate::state::tx() else {
        return;
    };
    match active.mvcc {
        Some(mvcc) => tx.with(|t| txn_mvcc::rollback(t, mvcc)),
        None => tx.with(|t| t.db.rollback_txn(active.txn)),
    }
}

fn savepoint(_: &Lua, (): ()) -> mlua::Result<usize> {
    let no_transaction = || {
        lua_error(BoxError::new(
            code::ER_NO_TRANSACTION,
            "No active transaction",
        ))
    };
    let mut active = take(key()).ok_or_else(no_transaction)?;
    let mark = match active.mvcc.as_mut() {
        None => Some(Savepoint::Memtx(active.txn.mark())),
        Some(mvcc) => {
            let tx = crate::state::tx()?;
            tx.with(|t| txn_mvcc::open_txn(t, mvcc).map(|txn| Savepoint::Mvcc(txn.mark())))
        }
    };
    if let Some(mark) = mark {
        active.savepoints.push(mark);
    }
    let id = active.savepoints.len();
    give_back(active);
    // An MVCC transaction its stream has let go of (conflict, timeout) has nothing to mark.
    mark.map(|_| id).ok_or_else(no_transaction)
}

fn rollback_to(_: &Lua, id: usize) -> mlua::Result<()> {
    let Some(mut active) = take(key()) else {
        return Err(no_such_savepoint());
    };
    let Some(mark) = id
        .checked_sub(1)
        .and_then(|i| active.savepoints.get(i))
        .copied()
    else {
        give_back(active);
        return Err(no_such_savepoint());
    };
    active.savepoints.truncate(id);
    let tx = crate::state::tx()?;
    match (mark, active.mvcc.as_mut()) {
        (Savepoint::Mvcc(mark), Some(mvcc)) => tx.with(|t| {
            if let Some(txn) = txn_mvcc::open_txn(t, mvcc) {
                txn.rollback_to(mark);
            }
        }),
        (Savepoint::Memtx(mark), None) => {
            let undone = active.txn.split_off(mark);
            tx.with(|t| t.db.rollback_txn(undone));
        }
        _ => {}
    }
    give_back(active);
    Ok(())
}

fn no_such_savepoint() -> mlua::Error {
    lua_error(BoxError::new(
        code::ER_NO_SUCH_SAVEPOINT,
        "Can not rollback to savepoint: the savepoint does not exist",
    ))
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

/// Fiber `fiber` is about to yield: its open memtx transaction, if any, is rolled back and
/// flagged, as 2.6's memtx does at a yield. An MVCC one lives on.
pub fn on_yield(fiber: u64) {
    let undone = TXNS.with(|txns| {
        let active = txns.get_mut(&fiber).filter(|a| a.mvcc.is_none())?;
        active.aborted = true;
        Some(std::mem::take(&mut active.txn))
    });
    if let (Some(undone), Ok(tx)) = (undone, crate::state::tx()) {
        tx.with(|t| t.db.rollback_txn(undone));
    }
}

/// Fiber `fiber` ended (a `fiber.create`d one; a request's is `finish`ed): a transaction it
/// left open is rolled back, as 2.11 does.
pub fn on_end(fiber: u64) {
    if none_open() {
        return;
    }
    if let Some(active) = take(fiber) {
        tracing::warn!("fiber {fiber} ended with a transaction open: rolled back");
        discard(active);
    }
}

/// A request of a stream starts inside the stream's open transaction (`ProcCtx::in_txn`): the
/// fiber gets an empty one, as if it had called `box.begin()`.
pub fn begin_in_stream() {
    let k = key();
    TXNS.with(|txns| {
        txns.entry(k).or_insert_with(Active::memtx);
    });
}

/// A request of stream `stream` starts with the MVCC engine on: its statements join the
/// stream's transaction if `has_txn`, and a `box.begin()` in it begins the stream's.
pub fn enter_mvcc_stream(route: Route, stream: u64, has_txn: bool) {
    let k = key();
    STREAMS.with(|s| s.insert(k, (route, stream)));
    if has_txn {
        let joined = Active::mvcc(Mvcc::Stream { route, stream });
        TXNS.with(|txns| txns.insert(k, joined));
    }
}

/// A request of a stream returned: what became of its transaction, for the stream. One that
/// holds changes (or yielded) is rolled back and aborted, since the end of the request is a
/// yield and the MVCC engine is off; an empty one stays open.
pub fn finish_in_stream() -> ProcEnd {
    STREAMS.with(|s| {
        if !s.is_empty() {
            s.remove(&key());
        }
    });
    if none_open() {
        return ProcEnd::Closed;
    }
    let Some(active) = take(key()) else {
        return ProcEnd::Closed;
    };
    match active.mvcc {
        // The stream's MVCC transaction stays the stream's, whatever became of it.
        Some(Mvcc::Stream { .. }) => return ProcEnd::Kept,
        // Not begun here (`enter_mvcc_stream` makes it the stream's): never left open.
        Some(Mvcc::Own { .. }) => {
            discard(active);
            return ProcEnd::Closed;
        }
        None => {}
    }
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
    discard(active);
    Err(BoxError::new(
        code::ER_FUNCTION_TX_ACTIVE,
        "Transaction is active at return from function",
    ))
}
