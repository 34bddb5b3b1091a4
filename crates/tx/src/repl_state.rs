//! What the TX thread keeps about replication: how to start relays, the status of every
//! upstream and downstream, and the upstream transactions waiting for the applier fiber.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use spindle_fiber::Fiber;
use spindle_repl::applier::ApplierLink;
use spindle_repl::relay::RelayEnv;
use spindle_repl::PeerStatus;
use spindle_xlog::Row;

/// What the TX thread needs to serve replicas; absent with `wal_mode = none`.
pub struct ReplSetup {
    pub relay: RelayEnv,
}

#[derive(Default)]
pub struct Repl {
    pub setup: Option<ReplSetup>,
    /// Every upstream and downstream, keyed by (is upstream, peer).
    pub peers: BTreeMap<(bool, String), PeerStatus>,
    pub queue: VecDeque<(Arc<ApplierLink>, Vec<Row>)>,
    /// The fiber applying upstream transactions, parked while `queue` is empty.
    pub applier_fiber: Option<Fiber>,
    pub applier_idle: bool,
}

impl Repl {
    pub fn configure(&mut self, setup: ReplSetup) {
        self.setup = Some(setup);
    }
}
