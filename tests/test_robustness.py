"""Robustness of the IPROTO front end: malformed, truncated and random packets.

Loopback only, bounded loops.  Every random choice comes from one seed, printed at the start
and in every failure message (set ROBUSTNESS_SEED to replay a run).

Expectations (those of Tarantool 2.6, which these tests also run against):
* intact framing (a valid uint length prefix and exactly that many bytes) but malformed
  MessagePack inside -> an error reply (never silence, never a crash) and the connection stays
  open: a PING on the same socket is answered;
* broken framing (first byte of the length is not a MessagePack uint) -> error reply
  (ER_INVALID_MSGPACK, 20) and the server closes the connection;
* length prefix above 2 GiB -> error 20 and close;
* unknown request types -> error reply with the error bit set, connection open;
* truncated packets, random garbage, huge array/map/str headers, deep nesting -> the server
  keeps running and answers PING on a new connection after every batch.
"""

import os
import random
import socket
import struct

import pytest

from harness import iproto as ip

TOTAL_RANDOM_PACKETS = 1000
BATCH = 100
PING_SYNC = 987654321
READ_TIMEOUT = 5.0

SEED = int(os.environ["ROBUSTNESS_SEED"])  # chosen (randomly unless given) and printed by conftest.py


@pytest.fixture(scope="module")
def server(module_server_factory, server_kind):
    print(f"\n[robustness] seed={SEED} (replay with ROBUSTNESS_SEED={SEED}) server={server_kind}")
    srv = module_server_factory(server_kind)()
    # A space for the admin-authenticated mutation fuzzing.
    with ip.connect(srv, "admin", srv.password) as c:
        c.call(ip.INSERT, {ip.K_SPACE_ID: 280, ip.K_TUPLE: [600, 1, "fuzz", "memtx", 0, {}, []]})
        c.call(ip.INSERT, {ip.K_SPACE_ID: 288, ip.K_TUPLE: [600, 0, "pk", "tree", {"unique": True}, [[0, "unsigned"]]]})
        c.call(ip.INSERT, {ip.K_SPACE_ID: 600, ip.K_TUPLE: [1, "one", 1.5, [1, 2]]})
    return srv


def ctx(server, what):
    return f"[seed={SEED} server={server.kind}] {what}\nserver log tail:\n{server.log_tail(30)}"


def assert_alive(server, what):
    assert server.is_running(), ctx(server, f"server process died after {what}")
    try:
        with ip.RawConn(server.host, server.port, timeout=READ_TIMEOUT) as c:
            h, _ = c.ping()
    except Exception as e:  # noqa: BLE001 - any failure here is the finding
        pytest.fail(ctx(server, f"PING on a new connection failed after {what}: {e!r}"), pytrace=False)
    assert h.get(ip.K_TYPE) == 0, ctx(server, f"PING after {what} answered {h}")


def read_until_ping_reply(conn, others=1):
    """Read exactly `others` + 1 replies, in any order (replies are matched by SYNC only and a
    write may be answered after a later PING); one must be our PING's.  Returns the others."""
    got, ping = [], None
    for _ in range(others + 1):
        h, b, _ = conn.read_packet()
        if ping is None and isinstance(h, dict) and h.get(ip.K_SYNC) == PING_SYNC and h.get(ip.K_TYPE) == 0:
            ping = h
        else:
            got.append((h, b))
    if ping is None:
        raise AssertionError(f"no PING reply among {others + 1} replies: {got}")
    return got


def expect_error_then_open(server, payload, what, code=None):
    """Send `payload` in intact framing + a PING; expect >= 1 error reply, then the PING reply."""
    with ip.RawConn(server.host, server.port, timeout=READ_TIMEOUT) as c:
        c.send_bytes(ip.frame(payload) + ip.packet({ip.K_TYPE: ip.PING, ip.K_SYNC: PING_SYNC}))
        try:
            replies = read_until_ping_reply(c)
        except (ip.ConnectionClosed, socket.timeout, AssertionError) as e:
            pytest.fail(ctx(server, f"{what}: connection not usable after a malformed packet with intact "
                                    f"framing ({e!r}); payload={payload[:64].hex()}"), pytrace=False)
    assert replies, ctx(server, f"{what}: no reply at all to the malformed packet (expected an error)")
    h, b = replies[0]
    rtype = h.get(ip.K_TYPE, 0) if isinstance(h, dict) else 0
    assert rtype & ip.TYPE_ERROR, ctx(server, f"{what}: expected an error reply, got {h} {b}")
    assert isinstance(b, dict) and isinstance(b.get(ip.K_ERROR_24), str), \
        ctx(server, f"{what}: error reply without an IPROTO_ERROR_24 message: {b}")
    assert ip.K_SCHEMA_VERSION in h, ctx(server, f"{what}: error reply header lacks SCHEMA_VERSION: {h}")
    if code is not None:
        assert rtype & 0x7FFF == code, ctx(server, f"{what}: expected error {code}, got {rtype & 0x7FFF}: {b}")


def expect_error_then_close(server, wire, what):
    with ip.RawConn(server.host, server.port, timeout=READ_TIMEOUT) as c:
        c.send_bytes(wire)
        try:
            h, b, _ = c.read_packet()
        except (ip.ConnectionClosed, socket.timeout) as e:
            pytest.fail(ctx(server, f"{what}: expected an error reply before the close, got {e!r}"), pytrace=False)
        assert h.get(ip.K_TYPE) == ip.TYPE_ERROR | 20, ctx(server, f"{what}: expected error 20, got {h} {b}")
        assert b.get(ip.K_ERROR_24, "").startswith("Invalid MsgPack"), ctx(server, f"{what}: {b}")
        assert c.is_closed(wait=READ_TIMEOUT), ctx(server, f"{what}: connection left open after a framing error")


SEL_HDR = ip.pack({ip.K_TYPE: ip.SELECT, ip.K_SYNC: 5})
SEL_BODY_PREFIX = b"\x84\x10\xcd\x02\x58\x12\x01\x14\x00\x20"  # {SPACE_ID: 600, LIMIT: 1, ITERATOR: 0, KEY: ...


MALFORMED_INTACT = [
    ("never-used byte 0xc1 as body", SEL_HDR + b"\xc1"),
    ("truncated body map", SEL_HDR + b"\x83\x10\xcd\x02"),
    ("body is an array", SEL_HDR + ip.pack([1, 2, 3])),
    ("body is a string", SEL_HDR + ip.pack("hello")),
    ("garbage after body", ip.pack({ip.K_TYPE: ip.PING, ip.K_SYNC: 5}) + b"\x80\x01\x02"),
    ("header is an integer", ip.pack(42)),
    ("header is nil", b"\xc0"),
    ("header truncated", b"\x82\x00"),
    ("header map32 claiming 2^32-1 entries", b"\xdf\xff\xff\xff\xff"),
    ("body map32 claiming 2^32-1 entries", SEL_HDR + b"\xdf\xff\xff\xff\xff"),
    ("KEY array32 claiming 2^32-1 elements", SEL_HDR + SEL_BODY_PREFIX + b"\xdd\xff\xff\xff\xff"),
    ("KEY element str32 claiming 4 GiB", SEL_HDR + SEL_BODY_PREFIX + b"\x91\xdb\xff\xff\xff\xff"),
    ("KEY element bin32 claiming 4 GiB", SEL_HDR + SEL_BODY_PREFIX + b"\x91\xc6\xff\xff\xff\xff"),
    ("TUPLE array32 claiming 2^32-1 elements", ip.pack({ip.K_TYPE: ip.INSERT, ip.K_SYNC: 5})
     + b"\x82\x10\xcd\x02\x58\x21\xdd\xff\xff\xff\xff\x01"),
    ("header nested 1000 deep", b"\x83\x00\x40\x01\x05\x05" + b"\x91" * 1000 + b"\x90"),
    ("SPACE_ID is a string", SEL_HDR + ip.pack({ip.K_SPACE_ID: "x", ip.K_LIMIT: 1, ip.K_KEY: []})),
    ("KEY is a map", SEL_HDR + ip.pack({ip.K_SPACE_ID: 600, ip.K_LIMIT: 1, ip.K_KEY: {1: 2}})),
    ("LIMIT is negative", SEL_HDR + ip.pack({ip.K_SPACE_ID: 600, ip.K_LIMIT: -1, ip.K_KEY: []})),
    ("ext type in header", b"\x82\x00\x01\x01\xd4\x01\x00"),
]


@pytest.mark.parametrize("what,payload", MALFORMED_INTACT, ids=[m[0] for m in MALFORMED_INTACT])
def test_malformed_msgpack_intact_framing_keeps_connection(server, what, payload):
    expect_error_then_open(server, payload, what)
    assert_alive(server, what)


DEEP = 100_000


@pytest.mark.parametrize("what,payload", [
    ("KEY nested 100k arrays deep", SEL_HDR + SEL_BODY_PREFIX + b"\x91" * DEEP + b"\x90"),
    ("KEY nested 100k maps deep", SEL_HDR + SEL_BODY_PREFIX + b"\x91" + b"\x81\x00" * DEEP + b"\x00"),
    ("TUPLE nested 100k arrays deep", ip.pack({ip.K_TYPE: ip.INSERT, ip.K_SYNC: 5})
     + b"\x82\x10\xcd\x02\x58\x21\x92\x07" + b"\x91" * DEEP + b"\x90"),
], ids=["key-arrays", "key-maps", "tuple-arrays"])
def test_deep_nesting_answered(server, what, payload):
    """Valid but absurdly deep MessagePack: any reply is fine (an error, or OK for the insert:
    Tarantool stores it), the server must not overflow its stack and the connection stays open."""
    with ip.RawConn(server.host, server.port, timeout=READ_TIMEOUT) as c:
        c.auth("admin", server.password)
        c.send_bytes(ip.frame(payload) + ip.packet({ip.K_TYPE: ip.PING, ip.K_SYNC: PING_SYNC}))
        try:
            replies = read_until_ping_reply(c)
        except (ip.ConnectionClosed, socket.timeout) as e:
            pytest.fail(ctx(server, f"{what}: no usable connection afterwards: {e!r}"), pytrace=False)
        assert len(replies) == 1, ctx(server, f"{what}: expected exactly one reply, got {replies}")
    assert_alive(server, what)


@pytest.mark.parametrize("op", ["=", "+", "!", "#", ":"])
@pytest.mark.parametrize("depth", [100, 2000, 100_000])
def test_deep_json_path_update_is_answered(server, op, depth):
    """Run against Tarantool too: it must answer every one of these (with data or an error).
    UPDATE/UPSERT with a JSON path thousands of steps deep into an equally deep tuple: the
    update engine recurses per path step on a fixed fiber stack, so spindle must refuse
    absurd depths with an error instead of overflowing (a lost request or a dead fiber)."""
    key = 1000 + depth
    tuple_ = b"\x92" + ip.pack(key) + b"\x91" * depth + b"\x01"
    path = "[2]" + "[1]" * (depth - 1)
    args = [op, path, 0, 0, "x"] if op == ":" else [op, path, 5]
    insert = ip.pack({ip.K_TYPE: ip.REPLACE, ip.K_SYNC: 1}) + b"\x82\x10\xcd\x02\x58\x21" + tuple_
    update = ip.pack({ip.K_TYPE: ip.UPDATE, ip.K_SYNC: 2}) + ip.pack(
        {ip.K_SPACE_ID: 600, ip.K_KEY: [key], ip.K_TUPLE: [args]})
    with ip.RawConn(server.host, server.port, timeout=READ_TIMEOUT) as c:
        c.auth("admin", server.password)
        c.send_bytes(ip.frame(insert) + ip.frame(update)
                     + ip.packet({ip.K_TYPE: ip.PING, ip.K_SYNC: PING_SYNC}))
        try:
            replies = read_until_ping_reply(c, others=2)
        except (ip.ConnectionClosed, socket.timeout) as e:
            pytest.fail(ctx(server, f"depth {depth} '{op}': no reply: {e!r}"), pytrace=False)
        assert len(replies) == 2, ctx(server, f"depth {depth} '{op}': expected 2 replies, got {replies}")
    assert_alive(server, f"a {depth}-deep JSON path update")


@pytest.mark.parametrize("what,wire", [
    ("fixstr prefix", b"\xa1x" + ip.pack({ip.K_TYPE: ip.PING})),
    ("nil prefix", b"\xc0"),
    ("negative fixint prefix", b"\xff" + ip.pack({ip.K_TYPE: ip.PING})),
    ("float64 prefix", b"\xcb" + b"\x00" * 8 + ip.pack({ip.K_TYPE: ip.PING})),
    ("array prefix", b"\x91\x01"),
    ("map prefix", b"\x80"),
    ("negative int8 prefix", b"\xd0\x10" + b"\x00" * 16),
])
def test_broken_framing_error_then_close(server, what, wire):
    expect_error_then_close(server, wire, what)
    assert_alive(server, what)


@pytest.mark.parametrize("what,wire", [
    ("u32 prefix 2^32-1", b"\xce\xff\xff\xff\xff" + b"\x00" * 16),
    ("u32 prefix 2^31+1", b"\xce\x80\x00\x00\x01" + b"\x00" * 16),
])
def test_oversize_length_prefix(server, what, wire):
    expect_error_then_close(server, wire, what)
    assert_alive(server, what)


@pytest.mark.parametrize("what,wire", [
    ("u64 prefix 2^40, then hang up", b"\xcf" + struct.pack(">Q", 2**40) + b"\x00" * 16),
    ("claims 100 MB, sends 10 bytes, hangs up", b"\xce\x06\x00\x00\x00" + b"\x00" * 10),
    ("claims 2 GiB exactly, hangs up", b"\xce\x80\x00\x00\x00" + b"\x00" * 16),
    ("valid PING then half a packet", ip.packet({ip.K_TYPE: ip.PING, ip.K_SYNC: 1}) + b"\xce\x00\x00\x00\x10\x82"),
    ("prefix only", b"\xce\x00\x00"),
])
def test_big_claims_and_hangups(server, what, wire):
    """The server must not allocate what a prefix claims up front nor wait forever on one client."""
    c = ip.RawConn(server.host, server.port, timeout=1.0)
    c.send_bytes(wire)
    try:
        c.read_packet()  # whatever comes back (an error, a PING reply, nothing) is acceptable
    except (ip.ConnectionClosed, socket.timeout, AssertionError):
        pass
    c.close()
    assert_alive(server, what)


UNKNOWN_TYPES = [14, 15, 16, 17, 18, 19, 20, 31, 39, 42, 63, 71, 72, 73, 74, 75, 76, 77, 99, 100, 127, 129,
                 255, 1000, 0x7FFF, 0x8000, 0xFFFF, 2**31, 2**32 - 1]


@pytest.mark.parametrize("rtype", UNKNOWN_TYPES)
def test_unknown_request_types(server, rtype):
    payload = ip.pack({ip.K_TYPE: rtype, ip.K_SYNC: 5}) + ip.pack({})
    expect_error_then_open(server, payload, f"request type {rtype}", code=48)


# -- seeded random packets --------------------------------------------------------------------
VALID_REQUESTS = [
    ({ip.K_TYPE: ip.PING, ip.K_SYNC: 3}, None),
    ({ip.K_TYPE: ip.SELECT, ip.K_SYNC: 3}, {ip.K_SPACE_ID: 600, ip.K_INDEX_ID: 0, ip.K_LIMIT: 10,
                                            ip.K_OFFSET: 0, ip.K_ITERATOR: 2, ip.K_KEY: []}),
    ({ip.K_TYPE: ip.INSERT, ip.K_SYNC: 3}, {ip.K_SPACE_ID: 600, ip.K_TUPLE: [7, "seven", {"a": [1, 2.5]}]}),
    ({ip.K_TYPE: ip.REPLACE, ip.K_SYNC: 3}, {ip.K_SPACE_ID: 600, ip.K_TUPLE: [8, b"\x00\x01", None, True]}),
    ({ip.K_TYPE: ip.UPDATE, ip.K_SYNC: 3}, {ip.K_SPACE_ID: 600, ip.K_INDEX_ID: 0, ip.K_KEY: [1],
                                            ip.K_TUPLE: [["=", 1, "uno"], [":", 1, 0, 1, "U"], ["+", 2, 1]]}),
    ({ip.K_TYPE: ip.UPSERT, ip.K_SYNC: 3}, {ip.K_SPACE_ID: 600, ip.K_TUPLE: [9, 0], ip.K_OPS: [["+", 1, 1]]}),
    ({ip.K_TYPE: ip.DELETE, ip.K_SYNC: 3}, {ip.K_SPACE_ID: 600, ip.K_KEY: [7]}),
    ({ip.K_TYPE: ip.SELECT, ip.K_SYNC: 3, ip.K_SCHEMA_VERSION: 1}, {ip.K_SPACE_ID: 281, ip.K_LIMIT: 5, ip.K_KEY: []}),
]


def _mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if choice < 0.4 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif choice < 0.6:
            data.insert(rng.randrange(len(data) + 1), rng.choice([0xc1, 0xdd, 0xdf, 0xdb, 0xc6, 0xff, 0x00, 0x91]))
        elif choice < 0.8 and len(data) > 1:
            del data[rng.randrange(len(data))]
        else:
            cut = rng.randrange(1, len(data) + 1)
            data = data[:cut]
    return bytes(data) or b"\xc1"


def _random_msgpack(rng, depth=0):
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return rng.randrange(-2**63, 2**64)
    if kind == 1:
        return rng.random() * rng.choice([1, -1e300, 1e-300])
    if kind == 2:
        return "".join(chr(rng.randrange(32, 0x250)) for _ in range(rng.randrange(40)))
    if kind == 3:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
    if kind == 4:
        return rng.choice([None, True, False])
    if kind == 5:
        return rng.randrange(0, 0x60)
    if kind == 6:
        return [_random_msgpack(rng, depth + 1) for _ in range(rng.randrange(5))]
    return {rng.randrange(0, 0x60): _random_msgpack(rng, depth + 1) for _ in range(rng.randrange(5))}


def make_random_packet(rng):
    """Returns (kind, wire bytes, framing_intact, as_admin)."""
    r = rng.random()
    if r < 0.35:   # a valid request, mutated, re-framed correctly
        header, body = rng.choice(VALID_REQUESTS)
        payload = ip.pack(header) + (ip.pack(body) if body is not None else b"")
        return "mutated", ip.frame(_mutate(rng, payload)), True, rng.random() < 0.5
    if r < 0.55:   # random msgpack header/body with plausible keys, framed
        header = {ip.K_TYPE: rng.choice([rng.randrange(0, 80), rng.randrange(2**32)]), ip.K_SYNC: rng.randrange(2**32)}
        for _ in range(rng.randrange(3)):
            header[rng.randrange(0, 0x60)] = _random_msgpack(rng, 2)
        body = {rng.randrange(0, 0x60): _random_msgpack(rng) for _ in range(rng.randrange(6))}
        header.pop(ip.K_TYPE) if rng.random() < 0.05 else None
        if isinstance(header.get(ip.K_TYPE), int) and header[ip.K_TYPE] & 0xFF in REPLICATION_TYPES:
            header[ip.K_TYPE] = 100  # replication requests end the connection by design
        return "random-msgpack", ip.frame(ip.pack(header) + ip.pack(body)), True, False
    if r < 0.75:   # random bytes inside intact framing
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        return "random-bytes-framed", ip.frame(payload), True, False
    if r < 0.9:    # a valid packet cut short (the rest never arrives)
        header, body = rng.choice(VALID_REQUESTS)
        wire = ip.packet(header, body)
        return "truncated", wire[:rng.randrange(1, len(wire))], False, rng.random() < 0.5
    # raw garbage with no framing at all
    return "raw-garbage", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))), False, False


# JOIN, SUBSCRIBE, FETCH_SNAPSHOT, REGISTER switch the connection to replication (as admin a
# snapshot stream starts; on failure the connection is closed), so they are never sent here.
# Tarantool 2.6 looks only at the low byte of REQUEST_TYPE (0x10040 is a PING there), hence the mask.
REPLICATION_TYPES = {65, 66, 69, 70}


def is_replication_request(wire):
    try:
        u = ip._unpacker()
        u.feed(wire)
        u.unpack()          # length prefix
        header = u.unpack()
        t = header.get(ip.K_TYPE) if isinstance(header, dict) else None
        return isinstance(t, int) and (t in REPLICATION_TYPES or (t & 0xFF) in REPLICATION_TYPES)
    except Exception:
        return False


def test_random_packets(server):
    rng = random.Random(SEED)
    counts = {}
    for batch_start in range(0, TOTAL_RANDOM_PACKETS, BATCH):
        for i in range(batch_start, batch_start + BATCH):
            kind, wire, intact, as_admin = make_random_packet(rng)
            while is_replication_request(wire):  # e.g. a mutation that turned a request into JOIN
                kind, wire, intact, as_admin = make_random_packet(rng)
            counts[kind] = counts.get(kind, 0) + 1
            what = f"random packet #{i} ({kind}, admin={as_admin}): {wire[:80].hex()}"
            c = ip.RawConn(server.host, server.port, timeout=READ_TIMEOUT)
            try:
                if as_admin:
                    c.auth("admin", server.password)
                if intact:
                    # Framing is intact: whatever the payload, the server must answer and keep
                    # the connection; a PING behind it on the same socket is answered.
                    c.send_bytes(wire + ip.packet({ip.K_TYPE: ip.PING, ip.K_SYNC: PING_SYNC}))
                    try:
                        read_until_ping_reply(c)
                    except (ip.ConnectionClosed, socket.timeout, AssertionError) as e:
                        pytest.fail(ctx(server, f"{what}: connection unusable afterwards: {e!r}"), pytrace=False)
                else:
                    c.send_bytes(wire)
                    if rng.random() < 0.3:   # sometimes wait for whatever comes back, briefly
                        c.sock.settimeout(0.05)
                        try:
                            c.read_packet()
                        except (ip.ConnectionClosed, socket.timeout, AssertionError, OSError):
                            pass
            except ip.ConnectionClosed as e:
                if intact:
                    pytest.fail(ctx(server, f"{what}: connection closed: {e!r}"), pytrace=False)
            finally:
                c.close()
        assert_alive(server, f"batch ending at random packet #{batch_start + BATCH - 1} (kinds so far {counts})")
    print(f"[robustness] seed={SEED}: sent {TOTAL_RANDOM_PACKETS} random packets: {counts}")
    assert sum(counts.values()) == TOTAL_RANDOM_PACKETS


def test_many_connections_opened_and_dropped(server):
    """Connections that vanish mid-greeting, mid-auth and mid-request (bounded: 200)."""
    rng = random.Random(SEED + 1)
    for i in range(200):
        s = socket.create_connection((server.host, server.port), timeout=READ_TIMEOUT)
        try:
            stage = rng.randrange(3)
            if stage >= 1:
                s.recv(128)
            if stage >= 2:
                s.sendall(ip.packet({ip.K_TYPE: ip.AUTH, ip.K_SYNC: 1},
                                    {ip.K_USER_NAME: "admin", ip.K_TUPLE: ["chap-sha1", b"\x00" * 20]})[:rng.randrange(1, 20)])
        finally:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)) if rng.random() < 0.5 else None
            s.close()
    assert_alive(server, "200 abandoned connections")


@pytest.mark.spindle_only
def test_index_without_parts_is_refused(spindle_server):
    """Not differential: Tarantool 2.6.0 sometimes crashes on this row (see diff_ops.py). Its
    answer when it survives, and ours: ER_MODIFY_INDEX, part count must be positive."""
    srv = spindle_server()
    with ip.connect(srv, "admin", srv.password) as c:
        c.call(ip.INSERT, {ip.K_SPACE_ID: 280, ip.K_TUPLE: [610, 1, "noparts", "memtx", 0, {}, []]})
        h, b = c.request(ip.INSERT, {ip.K_SPACE_ID: 288,
                                     ip.K_TUPLE: [610, 0, "primary", "tree", {"unique": True}, []]})
    assert h[ip.K_TYPE] == ip.TYPE_ERROR | 14, (h, b)
    assert b[ip.K_ERROR_24] == ("Can't create or modify index 'primary' in space 'noparts': "
                                "part count must be positive")
