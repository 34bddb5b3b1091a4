//! Watchers on the TX thread: WATCH and UNWATCH (from compat 2.10.0), `box.broadcast`'s
//! delivery, and the built-in keys. The registry and its coalescing are
//! `spindle_box::watch`'s; here its notices become EVENT packets queued for a session (they
//! end no request, like a push) or wake-ups of the Lua fibers that run `box.watch`
//! callbacks. The values of the built-in keys are 2.11's shapes (transactions-and-http.md §A5).

use std::sync::atomic::Ordering;
use std::sync::OnceLock;

use spindle_box::watch::{Notice, Owner, Take, WatcherId};
use spindle_proto::iproto::{slice, Header, Request};
use spindle_proto::mp;
use spindle_proto::route::Route;
use spindle_proto::watch::{decode_watch, encode_event};
use spindle_types::BoxResult;

use crate::state::Tx;

/// Wakes Lua fiber `id` (set once by the Lua runtime, which this crate does not depend on).
static FIBER_WAKER: OnceLock<fn(u64)> = OnceLock::new();

pub fn set_fiber_waker(wake: fn(u64)) {
    let _ = FIBER_WAKER.set(wake);
}

/// WATCH or UNWATCH at compat 2.10.0 or later. The body is decoded before the schema version
/// is checked, as 2.11 decodes it in its network thread. Success has no reply.
pub fn run(t: &mut Tx, route: Route, header: &Header, request: &Request, packet: &[u8]) {
    if let Err(e) = run_checked(t, route, header, request, packet) {
        t.send_reply(route, header.sync, Err(e));
        return;
    }
    t.outboxes.push_no_reply(route);
}

fn run_checked(
    t: &mut Tx,
    route: Route,
    header: &Header,
    request: &Request,
    packet: &[u8],
) -> BoxResult<()> {
    let (Request::Watch { body } | Request::Unwatch { body }) = request else {
        return Err(spindle_types::BoxError::unknown());
    };
    let key = decode_watch(slice(packet, body))?;
    t.db.check_schema_version(header)?;
    if matches!(request, Request::Watch { .. }) {
        let notice = t.watch.watch(route, key)?;
        notify(t, notice);
    } else {
        t.watch.unwatch(route, key);
    }
    Ok(())
}

/// Tells each watcher of `notices`: an EVENT with the key's value now, or a wake-up.
pub fn notify(t: &mut Tx, notices: impl IntoIterator<Item = Notice>) {
    for notice in notices {
        match notice.owner {
            Owner::Session(route) => send_event(t, route, notice.id),
            Owner::Fiber(fiber) => {
                if let Some(wake) = FIBER_WAKER.get() {
                    wake(fiber);
                }
            }
        }
    }
}

fn send_event(t: &mut Tx, route: Route, id: WatcherId) {
    if let Take::Event(key, value) = t.watch.take(id) {
        t.outboxes
            .push_unsolicited(route, |out| encode_event(out, key, value));
    }
}

/// Sets (or clears) a key's value and tells its waiting watchers. Outside a dispatcher turn
/// (a Lua fiber) the events leave at once.
pub fn broadcast(t: &mut Tx, key: &[u8], value: Option<&[u8]>) -> BoxResult<()> {
    let notices = t.watch.broadcast(key, value)?;
    notify(t, notices);
    if !t.in_turn {
        t.outboxes.flush();
    }
    Ok(())
}

/// A built-in key's new value. The registry refuses only new keys past its limit, and the
/// built-in keys are made first, so this cannot fail once they exist.
fn set_builtin(t: &mut Tx, key: &str, value: &[u8]) {
    if let Err(e) = broadcast(t, key.as_bytes(), Some(value)) {
        tracing::warn!("cannot broadcast {key}: {}", e.message);
    }
}

/// Every built-in key, as `box.cfg{}` ends.
pub fn broadcast_builtins(t: &mut Tx) {
    broadcast_id(t);
    broadcast_status(t);
    broadcast_election(t);
    broadcast_schema(t);
}

/// `box.id`: `{id, instance_uuid, replicaset_uuid}`, the UUIDs as MP_EXT type 2.
pub fn broadcast_id(t: &mut Tx) {
    let mut v = Vec::with_capacity(64);
    mp::write_map_len(&mut v, 3);
    mp::write_str(&mut v, "id");
    mp::write_uint(&mut v, u64::from(t.db.replica_id()));
    mp::write_str(&mut v, "instance_uuid");
    write_uuid(&mut v, t.db.instance_uuid());
    mp::write_str(&mut v, "replicaset_uuid");
    write_uuid(&mut v, &t.db.cluster_uuid());
    t.watch_state.replica_id = t.db.replica_id();
    set_builtin(t, "box.id", &v);
}

/// `box.status`: `{is_ro, is_ro_cfg, status}`; spindle is read-only only by configuration
/// and is always "running" once `box.cfg{}` has returned.
pub fn broadcast_status(t: &mut Tx) {
    let ro = t.db.read_only();
    let mut v = Vec::with_capacity(48);
    mp::write_map_len(&mut v, 3);
    mp::write_str(&mut v, "is_ro");
    mp::write_bool(&mut v, ro);
    mp::write_str(&mut v, "is_ro_cfg");
    mp::write_bool(&mut v, ro);
    mp::write_str(&mut v, "status");
    mp::write_str(&mut v, "running");
    t.watch_state.read_only = ro;
    set_builtin(t, "box.status", &v);
}

/// `box.election`: spindle has no elections, so it reports what 2.11 does with
/// `election_mode = 'off'`: term 1, a follower, no leader.
pub fn broadcast_election(t: &mut Tx) {
    let mut v = Vec::with_capacity(48);
    mp::write_map_len(&mut v, 4);
    mp::write_str(&mut v, "term");
    mp::write_uint(&mut v, 1);
    mp::write_str(&mut v, "role");
    mp::write_str(&mut v, "follower");
    mp::write_str(&mut v, "is_ro");
    mp::write_bool(&mut v, t.db.read_only());
    mp::write_str(&mut v, "leader");
    mp::write_uint(&mut v, 0);
    set_builtin(t, "box.election", &v);
}

/// `box.schema`: `{version}`, the schema version clients see in reply headers.
pub fn broadcast_schema(t: &mut Tx) {
    let version = t.db.schema_version();
    let mut v = Vec::with_capacity(16);
    mp::write_map_len(&mut v, 1);
    mp::write_str(&mut v, "version");
    mp::write_uint(&mut v, u64::from(version));
    t.watch_state.schema_version = version;
    set_builtin(t, "box.schema", &v);
}

/// `box.shutdown`: true as a graceful shutdown starts.
pub fn broadcast_shutdown(t: &mut Tx) {
    set_builtin(t, "box.shutdown", &[0xc3]);
}

/// Re-broadcasts the built-in keys whose source changed: the schema version after a DDL,
/// the instance id after joining `_cluster`, `read_only` after `box.cfg`.
pub fn refresh_builtins(t: &mut Tx) {
    if !t.watch_state.started {
        return;
    }
    if t.watch_state.schema_version != t.db.schema_version() {
        broadcast_schema(t);
    }
    if t.watch_state.replica_id != t.db.replica_id() {
        broadcast_id(t);
    }
    if t.watch_state.read_only != t.db.read_only() {
        broadcast_status(t);
        broadcast_election(t);
    }
}

impl Tx {
    /// Publishes the schema version to the network threads (they stamp it on errors they
    /// answer) and to `box.schema`'s watchers.
    pub fn publish_schema_version(&mut self) {
        self.hooks
            .schema_version
            .store(self.db.schema_version(), Ordering::Relaxed);
        refresh_builtins(self);
    }

    /// Publishes the schema version if the last change bumped it.
    pub fn note_schema_change(&mut self) {
        if self.db.schema_changed() {
            self.publish_schema_version();
        }
    }
}

/// Makes the built-in keys.
pub fn start_builtins(t: &mut Tx) {
    broadcast_builtins(t);
    t.watch_state.started = true;
}

/// A UUID text as MP_EXT type 2 (16 bytes); nil if it does not parse.
fn write_uuid(out: &mut Vec<u8>, text: &str) {
    match uuid::Uuid::parse_str(text) {
        Ok(u) => {
            out.extend_from_slice(&[0xd8, 0x02]);
            out.extend_from_slice(u.as_bytes());
        }
        Err(_) => mp::write_nil(out),
    }
}

#[cfg(test)]
mod tests {
    use super::write_uuid;

    #[test]
    fn a_uuid_is_ext_2_of_its_16_bytes() {
        let mut out = Vec::new();
        write_uuid(&mut out, "00000000-0000-0000-0000-0000000000ff");
        assert_eq!(out.len(), 18);
        assert_eq!(&out[..2], &[0xd8, 0x02]);
        assert_eq!(out[17], 0xff);
        out.clear();
        write_uuid(&mut out, "not a uuid");
        assert_eq!(out, [0xc0]);
    }
}
