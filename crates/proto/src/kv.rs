//! Messages between the HTTP thread and the TX thread for the HTTP commit API (docs/http-api.md),
//! and the values TX publishes for the HTTP thread to read without a round trip. Plain data:
//! JSON and base64 stay on the HTTP thread; TX sees decoded byte strings.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A key of the keyspace; bytes, ordered bytewise.
pub type Key = Vec<u8>;

/// A read a commit depends on: it fails if a commit after `version` wrote inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    PointRead {
        key: Key,
        version: u64,
    },
    /// `begin <= key < end`; `end: None` reaches the last key.
    RangeRead {
        begin: Key,
        end: Option<Key>,
        version: u64,
    },
}

/// A change a commit makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    Write {
        key: Key,
        value: Vec<u8>,
    },
    Delete {
        key: Key,
    },
    /// Deletes every key with `begin <= key < end` (`end: None`: to the last key).
    RangeDelete {
        begin: Key,
        end: Option<Key>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitRequest {
    pub request_id: String,
    pub read_version: u64,
    pub preconditions: Vec<Precondition>,
    pub operations: Vec<Operation>,
}

/// What the HTTP thread asks TX.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvRequest {
    Commit(CommitRequest),
    Read {
        key: Key,
    },
    Range {
        begin: Key,
        end: Option<Key>,
        limit: u32,
    },
    /// `/v1/status`: bans the id, then says whether it committed.
    Status {
        request_id: String,
    },
}

/// TX's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvAnswer {
    Committed {
        version: u64,
    },
    /// Preconditions (their indexes) broke; `version` is the latest one to retry from.
    NotCommitted {
        conflicts: Vec<usize>,
        version: u64,
    },
    /// The request id committed before (at `version`, if it is still retained).
    RequestIdUsed {
        version: Option<u64>,
    },
    /// The request id was banned by a status request before it could commit.
    RequestIdBanned,
    /// `/v1/status`: the id committed at `version` (durably).
    StatusCommitted {
        version: u64,
    },
    /// `/v1/status`: the id has not committed and never will (it is banned).
    StatusNotCommitted {
        version: u64,
    },
    /// `read_version` (or a precondition's version) is older than the conflict window, whose
    /// oldest checkable version is `oldest`.
    TooOld {
        oldest: u64,
        version: u64,
    },
    /// A version newer than any committed one.
    FutureVersion {
        version: u64,
    },
    Value {
        version: u64,
        value: Option<Vec<u8>>,
    },
    Range {
        version: u64,
        pairs: Vec<(Key, Vec<u8>)>,
        more: bool,
    },
    /// Cannot commit here now (read-only instance, keyspace missing, a failed log write whose
    /// outcome the client must check): the text says why.
    Unavailable(String),
    /// The request cannot be carried out (a key or value too big for the engine, ...).
    Failed(String),
}

/// Delivers TX's answer to the HTTP thread that asked (and wakes it).
pub type Answer = Arc<dyn Fn(u64, KvAnswer) + Send + Sync>;

/// One request on the bus: `token` names the connection and request on the HTTP thread.
pub struct KvCall {
    pub token: u64,
    pub request: KvRequest,
    pub answer: Answer,
}

impl std::fmt::Debug for KvCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvCall")
            .field("token", &self.token)
            .field("request", &self.request)
            .finish()
    }
}

/// HTTP thread → TX thread.
#[derive(Debug)]
pub enum KvEvent {
    /// The HTTP listener is up: TX finds or creates the keyspace and publishes into `shared`.
    Enable {
        shared: Arc<KvShared>,
        window: usize,
    },
    Call(KvCall),
}

/// What TX publishes for the HTTP thread (`/v1/version`, `/metrics`) and what the HTTP
/// thread counts: plain atomics, written by one thread each, read by any.
#[derive(Debug)]
pub struct KvShared {
    /// This run's leader id (a fresh UUID at every start).
    pub leader_id: String,
    /// The newest version whose commit is durable (TX, after the WAL's answer).
    pub durable_version: AtomicU64,
    /// Set by TX once the keyspace is ready; until then commits answer 503.
    pub ready: AtomicU64,
    pub stages: StageCounters,
}

/// Per-stage counters (`/metrics`): each is written by one thread.
#[derive(Debug, Default)]
pub struct StageCounters {
    /// HTTP thread.
    pub connections_accepted: AtomicU64,
    pub connections_open: AtomicU64,
    pub requests: AtomicU64,
    pub bad_requests: AtomicU64,
    pub timeouts: AtomicU64,
    pub sent_to_tx: AtomicU64,
    pub in_tx: AtomicU64,
    /// TX thread.
    pub commits: AtomicU64,
    pub conflicts: AtomicU64,
    pub too_old: AtomicU64,
    pub request_id_used: AtomicU64,
    pub bans: AtomicU64,
    pub commit_failures: AtomicU64,
    pub reads: AtomicU64,
}

impl KvShared {
    pub fn new(leader_id: String) -> KvShared {
        KvShared {
            leader_id,
            durable_version: AtomicU64::new(0),
            ready: AtomicU64::new(0),
            stages: StageCounters::default(),
        }
    }

    pub fn durable(&self) -> u64 {
        self.durable_version.load(Ordering::SeqCst)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) != 0
    }
}

/// Adds one to a counter only its owning thread writes.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
