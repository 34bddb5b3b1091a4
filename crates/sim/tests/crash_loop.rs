//! The seeded crash loop (see the crate docs): the real TX runtime, WAL thread and recovery on
//! a fault-injecting in-memory file system, checked against a model built from the replies.
//!
//! Structure of one seed:
//!
//! ```text
//! fs = FaultFs::new(seed)
//! for life in 0..lives:
//!     recover(fs) ──(life > 0)──► check the crash image against the previous life's model
//!     start WAL + TX on fs; a driver thread plays the network thread:
//!         connect, AUTH, (life 0: create space 512), arm the fault plan,
//!         pipelined random writes (up to `depth` in flight), checkpoints at random moments,
//!         image = fs.crash(kind) after `crash_after` replies (the run goes on on the old fs),
//!         clear faults, probe: SELECT + writes must succeed, final SELECT == model
//!         TxMsg::Shutdown
//!     recover(old fs after the clean shutdown) == model exactly
//!     fs = image
//! recover(fs) and check the last crash; maybe corrupt a block: recovery must refuse
//! ```
//!
//! Single-row transactions only; every write's value is unique (`life * 1_000_000 + index`),
//! so a recovered tuple names the request that produced it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use spindle_box::checkpoint::{run_checkpoint, CheckpointOutcome, ReadView};
use spindle_box::recovery::{recover, RecoveryConfig};
use spindle_box::Db;
use spindle_fiber::Bus;
use spindle_proto::iproto::{self, Frame};
use spindle_proto::mp;
use spindle_proto::route::{NetEvent, ReplyBatch, Route};
use spindle_tx::admin::set_admin_password;
use spindle_tx::dispatch::dispatch;
use spindle_tx::state::install;
use spindle_tx::{Builtin, Tx, TxHooks, TxMsg};
use spindle_types::iproto::IteratorType;
use spindle_types::limits::TX_FIBER_STACK_WORDS;
use spindle_wal::{SyncMode, WalConfig};
use spindle_xlog::block::decode_fixheader;
use spindle_xlog::faultfs::{CrashKind, Fault, FaultFs, FaultPlan, Op, SimRng};
use spindle_xlog::format::FIXHEADER_SIZE;
use spindle_xlog::{scan_dir, FileType, LogFs, XlogReader};

const DIR: &str = "/sim";
const SPACE: u32 = 512;
const PASSWORD: &str = "pw";
const ER_TUPLE_FOUND: u32 = 3;
const ER_WAL_IO: u32 = 40;
/// A reply that takes longer than this means the server is stuck.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_SEEDS: u64 = 400;
/// Sync numbers: fixed ones for the set-up requests, `OP_SYNC + index` for workload writes.
const SYNC_AUTH: u64 = 1;
const SYNC_SPACE: u64 = 2;
const SYNC_INDEX: u64 = 3;
const SYNC_PROBE_SELECT: u64 = 4;
const SYNC_FINAL_SELECT: u64 = 5;
const SYNC_FAULT_SELECT: u64 = 6;
const OP_SYNC: u64 = 1000;
/// Writes sent after the workload, with faults cleared: they must all succeed.
const PROBES: usize = 4;

fn dir() -> PathBuf {
    PathBuf::from(DIR)
}

fn recovery_cfg() -> RecoveryConfig {
    RecoveryConfig {
        memtx_dir: dir(),
        wal_dir: dir(),
        force_recovery: false,
    }
}

// ---------------------------------------------------------------------------------------------
// Scenario: everything random, derived from the seed before anything runs
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Insert,
    Replace,
    Upsert,
    Update,
    Delete,
}

#[derive(Clone, Copy, Debug)]
struct OpSpec {
    kind: Kind,
    key: u64,
    /// Unique per seed: the value field of the tuple this write would produce.
    val: u64,
}

#[derive(Clone, Debug)]
struct LifePlan {
    ops: Vec<OpSpec>,
    /// Workload writes in flight at most (pipelining: group commits hold many of them).
    depth: usize,
    max_size: u64,
    faults: FaultPlan,
    /// The crash image is taken once this many workload replies have arrived.
    crash_after: usize,
    /// A checkpoint is requested once this many workload replies have arrived.
    checkpoints: Vec<usize>,
    /// `checkpoint_count`: snapshots kept by the garbage collection (1 leaves no spare).
    checkpoint_count: usize,
    salt: [u8; 32],
    /// The space is `is_local` (rows in vclock component 0, its own LSN sequence).
    local_space: bool,
}

#[derive(Clone, Debug)]
struct Scenario {
    seed: u64,
    sync: SyncMode,
    crash: CrashKind,
    keys: u64,
    lives: Vec<LifePlan>,
    /// Flip a byte in a block of the final image: recovery must refuse.
    corrupt: bool,
}

impl Scenario {
    fn new(seed: u64) -> Scenario {
        let mut rng = SimRng::new(seed ^ 0x5eed_0000_0000_0000);
        let (sync, crash) = if seed.is_multiple_of(2) {
            (SyncMode::Write, CrashKind::ProcessCrash)
        } else {
            (SyncMode::Fsync, CrashKind::PowerLoss { tear: true })
        };
        // Few keys: many overwrites, duplicates and no-op updates. Many keys: a lost or
        // resurrected write is rarely hidden by a later one.
        let keys = if rng.chance(1, 2) {
            rng.range(4, 24)
        } else {
            rng.range(100, 600)
        };
        // Half the scenarios write to a local space; derived from the seed without a draw,
        // so the rest of each scenario stays what it was.
        let local_space = (seed / 2) % 2 == 1;
        let lives = (0..rng.range(1, 3))
            .map(|life| LifePlan {
                local_space,
                ..LifePlan::new(&mut rng, life, keys, sync)
            })
            .collect();
        Scenario {
            seed,
            sync,
            crash,
            keys,
            lives,
            corrupt: rng.chance(1, 6),
        }
    }

    fn mode(&self) -> &'static str {
        match self.sync {
            SyncMode::Write => "wal_mode=write, process crash",
            SyncMode::Fsync => "wal_mode=fsync, power loss",
        }
    }
}

impl LifePlan {
    fn new(rng: &mut SimRng, life: u64, keys: u64, sync: SyncMode) -> LifePlan {
        let count = rng.range(40, 220) as usize;
        let ops = (0..count)
            .map(|i| {
                let kind = match rng.below(100) {
                    0..=29 => Kind::Replace,
                    30..=49 => Kind::Insert,
                    50..=64 => Kind::Update,
                    65..=74 => Kind::Upsert,
                    _ => Kind::Delete,
                };
                OpSpec {
                    kind,
                    key: rng.below(keys),
                    val: life * 1_000_000 + i as u64 + 1,
                }
            })
            .collect();
        let depth = *rng.pick(&[1, 2, 4, 8, 16, 24, 32, 32]).unwrap_or(&8);
        let max_size = *rng.pick(&[700, 4096, 32768, 1 << 30]).unwrap_or(&(1 << 30));
        let mut checkpoints = Vec::new();
        for _ in 0..rng.below(3) {
            if rng.chance(1, 2) {
                checkpoints.push(rng.below(count as u64 + 1) as usize);
            }
        }
        checkpoints.sort_unstable();
        let mut salt = [0u8; 32];
        for b in salt.iter_mut() {
            *b = rng.below(256) as u8;
        }
        LifePlan {
            checkpoint_count: rng.range(1, 2) as usize,
            faults: fault_plan(rng, sync, count),
            crash_after: rng.below(count as u64 + 1) as usize,
            ops,
            depth,
            max_size,
            checkpoints,
            salt,
            local_space: false,
        }
    }
}

/// Zero to two faults. Call numbers count from the moment the plan is armed (after the set-up
/// requests); a group commit is one `write_all`, so write faults land mid-workload.
fn fault_plan(rng: &mut SimRng, sync: SyncMode, ops: usize) -> FaultPlan {
    let mut faults = Vec::new();
    let writes = (ops as u64 / 6).max(2);
    for _ in 0..*rng.pick(&[0, 1, 1, 1, 1, 2, 2]).unwrap_or(&1) {
        match rng.below(12) {
            0..=2 => faults.push(Fault::once(Op::Write, rng.range(1, writes))),
            3..=4 => faults.push(Fault::short_write(
                rng.range(1, writes),
                rng.range(1, 600) as usize,
            )),
            5..=7 => {
                // In write mode only file creation and close sync.
                let syncs = if sync == SyncMode::Fsync { writes } else { 3 };
                faults.push(Fault::once(Op::Sync, rng.range(1, syncs)));
            }
            8 => {
                // A torn write whose truncation fails too: the writer is unusable.
                faults.push(Fault::short_write(
                    rng.range(1, writes),
                    rng.range(1, 600) as usize,
                ));
                faults.push(Fault::once(Op::SetLen, 1));
            }
            9 => faults.push(Fault::once(Op::Open, rng.range(1, 3))),
            10 => faults.push(Fault::once(Op::Rename, rng.range(1, 3))),
            _ => faults.push(Fault::once(Op::SyncDir, rng.range(1, 3))),
        }
    }
    FaultPlan::new(faults)
}

// ---------------------------------------------------------------------------------------------
// Tuples and requests
// ---------------------------------------------------------------------------------------------

/// The third field of every tuple: its length varies with the value (some rows are big enough
/// for zstd blocks), its content is checked after recovery.
fn pad(val: u64) -> String {
    let len = if val.is_multiple_of(29) {
        1500
    } else {
        (val.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize * 3
    };
    let c = char::from(b'a' + (val % 26) as u8);
    std::iter::repeat_n(c, len).collect()
}

fn tuple(key: u64, val: u64) -> Vec<u8> {
    let mut t = Vec::new();
    mp::write_array_len(&mut t, 3);
    mp::write_uint(&mut t, key);
    mp::write_uint(&mut t, val);
    mp::write_str(&mut t, &pad(val));
    t
}

fn key(k: u64) -> Vec<u8> {
    let mut out = Vec::new();
    mp::write_array_len(&mut out, 1);
    mp::write_uint(&mut out, k);
    out
}

/// `[['=', 1, val], ['=', 2, pad(val)]]` (0-based fields): the result is `tuple(key, val)`.
fn set_ops(val: u64) -> Vec<u8> {
    let mut out = Vec::new();
    mp::write_array_len(&mut out, 2);
    mp::write_array_len(&mut out, 3);
    mp::write_str(&mut out, "=");
    mp::write_uint(&mut out, 1);
    mp::write_uint(&mut out, val);
    mp::write_array_len(&mut out, 3);
    mp::write_str(&mut out, "=");
    mp::write_uint(&mut out, 2);
    mp::write_str(&mut out, &pad(val));
    out
}

fn encode_op(out: &mut Vec<u8>, sync: u64, op: &OpSpec) {
    let t = tuple(op.key, op.val);
    match op.kind {
        Kind::Insert => iproto::encode_insert(out, sync, SPACE, &t),
        Kind::Replace => iproto::encode_replace(out, sync, SPACE, &t),
        Kind::Upsert => iproto::encode_upsert(out, sync, SPACE, 0, &t, &set_ops(op.val)),
        Kind::Update => {
            iproto::encode_update(out, sync, SPACE, 0, 0, &key(op.key), &set_ops(op.val))
        }
        Kind::Delete => iproto::encode_delete(out, sync, SPACE, 0, &key(op.key)),
    }
}

fn space_row(local: bool) -> Vec<u8> {
    let mut t = Vec::new();
    mp::write_array_len(&mut t, 7);
    mp::write_uint(&mut t, SPACE.into());
    mp::write_uint(&mut t, 1);
    mp::write_str(&mut t, "sim");
    mp::write_str(&mut t, "memtx");
    mp::write_uint(&mut t, 0);
    if local {
        mp::write_map_len(&mut t, 1);
        mp::write_str(&mut t, "group_id");
        mp::write_uint(&mut t, 1);
    } else {
        mp::write_map_len(&mut t, 0);
    }
    mp::write_array_len(&mut t, 0);
    t
}

fn index_row() -> Vec<u8> {
    let mut t = Vec::new();
    mp::write_array_len(&mut t, 6);
    mp::write_uint(&mut t, SPACE.into());
    mp::write_uint(&mut t, 0);
    mp::write_str(&mut t, "pk");
    mp::write_str(&mut t, "tree");
    mp::write_map_len(&mut t, 1);
    mp::write_str(&mut t, "unique");
    mp::write_bool(&mut t, true);
    mp::write_array_len(&mut t, 1);
    mp::write_array_len(&mut t, 2);
    mp::write_uint(&mut t, 0);
    mp::write_str(&mut t, "unsigned");
    t
}

/// The packet inside a length-prefixed frame.
fn unframe(bytes: &[u8]) -> Result<&[u8], String> {
    match iproto::decode_frame(bytes, usize::MAX) {
        Ok(Frame::Packet { prefix_len, len }) if prefix_len + len == bytes.len() => {
            Ok(&bytes[prefix_len..])
        }
        other => Err(format!("bad frame {other:?} of {} bytes", bytes.len())),
    }
}

/// `(key, val)` of a tuple, checking its shape and padding.
fn parse_tuple(data: &[u8]) -> Result<(u64, u64), String> {
    let mut cur = data;
    let parsed = (|| {
        let n = mp::read_array_len(&mut cur).ok()?;
        let k = mp::read_uint(&mut cur).ok()?;
        let v = mp::read_uint(&mut cur).ok()?;
        let p = mp::read_str(&mut cur).ok()?;
        Some((n, k, v, p.to_vec()))
    })();
    match parsed {
        Some((3, k, v, p)) if cur.is_empty() && p == pad(v).as_bytes() => Ok((k, v)),
        _ => Err(format!("malformed tuple {data:02x?}")),
    }
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

/// A key's state: the value field of its tuple, or absent.
type State = BTreeMap<u64, u64>;

/// What a write did to its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    Set(u64),
    Del,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// OK, and the reply shows the change.
    Applied(Effect),
    /// OK without a change (UPDATE/DELETE of a missing key): logged, but a no-op.
    NoOp,
    /// ER_TUPLE_FOUND: nothing logged.
    Duplicate,
    /// ER_WAL_IO: rolled back.
    RolledBack,
}

#[derive(Clone, Debug)]
struct Record {
    spec: OpSpec,
    outcome: Option<Outcome>,
    /// The OK reply arrived before the crash image was taken.
    acked_before_crash: bool,
    /// The ER_WAL_IO reply arrived before the crash image was taken: the rollback was
    /// decided, so the write must not be in the image. (One answered after the crash was
    /// undecided at the crash: a real crash would have cut its connection.)
    failed_before_crash: bool,
    /// Submitted before the crash image was taken (so it may be in it).
    sent_before_crash: bool,
}

impl Record {
    /// The state the write aimed for (what it does if applied to a state where it is not a
    /// no-op).
    fn target(&self) -> Effect {
        match self.spec.kind {
            Kind::Delete => Effect::Del,
            _ => Effect::Set(self.spec.val),
        }
    }
}

/// Everything one life produced.
struct LifeResult {
    records: Vec<Record>,
    /// The crash image (taken while the server was running).
    image: FaultFs,
    /// The state the server reported at the end (final SELECT).
    final_select: State,
    stats: Stats,
}

#[derive(Default, Clone, Copy, Debug)]
struct Stats {
    lives: u64,
    writes: u64,
    acked: u64,
    rolled_back: u64,
    faults_fired: u64,
    checkpoints: u64,
    corruptions_refused: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.lives += o.lives;
        self.writes += o.writes;
        self.acked += o.acked;
        self.rolled_back += o.rolled_back;
        self.faults_fired += o.faults_fired;
        self.checkpoints += o.checkpoints;
        self.corruptions_refused += o.corruptions_refused;
    }
}

/// The state after every applied write, in submission order (= commit order: one connection,
/// requests start in arrival order).
fn final_state(initial: &State, records: &[Record]) -> State {
    let mut state = initial.clone();
    for r in records {
        match r.outcome {
            Some(Outcome::Applied(Effect::Set(v))) => {
                state.insert(r.spec.key, v);
            }
            Some(Outcome::Applied(Effect::Del)) => {
                state.remove(&r.spec.key);
            }
            _ => {}
        }
    }
    state
}

fn show(v: Option<&u64>) -> String {
    v.map_or("absent".to_string(), |v| v.to_string())
}

fn history(key: u64, initial: &State, records: &[Record]) -> String {
    let mut out = format!("  key {key}: initially {}\n", show(initial.get(&key)));
    for (i, r) in records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.spec.key == key)
    {
        let _ = writeln!(
            out,
            "    #{i} {:?} val={} -> {:?}{}{}",
            r.spec.kind,
            r.spec.val,
            r.outcome,
            if r.acked_before_crash || r.failed_before_crash {
                " (answered before the crash)"
            } else {
                ""
            },
            if r.sent_before_crash {
                ""
            } else {
                " (sent after the crash)"
            },
        );
    }
    out
}

/// Checks a state recovered from a crash image against the model:
/// 1. per key, the value is the last write acknowledged before the crash (or the initial
///    value), or the effect of a later write that was sent before the crash and acknowledged
///    after it — never an older value, never a rolled-back (ER_WAL_IO) one, never a value
///    nobody submitted;
/// 2. the image is a prefix of the commit order: if the value of some key comes from write
///    #c, every write before #c that was eventually acknowledged is in the image too.
fn check_crash_image(initial: &State, records: &[Record], got: &State) -> Result<(), String> {
    let mut keys: BTreeSet<u64> = initial.keys().copied().collect();
    keys.extend(records.iter().map(|r| r.spec.key));
    keys.extend(got.keys().copied());
    let value_of = |e: Effect| match e {
        Effect::Set(v) => Some(v),
        Effect::Del => None,
    };
    let mut errors = String::new();
    // Per key, the indices of the writes that can explain its recovered value (-1: the initial
    // value), for check 2.
    let mut explained_by: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    for &k in &keys {
        let on_key: Vec<(usize, &Record)> = records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.spec.key == k)
            .collect();
        let last_acked = on_key
            .iter()
            .rev()
            .find(|(_, r)| r.acked_before_crash && matches!(r.outcome, Some(Outcome::Applied(_))));
        let (base_index, base) = match last_acked {
            Some((
                i,
                Record {
                    outcome: Some(Outcome::Applied(e)),
                    ..
                },
            )) => (*i as i64, value_of(*e)),
            _ => (-1, initial.get(&k).copied()),
        };
        let actual = got.get(&k).copied();
        let mut explanations: Vec<i64> = Vec::new();
        if actual == base {
            explanations.push(base_index);
        }
        for (i, r) in &on_key {
            // A write answered ER_WAL_IO before the crash must never resurface.
            let possible = match r.outcome {
                Some(Outcome::Applied(e)) => value_of(e) == actual,
                Some(Outcome::RolledBack) if !r.failed_before_crash => {
                    value_of(r.target()) == actual
                }
                None => value_of(r.target()) == actual,
                Some(Outcome::RolledBack | Outcome::NoOp | Outcome::Duplicate) => false,
            };
            if *i as i64 > base_index && r.sent_before_crash && !r.acked_before_crash && possible {
                explanations.push(*i as i64);
            }
        }
        if explanations.is_empty() {
            let _ = write!(
                errors,
                "key {k}: recovered {} but expected {} (the last write acknowledged before the \
                 crash) or a later unacknowledged one\n{}",
                show(actual.as_ref()),
                show(base.as_ref()),
                history(k, initial, records)
            );
        }
        explained_by.insert(k, explanations);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // 2. Prefix: the newest write the image provably contains is #c (the largest, over the
    // keys, of the smallest explanation).
    let Some((&ck, c)) = explained_by
        .iter()
        .map(|(k, e)| (k, e.iter().copied().min().unwrap_or(-1)))
        .max_by_key(|(_, i)| *i)
    else {
        return Ok(());
    };
    if c < 0 {
        return Ok(());
    }
    for &k in &keys {
        // The last write on k before #c that was eventually acknowledged with a change: the
        // image holds it, so k's value comes from it or a later write.
        let last = records
            .iter()
            .enumerate()
            .take(c as usize)
            .rev()
            .find(|(_, r)| r.spec.key == k && matches!(r.outcome, Some(Outcome::Applied(_))));
        if let Some((j, _)) = last {
            let newest = explained_by
                .get(&k)
                .and_then(|e| e.iter().copied().max())
                .unwrap_or(-1);
            if newest < j as i64 {
                let _ = write!(
                    errors,
                    "not a prefix: key {ck} holds the effect of write #{c}, but key {k} lacks \
                     the earlier acknowledged write #{j} (recovered {})\n{}{}",
                    show(got.get(&k)),
                    history(ck, initial, records),
                    history(k, initial, records)
                );
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn diff_states(expected: &State, got: &State) -> String {
    let mut out = String::new();
    let keys: BTreeSet<u64> = expected.keys().chain(got.keys()).copied().collect();
    for k in keys {
        if expected.get(&k) != got.get(&k) {
            let _ = writeln!(
                out,
                "  key {k}: expected {}, got {}",
                show(expected.get(&k)),
                show(got.get(&k))
            );
        }
    }
    out
}

/// The contents of space 512 in a recovered database.
fn read_space(db: &Db) -> Result<State, String> {
    let entry = db
        .space(SPACE)
        .map_err(|e| format!("space {SPACE} missing after recovery: {e}"))?;
    let tuples = entry
        .space
        .select(0, IteratorType::All, &[0x90], 0, u32::MAX)
        .map_err(|e| format!("select: {e}"))?;
    let mut state = State::new();
    for t in tuples {
        let (k, v) = parse_tuple(t.data())?;
        if state.insert(k, v).is_some() {
            return Err(format!("key {k} twice"));
        }
    }
    Ok(state)
}

// ---------------------------------------------------------------------------------------------
// The driver: plays the network thread
// ---------------------------------------------------------------------------------------------

struct Driver {
    bus: Bus<TxMsg>,
    replies: Receiver<ReplyBatch>,
    route: Route,
    /// Decoded replies not consumed yet, by sync.
    ready: HashMap<u64, Reply>,
}

#[derive(Debug)]
struct Reply {
    code: u32,
    message: String,
    /// The tuples of DATA.
    tuples: Vec<Vec<u8>>,
}

impl Driver {
    fn send_packet(&self, framed: &[u8]) {
        let packet = unframe(framed).expect("own request framing").to_vec();
        let (header, request) = iproto::decode_request(&packet).expect("own request decodes");
        self.bus.send(TxMsg::Net(NetEvent::Request {
            route: self.route,
            header,
            request,
            packet,
        }));
    }

    fn send(&self, encode: impl FnOnce(&mut Vec<u8>)) {
        let mut out = Vec::new();
        encode(&mut out);
        self.send_packet(&out);
    }

    /// Waits for the next batch and files its replies by sync.
    fn pump(&mut self) -> Result<Vec<u64>, String> {
        let batch = self
            .replies
            .recv_timeout(REPLY_TIMEOUT)
            .map_err(|e| format!("no reply within {REPLY_TIMEOUT:?} ({e}): the server is stuck"))?;
        let mut syncs = Vec::new();
        for (route, bytes) in batch.iter() {
            if route != self.route {
                return Err(format!("reply for a foreign route {route:?}"));
            }
            let packet = unframe(bytes)?;
            let r = iproto::decode_response(packet).map_err(|e| format!("bad reply: {e:?}"))?;
            let mut tuples = Vec::new();
            if let Some(span) = &r.data {
                let mut cur = iproto::slice(packet, span);
                let n = mp::read_array_len(&mut cur).map_err(|e| format!("DATA: {e:?}"))?;
                for _ in 0..n {
                    let t = mp::take_value(&mut cur).map_err(|e| format!("DATA: {e:?}"))?;
                    tuples.push(t.to_vec());
                }
            }
            syncs.push(r.sync);
            let reply = Reply {
                code: r.code,
                message: r.error_message.unwrap_or_default(),
                tuples,
            };
            if self.ready.insert(r.sync, reply).is_some() {
                return Err(format!("two replies with sync {}", r.sync));
            }
        }
        Ok(syncs)
    }

    fn wait(&mut self, sync: u64) -> Result<Reply, String> {
        loop {
            if let Some(r) = self.ready.remove(&sync) {
                return Ok(r);
            }
            self.pump()?;
        }
    }

    fn wait_ok(&mut self, sync: u64, what: &str) -> Result<Reply, String> {
        let r = self.wait(sync)?;
        if r.code != 0 {
            return Err(format!("{what} failed: error {} {}", r.code, r.message));
        }
        Ok(r)
    }

    fn select_all(&mut self, sync: u64, what: &str) -> Result<State, String> {
        self.send(|out| {
            iproto::encode_select(
                out,
                sync,
                SPACE,
                0,
                IteratorType::All as u32,
                0,
                u32::MAX,
                &[0x90],
            )
        });
        let r = self.wait_ok(sync, what)?;
        let mut state = State::new();
        for t in &r.tuples {
            let (k, v) = parse_tuple(t)?;
            state.insert(k, v);
        }
        Ok(state)
    }
}

fn outcome_of(spec: &OpSpec, reply: &Reply) -> Result<Outcome, String> {
    let effect = |tuples: &[Vec<u8>], e: Effect| -> Result<Outcome, String> {
        match tuples {
            [] => Ok(Outcome::NoOp),
            [t] => {
                let (k, v) = parse_tuple(t)?;
                let ok = k == spec.key && (e == Effect::Del || e == Effect::Set(v));
                if ok {
                    Ok(Outcome::Applied(e))
                } else {
                    Err(format!("{spec:?} answered with tuple ({k}, {v})"))
                }
            }
            _ => Err(format!("{spec:?} answered with {} tuples", tuples.len())),
        }
    };
    match (reply.code, spec.kind) {
        (0, Kind::Delete) => effect(&reply.tuples, Effect::Del),
        // UPSERT answers with no tuple; with these ops its result is the tuple either way.
        (0, Kind::Upsert) if reply.tuples.is_empty() => Ok(Outcome::Applied(Effect::Set(spec.val))),
        (0, Kind::Insert | Kind::Replace) if reply.tuples.is_empty() => {
            Err(format!("{spec:?} answered OK without a tuple"))
        }
        (0, _) => effect(&reply.tuples, Effect::Set(spec.val)),
        (ER_WAL_IO, _) => Ok(Outcome::RolledBack),
        (ER_TUPLE_FOUND, Kind::Insert) => Ok(Outcome::Duplicate),
        (code, _) => Err(format!(
            "{spec:?} failed with unexpected error {code}: {}",
            reply.message
        )),
    }
}

/// The network thread's side of one life. Returns the model records, the crash image and the
/// final in-memory state; sends `Shutdown` at the end in every case.
fn drive(
    plan: &LifePlan,
    first_life: bool,
    crash: CrashKind,
    fs: &FaultFs,
    driver: &mut Driver,
    stats: &mut Stats,
) -> Result<(Vec<Record>, FaultFs, State), String> {
    let route = driver.route;
    driver.bus.send(TxMsg::Net(NetEvent::Connect {
        route,
        salt: plan.salt,
    }));
    let scramble = spindle_proto::auth::scramble(&plan.salt[..20], PASSWORD);
    driver.send(|out| iproto::encode_auth(out, SYNC_AUTH, "admin", Some(&scramble)));
    driver.wait_ok(SYNC_AUTH, "AUTH")?;
    if first_life {
        let space = space_row(plan.local_space);
        driver.send(|out| iproto::encode_insert(out, SYNC_SPACE, 280, &space));
        driver.wait_ok(SYNC_SPACE, "create space")?;
        driver.send(|out| iproto::encode_insert(out, SYNC_INDEX, 288, &index_row()));
        driver.wait_ok(SYNC_INDEX, "create index")?;
    }

    fs.set_plan(plan.faults.clone());
    let mut records: Vec<Record> = plan
        .ops
        .iter()
        .map(|spec| Record {
            spec: *spec,
            outcome: None,
            acked_before_crash: false,
            failed_before_crash: false,
            sent_before_crash: false,
        })
        .collect();
    let mut image = None;
    let (mut next, mut done) = (0usize, 0usize);
    let mut checkpoints = plan.checkpoints.clone();
    let mut first_failure: Option<usize> = None;
    let mut fault_select_sent = false;
    let total = records.len();
    while done < total || image.is_none() {
        if image.is_none() && done >= plan.crash_after {
            image = Some(fs.crash(crash));
        }
        while checkpoints.first().is_some_and(|c| *c <= done) {
            checkpoints.remove(0);
            driver.bus.send(TxMsg::Checkpoint);
            stats.checkpoints += 1;
        }
        if done >= total {
            continue;
        }
        while next < total && next - done < plan.depth {
            let spec = plan.ops[next];
            driver.send(|out| encode_op(out, OP_SYNC + next as u64, &spec));
            records[next].sent_before_crash = image.is_none();
            next += 1;
        }
        // Every workload reply filed so far (a SELECT below may have filed some too); wait
        // for more only if there are none.
        let filed = |d: &Driver| -> Vec<u64> {
            let mut syncs: Vec<u64> = d.ready.keys().copied().filter(|s| *s >= OP_SYNC).collect();
            syncs.sort_unstable();
            syncs
        };
        let mut arrived = filed(driver);
        if arrived.is_empty() {
            driver.pump()?;
            arrived = filed(driver);
        }
        for sync in arrived {
            let i = (sync - OP_SYNC) as usize;
            let Some(reply) = driver.ready.remove(&sync) else {
                continue;
            };
            let record = records
                .get_mut(i)
                .ok_or_else(|| format!("reply with unknown sync {sync}"))?;
            if record.outcome.is_some() {
                return Err(format!("second reply to write #{i}"));
            }
            let outcome = outcome_of(&record.spec, &reply)?;
            if outcome == Outcome::RolledBack {
                stats.rolled_back += 1;
                first_failure.get_or_insert(i);
            } else if outcome != Outcome::Duplicate {
                stats.acked += 1;
            }
            record.acked_before_crash = image.is_none() && outcome != Outcome::RolledBack;
            record.failed_before_crash = image.is_none() && outcome == Outcome::RolledBack;
            record.outcome = Some(outcome);
            done += 1;
        }
        if first_failure.is_some() && !fault_select_sent {
            // Reads keep working while (and right after) the log fails.
            fault_select_sent = true;
            driver.select_all(SYNC_FAULT_SELECT, "SELECT after a WAL failure")?;
        }
    }
    stats.writes += total as u64;
    let image = image.ok_or("no crash image")?;

    // Faults off: the server must have recovered from whatever happened.
    fs.clear_faults();
    driver.select_all(SYNC_PROBE_SELECT, "SELECT after the workload")?;
    let probe_base = records.len();
    let probe_val = records.last().map_or(0, |r| r.spec.val) + 1;
    for p in 0..PROBES {
        let spec = OpSpec {
            kind: Kind::Replace,
            key: p as u64,
            val: probe_val + p as u64,
        };
        driver.send(|out| encode_op(out, OP_SYNC + (probe_base + p) as u64, &spec));
        records.push(Record {
            spec,
            outcome: None,
            acked_before_crash: false,
            failed_before_crash: false,
            sent_before_crash: false,
        });
    }
    for p in 0..PROBES {
        let i = probe_base + p;
        let reply = driver.wait(OP_SYNC + i as u64)?;
        let outcome = outcome_of(&records[i].spec, &reply)?;
        if outcome == Outcome::RolledBack {
            return Err(format!(
                "write #{i} after the faults were cleared failed with ER_WAL_IO: the WAL did not \
                 recover ({}: {})",
                reply.code, reply.message
            ));
        }
        records[i].outcome = Some(outcome);
    }
    let final_select = driver.select_all(SYNC_FINAL_SELECT, "final SELECT")?;
    Ok((records, image, final_select))
}

// ---------------------------------------------------------------------------------------------
// One life of the server, on the TX thread
// ---------------------------------------------------------------------------------------------

fn run_life(
    sc: &Scenario,
    life: usize,
    fs: &FaultFs,
    db: Db,
    last_xlog_vclock: Option<spindle_xlog::Vclock>,
) -> Result<LifeResult, String> {
    let plan = &sc.lives[life];
    let (bus, bus_receiver) = Bus::<TxMsg>::new().map_err(|e| format!("bus: {e}"))?;
    let wal_cfg = WalConfig {
        dir: dir(),
        sync: sc.sync,
        max_size: plan.max_size,
        instance_uuid: db.instance_uuid().to_string(),
    };
    let wal = spindle_wal::start(
        fs.clone(),
        wal_cfg,
        db.vclock(),
        last_xlog_vclock,
        bus.clone(),
    )
    .map_err(|e| format!("WAL start: {e}"))?;
    let (reply_tx, reply_rx) = crossbeam_channel::unbounded::<ReplyBatch>();
    // The leaked Tx keeps its hooks forever: let the snapshot hook hold the fs only until
    // this life ends.
    let snapshot_fs = Arc::new(Mutex::new(Some(fs.clone())));
    let hooks = TxHooks {
        send_replies: Arc::new(move |_thread, batch| {
            let _ = reply_tx.send(batch);
        }),
        net_threads: 1,
        journal: Some(wal.sender.clone()),
        schema_version: Arc::new(AtomicU32::new(0)),
        start_snapshot: snapshot_hook(snapshot_fs.clone(), bus.clone(), plan.checkpoint_count),
    };
    let tx = install(Tx::new(db, hooks));
    set_admin_password(tx, PASSWORD).map_err(|e| format!("admin password: {e}"))?;

    let mut driver = Driver {
        bus: bus.clone(),
        replies: reply_rx,
        route: Route {
            thread: 0,
            slot: 7,
            generation: life as u32 + 1,
        },
        ready: HashMap::new(),
    };
    let (driver_plan, driver_fs, crash) = (plan.clone(), fs.clone(), sc.crash);
    let first_life = life == 0;
    let driver_thread = std::thread::Builder::new()
        .name("sim-driver".into())
        .spawn(move || {
            let mut stats = Stats::default();
            let result = drive(
                &driver_plan,
                first_life,
                crash,
                &driver_fs,
                &mut driver,
                &mut stats,
            );
            // Whatever happened, let the dispatcher finish.
            driver_fs.clear_faults();
            driver.bus.send(TxMsg::Shutdown);
            (result, stats)
        })
        .map_err(|e| format!("driver thread: {e}"))?;

    dispatch(tx, bus_receiver, &Builtin);
    // The dispatcher has returned: blocking the TX thread is harmless now.
    wal.join();
    let joined = driver_thread.join();
    snapshot_fs.lock().unwrap_or_else(|e| e.into_inner()).take();
    let (result, mut stats) = joined.map_err(|e| format!("driver panicked: {}", panic_text(&e)))?;
    let (records, image, final_select) = result?;
    stats.lives = 1;
    stats.faults_fired = fs.fired().len() as u64;
    Ok(LifeResult {
        records,
        image,
        final_select,
        stats,
    })
}

fn snapshot_hook(
    fs: Arc<Mutex<Option<FaultFs>>>,
    bus: Bus<TxMsg>,
    keep: usize,
) -> Box<dyn Fn(ReadView) + Send> {
    Box::new(move |view| {
        let fs = fs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let bus = bus.clone();
        std::thread::spawn(move || {
            let outcome = match fs {
                Some(fs) => run_checkpoint(&fs, &dir(), &dir(), keep, view),
                None => CheckpointOutcome {
                    result: Err("life is over".into()),
                    rows: 0,
                    seconds: 0.0,
                },
            };
            bus.send(TxMsg::CheckpointDone(outcome));
        });
    })
}

fn panic_text(e: &Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "?".into())
}

fn recover_state(
    fs: &FaultFs,
    what: &str,
) -> Result<(State, Db, Option<spindle_xlog::Vclock>), String> {
    let rec =
        recover(fs, &recovery_cfg()).map_err(|e| format!("recovery of {what} failed: {e}"))?;
    let state = match rec.db.space(SPACE) {
        Ok(_) => read_space(&rec.db).map_err(|e| format!("{what}: {e}"))?,
        Err(_) => State::new(),
    };
    Ok((state, rec.db, rec.last_xlog_vclock))
}

fn file_listing(fs: &FaultFs) -> String {
    fs.paths()
        .iter()
        .map(|p| {
            format!(
                "{} ({} bytes)",
                p.file_name().map_or("?".into(), |n| n.to_string_lossy()),
                fs.contents(p).map_or(0, |c| c.len())
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Flips one byte inside the payload of a random block of a file recovery reads (the newest
/// snapshot or an xlog it replays); recovery must refuse and name the file.
fn check_corruption(sc: &Scenario, fs: &FaultFs) -> Result<bool, String> {
    let mut rng = SimRng::new(sc.seed ^ 0xc0ff_ee00);
    let snaps = scan_dir(fs, &dir(), FileType::Snap).map_err(|e| e.to_string())?;
    let xlogs = scan_dir(fs, &dir(), FileType::Xlog).map_err(|e| e.to_string())?;
    let snap_sig = snaps.last().map_or(0, |(s, _)| *s);
    let first = xlogs.iter().rposition(|(s, _)| *s <= snap_sig).unwrap_or(0);
    let mut files: Vec<(PathBuf, FileType)> = snaps
        .last()
        .map(|(_, p)| (p.clone(), FileType::Snap))
        .into_iter()
        .collect();
    files.extend(
        xlogs
            .iter()
            .skip(first)
            .map(|(_, p)| (p.clone(), FileType::Xlog)),
    );
    // Blocks (offset, payload length) per file.
    let mut targets = Vec::new();
    for (path, ft) in files {
        let data = fs.read(&path).map_err(|e| e.to_string())?;
        let Ok(mut reader) = XlogReader::with_type(data.clone(), ft) else {
            continue;
        };
        while let Ok(Some(block)) = reader.next_block() {
            let off = block.offset as usize;
            let head: Option<&[u8; FIXHEADER_SIZE]> = data
                .get(off..off + FIXHEADER_SIZE)
                .and_then(|h| h.try_into().ok());
            if let Some(Ok(h)) = head.map(decode_fixheader) {
                if h.len > 0 {
                    targets.push((path.clone(), off + FIXHEADER_SIZE, h.len as usize));
                }
            }
        }
    }
    let Some((path, start, len)) = rng.pick(&targets).cloned() else {
        return Ok(false);
    };
    let at = start + rng.below(len as u64) as usize;
    let damaged = fs.crash(CrashKind::ProcessCrash);
    damaged
        .corrupt(&path, at, 1 << rng.below(8))
        .map_err(|e| e.to_string())?;
    let name = path
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    match recover(&damaged, &recovery_cfg()) {
        Ok(_) => Err(format!(
            "recovery accepted {name} with a flipped bit at offset {at} (a block payload)"
        )),
        Err(e) if e.0.contains(&name) => Ok(true),
        Err(e) => Err(format!(
            "recovery refused {name} but the error does not name it: {e}"
        )),
    }
}

/// One seed, start to end. Runs on the TX thread.
fn run_seed(sc: &Scenario, verbose: bool) -> Result<Stats, String> {
    let mut stats = Stats::default();
    let mut fs = FaultFs::new(sc.seed);
    let mut previous: Option<(State, Vec<Record>)> = None;
    for life in 0..sc.lives.len() {
        let (state, db, last_xlog_vclock) = recover_state(
            &fs,
            if life == 0 {
                "the empty fs"
            } else {
                "the crash image"
            },
        )
        .map_err(|e| format!("life {life}: {e}\n  files: {}", file_listing(&fs)))?;
        if let Some((initial, records)) = &previous {
            check_crash_image(initial, records, &state).map_err(|e| {
                format!(
                    "life {life}: the crash image of life {} is inconsistent:\n{e}",
                    life - 1
                )
            })?;
        }
        let result = run_life(sc, life, &fs, db, last_xlog_vclock)
            .map_err(|e| format!("life {life}: {e}"))?;
        stats.add(&result.stats);
        let expected = final_state(&state, &result.records);
        if result.final_select != expected {
            return Err(format!(
                "life {life}: the server's final SELECT differs from the acknowledged writes:\n{}",
                diff_states(&expected, &result.final_select)
            ));
        }
        // A clean shutdown loses nothing: the old fs (page cache included) recovers exactly.
        let clean = fs.crash(CrashKind::ProcessCrash);
        let (got, _, _) = recover_state(&clean, "the cleanly shut down fs")
            .map_err(|e| format!("life {life}: {e}\n  files: {}", file_listing(&clean)))?;
        if got != expected {
            let mut detail = String::new();
            for k in got.keys().chain(expected.keys()).collect::<BTreeSet<_>>() {
                if got.get(k) != expected.get(k) {
                    detail.push_str(&history(*k, &state, &result.records));
                }
            }
            return Err(format!(
                "life {life}: recovery after a clean shutdown differs from the acknowledged \
                 writes:\n{}{detail}  files: {}\n  faults fired: {:?}",
                diff_states(&expected, &got),
                file_listing(&clean),
                fs.fired()
            ));
        }
        if sc.sync == SyncMode::Fsync {
            // In fsync mode everything acknowledged and the closed log are on the device.
            let cold = fs.crash(CrashKind::PowerLoss { tear: true });
            let (got, _, _) = recover_state(&cold, "a power loss after a clean shutdown")
                .map_err(|e| format!("life {life}: {e}"))?;
            if got != expected {
                return Err(format!(
                    "life {life}: a power loss after a clean shutdown lost data:\n{}",
                    diff_states(&expected, &got)
                ));
            }
        }
        if verbose {
            eprintln!(
                "life {life}: {} writes, depth {}, max_size {}, faults fired {:?}, files {}",
                result.records.len(),
                sc.lives[life].depth,
                sc.lives[life].max_size,
                fs.fired(),
                file_listing(&fs)
            );
        }
        previous = Some((state, result.records));
        fs = result.image;
    }
    let (state, _, _) = recover_state(&fs, "the last crash image")
        .map_err(|e| format!("{e}\n  files: {}", file_listing(&fs)))?;
    if let Some((initial, records)) = &previous {
        check_crash_image(initial, records, &state)
            .map_err(|e| format!("the last crash image is inconsistent:\n{e}"))?;
    }
    if sc.corrupt && check_corruption(sc, &fs)? {
        stats.corruptions_refused += 1;
    }
    Ok(stats)
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// The seed being run, for the watchdog's message.
static CURRENT_SEED: AtomicU64 = AtomicU64::new(u64::MAX);

/// Seeds per process. The TX runtime's pooled fibers never exit (a real server runs one TX
/// thread until it exits), so every life leaks its fibers' stacks; a fresh process per chunk
/// keeps that far below `vm.max_map_count`. may can be configured once per process anyway.
const CHUNK: u64 = 100;
/// Set in a child process: run exactly these seeds in-process.
const CHILD_START: &str = "SIM_CHILD_START";
const CHILD_COUNT: &str = "SIM_CHILD_COUNT";

/// What a batch of seeds produced.
#[derive(Default)]
struct Report {
    seeds: u64,
    failures: Vec<String>,
    total: Stats,
}

impl Report {
    fn merge(&mut self, other: Report) {
        self.seeds += other.seeds;
        self.failures.extend(other.failures);
        self.total.add(&other.total);
    }

    /// The machine-readable form a child process prints for its parent.
    fn print_for_parent(&self) {
        let t = &self.total;
        println!(
            "\nSIM-REPORT {} {} {} {} {} {} {} {}",
            self.seeds,
            t.lives,
            t.writes,
            t.acked,
            t.rolled_back,
            t.faults_fired,
            t.checkpoints,
            t.corruptions_refused
        );
        for f in &self.failures {
            println!("SIM-FAILURE-BEGIN\n{f}\nSIM-FAILURE-END");
        }
    }

    /// Parses a child's stdout; None if it has no report line (it crashed or hung).
    fn parse(stdout: &str) -> Option<Report> {
        let mut report = None;
        let mut failures = Vec::new();
        let mut current: Option<String> = None;
        for line in stdout.lines() {
            // libtest may have printed "test crash_loop ... " on the same line.
            if let Some(rest) = line.split_once("SIM-REPORT ").map(|(_, r)| r) {
                let n: Vec<u64> = rest.split(' ').filter_map(|v| v.parse().ok()).collect();
                if let [seeds, lives, writes, acked, rolled_back, faults, checkpoints, refused] =
                    n[..]
                {
                    report = Some(Report {
                        seeds,
                        failures: Vec::new(),
                        total: Stats {
                            lives,
                            writes,
                            acked,
                            rolled_back,
                            faults_fired: faults,
                            checkpoints,
                            corruptions_refused: refused,
                        },
                    });
                }
            } else if line == "SIM-FAILURE-BEGIN" {
                current = Some(String::new());
            } else if line == "SIM-FAILURE-END" {
                failures.extend(current.take());
            } else if let Some(text) = current.as_mut() {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(line);
            }
        }
        report.map(|mut r| {
            r.failures = failures;
            r
        })
    }
}

fn print_scenario(sc: &Scenario) {
    eprintln!(
        "seed {}: {}, {} lives, keys {}, corrupt {}, local space {}",
        sc.seed,
        sc.mode(),
        sc.lives.len(),
        sc.keys,
        sc.corrupt,
        sc.lives.first().is_some_and(|l| l.local_space)
    );
    for (i, l) in sc.lives.iter().enumerate() {
        eprintln!(
            "  life {i}: {} ops, depth {}, max_size {}, faults {:?}, crash after {} replies, \
             checkpoints {:?}",
            l.ops.len(),
            l.depth,
            l.max_size,
            l.faults.faults,
            l.crash_after,
            l.checkpoints
        );
    }
}

/// Runs `seeds` in this process, all inside one TX thread (may is configured once per
/// process). A watchdog turns a hang into a failure naming the seed.
fn run_in_process(seeds: Vec<u64>, verbose: bool) -> Report {
    let budget = Duration::from_secs(120 + seeds.len() as u64);
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let count = seeds.len() as u64;
    std::thread::spawn(move || {
        let result = spindle_fiber::run_tx(TX_FIBER_STACK_WORDS, 64, move || {
            let mut report = Report {
                seeds: seeds.len() as u64,
                ..Report::default()
            };
            for &seed in &seeds {
                CURRENT_SEED.store(seed, Ordering::Relaxed);
                let sc = Scenario::new(seed);
                if verbose {
                    print_scenario(&sc);
                }
                match run_seed(&sc, verbose) {
                    Ok(stats) => report.total.add(&stats),
                    Err(e) => report.failures.push(format!(
                        "seed {seed} ({}): {e}\n  replay: SIM_SEED={seed} cargo test --release \
                         -p spindle-sim --test crash_loop",
                        sc.mode()
                    )),
                }
            }
            report
        });
        let _ = done_tx.send(result);
    });
    let seed = || CURRENT_SEED.load(Ordering::Relaxed);
    match done_rx.recv_timeout(budget) {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => Report {
            seeds: count,
            failures: vec![format!(
                "seed {}: the TX thread panicked: {}\n  replay: SIM_SEED={}",
                seed(),
                panic_text(&e),
                seed()
            )],
            total: Stats::default(),
        },
        Err(_) => {
            // The TX thread is stuck; nothing to clean up in a test process that is failing.
            Report {
                seeds: count,
                failures: vec![format!(
                    "seed {}: hung (no progress within {budget:?})\n  replay: SIM_SEED={}",
                    seed(),
                    seed()
                )],
                total: Stats::default(),
            }
        }
    }
}

/// Runs `count` seeds from `start` in child processes of `CHUNK` seeds, `jobs` at a time.
fn run_in_children(start: u64, count: u64, jobs: usize) -> Report {
    let chunks: Vec<(u64, u64)> = (start..start + count)
        .step_by(CHUNK as usize)
        .map(|s| (s, CHUNK.min(start + count - s)))
        .collect();
    let queue = Arc::new(Mutex::new(chunks));
    let exe = std::env::current_exe().expect("own test binary");
    let workers: Vec<_> = (0..jobs)
        .map(|_| {
            let (queue, exe) = (queue.clone(), exe.clone());
            std::thread::spawn(move || {
                let mut report = Report::default();
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
                    let Some((s, n)) = next else {
                        return report;
                    };
                    let out = std::process::Command::new(&exe)
                        .args(["crash_loop", "--exact", "--nocapture", "--test-threads=1"])
                        .env(CHILD_START, s.to_string())
                        .env(CHILD_COUNT, n.to_string())
                        .env_remove("SIM_SEED")
                        .output()
                        .expect("start a child test process");
                    let stdout = String::from_utf8_lossy(&out.stdout);
                    match Report::parse(&stdout) {
                        Some(r) => report.merge(r),
                        None => {
                            let stderr = String::from_utf8_lossy(&out.stderr);
                            let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
                            report.seeds += n;
                            report.failures.push(format!(
                                "seeds {s}..{}: the child process died ({}) without a report; \
                                 its last stderr lines:\n{}",
                                s + n,
                                out.status,
                                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                            ));
                        }
                    }
                }
            })
        })
        .collect();
    let mut report = Report::default();
    for w in workers {
        report.merge(w.join().expect("a worker thread panicked"));
    }
    report
}

/// `cargo test --release -p spindle-sim`: `SIM_SEEDS` seeds (default 400, half per wal_mode)
/// from `SIM_SEED_START` (default 0), or only `SIM_SEED`, verbosely.
#[test]
fn crash_loop() {
    if std::env::var("SIM_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("SIM_LOG"))
            .with_test_writer()
            .try_init();
    }
    let started = Instant::now();
    if let (Some(start), Some(count)) = (env_u64(CHILD_START), env_u64(CHILD_COUNT)) {
        // A child: run the chunk, report to the parent on stdout.
        run_in_process((start..start + count).collect(), false).print_for_parent();
        return;
    }
    let report = match env_u64("SIM_SEED") {
        Some(seed) => run_in_process(vec![seed], true),
        None => {
            let start = env_u64("SIM_SEED_START").unwrap_or(0);
            let count = env_u64("SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
            let jobs = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
            if count <= CHUNK {
                run_in_process((start..start + count).collect(), false)
            } else {
                run_in_children(start, count, jobs)
            }
        }
    };
    let t = &report.total;
    eprintln!(
        "crash loop: {} seeds in {:.1} s: {} lives, {} writes ({} acknowledged, {} rolled back), \
         {} faults fired, {} checkpoints, {} corruptions refused; {} failing seeds",
        report.seeds,
        started.elapsed().as_secs_f64(),
        t.lives,
        t.writes,
        t.acked,
        t.rolled_back,
        t.faults_fired,
        t.checkpoints,
        t.corruptions_refused,
        report.failures.len()
    );
    for f in &report.failures {
        eprintln!("FAILED {}", f.lines().next().unwrap_or_default());
    }
    if !report.failures.is_empty() {
        let mut failures = report.failures.clone();
        failures.sort();
        panic!(
            "{} of {} seeds failed:\n\n{}",
            failures.len(),
            report.seeds,
            failures
                .iter()
                .take(10)
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n\n")
        );
    }
}

#[test]
fn scenarios_are_deterministic() {
    for seed in 0..50 {
        let (a, b) = (Scenario::new(seed), Scenario::new(seed));
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "seed {seed}");
    }
    assert_ne!(
        format!("{:?}", Scenario::new(1).lives[0].ops),
        format!("{:?}", Scenario::new(3).lives[0].ops)
    );
}

#[test]
fn model_check_rejects_lost_and_invented_values() {
    let rec = |kind, key, val, outcome, acked, sent| Record {
        spec: OpSpec { kind, key, val },
        failed_before_crash: acked && outcome == Some(Outcome::RolledBack),
        outcome,
        acked_before_crash: acked && outcome != Some(Outcome::RolledBack),
        sent_before_crash: sent,
    };
    let records = vec![
        rec(
            Kind::Replace,
            1,
            1,
            Some(Outcome::Applied(Effect::Set(1))),
            true,
            true,
        ),
        rec(
            Kind::Replace,
            1,
            2,
            Some(Outcome::Applied(Effect::Set(2))),
            false,
            true,
        ),
        rec(Kind::Delete, 2, 3, Some(Outcome::RolledBack), true, true),
        rec(
            Kind::Replace,
            3,
            4,
            Some(Outcome::Applied(Effect::Set(4))),
            false,
            false,
        ),
    ];
    let initial: State = [(2, 9)].into_iter().collect();
    let ok = |pairs: &[(u64, u64)]| pairs.iter().copied().collect::<State>();
    assert!(check_crash_image(&initial, &records, &ok(&[(1, 1), (2, 9)])).is_ok());
    assert!(check_crash_image(&initial, &records, &ok(&[(1, 2), (2, 9)])).is_ok());
    assert!(
        check_crash_image(&initial, &records, &ok(&[(1, 2)])).is_err(),
        "a rolled-back write resurfaced"
    );
    assert!(
        check_crash_image(&initial, &records, &ok(&[(1, 1)])).is_err(),
        "not a prefix"
    );
    assert!(
        check_crash_image(&initial, &records, &ok(&[(2, 9)])).is_err(),
        "lost ack"
    );
    assert!(check_crash_image(&initial, &records, &ok(&[(1, 7), (2, 9)])).is_err());
    assert!(
        check_crash_image(&initial, &records, &ok(&[(1, 1), (2, 9), (3, 4)])).is_err(),
        "sent after the crash"
    );
}
