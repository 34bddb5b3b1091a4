//! The seam between the TX thread and the WAL thread: what TX submits and what the WAL
//! answers. TX depends on these types only, never on the WAL thread itself.

use crate::row::Row;
use crate::vclock::Vclock;

/// One transaction's rows, LSNs already assigned by TX (consecutive, in commit order), and
/// its place in TX's commit queue, which the WAL echoes back in its answer.
#[derive(Debug)]
pub struct JournalTxn {
    pub seq: u64,
    pub rows: Vec<Row>,
}

/// Work the WAL runs once a write is durable (see `JournalRequest::Write`).
pub struct Acks(pub Box<dyn FnOnce() + Send>);

impl std::fmt::Debug for Acks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Acks")
    }
}

/// TX → WAL.
#[derive(Debug)]
pub enum JournalRequest {
    /// Write these transactions (group commit: one message per TX loop turn). `epoch`
    /// identifies the rollback generation: after a failure the WAL drops every request of
    /// the failed epoch until TX starts a new one. `acks`, if any, runs on the WAL thread
    /// right after the write (and sync, per the mode) succeeded, before `Written` is sent:
    /// the clients' replies leave without a hop through TX. It is dropped unrun if the write
    /// fails (TX then answers with the error).
    Write {
        epoch: u64,
        txns: Vec<JournalTxn>,
        acks: Option<Acks>,
    },
    /// A checkpoint's marker, queued behind every write its read view contains: close the
    /// current file (the next one starts at the checkpoint vclock) and confirm, unless a
    /// write of `epoch` failed — then the read view holds rolled-back data and is useless.
    Checkpoint { epoch: u64 },
    /// Close the current file and flush everything (clean shutdown).
    Shutdown,
}

/// WAL → TX. One message per group commit.
#[derive(Debug)]
pub enum JournalReply {
    /// Every transaction up to and including the one with sequence number `seq` is written
    /// (and synced, per the mode). Sequence numbers, not LSNs: a replica's WAL holds its own
    /// rows and its masters' rows, whose LSNs are unrelated.
    Written { seq: u64 },
    /// The write of a batch of `epoch` failed; nothing of that epoch from the transaction
    /// with sequence number `seq` on was written. TX must roll those transactions back and
    /// start a new epoch.
    Failed { epoch: u64, seq: u64, error: String },
    /// Answers `Checkpoint`: `ok` when every write before the marker is in the log.
    CheckpointReady { ok: bool },
    /// Acknowledges `Shutdown`: the log is closed.
    Closed,
}

/// What the WAL thread publishes after every write, for the threads that read its files
/// (relays, appliers waiting for their rows to be written).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalTip {
    /// Every row written so far.
    pub vclock: Vclock,
    /// The file being written, once something was written to it.
    pub live: Option<LiveEnd>,
}

/// How far the file being written holds data. A durably written file is zero-filled past
/// that point (see `fs`), so a reader must not take its length for the end of the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveEnd {
    /// The file's signature (its name).
    pub signature: u64,
    /// Bytes of header and blocks written.
    pub end: u64,
}
