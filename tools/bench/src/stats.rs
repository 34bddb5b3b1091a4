//! What a worker thread counts: per request kind, successes (into an HDR histogram of
//! latencies in nanoseconds), failures (by cause, never into the histograms or throughput),
//! and per wall-clock second of the measured window, successes, failures, the worst latency
//! and a coarse histogram (microseconds) for the per-second percentiles.

use crate::workload::{Op, ALL_OPS};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::time::Instant;

/// Latencies above this are recorded as this (60 s).
pub const HIST_HIGH_NS: u64 = 60_000_000_000;
const HIST_HIGH_US: u64 = HIST_HIGH_NS / 1000;

/// Empty histograms to clone, created once (creation is fallible in the hdrhistogram API).
#[derive(Clone, Debug)]
pub struct Templates {
    /// Nanoseconds, 3 significant digits: the run's percentiles.
    pub op: Histogram<u64>,
    /// Microseconds, 2 significant digits: per-second percentiles.
    pub second: Histogram<u64>,
}

impl Templates {
    pub fn new() -> Result<Templates, String> {
        let err = |e| format!("histogram: {e:?}");
        Ok(Templates {
            op: Histogram::new_with_bounds(1, HIST_HIGH_NS, 3).map_err(err)?,
            second: Histogram::new_with_bounds(1, HIST_HIGH_US, 2).map_err(err)?,
        })
    }
}

/// Counters of one request kind.
#[derive(Clone, Debug)]
pub struct OpStats {
    pub ok: u64,
    pub errors: u64,
    /// Successful replies with no tuple (a SELECT/UPDATE/DELETE of a missing key).
    pub empty: u64,
    /// Latencies of successful requests, nanoseconds.
    pub hist: Histogram<u64>,
}

/// One second of the measured window (second `index` covers `[index, index + 1)` seconds
/// after the window's start, by completion time).
#[derive(Clone, Debug)]
pub struct SecondStats {
    pub index: u64,
    pub ok: u64,
    pub errors: u64,
    pub max_ns: u64,
    /// Latencies of successes, microseconds.
    pub hist: Histogram<u64>,
}

impl SecondStats {
    pub fn new(index: u64, templates: &Templates) -> SecondStats {
        SecondStats {
            index,
            ok: 0,
            errors: 0,
            max_ns: 0,
            hist: templates.second.clone(),
        }
    }

    pub fn merge(&mut self, other: &SecondStats) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.max_ns = self.max_ns.max(other.max_ns);
        // Same bounds on both sides, so adding cannot fail; saturate just in case.
        if self.hist.add(&other.hist).is_err() {
            for v in other.hist.iter_recorded() {
                self.hist
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }
}

/// Why a request did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// An error response (`0x8000 | code`).
    Server { code: u32, message: String },
    /// A reply that is not what the request should get (e.g. INSERT without the tuple).
    BadReply(String),
    /// The connection broke (or the server sent something unparseable) with it in flight.
    Connection(String),
    /// Still unanswered when the drain timeout expired.
    NoReply,
}

impl Failure {
    /// Failures with the same key are counted together.
    fn key(&self) -> String {
        match self {
            Failure::Server { code, .. } => format!("server error {code}"),
            Failure::BadReply(what) => format!("bad reply: {what}"),
            Failure::Connection(_) => "connection lost".into(),
            Failure::NoReply => "no reply".into(),
        }
    }

    fn code(&self) -> Option<u32> {
        match self {
            Failure::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    fn message(&self) -> String {
        match self {
            Failure::Server { message, .. } => message.clone(),
            Failure::BadReply(what) => what.clone(),
            Failure::Connection(why) => why.clone(),
            Failure::NoReply => "no reply before the drain timeout".into(),
        }
    }
}

/// How a reply was judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok { empty: bool },
    Failed(Failure),
}

/// Failures of one kind: how many, and the first message seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorCount {
    pub what: String,
    pub code: Option<u32>,
    pub count: u64,
    pub message: String,
}

/// Everything one worker thread counted.
#[derive(Clone, Debug)]
pub struct Stats {
    templates: Templates,
    pub ops: Vec<OpStats>,
    pub errors: BTreeMap<String, ErrorCount>,
    /// Completion time of the last measured reply.
    pub last_completion: Option<Instant>,
    current: Option<SecondStats>,
    live_ok: u64,
    live_errors: u64,
    live_max_ns: u64,
}

impl Stats {
    pub fn new(templates: &Templates) -> Stats {
        Stats {
            templates: templates.clone(),
            ops: ALL_OPS
                .iter()
                .map(|_| OpStats {
                    ok: 0,
                    errors: 0,
                    empty: 0,
                    hist: templates.op.clone(),
                })
                .collect(),
            errors: BTreeMap::new(),
            last_completion: None,
            current: None,
            live_ok: 0,
            live_errors: 0,
            live_max_ns: 0,
        }
    }

    /// Moves the per-second accounting to second `index` (never backwards) and returns the
    /// seconds completed by the move, empty ones included, oldest first.
    pub fn roll(&mut self, index: u64) -> Vec<SecondStats> {
        let mut done = Vec::new();
        let first_gap = match &self.current {
            // The first second is 0, so that every worker reports 0, 1, 2... without holes.
            None => 0,
            Some(current) if current.index >= index => return done,
            Some(current) => current.index + 1,
        };
        if let Some(current) = self.current.take() {
            done.push(current);
        }
        for gap in first_gap..index {
            done.push(SecondStats::new(gap, &self.templates));
        }
        self.current = Some(SecondStats::new(index, &self.templates));
        done
    }

    /// The second being filled, handed over when the worker stops.
    pub fn finish_seconds(&mut self) -> Option<SecondStats> {
        self.current.take()
    }

    /// Records a measured request's outcome, completed at `now` after `latency_ns`.
    pub fn record(&mut self, op: Op, latency_ns: u64, outcome: Outcome, now: Instant) {
        self.last_completion = Some(now);
        let Some(op_stats) = self.ops.get_mut(op.index()) else {
            return;
        };
        match outcome {
            Outcome::Ok { empty } => {
                op_stats.ok += 1;
                op_stats.empty += u64::from(empty);
                op_stats.hist.saturating_record(latency_ns.max(1));
                self.live_ok += 1;
                self.live_max_ns = self.live_max_ns.max(latency_ns);
                if let Some(second) = &mut self.current {
                    second.ok += 1;
                    second.max_ns = second.max_ns.max(latency_ns);
                    second.hist.saturating_record((latency_ns / 1000).max(1));
                }
            }
            Outcome::Failed(failure) => {
                op_stats.errors += 1;
                self.live_errors += 1;
                if let Some(second) = &mut self.current {
                    second.errors += 1;
                }
                self.note_failure(&failure, 1);
            }
        }
    }

    /// Counts a failure in the error table only (e.g. a connection that could not be made).
    pub fn note_failure(&mut self, failure: &Failure, count: u64) {
        let entry = self
            .errors
            .entry(failure.key())
            .or_insert_with(|| ErrorCount {
                what: failure.key(),
                code: failure.code(),
                count: 0,
                message: failure.message(),
            });
        entry.count += count;
    }

    /// Successes, failures and the worst latency since the previous call (for the live view).
    pub fn take_live(&mut self) -> (u64, u64, u64) {
        let live = (self.live_ok, self.live_errors, self.live_max_ns);
        self.live_ok = 0;
        self.live_errors = 0;
        self.live_max_ns = 0;
        live
    }

    pub fn total_ok(&self) -> u64 {
        self.ops.iter().map(|o| o.ok).sum()
    }

    pub fn total_errors(&self) -> u64 {
        self.ops.iter().map(|o| o.errors).sum()
    }

    /// Adds another thread's counts.
    pub fn merge(&mut self, other: &Stats) {
        for (mine, theirs) in self.ops.iter_mut().zip(&other.ops) {
            mine.ok += theirs.ok;
            mine.errors += theirs.errors;
            mine.empty += theirs.empty;
            if mine.hist.add(&theirs.hist).is_err() {
                for v in theirs.hist.iter_recorded() {
                    mine.hist
                        .saturating_record_n(v.value_iterated_to(), v.count_at_value());
                }
            }
        }
        for (key, theirs) in &other.errors {
            self.errors
                .entry(key.clone())
                .and_modify(|mine| mine.count += theirs.count)
                .or_insert_with(|| theirs.clone());
        }
        self.last_completion = match (self.last_completion, other.last_completion) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_not_successes() {
        let templates = Templates::new().unwrap();
        let mut stats = Stats::new(&templates);
        let now = Instant::now();
        stats.roll(0);
        stats.record(Op::Select, 1_000, Outcome::Ok { empty: true }, now);
        stats.record(
            Op::Insert,
            2_000,
            Outcome::Failed(Failure::Server {
                code: 3,
                message: "Duplicate key".into(),
            }),
            now,
        );
        assert_eq!(stats.total_ok(), 1);
        assert_eq!(stats.total_errors(), 1);
        assert_eq!(stats.ops[Op::Insert.index()].hist.len(), 0);
        assert_eq!(stats.ops[Op::Select.index()].empty, 1);
        let entry = &stats.errors["server error 3"];
        assert_eq!((entry.code, entry.count), (Some(3), 1));
        assert_eq!(stats.take_live(), (1, 1, 1_000));
        assert_eq!(stats.take_live(), (0, 0, 0));
    }

    #[test]
    fn seconds_roll_forward_with_gaps() {
        let templates = Templates::new().unwrap();
        let mut stats = Stats::new(&templates);
        let now = Instant::now();
        assert!(stats.roll(0).is_empty());
        stats.record(Op::Ping, 5_000_000, Outcome::Ok { empty: false }, now);
        assert!(stats.roll(0).is_empty());
        let done = stats.roll(3);
        let indexes: Vec<u64> = done.iter().map(|s| s.index).collect();
        assert_eq!(indexes, [0, 1, 2]);
        assert_eq!((done[0].ok, done[0].max_ns), (1, 5_000_000));
        assert_eq!(done[1].ok, 0);
        assert!(stats.roll(2).is_empty(), "never backwards");
        assert_eq!(stats.finish_seconds().map(|s| s.index), Some(3));
    }

    #[test]
    fn merge_adds_counts_and_histograms() {
        let templates = Templates::new().unwrap();
        let now = Instant::now();
        let mut a = Stats::new(&templates);
        let mut b = Stats::new(&templates);
        a.record(Op::Replace, 10_000, Outcome::Ok { empty: false }, now);
        b.record(Op::Replace, 20_000, Outcome::Ok { empty: false }, now);
        b.record(Op::Replace, 0, Outcome::Failed(Failure::NoReply), now);
        a.merge(&b);
        let replace = &a.ops[Op::Replace.index()];
        assert_eq!((replace.ok, replace.errors), (2, 1));
        assert_eq!(replace.hist.len(), 2);
        assert!(replace.hist.max() >= 19_990);
        assert_eq!(a.errors["no reply"].count, 1);
    }
}
