//! The handlers of the 2.10+ session requests (IPROTO_ID, BEGIN, COMMIT, ROLLBACK), of a
//! stream transaction's first write (MVCC off) and of its statements (MVCC on); the
//! transactions themselves are `stream_txn`'s, the engine `spindle_box::mvcc`.

use std::time::Instant;

use spindle_box::mvcc::MvccTxn;
use spindle_box::Reply;
use spindle_proto::iproto::{slice, Header, Request};
use spindle_proto::route::Route;
use spindle_proto::streams::{decode_begin, decode_id, encode_id_reply};
use spindle_types::error::code;
use spindle_types::iproto::feature;
use spindle_types::{txn_cfg, BoxError, BoxResult};

use crate::state::{PendingReply, Tx};

/// The IPROTO_ID features spindle implements: streams, transactions, error extension
/// (box.error values in CALL/EVAL results as MP_ERROR) and watchers. Not PAGINATION.
pub const FEATURES: [u64; 4] = [
    feature::STREAMS,
    feature::TRANSACTIONS,
    feature::ERROR_EXTENSION,
    feature::WATCHERS,
];

/// 229 for a request that cannot run in a stream, 230 for a transaction request outside
/// one (both before anything else, as 2.11's network thread checks them).
pub fn check_stream_use(header: &Header, request: &Request) -> BoxResult<()> {
    let name = match request {
        Request::Begin { .. } => "BEGIN",
        Request::Commit => "COMMIT",
        Request::Rollback => "ROLLBACK",
        _ if header.stream_id == 0 => return Ok(()),
        Request::Auth { .. } => "AUTH",
        Request::Id { .. } => "ID",
        Request::Vote => "VOTE",
        Request::Register { .. } => "REGISTER",
        Request::FetchSnapshot => "FETCH_SNAPSHOT",
        Request::Watch { .. } => "WATCH",
        Request::Unwatch { .. } => "UNWATCH",
        _ => return Ok(()),
    };
    if header.stream_id == 0 {
        Err(BoxError::unable_to_process_out_of_stream(name))
    } else if matches!(
        request,
        Request::Begin { .. } | Request::Commit | Request::Rollback
    ) {
        Ok(())
    } else {
        Err(BoxError::unable_to_process_in_stream(name))
    }
}

/// IPROTO_ID: records the client's features in its session and answers with ours.
pub fn run_id(t: &mut Tx, route: Route, request: &Request, packet: &[u8]) -> BoxResult<Reply> {
    let Request::Id { body } = request else {
        return Err(BoxError::unknown());
    };
    let client = decode_id(slice(packet, body))?;
    if let Some(session) = t.sessions.get_mut(route) {
        session.features = client.features;
    }
    Ok(Reply::Raw(encode_id_reply(&FEATURES)))
}

/// BEGIN, COMMIT or ROLLBACK in a stream (the stream id is checked). None: the reply
/// comes once the WAL has written the transaction.
pub fn run_txn(
    t: &mut Tx,
    route: Route,
    header: &Header,
    request: &Request,
    packet: &[u8],
) -> BoxResult<Option<Reply>> {
    let stream = header.stream_id;
    let now = Instant::now();
    match request {
        Request::Begin { body } => {
            let options = decode_begin(slice(packet, body))?;
            let engine = txn_cfg::mvcc().then_some(&t.mvcc);
            t.stream_txns.begin(route, stream, &options, engine, now)?;
        }
        Request::Commit => {
            let result = match t.stream_txns.commit(route, stream, now) {
                Ok(Some(txn)) => commit_mvcc(t, route, header.sync, txn),
                Ok(None) => Ok(Some(Reply::Empty)),
                Err(e) => Err(e),
            };
            // After the commit's check, which may need what is kept.
            t.settle_mvcc();
            return result;
        }
        Request::Rollback => {
            t.stream_txns.rollback(route, stream);
            t.settle_mvcc();
        }
        _ => return Err(BoxError::unknown()),
    }
    Ok(Some(Reply::Empty))
}

/// COMMIT of an MVCC transaction: its statements go to the store and the commit queue as
/// one transaction, answered once durable; a read-only one is answered now.
fn commit_mvcc(
    t: &mut Tx,
    route: Route,
    sync: u64,
    mut txn: Box<MvccTxn>,
) -> BoxResult<Option<Reply>> {
    let user = t.sessions.user(route);
    let real = t.mvcc.commit(&mut t.db, &mut txn, user)?;
    if real.is_empty() {
        return Ok(Some(Reply::Empty));
    }
    let reply = PendingReply {
        route,
        sync,
        reply: Reply::Empty,
    };
    t.commit_autocommit(real, reply);
    Ok(None)
}

/// A SELECT or DML request of a stream whose transaction is on the MVCC engine.
pub fn run_mvcc(
    t: &mut Tx,
    route: Route,
    stream: u64,
    request: &Request,
    packet: &[u8],
) -> BoxResult<Reply> {
    let user = t.sessions.user(route);
    run_mvcc_as(t, route, stream, user, request, packet)
}

/// A SELECT or DML statement in a stream's MVCC transaction on behalf of `user` (a
/// procedure's effective user, for the statements of a CALL or EVAL in the stream).
pub fn run_mvcc_as(
    t: &mut Tx,
    route: Route,
    stream: u64,
    user: u32,
    request: &Request,
    packet: &[u8],
) -> BoxResult<Reply> {
    if has_triggers(t, request) {
        return Err(triggers_unsupported());
    }
    let Some(txn) = t.stream_txns.mvcc_txn(route, stream) else {
        return Err(BoxError::new(
            code::ER_NO_TRANSACTION,
            "No active transaction",
        ));
    };
    let result = t.mvcc.statement(&mut t.db, txn, user, request, packet);
    if txn.is_aborted() {
        let conflict = BoxError::transaction_conflict();
        t.stream_txns.abort_mvcc(route, stream, conflict);
        t.settle_mvcc();
    }
    result
}

fn triggers_unsupported() -> BoxError {
    BoxError::unsupported(
        "spindle",
        "writes to spaces with triggers inside a stream transaction yet",
    )
}

/// The first write of a stream transaction: applied, answered, and undone at once (the
/// end of its request aborts the transaction, MVCC being off).
pub fn run_first_write(
    t: &mut Tx,
    route: Route,
    request: &Request,
    packet: &[u8],
) -> BoxResult<Reply> {
    if has_triggers(t, request) {
        return Err(triggers_unsupported());
    }
    let user = t.sessions.user(route);
    let result = t.db.execute_write(user, request, packet);
    let reply = result.map(|outcome| {
        t.db.rollback_txn(outcome.txn);
        outcome.reply
    });
    t.note_schema_change();
    reply
}

/// True if the request writes to a space with triggers (Lua runs them, in a procedure).
pub fn has_triggers(t: &Tx, request: &Request) -> bool {
    let triggered = &t.procs.triggered;
    !triggered.is_empty() && write_space(request).is_some_and(|id| triggered.contains(&id))
}

pub fn write_space(request: &Request) -> Option<u32> {
    match *request {
        Request::Insert { space_id, .. }
        | Request::Replace { space_id, .. }
        | Request::Delete { space_id, .. }
        | Request::Update { space_id, .. }
        | Request::Upsert { space_id, .. } => Some(space_id),
        _ => None,
    }
}
