//! The TX thread's part of replication: checking JOIN and SUBSCRIBE requests and starting
//! relay threads for them, registering replicas in `_cluster`, applying transactions that
//! appliers bring (through `apply_dml`, as recovery does, then to our own WAL with their
//! original replica id and LSN), the status table of every upstream and downstream, and
//! bootstrapping an empty instance from a master (JOIN before the TX thread starts).
//! Socket I/O never happens here: relays and appliers own their sockets (`spindle_repl`).

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tracing::{error, info, warn};

use spindle_box::access::PRIV_R;
use spindle_box::catalog::sys;
use spindle_box::checkpoint::ReadView;
use spindle_box::txn::is_synchro;
use spindle_box::{Db, Txn};
use spindle_fiber::{current_fiber, park, spawn_fiber};
use spindle_proto::iproto::Request;
use spindle_proto::mp;
use spindle_repl::applier::ApplierLink;
use spindle_repl::relay::{JoinJob, RelayEnv, SubscribeJob};
use spindle_repl::{wire, Direction, EventSink, Handoff, PeerState, PeerStatus, ReplEvent};
use spindle_types::iproto::{key, request};
use spindle_types::limits::TX_FIBER_STACK_WORDS;
use spindle_types::{BoxError, BoxResult};
use spindle_xlog::{Row, Vclock};

use crate::commit::wait_commit;
use crate::repl_state::Repl;
use crate::state::{Tx, TxRef};

/// The VOTE answer's body.
pub fn ballot(db: &Db) -> Vec<u8> {
    let mut out = Vec::new();
    wire::encode_ballot(&mut out, db.read_only(), &db.vclock(), &Vclock::new());
    out
}

// ---- requests that take a connection over ----

/// A replication request arrived (from a network thread, or on a relay's connection after
/// a JOIN). Errors are written to the socket (non-blocking: an error packet fits in the
/// socket buffer) and the connection is closed.
pub fn handoff(tx: TxRef, user: u32, h: Handoff) {
    let result = match h.request {
        Request::Join { .. } => start_join(tx, user, h),
        Request::Subscribe { .. } => start_subscribe(tx, user, h),
        _ => Err(Box::new((
            BoxError::unsupported("spindle", "anonymous replicas"),
            h,
        ))),
    };
    if let Err(refused) = result {
        let (e, h) = *refused;
        warn!("replication request refused: {e}");
        refuse(h, &e);
    }
}

fn refuse(h: Handoff, e: &BoxError) {
    let mut out = h.output;
    wire::encode_error(&mut out, h.header.sync, e);
    let mut stream = h.stream;
    let _ = stream.set_nonblocking(true);
    let _ = stream.write_all(&out);
}

/// A refused request and its connection, to answer with the error.
type Refused = Box<(BoxError, Handoff)>;

fn relay_env(t: &Tx) -> BoxResult<RelayEnv> {
    t.repl
        .setup
        .as_ref()
        .map(|s| s.relay.clone())
        .ok_or_else(|| BoxError::unsupported("Replication", "wal_mode = 'none'"))
}

fn packet_body<'a>(h: &'a Handoff, span: &spindle_proto::iproto::Span) -> &'a [u8] {
    spindle_proto::iproto::slice(&h.packet, span)
}

fn start_join(tx: TxRef, user: u32, h: Handoff) -> Result<(), Refused> {
    let Request::Join { instance_uuid } = &h.request else {
        return Err(Box::new((BoxError::unknown(), h)));
    };
    let uuid = String::from_utf8_lossy(packet_body(&h, instance_uuid)).into_owned();
    let prepared = tx.with(|t| prepare_join(t, user, &uuid));
    let (env, spaces, start, registered) = match prepared {
        Ok(p) => p,
        Err(e) => return Err(Box::new((e, h))),
    };
    let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
    let job = JoinJob {
        handoff: h,
        user,
        replica_uuid: uuid.clone(),
        spaces,
        start,
        stop: stop_rx,
    };
    env.consumers.set(&uuid, start);
    if let Err(e) = spindle_repl::relay::spawn_join(env, job) {
        error!("cannot start a relay thread: {e}");
        return Ok(());
    }
    let spawned = spawn_fiber(TX_FIBER_STACK_WORDS, move || {
        let stop = match registered {
            Some(vclock) => Ok(vclock),
            None => register_replica(tx, &uuid),
        };
        let _ = stop_tx.send(stop);
    });
    if let Err(e) = spawned {
        error!("cannot spawn the JOIN fiber: {e}");
    }
    Ok(())
}

type JoinStart = (
    RelayEnv,
    Vec<(u32, spindle_memtx::frozen::FrozenTuples)>,
    Vclock,
    Option<Vclock>,
);

/// Checks a JOIN and captures its read view. The last element is the stop vclock when the
/// replica is registered already (a rejoin), else None: it must be inserted first.
fn prepare_join(t: &mut Tx, user: u32, uuid: &str) -> BoxResult<JoinStart> {
    let env = relay_env(t)?;
    uuid::Uuid::parse_str(uuid).map_err(|_| BoxError::invalid_uuid(uuid))?;
    if uuid == t.db.instance_uuid() {
        return Err(BoxError::connection_to_self());
    }
    t.db.check_universe(user, PRIV_R)?;
    let known = t.db.is_registered(uuid);
    if !known {
        if t.db.read_only() {
            return Err(BoxError::readonly());
        }
        t.db.check_write_access(user, sys::CLUSTER)?;
    }
    let view = ReadView::capture(&t.db);
    let spaces = view
        .spaces
        .into_iter()
        .filter(|(_, group, _)| *group == 0)
        .map(|(id, _, tuples)| (id, tuples))
        .collect();
    let start = t.db.vclock();
    Ok((env, spaces, start, known.then_some(start)))
}

/// Inserts `[next free id, uuid]` into `_cluster` and waits until it is written; returns
/// the vclock after it (the end of the initial JOIN stage).
fn register_replica(tx: TxRef, uuid: &str) -> BoxResult<Vclock> {
    let seq = tx.with(|t| {
        let mut txn = Txn::new();
        let id = t.db.register_replica(&mut txn, uuid)?;
        info!("registered replica {uuid} as id {id}");
        let seq = t.commit_for_fiber(txn, true);
        if !t.in_turn {
            t.flush_journal();
        }
        Ok::<_, BoxError>(seq)
    })?;
    if let Some(seq) = seq {
        wait_commit(tx, seq)?;
    }
    Ok(tx.with(|t| t.db.vclock()))
}

fn start_subscribe(tx: TxRef, user: u32, h: Handoff) -> Result<(), Refused> {
    let Request::Subscribe { body } = &h.request else {
        return Err(Box::new((BoxError::unknown(), h)));
    };
    let request = match SubscribeRequest::decode(packet_body(&h, body)) {
        Ok(r) => r,
        Err(e) => return Err(Box::new((e, h))),
    };
    let checked = tx.with(|t| check_subscribe(t, user, &request));
    let (env, master_id, master_vclock, cluster_uuid) = match checked {
        Ok(c) => c,
        Err(e) => return Err(Box::new((e, h))),
    };
    env.consumers.set(&request.instance_uuid, request.vclock);
    // Marked at once, so that a second SUBSCRIBE racing this relay's start is refused too.
    let mut following = PeerStatus::new(
        Direction::Downstream,
        &request.instance_uuid,
        PeerState::Following,
    );
    following.vclock = request.vclock;
    tx.with(|t| update_status(&mut t.repl, following.clone()));
    let job = SubscribeJob {
        handoff: h,
        replica_uuid: request.instance_uuid,
        replica_vclock: request.vclock,
        id_filter: request.id_filter,
        master_id,
        master_vclock,
        cluster_uuid,
    };
    if let Err(e) = spindle_repl::relay::spawn_subscribe(env, job) {
        error!("cannot start a relay thread: {e}");
        following.state = PeerState::Stopped;
        following.error = Some(e.to_string());
        tx.with(|t| update_status(&mut t.repl, following));
    }
    Ok(())
}

fn check_subscribe(
    t: &mut Tx,
    user: u32,
    r: &SubscribeRequest,
) -> BoxResult<(RelayEnv, u32, Vclock, String)> {
    let env = relay_env(t)?;
    if r.instance_uuid == t.db.instance_uuid() {
        return Err(BoxError::connection_to_self());
    }
    t.db.check_universe(user, PRIV_R)?;
    let cluster = t.db.cluster_uuid();
    if !t.db.is_registered(&r.instance_uuid) {
        return Err(BoxError::unknown_replica(&r.instance_uuid, &cluster));
    }
    // One relay per replica, as in Tarantool: the replica retries once the old one ended.
    let key = (false, r.instance_uuid.clone());
    if t.repl.peers.get(&key).map(|s| s.state) == Some(PeerState::Following) {
        return Err(BoxError::cfg(
            "replication",
            "duplicate connection with the same replica UUID",
        ));
    }
    Ok((env, t.db.replica_id(), t.db.vclock(), cluster))
}

/// The fields of a SUBSCRIBE body we use.
struct SubscribeRequest {
    instance_uuid: String,
    vclock: Vclock,
    id_filter: Vec<u32>,
}

impl SubscribeRequest {
    fn decode(body: &[u8]) -> BoxResult<SubscribeRequest> {
        let bad = |_| BoxError::invalid_msgpack("SUBSCRIBE body");
        let mut r = SubscribeRequest {
            instance_uuid: String::new(),
            vclock: Vclock::new(),
            id_filter: Vec::new(),
        };
        wire::for_each_body_key(body, |k, value| {
            let mut v = value;
            match u8::try_from(k).unwrap_or(u8::MAX) {
                key::INSTANCE_UUID => r.instance_uuid = wire::str_value(value)?,
                key::VCLOCK => {
                    r.vclock = Vclock::decode_mp(&mut v).map_err(|_| wire::invalid("vclock"))?
                }
                key::ID_FILTER => {
                    let n = mp::read_array_len(&mut v).map_err(|_| wire::invalid("id filter"))?;
                    for _ in 0..n {
                        let id = mp::read_uint(&mut v).map_err(|_| wire::invalid("id"))?;
                        r.id_filter.push(id as u32);
                    }
                }
                _ => {}
            }
            Ok(())
        })
        .map_err(bad)?;
        uuid::Uuid::parse_str(&r.instance_uuid)
            .map_err(|_| BoxError::invalid_uuid(&r.instance_uuid))?;
        Ok(r)
    }
}

// ---- events from replication threads ----

/// Handles a replication event; true if fibers were made runnable.
pub fn on_event(tx: TxRef, event: ReplEvent) -> bool {
    match event {
        ReplEvent::Status(status) => {
            tx.with(|t| update_status(&mut t.repl, status));
            false
        }
        ReplEvent::Next { user, handoff: h } => {
            handoff(tx, user, h);
            false
        }
        ReplEvent::Apply { link, rows } => queue_apply(tx, link, rows),
    }
}

fn update_status(repl: &mut Repl, status: PeerStatus) {
    let k = status.key();
    if status.is_news(repl.peers.get(&k)) {
        info!("replication: {status}");
    }
    repl.peers.insert(k, status);
}

fn queue_apply(tx: TxRef, link: Arc<ApplierLink>, rows: Vec<Row>) -> bool {
    // A shutdown waits for the WAL to confirm what is in flight; a master streaming on must
    // not keep it busy forever. Dropped rows are not durable, so they are fetched again.
    if tx.with(|t| t.shutting_down) {
        link.queued.fetch_sub(rows.len(), Ordering::SeqCst);
        return false;
    }
    let (wake, spawn) = tx.with(|t| {
        t.repl.queue.push_back((link, rows));
        match (&t.repl.applier_fiber, t.repl.applier_idle) {
            (Some(f), true) => {
                t.repl.applier_idle = false;
                (Some(f.clone()), false)
            }
            (Some(_), false) => (None, false),
            (None, _) => (None, true),
        }
    });
    if let Some(f) = wake {
        f.unpark();
        return true;
    }
    if spawn {
        tx.with(|t| t.repl.applier_idle = false);
        if let Err(e) = spawn_fiber(TX_FIBER_STACK_WORDS, move || apply_loop(tx)) {
            error!("cannot spawn the applier fiber: {e}");
        }
        return true;
    }
    false
}

/// A transaction sent to the WAL on behalf of an upstream.
struct Pending {
    link: Arc<ApplierLink>,
    /// Its commit queue sequence number, if it was logged.
    seq: Option<u64>,
    rows: usize,
    replica_id: u32,
    first_lsn: u64,
}

/// The applier fiber: applies everything queued, then waits for the WAL, then repeats.
fn apply_loop(tx: TxRef) {
    tx.with(|t| t.repl.applier_fiber = Some(current_fiber()));
    loop {
        let pending = tx.with(apply_queued);
        if pending.is_empty() {
            tx.with(|t| t.repl.applier_idle = true);
            park();
            continue;
        }
        for p in pending {
            let result = match p.seq {
                Some(seq) => wait_commit(tx, seq),
                None => Ok(()),
            };
            if let Err(e) = result {
                warn!(
                    "applier: WAL write of {{{}: {}}} failed: {e}",
                    p.replica_id, p.first_lsn
                );
                tx.with(|t| {
                    let v = t.db.vclock().get(p.replica_id);
                    t.db.reset_lsn(p.replica_id, v.min(p.first_lsn.saturating_sub(1)));
                });
                p.link.restart.store(true, Ordering::SeqCst);
            }
            p.link.queued.fetch_sub(p.rows, Ordering::SeqCst);
        }
        tx.with(crate::kv::follow_upstream);
    }
}

fn apply_queued(t: &mut Tx) -> Vec<Pending> {
    let mut pending = Vec::new();
    while let Some((link, rows)) = t.repl.queue.pop_front() {
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let mut txn = Vec::new();
            for row in rows.by_ref() {
                let commit = row.header.is_commit;
                txn.push(row);
                if commit {
                    break;
                }
            }
            pending.push(apply_txn(t, &link, txn));
        }
    }
    t.note_schema_change();
    if !t.in_turn {
        t.flush_journal();
    }
    pending
}

/// Applies one upstream transaction unless it is already here, and queues it for the WAL
/// with its original replica id and LSNs.
fn apply_txn(t: &mut Tx, link: &Arc<ApplierLink>, rows: Vec<Row>) -> Pending {
    let (replica_id, first_lsn, last_lsn) = match (rows.first(), rows.last()) {
        (Some(f), Some(l)) => (f.header.replica_id, f.header.lsn, l.header.lsn),
        _ => (0, 0, 0),
    };
    let mut pending = Pending {
        link: link.clone(),
        seq: None,
        rows: rows.len(),
        replica_id,
        first_lsn,
    };
    if rows.is_empty() || last_lsn <= t.db.vclock().get(replica_id) {
        return pending; // came through another master, or resent after a reconnect
    }
    let mut txn = Txn::new();
    for row in rows {
        let (id, lsn) = (row.header.replica_id, row.header.lsn);
        if let Err(e) = t.db.apply_row(&mut txn, row) {
            error!("applier: cannot apply row {{{id}: {lsn}}}: {e}");
            t.db.rollback_txn(txn);
            link.restart.store(true, Ordering::SeqCst);
            return pending;
        }
    }
    for row in txn.rows_mut() {
        row.header.group_id = 0;
        row.header.sync = 0;
        if is_synchro(row.header.req_type) {
            // Kept as a NOP: the LSN stays taken, and nothing here needs the limbo.
            row.header.req_type = request::NOP;
            row.body.clear();
        }
    }
    t.db.follow(replica_id, last_lsn);
    pending.seq = t.commit_for_fiber(txn, false);
    pending
}

/// Builds the sink relays and appliers report through.
pub fn sink(send: impl Fn(ReplEvent) -> bool + Send + Sync + 'static) -> EventSink {
    Arc::new(send)
}
