//! Lua transactions on the MVCC engine (`memtx_use_mvcc_engine`): `box.begin()` in a fiber,
//! and the statements of a CALL or EVAL inside a stream's MVCC transaction. Either way each
//! statement is what an IPROTO request of a stream transaction is — encoded as that request
//! and handed to `spindle_box::mvcc` — so Lua and the network share one engine and one
//! conflict check. Such a transaction survives its fiber's yields (`txn::on_yield` leaves it).

use std::time::{Duration, Instant};

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
    /// Past `deadline` (box.begin's `timeout`) it is rolled back, noticed at its next use
    /// as a stream transaction's is: its writes are invisible either way.
    Own {
        txn: Box<MvccTxn>,
        deadline: Option<Instant>,
    },
    /// The transaction of the stream whose CALL or EVAL the fiber runs: it stays the
    /// stream's, and its COMMIT or ROLLBACK may come from Lua or from the stream.
    Stream { route: Route, stream: u64 },
}

/// `box.begin()` with the engine on: owned by the fiber, or the stream's new transaction if
/// the fiber runs a stream's request.
pub fn begin(
    t: &mut Tx,
    isolation: u8,
    timeout: Option<f64>,
    stream: Option<(Route, u64)>,
) -> BoxResult<Mvcc> {
    let now = Instant::now();
    let Some((route, stream)) = stream else {
        t.fiber_mvcc_open += 1;
        let deadline = timeout
            .and_then(|t| Duration::try_from_secs_f64(t).ok())
            .and_then(|d| now.checked_add(d));
        return Ok(Mvcc::Own {
            txn: Box::new(t.mvcc.begin(isolation)),
            deadline,
        });
    };
    let options = BeginOptions {
        timeout,
        isolation: u64::from(isolation),
    };
    t.stream_txns
        .begin(route, stream, &options, Some(&t.mvcc), now)?;
    Ok(Mvcc::Stream { route, stream })
}

/// One statement (`packet`: an IPROTO SELECT or DML request without its length prefix).
pub fn statement(t: &mut Tx, mvcc: &mut Mvcc, user: u32, packet: &[u8]) -> BoxResult<Reply> {
    let (_, request) = decode_request(packet).map_err(|e| e.error)?;
    match mvcc {
        Mvcc::Own { deadline, .. } if expired(*deadline) => Err(BoxError::transaction_timeout()),
        Mvcc::Own { txn, .. } => t.mvcc.statement(&mut t.db, txn, user, &request, packet),
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
        Mvcc::Own { txn, deadline } => {
            t.fiber_mvcc_open -= 1;
            if expired(deadline) {
                t.settle_mvcc();
                return Err(BoxError::transaction_timeout());
            }
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
        Mvcc::Own { .. } => t.fiber_mvcc_open -= 1,
        Mvcc::Stream { route, stream } => t.stream_txns.rollback(route, stream),
    }
    t.settle_mvcc();
}

/// The transaction itself, if it is still open (for savepoints).
pub fn open_txn<'a>(t: &'a mut Tx, mvcc: &'a mut Mvcc) -> Option<&'a mut MvccTxn> {
    match mvcc {
        Mvcc::Own { txn, .. } => Some(txn),
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

fn expired(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

fn no_transaction() -> BoxError {
    BoxError::new(code::ER_NO_TRANSACTION, "No active transaction")
}

#[cfg(test)]
mod tests {
    use super::*;
    use spindle_proto::iproto::{slice, Request};

    #[test]
    fn statements_encode_as_the_requests_the_engine_decodes() {
        let (tuple, key, ops) = ([0x91, 0x01], [0x91, 0x02], [0x90]);
        let update = Dml::Update {
            space_id: 512,
            index_id: 1,
            key: &key,
            ops: &ops,
            index_base: 1,
        };
        let packet = dml_packet(&update);
        let Ok((_, request)) = decode_request(&packet) else {
            panic!("the update does not decode");
        };
        let Request::Update {
            space_id: 512,
            index_id: 1,
            index_base: 1,
            key: k,
            ops: o,
        } = request
        else {
            panic!("decoded as {request:?}");
        };
        assert_eq!(
            (slice(&packet, &k), slice(&packet, &o)),
            (&key[..], &ops[..])
        );
        let upsert = Dml::Upsert {
            space_id: 513,
            tuple: &tuple,
            ops: &ops,
            index_base: 1,
        };
        let packet = dml_packet(&upsert);
        let decoded = decode_request(&packet).map(|(_, r)| r);
        assert!(matches!(
            decoded,
            Ok(Request::Upsert {
                space_id: 513,
                index_base: 1,
                ..
            })
        ));
        let packet = select_packet(512, 0, 5, &key, 2, 10);
        let decoded = decode_request(&packet).map(|(_, r)| r);
        assert!(matches!(
            decoded,
            Ok(Request::Select {
                space_id: 512,
                index_id: 0,
                iterator: 5,
                offset: 2,
                limit: 10,
                ..
            })
        ));
    }
}
