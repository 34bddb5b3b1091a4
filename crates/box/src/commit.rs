//! The commit queue: transactions applied to memory and handed to the WAL, waiting for it to
//! say they are durable. Pure: it touches neither the database nor a thread. It numbers each
//! transaction (`seq`), hands queued ones over as one group per WAL message (group commit),
//! completes them by the sequence number the WAL echoes back — never by comparing LSNs, which
//! mean nothing across vclock components (own, local and upstream rows share one log) — and
//! on a failed write gives back everything from the failed transaction on, newest first, for
//! the caller to undo (cascading rollback). The TX shell applies those effects: it sends the
//! replies, unparks the fibers, undoes the changes and resets the vclock.
//!
//! `W` is whoever waits for a transaction's outcome (a reply to send, a fiber to wake).

use std::collections::VecDeque;

use spindle_xlog::journal::JournalTxn;
use spindle_xlog::Row;

use crate::dml::Undo;

pub struct CommitQueue<W> {
    /// The rollback generation: a failed write ends it, and the WAL drops whatever it still
    /// gets of it.
    epoch: u64,
    next_seq: u64,
    /// Queued for the next group, not yet handed to the WAL.
    queued: Vec<JournalTxn>,
    /// Queued or handed over, not yet written: in commit order.
    in_flight: VecDeque<InFlight<W>>,
}

struct InFlight<W> {
    seq: u64,
    firsts: Firsts,
    undo: Vec<Undo>,
    waiter: W,
}

/// The first LSN of each vclock component in a transaction's rows: what to reuse if it is
/// rolled back. Nearly every transaction has rows of one component only: that one is kept
/// inline; the others (own and local rows mixed) go to `more`.
struct Firsts {
    first: (u32, u64),
    more: Vec<(u32, u64)>,
}

impl Firsts {
    fn of(rows: &[Row]) -> Firsts {
        let first = rows
            .first()
            .map_or((0, 0), |r| (r.header.replica_id, r.header.lsn));
        let mut firsts = Firsts {
            first,
            more: Vec::new(),
        };
        for row in rows.iter().skip(1) {
            let id = row.header.replica_id;
            if id != first.0 && !firsts.more.iter().any(|(c, _)| *c == id) {
                firsts.more.push((id, row.header.lsn));
            }
        }
        firsts
    }

    fn iter(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        std::iter::once(self.first).chain(self.more.iter().copied())
    }
}

/// A group of transactions for one WAL message.
#[derive(Debug)]
pub struct Group {
    pub epoch: u64,
    pub txns: Vec<JournalTxn>,
}

/// What a failed write rolls back.
pub struct Rollback<W> {
    /// Every transaction from the failed one on, newest first: undo it, then tell its waiter.
    pub txns: Vec<(Vec<Undo>, W)>,
    /// Per vclock component, the first LSN rolled back: the vclock goes back to just before
    /// it, so that LSN is used again.
    pub reuse_from: Vec<(u32, u64)>,
}

impl<W> Default for CommitQueue<W> {
    fn default() -> Self {
        CommitQueue {
            epoch: 0,
            next_seq: 1,
            queued: Vec::new(),
            in_flight: VecDeque::new(),
        }
    }
}

impl<W> CommitQueue<W> {
    pub fn new() -> Self {
        CommitQueue::default()
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The sequence number the next submitted transaction gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Transactions queued for the next group.
    pub fn queued(&self) -> usize {
        self.queued.len()
    }

    /// True when no transaction waits for the WAL.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// Queues a transaction whose rows carry their LSNs; returns its sequence number. A
    /// transaction with no rows is committed already: its waiter comes back at once.
    pub fn submit(&mut self, rows: Vec<Row>, undo: Vec<Undo>, waiter: W) -> Result<u64, W> {
        if rows.is_empty() {
            return Err(waiter);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let firsts = Firsts::of(&rows);
        self.queued.push(JournalTxn { seq, rows });
        self.in_flight.push_back(InFlight {
            seq,
            firsts,
            undo,
            waiter,
        });
        Ok(seq)
    }

    /// Everything queued since the last group, for one WAL message.
    pub fn take_group(&mut self) -> Option<Group> {
        if self.queued.is_empty() {
            return None;
        }
        Some(Group {
            epoch: self.epoch,
            txns: std::mem::take(&mut self.queued),
        })
    }

    /// The waiters of the newest `count` transactions (the group just taken), oldest first.
    pub fn newest_mut(&mut self, count: usize) -> impl Iterator<Item = &mut W> {
        let skip = self.in_flight.len().saturating_sub(count);
        self.in_flight.iter_mut().skip(skip).map(|t| &mut t.waiter)
    }

    /// The WAL wrote every transaction up to `seq`: their waiters, in commit order.
    pub fn written(&mut self, seq: u64) -> Written<'_, W> {
        Written { queue: self, seq }
    }

    /// The waiter of the oldest transaction if it is written (its number is at most `seq`).
    pub fn pop_written(&mut self, seq: u64) -> Option<W> {
        if self.in_flight.front()?.seq > seq {
            return None;
        }
        self.in_flight.pop_front().map(|t| t.waiter)
    }

    /// The WAL failed to write the transaction `seq` of `epoch` and drops the rest of that
    /// epoch: every transaction from `seq` on is rolled back and a new epoch starts. A
    /// failure of an epoch already ended is stale: nothing happens (None).
    pub fn failed(&mut self, epoch: u64, seq: u64) -> Option<Rollback<W>> {
        if epoch != self.epoch {
            return None;
        }
        self.queued.clear();
        self.epoch += 1;
        let mut rollback = Rollback {
            txns: Vec::new(),
            reuse_from: Vec::new(),
        };
        while self.in_flight.back().is_some_and(|t| t.seq >= seq) {
            let Some(txn) = self.in_flight.pop_back() else {
                break;
            };
            for (component, lsn) in txn.firsts.iter() {
                match rollback
                    .reuse_from
                    .iter_mut()
                    .find(|(c, _)| *c == component)
                {
                    Some((_, first)) => *first = (*first).min(lsn),
                    None => rollback.reuse_from.push((component, lsn)),
                }
            }
            rollback.txns.push((txn.undo, txn.waiter));
        }
        Some(rollback)
    }
}

/// The waiters of written transactions, taken off the queue as they are iterated.
pub struct Written<'a, W> {
    queue: &'a mut CommitQueue<W>,
    seq: u64,
}

impl<W> Iterator for Written<'_, W> {
    type Item = W;

    fn next(&mut self) -> Option<W> {
        self.queue.pop_written(self.seq)
    }
}

impl<W> Drop for Written<'_, W> {
    /// Completion must not depend on the caller iterating to the end.
    fn drop(&mut self) {
        for _ in self.by_ref() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spindle_xlog::RowHeader;

    /// Rows of a transaction, each `(component, lsn)`.
    fn rows(spec: &[(u32, u64)]) -> Vec<Row> {
        spec.iter()
            .map(|&(replica_id, lsn)| Row {
                header: RowHeader {
                    replica_id,
                    lsn,
                    ..Default::default()
                },
                body: Vec::new(),
            })
            .collect()
    }

    /// Who a failure rolls back (newest first) and which LSNs it reuses.
    type Expected = (&'static [&'static str], &'static [(u32, u64)]);

    /// One step of a scenario and what it must produce.
    enum Step {
        /// Submit transaction `name` with these rows; it gets the next sequence number.
        Submit(&'static str, &'static [(u32, u64)]),
        /// Take a group: the names in it, and its epoch.
        Take(&'static [&'static str], u64),
        /// The WAL wrote up to the transaction named: who completes, in order.
        Written(&'static str, &'static [&'static str]),
        /// The WAL failed at the transaction named, in `epoch`: who is rolled back (newest
        /// first) and which LSNs are reused; None for a stale failure.
        Failed(u64, &'static str, Option<Expected>),
    }

    fn run(name: &str, steps: &[Step]) {
        let mut q: CommitQueue<&'static str> = CommitQueue::new();
        let mut seqs: Vec<(&str, u64)> = Vec::new();
        let seq_of = |seqs: &[(&str, u64)], n: &str| {
            seqs.iter()
                .find(|(m, _)| *m == n)
                .map(|(_, s)| *s)
                .unwrap_or(u64::MAX)
        };
        for (i, step) in steps.iter().enumerate() {
            let at = format!("{name}, step {i}");
            match step {
                Step::Submit(n, spec) => {
                    let seq = q.submit(rows(spec), Vec::new(), n).expect(&at);
                    seqs.push((n, seq));
                }
                Step::Take(names, epoch) => {
                    let group = q.take_group();
                    let got: Vec<u64> = group
                        .iter()
                        .flat_map(|g| g.txns.iter().map(|t| t.seq))
                        .collect();
                    let want: Vec<u64> = names.iter().map(|n| seq_of(&seqs, n)).collect();
                    assert_eq!(got, want, "{at}: group");
                    if let Some(g) = group {
                        assert_eq!(g.epoch, *epoch, "{at}: epoch");
                    }
                }
                Step::Written(n, done) => {
                    let got: Vec<&str> = q.written(seq_of(&seqs, n)).collect();
                    assert_eq!(got, *done, "{at}: completed");
                }
                Step::Failed(epoch, n, want) => {
                    let got = q.failed(*epoch, seq_of(&seqs, n));
                    match (got, want) {
                        (None, None) => {}
                        (Some(r), Some((names, reuse))) => {
                            let order: Vec<&str> = r.txns.iter().map(|(_, w)| *w).collect();
                            assert_eq!(order, *names, "{at}: rolled back");
                            let mut got_reuse = r.reuse_from.clone();
                            got_reuse.sort_unstable();
                            assert_eq!(got_reuse, *reuse, "{at}: reused LSNs");
                        }
                        (got, want) => panic!(
                            "{at}: rollback {:?}, wanted {want:?}",
                            got.map(|r| r.txns.len())
                        ),
                    }
                }
            }
        }
    }

    #[test]
    fn own_local_and_upstream_transactions_complete_by_sequence_not_lsn() {
        // Upstream LSNs far above ours, a local row in component 0 with LSN 1: any rule
        // comparing LSNs across components would complete the wrong prefix.
        run(
            "mixed origins",
            &[
                Step::Submit("up", &[(2, 900), (2, 901)]),
                Step::Submit("own", &[(1, 5)]),
                Step::Submit("local", &[(0, 1)]),
                Step::Submit("own+local", &[(1, 6), (0, 2), (1, 7)]),
                Step::Take(&["up", "own", "local", "own+local"], 0),
                Step::Written("own", &["up", "own"]),
                Step::Written("own", &[]),
                Step::Written("own+local", &["local", "own+local"]),
            ],
        );
    }

    #[test]
    fn groups_hand_over_in_order_and_complete_separately() {
        run(
            "two groups",
            &[
                Step::Submit("a", &[(1, 1)]),
                Step::Take(&["a"], 0),
                Step::Submit("b", &[(1, 2)]),
                Step::Submit("c", &[(1, 3)]),
                Step::Take(&["b", "c"], 0),
                Step::Take(&[], 0),
                Step::Written("a", &["a"]),
                Step::Written("c", &["b", "c"]),
            ],
        );
    }

    #[test]
    fn a_failure_in_the_middle_of_a_group_rolls_back_from_there_newest_first() {
        run(
            "failure mid-group",
            &[
                Step::Submit("a", &[(1, 10)]),
                Step::Submit("b", &[(2, 500)]),
                Step::Submit("c", &[(1, 11), (0, 3)]),
                Step::Submit("d", &[(2, 501)]),
                Step::Submit("e", &[(1, 12)]),
                Step::Take(&["a", "b", "c", "d", "e"], 0),
                Step::Written("b", &["a", "b"]),
                Step::Failed(
                    0,
                    "c",
                    Some((&["e", "d", "c"], &[(0, 3), (1, 11), (2, 501)])),
                ),
                // The next transactions belong to the new epoch and reuse the LSNs.
                Step::Submit("f", &[(1, 11)]),
                Step::Take(&["f"], 1),
                Step::Written("f", &["f"]),
            ],
        );
    }

    #[test]
    fn a_failure_drops_transactions_not_yet_handed_over() {
        run(
            "queued at failure",
            &[
                Step::Submit("a", &[(1, 1)]),
                Step::Take(&["a"], 0),
                Step::Submit("b", &[(1, 2)]),
                Step::Failed(0, "a", Some((&["b", "a"], &[(1, 1)]))),
                Step::Take(&[], 1),
            ],
        );
    }

    #[test]
    fn a_failure_reported_for_a_stale_epoch_changes_nothing() {
        run(
            "stale epoch",
            &[
                Step::Submit("a", &[(1, 1)]),
                Step::Take(&["a"], 0),
                Step::Failed(0, "a", Some((&["a"], &[(1, 1)]))),
                Step::Submit("b", &[(1, 1)]),
                Step::Take(&["b"], 1),
                // A second report of epoch 0 must not roll back epoch 1's transaction.
                Step::Failed(0, "b", None),
                Step::Written("b", &["b"]),
            ],
        );
    }

    #[test]
    fn nothing_to_log_is_committed_at_once() {
        let mut q: CommitQueue<u32> = CommitQueue::new();
        assert_eq!(q.submit(Vec::new(), Vec::new(), 7), Err(7));
        assert!(q.is_idle());
        assert!(q.take_group().is_none());
    }

    #[test]
    fn written_completes_even_if_not_iterated() {
        let mut q: CommitQueue<u32> = CommitQueue::new();
        let a = q.submit(rows(&[(1, 1)]), Vec::new(), 1);
        let b = q.submit(rows(&[(1, 2)]), Vec::new(), 2);
        assert_eq!((a, b), (Ok(1), Ok(2)));
        drop(q.written(2));
        assert!(q.is_idle());
    }

    #[test]
    fn newest_mut_sees_the_last_group() {
        let mut q: CommitQueue<u32> = CommitQueue::new();
        for i in 1..=4 {
            let _ = q.submit(rows(&[(1, i)]), Vec::new(), i as u32);
        }
        let newest: Vec<u32> = q.newest_mut(2).map(|w| *w).collect();
        assert_eq!(newest, [3, 4]);
    }
}
