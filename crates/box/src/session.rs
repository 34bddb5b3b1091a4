//! Per-connection state the TX thread keeps: the greeting salt and the authenticated user.

use hashbrown::HashMap;
use spindle_proto::route::Route;

pub const GUEST: u32 = 0;
pub const ADMIN: u32 = 1;

#[derive(Debug)]
pub struct Session {
    pub salt: [u8; 32],
    pub user: u32,
    /// `box.session.id()`: unique for the life of the process.
    pub id: u64,
    /// IPROTO_ID feature ids the client announced (bit n: feature n); 0 until it sends ID.
    pub features: u64,
}

#[derive(Default)]
pub struct Sessions {
    by_route: HashMap<Route, Session>,
    last_id: u64,
}

impl Sessions {
    pub fn connect(&mut self, route: Route, salt: [u8; 32]) {
        let id = self.next_id();
        self.by_route.insert(
            route,
            Session {
                salt,
                user: GUEST,
                id,
                features: 0,
            },
        );
    }

    /// A new session id (also for sessions without a connection: consoles, fibers).
    pub fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    pub fn get(&self, route: Route) -> Option<&Session> {
        self.by_route.get(&route)
    }

    pub fn disconnect(&mut self, route: Route) {
        self.by_route.remove(&route);
    }

    /// The session of a route; a request from a connection TX never saw connect (cannot
    /// happen: Connect is sent first on the same FIFO bus) is treated as guest.
    pub fn user(&self, route: Route) -> u32 {
        self.by_route.get(&route).map_or(GUEST, |s| s.user)
    }

    pub fn get_mut(&mut self, route: Route) -> Option<&mut Session> {
        self.by_route.get_mut(&route)
    }

    pub fn len(&self) -> usize {
        self.by_route.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_route.is_empty()
    }
}
