//! The handlers of the 2.10+ session requests (IPROTO_ID, BEGIN, COMMIT, ROLLBACK) and of a
//! stream transaction's first write; the transactions themselves are `stream_txn`'s.

use std::time::Instant;

use spindle_box::Reply;
use spindle_proto::iproto::{slice, Header, Request};
use spindle_proto::route::Route;
use spindle_proto::streams::{decode_begin, decode_id, encode_id_reply};
use spindle_types::iproto::feature;
use spindle_types::{BoxError, BoxResult};

use crate::state::Tx;

/// The MVCC engine is not implemented: transactions behave as with
/// `memtx_use_mvcc_engine = false`.
const MVCC: bool = false;

/// The IPROTO_ID features spindle implements: streams, transactions and watchers. Not
/// ERROR_EXTENSION (CALL/EVAL errors never travel as MP_ERROR) or PAGINATION.
pub const FEATURES: [u64; 3] = [feature::STREAMS, feature::TRANSACTIONS, feature::WATCHERS];

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

/// BEGIN, COMMIT or ROLLBACK in a stream (the stream id is checked).
pub fn run_txn(
    t: &mut Tx,
    route: Route,
    header: &Header,
    request: &Request,
    packet: &[u8],
) -> BoxResult<Reply> {
    let stream = header.stream_id;
    let now = Instant::now();
    match request {
        Request::Begin { body } => {
            let options = decode_begin(slice(packet, body))?;
            t.stream_txns.begin(route, stream, &options, MVCC, now)?;
        }
        Request::Commit => t.stream_txns.commit(route, stream, now)?,
        Request::Rollback => t.stream_txns.rollback(route, stream),
        _ => return Err(BoxError::unknown()),
    }
    Ok(Reply::Empty)
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
        return Err(BoxError::unsupported(
            "spindle",
            "writes to spaces with triggers inside a stream transaction yet",
        ));
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
