//! The HTTP commit API on the TX thread: WeaselDB's *sequence* and *resolve* stages run here
//! in one step with no yield, so they are atomic without locks — refuse a used request id,
//! check the preconditions against the recent commits, apply the operations to `_kv`, take
//! the next version, log the commit record in the same transaction. *Persist* is the WAL's
//! group commit and *release* the answer sent back once it is durable (`on_commit`).
//! Versions are gapless: a refused commit takes none, and a failed log write hands the
//! rolled-back ones out again.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{error, info};

use spindle_box::kv::{self, KvSpaces, Recent, Unchecked};
use spindle_box::Txn;
use spindle_proto::kv::{
    bump, Answer, CommitRequest, KvAnswer, KvCall, KvEvent, KvRequest, KvShared,
};
use spindle_types::limits::{KV_BANNED_MAX, KV_COMMIT_KEYS_MAX};
use spindle_types::BoxResult;

use crate::kv_state::{KvPending, KvState};
use crate::state::{Tx, Waiter};

pub fn handle(t: &mut Tx, event: KvEvent) {
    match event {
        KvEvent::Enable { shared, window } => enable(t, shared, window),
        KvEvent::Call(call) => {
            let KvCall {
                token,
                request,
                answer,
            } = call;
            let reply = match request {
                KvRequest::Commit(c) => match commit(t, c, token, answer.clone()) {
                    Some(reply) => reply,
                    None => return,
                },
                KvRequest::Read { key } => read(t, |db, spaces, version| {
                    kv::read(db, spaces, &key).map(|value| KvAnswer::Value { version, value })
                }),
                KvRequest::Range { begin, end, limit } => read(t, |db, spaces, version| {
                    let (pairs, more) = kv::range(db, spaces, &begin, end.as_deref(), limit)?;
                    Ok(KvAnswer::Range {
                        version,
                        pairs,
                        more,
                    })
                }),
                KvRequest::Status { request_id } => {
                    match status(t, request_id, token, answer.clone()) {
                        Some(reply) => reply,
                        None => return,
                    }
                }
            };
            answer(token, reply);
        }
    }
}

/// Finds the keyspace, or creates it on a writable instance; publishes its last version.
fn enable(t: &mut Tx, shared: Arc<KvShared>, window: usize) {
    let mut state = KvState {
        shared,
        spaces: None,
        recent: Recent::new(0, window),
        window,
        banned: Default::default(),
        status_waiters: Default::default(),
    };
    if kv::find(&t.db).is_none() && !t.db.read_only() {
        let mut txn = Txn::new();
        match kv::create(&mut t.db, &mut txn) {
            Ok(spaces) => {
                info!(
                    "HTTP keyspace created: spaces {} and {}",
                    spaces.data, spaces.commits
                );
                t.commit_detached(txn);
                t.publish_schema_version();
            }
            Err(e) => {
                error!("cannot create the HTTP keyspace: {e}");
                t.db.rollback_txn(txn);
            }
        }
    }
    attach(t, &mut state);
    t.kv = Some(state);
}

/// Takes the spaces into use once they exist.
fn attach(t: &mut Tx, state: &mut KvState) {
    if state.spaces.is_some() {
        return;
    }
    let Some(spaces) = kv::find(&t.db) else {
        return;
    };
    let last = match kv::last_version(&t.db, spaces) {
        Ok(last) => last,
        Err(e) => {
            error!("cannot read the HTTP keyspace's last version: {e}");
            return;
        }
    };
    t.db.set_versioned(vec![spaces.data, spaces.commits]);
    state.spaces = Some(spaces);
    state.recent = Recent::new(last, state.window);
    state.shared.durable_version.store(last, Ordering::SeqCst);
    state.shared.ready.store(1, Ordering::Release);
}

/// A read at the newest version (applied, possibly not yet durable, as IPROTO reads are).
fn read(
    t: &mut Tx,
    f: impl FnOnce(&spindle_box::Db, KvSpaces, u64) -> BoxResult<KvAnswer>,
) -> KvAnswer {
    let Some(mut state) = t.kv.take() else {
        return KvAnswer::Unavailable("the HTTP API is not enabled".into());
    };
    attach(t, &mut state);
    bump(&state.shared.stages.reads);
    let reply = match state.spaces {
        None => KvAnswer::Unavailable("the keyspace does not exist yet".into()),
        Some(spaces) => {
            // The newest applied version: a replica's come from its master's rows.
            let version = kv::last_version(&t.db, spaces).unwrap_or(0);
            f(&t.db, spaces, version).unwrap_or_else(|e| KvAnswer::Failed(e.to_string()))
        }
    };
    t.kv = Some(state);
    reply
}

/// `/v1/status`: bans the id in the sequence step, so it can never commit afterwards, and
/// answers definitively: committed (once its commit is durable) or not. None when the
/// answer waits for the WAL.
fn status(t: &mut Tx, request_id: String, token: u64, answer: Answer) -> Option<KvAnswer> {
    let Some(mut state) = t.kv.take() else {
        return Some(KvAnswer::Unavailable("the HTTP API is not enabled".into()));
    };
    attach(t, &mut state);
    let reply = match state.spaces {
        None => Some(KvAnswer::Unavailable(
            "the keyspace does not exist yet".into(),
        )),
        Some(spaces) => ban(t, &mut state, spaces, request_id, token, answer),
    };
    t.kv = Some(state);
    reply
}

fn ban(
    t: &mut Tx,
    state: &mut KvState,
    spaces: KvSpaces,
    request_id: String,
    token: u64,
    answer: Answer,
) -> Option<KvAnswer> {
    if !state.banned.contains(&request_id) {
        if state.banned.len() >= KV_BANNED_MAX {
            return Some(KvAnswer::Unavailable(
                "too many request ids banned since the start".into(),
            ));
        }
        state.banned.insert(request_id.clone());
        bump(&state.shared.stages.bans);
    }
    let durable = state.shared.durable();
    match kv::committed_version(&t.db, spaces, &request_id) {
        Err(e) => Some(KvAnswer::Failed(e.to_string())),
        Ok(None) => Some(KvAnswer::StatusNotCommitted { version: durable }),
        Ok(Some(version)) if version <= durable => Some(KvAnswer::StatusCommitted { version }),
        Ok(Some(version)) => {
            // In flight: the WAL decides (`on_commit`).
            let waiters = state.status_waiters.entry(version).or_default();
            waiters.push((token, answer));
            None
        }
    }
}

/// What sequence and resolve decided.
enum Resolved {
    Answer(KvAnswer),
    /// Applied to memory and numbered: to the WAL.
    Commit(Txn, KvPending),
}

/// Sequence and resolve; None when the answer waits for the WAL.
fn commit(t: &mut Tx, c: CommitRequest, token: u64, answer: Answer) -> Option<KvAnswer> {
    let Some(mut state) = t.kv.take() else {
        return Some(KvAnswer::Unavailable("the HTTP API is not enabled".into()));
    };
    attach(t, &mut state);
    let resolved = match state.spaces {
        None => Resolved::Answer(KvAnswer::Unavailable(
            "the keyspace does not exist yet".into(),
        )),
        Some(_) if t.db.read_only() => Resolved::Answer(KvAnswer::Unavailable(
            "this instance is read-only; commit on the master".into(),
        )),
        Some(spaces) => resolve(t, &mut state, spaces, c, token, answer),
    };
    // The outcome may be decided at once (no WAL): `on_commit` needs the state in place.
    t.kv = Some(state);
    match resolved {
        Resolved::Answer(reply) => Some(reply),
        Resolved::Commit(txn, pending) => {
            t.commit_waiting(txn, Waiter::Kv(pending));
            None
        }
    }
}

fn resolve(
    t: &mut Tx,
    state: &mut KvState,
    spaces: KvSpaces,
    c: CommitRequest,
    token: u64,
    answer: Answer,
) -> Resolved {
    let stages = &state.shared.stages;
    if state.banned.contains(&c.request_id) {
        return Resolved::Answer(KvAnswer::RequestIdBanned);
    }
    match kv::committed_version(&t.db, spaces, &c.request_id) {
        Ok(Some(version)) => {
            bump(&stages.request_id_used);
            return Resolved::Answer(KvAnswer::RequestIdUsed {
                version: Some(version),
            });
        }
        Ok(None) => {}
        Err(e) => return Resolved::Answer(KvAnswer::Failed(e.to_string())),
    }
    // Rows that did not come through here (a replica's upstream before a promotion) move
    // the versions on: continue from the newest recorded one.
    match kv::last_version(&t.db, spaces) {
        Ok(recorded) if recorded != state.recent.last() => state.recent.reset(recorded),
        Ok(_) => {}
        Err(e) => return Resolved::Answer(KvAnswer::Failed(e.to_string())),
    }
    let last = state.recent.last();
    let refused = match state.recent.check(&c.preconditions) {
        Ok(conflicts) if conflicts.is_empty() => None,
        Ok(conflicts) => {
            bump(&stages.conflicts);
            Some(KvAnswer::NotCommitted {
                conflicts,
                version: last,
            })
        }
        Err(Unchecked::TooOld { oldest }) => {
            bump(&stages.too_old);
            Some(KvAnswer::TooOld {
                oldest,
                version: last,
            })
        }
        Err(Unchecked::Future) => Some(KvAnswer::FutureVersion { version: last }),
    };
    if let Some(reply) = refused {
        return Resolved::Answer(reply);
    }
    let version = last + 1;
    let mut txn = Txn::new();
    let leader = state.shared.leader_id.as_str();
    let applied = kv::apply(
        &mut t.db,
        &mut txn,
        spaces,
        &c.operations,
        KV_COMMIT_KEYS_MAX,
    )
    .and_then(|written| {
        kv::record(
            &mut t.db,
            &mut txn,
            spaces,
            version,
            &c.request_id,
            leader,
            now(),
        )?;
        Ok(written)
    });
    match applied {
        Ok(written) => {
            state.recent.push(written);
            let pending = KvPending {
                token,
                answer,
                version,
            };
            Resolved::Commit(txn, pending)
        }
        Err(e) => {
            t.db.rollback_txn(txn);
            bump(&stages.commit_failures);
            Resolved::Answer(KvAnswer::Failed(e.to_string()))
        }
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// An upstream's transactions are durable here: a replica's durable version follows the
/// commit records they brought.
pub fn follow_upstream(t: &mut Tx) {
    let Some(mut state) = t.kv.take() else {
        return;
    };
    attach(t, &mut state);
    if let Some(spaces) = state.spaces {
        if let Ok(last) = kv::last_version(&t.db, spaces) {
            state
                .shared
                .durable_version
                .fetch_max(last, Ordering::SeqCst);
        }
    }
    t.kv = Some(state);
}

/// The WAL's outcome for an HTTP commit: the durable version moves on, or (the write
/// failed and was rolled back) its version is handed out again.
pub fn on_commit(t: &mut Tx, pending: KvPending, result: BoxResult<()>) {
    let KvPending {
        token,
        answer,
        version,
    } = pending;
    let Some(state) = t.kv.as_mut() else {
        return;
    };
    let committed = result.is_ok();
    let reply = match result {
        Ok(()) => {
            state
                .shared
                .durable_version
                .fetch_max(version, Ordering::SeqCst);
            bump(&state.shared.stages.commits);
            KvAnswer::Committed { version }
        }
        Err(e) => {
            // Rollbacks come newest first: the last reset leaves the oldest failed one next.
            state.recent.reset(version.saturating_sub(1));
            bump(&state.shared.stages.commit_failures);
            KvAnswer::Unavailable(format!("the commit was rolled back: {e}"))
        }
    };
    answer(token, reply);
    // Status requests that found this commit in flight: its id is banned, so a rolled-back
    // commit is definitively not committed.
    let durable = state.shared.durable();
    for (token, answer) in state.status_waiters.remove(&version).unwrap_or_default() {
        answer(
            token,
            match committed {
                true => KvAnswer::StatusCommitted { version },
                false => KvAnswer::StatusNotCommitted { version: durable },
            },
        );
    }
}
