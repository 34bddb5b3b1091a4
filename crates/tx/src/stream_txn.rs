//! Stream transactions (2.10+ BEGIN/COMMIT/ROLLBACK over IPROTO). With the MVCC engine on
//! (`txn_cfg::mvcc`), a transaction is `TxnState::Mvcc`: it holds its own statements and
//! runs each one through `spindle_box::mvcc`. The rest of this note is the engine off,
//! as Tarantool runs them without MVCC (shared docs transactions-and-http.md §A2): a
//! transaction belongs to its stream; the first data statement in it runs and answers
//! normally, but the end of that request is a yield, which a memtx transaction without MVCC
//! cannot survive — it is rolled back and stays attached as aborted. The next statement and
//! COMMIT answer ER_TRANSACTION_YIELD (COMMIT then frees it), ROLLBACK answers OK. So an
//! open transaction never holds a change across requests: its state is `Open` or `Aborted`.
//!
//! A timeout is checked when the transaction is next used (its statement or COMMIT answers
//! ER_TRANSACTION_TIMEOUT): an open transaction holds no changes others can see (an MVCC
//! one's are private), so rolling it back at that moment rather than when the timer would
//! have fired is indistinguishable.
//!
//! The handlers that use this state are `stream_routes`. The ordering of a stream's requests is the network thread's (`spindle_net`): by the time
//! a request gets here, its stream's previous request has been answered.

use std::time::{Duration, Instant};

use hashbrown::HashMap;

use spindle_box::mvcc::{Engine, MvccTxn};
use spindle_proto::route::Route;
use spindle_proto::streams::BeginOptions;
use spindle_types::limits::{CONN_TXNS_MAX, TXNS_MAX};
use spindle_types::txn_cfg;
use spindle_types::{BoxError, BoxResult};

/// A stream's transaction.
#[derive(Debug)]
pub enum TxnState {
    /// Begun, no statement yet; rolled back by timeout at `deadline`, if any.
    Open { deadline: Option<Instant> },
    /// Open on the MVCC engine (`memtx_use_mvcc_engine`): its statements are its own.
    Mvcc {
        txn: Box<MvccTxn>,
        deadline: Option<Instant>,
    },
    /// Rolled back (yield or timeout); statements and COMMIT answer this error.
    Aborted(BoxError),
}

/// What a data statement of a stream does about the stream's transaction.
#[derive(Debug, PartialEq)]
pub enum Gate {
    /// No transaction: the statement is its own (autocommit).
    Autocommit,
    /// The transaction's first statement: it runs, answers normally and its changes are
    /// undone at the end of the request (the transaction is already marked aborted).
    FirstThenAbort,
    /// The transaction was aborted: the statement fails with this.
    Refuse(BoxError),
    /// An MVCC transaction: the statement runs in it (`stream_routes::run_mvcc`).
    Mvcc,
}

/// What a procedure of a stream left of the stream's transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcEnd {
    /// None open (it committed or rolled back, or never had one).
    Closed,
    /// Open without a change: it stays open.
    Open,
    /// Open with changes, or it yielded inside: rolled back, the transaction aborted (the
    /// end of the request is a yield, MVCC being off).
    Aborted,
    /// It ran in the stream's MVCC transaction: whatever became of that stands.
    Kept,
}

/// The open stream transactions of every connection.
#[derive(Default)]
pub struct StreamTxns {
    by_conn: HashMap<Route, HashMap<u64, TxnState>>,
    total: usize,
    /// How many of them are `Mvcc`: while any is, commits are recorded for them.
    mvcc_open: usize,
}

impl StreamTxns {
    /// BEGIN in `stream`: ER_ACTIVE_TRANSACTION if the stream has one (open or aborted, it
    /// is untouched); the option checks next (no transaction remains if they fail); then
    /// the limits. `mvcc`: the engine, if transactions run on it.
    pub fn begin(
        &mut self,
        route: Route,
        stream: u64,
        options: &BeginOptions,
        mvcc: Option<&Engine>,
        now: Instant,
    ) -> BoxResult<()> {
        let conn = self.by_conn.get(&route);
        if conn.is_some_and(|c| c.contains_key(&stream)) {
            return Err(BoxError::active_transaction());
        }
        spindle_proto::streams::check_begin(options, mvcc.is_some())?;
        let isolation = match options.isolation {
            0 => txn_cfg::default_isolation(),
            i if i <= u64::from(txn_cfg::BEST_EFFORT) => i as u8,
            _ => {
                return Err(BoxError::unsupported(
                    "spindle",
                    "linearizable transactions",
                ))
            }
        };
        let open_here = conn.map_or(0, |c| c.len());
        if open_here >= CONN_TXNS_MAX {
            return Err(too_many("per connection", CONN_TXNS_MAX));
        }
        if self.total >= TXNS_MAX {
            return Err(too_many("in total", TXNS_MAX));
        }
        let deadline = options
            .timeout
            .and_then(|t| Duration::try_from_secs_f64(t).ok())
            .and_then(|d| now.checked_add(d));
        let state = match mvcc {
            Some(engine) => {
                self.mvcc_open += 1;
                TxnState::Mvcc {
                    txn: Box::new(engine.begin(isolation)),
                    deadline,
                }
            }
            None => TxnState::Open { deadline },
        };
        self.by_conn.entry(route).or_default().insert(stream, state);
        self.total += 1;
        Ok(())
    }

    /// COMMIT: OK without a transaction; an open one commits (it holds no change); an
    /// aborted or timed-out one answers its error; an MVCC one is handed back to be
    /// committed. Either way the stream has none after.
    pub fn commit(
        &mut self,
        route: Route,
        stream: u64,
        now: Instant,
    ) -> BoxResult<Option<Box<MvccTxn>>> {
        match self.take(route, stream) {
            None => Ok(None),
            Some(TxnState::Open { deadline } | TxnState::Mvcc { deadline, .. })
                if expired(deadline, now) =>
            {
                Err(BoxError::transaction_timeout())
            }
            Some(TxnState::Open { .. }) => Ok(None),
            Some(TxnState::Mvcc { txn, .. }) => Ok(Some(txn)),
            Some(TxnState::Aborted(e)) => Err(e),
        }
    }

    /// The MVCC transaction of `stream`, if it has one that is open.
    pub fn mvcc_txn(&mut self, route: Route, stream: u64) -> Option<&mut MvccTxn> {
        match self.by_conn.get_mut(&route)?.get_mut(&stream)? {
            TxnState::Mvcc { txn, .. } => Some(txn),
            _ => None,
        }
    }

    /// True if `stream` has an MVCC transaction (open or not).
    pub fn has_mvcc(&self, route: Route, stream: u64) -> bool {
        let state = self.by_conn.get(&route).and_then(|c| c.get(&stream));
        matches!(state, Some(TxnState::Mvcc { .. }))
    }

    /// The MVCC transaction of `stream` conflicted: it stays attached, refusing its
    /// statements and COMMIT with `error`, and holds nothing any more.
    pub fn abort_mvcc(&mut self, route: Route, stream: u64, error: BoxError) {
        let state = self
            .by_conn
            .get_mut(&route)
            .and_then(|c| c.get_mut(&stream));
        if let Some(state @ TxnState::Mvcc { .. }) = state {
            *state = TxnState::Aborted(error);
            self.mvcc_open -= 1;
        }
    }

    /// Open MVCC transactions.
    pub fn mvcc_open(&self) -> usize {
        self.mvcc_open
    }

    /// ROLLBACK: always OK; the stream has no transaction after.
    pub fn rollback(&mut self, route: Route, stream: u64) {
        self.take(route, stream);
    }

    /// A data statement (SELECT, DML, CALL, EVAL) of `stream` is about to run.
    pub fn statement(&mut self, route: Route, stream: u64, now: Instant) -> Gate {
        let Some(state) = self
            .by_conn
            .get_mut(&route)
            .and_then(|c| c.get_mut(&stream))
        else {
            return Gate::Autocommit;
        };
        match state {
            TxnState::Aborted(e) => Gate::Refuse(e.clone()),
            TxnState::Open { deadline } | TxnState::Mvcc { deadline, .. }
                if expired(*deadline, now) =>
            {
                if matches!(state, TxnState::Mvcc { .. }) {
                    self.mvcc_open -= 1;
                }
                *state = TxnState::Aborted(BoxError::transaction_timeout());
                Gate::Refuse(BoxError::transaction_timeout())
            }
            TxnState::Mvcc { .. } => Gate::Mvcc,
            TxnState::Open { .. } => {
                *state = TxnState::Aborted(BoxError::transaction_yield());
                Gate::FirstThenAbort
            }
        }
    }

    /// True if `stream` has a transaction that is neither aborted nor past its timeout.
    pub fn is_live(&self, route: Route, stream: u64, now: Instant) -> bool {
        let state = self.by_conn.get(&route).and_then(|c| c.get(&stream));
        matches!(state, Some(TxnState::Open { deadline }) if !expired(*deadline, now))
    }

    /// A procedure of `stream` returned (`ProcJob`): its transaction ended as `end` says.
    /// A transaction it began itself joins the stream (within the limits).
    pub fn after_proc(&mut self, route: Route, stream: u64, end: ProcEnd) -> BoxResult<()> {
        let state = match end {
            ProcEnd::Closed => {
                self.take(route, stream);
                return Ok(());
            }
            ProcEnd::Kept => return Ok(()),
            ProcEnd::Open => TxnState::Open { deadline: None },
            ProcEnd::Aborted => TxnState::Aborted(BoxError::transaction_yield()),
        };
        if let Some(current) = self
            .by_conn
            .get_mut(&route)
            .and_then(|c| c.get_mut(&stream))
        {
            // Still open and empty: it keeps its deadline. A procedure in an MVCC one ends
            // `Kept`; none other touches one.
            if !matches!(
                (&*current, &state),
                (TxnState::Open { .. }, TxnState::Open { .. }) | (TxnState::Mvcc { .. }, _)
            ) {
                *current = state;
            }
            return Ok(());
        }
        let open_here = self.by_conn.get(&route).map_or(0, |c| c.len());
        if open_here >= CONN_TXNS_MAX {
            return Err(too_many("per connection", CONN_TXNS_MAX));
        }
        if self.total >= TXNS_MAX {
            return Err(too_many("in total", TXNS_MAX));
        }
        self.by_conn.entry(route).or_default().insert(stream, state);
        self.total += 1;
        Ok(())
    }

    /// The connection is gone (its requests have all run): its transactions roll back.
    pub fn disconnect(&mut self, route: Route) {
        if let Some(conn) = self.by_conn.remove(&route) {
            self.total -= conn.len();
            self.mvcc_open -= conn.values().filter(|s| is_mvcc(s)).count();
        }
    }

    /// Open (or aborted, still attached) transactions of every connection.
    pub fn total(&self) -> usize {
        self.total
    }

    fn take(&mut self, route: Route, stream: u64) -> Option<TxnState> {
        let conn = self.by_conn.get_mut(&route)?;
        let state = conn.remove(&stream)?;
        self.total -= 1;
        if is_mvcc(&state) {
            self.mvcc_open -= 1;
        }
        if conn.is_empty() {
            self.by_conn.remove(&route);
        }
        Some(state)
    }
}

fn is_mvcc(state: &TxnState) -> bool {
    matches!(state, TxnState::Mvcc { .. })
}

fn expired(deadline: Option<Instant>, now: Instant) -> bool {
    deadline.is_some_and(|d| now >= d)
}

fn too_many(scope: &str, max: usize) -> BoxError {
    BoxError::unsupported(
        "spindle",
        &format!("more than {max} open stream transactions {scope}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(slot: u32) -> Route {
        Route {
            thread: 0,
            slot,
            generation: 0,
        }
    }

    fn code<T>(r: BoxResult<T>) -> u32 {
        r.err().map_or(0, |e| e.code)
    }

    #[test]
    fn mvcc_off_first_statement_runs_then_the_transaction_is_aborted() {
        let mut s = StreamTxns::default();
        let now = Instant::now();
        let none = BeginOptions::default();
        assert_eq!(s.statement(route(1), 1, now), Gate::Autocommit);
        assert_eq!(code(s.begin(route(1), 1, &none, None, now)), 0);
        assert_eq!(code(s.begin(route(1), 1, &none, None, now)), 79);
        // Another stream and another connection are independent.
        assert_eq!(s.statement(route(1), 2, now), Gate::Autocommit);
        assert_eq!(code(s.begin(route(2), 1, &none, None, now)), 0);
        assert_eq!(s.statement(route(1), 1, now), Gate::FirstThenAbort);
        assert!(matches!(s.statement(route(1), 1, now), Gate::Refuse(e) if e.code == 154));
        assert_eq!(code(s.begin(route(1), 1, &none, None, now)), 79);
        assert_eq!(code(s.commit(route(1), 1, now)), 154);
        assert_eq!(code(s.commit(route(1), 1, now)), 0);
        assert_eq!(s.statement(route(1), 1, now), Gate::Autocommit);
        assert_eq!(s.total(), 1);
        // BEGIN then COMMIT; ROLLBACK of an aborted one.
        assert_eq!(code(s.commit(route(2), 1, now)), 0);
        assert_eq!(code(s.begin(route(2), 1, &none, None, now)), 0);
        assert_eq!(s.statement(route(2), 1, now), Gate::FirstThenAbort);
        s.rollback(route(2), 1);
        s.rollback(route(2), 1);
        assert_eq!(s.total(), 0);
    }

    #[test]
    fn mvcc_transactions_are_counted_until_they_end() {
        let mut s = StreamTxns::default();
        let engine = Engine::new();
        let now = Instant::now();
        let none = BeginOptions::default();
        let timed = BeginOptions {
            timeout: Some(1.0),
            isolation: 1,
        };
        let linearizable = BeginOptions {
            timeout: None,
            isolation: 4,
        };
        assert_eq!(
            code(s.begin(route(1), 9, &linearizable, Some(&engine), now)),
            5
        );
        for stream in 1..=3 {
            assert_eq!(
                code(s.begin(route(1), stream, &none, Some(&engine), now)),
                0
            );
        }
        assert_eq!(code(s.begin(route(2), 1, &timed, Some(&engine), now)), 0);
        assert_eq!(s.mvcc_open(), 4);
        assert_eq!(s.statement(route(1), 1, now), Gate::Mvcc);
        assert_eq!(s.statement(route(1), 1, now), Gate::Mvcc);
        assert!(s.mvcc_txn(route(1), 1).is_some() && s.has_mvcc(route(1), 1));
        s.abort_mvcc(route(1), 1, BoxError::transaction_conflict());
        assert!(matches!(s.statement(route(1), 1, now), Gate::Refuse(e) if e.code == 97));
        assert!(s.mvcc_txn(route(1), 1).is_none());
        assert!(matches!(s.commit(route(1), 2, now), Ok(Some(_))));
        let later = now + Duration::from_secs(2);
        assert!(matches!(s.statement(route(2), 1, later), Gate::Refuse(e) if e.code == 231));
        assert_eq!(s.mvcc_open(), 1);
        s.disconnect(route(1));
        assert_eq!((s.mvcc_open(), s.total()), (0, 1));
    }

    #[test]
    fn a_procedure_decides_what_becomes_of_the_stream_s_transaction() {
        let mut s = StreamTxns::default();
        let now = Instant::now();
        let timed = BeginOptions {
            timeout: Some(5.0),
            isolation: 0,
        };
        // Inside an open transaction: it stays open (with its deadline) or is aborted.
        assert_eq!(code(s.begin(route(1), 1, &timed, None, now)), 0);
        assert!(s.is_live(route(1), 1, now));
        assert_eq!(code(s.after_proc(route(1), 1, ProcEnd::Open)), 0);
        assert!(!s.is_live(route(1), 1, now + Duration::from_secs(6)));
        assert_eq!(code(s.after_proc(route(1), 1, ProcEnd::Aborted)), 0);
        assert!(!s.is_live(route(1), 1, now));
        assert_eq!(code(s.commit(route(1), 1, now)), 154);
        // A transaction the procedure began joins the stream; one it closed leaves it.
        assert_eq!(code(s.after_proc(route(1), 2, ProcEnd::Open)), 0);
        assert!(s.is_live(route(1), 2, now));
        assert_eq!(code(s.after_proc(route(1), 2, ProcEnd::Closed)), 0);
        assert_eq!(code(s.after_proc(route(1), 3, ProcEnd::Closed)), 0);
        assert_eq!(s.total(), 0);
    }

    #[test]
    fn timeouts_limits_and_disconnects() {
        let mut s = StreamTxns::default();
        let now = Instant::now();
        let later = now + Duration::from_secs(2);
        let timed = BeginOptions {
            timeout: Some(1.0),
            isolation: 0,
        };
        assert_eq!(code(s.begin(route(1), 1, &timed, None, now)), 0);
        assert_eq!(code(s.begin(route(1), 2, &timed, None, now)), 0);
        assert!(matches!(s.statement(route(1), 1, later), Gate::Refuse(e) if e.code == 231));
        assert_eq!(code(s.commit(route(1), 1, later)), 231);
        assert_eq!(code(s.commit(route(1), 2, later)), 231);
        let huge = BeginOptions {
            timeout: Some(f64::INFINITY),
            isolation: 0,
        };
        assert_eq!(code(s.begin(route(1), 3, &huge, None, now)), 0);
        assert_eq!(s.statement(route(1), 3, later), Gate::FirstThenAbort);
        let bad = BeginOptions {
            timeout: Some(-1.0),
            isolation: 0,
        };
        assert_eq!(code(s.begin(route(1), 4, &bad, None, now)), 1);
        assert_eq!(s.statement(route(1), 4, now), Gate::Autocommit);
        let none = BeginOptions::default();
        for stream in 10..10 + CONN_TXNS_MAX as u64 - 1 {
            assert_eq!(code(s.begin(route(1), stream, &none, None, now)), 0);
        }
        assert_eq!(code(s.begin(route(1), 9, &none, None, now)), 5);
        assert_eq!(code(s.begin(route(2), 9, &none, None, now)), 0);
        s.disconnect(route(1));
        assert_eq!(s.total(), 1);
        assert_eq!(code(s.begin(route(1), 9, &none, None, now)), 0);
    }
}
