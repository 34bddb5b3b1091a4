//! The route table: which handler runs each kind of request, in one place, as Tarantool's
//! iproto routes are. Every handler but `Proc` runs inside the dispatcher's borrow of the TX
//! state and cannot yield: reads reply at once, writes apply to memory at once and reply once
//! durable (`commit`). `Proc` (CALL, EVAL) leaves the borrow for a fiber of its own
//! (`procs`). Replication requests that take a connection over (JOIN, SUBSCRIBE) never get
//! here: the network thread hands their connection off (`NetEvent::Handoff`).

use spindle_box::execute::is_write;
use spindle_box::Reply;
use spindle_memtx::index::Lookup;
use spindle_proto::iproto::{array_or_empty, slice, Header, Request};
use spindle_proto::route::Route;
use spindle_types::{compat, BoxError, BoxResult};
use std::time::Instant;

use crate::pool::{DmlJob, ProcJob, ProcKind};
use crate::replication::ballot;
use crate::state::{PendingReply, Tx};
use crate::stream_routes::{self as streams, has_triggers};
use crate::stream_txn::Gate;

/// What runs a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handler {
    /// PING: an empty answer.
    Ping,
    /// AUTH: switches the session's user.
    Auth,
    /// SELECT, with the batched lookups of `spindle_box::plan`.
    Select,
    /// INSERT, REPLACE, UPDATE, DELETE, UPSERT: applied now, answered once durable.
    Write,
    /// CALL, CALL_16, EVAL: a procedure fiber.
    Proc,
    /// VOTE: this instance's ballot.
    Vote,
    /// EXECUTE, PREPARE: no SQL yet.
    Sql,
    /// REGISTER, FETCH_SNAPSHOT (anonymous replicas): not supported.
    Replication,
    /// IPROTO_ID: unknown to 2.6; 2.10+ feature negotiation.
    Id,
    /// BEGIN, COMMIT, ROLLBACK: unknown to 2.6; 2.10+ stream transactions.
    Txn,
    /// WATCH, UNWATCH: unknown to 2.6; 2.10+ watchers (`watch`), answered only on error.
    Watch,
    /// Any other type.
    Unknown,
}

/// The route table.
pub fn route(request: &Request) -> Handler {
    match request {
        Request::Ping => Handler::Ping,
        Request::Auth { .. } => Handler::Auth,
        Request::Select { .. } => Handler::Select,
        r if is_write(r) => Handler::Write,
        Request::Call { .. } | Request::Eval { .. } => Handler::Proc,
        Request::Vote => Handler::Vote,
        Request::Execute | Request::Prepare => Handler::Sql,
        Request::Join { .. }
        | Request::Subscribe { .. }
        | Request::Register { .. }
        | Request::FetchSnapshot => Handler::Replication,
        Request::Id { .. } => Handler::Id,
        Request::Begin { .. } | Request::Commit | Request::Rollback => Handler::Txn,
        Request::Watch { .. } | Request::Unwatch { .. } => Handler::Watch,
        _ => Handler::Unknown,
    }
}

/// Requests of unknown types are answered as such whatever their schema version; every
/// other one is checked against it first, as in 2.6. `streams`: the announced version has
/// BEGIN/COMMIT/ROLLBACK (they are unknown types before 2.10). WATCH checks it itself,
/// after decoding its body.
fn checks_schema(handler: Handler, streams: bool) -> bool {
    match handler {
        Handler::Id | Handler::Unknown | Handler::Watch => false,
        Handler::Txn => streams,
        _ => true,
    }
}

/// Whether the request runs in its stream's transaction (a data statement).
fn is_statement(handler: Handler) -> bool {
    matches!(handler, Handler::Select | Handler::Write | Handler::Proc)
}

/// Runs one request; `lookup` is its select's lower bound if a batched walk found it. A
/// procedure comes back as a job for the pool: the caller starts it outside the borrow.
pub fn run(
    t: &mut Tx,
    route: Route,
    header: &Header,
    request: &Request,
    packet: &[u8],
    lookup: Option<Lookup>,
) -> Option<ProcJob> {
    let handler = self::route(request);
    // Only requests that can involve streams read the announced version.
    let streams = (header.stream_id != 0
        || matches!(handler, Handler::Txn | Handler::Id | Handler::Watch))
        && compat::announced().has_streams();
    if streams {
        if let Err(e) = streams::check_stream_use(header, request) {
            t.send_reply(route, header.sync, Err(e));
            return None;
        }
    }
    if checks_schema(handler, streams) {
        if let Err(e) = t.db.check_schema_version(header) {
            t.send_reply(route, header.sync, Err(e));
            return None;
        }
    }
    let (mut in_txn, mut mvcc) = (false, false);
    if streams && header.stream_id != 0 {
        match stream_gate(t, route, header, request, packet, handler) {
            StreamGate::Go { first_write } => in_txn = first_write,
            StreamGate::Mvcc => mvcc = true,
            StreamGate::Job(job) => return Some(job),
            StreamGate::Answered => return None,
        }
    }
    let result = match handler {
        Handler::Select | Handler::Write if mvcc => {
            streams::run_mvcc(t, route, header.stream_id, request, packet)
        }
        Handler::Write if in_txn => streams::run_first_write(t, route, request, packet),
        Handler::Write => {
            return match triggered_job(t, route, header, request, packet) {
                Some(job) => Some(job),
                None => run_write(t, route, header, request, packet),
            };
        }
        Handler::Proc => return Some(proc_job(route, header, request, packet)),
        Handler::Ping => Ok(Reply::Empty),
        Handler::Auth => t.db.execute_auth(&mut t.sessions, route, request, packet),
        Handler::Select => {
            let user = t.sessions.user(route);
            t.db.execute_select(user, request, packet, lookup)
        }
        Handler::Vote => Ok(Reply::Raw(ballot(&t.db))),
        Handler::Sql => Err(BoxError::unsupported("spindle", "SQL")),
        Handler::Replication => Err(BoxError::unsupported("spindle", "replication yet")),
        Handler::Id if streams => streams::run_id(t, route, request, packet),
        Handler::Id => Err(BoxError::unknown_request_type(73)),
        Handler::Txn if streams => match streams::run_txn(t, route, header, request, packet) {
            Ok(Some(reply)) => Ok(reply),
            Ok(None) => return None,
            Err(e) => Err(e),
        },
        Handler::Watch if streams => {
            crate::watch::run(t, route, header, request, packet);
            return None;
        }
        Handler::Txn | Handler::Watch => Err(BoxError::unknown_request_type(u64::from(
            header.request_type,
        ))),
        Handler::Unknown => Err(unknown(request)),
    };
    t.send_reply(route, header.sync, result);
    None
}

/// What a stream's transaction makes of one of the stream's requests.
enum StreamGate {
    /// Run it; `first_write`: as the first statement of a transaction (MVCC off).
    Go { first_write: bool },
    /// Run it in the stream's MVCC transaction.
    Mvcc,
    /// A procedure, to run in the stream's transaction.
    Job(ProcJob),
    /// Refused, and answered.
    Answered,
}

fn stream_gate(
    t: &mut Tx,
    route: Route,
    header: &Header,
    request: &Request,
    packet: &[u8],
    handler: Handler,
) -> StreamGate {
    let now = Instant::now();
    let stream = header.stream_id;
    if handler == Handler::Proc {
        // A procedure runs inside an open transaction (it decides what becomes of it; an
        // MVCC one it joins, crates/lua txn.rs); an aborted one refuses it.
        let mut job = proc_job(route, header, request, packet);
        job.stream = stream;
        job.in_txn = t.stream_txns.is_live(route, stream, now);
        if !job.in_txn {
            if let Gate::Refuse(e) = t.stream_txns.statement(route, stream, now) {
                t.send_reply(route, header.sync, Err(e));
                return StreamGate::Answered;
            }
        }
        return StreamGate::Job(job);
    }
    if !is_statement(handler) {
        return StreamGate::Go { first_write: false };
    }
    match t.stream_txns.statement(route, stream, now) {
        Gate::Autocommit => StreamGate::Go { first_write: false },
        Gate::FirstThenAbort => StreamGate::Go { first_write: true },
        Gate::Mvcc => StreamGate::Mvcc,
        Gate::Refuse(e) => {
            t.send_reply(route, header.sync, Err(e));
            StreamGate::Answered
        }
    }
}

/// Whether `request` runs in a procedure fiber whatever it holds (CALL, CALL_16, EVAL): it
/// changes nothing before its fiber runs, so the dispatcher may queue several in a row.
pub fn is_proc(request: &Request) -> bool {
    matches!(route(request), Handler::Proc)
}

fn unknown(request: &Request) -> BoxError {
    match request {
        Request::Unknown(code) => BoxError::unknown_request_type(u64::from(*code)),
        _ => BoxError::unknown(),
    }
}

/// Applies a write at once; its reply waits for the WAL.
fn run_write(
    t: &mut Tx,
    route: Route,
    header: &Header,
    request: &Request,
    packet: &[u8],
) -> Option<ProcJob> {
    let user = t.sessions.user(route);
    let result: BoxResult<_> = t.db.execute_write(user, request, packet);
    t.note_schema_change();
    match result {
        Ok(outcome) => {
            let reply = PendingReply {
                route,
                sync: header.sync,
                reply: outcome.reply,
            };
            t.commit_autocommit(outcome.txn, reply);
        }
        Err(e) => t.send_reply(route, header.sync, Err(e)),
    }
    None
}

/// A write request as a `DmlJob`, with its tuple, key and operations copied out of `packet`.
fn dml_job_parts(request: &Request, packet: &[u8]) -> Option<DmlJob> {
    let bytes = |span| slice(packet, span).to_vec();
    let job = |op, space_id, index_id, index_base, first, second| DmlJob {
        op,
        space_id,
        index_id,
        index_base,
        first,
        second,
    };
    Some(match request {
        Request::Insert { space_id, tuple } => {
            job("insert", *space_id, 0, 0, bytes(tuple), Vec::new())
        }
        Request::Replace { space_id, tuple } => {
            job("replace", *space_id, 0, 0, bytes(tuple), Vec::new())
        }
        Request::Delete {
            space_id,
            index_id,
            key,
        } => job("delete", *space_id, *index_id, 0, bytes(key), Vec::new()),
        Request::Update {
            space_id,
            index_id,
            index_base,
            key,
            ops,
        } => job(
            "update",
            *space_id,
            *index_id,
            *index_base,
            bytes(key),
            bytes(ops),
        ),
        Request::Upsert {
            space_id,
            index_base,
            tuple,
            ops,
        } => job(
            "upsert",
            *space_id,
            0,
            *index_base,
            bytes(tuple),
            bytes(ops),
        ),
        _ => return None,
    })
}

/// A write to a space with triggers as a procedure job; None for any other write (the
/// dispatcher's fast path, which costs one emptiness check while no space has triggers).
fn triggered_job(
    t: &Tx,
    route: Route,
    header: &Header,
    request: &Request,
    packet: &[u8],
) -> Option<ProcJob> {
    if !has_triggers(t, request) {
        return None;
    }
    Some(ProcJob {
        route,
        sync: header.sync,
        kind: ProcKind::Dml(dml_job_parts(request, packet)?),
        stream: 0,
        in_txn: false,
    })
}

/// A CALL or EVAL, with its name and arguments copied out of the packet.
fn proc_job(route: Route, header: &Header, request: &Request, packet: &[u8]) -> ProcJob {
    let text = |span| {
        let bytes = slice(packet, span);
        match std::str::from_utf8(bytes) {
            Ok(text) => text.to_owned(),
            Err(_) => String::from_utf8_lossy(bytes).into_owned(),
        }
    };
    let kind = match request {
        Request::Call { name, args, is_16 } => ProcKind::Call {
            name: text(name),
            args: array_or_empty(packet, args).to_vec(),
            is_16: *is_16,
        },
        Request::Eval { expr, args } => ProcKind::Eval {
            expr: text(expr),
            args: array_or_empty(packet, args).to_vec(),
        },
        _ => ProcKind::Call {
            name: String::new(),
            args: Vec::new(),
            is_16: false,
        },
    };
    ProcJob {
        route,
        sync: header.sync,
        kind,
        stream: 0,
        in_txn: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream_routes::write_space;
    use spindle_proto::iproto::Span;

    #[test]
    fn every_request_kind_has_its_route() {
        let s = Span::default;
        let cases = [
            (Request::Ping, Handler::Ping),
            (
                Request::Auth {
                    user: s(),
                    scramble: None,
                },
                Handler::Auth,
            ),
            (
                Request::Insert {
                    space_id: 1,
                    tuple: s(),
                },
                Handler::Write,
            ),
            (
                Request::Replace {
                    space_id: 1,
                    tuple: s(),
                },
                Handler::Write,
            ),
            (
                Request::Delete {
                    space_id: 1,
                    index_id: 0,
                    key: s(),
                },
                Handler::Write,
            ),
            (
                Request::Call {
                    name: s(),
                    args: s(),
                    is_16: true,
                },
                Handler::Proc,
            ),
            (
                Request::Eval {
                    expr: s(),
                    args: s(),
                },
                Handler::Proc,
            ),
            (Request::Vote, Handler::Vote),
            (Request::Execute, Handler::Sql),
            (Request::FetchSnapshot, Handler::Replication),
            (Request::Id { body: s() }, Handler::Id),
            (Request::Watch { body: s() }, Handler::Watch),
            (Request::Unwatch { body: s() }, Handler::Watch),
            (Request::Unknown(99), Handler::Unknown),
        ];
        for (request, handler) in cases {
            assert_eq!(route(&request), handler, "{request:?}");
        }
        assert!(!checks_schema(Handler::Unknown, true) && !checks_schema(Handler::Id, true));
        assert!(!checks_schema(Handler::Watch, true) && !checks_schema(Handler::Watch, false));
        assert!(checks_schema(Handler::Proc, false) && checks_schema(Handler::Write, false));
        assert!(checks_schema(Handler::Txn, true) && !checks_schema(Handler::Txn, false));
        assert_eq!(route(&Request::Commit), Handler::Txn);
    }

    #[test]
    fn a_write_becomes_a_dml_job_with_its_bytes() {
        let packet = [0x91, 0x07, 0x91, 0x90];
        let update = Request::Update {
            space_id: 5,
            index_id: 1,
            index_base: 1,
            key: 0..2,
            ops: 2..4,
        };
        let job = dml_job_parts(&update, &packet).expect("a write");
        assert_eq!(
            (job.op, job.space_id, job.index_id, job.index_base),
            ("update", 5, 1, 1)
        );
        assert_eq!(job.first.as_slice(), &packet[..2]);
        assert_eq!(job.second.as_slice(), &packet[2..]);
        assert_eq!(write_space(&update), Some(5));
        assert!(dml_job_parts(&Request::Ping, &packet).is_none());
        assert!(write_space(&Request::Vote).is_none());
    }
}
