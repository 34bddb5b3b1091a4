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


def eval_packet(sync, expr):
    return ip.packet({ip.K_TYPE: ip.EVAL, ip.K_SYNC: sync}, {ip.K_EXPR: expr, ip.K_TUPLE: []})


def test_pipelined_procedures_run_in_order_each_seeing_the_ones_before(server):
    """EVALs and CALLs in one pipeline: each sees what the ones before it did, including a
    change of the session's user (`box.session.su` without a function)."""
    with ip.connect(server, "admin", server.password) as c:
        c.call(ip.EVAL, {ip.K_EXPR: "box.schema.user.create('ordered_u', {if_not_exists = true}) "
                                    "box.schema.user.grant('ordered_u', 'execute', 'universe', "
                                    "nil, {if_not_exists = true}) counter = 0", ip.K_TUPLE: []})
        exprs = ["counter = counter + 1 return counter"] * 5 + [
            "box.session.su('ordered_u') return box.session.user()",
            "return box.session.user(), counter",
            "counter = counter + 1 return counter",
        ]
        c.send_bytes(b"".join(eval_packet(i + 1, e) for i, e in enumerate(exprs)))
        got = {}
        for _ in exprs:
            h, b, _ = c.read_packet()
            got[h[ip.K_SYNC]] = (h.get(ip.K_TYPE), b.get(ip.K_DATA) or b.get(ip.K_ERROR_24))
        assert [got[i + 1][1] for i in range(5)] == [[1], [2], [3], [4], [5]]
        assert got[6] == (ip.OK, ["ordered_u"])
        assert got[7] == (ip.OK, ["ordered_u", 5])
        assert got[8] == (ip.OK, [6])
