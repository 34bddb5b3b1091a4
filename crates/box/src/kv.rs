//! The HTTP commit API's keyspace (docs/http-api.md): two ordinary memtx spaces, `_kv`
//! (`{key: varbinary, value: varbinary}`, TREE on the key, so keys order bytewise) and
//! `_kv_commit` (`{version, request_id, leader_id, ts}`, TREE on the version and a unique TREE
//! on the request id), created by plain DDL rows. A commit's changes and its `_kv_commit` row
//! are one transaction, so the version is in the log: recovery and replicas rebuild it like
//! any row. Also the preconditions' check over the recent commits (`Recent`, on
//! `conflict::History`), with keys compared as raw bytes.

use std::cmp::Ordering;
use std::ops::Bound;

use spindle_memtx::tuple::Tuple;
use spindle_proto::kv::{Key, Operation, Precondition};
use spindle_proto::mp;
use spindle_types::iproto::IteratorType;
use spindle_types::{BoxError, BoxResult};

use crate::catalog::sys;
use crate::conflict::{Commit, Found, History, IndexId, KeyOrder, Read, Version, Write};
use crate::db::Db;
use crate::dml::Dml;
use crate::txn::Txn;

pub const DATA_SPACE: &str = "_kv";
pub const COMMIT_SPACE: &str = "_kv_commit";

/// Keys a range operation reads from memory at a time.
const RANGE_PAGE: u32 = 1024;

/// The ids of the two spaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvSpaces {
    pub data: u32,
    pub commits: u32,
}

/// The spaces, if both exist (after recovery, or on a replica once the master made them).
pub fn find(db: &Db) -> Option<KvSpaces> {
    let data = db.catalog().id_by_name(DATA_SPACE)?;
    let commits = db.catalog().id_by_name(COMMIT_SPACE)?;
    Some(KvSpaces { data, commits })
}

/// Creates both spaces with DDL rows as `box.schema` would (owner admin, ids after the
/// largest in use, `_schema.max_id` moved on), as part of `txn`.
pub fn create(db: &mut Db, txn: &mut Txn) -> BoxResult<KvSpaces> {
    let first = next_space_id(db)?;
    let spaces = KvSpaces {
        data: first,
        commits: first + 1,
    };
    let mut rows: Vec<(u32, Vec<u8>)> = vec![
        (sys::SCHEMA, schema_max_id_row(spaces.commits)),
        (
            sys::SPACE,
            space_row(
                spaces.data,
                DATA_SPACE,
                &[("key", "varbinary"), ("value", "varbinary")],
            ),
        ),
        (
            sys::INDEX,
            index_row(spaces.data, 0, "primary", 0, "varbinary"),
        ),
        (
            sys::SPACE,
            space_row(
                spaces.commits,
                COMMIT_SPACE,
                &[
                    ("version", "unsigned"),
                    ("request_id", "string"),
                    ("leader_id", "string"),
                    ("ts", "double"),
                ],
            ),
        ),
        (
            sys::INDEX,
            index_row(spaces.commits, 0, "primary", 0, "unsigned"),
        ),
    ];
    rows.push((
        sys::INDEX,
        index_row(spaces.commits, 1, "request_id", 1, "string"),
    ));
    for (space_id, tuple) in &rows {
        let dml = match *space_id {
            sys::SCHEMA => Dml::Replace {
                space_id: *space_id,
                tuple,
            },
            _ => Dml::Insert {
                space_id: *space_id,
                tuple,
            },
        };
        db.apply(txn, dml)?;
    }
    Ok(spaces)
}

fn next_space_id(db: &Db) -> BoxResult<u32> {
    let in_use = db.catalog().ids().into_iter().max().unwrap_or(0);
    let schema = &db.space(sys::SCHEMA)?.space;
    let mut key = Vec::new();
    mp::write_array_len(&mut key, 1);
    mp::write_str(&mut key, "max_id");
    let noted = schema
        .select(0, IteratorType::Eq, &key, 0, 1)?
        .first()
        .and_then(|t| t.field(1).and_then(|mut f| mp::read_uint(&mut f).ok()))
        .unwrap_or(0);
    let last = u64::from(in_use.max(sys::SYSTEM_ID_MAX)).max(noted);
    u32::try_from(last + 1).map_err(|_| BoxError::illegal_params("no space id left"))
}

fn schema_max_id_row(id: u32) -> Vec<u8> {
    let mut t = Vec::new();
    mp::write_array_len(&mut t, 2);
    mp::write_str(&mut t, "max_id");
    mp::write_uint(&mut t, u64::from(id));
    t
}

/// A `_space` row: `[id, owner admin, name, 'memtx', 0, {}, format]`.
fn space_row(id: u32, name: &str, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut t = Vec::new();
    mp::write_array_len(&mut t, 7);
    mp::write_uint(&mut t, u64::from(id));
    mp::write_uint(&mut t, 1);
    mp::write_str(&mut t, name);
    mp::write_str(&mut t, "memtx");
    mp::write_uint(&mut t, 0);
    mp::write_map_len(&mut t, 0);
    mp::write_array_len(&mut t, fields.len() as u32);
    for (field, kind) in fields {
        mp::write_map_len(&mut t, 2);
        mp::write_str(&mut t, "name");
        mp::write_str(&mut t, field);
        mp::write_str(&mut t, "type");
        mp::write_str(&mut t, kind);
    }
    t
}

/// A unique TREE `_index` row on one field.
fn index_row(space: u32, iid: u32, name: &str, field: u32, kind: &str) -> Vec<u8> {
    let mut t = Vec::new();
    mp::write_array_len(&mut t, 6);
    mp::write_uint(&mut t, u64::from(space));
    mp::write_uint(&mut t, u64::from(iid));
    mp::write_str(&mut t, name);
    mp::write_str(&mut t, "tree");
    mp::write_map_len(&mut t, 1);
    mp::write_str(&mut t, "unique");
    mp::write_bool(&mut t, true);
    mp::write_array_len(&mut t, 1);
    mp::write_array_len(&mut t, 2);
    mp::write_uint(&mut t, u64::from(field));
    mp::write_str(&mut t, kind);
    t
}

fn key_of(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 6);
    mp::write_array_len(&mut k, 1);
    mp::write_bin(&mut k, key);
    k
}

fn bytes_field(t: &Tuple, no: u32) -> Vec<u8> {
    t.field(no)
        .and_then(|mut f| mp::read_str_or_bin(&mut f).ok())
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

/// The newest committed version in `_kv_commit` (0 with none).
pub fn last_version(db: &Db, spaces: KvSpaces) -> BoxResult<u64> {
    let space = &db.space(spaces.commits)?.space;
    let last = space.select(0, IteratorType::Le, &[0x90], 0, 1)?;
    Ok(last
        .first()
        .and_then(|t| t.field(0).and_then(|mut f| mp::read_uint(&mut f).ok()))
        .unwrap_or(0))
}

/// The version a request id committed at, if its row is still kept.
pub fn committed_version(db: &Db, spaces: KvSpaces, request_id: &str) -> BoxResult<Option<u64>> {
    let mut key = Vec::new();
    mp::write_array_len(&mut key, 1);
    mp::write_str(&mut key, request_id);
    let space = &db.space(spaces.commits)?.space;
    let found = space.select(1, IteratorType::Eq, &key, 0, 1)?;
    Ok(found
        .first()
        .and_then(|t| t.field(0).and_then(|mut f| mp::read_uint(&mut f).ok())))
}

/// The value of `key`, if present.
pub fn read(db: &Db, spaces: KvSpaces, key: &[u8]) -> BoxResult<Option<Vec<u8>>> {
    let space = &db.space(spaces.data)?.space;
    let found = space.select(0, IteratorType::Eq, &key_of(key), 0, 1)?;
    Ok(found.first().map(|t| bytes_field(t, 1)))
}

/// Key-value pairs in key order.
pub type Pairs = Vec<(Key, Vec<u8>)>;

/// Up to `limit` pairs with `begin <= key < end`, and whether more follow.
pub fn range(
    db: &Db,
    spaces: KvSpaces,
    begin: &[u8],
    end: Option<&[u8]>,
    limit: u32,
) -> BoxResult<(Pairs, bool)> {
    let space = &db.space(spaces.data)?.space;
    let found = space.select(
        0,
        IteratorType::Ge,
        &key_of(begin),
        0,
        limit.saturating_add(1),
    )?;
    let mut pairs = Vec::with_capacity(found.len());
    for t in &found {
        let key = bytes_field(t, 0);
        if end.is_some_and(|e| key.as_slice() >= e) {
            return Ok((pairs, false));
        }
        if pairs.len() as u32 == limit {
            return Ok((pairs, true));
        }
        pairs.push((key, bytes_field(t, 1)));
    }
    Ok((pairs, false))
}

/// The present keys with `begin <= key < end`, at most `max` of them (an error past it).
fn keys_in(
    db: &Db,
    spaces: KvSpaces,
    begin: &[u8],
    end: Option<&[u8]>,
    max: usize,
) -> BoxResult<Vec<Key>> {
    let space = &db.space(spaces.data)?.space;
    let mut keys: Vec<Key> = Vec::new();
    let mut from = (IteratorType::Ge, key_of(begin));
    loop {
        let page = space.select(0, from.0, &from.1, 0, RANGE_PAGE)?;
        for t in &page {
            let key = bytes_field(t, 0);
            if end.is_some_and(|e| key.as_slice() >= e) {
                return Ok(keys);
            }
            if keys.len() >= max {
                return Err(BoxError::illegal_params(&format!(
                    "range_delete covers more than {max} keys"
                )));
            }
            keys.push(key);
        }
        match keys.last() {
            Some(last) if page.len() as u32 == RANGE_PAGE => {
                from = (IteratorType::Gt, key_of(last));
            }
            _ => return Ok(keys),
        }
    }
}

/// Applies a commit's operations to `_kv` as part of `txn`; the keys it wrote (a range
/// delete writes the keys it removed). At most `max_keys` keys in all.
pub fn apply(
    db: &mut Db,
    txn: &mut Txn,
    spaces: KvSpaces,
    operations: &[Operation],
    max_keys: usize,
) -> BoxResult<Vec<Key>> {
    let mut written: Vec<Key> = Vec::new();
    let mut tuple = Vec::new();
    for op in operations {
        match op {
            Operation::Write { key, value } => {
                tuple.clear();
                mp::write_array_len(&mut tuple, 2);
                mp::write_bin(&mut tuple, key);
                mp::write_bin(&mut tuple, value);
                let dml = Dml::Replace {
                    space_id: spaces.data,
                    tuple: &tuple,
                };
                db.apply(txn, dml)?;
                written.push(key.clone());
            }
            Operation::Delete { key } => {
                delete(db, txn, spaces, key)?;
                written.push(key.clone());
            }
            Operation::RangeDelete { begin, end } => {
                let room = max_keys.saturating_sub(written.len());
                for key in keys_in(db, spaces, begin, end.as_deref(), room)? {
                    delete(db, txn, spaces, &key)?;
                    written.push(key);
                }
            }
        }
        if written.len() > max_keys {
            return Err(BoxError::illegal_params(&format!(
                "a commit writes more than {max_keys} keys"
            )));
        }
    }
    Ok(written)
}

fn delete(db: &mut Db, txn: &mut Txn, spaces: KvSpaces, key: &[u8]) -> BoxResult<()> {
    let k = key_of(key);
    let dml = Dml::Delete {
        space_id: spaces.data,
        index_id: 0,
        key: &k,
    };
    db.apply(txn, dml).map(|_| ())
}

/// Logs the commit record `[version, request_id, leader_id, ts]` as part of `txn`.
pub fn record(
    db: &mut Db,
    txn: &mut Txn,
    spaces: KvSpaces,
    version: u64,
    request_id: &str,
    leader_id: &str,
    ts: f64,
) -> BoxResult<()> {
    let mut t = Vec::new();
    mp::write_array_len(&mut t, 4);
    mp::write_uint(&mut t, version);
    mp::write_str(&mut t, request_id);
    mp::write_str(&mut t, leader_id);
    mp::write_f64(&mut t, ts);
    let dml = Dml::Insert {
        space_id: spaces.commits,
        tuple: &t,
    };
    db.apply(txn, dml).map(|_| ())
}

/// Keys compared as raw bytes: they are never MessagePack here.
struct Bytewise;

impl KeyOrder for Bytewise {
    fn compare_prefix(&self, _index: IndexId, key: &[u8], bound: &[u8]) -> Ordering {
        key.cmp(bound)
    }
}

const KV_INDEX: IndexId = IndexId { space: 0, index: 0 };

/// Why preconditions could not be checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unchecked {
    /// A version older than the window: `oldest` is the oldest one that can be checked.
    TooOld { oldest: Version },
    /// A version newer than the last commit.
    Future,
}

/// The writes of the recent commits, by version. `History` numbers its commits from 1; ours
/// continue from `base`, the version before its first (the last one recovered, or the last
/// one before a history reset).
#[derive(Debug)]
pub struct Recent {
    history: History,
    base: Version,
    /// Commits pushed since `base`, and the window.
    pushed: u64,
    window: usize,
}

impl Recent {
    pub fn new(last: Version, window: usize) -> Recent {
        Recent {
            history: History::new(window),
            base: last,
            pushed: 0,
            window: window.max(1),
        }
    }

    /// The newest version handed out.
    pub fn last(&self) -> Version {
        self.base + self.pushed
    }

    /// The oldest version preconditions can be checked against.
    pub fn oldest(&self) -> Version {
        self.base + self.pushed.saturating_sub(self.window as u64)
    }

    /// The indexes of the preconditions that a commit after their version broke.
    pub fn check(&self, preconditions: &[Precondition]) -> Result<Vec<usize>, Unchecked> {
        let mut broken = Vec::new();
        for (i, p) in preconditions.iter().enumerate() {
            let (read, version) = match p {
                Precondition::PointRead { key, version } => (
                    Read::Key {
                        index: KV_INDEX,
                        key: key.clone(),
                    },
                    *version,
                ),
                Precondition::RangeRead {
                    begin,
                    end,
                    version,
                } => (
                    Read::Range {
                        index: KV_INDEX,
                        lower: Bound::Included(begin.clone()),
                        upper: end.clone().map_or(Bound::Unbounded, Bound::Excluded),
                    },
                    *version,
                ),
            };
            if version > self.last() {
                return Err(Unchecked::Future);
            }
            if version < self.oldest() {
                return Err(Unchecked::TooOld {
                    oldest: self.oldest(),
                });
            }
            match self
                .history
                .first_conflict(&Bytewise, &[read], version - self.base)
            {
                Found::None => {}
                Found::At(_) | Found::Ddl(_) => broken.push(i),
                Found::TooOld => {
                    return Err(Unchecked::TooOld {
                        oldest: self.oldest(),
                    })
                }
            }
        }
        Ok(broken)
    }

    /// Records the next commit's written keys; its version.
    pub fn push(&mut self, keys: Vec<Key>) -> Version {
        let writes = keys
            .into_iter()
            .map(|key| Write {
                index: KV_INDEX,
                key,
            })
            .collect();
        self.history.push(Commit { writes, ddl: false });
        self.pushed += 1;
        self.last()
    }

    /// Forgets every commit after `last` (a failed log write rolled them back) and everything
    /// before: preconditions older than `last` answer too old from now on, which is safe.
    pub fn reset(&mut self, last: Version) {
        *self = Recent::new(last, self.window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(key: &[u8], version: u64) -> Precondition {
        Precondition::PointRead {
            key: key.to_vec(),
            version,
        }
    }

    fn range(begin: &[u8], end: Option<&[u8]>, version: u64) -> Precondition {
        Precondition::RangeRead {
            begin: begin.to_vec(),
            end: end.map(<[u8]>::to_vec),
            version,
        }
    }

    #[test]
    fn versions_continue_from_the_recovered_one() {
        let mut r = Recent::new(41, 10);
        assert_eq!(r.last(), 41);
        assert_eq!(r.push(vec![b"a".to_vec()]), 42);
        assert_eq!(r.push(vec![]), 43);
    }

    #[test]
    fn point_reads_fail_only_on_a_later_write_of_their_key() {
        let mut r = Recent::new(0, 10);
        r.push(vec![b"a".to_vec()]); // 1
        r.push(vec![b"b".to_vec()]); // 2
        assert_eq!(r.check(&[point(b"a", 0), point(b"a", 1)]), Ok(vec![0]));
        assert_eq!(r.check(&[point(b"b", 1), point(b"c", 0)]), Ok(vec![0]));
        assert_eq!(r.check(&[point(b"b", 2)]), Ok(vec![]));
    }

    #[test]
    fn range_reads_include_begin_and_exclude_end() {
        let mut r = Recent::new(0, 10);
        r.push(vec![b"m".to_vec()]);
        assert_eq!(r.check(&[range(b"m", Some(b"n"), 0)]), Ok(vec![0]));
        assert_eq!(r.check(&[range(b"a", Some(b"m"), 0)]), Ok(vec![]));
        assert_eq!(r.check(&[range(b"m\0", None, 0)]), Ok(vec![]));
        assert_eq!(r.check(&[range(b"", None, 0)]), Ok(vec![0]));
    }

    #[test]
    fn the_window_edge_is_checkable_and_one_below_is_too_old() {
        let mut r = Recent::new(100, 3);
        for _ in 0..5 {
            r.push(vec![b"k".to_vec()]);
        }
        assert_eq!(r.oldest(), 102);
        assert_eq!(r.check(&[point(b"k", 104)]), Ok(vec![0]));
        assert_eq!(r.check(&[point(b"x", 102)]), Ok(vec![]));
        assert_eq!(
            r.check(&[point(b"x", 101)]),
            Err(Unchecked::TooOld { oldest: 102 })
        );
        assert_eq!(r.check(&[point(b"x", 106)]), Err(Unchecked::Future));
    }

    #[test]
    fn a_reset_forgets_rolled_back_versions() {
        let mut r = Recent::new(0, 10);
        r.push(vec![b"a".to_vec()]);
        r.push(vec![b"a".to_vec()]);
        r.reset(1);
        assert_eq!(r.last(), 1);
        assert_eq!(r.check(&[point(b"a", 1)]), Ok(vec![]));
        assert_eq!(
            r.check(&[point(b"a", 0)]),
            Err(Unchecked::TooOld { oldest: 1 })
        );
        assert_eq!(r.push(vec![]), 2);
    }
}
