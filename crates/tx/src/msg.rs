//! Everything that arrives on the TX thread's bus.

use spindle_proto::route::NetEvent;
use spindle_xlog::journal::JournalReply;

#[derive(Debug)]
pub enum TxMsg {
    Net(NetEvent),
    Wal(JournalReply),
    /// Start a checkpoint (SIGUSR1, the checkpoint interval, an admin request).
    Checkpoint,
    /// The snapshot thread finished.
    CheckpointDone(spindle_box::checkpoint::CheckpointOutcome),
    /// Finish in-flight commits, close the log, stop the dispatcher.
    Shutdown,
    /// From relay and applier threads.
    Repl(spindle_repl::ReplEvent),
    /// From the HTTP thread (`kv`).
    Kv(spindle_proto::kv::KvEvent),
}

impl From<spindle_proto::kv::KvEvent> for TxMsg {
    fn from(e: spindle_proto::kv::KvEvent) -> Self {
        TxMsg::Kv(e)
    }
}

impl From<spindle_repl::ReplEvent> for TxMsg {
    fn from(e: spindle_repl::ReplEvent) -> Self {
        TxMsg::Repl(e)
    }
}

impl From<NetEvent> for TxMsg {
    fn from(e: NetEvent) -> Self {
        TxMsg::Net(e)
    }
}

impl From<JournalReply> for TxMsg {
    fn from(r: JournalReply) -> Self {
        TxMsg::Wal(r)
    }
}
