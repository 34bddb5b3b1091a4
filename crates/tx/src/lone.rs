//! Recognises a lone synchronous client: one connection sending one request at a time, each
//! the only request in its batch. For it the TX thread waits awake for its next message (the
//! request, or the WAL's answer to its write) instead of sleeping: on a virtual CPU, waking a
//! sleeping thread costs tens of µs, more than the request itself, and with no other client
//! there is no one the CPU is taken from. The waiting thread yields its CPU on every turn of
//! the wait (`BusReceiver::spin`), so the network and WAL threads still run on it at once.
//! Any batch of several requests, a second connection or a wait that ended without a message
//! puts the TX thread back to sleeping between messages.

use spindle_proto::route::Route;
use spindle_types::limits::{TX_LONE_POLL_EVERY, TX_LONE_REQUESTS};

#[derive(Default, Debug)]
pub struct LoneClient {
    route: Option<Route>,
    streak: u32,
    spins: u32,
}

impl LoneClient {
    /// Notes a batch of requests from the network: `only` is its route if it held exactly one.
    pub fn observe(&mut self, only: Option<Route>) {
        match only {
            Some(route) if self.route == Some(route) => {
                self.streak = self.streak.saturating_add(1);
            }
            Some(route) => {
                self.route = Some(route);
                self.streak = 1;
            }
            None => self.forget(),
        }
    }

    /// Whether the TX thread should wait awake for this client's next request.
    pub fn active(&self) -> bool {
        self.streak >= TX_LONE_REQUESTS
    }

    /// Counts a spin that ended with a message; true every `TX_LONE_POLL_EVERY` of them, when
    /// the dispatcher should let the fiber scheduler poll.
    pub fn spun(&mut self) -> bool {
        self.spins = self.spins.wrapping_add(1);
        self.spins.is_multiple_of(TX_LONE_POLL_EVERY)
    }

    /// The client paused (a spin ended with nothing to do) or others joined.
    pub fn forget(&mut self) {
        self.route = None;
        self.streak = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(slot: u32) -> Route {
        Route {
            thread: 0,
            slot,
            generation: 1,
        }
    }

    #[test]
    fn one_connection_one_request_at_a_time_is_lone() {
        let mut lone = LoneClient::default();
        for _ in 1..TX_LONE_REQUESTS {
            lone.observe(Some(route(3)));
            assert!(!lone.active());
        }
        lone.observe(Some(route(3)));
        assert!(lone.active());
    }

    #[test]
    fn another_connection_a_pipeline_or_a_pause_ends_it() {
        let mut lone = LoneClient::default();
        let warm = |lone: &mut LoneClient| {
            for _ in 0..TX_LONE_REQUESTS {
                lone.observe(Some(route(3)));
            }
            assert!(lone.active());
        };
        warm(&mut lone);
        lone.observe(Some(route(4)));
        assert!(!lone.active());
        warm(&mut lone);
        lone.observe(None);
        assert!(!lone.active());
        warm(&mut lone);
        lone.forget();
        assert!(!lone.active());
    }

    #[test]
    fn every_so_many_spins_the_scheduler_polls() {
        let mut lone = LoneClient::default();
        let polls = (0..TX_LONE_POLL_EVERY * 3).filter(|_| lone.spun()).count();
        assert_eq!(polls, 3);
    }

    #[test]
    fn interleaved_clients_never_are() {
        let mut lone = LoneClient::default();
        for i in 0..100 {
            lone.observe(Some(route(i % 2)));
            assert!(!lone.active());
        }
    }
}
