//! Conflict detection for transactions that span yields — memtx MVCC over streams and
//! `box.begin()` (issue 16) and the HTTP API's preconditions (issue 17) — as one pure
//! mechanism: what a transaction's results depend on (`Read`: keys and key ranges of an
//! index), what the transactions committed since wrote (`History`), and whether they meet.
//!
//! Tarantool's engine finds a conflict when the *breaker* prepares and aborts the victims
//! then; a victim learns it at its next statement or commit, never sooner. Checking the
//! victim's reads against the commits made since its last statement, when it makes the next
//! one, gives the same answers at the same points (`Tracker::check`): a victim that has
//! written is aborted; one that has not is sent to a read view just before the breaking
//! commit, and aborted only if it writes later. The same check against a client's read
//! version is a precondition. Keys are MessagePack key parts, ordered by the caller
//! (`KeyOrder`: the index's key definition); versions are commit numbers.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::ops::Bound;

/// A commit's number: commits are numbered in the order they prepare, from 1.
pub type Version = u64;

/// An index of a space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IndexId {
    pub space: u32,
    pub index: u32,
}

/// The order of an index's keys. Keys are MessagePack arrays of key parts; a bound may be a
/// prefix (fewer parts), and `compare_prefix` compares a full key with it on the parts the
/// bound has, as Tarantool's iterators do.
pub trait KeyOrder {
    fn compare_prefix(&self, index: IndexId, key: &[u8], bound: &[u8]) -> Ordering;
}

/// What a transaction's results depend on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// A full key looked up, found or not (a "point hole" when not), or a key a statement
    /// depended on implicitly (INSERT needs it absent; UPDATE, UPSERT and DELETE read it).
    Key { index: IndexId, key: Vec<u8> },
    /// The keys an iterator passed over, including none (a gap): every key with
    /// `lower <= key <= upper` by `compare_prefix`, bounds inclusive or not.
    Range {
        index: IndexId,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
    },
}

/// A key a commit wrote (inserted, replaced or deleted), in one index; a tuple's write is
/// one per index of its space, and a replace names the old tuple's keys too where they
/// differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub index: IndexId,
    pub key: Vec<u8>,
}

/// What one commit wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Commit {
    pub writes: Vec<Write>,
    /// A schema change: every transaction in progress conflicts with it (2.11 aborts them).
    pub ddl: bool,
}

/// Whether a read depends on a written key.
fn depends(order: &impl KeyOrder, read: &Read, write: &Write) -> bool {
    match read {
        Read::Key { index, key } => {
            *index == write.index && order.compare_prefix(write.index, &write.key, key).is_eq()
        }
        Read::Range {
            index,
            lower,
            upper,
        } => *index == write.index && in_range(order, write, lower, upper),
    }
}

fn in_range(
    order: &impl KeyOrder,
    w: &Write,
    lower: &Bound<Vec<u8>>,
    upper: &Bound<Vec<u8>>,
) -> bool {
    let above = match lower {
        Bound::Unbounded => true,
        Bound::Included(b) => order.compare_prefix(w.index, &w.key, b).is_ge(),
        Bound::Excluded(b) => order.compare_prefix(w.index, &w.key, b).is_gt(),
    };
    let below = match upper {
        Bound::Unbounded => true,
        Bound::Included(b) => order.compare_prefix(w.index, &w.key, b).is_le(),
        Bound::Excluded(b) => order.compare_prefix(w.index, &w.key, b).is_lt(),
    };
    above && below
}

/// The commits of a recent window, oldest first, bounded: a check that needs commits older
/// than the window is answered `TooOld` (the caller aborts that transaction, as a conflict).
#[derive(Debug)]
pub struct History {
    commits: VecDeque<Commit>,
    /// The version of `commits[0]`; with none kept, the next version to come.
    first: Version,
    max_commits: usize,
}

/// The answer of `History::first_conflict`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    None,
    /// The oldest commit after the given version that wrote something read.
    At(Version),
    /// The oldest commit after the given version that changed the schema.
    Ddl(Version),
    /// The commits after the given version are no longer all kept.
    TooOld,
}

impl History {
    pub fn new(max_commits: usize) -> History {
        History {
            commits: VecDeque::new(),
            first: 1,
            max_commits: max_commits.max(1),
        }
    }

    /// The last version committed (0 before any).
    pub fn last(&self) -> Version {
        self.first + self.commits.len() as Version - 1
    }

    /// Records the next commit; its version.
    pub fn push(&mut self, commit: Commit) -> Version {
        if self.commits.len() >= self.max_commits {
            self.commits.pop_front();
            self.first += 1;
        }
        self.commits.push_back(commit);
        self.last()
    }

    /// Forgets the commits up to `version` (no transaction needs them any more).
    pub fn forget_through(&mut self, version: Version) {
        while self.first <= version && self.commits.pop_front().is_some() {
            self.first += 1;
        }
    }

    /// The oldest commit after `since` that wrote something in `reads`.
    pub fn first_conflict(&self, order: &impl KeyOrder, reads: &[Read], since: Version) -> Found {
        if since + 1 < self.first {
            return Found::TooOld;
        }
        let skip = (since + 1 - self.first) as usize;
        for (i, commit) in self.commits.iter().enumerate().skip(skip) {
            let version = self.first + i as Version;
            if commit.ddl {
                return Found::Ddl(version);
            }
            let hit = commit
                .writes
                .iter()
                .any(|w| reads.iter().any(|r| depends(order, r, w)));
            if hit {
                return Found::At(version);
            }
        }
        Found::None
    }
}

/// Where a transaction stands after `Tracker::check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// It reads the state as of this version (the latest it has caught up with).
    Current(Version),
    /// A commit broke its reads before it wrote: it goes on reading the state as of this
    /// version, and fails if it writes.
    ReadView(Version),
    /// It conflicted (ER_TRANSACTION_CONFLICT): every statement and its commit fail.
    Aborted,
}

/// One transaction's side of the check: its reads, whether it has written, where it stands.
#[derive(Clone, Debug)]
pub struct Tracker {
    reads: Vec<Read>,
    has_writes: bool,
    standing: Standing,
}

impl Tracker {
    /// A transaction that begins when `now` is the last commit.
    pub fn begin(now: Version) -> Tracker {
        Tracker {
            reads: Vec::new(),
            has_writes: false,
            standing: Standing::Current(now),
        }
    }

    pub fn standing(&self) -> Standing {
        self.standing
    }

    pub fn reads(&self) -> &[Read] {
        &self.reads
    }

    /// The oldest version this transaction may still need the history from.
    pub fn needs_since(&self) -> Option<Version> {
        match self.standing {
            Standing::Current(v) => Some(v),
            Standing::ReadView(_) | Standing::Aborted => None,
        }
    }

    pub fn has_writes(&self) -> bool {
        self.has_writes
    }

    /// Its reads were made against the state as of `version`, older than the one it has
    /// caught up with (a read-confirmed read skips commits still in their WAL write): the
    /// next `check` looks at the commits after `version` again. A read view newer than
    /// `version` comes down to it: the transaction has now read that older state, and a
    /// later read of the newer one (once those commits are written) would not agree.
    pub fn rewind(&mut self, version: Version) {
        self.standing = match self.standing {
            Standing::Current(seen) => Standing::Current(seen.min(version)),
            Standing::ReadView(view) => Standing::ReadView(view.min(version)),
            Standing::Aborted => Standing::Aborted,
        };
    }

    /// A conflict found elsewhere (a schema change, its writes no longer fitting the store).
    pub fn abort(&mut self) {
        self.standing = Standing::Aborted;
    }

    pub fn read(&mut self, read: Read) {
        if !matches!(self.standing, Standing::Aborted) {
            self.reads.push(read);
        }
    }

    /// Before a statement (or the commit): catches up with the commits since the last check.
    pub fn check(&mut self, history: &History, order: &impl KeyOrder) -> Standing {
        let Standing::Current(seen) = self.standing else {
            return self.standing;
        };
        self.standing = match history.first_conflict(order, &self.reads, seen) {
            Found::None => Standing::Current(history.last()),
            Found::TooOld | Found::Ddl(_) => Standing::Aborted,
            Found::At(_) if self.has_writes => Standing::Aborted,
            Found::At(v) => Standing::ReadView(v - 1),
        };
        self.standing
    }

    /// Before a write: `check`, and a transaction in a read view is aborted (it read a state
    /// that is gone). False if the write must fail.
    pub fn write(&mut self, history: &History, order: &impl KeyOrder) -> bool {
        match self.check(history, order) {
            Standing::Current(_) => {
                self.has_writes = true;
                true
            }
            Standing::ReadView(_) | Standing::Aborted => {
                self.standing = Standing::Aborted;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: IndexId = IndexId {
        space: 512,
        index: 0,
    };

    /// Keys of unsigned parts, compared part by part over the bound's parts.
    struct Unsigned;

    fn parts(mut key: &[u8]) -> Vec<u64> {
        let n = spindle_proto::mp::read_array_len(&mut key).unwrap_or(0);
        (0..n)
            .filter_map(|_| spindle_proto::mp::read_uint(&mut key).ok())
            .collect()
    }

    impl KeyOrder for Unsigned {
        fn compare_prefix(&self, _: IndexId, key: &[u8], bound: &[u8]) -> Ordering {
            let (k, b) = (parts(key), parts(bound));
            k.iter().take(b.len()).cmp(b.iter())
        }
    }

    fn key(parts: &[u64]) -> Vec<u8> {
        let mut out = Vec::new();
        spindle_proto::mp::write_array_len(&mut out, parts.len() as u32);
        for p in parts {
            spindle_proto::mp::write_uint(&mut out, *p);
        }
        out
    }

    fn point(k: u64) -> Read {
        Read::Key {
            index: S,
            key: key(&[k]),
        }
    }

    fn all() -> Read {
        Read::Range {
            index: S,
            lower: Bound::Unbounded,
            upper: Bound::Unbounded,
        }
    }

    fn writes(keys: &[u64]) -> Commit {
        Commit {
            writes: keys
                .iter()
                .map(|k| Write {
                    index: S,
                    key: key(&[*k]),
                })
                .collect(),
            ddl: false,
        }
    }

    /// A transaction's statements as the engine would make them: an implicit read (INSERT,
    /// UPDATE, DELETE) is a `read` before the `write`.
    struct Txn {
        t: Tracker,
        wrote: Vec<u64>,
    }

    impl Txn {
        fn begin(h: &History) -> Txn {
            Txn {
                t: Tracker::begin(h.last()),
                wrote: Vec::new(),
            }
        }
        fn read(&mut self, h: &History, r: Read) -> Standing {
            let s = self.t.check(h, &Unsigned);
            self.t.read(r);
            s
        }
        fn write(&mut self, h: &History, k: u64) -> bool {
            let ok = self.t.write(h, &Unsigned);
            if ok {
                self.wrote.push(k);
            }
            ok
        }
        fn commit(&mut self, h: &mut History) -> bool {
            match self.t.check(h, &Unsigned) {
                Standing::Aborted => false,
                _ => {
                    h.push(writes(&self.wrote));
                    true
                }
            }
        }
    }

    fn two() -> (History, Txn, Txn) {
        let h = History::new(64);
        let (a, b) = (Txn::begin(&h), Txn::begin(&h));
        (h, a, b)
    }

    #[test]
    fn read_then_overwritten_aborts_the_later_committer() {
        // §A3 scenario 1 (and 7, the point hole: the same reads of a missing key).
        let (mut h, mut a, mut b) = two();
        a.read(&h, point(1));
        assert!(a.write(&h, 1));
        b.read(&h, point(1));
        assert!(b.write(&h, 1));
        assert!(a.commit(&mut h));
        assert!(!b.commit(&mut h));
        assert_eq!(b.t.standing(), Standing::Aborted);
    }

    #[test]
    fn implicit_reads_conflict_blind_writes_do_not() {
        // Scenario 2 (UPDATE reads its key) and 11 (INSERT needs it absent).
        let (mut h, mut a, mut b) = two();
        a.read(&h, point(1));
        a.write(&h, 1);
        b.read(&h, point(1));
        b.write(&h, 1);
        assert!(a.commit(&mut h));
        assert!(!b.commit(&mut h));
        // Scenario 3: REPLACE of the same key by three transactions: all commit.
        let mut txns: Vec<Txn> = (0..3).map(|_| Txn::begin(&h)).collect();
        for t in &mut txns {
            assert!(t.write(&h, 1));
        }
        for t in &mut txns {
            assert!(t.commit(&mut h));
        }
    }

    #[test]
    fn a_reader_without_writes_moves_to_a_read_view() {
        // Scenarios 4 and 5.
        let (mut h, mut a, mut b) = two();
        assert_eq!(a.read(&h, all()), Standing::Current(0));
        b.write(&h, 1);
        b.write(&h, 2);
        assert!(b.commit(&mut h));
        assert_eq!(a.read(&h, all()), Standing::ReadView(0));
        assert_eq!(a.read(&h, all()), Standing::ReadView(0));
        assert!(!a.write(&h, 3));
        assert_eq!(a.read(&h, all()), Standing::Aborted);
        assert!(!a.commit(&mut h));
    }

    #[test]
    fn gaps_are_reads() {
        // Scenario 6: both saw an empty space and each inserts a different key.
        let (mut h, mut a, mut b) = two();
        a.read(&h, all());
        b.read(&h, all());
        a.write(&h, 1);
        b.write(&h, 2);
        assert!(a.commit(&mut h));
        assert!(!b.commit(&mut h));
        // Scenario 8: point reads of different keys do not meet.
        let (mut a, mut b) = (Txn::begin(&h), Txn::begin(&h));
        a.read(&h, point(10));
        a.write(&h, 10);
        b.read(&h, point(20));
        b.write(&h, 20);
        assert!(a.commit(&mut h));
        assert!(b.commit(&mut h));
        // Scenario 9: GT 5 does not cover 5.
        let (mut a, mut b) = (Txn::begin(&h), Txn::begin(&h));
        a.read(
            &h,
            Read::Range {
                index: S,
                lower: Bound::Excluded(key(&[5])),
                upper: Bound::Unbounded,
            },
        );
        b.write(&h, 5);
        assert!(b.commit(&mut h));
        assert!(a.commit(&mut h));
    }

    #[test]
    fn a_reader_that_saw_the_state_it_changes_loses() {
        // Scenario 10: B saw key 2 (full scan), A deletes it first; B's delete reads it too.
        let (mut h, mut a, mut b) = two();
        b.read(&h, all());
        a.read(&h, point(2));
        a.write(&h, 2);
        assert!(a.commit(&mut h));
        b.read(&h, point(2));
        assert!(!b.write(&h, 2));
        assert!(!b.commit(&mut h));
    }

    #[test]
    fn ddl_aborts_everything_in_progress_and_other_indexes_do_not_meet() {
        let (mut h, mut a, mut b) = two();
        a.read(&h, point(1));
        h.push(Commit {
            writes: Vec::new(),
            ddl: true,
        });
        assert_eq!(a.t.check(&h, &Unsigned), Standing::Aborted);
        assert_eq!(b.t.check(&h, &Unsigned), Standing::Aborted);
        let mut c = Txn::begin(&h);
        c.read(&h, point(1));
        let other = IndexId {
            space: 512,
            index: 1,
        };
        h.push(Commit {
            writes: vec![Write {
                index: other,
                key: key(&[1]),
            }],
            ddl: false,
        });
        assert!(matches!(c.t.check(&h, &Unsigned), Standing::Current(_)));
    }

    #[test]
    fn history_is_bounded_and_too_old_is_a_conflict() {
        let mut h = History::new(4);
        let mut a = Txn::begin(&h);
        a.read(&h, point(1));
        for k in 100..110 {
            h.push(writes(&[k]));
        }
        assert_eq!(h.last(), 10);
        assert_eq!(h.first_conflict(&Unsigned, &[point(1)], 0), Found::TooOld);
        assert_eq!(a.t.check(&h, &Unsigned), Standing::Aborted);
        assert_eq!(h.first_conflict(&Unsigned, &[point(109)], 6), Found::At(10));
        h.forget_through(8);
        assert_eq!(h.first_conflict(&Unsigned, &[point(109)], 8), Found::At(10));
        assert_eq!(h.last(), 10);
    }

    #[test]
    fn prefix_bounds_cover_their_keys() {
        let order = Unsigned;
        let idx = IndexId {
            space: 512,
            index: 2,
        };
        let eq = Read::Range {
            index: idx,
            lower: Bound::Included(key(&[7])),
            upper: Bound::Included(key(&[7])),
        };
        let w = |parts: &[u64]| Write {
            index: idx,
            key: key(parts),
        };
        assert!(depends(&order, &eq, &w(&[7, 1])));
        assert!(depends(&order, &eq, &w(&[7, 99])));
        assert!(!depends(&order, &eq, &w(&[8, 0])));
    }

    fn bound() -> impl Strategy<Value = Bound<u64>> {
        prop_oneof![
            Just(Bound::Unbounded),
            (0u64..8).prop_map(Bound::Included),
            (0u64..8).prop_map(Bound::Excluded),
        ]
    }

    fn model_read() -> impl Strategy<Value = (Option<u64>, Bound<u64>, Bound<u64>)> {
        prop_oneof![
            (0u64..8).prop_map(|k| (Some(k), Bound::Unbounded, Bound::Unbounded)),
            (bound(), bound()).prop_map(|(l, u)| (None, l, u)),
        ]
    }

    fn covers((k, l, u): &(Option<u64>, Bound<u64>, Bound<u64>), w: u64) -> bool {
        if let Some(k) = k {
            return *k == w;
        }
        let above = match l {
            Bound::Unbounded => true,
            Bound::Included(b) => w >= *b,
            Bound::Excluded(b) => w > *b,
        };
        let below = match u {
            Bound::Unbounded => true,
            Bound::Included(b) => w <= *b,
            Bound::Excluded(b) => w < *b,
        };
        above && below
    }

    fn as_read((k, l, u): &(Option<u64>, Bound<u64>, Bound<u64>)) -> Read {
        let enc = |b: &Bound<u64>| match b {
            Bound::Unbounded => Bound::Unbounded,
            Bound::Included(x) => Bound::Included(key(&[*x])),
            Bound::Excluded(x) => Bound::Excluded(key(&[*x])),
        };
        match k {
            Some(k) => point(*k),
            None => Read::Range {
                index: S,
                lower: enc(l),
                upper: enc(u),
            },
        }
    }

    proptest! {
        /// `first_conflict` finds the first commit that wrote a key a read covers, as a
        /// brute-force walk over the same small key space does.
        #[test]
        fn first_conflict_matches_a_model(
            reads in proptest::collection::vec(model_read(), 0..4),
            commits in proptest::collection::vec(proptest::collection::vec(0u64..8, 0..3), 0..6),
            since in 0u64..6,
        ) {
            let mut h = History::new(16);
            for c in &commits {
                h.push(writes(c));
            }
            let since = since.min(h.last());
            let expected = commits
                .iter()
                .enumerate()
                .skip(since as usize)
                .find(|(_, c)| c.iter().any(|w| reads.iter().any(|r| covers(r, *w))))
                .map_or(Found::None, |(i, _)| Found::At(i as Version + 1));
            let got = h.first_conflict(&Unsigned, &reads.iter().map(as_read).collect::<Vec<_>>(), since);
            prop_assert_eq!(got, expected);
        }
    }
}
