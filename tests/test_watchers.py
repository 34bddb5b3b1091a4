"""Watchers (issue 16): IPROTO_WATCH (74), IPROTO_UNWATCH (75), IPROTO_EVENT (76), the built-in
keys, and `box.watch` / `box.broadcast` in Lua.

No client library available here speaks watchers to a 2.x server (asynctnt and
tarantool-python have no watcher API; Tarantool 2.6's net.box predates them), so the protocol
is driven by a small raw-socket client below: WATCH and UNWATCH have no reply on success, and
an EVENT has neither SYNC nor SCHEMA_VERSION in its header, so the client reads packets and
sorts them itself. The expected behaviour is 2.11's (shared docs transactions-and-http.md §A5);
with the default compat version (2.6.0) spindle is compared with the real Tarantool 2.6, where
all three are unknown request types.

Nothing here waits for an event that must not come with a sleep: absence is shown by a PING
sent after the change, whose reply comes after anything the change made the server send (TX
sends in order, on one connection).
"""

import msgpack
import pytest

from harness import iproto as ip

WATCH, UNWATCH, EVENT = 74, 75, 76
K_EVENT_KEY, K_EVENT_DATA = 0x57, 0x58
K_STREAM_ID = 0x0A
ID, K_FEATURES = 73, 0x55
SESSION_WATCHERS_MAX, WATCH_KEY_LEN_MAX, WATCH_KEYS_MAX = 1024, 1024, 65_536  # types/src/limits.rs


@pytest.fixture
def server(spindle_server):
    return spindle_server(extra_args=("--compat-version", "2.11.0"))


class Watcher:
    """A raw IPROTO connection that keeps EVENTs apart from replies."""

    def __init__(self, server, auth=True):
        self.c = ip.connect(server, "admin" if auth else None, server.password)
        self.events = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.c.close()

    def send(self, rtype, body=None, extra=None):
        sync = self.c.next_sync
        self.c.next_sync += 1
        header = {ip.K_TYPE: rtype, ip.K_SYNC: sync}
        header.update(extra or {})
        self.c.send_bytes(ip.packet(header, body))
        return sync

    def watch(self, key):
        return self.send(WATCH, {K_EVENT_KEY: key})

    def unwatch(self, key):
        return self.send(UNWATCH, {K_EVENT_KEY: key})

    def reply(self, sync):
        """Reads packets up to the reply to `sync`; EVENTs met on the way are kept."""
        while True:
            header, body, _ = self.c.read_packet()
            if header.get(ip.K_TYPE) == EVENT:
                assert set(header) == {ip.K_TYPE}, f"an EVENT header has only its type: {header}"
                self.events.append(body)
                continue
            assert header.get(ip.K_SYNC) == sync, (header, body)
            return header, body

    def sync_point(self):
        """Everything the server sent before now has been read (the PING's reply is behind it)."""
        self.reply(self.send(ip.PING))

    def take_events(self):
        self.sync_point()
        out, self.events = self.events, []
        return out

    def next_event(self):
        while not self.events:
            header, body, _ = self.c.read_packet()
            assert header.get(ip.K_TYPE) == EVENT, (header, body)
            self.events.append(body)
        return self.events.pop(0)

    def eval(self, expr, *args):
        header, body = self.reply(self.send(ip.EVAL, {ip.K_EXPR: expr, ip.K_TUPLE: list(args)}))
        assert not header[ip.K_TYPE] & ip.TYPE_ERROR, body
        return body.get(ip.K_DATA)

    def error(self, sync):
        header, body = self.reply(sync)
        assert header[ip.K_TYPE] & ip.TYPE_ERROR, (header, body)
        return header[ip.K_TYPE] & 0x7FFF, body[ip.K_ERROR_24]


def event(key, *value):
    """An EVENT body: the key, and the value only if the key has one."""
    body = {K_EVENT_KEY: key}
    if value:
        body[K_EVENT_DATA] = value[0]
    return body


def broadcast(w, key, value):
    w.eval("box.broadcast(...)", key, value)


# -- the protocol -------------------------------------------------------------------------------

def test_id_announces_watchers(server):
    with Watcher(server, auth=False) as w:
        header, body = w.reply(w.send(ID, {K_FEATURES: [0, 1, 3]}))
        assert body[K_FEATURES] == [0, 1, 2, 3]


def test_first_watch_sends_the_value_or_only_the_key(server):
    with Watcher(server) as w:
        broadcast(w, "set", {"a": [1, 2]})
        w.watch("set")
        w.watch("never-set")
        assert w.next_event() == event("set", {"a": [1, 2]})
        assert w.next_event() == event("never-set")
        assert w.take_events() == []


def test_changes_after_the_ack_and_coalescing_before_it(server):
    with Watcher(server) as w, Watcher(server) as other:
        w.watch("k")
        assert w.next_event() == event("k")
        # Not acknowledged yet: changes coalesce, nothing is sent.
        for i in range(5):
            broadcast(other, "k", i)
        assert w.take_events() == []
        # The ack: one event, the newest value.
        w.watch("k")
        assert w.next_event() == event("k", 4)
        assert w.take_events() == []
        # Acknowledged with nothing new: the next change is sent at once.
        w.watch("k")
        assert w.take_events() == []
        broadcast(other, "k", "x")
        assert w.next_event() == event("k", "x")
        # The same value again is a change (Tarantool counts broadcasts, not differences).
        w.watch("k")
        broadcast(other, "k", "x")
        assert w.next_event() == event("k", "x")
        # Clearing the value: the key without data.
        w.watch("k")
        other.eval("box.broadcast('k')")
        assert w.next_event() == event("k")


def test_each_session_has_its_own_watchers(server):
    with Watcher(server) as a, Watcher(server) as b:
        a.watch("k")
        b.watch("k")
        assert a.next_event() == event("k") and b.next_event() == event("k")
        a.watch("k")
        broadcast(a, "k", 1)
        assert a.next_event() == event("k", 1)
        assert b.take_events() == [], "b did not acknowledge"
        b.watch("k")
        assert b.next_event() == event("k", 1)


def test_unwatch_stops_events_and_an_unknown_key_is_no_error(server):
    with Watcher(server) as w:
        w.watch("k")
        assert w.next_event() == event("k")
        w.watch("k")
        w.unwatch("k")
        w.unwatch("not watched")
        broadcast(w, "k", 1)
        assert w.take_events() == []
        # Watching again starts over: the current value at once.
        w.watch("k")
        assert w.next_event() == event("k", 1)


def test_watch_before_auth(server):
    with Watcher(server, auth=False) as w:
        w.watch("box.schema")
        assert list(w.next_event()[K_EVENT_DATA]) == ["version"]


def test_body_errors_are_2_11s(server):
    with Watcher(server) as w:
        bad = "Invalid MsgPack - packet body"
        assert w.error(w.send(WATCH)) == (20, "Invalid MsgPack - missing request body")
        assert w.error(w.send(WATCH, [1])) == (20, bad)
        assert w.error(w.send(WATCH, {K_EVENT_KEY: 1})) == (20, bad)
        assert w.error(w.send(WATCH, {ip.K_SPACE_ID: "x", K_EVENT_KEY: "k"})) == (20, bad)
        assert w.error(w.send(UNWATCH, {"k": "k"})) == (20, bad)
        assert w.error(w.send(WATCH, {})) == (69, "Missing mandatory field 'event key' in request")
        assert w.error(w.send(UNWATCH, {})) == (69, "Missing mandatory field 'event key' in request")
        # A stale schema version is checked once the body is decoded.
        code, _ = w.error(w.send(WATCH, {K_EVENT_KEY: "k"}, {ip.K_SCHEMA_VERSION: 1}))
        assert code == 109
        assert w.error(w.send(WATCH, {K_EVENT_KEY: "k"}, {K_STREAM_ID: 3})) == (
            229, "Unable to process WATCH request in stream")
        assert w.error(w.send(UNWATCH, {K_EVENT_KEY: "k"}, {K_STREAM_ID: 3})) == (
            229, "Unable to process UNWATCH request in stream")
        # None of these registered anything.
        assert w.take_events() == []


def test_watchers_die_with_their_session(server):
    """Each session watches 1,024 keys nobody sets, then closes. A key lives while it has a
    value or a watcher, and the server holds at most WATCH_KEYS_MAX of them: if the watchers
    (and so the keys) outlived their sessions, session 65 would be refused."""
    sessions = WATCH_KEYS_MAX // SESSION_WATCHERS_MAX + 6
    for s in range(sessions):
        with Watcher(server) as w:
            for i in range(SESSION_WATCHERS_MAX):
                w.watch(f"s{s}-{i}")
            events = w.take_events()
            assert len(events) == SESSION_WATCHERS_MAX, (s, events[-1:])
            assert all(K_EVENT_DATA not in e for e in events)
    # A fresh session watching an old key starts its own watcher.
    with Watcher(server) as w:
        w.watch("s0-0")
        assert w.next_event() == event("s0-0")
        assert w.take_events() == []


def test_the_watchers_of_a_session_are_bounded(server):
    with Watcher(server) as w:
        for i in range(SESSION_WATCHERS_MAX):
            w.watch(f"key{i}")
        events = w.take_events()
        assert len(events) == SESSION_WATCHERS_MAX
        code, message = w.error(w.watch("one too many"))
        assert (code, message) == (
            5, f"spindle does not support more than {SESSION_WATCHERS_MAX} watchers per session")
        # Its existing watchers still work, and so does the connection.
        w.watch("key0")
        broadcast(w, "key0", 1)
        assert w.next_event() == event("key0", 1)
        code, message = w.error(w.watch("x" * (WATCH_KEY_LEN_MAX + 1)))
        assert code == 5 and "longer than" in message
    # Another session is not limited by that one.
    with Watcher(server) as w:
        w.watch("one too many")
        assert w.next_event() == event("one too many")


def test_a_slow_reader_gets_one_event_per_ack(server):
    """Thousands of changes to a watched key while its client does not acknowledge cost
    nothing: the client finds no event queued, then exactly one with the last value."""
    with Watcher(server) as w:
        w.watch("hot")
        assert w.next_event() == event("hot")
        w.eval("for i = 1, 20000 do box.broadcast('hot', i) end")
        assert w.take_events() == []
        w.watch("hot")
        assert w.next_event() == event("hot", 20000)


# -- built-in keys ------------------------------------------------------------------------------

def test_builtin_keys_have_2_11s_shape(server):
    with Watcher(server) as w:
        for key in ("box.id", "box.status", "box.election", "box.schema"):
            w.watch(key)
        got = {e[K_EVENT_KEY]: e[K_EVENT_DATA] for e in w.take_events()}
        info = w.eval("return box.info.id, box.info.uuid, box.info.cluster.uuid")
        ident = got["box.id"]
        assert set(ident) == {"id", "instance_uuid", "replicaset_uuid"}
        assert ident["id"] == info[0]
        for field, text in (("instance_uuid", info[1]), ("replicaset_uuid", info[2])):
            ext = ident[field]
            assert isinstance(ext, msgpack.ExtType) and ext.code == 2, ext
            assert ext.data.hex() == text.replace("-", "")
        assert got["box.status"] == {"is_ro": False, "is_ro_cfg": False, "status": "running"}
        assert got["box.election"] == {"term": 1, "role": "follower", "is_ro": False, "leader": 0}
        header, _ = w.reply(w.send(ip.PING))
        assert got["box.schema"] == {"version": header[ip.K_SCHEMA_VERSION]}


def test_box_schema_changes_with_every_ddl(server):
    with Watcher(server) as w:
        w.watch("box.schema")
        before = w.next_event()[K_EVENT_DATA]["version"]
        w.watch("box.schema")
        w.eval("box.schema.space.create('s'):create_index('pk')")
        after = w.next_event()[K_EVENT_DATA]["version"]
        assert before < after
        # The space and its index are two changes: the second, if the first was sent before
        # it, comes after the ack.
        w.watch("box.schema")
        newest = [e[K_EVENT_DATA]["version"] for e in w.take_events()] or [after]
        header, _ = w.reply(w.send(ip.PING))
        assert newest[-1] == header[ip.K_SCHEMA_VERSION]
        # Data changes are not schema changes.
        w.watch("box.schema")
        w.eval("box.space.s:replace{1}")
        assert w.take_events() == []


def test_box_status_follows_read_only(server):
    with Watcher(server) as w:
        w.watch("box.status")
        assert w.next_event()[K_EVENT_DATA]["is_ro"] is False
        w.watch("box.status")
        w.eval("box.cfg{read_only = true}")
        assert w.next_event()[K_EVENT_DATA] == {"is_ro": True, "is_ro_cfg": True, "status": "running"}
        w.eval("box.cfg{read_only = false}")


def test_box_shutdown_is_sent_when_the_server_stops(server):
    with Watcher(server) as w:
        w.watch("box.shutdown")
        assert w.next_event() == event("box.shutdown")
        w.watch("box.shutdown")
        w.sync_point()
        server.stop()
        assert w.next_event() == event("box.shutdown", True)


def test_system_keys_cannot_be_broadcast_from_lua(server):
    with Watcher(server) as w:
        header, body = w.reply(w.send(ip.EVAL, {ip.K_EXPR: "box.broadcast('box.id', 1)", ip.K_TUPLE: []}))
        assert header[ip.K_TYPE] & ip.TYPE_ERROR
        assert "System event can't be override" in body[ip.K_ERROR_24]


# -- box.watch in Lua ---------------------------------------------------------------------------

LUA_WATCH = """
    _G.seen = {}
    _G.gate = require('fiber').channel(1)
    _G.w = box.watch('lk', function(key, value)
        table.insert(_G.seen, {key, value == nil and 'none' or value})
        if value == 'block' then _G.gate:get() end
    end)
    return tostring(_G.w)
"""


def lua_seen(w):
    return w.eval("require('fiber').sleep(0) return _G.seen")[0]


def test_box_watch_runs_the_callback_first_then_on_each_change(server):
    with Watcher(server) as w:
        assert w.eval(LUA_WATCH) == ["box.watcher"]
        assert lua_seen(w) == [["lk", "none"]]
        w.eval("box.broadcast('lk', 1)")
        w.eval("box.broadcast('lk', {a = 2})")
        assert lua_seen(w) == [["lk", "none"], ["lk", 1], ["lk", {"a": 2}]]


def test_box_watch_callback_is_not_reentered_and_coalesces(server):
    with Watcher(server) as w:
        w.eval(LUA_WATCH)
        w.eval("box.broadcast('lk', 'block')")
        assert lua_seen(w)[-1] == ["lk", "block"]
        # The callback is blocked: these coalesce into one later run with the newest value.
        for i in range(3):
            w.eval("box.broadcast('lk', ...)", i)
        assert len(lua_seen(w)) == 2
        w.eval("_G.gate:put(true)")
        assert lua_seen(w) == [["lk", "none"], ["lk", "block"], ["lk", 2]]


def test_box_watch_sees_iproto_side_changes_and_builtin_keys(server):
    with Watcher(server) as w:
        w.eval("""
            _G.versions = {}
            _G.sw = box.watch('box.schema', function(_, v) table.insert(_G.versions, v.version) end)
        """)
        w.eval("box.schema.space.create('t2'):create_index('pk')")
        versions = w.eval("require('fiber').sleep(0) return _G.versions")[0]
        assert len(versions) >= 2 and versions[0] < versions[-1]


def test_box_watch_unregister(server):
    with Watcher(server) as w:
        w.eval(LUA_WATCH)
        assert w.eval("_G.w:unregister() return true") == [True]
        w.eval("box.broadcast('lk', 5)")
        assert lua_seen(w) == [["lk", "none"]]
        header, body = w.reply(w.send(ip.EVAL, {ip.K_EXPR: "_G.w:unregister()", ip.K_TUPLE: []}))
        assert "Watcher is already unregistered" in body[ip.K_ERROR_24]


def test_box_watch_callback_error_does_not_end_the_watcher(server):
    with Watcher(server) as w:
        w.eval("""
            _G.calls = 0
            _G.ew = box.watch('ek', function(_, v)
                _G.calls = _G.calls + 1
                if v == 'fail' then error('callback failed') end
            end)
        """)
        w.eval("box.broadcast('ek', 'fail')")
        w.eval("box.broadcast('ek', 'fine')")
        assert w.eval("require('fiber').sleep(0) return _G.calls") == [3]


def test_box_watch_and_broadcast_usage_errors(server):
    with Watcher(server) as w:
        for expr, text in (("box.watch('k')", "Usage: box.watch(key, function)"),
                           ("box.watch('k', 1)", "function expected"),
                           ("box.broadcast()", "Usage: box.broadcast(key[, value])"),
                           ("box.broadcast({}, 1)", "string expected")):
            header, body = w.reply(w.send(ip.EVAL, {ip.K_EXPR: expr, ip.K_TUPLE: []}))
            assert header[ip.K_TYPE] & ip.TYPE_ERROR, expr
            assert text in body[ip.K_ERROR_24], (expr, body)


# -- the default compat version: Tarantool 2.6 -------------------------------------------------

@pytest.mark.parametrize("kind", ["tarantool", "spindle"])
def test_default_compat_answers_unknown_request_type(kind, server_factory):
    srv = server_factory(kind)()
    with Watcher(srv) as w:
        assert w.c.version == "2.6.0"
        for rtype in (WATCH, UNWATCH, EVENT):
            assert w.error(w.send(rtype, {K_EVENT_KEY: "box.id"})) == (48, f"Unknown request type {rtype}")
            assert w.error(w.send(rtype)) == (48, f"Unknown request type {rtype}")
            assert w.error(w.send(rtype, {K_EVENT_KEY: "k"}, {K_STREAM_ID: 1})) == (
                48, f"Unknown request type {rtype}")
        # A stale schema version does not matter to an unknown type.
        assert w.error(w.send(WATCH, {K_EVENT_KEY: "k"}, {ip.K_SCHEMA_VERSION: 1})) == (
            48, "Unknown request type 74")
        assert w.take_events() == []
