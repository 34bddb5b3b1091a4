//! The memtx MVCC engine of stream transactions (`memtx_use_mvcc_engine`, issue 16): a
//! transaction that spans requests keeps its writes private until COMMIT, reads the
//! committed state its isolation level allows plus its own writes, and conflicts as
//! `conflict` decides.
//!
//! A transaction holds its statements, not their effects. A statement runs against a view
//! built in place and taken down before anything else can run (the TX thread does not
//! yield inside it): commits the transaction must not see are undone (`Hidden`), its own
//! statements are replayed, the statement runs, and everything is put back. Reads then use
//! the real indexes, so every iterator type and index behaves as for an autocommit request;
//! the price is that a statement replays the ones before it (`MVCC_TXN_STMTS_MAX` bounds
//! that). COMMIT replays the statements once more into a real `Txn`, which goes to the
//! commit queue like any write; with no conflict found, they give the same results they
//! gave inside the transaction (what they depended on is unchanged).
//!
//! Every commit that reaches the store while a transaction is open is `record`ed: what it
//! wrote (for conflicts) and the tuples it replaced (for read views), bounded by
//! `MVCC_HISTORY_MAX`; a transaction needing an older commit is aborted.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::ops::Bound;

use spindle_memtx::compare::compare_fields;
use spindle_memtx::index::IndexKind;
use spindle_memtx::key_def::Key;
use spindle_memtx::tuple::Tuple;
use spindle_proto::iproto::{slice as span, Request};
use spindle_types::iproto::IteratorType;
use spindle_types::limits::{
    MVCC_CHECK_PAIRS_MAX, MVCC_HISTORY_MAX, MVCC_TXN_READS_MAX, MVCC_TXN_STMTS_MAX,
};
use spindle_types::txn_cfg::{BEST_EFFORT, READ_CONFIRMED};
use spindle_types::{BoxError, BoxResult};

use crate::catalog::sys;
use crate::conflict::{
    Commit, History, IndexId, KeyOrder, Read, Standing, Tracker, Version, Write,
};
use crate::db::Db;
use crate::dml::{Dml, Undo};
use crate::execute::{is_write, request_to_dml};
use crate::reply::Reply;
use crate::txn::Txn;

/// One data statement of a transaction, kept to be replayed.
#[derive(Debug)]
struct Stmt {
    request: Request,
    packet: Vec<u8>,
}

impl Stmt {
    fn dml(&self) -> BoxResult<Dml<'_>> {
        request_to_dml(&self.request, &self.packet)
    }
}

/// A tuple a commit replaced (`old`, None if it inserted) by `new` (None if it deleted).
#[derive(Debug)]
struct Change {
    space_id: u32,
    old: Option<Tuple>,
    new: Option<Tuple>,
}

/// The changes of one recorded commit.
#[derive(Debug)]
struct Kept {
    version: Version,
    changes: Vec<Change>,
}

/// One open transaction on the MVCC engine.
#[derive(Debug)]
pub struct MvccTxn {
    tracker: Tracker,
    stmts: Vec<Stmt>,
    /// `txn_cfg` level, 1 to 3.
    isolation: u8,
    /// The last commit when it began.
    began: Version,
}

impl MvccTxn {
    /// True if it holds writes (a COMMIT has something to log).
    pub fn has_writes(&self) -> bool {
        !self.stmts.is_empty()
    }

    /// True once it has conflicted: every statement and its COMMIT answer 97.
    pub fn is_aborted(&self) -> bool {
        self.tracker.standing() == Standing::Aborted
    }

    /// Its statements so far (a savepoint's mark).
    pub fn mark(&self) -> usize {
        self.stmts.len()
    }

    /// Rolls back to `mark`: the statements after it are forgotten. What they read stays
    /// tracked, so a later conflict can only be one they would have caused too.
    pub fn rollback_to(&mut self, mark: usize) {
        self.stmts.truncate(mark);
    }
}

/// The commits made while transactions are open.
#[derive(Debug)]
pub struct Engine {
    history: History,
    kept: VecDeque<Kept>,
    /// Recorded commits still in their WAL write, oldest first: (commit queue seq, version).
    unconfirmed: VecDeque<(u64, Version)>,
    /// The last commit that changed the schema (it aborts every transaction begun before).
    last_ddl: Version,
}

impl Default for Engine {
    fn default() -> Engine {
        Engine {
            history: History::new(MVCC_HISTORY_MAX),
            kept: VecDeque::new(),
            unconfirmed: VecDeque::new(),
            last_ddl: 0,
        }
    }
}

/// Key order by the catalog's index definitions. An index that is gone compares equal:
/// a read of it then meets every write, which is the safe answer.
struct Order<'a>(&'a Db);

impl KeyOrder for Order<'_> {
    fn compare_prefix(&self, index: IndexId, key: &[u8], bound: &[u8]) -> Ordering {
        let entry = self.0.space(index.space).ok();
        let parts = entry
            .and_then(|e| e.space.index(index.index))
            .map(|i| &i.key_def().parts);
        let (Some(parts), Ok(key), Ok(bound)) = (parts, Key::parse(key), Key::parse(bound)) else {
            return Ordering::Equal;
        };
        for ((part, a), b) in parts.iter().zip(key.parts()).zip(bound.parts()) {
            match compare_fields(Some(a), Some(b), part.collation) {
                Ordering::Equal => {}
                other => return other,
            }
        }
        Ordering::Equal
    }
}

impl Engine {
    pub fn new() -> Engine {
        Engine::default()
    }

    /// A transaction of `isolation` (1 to 3) beginning now.
    pub fn begin(&self, isolation: u8) -> MvccTxn {
        let now = self.history.last();
        MvccTxn {
            tracker: Tracker::begin(now),
            stmts: Vec::new(),
            isolation,
            began: now,
        }
    }

    /// Records a commit that reached the store: `seq` is its commit queue number while it
    /// waits for the WAL (None if it is durable already). Only while transactions are open.
    pub fn record(&mut self, db: &Db, undo: &[Undo], seq: Option<u64>) {
        let mut commit = Commit::default();
        let mut changes = Vec::with_capacity(undo.len());
        for u in undo {
            let (old, new) = u.tuples();
            commit.ddl |= matches!(u.space_id(), sys::SPACE | sys::INDEX | sys::TRUNCATE);
            written_keys(db, u.space_id(), &old, &new, &mut commit.writes);
            changes.push(Change {
                space_id: u.space_id(),
                old,
                new,
            });
        }
        let ddl = commit.ddl;
        let version = self.history.push(commit);
        if ddl {
            self.last_ddl = version;
        }
        self.kept.push_back(Kept { version, changes });
        while self.kept.len() > MVCC_HISTORY_MAX {
            self.kept.pop_front();
        }
        if let Some(seq) = seq {
            self.unconfirmed.push_back((seq, version));
        }
    }

    /// No transaction is open any more: nothing recorded is needed.
    pub fn forget_all(&mut self) {
        if self.kept.is_empty() && self.unconfirmed.is_empty() {
            return;
        }
        self.history.forget_through(self.history.last());
        self.kept.clear();
        self.unconfirmed.clear();
    }

    /// The WAL wrote every commit up to `seq`.
    pub fn confirmed(&mut self, seq: u64) {
        while self.unconfirmed.front().is_some_and(|&(s, _)| s <= seq) {
            self.unconfirmed.pop_front();
        }
    }

    /// The WAL failed every commit from `seq` on; they were undone in the store, so read
    /// views must not undo them again. (What they wrote stays in the history: a conflict
    /// with a commit that failed aborts a transaction needlessly, never wrongly commits one.)
    pub fn failed_from(&mut self, seq: u64) {
        while self.unconfirmed.back().is_some_and(|&(s, _)| s >= seq) {
            let Some((_, version)) = self.unconfirmed.pop_back() else {
                break;
            };
            if let Some(kept) = self.kept.iter_mut().find(|k| k.version == version) {
                kept.changes.clear();
            }
        }
    }

    /// A SELECT or DML request of `txn`.
    pub fn statement(
        &mut self,
        db: &mut Db,
        txn: &mut MvccTxn,
        user: u32,
        request: &Request,
        packet: &[u8],
    ) -> BoxResult<Reply> {
        self.catch_up(db, txn)?;
        if txn.tracker.reads().len() >= MVCC_TXN_READS_MAX {
            return Err(BoxError::unsupported(
                "spindle",
                &format!("more than {MVCC_TXN_READS_MAX} reads in an MVCC transaction"),
            ));
        }
        if is_write(request) {
            self.write(db, txn, user, request, packet)
        } else {
            self.read(db, txn, user, request, packet)
        }
    }

    /// COMMIT: the conflict check, then the statements replayed into the transaction to
    /// log (empty for a read-only one). Either way `txn` is finished.
    pub fn commit(&mut self, db: &mut Db, txn: &mut MvccTxn, user: u32) -> BoxResult<Txn> {
        self.catch_up(db, txn)?;
        let mut real = Txn::new();
        for stmt in &txn.stmts {
            if let Err(e) = stmt.dml().and_then(|d| db.apply_as(user, &mut real, d)) {
                db.rollback_txn(real);
                return Err(e);
            }
        }
        Ok(real)
    }

    /// Before each statement and the commit: the commits since the last one are checked
    /// against the transaction's reads; a schema change aborts it.
    fn catch_up(&self, db: &Db, txn: &mut MvccTxn) -> BoxResult<()> {
        if self.last_ddl > txn.began || self.too_costly(txn) {
            txn.tracker.abort();
        }
        match txn.tracker.check(&self.history, &Order(db)) {
            Standing::Aborted => Err(BoxError::transaction_conflict()),
            _ => Ok(()),
        }
    }

    /// True if catching up would compare more than `MVCC_CHECK_PAIRS_MAX` pairs.
    fn too_costly(&self, txn: &MvccTxn) -> bool {
        let Standing::Current(seen) = txn.tracker.standing() else {
            return false;
        };
        let commits = self.history.last().saturating_sub(seen);
        commits.saturating_mul(txn.tracker.reads().len() as u64) > MVCC_CHECK_PAIRS_MAX
    }

    fn read(
        &mut self,
        db: &mut Db,
        txn: &mut MvccTxn,
        user: u32,
        request: &Request,
        packet: &[u8],
    ) -> BoxResult<Reply> {
        let result =
            self.run_in_view(db, txn, |db| db.execute_select(user, request, packet, None))?;
        if let Some(read) = select_read(db, request, packet) {
            let read = match &result {
                Ok(Reply::Tuples(tuples)) => stopped_early(db, request, read, tuples),
                _ => read,
            };
            txn.tracker.read(read);
        }
        result
    }

    fn write(
        &mut self,
        db: &mut Db,
        txn: &mut MvccTxn,
        user: u32,
        request: &Request,
        packet: &[u8],
    ) -> BoxResult<Reply> {
        let space_id = request_to_dml(request, packet)?.space_id();
        if space_id <= sys::SYSTEM_ID_MAX {
            return Err(BoxError::unsupported(
                "spindle",
                "schema changes in an MVCC transaction",
            ));
        }
        if txn.stmts.len() >= MVCC_TXN_STMTS_MAX {
            return Err(BoxError::unsupported(
                "spindle",
                &format!("more than {MVCC_TXN_STMTS_MAX} statements in an MVCC transaction"),
            ));
        }
        let implicit = implicit_read(db, request, packet);
        if !txn.tracker.write(&self.history, &Order(db)) {
            return Err(BoxError::transaction_conflict());
        }
        let result = self.run_in_view(db, txn, |db| {
            let outcome = db.execute_write(user, request, packet)?;
            db.rollback_txn(outcome.txn);
            Ok(outcome.reply)
        })?;
        if let Some(read) = implicit {
            txn.tracker.read(read);
        }
        if result.is_ok() {
            txn.stmts.push(Stmt {
                request: request.clone(),
                packet: packet.to_vec(),
            });
        }
        result
    }

    /// Runs `run` against the transaction's view. The outer error is a conflict that
    /// aborted the transaction: the view is no longer available (its commits left the
    /// window) or its own statements no longer apply to the committed state.
    fn run_in_view<R>(
        &self,
        db: &mut Db,
        txn: &mut MvccTxn,
        run: impl FnOnce(&mut Db) -> BoxResult<R>,
    ) -> BoxResult<BoxResult<R>> {
        let limit = self.view_limit(txn);
        let Some(hidden) = self.hidden(limit) else {
            txn.tracker.abort();
            return Err(BoxError::transaction_conflict());
        };
        if let Some(version) = limit {
            txn.tracker.rewind(version);
        }
        match in_view(db, &hidden, &txn.stmts, run) {
            Some(result) => Ok(result),
            None => {
                txn.tracker.abort();
                Err(BoxError::transaction_conflict())
            }
        }
    }

    /// The newest commit the transaction may see, if it must not see them all: its read
    /// view, or the last one the WAL has written for read-confirmed (and best-effort before
    /// its first write).
    fn view_limit(&self, txn: &MvccTxn) -> Option<Version> {
        let view = match txn.tracker.standing() {
            Standing::ReadView(v) => Some(v),
            _ => None,
        };
        let confirmed_only = txn.isolation == READ_CONFIRMED
            || (txn.isolation == BEST_EFFORT && !txn.tracker.has_writes());
        let confirmed = self
            .unconfirmed
            .front()
            .filter(|_| confirmed_only)
            .map(|&(_, v)| v - 1);
        match (view, confirmed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The changes of the commits after `limit`, oldest first; None if some are no longer
    /// kept.
    fn hidden(&self, limit: Option<Version>) -> Option<Vec<&Change>> {
        let Some(limit) = limit.filter(|&v| v < self.history.last()) else {
            return Some(Vec::new());
        };
        if self.kept.front()?.version > limit + 1 {
            return None;
        }
        let after = self.kept.iter().filter(|k| k.version > limit);
        Some(after.flat_map(|k| k.changes.iter()).collect())
    }
}

/// Builds the view (hidden commits undone, own statements replayed), runs `run` in it and
/// takes the view down; None if an own statement failed to replay.
fn in_view<R>(
    db: &mut Db,
    hidden: &[&Change],
    own: &[Stmt],
    run: impl FnOnce(&mut Db) -> BoxResult<R>,
) -> Option<BoxResult<R>> {
    for c in hidden.iter().rev() {
        swap(db, c.space_id, &c.new, &c.old);
    }
    let mut mine = Txn::new();
    let replayed = own
        .iter()
        .all(|s| s.dml().and_then(|d| db.apply(&mut mine, d)).is_ok());
    let result = replayed.then(|| run(db));
    db.rollback_txn(mine);
    for c in hidden {
        swap(db, c.space_id, &c.old, &c.new);
    }
    result
}

/// Puts `to` in the place of `from` (either may be absent), exactly undoing or redoing a
/// recorded change.
fn swap(db: &mut Db, space_id: u32, from: &Option<Tuple>, to: &Option<Tuple>) {
    if let Ok(entry) = db.catalog.space_mut(space_id) {
        entry.space.rollback(to.clone(), from.clone());
    }
}

/// The keys a change of `space_id` wrote: in each index, the old tuple's key and the new
/// one's where it differs.
fn written_keys(
    db: &Db,
    space_id: u32,
    old: &Option<Tuple>,
    new: &Option<Tuple>,
    out: &mut Vec<Write>,
) {
    let Ok(entry) = db.space(space_id) else {
        return;
    };
    for index in entry.space.indexes() {
        let id = IndexId {
            space: space_id,
            index: index.id(),
        };
        let mut last: Option<Vec<u8>> = None;
        for tuple in old.iter().chain(new.iter()) {
            let key = index.key_def().extract_key(tuple);
            if last.as_ref() != Some(&key) {
                out.push(Write {
                    index: id,
                    key: key.clone(),
                });
                last = Some(key);
            }
        }
    }
}

/// What a SELECT depends on: the point it looked up (a full key of a unique index), or the
/// key range its iterator covers (the whole index for a HASH range or a bitset-like type).
fn select_read(db: &Db, request: &Request, packet: &[u8]) -> Option<Read> {
    let Request::Select {
        space_id,
        index_id,
        iterator,
        ref key,
        ..
    } = *request
    else {
        return None;
    };
    let index = db.space(space_id).ok()?.space.index(index_id)?;
    let key = span(packet, key);
    let parts = Key::parse(key).ok()?.len();
    let id = IndexId {
        space: space_id,
        index: index_id,
    };
    let it = IteratorType::from_code(u64::from(iterator))?;
    let full = parts >= index.key_def().parts.len() && index.def().unique;
    let range = |lower, upper| Read::Range {
        index: id,
        lower,
        upper,
    };
    let (k, tree) = (key.to_vec(), index.def().kind == IndexKind::Tree);
    use Bound::{Excluded, Included, Unbounded};
    use IteratorType::{Eq, Ge, Gt, Le, Lt, Req};
    Some(match it {
        _ if parts == 0 => range(Unbounded, Unbounded),
        Eq | Req if full => Read::Key { index: id, key: k },
        Eq | Req if tree => range(Included(k.clone()), Included(k)),
        Ge if tree => range(Included(k), Unbounded),
        Gt if tree => range(Excluded(k), Unbounded),
        Le if tree => range(Unbounded, Included(k)),
        Lt if tree => range(Unbounded, Excluded(k)),
        _ => range(Unbounded, Unbounded),
    })
}

/// A SELECT that LIMIT stopped did not pass the last tuple it returned: its read ends there
/// (inclusive, in the iterator's direction), so a commit beyond it is no conflict.
fn stopped_early(db: &Db, request: &Request, read: Read, tuples: &[Tuple]) -> Read {
    let Request::Select {
        space_id,
        index_id,
        limit,
        iterator,
        ..
    } = *request
    else {
        return read;
    };
    let (
        Some(last),
        Read::Range {
            index,
            lower,
            upper,
        },
    ) = (tuples.last(), &read)
    else {
        return read;
    };
    let reached = limit > 0 && tuples.len() >= limit as usize;
    let tree = db
        .space(space_id)
        .ok()
        .and_then(|e| e.space.index(index_id));
    let Some(tree) = tree.filter(|i| reached && i.def().kind == IndexKind::Tree) else {
        return read;
    };
    let at = Bound::Included(tree.key_def().extract_key(last));
    let reverse = matches!(
        IteratorType::from_code(u64::from(iterator)),
        Some(IteratorType::Req | IteratorType::Le | IteratorType::Lt)
    );
    let (lower, upper) = if reverse {
        (at, upper.clone())
    } else {
        (lower.clone(), at)
    };
    Read::Range {
        index: *index,
        lower,
        upper,
    }
}

/// What a write depends on besides what it writes: INSERT needs its key absent, UPSERT
/// reads it, UPDATE and DELETE read the key they name. REPLACE is blind.
fn implicit_read(db: &Db, request: &Request, packet: &[u8]) -> Option<Read> {
    let (space_id, index, key) = match *request {
        Request::Insert {
            space_id,
            ref tuple,
        }
        | Request::Upsert {
            space_id,
            ref tuple,
            ..
        } => {
            let tuple = Tuple::new(span(packet, tuple)).ok()?;
            let primary = db.space(space_id).ok()?.space.primary().ok()?;
            (space_id, 0, primary.key_def().extract_key(&tuple))
        }
        Request::Delete {
            space_id,
            index_id,
            ref key,
        }
        | Request::Update {
            space_id,
            index_id,
            ref key,
            ..
        } => (space_id, index_id, span(packet, key).to_vec()),
        _ => return None,
    };
    Some(Read::Key {
        index: IndexId {
            space: space_id,
            index,
        },
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::ADMIN;
    use proptest::prelude::*;
    use serde_json::json;
    use spindle_proto::mp;
    use std::collections::BTreeMap;

    const S: u32 = 512;

    /// A database with space 512: a TREE primary key on an unsigned field 0.
    fn world() -> (Db, Engine) {
        let mut db = Db::new("u".into());
        crate::bootstrap::preload_catalog(&mut db).expect("catalog");
        crate::bootstrap::load_system_rows(&mut db, "c").expect("rows");
        let space = crate::bootstrap::encode(&json!([S, 1, "s", "memtx", 0, {}, []]));
        let index = crate::bootstrap::encode(
            &json!([S, 0, "pk", "tree", {"unique": true}, [[0, "unsigned"]]]),
        );
        for (space_id, tuple) in [(sys::SPACE, space), (sys::INDEX, index)] {
            db.apply_dml(Dml::Insert {
                space_id,
                tuple: &tuple,
            })
            .expect("ddl");
        }
        (db, Engine::new())
    }

    fn array(values: &[u64]) -> Vec<u8> {
        let mut out = Vec::new();
        mp::write_array_len(&mut out, values.len() as u32);
        for v in values {
            mp::write_uint(&mut out, *v);
        }
        out
    }

    fn whole(packet: &[u8]) -> std::ops::Range<u32> {
        0..packet.len() as u32
    }

    type Req = (Request, Vec<u8>);

    fn replace(t: &[u64]) -> Req {
        let p = array(t);
        let tuple = whole(&p);
        (Request::Replace { space_id: S, tuple }, p)
    }

    fn insert(t: &[u64]) -> Req {
        let p = array(t);
        let tuple = whole(&p);
        (Request::Insert { space_id: S, tuple }, p)
    }

    fn delete(k: u64) -> Req {
        let p = array(&[k]);
        let key = whole(&p);
        let request = Request::Delete {
            space_id: S,
            index_id: 0,
            key,
        };
        (request, p)
    }

    /// `update{k, {'+', 2, by}}`.
    fn update(k: u64, by: u64) -> Req {
        let mut p = array(&[k]);
        let key = whole(&p);
        mp::write_array_len(&mut p, 1);
        mp::write_array_len(&mut p, 3);
        mp::write_str(&mut p, "+");
        mp::write_uint(&mut p, 2);
        mp::write_uint(&mut p, by);
        let ops = key.end..p.len() as u32;
        let request = Request::Update {
            space_id: S,
            index_id: 0,
            index_base: 1,
            key,
            ops,
        };
        (request, p)
    }

    fn select(key: &[u64], it: IteratorType) -> Req {
        let p = array(key);
        let request = Request::Select {
            space_id: S,
            index_id: 0,
            limit: u32::MAX,
            offset: 0,
            iterator: it as u32,
            key: whole(&p),
        };
        (request, p)
    }

    fn all() -> Req {
        select(&[], IteratorType::All)
    }

    fn rows(reply: BoxResult<Reply>) -> Result<Vec<Vec<u64>>, u32> {
        match reply {
            Ok(Reply::Tuples(tuples)) => Ok(tuples
                .iter()
                .map(|t| {
                    let mut cur = t.data();
                    let n = mp::read_array_len(&mut cur).unwrap_or(0);
                    (0..n)
                        .filter_map(|_| mp::read_uint(&mut cur).ok())
                        .collect()
                })
                .collect()),
            Ok(_) => Ok(Vec::new()),
            Err(e) => Err(e.code),
        }
    }

    /// An autocommit write, recorded as `record` sees every commit (durable at once).
    fn auto(db: &mut Db, e: &mut Engine, (request, packet): Req) {
        let outcome = db.execute_write(ADMIN, &request, &packet).expect("write");
        e.record(db, outcome.txn.undo_records(), None);
    }

    /// What an autocommit reader sees.
    fn committed(db: &mut Db) -> Vec<Vec<u64>> {
        let (request, packet) = all();
        rows(db.execute_select(ADMIN, &request, &packet, None)).expect("select")
    }

    fn run(
        db: &mut Db,
        e: &mut Engine,
        t: &mut MvccTxn,
        (r, p): Req,
    ) -> Result<Vec<Vec<u64>>, u32> {
        rows(e.statement(db, t, ADMIN, &r, &p))
    }

    /// COMMIT: the code of its error, or 0.
    fn commit(db: &mut Db, e: &mut Engine, t: &mut MvccTxn) -> u32 {
        match e.commit(db, t, ADMIN) {
            Ok(txn) => {
                e.record(db, txn.undo_records(), None);
                0
            }
            Err(err) => err.code,
        }
    }

    const CONFLICT: Result<Vec<Vec<u64>>, u32> = Err(97);

    #[test]
    fn writes_are_private_until_commit_and_reads_see_their_own() {
        let (mut db, mut e) = world();
        auto(&mut db, &mut e, replace(&[1, 1]));
        let mut a = e.begin(BEST_EFFORT);
        assert!(run(&mut db, &mut e, &mut a, replace(&[2, 2])).is_ok());
        assert!(run(&mut db, &mut e, &mut a, delete(1)).is_ok());
        assert_eq!(committed(&mut db), [[1, 1]]);
        assert_eq!(run(&mut db, &mut e, &mut a, all()), Ok(vec![vec![2, 2]]));
        assert_eq!(commit(&mut db, &mut e, &mut a), 0);
        assert_eq!(committed(&mut db), [[2, 2]]);
    }

    #[test]
    fn scenarios_1_2_and_3_read_then_write() {
        let (mut db, mut e) = world();
        let (mut a, mut b) = (e.begin(BEST_EFFORT), e.begin(BEST_EFFORT));
        let one = || select(&[1], IteratorType::Eq);
        assert_eq!(run(&mut db, &mut e, &mut a, one()), Ok(vec![]));
        assert_eq!(run(&mut db, &mut e, &mut b, one()), Ok(vec![]));
        assert!(run(&mut db, &mut e, &mut a, replace(&[1, 1])).is_ok());
        assert!(run(&mut db, &mut e, &mut b, replace(&[1, 2])).is_ok());
        assert_eq!(commit(&mut db, &mut e, &mut a), 0);
        assert_eq!(commit(&mut db, &mut e, &mut b), 97);
        assert_eq!(committed(&mut db), [[1, 1]]);
        // 2: updates read their key.
        let (mut a, mut b) = (e.begin(BEST_EFFORT), e.begin(BEST_EFFORT));
        assert_eq!(
            run(&mut db, &mut e, &mut a, update(1, 3)),
            Ok(vec![vec![1, 4]])
        );
        assert_eq!(
            run(&mut db, &mut e, &mut b, update(1, 5)),
            Ok(vec![vec![1, 6]])
        );
        assert_eq!(commit(&mut db, &mut e, &mut a), 0);
        assert_eq!(commit(&mut db, &mut e, &mut b), 97);
        assert_eq!(committed(&mut db), [[1, 4]]);
        // 3: blind replaces all commit, the last one wins.
        let mut txns: Vec<MvccTxn> = (0..3).map(|_| e.begin(BEST_EFFORT)).collect();
        for (i, t) in txns.iter_mut().enumerate() {
            assert!(run(&mut db, &mut e, t, replace(&[1, 10 + i as u64])).is_ok());
        }
        for t in &mut txns {
            assert_eq!(commit(&mut db, &mut e, t), 0);
        }
        assert_eq!(committed(&mut db), [[1, 12]]);
    }

    #[test]
    fn scenarios_4_and_5_a_reader_keeps_its_read_view_until_it_writes() {
        let (mut db, mut e) = world();
        for k in 1..=3 {
            auto(&mut db, &mut e, replace(&[k, k]));
        }
        let before = vec![vec![1, 1], vec![2, 2], vec![3, 3]];
        let mut a = e.begin(BEST_EFFORT);
        assert_eq!(run(&mut db, &mut e, &mut a, all()), Ok(before.clone()));
        let mut b = e.begin(BEST_EFFORT);
        assert!(run(&mut db, &mut e, &mut b, replace(&[1, 11])).is_ok());
        assert!(run(&mut db, &mut e, &mut b, replace(&[2, 12])).is_ok());
        assert_eq!(commit(&mut db, &mut e, &mut b), 0);
        assert_eq!(run(&mut db, &mut e, &mut a, all()), Ok(before.clone()));
        assert_eq!(
            run(&mut db, &mut e, &mut a, select(&[2], IteratorType::Eq)),
            Ok(vec![vec![2, 2]])
        );
        assert_eq!(committed(&mut db), [[1, 11], [2, 12], [3, 3]]);
        assert_eq!(run(&mut db, &mut e, &mut a, replace(&[3, 13])), CONFLICT);
        assert_eq!(run(&mut db, &mut e, &mut a, all()), CONFLICT);
        assert_eq!(commit(&mut db, &mut e, &mut a), 97);
        assert_eq!(committed(&mut db), [[1, 11], [2, 12], [3, 3]]);
    }

    #[test]
    fn scenarios_6_to_9_gaps_holes_and_ranges() {
        let (mut db, mut e) = world();
        // 6: both saw an empty space.
        let (mut a, mut b) = (e.begin(BEST_EFFORT), e.begin(BEST_EFFORT));
        assert_eq!(run(&mut db, &mut e, &mut a, all()), Ok(vec![]));
        assert_eq!(run(&mut db, &mut e, &mut b, all()), Ok(vec![]));
        assert!(run(&mut db, &mut e, &mut a, replace(&[1, 1])).is_ok());
        assert!(run(&mut db, &mut e, &mut b, replace(&[2, 2])).is_ok());
        assert_eq!(commit(&mut db, &mut e, &mut a), 0);
        assert_eq!(commit(&mut db, &mut e, &mut b), 97);
        // 7: the same point hole.
        let (mut a, mut b) = (e.begin(BEST_EFFORT), e.begin(BEST_EFFORT));
        let seven = || select(&[7], IteratorType::Eq);
        assert_eq!(run(&mut db, &mut e, &mut a, seven()), Ok(vec![]));
        assert_eq!(run(&mut db, &mut e, &mut b, seven()), Ok(vec![]));
        assert!(run(&mut db, &mut e, &mut a, replace(&[7, 1])).is_ok());
        assert!(run(&mut db, &mut e, &mut b, replace(&[7, 2])).is_ok());
        assert_eq!(commit(&mut db, &mut e, &mut a), 0);
        assert_eq!(commit(&mut db, &mut e, &mut b), 97);
        // 8: different holes.
        let (mut a, mut b) = (e.begin(BEST_EFFORT), e.begin(BEST_EFFORT));
        assert_eq!(
            run(&mut db, &mut e, &mut a, select(&[20], IteratorType::Eq)),
            Ok(vec![])
        );
        assert_eq!(
            run(&mut db, &mut e, &mut b, select(&[21], IteratorType::Eq)),
            Ok(vec![])
        );
        assert!(run(&mut db, &mut e, &mut a, replace(&[20])).is_ok());
        assert!(run(&mut db, &mut e, &mut b, replace(&[21])).is_ok());
        assert_eq!(commit(&mut db, &mut e, &mut a), 0);
        assert_eq!(commit(&mut db, &mut e, &mut b), 0);
        // 9: GT 30 does not cover 30; GE would.
        let (mut a, mut b) = (e.begin(BEST_EFFORT), e.begin(BEST_EFFORT));
        assert_eq!(
            run(&mut db, &mut e, &mut a, select(&[30], IteratorType::Gt)),
            Ok(vec![])
        );
        assert!(run(&mut db, &mut e, &mut a, replace(&[40])).is_ok());
        assert!(run(&mut db, &mut e, &mut b, replace(&[30])).is_ok());
        assert_eq!(commit(&mut db, &mut e, &mut b), 0);
        assert_eq!(commit(&mut db, &mut e, &mut a), 0);
        let (mut a, mut b) = (e.begin(BEST_EFFORT), e.begin(BEST_EFFORT));
        assert!(run(&mut db, &mut e, &mut a, select(&[30], IteratorType::Ge)).is_ok());
        assert!(run(&mut db, &mut e, &mut a, replace(&[41])).is_ok());
        assert!(run(&mut db, &mut e, &mut b, replace(&[30, 1])).is_ok());
        assert_eq!(commit(&mut db, &mut e, &mut b), 0);
        assert_eq!(commit(&mut db, &mut e, &mut a), 97);
    }

    #[test]
    fn a_select_stopped_by_its_limit_reads_up_to_its_last_tuple() {
        let (mut db, mut e) = world();
        for k in [1, 2, 3] {
            auto(&mut db, &mut e, replace(&[k]));
        }
        let limited = |key: &[u64], it: IteratorType| {
            let (mut request, packet) = select(key, it);
            if let Request::Select { limit, .. } = &mut request {
                *limit = 1;
            }
            (request, packet)
        };
        // Forward: a commit after the first tuple does not meet it; one at it does.
        let mut a = e.begin(BEST_EFFORT);
        assert_eq!(
            run(&mut db, &mut e, &mut a, limited(&[], IteratorType::All)),
            Ok(vec![vec![1]])
        );
        assert!(run(&mut db, &mut e, &mut a, delete(1)).is_ok());
        auto(&mut db, &mut e, replace(&[4]));
        auto(&mut db, &mut e, replace(&[2, 2]));
        assert_eq!(commit(&mut db, &mut e, &mut a), 0);
        let mut b = e.begin(BEST_EFFORT);
        assert_eq!(
            run(&mut db, &mut e, &mut b, limited(&[], IteratorType::All)),
            Ok(vec![vec![2, 2]])
        );
        assert!(run(&mut db, &mut e, &mut b, replace(&[9])).is_ok());
        auto(&mut db, &mut e, replace(&[2, 3]));
        assert_eq!(commit(&mut db, &mut e, &mut b), 97);
        // Reverse: the read ends at the last tuple from above.
        let mut c = e.begin(BEST_EFFORT);
        let top = run(&mut db, &mut e, &mut c, limited(&[], IteratorType::Le));
        assert_eq!(top, Ok(vec![vec![4]]));
        assert!(run(&mut db, &mut e, &mut c, replace(&[10])).is_ok());
        auto(&mut db, &mut e, replace(&[3, 1]));
        assert_eq!(commit(&mut db, &mut e, &mut c), 0);
        let mut d = e.begin(BEST_EFFORT);
        let top = run(&mut db, &mut e, &mut d, limited(&[], IteratorType::Le));
        assert_eq!(top, Ok(vec![vec![10]]));
        assert!(run(&mut db, &mut e, &mut d, replace(&[11])).is_ok());
        auto(&mut db, &mut e, replace(&[12]));
        assert_eq!(commit(&mut db, &mut e, &mut d), 97);
    }

    #[test]
    fn scenarios_10_and_11_deletes_and_inserts_read_their_key() {
        let (mut db, mut e) = world();
        auto(&mut db, &mut e, replace(&[2, 2]));
        let (mut a, mut b) = (e.begin(BEST_EFFORT), e.begin(BEST_EFFORT));
        assert_eq!(run(&mut db, &mut e, &mut b, all()), Ok(vec![vec![2, 2]]));
        assert!(run(&mut db, &mut e, &mut a, delete(2)).is_ok());
        assert_eq!(commit(&mut db, &mut e, &mut a), 0);
        assert_eq!(run(&mut db, &mut e, &mut b, delete(2)), CONFLICT);
        assert_eq!(commit(&mut db, &mut e, &mut b), 97);
        // 11: each insert succeeds in its own view; the later commit conflicts.
        let (mut a, mut b) = (e.begin(BEST_EFFORT), e.begin(BEST_EFFORT));
        assert_eq!(
            run(&mut db, &mut e, &mut a, insert(&[1, 1])),
            Ok(vec![vec![1, 1]])
        );
        assert_eq!(
            run(&mut db, &mut e, &mut b, insert(&[1, 2])),
            Ok(vec![vec![1, 2]])
        );
        assert_eq!(run(&mut db, &mut e, &mut b, insert(&[1, 3])), Err(3));
        assert_eq!(commit(&mut db, &mut e, &mut a), 0);
        assert_eq!(commit(&mut db, &mut e, &mut b), 97);
        assert_eq!(committed(&mut db), [[1, 1]]);
    }

    #[test]
    fn read_confirmed_skips_commits_in_their_wal_write() {
        let (mut db, mut e) = world();
        let mut confirmed = e.begin(READ_CONFIRMED);
        let mut committed_ = e.begin(spindle_types::txn_cfg::READ_COMMITTED);
        let mut best = e.begin(BEST_EFFORT);
        let outcome = db
            .execute_write(ADMIN, &replace(&[5]).0, &replace(&[5]).1)
            .expect("write");
        e.record(&db, outcome.txn.undo_records(), Some(7));
        assert_eq!(run(&mut db, &mut e, &mut confirmed, all()), Ok(vec![]));
        assert_eq!(run(&mut db, &mut e, &mut best, all()), Ok(vec![]));
        assert_eq!(
            run(&mut db, &mut e, &mut committed_, all()),
            Ok(vec![vec![5]])
        );
        e.confirmed(7);
        assert_eq!(
            run(&mut db, &mut e, &mut committed_, all()),
            Ok(vec![vec![5]])
        );
        // The two that did not see it read a state that is gone: a read view now.
        assert_eq!(run(&mut db, &mut e, &mut confirmed, all()), Ok(vec![]));
        assert_eq!(commit(&mut db, &mut e, &mut confirmed), 0);
        assert_eq!(run(&mut db, &mut e, &mut best, replace(&[6])), CONFLICT);
        let mut fresh = e.begin(READ_CONFIRMED);
        assert_eq!(run(&mut db, &mut e, &mut fresh, all()), Ok(vec![vec![5]]));
    }

    #[test]
    fn ddl_aborts_every_transaction_and_the_window_is_bounded() {
        let (mut db, mut e) = world();
        let mut a = e.begin(BEST_EFFORT);
        assert!(run(&mut db, &mut e, &mut a, replace(&[1])).is_ok());
        let index = crate::bootstrap::encode(
            &json!([S, 1, "sk", "tree", {"unique": false}, [[1, "unsigned"]]]),
        );
        let mut ddl = Txn::new();
        db.apply(
            &mut ddl,
            Dml::Insert {
                space_id: sys::INDEX,
                tuple: &index,
            },
        )
        .expect("index");
        e.record(&db, ddl.undo_records(), None);
        assert_eq!(run(&mut db, &mut e, &mut a, all()), CONFLICT);
        let mut b = e.begin(BEST_EFFORT);
        assert!(run(&mut db, &mut e, &mut b, all()).is_ok());
        for k in 0..MVCC_HISTORY_MAX as u64 + 1 {
            e.record(&db, &[], None);
            let _ = k;
        }
        assert_eq!(run(&mut db, &mut e, &mut b, all()), CONFLICT);
        // Many reads across many commits: aborted rather than checked at length.
        let (mut c, mut d) = (e.begin(BEST_EFFORT), e.begin(BEST_EFFORT));
        for k in 0..128 {
            for t in [&mut c, &mut d] {
                assert!(run(&mut db, &mut e, t, select(&[k], IteratorType::Eq)).is_ok());
            }
        }
        for _ in 0..MVCC_CHECK_PAIRS_MAX / 128 {
            e.record(&db, &[], None);
        }
        assert!(run(&mut db, &mut e, &mut d, all()).is_ok());
        e.record(&db, &[], None);
        assert_eq!(run(&mut db, &mut e, &mut c, all()), CONFLICT);
        assert!(run(&mut db, &mut e, &mut d, all()).is_ok());
        e.forget_all();
        let mut c = e.begin(BEST_EFFORT);
        assert!(run(&mut db, &mut e, &mut c, all()).is_ok());
    }

    /// A step of the property test below: a transaction (0 or 1) reads a key or the whole
    /// space, replaces or deletes a key, or commits (and a new one begins); or an
    /// autocommit replace.
    #[derive(Clone, Debug)]
    enum Step {
        Look(usize, Look),
        Put(usize, u64, u64),
        Del(usize, u64),
        Commit(usize),
        Auto(u64, u64),
        /// The WAL writes the oldest commit still in its WAL write.
        Confirm,
    }

    fn step() -> impl Strategy<Value = Step> {
        let t = 0usize..2;
        let k = 0u64..4;
        prop_oneof![
            (t.clone(), look()).prop_map(|(t, l)| Step::Look(t, l)),
            (t.clone(), k.clone(), 0u64..100).prop_map(|(t, k, v)| Step::Put(t, k, v)),
            (t.clone(), k.clone()).prop_map(|(t, k)| Step::Del(t, k)),
            t.prop_map(Step::Commit),
            (k, 0u64..100).prop_map(|(k, v)| Step::Auto(k, v)),
            Just(Step::Confirm),
        ]
    }

    /// A read: one key, the whole space, or its first or last tuple (LIMIT 1).
    #[derive(Clone, Copy, Debug)]
    enum Look {
        Get(u64),
        Scan,
        First,
        Last,
    }

    fn look() -> impl Strategy<Value = Look> {
        prop_oneof![
            (0u64..4).prop_map(Look::Get),
            Just(Look::Scan),
            Just(Look::First),
            Just(Look::Last),
        ]
    }

    fn look_request(look: Look) -> Req {
        let limit_one = |(mut request, packet): Req| {
            if let Request::Select { limit, .. } = &mut request {
                *limit = 1;
            }
            (request, packet)
        };
        match look {
            Look::Get(k) => select(&[k], IteratorType::Eq),
            Look::Scan => all(),
            Look::First => limit_one(all()),
            Look::Last => limit_one(select(&[], IteratorType::Le)),
        }
    }

    type State = BTreeMap<u64, u64>;
    /// A transaction's own writes: key → new value, or deleted.
    type Own = BTreeMap<u64, Option<u64>>;

    /// The model of one transaction: its own writes so far and what each read returned
    /// with the own writes it had then.
    #[derive(Default)]
    struct Model {
        own: Own,
        reads: Vec<(Look, Vec<Vec<u64>>, Own)>,
        aborted: bool,
    }

    /// What a read of `key` (None: all) returns from `state` with `own` writes on top.
    fn expect(state: &State, own: &Own, look: Look) -> Vec<Vec<u64>> {
        let mut view = state.clone();
        for (k, v) in own {
            match v {
                Some(v) => view.insert(*k, *v),
                None => view.remove(k),
            };
        }
        let row = |(k, v): (&u64, &u64)| vec![*k, *v];
        match look {
            Look::Get(want) => view.get_key_value(&want).map(row).into_iter().collect(),
            Look::Scan => view.iter().map(row).collect(),
            Look::First => view.iter().next().map(row).into_iter().collect(),
            Look::Last => view.iter().next_back().map(row).into_iter().collect(),
        }
    }

    proptest! {
        /// Against a serial model: autocommit readers see exactly the committed
        /// transactions, applied in commit order; a transaction that commits with writes
        /// read what the state just before its commit held (plus its own writes so far);
        /// a read-only one read one committed state throughout.
        #[test]
        fn transactions_serialize_like_a_serial_model(
            steps in proptest::collection::vec(step(), 1..40)
        ) {
            let (mut db, mut e) = world();
            let mut state = State::new();
            let mut states = vec![state.clone()];
            // Every commit waits for the WAL until a Confirm step writes it, oldest first.
            let mut next_seq = 1u64;
            let mut in_wal = std::collections::VecDeque::new();
            let mut txns = [e.begin(BEST_EFFORT), e.begin(BEST_EFFORT)];
            let mut models = [Model::default(), Model::default()];
            for s in steps {
                match s {
                    Step::Look(t, look) if !models[t].aborted => {
                        match run(&mut db, &mut e, &mut txns[t], look_request(look)) {
                            Ok(got) => {
                                let own = models[t].own.clone();
                                models[t].reads.push((look, got, own));
                            }
                            Err(code) => {
                                prop_assert_eq!(code, 97);
                                models[t].aborted = true;
                            }
                        }
                    }
                    Step::Put(t, k, _) | Step::Del(t, k) if !models[t].aborted => {
                        let (req, value) = match s {
                            Step::Put(_, _, v) => (replace(&[k, v]), Some(v)),
                            _ => (delete(k), None),
                        };
                        match run(&mut db, &mut e, &mut txns[t], req) {
                            Ok(_) => {
                                models[t].own.insert(k, value);
                            }
                            Err(code) => {
                                prop_assert_eq!(code, 97);
                                models[t].aborted = true;
                            }
                        }
                    }
                    Step::Commit(t) => {
                        let code = match e.commit(&mut db, &mut txns[t], ADMIN) {
                            Ok(txn) => {
                                e.record(&db, txn.undo_records(), Some(next_seq));
                                in_wal.push_back(next_seq);
                                next_seq += 1;
                                0
                            }
                            Err(err) => err.code,
                        };
                        let m = std::mem::take(&mut models[t]);
                        if code == 0 {
                            prop_assert!(!m.aborted);
                            if m.own.is_empty() {
                                let one = states.iter().any(|st| {
                                    m.reads.iter().all(|(k, got, own)| expect(st, own, *k) == *got)
                                });
                                prop_assert!(one, "a read-only transaction saw no single state");
                            } else {
                                for (k, got, own) in &m.reads {
                                    prop_assert_eq!(&expect(&state, own, *k), got);
                                }
                                let after = expect(&state, &m.own, Look::Scan);
                                state = after.iter().map(|r| (r[0], r[1])).collect();
                                states.push(state.clone());
                            }
                        } else {
                            prop_assert_eq!(code, 97);
                        }
                        txns[t] = e.begin(BEST_EFFORT);
                    }
                    Step::Auto(k, v) => {
                        let (request, packet) = replace(&[k, v]);
                        let outcome = db.execute_write(ADMIN, &request, &packet).expect("write");
                        e.record(&db, outcome.txn.undo_records(), Some(next_seq));
                        in_wal.push_back(next_seq);
                        next_seq += 1;
                        state.insert(k, v);
                        states.push(state.clone());
                    }
                    Step::Confirm => {
                        if let Some(seq) = in_wal.pop_front() {
                            e.confirmed(seq);
                        }
                    }
                    _ => {}
                }
                let seen: State = committed(&mut db).iter().map(|r| (r[0], r[1])).collect();
                prop_assert_eq!(&seen, &state);
            }
        }
    }
}
