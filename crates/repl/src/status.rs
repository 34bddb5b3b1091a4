//! What the TX thread knows about each upstream (applier) and downstream (relay): state,
//! vclock, lag, last error. Threads report changes; the TX thread keeps the table.

use spindle_xlog::Vclock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// We replicate from this peer (applier).
    Upstream,
    /// This peer replicates from us (relay).
    Downstream,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    Connecting,
    Joining,
    Following,
    Stopped,
}

impl PeerState {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Connecting => "connecting",
            PeerState::Joining => "joining",
            PeerState::Following => "following",
            PeerState::Stopped => "stopped",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PeerStatus {
    pub direction: Direction,
    /// The upstream's URI (without the password) or the downstream's instance UUID.
    pub peer: String,
    pub state: PeerState,
    /// Upstream: the vclock written locally; downstream: the replica's last ACK.
    pub vclock: Vclock,
    /// Seconds between a row's timestamp and its arrival (upstream), or between a row's
    /// write and its acknowledgement (downstream).
    pub lag: f64,
    pub error: Option<String>,
}

impl PeerStatus {
    pub fn new(direction: Direction, peer: &str, state: PeerState) -> PeerStatus {
        PeerStatus {
            direction,
            peer: peer.to_string(),
            state,
            vclock: Vclock::new(),
            lag: 0.0,
            error: None,
        }
    }

    /// Whether the change from `old` deserves a log line (state or error changed).
    pub fn is_news(&self, old: Option<&PeerStatus>) -> bool {
        old.is_none_or(|o| o.state != self.state || o.error != self.error)
    }

    pub fn key(&self) -> (bool, String) {
        (self.direction == Direction::Upstream, self.peer.clone())
    }
}

impl std::fmt::Display for PeerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dir = match self.direction {
            Direction::Upstream => "upstream",
            Direction::Downstream => "downstream",
        };
        write!(
            f,
            "{dir} {}: {} vclock {} lag {:.3}",
            self.peer,
            self.state.as_str(),
            self.vclock,
            self.lag
        )?;
        if let Some(e) = &self.error {
            write!(f, " error: {e}")?;
        }
        Ok(())
    }
}
