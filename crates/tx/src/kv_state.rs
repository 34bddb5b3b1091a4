//! The HTTP commit API's TX state and a commit's continuation (the logic is `kv`).

use std::sync::Arc;

use hashbrown::{HashMap, HashSet};

use spindle_box::kv::{KvSpaces, Recent};
use spindle_proto::kv::{Answer, KvShared};

pub struct KvState {
    pub shared: Arc<KvShared>,
    /// None until the spaces exist (a replica waits for its master's).
    pub spaces: Option<KvSpaces>,
    pub recent: Recent,
    pub window: usize,
    /// Request ids `/v1/status` asked about: they can never commit (until restart).
    pub banned: HashSet<String>,
    /// Status requests waiting for the outcome of the commit at a version.
    pub status_waiters: HashMap<u64, Vec<(u64, Answer)>>,
}

/// An HTTP commit waiting for the WAL.
pub struct KvPending {
    pub token: u64,
    pub answer: Answer,
    pub version: u64,
}
