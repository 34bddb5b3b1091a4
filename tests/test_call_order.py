"""Procedures run in arrival order with the requests around them.

A CALL runs in a fiber of its own (it may yield), but one that does not yield runs to its end
between the requests that came before and after it, as in Tarantool: pipelined
REPLACE, CALL get, REPLACE, CALL get on one connection must see the first value, then the
second. Also across connections: a CALL pipelined behind another connection's writes sees
them. Run against Tarantool 2.6 and spindle alike.
"""

import pytest

from harness import iproto as ip

SPACE = 700
ROUNDS = 50


@pytest.fixture(scope="module")
def server(module_server_factory, server_kind):
    srv = module_server_factory(server_kind)()
    with ip.connect(srv, "admin", srv.password) as c:
        c.call(ip.INSERT, {ip.K_SPACE_ID: 280, ip.K_TUPLE: [SPACE, 1, "ordered", "memtx", 0, {}, []]})
        c.call(ip.INSERT, {ip.K_SPACE_ID: 288, ip.K_TUPLE: [SPACE, 0, "pk", "tree", {"unique": True},
                                                            [[0, "unsigned"]]]})
    return srv


def replace(sync, key, value):
    return ip.packet({ip.K_TYPE: ip.REPLACE, ip.K_SYNC: sync},
                     {ip.K_SPACE_ID: SPACE, ip.K_TUPLE: [key, value]})


def call_get(sync, key):
    return ip.packet({ip.K_TYPE: ip.CALL, ip.K_SYNC: sync},
                     {ip.K_FUNCTION_NAME: "box.space.ordered:get", ip.K_TUPLE: [key]})


def replies_by_sync(conn, count):
    out = {}
    for _ in range(count):
        h, b, _ = conn.read_packet()
        assert h.get(ip.K_TYPE) == ip.OK, (h, b)
        out[h[ip.K_SYNC]] = b.get(ip.K_DATA)
    return out


def test_pipelined_calls_see_the_writes_before_them_and_not_after(server):
    with ip.connect(server, "admin", server.password) as c:
        for r in range(ROUNDS):
            key, base = r, 10 * r
            c.send_bytes(replace(1, key, base + 1) + call_get(2, key)
                         + replace(3, key, base + 2) + call_get(4, key))
            got = replies_by_sync(c, 4)
            assert got[2] == [[key, base + 1]], f"round {r}: the first CALL saw {got[2]}"
            assert got[4] == [[key, base + 2]], f"round {r}: the second CALL saw {got[4]}"


def test_a_call_behind_another_connections_write_sees_it(server):
    with ip.connect(server, "admin", server.password) as writer, \
            ip.connect(server, "admin", server.password) as reader:
        for r in range(ROUNDS):
            key = 1000 + r
            writer.send_bytes(replace(1, key, r))
            assert replies_by_sync(writer, 1)[1] == [[key, r]]
            reader.send_bytes(call_get(2, key) + call_get(3, key + 1))
            got = replies_by_sync(reader, 2)
            assert got[2] == [[key, r]] and got[3] == [], got
