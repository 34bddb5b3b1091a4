//! Watchers (2.10+ IPROTO_WATCH, `box.watch`), pure: the key → value registry and what each
//! watcher has been told. A watcher hears about its key once when it is registered, then
//! again after each change, but never while its last notice is unacknowledged: changes made
//! meanwhile coalesce into one notice, read when it is delivered, so it carries the newest
//! value. A watcher therefore holds at most one undelivered notice whatever the rate of
//! changes, which is what bounds a slow client's events. Changes are counted per key (a
//! version), as Tarantool counts them: broadcasting the same value again is a change.
//!
//! Owners: a binary session (acknowledges by sending WATCH again) or a Lua fiber
//! (`box.watch`; acknowledges when its callback returns). The caller turns each `Notice`
//! into an EVENT or a fiber wake-up and reads the value with `take`.

use std::rc::Rc;

use hashbrown::{HashMap, HashSet};
use spindle_proto::route::Route;
use spindle_types::limits::{
    SESSION_WATCHERS_MAX, WATCHERS_MAX, WATCH_KEYS_MAX, WATCH_KEY_LEN_MAX,
};
use spindle_types::BoxError;

pub type WatcherId = u64;

/// Who a watcher tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// A binary connection: an EVENT.
    Session(Route),
    /// A Lua fiber (by its fiber id) that runs the callback.
    Fiber(u64),
}

/// A watcher to notify now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notice {
    pub id: WatcherId,
    pub owner: Owner,
}

/// What `take` finds for a watcher.
#[derive(Debug, PartialEq, Eq)]
pub enum Take<'a> {
    /// The watcher was unregistered.
    Gone,
    /// No notice is waiting.
    Nothing,
    /// The notice: the key and its value now (None if it has none).
    Event(&'a [u8], Option<&'a [u8]>),
}

struct Node {
    value: Option<Box<[u8]>>,
    /// Changes so far.
    version: u64,
    watchers: HashSet<WatcherId>,
}

struct Watcher {
    /// Shared with its node and its session's map: a key is stored once.
    key: Rc<[u8]>,
    owner: Owner,
    /// The version its last notice was for.
    seen: u64,
    /// Acknowledged: the next change notifies it at once.
    idle: bool,
    /// Notified, and the value not read yet.
    unread: bool,
}

#[derive(Default)]
pub struct Registry {
    nodes: HashMap<Rc<[u8]>, Node>,
    watchers: HashMap<WatcherId, Watcher>,
    sessions: HashMap<Route, HashMap<Rc<[u8]>, WatcherId>>,
    last_id: WatcherId,
}

fn too_many_keys() -> BoxError {
    BoxError::unsupported(
        "spindle",
        &format!("more than {WATCH_KEYS_MAX} watched or broadcast keys"),
    )
}

fn check_key(key: &[u8]) -> Result<(), BoxError> {
    if key.len() > WATCH_KEY_LEN_MAX {
        return Err(BoxError::unsupported(
            "spindle",
            &format!("watch keys longer than {WATCH_KEY_LEN_MAX} bytes"),
        ));
    }
    Ok(())
}

impl Registry {
    /// IPROTO_WATCH: a new watcher of `key` for the session (notified at once), or the
    /// acknowledgement of the one it has.
    pub fn watch(&mut self, route: Route, key: &[u8]) -> Result<Option<Notice>, BoxError> {
        let existing = self.sessions.get(&route).and_then(|m| m.get(key)).copied();
        if let Some(id) = existing {
            return Ok(self.ack(id));
        }
        check_key(key)?;
        let count = self.sessions.get(&route).map_or(0, HashMap::len);
        if count >= SESSION_WATCHERS_MAX {
            return Err(BoxError::unsupported(
                "spindle",
                &format!("more than {SESSION_WATCHERS_MAX} watchers per session"),
            ));
        }
        let notice = self.register(key, Owner::Session(route))?;
        if let Some(watcher) = self.watchers.get(&notice.id) {
            let key = watcher.key.clone();
            self.sessions
                .entry(route)
                .or_default()
                .insert(key, notice.id);
        }
        Ok(Some(notice))
    }

    /// IPROTO_UNWATCH: a key the session does not watch is no error.
    pub fn unwatch(&mut self, route: Route, key: &[u8]) {
        let id = self.sessions.get_mut(&route).and_then(|m| m.remove(key));
        if let Some(id) = id {
            self.unregister(id);
        }
        if self.sessions.get(&route).is_some_and(HashMap::is_empty) {
            self.sessions.remove(&route);
        }
    }

    /// The session ended: its watchers go with it.
    pub fn drop_session(&mut self, route: Route) {
        if let Some(ids) = self.sessions.remove(&route) {
            for id in ids.into_values() {
                self.unregister(id);
            }
        }
    }

    /// A new watcher of `key`, notified at once.
    pub fn register(&mut self, key: &[u8], owner: Owner) -> Result<Notice, BoxError> {
        check_key(key)?;
        if self.watchers.len() >= WATCHERS_MAX {
            return Err(BoxError::unsupported(
                "spindle",
                &format!("more than {WATCHERS_MAX} watchers"),
            ));
        }
        self.last_id += 1;
        let id = self.last_id;
        let (key, node) = node(&mut self.nodes, key)?;
        node.watchers.insert(id);
        let watcher = Watcher {
            key,
            owner,
            seen: 0,
            idle: false,
            unread: false,
        };
        self.watchers.insert(id, watcher);
        Ok(self.deliver(id).unwrap_or(Notice { id, owner }))
    }

    /// Forgets a watcher; a key left with neither value nor watchers is forgotten too.
    /// Returns whether it was waiting for a change (acknowledged), None if unknown.
    pub fn unregister(&mut self, id: WatcherId) -> Option<bool> {
        let watcher = self.watchers.remove(&id)?;
        if let Some(node) = self.nodes.get_mut(&watcher.key) {
            node.watchers.remove(&id);
            if node.value.is_none() && node.watchers.is_empty() {
                self.nodes.remove(&watcher.key);
            }
        }
        Some(watcher.idle)
    }

    /// The watcher is ready for its next notice: it gets one at once if the key changed
    /// since its last. Acknowledging twice is acknowledging once.
    pub fn ack(&mut self, id: WatcherId) -> Option<Notice> {
        let watcher = self.watchers.get_mut(&id)?;
        if watcher.idle {
            return None;
        }
        let version = self.nodes.get(&watcher.key).map_or(0, |n| n.version);
        if watcher.seen == version {
            watcher.idle = true;
            return None;
        }
        self.deliver(id)
    }

    /// Sets (or with None, clears) the value of `key`; the watchers waiting for a change are
    /// returned to be notified.
    pub fn broadcast(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<Vec<Notice>, BoxError> {
        check_key(key)?;
        let node = match value {
            Some(_) => node(&mut self.nodes, key)?.1,
            None => match self.nodes.get_mut(key) {
                Some(node) => node,
                None => return Ok(Vec::new()),
            },
        };
        node.value = value.map(Into::into);
        if value.is_none() && node.watchers.is_empty() {
            self.nodes.remove(key);
            return Ok(Vec::new());
        }
        node.version += 1;
        let watchers = &self.watchers;
        let ready: Vec<WatcherId> = node
            .watchers
            .iter()
            .copied()
            .filter(|id| watchers.get(id).is_some_and(|w| w.idle))
            .collect();
        Ok(ready
            .into_iter()
            .filter_map(|id| self.deliver(id))
            .collect())
    }

    /// The value of `key`, if it has one.
    pub fn value(&self, key: &[u8]) -> Option<&[u8]> {
        self.nodes.get(key).and_then(|n| n.value.as_deref())
    }

    /// Reads a watcher's notice: the key and its value now (the newest, whatever changed
    /// since it was notified, which then counts as seen).
    pub fn take(&mut self, id: WatcherId) -> Take<'_> {
        let Some(watcher) = self.watchers.get_mut(&id) else {
            return Take::Gone;
        };
        if !watcher.unread {
            return Take::Nothing;
        }
        watcher.unread = false;
        match self.nodes.get(&watcher.key) {
            Some(node) => {
                watcher.seen = node.version;
                Take::Event(&watcher.key, node.value.as_deref())
            }
            None => Take::Event(&watcher.key, None),
        }
    }

    /// Watchers of one session (for tests and limits).
    pub fn session_watchers(&self, route: Route) -> usize {
        self.sessions.get(&route).map_or(0, HashMap::len)
    }

    /// Keys the registry holds.
    pub fn keys(&self) -> usize {
        self.nodes.len()
    }

    fn deliver(&mut self, id: WatcherId) -> Option<Notice> {
        let watcher = self.watchers.get_mut(&id)?;
        watcher.idle = false;
        watcher.unread = true;
        watcher.seen = self.nodes.get(&watcher.key).map_or(0, |n| n.version);
        Some(Notice {
            id,
            owner: watcher.owner,
        })
    }
}

/// The stored key and node of `key`, made if new (within `WATCH_KEYS_MAX`).
fn node<'a>(
    nodes: &'a mut HashMap<Rc<[u8]>, Node>,
    key: &[u8],
) -> Result<(Rc<[u8]>, &'a mut Node), BoxError> {
    if !nodes.contains_key(key) {
        if nodes.len() >= WATCH_KEYS_MAX {
            return Err(too_many_keys());
        }
        let node = Node {
            value: None,
            version: 0,
            watchers: HashSet::new(),
        };
        nodes.insert(key.into(), node);
    }
    match nodes.get_key_value_mut(key) {
        Some((stored, node)) => Ok((stored.clone(), node)),
        None => Err(too_many_keys()),
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

    fn event(r: &mut Registry, id: WatcherId) -> Option<Option<Vec<u8>>> {
        match r.take(id) {
            Take::Event(_, value) => Some(value.map(<[u8]>::to_vec)),
            _ => None,
        }
    }

    #[test]
    fn the_first_watch_tells_the_current_value_or_none() {
        let mut r = Registry::default();
        r.broadcast(b"k", Some(b"\x01")).unwrap();
        let n = r.watch(route(1), b"k").unwrap().unwrap();
        assert_eq!(n.owner, Owner::Session(route(1)));
        assert_eq!(event(&mut r, n.id), Some(Some(vec![1])));
        let n = r.watch(route(1), b"unset").unwrap().unwrap();
        assert_eq!(event(&mut r, n.id), Some(None));
        assert_eq!(r.take(n.id), Take::Nothing);
    }

    #[test]
    fn changes_before_the_ack_coalesce_into_one_notice_of_the_newest() {
        let mut r = Registry::default();
        let id = r.watch(route(1), b"k").unwrap().unwrap().id;
        event(&mut r, id);
        for v in 1u8..=5 {
            assert!(r.broadcast(b"k", Some(&[v])).unwrap().is_empty());
        }
        let n = r
            .watch(route(1), b"k")
            .unwrap()
            .expect("changed: notified on ack");
        assert_eq!(event(&mut r, n.id), Some(Some(vec![5])));
        // Acknowledged with nothing new: idle; the next change notifies at once.
        assert_eq!(r.watch(route(1), b"k").unwrap(), None);
        assert_eq!(r.watch(route(1), b"k").unwrap(), None);
        let notices = r.broadcast(b"k", Some(b"\x06")).unwrap();
        assert_eq!(
            notices,
            vec![Notice {
                id,
                owner: Owner::Session(route(1))
            }]
        );
        assert_eq!(event(&mut r, id), Some(Some(vec![6])));
    }

    #[test]
    fn the_same_value_again_is_a_change() {
        let mut r = Registry::default();
        let id = r.register(b"k", Owner::Fiber(7)).unwrap().id;
        event(&mut r, id);
        assert_eq!(r.ack(id), None);
        assert_eq!(r.broadcast(b"k", None).unwrap().len(), 1);
        assert_eq!(event(&mut r, id), Some(None));
        assert_eq!(r.ack(id), None);
        assert_eq!(r.broadcast(b"k", None).unwrap().len(), 1);
    }

    #[test]
    fn a_value_read_late_is_the_newest_and_counts_as_seen() {
        let mut r = Registry::default();
        let id = r.register(b"k", Owner::Fiber(7)).unwrap().id;
        r.broadcast(b"k", Some(b"\x02")).unwrap();
        assert_eq!(event(&mut r, id), Some(Some(vec![2])));
        assert_eq!(r.ack(id), None, "the change before the read was seen");
    }

    #[test]
    fn unwatch_and_disconnect_forget_watchers_and_unused_keys() {
        let mut r = Registry::default();
        r.unwatch(route(1), b"never");
        r.watch(route(1), b"a").unwrap();
        r.watch(route(1), b"b").unwrap();
        r.broadcast(b"b", Some(b"\x01")).unwrap();
        r.watch(route(2), b"a").unwrap();
        assert_eq!((r.session_watchers(route(1)), r.keys()), (2, 2));
        r.unwatch(route(1), b"a");
        assert_eq!((r.session_watchers(route(1)), r.keys()), (1, 2));
        r.drop_session(route(2));
        assert_eq!(r.keys(), 1, "a: no watcher, no value");
        r.drop_session(route(1));
        assert_eq!(r.keys(), 1, "b keeps its value");
        r.broadcast(b"b", None).unwrap();
        assert_eq!(r.keys(), 0);
        assert_eq!(r.value(b"b"), None);
    }

    #[test]
    fn an_unregistered_watcher_is_gone_and_never_notified() {
        let mut r = Registry::default();
        let id = r.register(b"k", Owner::Fiber(1)).unwrap().id;
        r.unregister(id);
        assert_eq!(r.take(id), Take::Gone);
        assert_eq!(r.ack(id), None);
        assert!(r.broadcast(b"k", Some(b"\x01")).unwrap().is_empty());
    }

    #[test]
    fn limits_refuse_with_an_error() {
        let mut r = Registry::default();
        for i in 0..SESSION_WATCHERS_MAX {
            r.watch(route(1), i.to_string().as_bytes()).unwrap();
        }
        let e = r.watch(route(1), b"one more").unwrap_err();
        assert!(e.message.contains("watchers per session"), "{e:?}");
        // Acknowledging one it has still works at the limit.
        assert!(r.watch(route(1), b"0").is_ok());
        let long = vec![b'x'; WATCH_KEY_LEN_MAX + 1];
        assert!(r.watch(route(2), &long).is_err());
        assert!(r.broadcast(&long, Some(b"\x01")).is_err());
    }

    #[test]
    fn the_watcher_count_is_bounded_and_keys_are_shared() {
        let mut r = Registry::default();
        for _ in 0..WATCHERS_MAX {
            r.register(b"k", Owner::Fiber(1)).unwrap();
        }
        let e = r.register(b"k", Owner::Fiber(1)).unwrap_err();
        assert!(e.message.contains("watchers"), "{e:?}");
        assert!(r.watch(route(1), b"k").is_err());
        let node_key = r
            .nodes
            .get_key_value(&b"k"[..])
            .map(|(k, _)| k.clone())
            .unwrap();
        assert_eq!(Rc::strong_count(&node_key), WATCHERS_MAX + 2);
        r.unregister(1);
        assert!(r.watch(route(1), b"k").is_ok());
    }

    #[test]
    fn the_key_count_is_bounded() {
        let mut r = Registry::default();
        for i in 0..WATCH_KEYS_MAX {
            r.broadcast(i.to_string().as_bytes(), Some(b"\xc0"))
                .unwrap();
        }
        assert!(r.broadcast(b"new", Some(b"\xc0")).is_err());
        assert!(r.register(b"new", Owner::Fiber(1)).is_err());
        assert!(r.broadcast(b"0", Some(b"\xc3")).is_ok(), "an existing key");
    }

    /// One session watcher against a model of the protocol: it hears about its key at
    /// registration and then only after an ack, each notice carries the newest value, and a
    /// notice goes out after an ack exactly when something was broadcast since the last one.
    mod model {
        use super::*;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Op {
            Broadcast(u8),
            Clear,
            Ack,
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                (0u8..4).prop_map(Op::Broadcast),
                Just(Op::Clear),
                Just(Op::Ack),
            ]
        }

        proptest! {
            #[test]
            fn notices_follow_acks_and_carry_the_newest_value(ops in prop::collection::vec(op(), 0..64)) {
                let mut r = Registry::default();
                let first = r.watch(route(1), b"k").unwrap().unwrap();
                prop_assert_eq!(event(&mut r, first.id), Some(None));
                let mut current: Option<Vec<u8>> = None;
                let mut awaiting_ack = true;
                let mut changed = false;
                for op in ops {
                    let notices = match op {
                        Op::Broadcast(v) => {
                            current = Some(vec![v]);
                            changed = true;
                            r.broadcast(b"k", Some(&[v])).unwrap()
                        }
                        Op::Clear => {
                            current = None;
                            changed = true;
                            r.broadcast(b"k", None).unwrap()
                        }
                        Op::Ack => r.watch(route(1), b"k").unwrap().into_iter().collect(),
                    };
                    let expect_notice = match op {
                        Op::Ack => awaiting_ack && changed,
                        _ => !awaiting_ack,
                    };
                    if matches!(op, Op::Ack) && awaiting_ack && !changed {
                        awaiting_ack = false;
                    }
                    prop_assert_eq!(notices.len(), usize::from(expect_notice));
                    if expect_notice {
                        prop_assert_eq!(event(&mut r, first.id), Some(current.clone()));
                        awaiting_ack = true;
                        changed = false;
                    }
                    prop_assert_eq!(r.take(first.id), Take::Nothing);
                }
            }
        }
    }
}
