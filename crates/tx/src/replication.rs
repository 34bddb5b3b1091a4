//! The TX thread's part of replication: checking JOIN and SUBSCRIBE requests and starting
//! relay threads for them, registering replicas in `_cluster`, applying transactions that
//! appliers bring (through `apply_dml`, as recovery does, then to our own WAL with their
//! original replica id and LSN), the status table of every upstream and downstream, and
//! bootstrapping an empty instance from a master (JOIN before the TX thread starts).
//! Socket I/O never happens here: relays and appliers own their sockets (`spindle_repl`).

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use spindle_fiber::{current_fiber, park, spawn_fiber, Fiber};
use spindle_proto::iproto::Request;
use spindle_proto::mp;
use spindle_repl::applier::{ApplierLink, JoinRow, Uri};
use spindle_repl::relay::{JoinJob, RelayEnv, SubscribeJob};
use spindle_repl::{wire, Direction, EventSink, Handoff, PeerState, PeerStatus, ReplEvent};
use spindle_types::iproto::{key, request, IteratorType, REPLICA_ID_LIMIT};
use spindle_types::limits::{APPLIER_BACKOFF_MAX_SECS, TX_FIBER_STACK_WORDS};
use spindle_types::{BoxError, BoxResult};
use spindle_xlog::{LogFs, Row, Vclock};

use crate::access::PRIV_R;
use crate::catalog::sys;
use crate::db::{row_to_dml, Db, Dml, Undo};
use crate::runtime::{wait_commit, Tx, TxRef};

/// What the TX thread needs to serve replicas; absent with `wal_mode = none`.
pub struct ReplSetup {
    pub relay: RelayEnv,
}

/// Replication state owned by the TX thread.
#[derive(Default)]
pub struct Repl {
    setup: Option<ReplSetup>,
    /// Every upstream and downstream, keyed by (is upstream, peer).
    pub peers: BTreeMap<(bool, String), PeerStatus>,
    queue: VecDeque<(Arc<ApplierLink>, Vec<Row>)>,
    /// The fiber applying upstream transactions, parked while `queue` is empty.
    applier_fiber: Option<Fiber>,
    applier_idle: bool,
}

impl Repl {
    pub fn configure(&mut self, setup: ReplSetup) {
        self.setup = Some(setup);
    }
}

/// The instance's replica id: its row in `_cluster`. Keeps the current id if none is found.
pub fn identify(db: &mut Db) {
    let uuid = db.instance_uuid.clone();
    if let Some(id) = cluster_rows(db)
        .into_iter()
        .find_map(|(id, u)| (u == uuid).then_some(id))
    {
        db.replica_id = id;
    }
}

/// `_cluster` as (id, uuid) pairs.
fn cluster_rows(db: &Db) -> Vec<(u32, String)> {
    let Ok(entry) = db.catalog.space(sys::CLUSTER) else {
        return Vec::new();
    };
    let Ok(tuples) = entry
        .space
        .select(0, IteratorType::All, &[0x90], 0, u32::MAX)
    else {
        return Vec::new();
    };
    tuples
        .iter()
        .filter_map(|t| {
            let id = mp::read_uint(&mut t.field(0)?).ok()?;
            let uuid = mp::read_str(&mut t.field(1)?).ok()?;
            Some((id as u32, String::from_utf8_lossy(uuid).into_owned()))
        })
        .collect()
}

/// The replica set UUID (`_schema` key `cluster`), empty if missing.
pub fn cluster_uuid(db: &Db) -> String {
    let mut key_bytes = vec![0x91];
    mp::write_str(&mut key_bytes, "cluster");
    let found = db
        .catalog
        .space(sys::SCHEMA)
        .and_then(|e| e.space.select(0, IteratorType::Eq, &key_bytes, 0, 1));
    found
        .ok()
        .and_then(|t| t.first().and_then(|t| t.field(1).map(|f| f.to_vec())))
        .and_then(|f| mp::read_str(&mut f.as_slice()).ok().map(|s| s.to_vec()))
        .map(|s| String::from_utf8_lossy(&s).into_owned())
        .unwrap_or_default()
}

/// The VOTE answer's body.
pub fn ballot(db: &Db) -> Vec<u8> {
    let mut out = Vec::new();
    wire::encode_ballot(&mut out, db.read_only, &db.vclock, &Vclock::new());
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
    h.packet
        .get(span.start as usize..span.end as usize)
        .unwrap_or_default()
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
    if uuid == t.db.instance_uuid {
        return Err(BoxError::connection_to_self());
    }
    t.db.users.check_universe(user, PRIV_R)?;
    let known = cluster_rows(&t.db).iter().any(|(_, u)| u == uuid);
    if !known {
        if t.db.read_only {
            return Err(BoxError::readonly());
        }
        t.db.check_write_access(user, sys::CLUSTER)?;
    }
    let view = crate::checkpoint::ReadView::capture(&t.db);
    let spaces = view
        .spaces
        .into_iter()
        .filter(|(_, group, _)| *group == 0)
        .map(|(id, _, tuples)| (id, tuples))
        .collect();
    let start = t.db.vclock;
    Ok((env, spaces, start, known.then_some(start)))
}

/// Inserts `[next free id, uuid]` into `_cluster` and waits until it is written; returns
/// the vclock after it (the end of the initial JOIN stage).
fn register_replica(tx: TxRef, uuid: &str) -> BoxResult<Vclock> {
    let txn = tx.with(|t| {
        let used: Vec<u32> = cluster_rows(&t.db).into_iter().map(|(id, _)| id).collect();
        let id = (1..REPLICA_ID_LIMIT)
            .find(|id| !used.contains(id))
            .ok_or_else(|| BoxError::replica_max(REPLICA_ID_LIMIT - 1))?;
        let mut tuple = Vec::new();
        mp::write_array_len(&mut tuple, 2);
        mp::write_uint(&mut tuple, u64::from(id));
        mp::write_str(&mut tuple, uuid);
        let applied = t.db.apply_dml(Dml::Insert {
            space_id: sys::CLUSTER,
            tuple: &tuple,
        })?;
        info!("registered replica {uuid} as id {id}");
        let mut rows: Vec<Row> = applied.log.into_iter().collect();
        t.db.assign_lsns(&mut rows);
        let undo: Vec<Undo> = applied.undo.into_iter().collect();
        Ok::<_, BoxError>(t.submit_logged(rows, undo))
    })?;
    if let Some(txn) = txn {
        wait_commit(tx, txn)?;
    }
    Ok(tx.with(|t| t.db.vclock))
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
    if r.instance_uuid == t.db.instance_uuid {
        return Err(BoxError::connection_to_self());
    }
    t.db.users.check_universe(user, PRIV_R)?;
    let cluster = cluster_uuid(&t.db);
    if !cluster_rows(&t.db)
        .iter()
        .any(|(_, u)| *u == r.instance_uuid)
    {
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
    Ok((env, t.db.replica_id, t.db.vclock, cluster))
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
    if tx.with(|t| t.shutting_down()) {
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
    txn: Option<u64>,
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
            let result = match p.txn {
                Some(txn) => wait_commit(tx, txn),
                None => Ok(()),
            };
            if let Err(e) = result {
                warn!(
                    "applier: WAL write of {{{}: {}}} failed: {e}",
                    p.replica_id, p.first_lsn
                );
                tx.with(|t| {
                    let v = t.db.vclock.get(p.replica_id);
                    t.db.vclock
                        .set(p.replica_id, v.min(p.first_lsn.saturating_sub(1)));
                });
                p.link.restart.store(true, Ordering::SeqCst);
            }
            p.link.queued.fetch_sub(p.rows, Ordering::SeqCst);
        }
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
    if t.db.schema_changed() {
        t.publish_schema_version();
    }
    if !t.in_turn() {
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
        txn: None,
        rows: rows.len(),
        replica_id,
        first_lsn,
    };
    if rows.is_empty() || last_lsn <= t.db.vclock.get(replica_id) {
        return pending; // came through another master, or resent after a reconnect
    }
    let mut undo = Vec::new();
    for row in &rows {
        if let Err(e) = apply_row(&mut t.db, row, &mut undo) {
            error!(
                "applier: cannot apply row {{{}: {}}}: {e}",
                row.header.replica_id, row.header.lsn
            );
            t.db.rollback(undo);
            link.restart.store(true, Ordering::SeqCst);
            return pending;
        }
    }
    let mut logged = rows;
    for row in &mut logged {
        row.header.group_id = 0;
        row.header.sync = 0;
        if is_synchro(row.header.req_type) {
            // Kept as a NOP: the LSN stays taken, and nothing here needs the limbo.
            row.header.req_type = request::NOP;
            row.body.clear();
        }
    }
    t.db.vclock.follow(replica_id, last_lsn);
    pending.txn = t.submit_logged(logged, undo);
    pending
}

/// Synchronous-replication rows. spindle has no limbo: every transaction it applies is
/// already committed locally, so CONFIRM/ROLLBACK/PROMOTE have nothing to act on.
fn is_synchro(req_type: u32) -> bool {
    matches!(
        req_type,
        request::CONFIRM | request::ROLLBACK | request::PROMOTE
    )
}

fn apply_row(db: &mut Db, row: &Row, undo: &mut Vec<Undo>) -> BoxResult<()> {
    match row.header.req_type {
        request::NOP => Ok(()),
        t if is_synchro(t) => Ok(()),
        request::INSERT
        | request::REPLACE
        | request::UPDATE
        | request::DELETE
        | request::UPSERT => {
            let applied = db.apply_dml(row_to_dml(row)?)?;
            undo.extend(applied.undo);
            Ok(())
        }
        t => Err(BoxError::unknown_request_type(u64::from(t))),
    }
}

// ---- bootstrap of an empty replica ----

/// Joins `uri` (retrying with backoff until it succeeds) and writes the result as this
/// instance's first checkpoint in `memtx_dir`, as a Tarantool replica does after JOIN.
pub fn bootstrap_replica<Fs: LogFs + Clone>(
    fs: &Fs,
    memtx_dir: &Path,
    uri: &Uri,
    timeout: Duration,
) -> Result<PathBuf, String> {
    let instance_uuid = uuid::Uuid::new_v4().to_string();
    let mut backoff = timeout;
    loop {
        match join_once(uri, timeout, &instance_uuid) {
            Ok(db) => {
                let view = crate::checkpoint::ReadView::capture(&db);
                let path = crate::checkpoint::write_snapshot(fs, memtx_dir, &view)
                    .map_err(|e| format!("first checkpoint after JOIN: {e}"))?;
                info!(
                    "joined {} as instance {instance_uuid} at {}; checkpoint {}",
                    uri.display(),
                    db.vclock,
                    path.display()
                );
                return Ok(path);
            }
            Err(e) => {
                warn!("JOIN from {} failed: {e}; retrying", uri.display());
                std::thread::sleep(backoff);
                backoff = backoff
                    .mul_f64(2.0)
                    .min(Duration::from_secs_f64(APPLIER_BACKOFF_MAX_SECS));
            }
        }
    }
}

/// One JOIN attempt: the master's catalogue and data into a fresh Db.
fn join_once(uri: &Uri, timeout: Duration, instance_uuid: &str) -> Result<Db, String> {
    let mut db = Db::new(instance_uuid.to_string());
    crate::bootstrap::preload_catalog(&mut db).map_err(|e| e.to_string())?;
    let joined = spindle_repl::applier::join(uri, timeout, instance_uuid, &mut |row| match row {
        JoinRow::Snapshot { space_id, tuple } => db
            .apply_dml(Dml::Insert { space_id, tuple })
            .map(|_| ())
            .map_err(|e| format!("initial JOIN row of space {space_id}: {e}")),
        JoinRow::Logged(row) => {
            let h = row.header;
            if h.lsn <= db.vclock.get(h.replica_id) {
                return Ok(());
            }
            let owned = row.to_row();
            let mut undo = Vec::new();
            apply_row(&mut db, &owned, &mut undo)
                .map_err(|e| format!("final JOIN row {{{}: {}}}: {e}", h.replica_id, h.lsn))?;
            db.vclock.follow(h.replica_id, h.lsn);
            Ok(())
        }
    })
    .map_err(|e| e.to_string())?;
    // The vclock of the read view plus the final stage's rows.
    for (id, lsn) in joined.vclock.iter() {
        db.vclock.follow(id, lsn);
    }
    Ok(db)
}

/// Builds the sink relays and appliers report through.
pub fn sink(send: impl Fn(ReplEvent) -> bool + Send + Sync + 'static) -> EventSink {
    Arc::new(send)
}
