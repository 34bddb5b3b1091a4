//! The HTTP commit API's TX state and a commit's continuation (the logic is `kv`).

use std::sync::Arc;

use spindle_box::kv::{KvSpaces, Recent};
use spindle_proto::kv::{Answer, KvShared};

pub struct KvState {
    pub shared: Arc<KvShared>,
    /// None until the spaces exist (a replica waits for its master's).
    pub spaces: Option<KvSpaces>,
    pub recent: Recent,
    pub window: usize,
}

/// An HTTP commit waiting for the WAL.
pub struct KvPending {
    pub token: u64,
    pub answer: Answer,
    pub version: u64,
}
