"""Lua transactions on the MVCC engine (issue 16): `box.begin()` in fibers that yield, and
CALL/EVAL inside a stream's MVCC transaction, with `--memtx-use-mvcc-engine`.

Two fibers take turns through channels (`A` and `B` below), so every interleaving is the one
written; each turn is a yield inside an open transaction. The expected outcomes are 2.11's,
from the scenario table of the shared docs (transactions-and-http.md §A3), the same as
test_mvcc.py's stream versions of them.
"""

import asyncio

import pytest

from test_mvcc import CONFLICT, MVCC_ARGS, run
from test_streams import connect, expect_error, open_stream, rows

# Runs the bodies `a` and `b` in two fibers. `turn_b()` (in A) hands over to B and waits
# for its turn to come back; `turn_a()` (in B) the other way. B starts at its first turn.
# `r` collects what they saw; `err(f)` is the error code of calling f, 0 if it succeeded.
TWO_FIBERS = """
local fiber = require('fiber')
local s = box.space.s
local to_a, to_b, done = fiber.channel(1), fiber.channel(1), fiber.channel(2)
local r = {}
local function turn_b() to_b:put(true) to_a:get() end
local function turn_a() to_a:put(true) to_b:get() end
local function err(f, ...)
    local ok, e = pcall(f, ...)
    if ok then return 0 end
    return e.code
end
local function rows(ts)
    local out = {}
    for i, t in ipairs(ts) do out[i] = t:totable() end
    return out
end
local function a() %s end
local function b() %s end
fiber.create(function() a() done:put(true) end)
fiber.create(function() to_b:get() b() done:put(true) end)
done:get() done:get()
return r
"""


@pytest.fixture
def server(spindle_server):
    srv = spindle_server(extra_args=MVCC_ARGS)
    run(evaluate(srv, "box.schema.space.create('s'):create_index('pk')"))
    return srv


async def evaluate(server, code, *args):
    conn = await connect(server)
    try:
        return (await conn.eval(code, args)).body
    finally:
        await conn.disconnect()


def two_fibers(server, a, b):
    return run(evaluate(server, TWO_FIBERS % (a, b)))[0]


def select_all(server):
    return run(evaluate(server, "return box.space.s:select()"))[0]


def test_scenario_1_read_then_replace_the_later_committer_conflicts(server):
    r = two_fibers(server, """
        box.begin()
        r.a_read = rows(s:select{1})
        s:replace{1, 1}
        turn_b()
        r.a_commit = err(box.commit)
        turn_b()
    """, """
        box.begin()
        r.b_read = rows(s:select{1})
        s:replace{1, 2}
        turn_a()
        r.b_commit = err(box.commit)
        r.b_in_txn = box.is_in_txn()
        to_a:put(true)
    """)
    assert r["a_read"] == [] and r["b_read"] == []
    assert (r["a_commit"], r["b_commit"]) == (0, CONFLICT[0])
    assert r["b_in_txn"] is False
    assert select_all(server) == [[1, 1]]


def test_scenario_4_a_reader_keeps_its_read_view(server):
    run(evaluate(server, "for k = 1, 3 do box.space.s:replace{k, k} end"))
    r = two_fibers(server, """
        box.begin()
        r.before = rows(s:select{})
        turn_b()
        r.after = rows(s:select{})
        r.a_commit = err(box.commit)
    """, """
        box.begin()
        s:replace{1, 11}
        s:replace{2, 12}
        r.b_commit = err(box.commit)
        to_a:put(true)
    """)
    assert r["before"] == r["after"] == [[1, 1], [2, 2], [3, 3]]
    assert (r["a_commit"], r["b_commit"]) == (0, 0)
    assert select_all(server) == [[1, 11], [2, 12], [3, 3]]


def test_scenario_6_write_skew_over_a_gap_is_prevented(server):
    r = two_fibers(server, """
        box.begin()
        r.a_read = rows(s:select{})
        turn_b()
        s:replace{1, 1}
        turn_b()
        r.a_commit = err(box.commit)
        turn_b()
    """, """
        box.begin()
        r.b_read = rows(s:select{})
        turn_a()
        s:replace{2, 2}
        turn_a()
        r.b_commit = err(box.commit)
        to_a:put(true)
    """)
    assert r["a_read"] == [] and r["b_read"] == []
    assert (r["a_commit"], r["b_commit"]) == (0, CONFLICT[0])
    assert select_all(server) == [[1, 1]]


def test_a_conflict_is_reported_at_the_next_statement_too(server):
    run(evaluate(server, "box.space.s:replace{1, 0}"))
    r = two_fibers(server, """
        box.begin()
        s:update({1}, {{'+', 2, 1}})
        turn_b()
        r.next = err(s.select, s, {})
        r.commit = err(box.commit)
    """, """
        box.begin()
        s:update({1}, {{'+', 2, 10}})
        r.b_commit = err(box.commit)
        to_a:put(true)
    """)
    assert (r["b_commit"], r["next"], r["commit"]) == (0, CONFLICT[0], CONFLICT[0])
    assert select_all(server) == [[1, 10]]


def test_writes_spanning_a_sleep_stay_private_until_commit(server):
    async def main():
        conn = await connect(server)
        opened = await conn.eval("""
            local fiber = require('fiber')
            local s = box.space.s
            go, finished = fiber.channel(1), fiber.channel(1)
            local ready = fiber.channel(1)
            fiber.create(function()
                box.begin()
                s:insert{5, 'x'}
                s:replace{6, 'y'}
                fiber.sleep(0.01)
                ready:put({s:get{5} ~= nil, s:count(), s:len(), box.is_in_txn()})
                go:get()
                box.commit()
                finished:put(true)
            end)
            local seen = ready:get()
            return seen, s:get{5} == nil, s:len()
        """)
        # Inside: its own writes; outside, in the same process and over the network: none.
        assert opened.body == [[True, 2, 2, True], True, 0]
        assert rows(await conn.select("s")) == []
        await conn.eval("go:put(true) finished:get()")
        assert rows(await conn.select("s")) == [[5, "x"], [6, "y"]]
        await conn.disconnect()

    run(main())


def test_a_fiber_that_ends_in_a_transaction_rolls_it_back(server):
    result = run(evaluate(server, """
        local fiber = require('fiber')
        local s = box.space.s
        local f = fiber.new(function() box.begin() s:replace{7} fiber.sleep(0) end)
        f:set_joinable(true)
        f:join()
        box.begin()
        s:replace{7, 'again'}
        box.commit()
        return s:select{}
    """))
    assert result == [[[7, "again"]]]
    assert "ended with a transaction open: rolled back" in server.log_text()


def test_box_atomic_and_savepoints_span_yields(server):
    result = run(evaluate(server, """
        local fiber = require('fiber')
        local s = box.space.s
        box.atomic(function() s:replace{1} fiber.sleep(0) s:replace{2} end)
        box.begin({txn_isolation = 'read-committed'})
        s:replace{3}
        local sp = box.savepoint()
        s:replace{4}
        fiber.sleep(0)
        box.rollback_to_savepoint(sp)
        local inside = s:select{}
        box.commit()
        local ok = pcall(box.atomic, function() s:replace{5} error('no') end)
        return inside, s:select{}, ok, box.is_in_txn()
    """))
    assert result == [[[1], [2], [3]], [[1], [2], [3]], False, False]


def test_a_bad_txn_isolation_is_refused(server):
    async def main():
        conn = await connect(server)
        await expect_error(conn.eval("box.begin{txn_isolation = 'linearizable'}"), 1)
        await expect_error(conn.eval("box.begin{txn_isolation = 'nonsense'}"), 1)
        assert (await conn.eval("return box.is_in_txn()")).body == [False]
        await conn.disconnect()

    run(main())


def test_call_and_eval_run_in_the_stream_transaction(server):
    async def main():
        a, c = await connect(server), await connect(server)
        await c.eval("function put(k) box.space.s:replace{k} return box.is_in_txn() end")
        sa = open_stream(a)
        await sa.begin()
        assert (await sa.eval("box.space.s:replace{1} return box.is_in_txn()")).body == [True]
        assert (await sa.call("put", [2])).body == [True]
        # Private to the transaction: the stream sees them, nobody else does.
        assert rows(await sa.select("s")) == [[1], [2]]
        assert (await sa.eval("return box.space.s:count()")).body == [2]
        assert rows(await c.select("s")) == []
        await sa.commit()
        assert rows(await c.select("s")) == [[1], [2]]

        await sa.begin()
        await sa.call("put", [3])
        await sa.replace("s", [4])
        assert (await sa.eval("return box.space.s:len()")).body == [4]
        await sa.rollback()
        assert rows(await c.select("s")) == [[1], [2]]
        for conn in (a, c):
            await conn.disconnect()

    run(main())


def test_a_procedure_may_commit_or_begin_the_stream_transaction(server):
    async def main():
        a, c = await connect(server), await connect(server)
        sa = open_stream(a)
        await sa.begin()
        await sa.eval("box.space.s:replace{1} box.commit()")
        assert rows(await c.select("s")) == [[1]]
        await sa.commit()  # the stream has none left: OK
        await sa.eval("box.begin() box.space.s:replace{2}")
        assert rows(await c.select("s")) == [[1]]
        assert rows(await sa.select("s")) == [[1], [2]]
        await sa.commit()
        assert rows(await c.select("s")) == [[1], [2]]
        for conn in (a, c):
            await conn.disconnect()

    run(main())


def test_a_conflict_inside_a_procedure_ends_the_stream_transaction(server):
    async def main():
        a, b, c = await connect(server), await connect(server), await connect(server)
        sa, sb = open_stream(a), open_stream(b)
        await sa.begin()
        await sb.begin()
        assert (await sa.eval("return box.space.s:select{1}")).body == [[]]
        await sa.replace("s", [2, "a"])
        await sb.replace("s", [1, "b"])
        await sb.commit()
        await expect_error(sa.eval("box.space.s:replace{3}"), *CONFLICT)
        await expect_error(sa.commit(), *CONFLICT)
        assert rows(await c.select("s")) == [[1, "b"]]
        for conn in (a, b, c):
            await conn.disconnect()

    run(main())


def test_mvcc_off_a_yield_still_aborts_with_154(spindle_server):
    srv = spindle_server()
    run(evaluate(srv, "box.schema.space.create('s'):create_index('pk')"))
    result = run(evaluate(srv, """
        local fiber = require('fiber')
        box.begin()
        box.space.s:replace{1}
        fiber.sleep(0)
        local ok, e = pcall(box.commit)
        return ok, e.code, box.space.s:select{}
    """))
    assert result == [False, 154, []]


def test_a_timeout_rolls_the_transaction_back(server):
    result = run(evaluate(server, """
        local fiber = require('fiber')
        local s = box.space.s
        local function code(f, ...)
            local ok, e = pcall(f, ...)
            return ok and 0 or e.code
        end
        local bad = code(box.begin, {timeout = -1})
        box.begin({timeout = 0.01})
        s:replace{1}
        fiber.sleep(0.05)
        local statement = code(s.replace, s, {2})
        local commit = code(box.commit)
        return bad, statement, commit, box.is_in_txn(), s:select{}
    """))
    assert result == [1, 231, 231, False, []]
