//! A transaction being built: the rows it will log and how to undo each change. Every writer
//! builds one — an autocommit request, an applier's upstream transaction, a replica's
//! registration, the admin password at start — and hands it to the commit queue whole.

use spindle_memtx::tuple::Tuple;
use spindle_types::iproto::request;
use spindle_types::{BoxError, BoxResult};
use spindle_xlog::Row;

use crate::db::Db;
use crate::dml::{row_to_dml, Dml, Undo};

/// A savepoint: how many rows and undo records a transaction had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnMark {
    rows: usize,
    undo: usize,
}

#[derive(Debug, Default)]
pub struct Txn {
    rows: Vec<Row>,
    undo: Vec<Undo>,
}

impl Txn {
    pub fn new() -> Txn {
        Txn::default()
    }

    /// The rows to log, in order (LSNs assigned at commit).
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    pub fn rows_mut(&mut self) -> &mut Vec<Row> {
        &mut self.rows
    }

    /// True if nothing changed.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.undo.is_empty()
    }

    pub fn into_parts(self) -> (Vec<Row>, Vec<Undo>) {
        (self.rows, self.undo)
    }

    /// Where the transaction is now, for a savepoint.
    pub fn mark(&self) -> TxnMark {
        TxnMark {
            rows: self.rows.len(),
            undo: self.undo.len(),
        }
    }

    /// The tuples the newest change replaced and put, if it came after `mark` (for space
    /// triggers: a statement that changed nothing has no undo record).
    pub fn last_change(&self, mark: TxnMark) -> Option<(Option<Tuple>, Option<Tuple>)> {
        let undo = self.undo.get(mark.undo..)?.last()?;
        Some(undo.tuples())
    }

    /// Every change so far, oldest first (for `box.on_commit` triggers).
    pub fn undo_records(&self) -> &[Undo] {
        &self.undo
    }

    /// Takes off the changes made after `mark` as a transaction of their own, for
    /// `Db::rollback_txn`; the rest stays.
    pub fn split_off(&mut self, mark: TxnMark) -> Txn {
        Txn {
            rows: self.rows.split_off(mark.rows.min(self.rows.len())),
            undo: self.undo.split_off(mark.undo.min(self.undo.len())),
        }
    }
}

/// Pushes onto a vector that starts with room for exactly one: most transactions are one
/// statement, and a first push would otherwise reserve room for four.
fn push_one<T>(v: &mut Vec<T>, item: T) {
    if v.capacity() == 0 {
        v.reserve_exact(1);
    }
    v.push(item);
}

/// Synchronous-replication rows. spindle has no limbo: every transaction it applies is
/// already committed locally, so CONFIRM/ROLLBACK/PROMOTE have nothing to act on.
pub fn is_synchro(req_type: u32) -> bool {
    matches!(
        req_type,
        request::CONFIRM | request::ROLLBACK | request::PROMOTE
    )
}

impl Db {
    /// Applies one change as part of `txn`: memory at once, its row and undo into the
    /// transaction. Returns the tuple the statement returns. An error leaves memory and the
    /// transaction as they were.
    pub fn apply(&mut self, txn: &mut Txn, dml: Dml<'_>) -> BoxResult<Option<Tuple>> {
        let applied = self.apply_dml(dml)?;
        Ok(Self::keep(txn, applied))
    }

    /// `apply` on behalf of `user`, whose schema changes are checked (`ddl.rs`).
    pub fn apply_as(&mut self, user: u32, txn: &mut Txn, dml: Dml<'_>) -> BoxResult<Option<Tuple>> {
        let applied = self.apply_dml_as(user, dml)?;
        Ok(Self::keep(txn, applied))
    }

    fn keep(txn: &mut Txn, applied: crate::dml::Applied) -> Option<Tuple> {
        if let Some(row) = applied.log {
            push_one(&mut txn.rows, row);
        }
        if let Some(undo) = applied.undo {
            push_one(&mut txn.undo, undo);
        }
        applied.result
    }

    /// Applies a row logged elsewhere (an upstream's, a JOIN's final stage) as part of `txn`,
    /// which keeps the row itself to log: NOPs and synchronous-replication rows change
    /// nothing here.
    pub fn apply_row(&mut self, txn: &mut Txn, row: Row) -> BoxResult<()> {
        match row.header.req_type {
            request::NOP => {}
            t if is_synchro(t) => {}
            request::INSERT
            | request::REPLACE
            | request::UPDATE
            | request::DELETE
            | request::UPSERT => {
                let applied = self.apply_dml(row_to_dml(&row)?)?;
                if let Some(undo) = applied.undo {
                    push_one(&mut txn.undo, undo);
                }
            }
            t => return Err(BoxError::unknown_request_type(u64::from(t))),
        }
        push_one(&mut txn.rows, row);
        Ok(())
    }

    /// Undoes every change of `txn`, newest first.
    pub fn rollback_txn(&mut self, txn: Txn) {
        self.rollback(txn.undo);
    }
}
