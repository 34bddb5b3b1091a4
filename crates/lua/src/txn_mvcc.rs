//! Lua transactions on the MVCC engine (`memtx_use_mvcc_engine`): `box.begin()` in a fiber,
//! and the statements of a CALL or EVAL inside a stream's MVCC transaction. Either way each
//! statement is what an IPROTO request of a stream transaction is — encoded as that request
//! and handed to `spindle_box::mvcc` — so Lua and the network share one engine and one
//! conflict check. Such a transaction survives its fiber's yields (`txn::on_yield` leaves it).

use std::time::Instant;

use spindle_box::mvcc::MvccTxn;
use spindle_box::{Dml, Reply};
use spindle_memtx::tuple::Tuple;
use spindle_proto::iproto::{self, decode_request};
use spindle_proto::route::Route;
use spindle_proto::streams::BeginOptions;
use spindle_tx::stream_routes::run_mvcc_as;
use spindle_tx::stream_txn::Gate;
use spindle_tx::Tx;
use spindle_types::error::code;
use spindle_types::{BoxError, BoxResult};

/// Where a fiber's MVCC transaction lives.
#[derive(Debug)]
pub enum Mvcc {
    /// `box.begin()` outside a stream: the fiber owns it (counted in `Tx::fiber_mvcc_open`).
    Own(Box<MvccTxn>),
    /// The transaction of the stream whose CALL or EVAL the fiber runs: it stays the
    /// stream's, and its COMMIT or ROLLBACK may come from Lua or from the stream.
    Stream { route: Route, stream: u64 },
}

/// `box.begin()` with the engine on: owned by the fiber, or the stream's new transaction if
/// the fiber runs a stream's request.
pub fn begin(t: &mut Tx, isolation: u8, stream: Option<(Route, u64)>) -> BoxResult<Mvcc> {
    let Some((route, stream)) = stream else {
        t.fiber_mvcc_open += 1;
        return Ok(Mvcc::Own(Box::new(t.mvcc.begin(isolation))));
    };
    let options = BeginOptions {
        timeout: None,
        isolation: u64::from(isolation),
    };
    let now = Instant::now();
    t.stream_txns
        .begin(route, stream, &options, Some(&t.mvcc), now)?;
    Ok(Mvcc::Stream { route, stream })
}

/// One statement (`packet`: an IPROTO SELECT or DML request without its length prefix).
pub fn statement(t: &mut Tx, mvcc: &mut Mvcc, user: u32, packet: &[u8]) -> BoxResult<Reply> {
    let (_, request) = decode_request(packet).map_err(|e| e.error)?;
    match mvcc {
        Mvcc::Own(txn) => t.mvcc.statement(&mut t.db, txn, user, &request, packet),
        Mvcc::Stream { route, stream } => {
            match t.stream_txns.statement(*route, *stream, Instant::now()) {
                Gate::Mvcc => run_mvcc_as(t, *route, *stream, user, &request, packet),
                Gate::Refuse(e) => Err(e),
                Gate::Autocommit | Gate::FirstThenAbort => Err(no_transaction()),
            }
        }
    }
}

/// COMMIT: the conflict check and the replay into one real transaction, queued for the WAL;
/// the sequence number to wait for, None for a read-only one.
pub fn commit(t: &mut Tx, mvcc: Mvcc, user: u32) -> BoxResult<Option<u64>> {
    let mut txn = match mvcc {
        Mvcc::Own(txn) => {
            t.fiber_mvcc_open -= 1;
            txn
        }
        Mvcc::Stream { route, stream } => match t.stream_txns.commit(route, stream, Instant::now())
        {
            Ok(Some(txn)) => txn,
            Ok(None) => return Ok(None),
            Err(e) => {
                t.settle_mvcc();
                return Err(e);
            }
        },
    };
    let result = t.mvcc.commit(&mut t.db, &mut txn, user).map(|real| {
        if real.is_empty() {
            return None;
        }
        let seq = t.commit_for_fiber(real, true);
        if !t.in_turn {
            t.flush_journal();
        }
        seq
    });
    // After the commit's check, which may need what is kept.
    t.settle_mvcc();
    result
}

/// ROLLBACK: nothing it did was ever seen.
pub fn rollback(t: &mut Tx, mvcc: Mvcc) {
    match mvcc {
        Mvcc::Own(_) => t.fiber_mvcc_open -= 1,
        Mvcc::Stream { route, stream } => t.stream_txns.rollback(route, stream),
    }
    t.settle_mvcc();
}

/// The transaction itself, if it is still open (for savepoints).
pub fn open_txn<'a>(t: &'a mut Tx, mvcc: &'a mut Mvcc) -> Option<&'a mut MvccTxn> {
    match mvcc {
        Mvcc::Own(txn) => Some(txn),
        Mvcc::Stream { route, stream } => t.stream_txns.mvcc_txn(*route, *stream),
    }
}

/// `statement` as its IPROTO request.
pub fn dml_packet(statement: &Dml<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    match *statement {
        Dml::Insert { space_id, tuple } => iproto::encode_insert(&mut out, 0, space_id, tuple),
        Dml::Replace { space_id, tuple } => iproto::encode_replace(&mut out, 0, space_id, tuple),
        Dml::Delete {
            space_id,
            index_id,
            key,
        } => iproto::encode_delete(&mut out, 0, space_id, index_id, key),
        Dml::Update {
            space_id,
            index_id,
            key,
            ops,
            index_base,
        } => iproto::encode_update(&mut out, 0, space_id, index_id, index_base, key, ops),
        Dml::Upsert {
            space_id,
            tuple,
            ops,
            index_base,
        } => iproto::encode_upsert(&mut out, 0, space_id, index_base, tuple, ops),
    }
    without_length(out)
}

/// A SELECT as its IPROTO request.
pub fn select_packet(
    space_id: u32,
    index_id: u32,
    iterator: u32,
    key: &[u8],
    offset: u32,
    limit: u32,
) -> Vec<u8> {
    let mut out = Vec::new();
    iproto::encode_select(
        &mut out, 0, space_id, index_id, iterator, offset, limit, key,
    );
    without_length(out)
}

/// The encoders frame a packet (`ce` and a u32 length); the engine takes what follows.
fn without_length(mut packet: Vec<u8>) -> Vec<u8> {
    packet.drain(..5);
    packet
}

/// The tuples a statement answered.
pub fn tuples(reply: Reply) -> Vec<Tuple> {
    match reply {
        Reply::Tuples(tuples) => tuples,
        _ => Vec::new(),
    }
}

fn no_transaction() -> BoxError {
    BoxError::new(code::ER_NO_TRANSACTION, "No active transaction")
}
