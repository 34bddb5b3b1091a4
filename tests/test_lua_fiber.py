"""Lua's `fiber` module over EVAL, against Tarantool 2.6 and spindle side by side.

Differential cases (same reply from both servers, MessagePack types included, or the same
error): the order in which `fiber.create` and `fiber.new` fibers run, fiber identity inside a
request (`main`), join results, cancelling a sleeping fiber, wake-ups, channel ping-pong (with
and without a buffer), channel timeouts and closing, condition signal and broadcast, sleeping
inside `pcall`, yielding inside a `table.sort` comparator, fiber storage, and a fiber writing
a space (created through the system spaces) while another reads what it wrote.

spindle only: a thousand short fibers leave no fiber behind (counted with `fiber.info()`),
fibers that fail leave the server serving, cancelled waiters end, the bound on live Lua
fibers is an error, not a crash, and a fiber acts for the user who made it.
"""

import pytest

from harness import iproto as ip

SPACE = 741

SETUP = [
    (ip.INSERT, {ip.K_SPACE_ID: 280, ip.K_TUPLE: [SPACE, 1, "fibtest", "memtx", 0, {}, []]}),
    (ip.INSERT, {ip.K_SPACE_ID: 288, ip.K_TUPLE: [SPACE, 0, "pk", "tree", {"unique": True},
                                                   [[0, "unsigned"]]]}),
]

F = "local fiber = require('fiber') "

CASES = [
    # create runs at once and hands back at its first yield; new runs at the creator's yield
    F + "local log = {} "
        "local f1 = fiber.new(function() table.insert(log, 'new') end) "
        "local f2 = fiber.create(function() table.insert(log, 'create') end) "
        "table.insert(log, 'main') local s1, s2 = f1:status(), f2:status() "
        "fiber.yield() return log, s1, s2, f1:status()",
    F + "local log = {} "
        "local f = fiber.create(function() table.insert(log, 'start') fiber.sleep(0) "
        "table.insert(log, 'end') end) "
        "table.insert(log, 'main ' .. f:status()) fiber.sleep(0.01) "
        "table.insert(log, f:status()) return log",
    F + "local log = {} "
        "for i = 1, 3 do fiber.new(function() table.insert(log, 'new' .. i) end) end "
        "table.insert(log, 'main') fiber.sleep(0.01) return log",
    F + "local log = {} "
        "fiber.create(function() fiber.new(function() table.insert(log, 'grandchild') end) "
        "table.insert(log, 'child') end) "
        "table.insert(log, 'main') fiber.yield() return log",
    # the request's own fiber
    F + "return fiber.name(), fiber.status(), type(fiber.self()), "
        "tostring(fiber.self()) == 'fiber: ' .. fiber.id(), fiber.self() == fiber.self(), "
        "fiber.find(fiber.id()) == fiber.self(), fiber.self():id() == fiber.id(), "
        "fiber.self():status()",
    F + "local f = fiber.new(function() end) local id = f:id() "
        "return f:status(), f:name(), fiber.find(id) == f, fiber.status(f), "
        "tostring(f) == 'fiber: ' .. id",
    F + "local f = fiber.new(function() end) f:name('worker') local n = f:name() "
        "fiber.yield() return n, f:status(), fiber.status(f), fiber.find(f:id()), "
        "pcall(f.name, f)",
    F + "return pcall(fiber.kill, 99999999)",
    F + "return pcall(fiber.cancel, 99999999)",
    F + "local f = fiber.create(function() end) "
        "return pcall(f.cancel, f), pcall(f.wakeup, f), pcall(f.set_joinable, f, true), "
        "pcall(f.join, f)",
    # join
    F + "local f = fiber.new(function(a, b) return a + b, 'x', nil end, 2, 3) "
        "f:set_joinable(true) return f:join()",
    F + "local f = fiber.new(function() error('boom') end) f:set_joinable(true) "
        "local ok, e = f:join() return ok, tostring(e), f:status()",
    F + "local f = fiber.create(function() fiber.sleep(0.01) return 'slept' end) "
        "f:set_joinable(true) return f:join()",
    F + "local f = fiber.new(function() end) return pcall(f.join, f)",
    # cancel and wake-up
    F + "local f = fiber.new(function() fiber.sleep(100) end) f:set_joinable(true) "
        "fiber.yield() local s = f:status() f:cancel() local s2 = f:status() "
        "local ok, e = f:join() return s, s2, ok, tostring(e), e.type, f:status()",
    F + "local f = fiber.create(function() fiber.sleep(100) end) fiber.kill(f:id()) "
        "fiber.yield() return f:status(), fiber.find(f:id())",
    F + "local f = fiber.new(function() fiber.self():cancel() fiber.testcancel() "
        "return 'not here' end) f:set_joinable(true) local ok, e = f:join() "
        "return ok, tostring(e)",
    F + "local log = {} local f = fiber.create(function() fiber.sleep(100) "
        "table.insert(log, 'woke') end) f:wakeup() local s = f:status() fiber.yield() "
        "return s, log, f:status()",
    F + "return pcall(fiber.testcancel)",
    F + "local log = {} local f = fiber.new(function() table.insert(log, 'ran') "
        "fiber.sleep(0) table.insert(log, 'not here') end) f:set_joinable(true) f:cancel() "
        "local ok, e = f:join() return log, ok, tostring(e), f:status()",
    F + "local c = fiber.channel() local r = {} local f = fiber.create(function() "
        "r.v = c:get() end) f:wakeup() fiber.yield() local s = f:status() c:put('late') "
        "fiber.yield() return s, r.v, f:status()",
    F + "local c = fiber.cond() local r = {} local f = fiber.create(function() "
        "r.w = c:wait() end) f:wakeup() fiber.yield() return r.w, f:status()",
    F + "local f = fiber.create(function() fiber.self():name('renamed') "
        "fiber.sleep(0.001) end) return f:name(), fiber.name('req'), fiber.name()",
    F + "sleeper = fiber.create(function() fiber.sleep(1000) end) return sleeper:status()",
    F + "local f = fiber.find(sleeper:id()) local s = f:status() f:cancel() fiber.yield() "
        "return s, f == sleeper, sleeper:status(), fiber.find(sleeper:id())",
    # channels
    F + "local ch = fiber.channel() local out = {} "
        "fiber.create(function() for i = 1, 3 do ch:put(i) end ch:put('end') end) "
        "while true do local v = ch:get() table.insert(out, v) if v == 'end' then break end end "
        "return out",
    F + "local a, b = fiber.channel(1), fiber.channel(1) local log = {} "
        "fiber.create(function() for i = 1, 3 do local v = a:get() "
        "table.insert(log, 'pong' .. v) b:put(v * 10) end end) "
        "for i = 1, 3 do a:put(i) table.insert(log, 'got' .. b:get()) end return log",
    F + "local a, b = fiber.channel(), fiber.channel() local log = {} "
        "fiber.create(function() while true do local v = a:get() if v == nil then break end "
        "table.insert(log, 'ping' .. v) b:put(v + 1) end table.insert(log, 'closed') end) "
        "local v = 0 for i = 1, 3 do a:put(v) v = b:get() table.insert(log, 'pong' .. v) end "
        "a:close() fiber.yield() return log",
    F + "local c = fiber.channel(2) "
        "return c:put(1), c:put(2), c:put(3, 0), c:count(), c:size(), c:is_full(), "
        "c:is_empty(), c:get(), c:get(), c:get(0), c:is_empty(), c:has_readers(), "
        "c:has_writers()",
    F + "local c = fiber.channel(1) c:put('x') c:close() "
        "return c:put(1), c:get(), c:is_closed(), c:get(0)",
    F + "local c = fiber.channel(1) local r = {} "
        "fiber.create(function() r.got = c:get() end) local hr = c:has_readers() "
        "c:put('v') fiber.yield() return hr, r.got, c:has_readers()",
    F + "local c = fiber.channel(0) local r = {} "
        "fiber.create(function() r.put = c:put('z', 1) end) local hw = c:has_writers() "
        "local v = c:get() fiber.yield() return hw, v, r.put",
    F + "local c = fiber.channel(1) local log = {} "
        "fiber.create(function() table.insert(log, tostring(c:get())) end) "
        "c:close() fiber.yield() return log",
    F + "return pcall(fiber.channel, -1)",
    # conditions
    F + "local c = fiber.cond() local log = {} "
        "for i = 1, 3 do fiber.create(function() table.insert(log, 'wait' .. i) "
        "local r = c:wait() table.insert(log, 'woke' .. i .. tostring(r)) end) end "
        "c:signal() fiber.yield() table.insert(log, 'after signal') c:broadcast() "
        "fiber.yield() return log, c:wait(0.001)",
    F + "local c = fiber.cond() local r = {} "
        "fiber.create(function() r.w = c:wait(10) end) c:signal() fiber.sleep(0) return r.w",
    # yields inside pcall and C callbacks
    F + "return pcall(fiber.sleep, 0.001)",
    F + "local ok, e = pcall(function() fiber.sleep(0) error('after sleep') end) "
        "return ok, e",
    F + "local t = {} for i = 1, 20 do t[i] = (i * 7) % 20 end "
        "table.sort(t, function(a, b) fiber.yield() return a < b end) return t",
    F + "local t = {} for i = 1, 20 do t[i] = (i * 13) % 20 end "
        "table.sort(t, function(a, b) fiber.sleep(0) return a > b end) return t",
    F + "local co = coroutine.wrap(function(x) fiber.sleep(0) coroutine.yield(x + 1) "
        "return 'done' end) return co(1), co()",
    # storage, info, time
    F + "fiber.self().storage.x = 5 local other "
        "local f = fiber.new(function() fiber.self().storage.x = 7 other = fiber.self().storage.x end) "
        "f:set_joinable(true) f:join() return fiber.self().storage.x, other",
    F + "local i = fiber.info()[fiber.id()] "
        "return type(i), i.fid == fiber.id(), i.name, type(i.csw), type(i.memory)",
    F + "return type(fiber.time()), type(fiber.time64()), type(fiber.clock()), "
        "type(fiber.clock64()), fiber.time() > 1e9, fiber.time64() > 1000000000000000ULL",
    F + "local c1 = fiber.clock() fiber.sleep(0.01) return fiber.clock() - c1 >= 0.005",
    # DML in one fiber while another reads what it wrote
    F + "local s = box.space.fibtest local ch = fiber.channel() local seen = {} "
        "local w = fiber.new(function() for i = 1, 5 do s:replace{i, i * i} ch:put(i) end "
        "ch:put(nil) end) "
        "local r = fiber.new(function() while true do local i = ch:get() "
        "if i == nil then break end table.insert(seen, s:get(i)[2]) end end) "
        "w:set_joinable(true) r:set_joinable(true) w:join() r:join() "
        "return seen, s:count()",
    F + "local s = box.space.fibtest local log = {} "
        "local f = fiber.create(function() s:replace{10, 'from fiber'} "
        "table.insert(log, 'written') end) "
        "f:set_joinable(true) f:join() return log, s:get(10)",
]


def reply(conn, expr):
    h, b = conn.request(ip.EVAL, {ip.K_EXPR: expr, ip.K_TUPLE: []})
    code = h.get(ip.K_TYPE, 0)
    if code & ip.TYPE_ERROR:
        return ("error", code & 0x7FFF, (b or {}).get(ip.K_ERROR_24))
    return ("ok", (b or {}).get(ip.K_DATA))


def admin(server):
    return ip.connect(server, "admin", server.password, timeout=20)


@pytest.fixture(scope="module")
def outcomes(module_server_factory):
    """Every case's reply from each server, in case order."""
    results = {}
    for kind in ("tarantool", "spindle"):
        srv = module_server_factory(kind)()
        with admin(srv) as conn:
            for rtype, body in SETUP:
                conn.request(rtype, body)
            results[kind] = [reply(conn, expr) for expr in CASES]
    return results


@pytest.mark.parametrize("i", range(len(CASES)), ids=[f"{n:02d}" for n in range(len(CASES))])
def test_same_reply_as_tarantool(outcomes, i):
    want, got = outcomes["tarantool"][i], outcomes["spindle"][i]
    assert got == want, f"case {i} {CASES[i]}:\n  tarantool: {want}\n  spindle:   {got}"


def test_requests_meet_through_a_channel(module_server_factory):
    """One EVAL waits on a channel that an EVAL on another connection fills: each request
    runs in a fiber of its own, and Lua fibers of different requests can talk."""
    got = {}
    for kind in ("tarantool", "spindle"):
        srv = module_server_factory(kind)()
        with admin(srv) as a, admin(srv) as b:
            reply(a, "shared_ch = require('fiber').channel() return true")
            a.send_bytes(ip.packet({ip.K_TYPE: ip.EVAL, ip.K_SYNC: 7000},
                                   {ip.K_EXPR: "return shared_ch:get(10), 'a done'",
                                    ip.K_TUPLE: []}))
            waiting = reply(b, "local fiber = require('fiber') "
                               "while not shared_ch:has_readers() do fiber.sleep(0.001) end "
                               "return shared_ch:put('from b'), shared_ch:count()")
            h, body, _ = a.read_packet()
            got[kind] = (waiting, h.get(ip.K_SYNC), body.get(ip.K_DATA))
    assert got["spindle"] == got["tarantool"]
    assert got["spindle"][2] == ["from b", "a done"]


# -- spindle only -------------------------------------------------------------------------------

COUNT = F + "local n = 0 for _ in pairs(fiber.info()) do n = n + 1 end return n"


@pytest.fixture(scope="module")
def spindle(module_server_factory):
    return module_server_factory("spindle")()


def test_a_thousand_short_fibers_leave_nothing_behind(spindle):
    with admin(spindle) as conn:
        before = reply(conn, COUNT)
        done = reply(conn, F + "local n = 0 local c = fiber.cond() "
                     "for i = 1, 250 do fiber.create(function() n = n + 1 end) end "
                     "for i = 1, 250 do fiber.new(function() fiber.sleep(0) n = n + 1 end) end "
                     "for i = 1, 250 do local f = fiber.new(function() n = n + 1 return i end) "
                     "f:set_joinable(true) f:join() end "
                     "for i = 1, 250 do fiber.create(function() c:wait() n = n + 1 end) end "
                     "c:broadcast() fiber.sleep(0.05) return n")
        after = reply(conn, COUNT)
    assert done == ("ok", [1000])
    assert before == after, f"fibers left behind: {before} before, {after} after"


def test_failing_fibers_leave_the_server_serving(spindle):
    with admin(spindle) as conn:
        before = reply(conn, COUNT)
        started = reply(conn, F + "fiber.create(function() error('boom now') end) "
                        "fiber.create(function() fiber.sleep(0) error({}) end) "
                        "fiber.new(function() box.error{code = 5, reason = 'bx'} end) "
                        "fiber.create(function() local t = nil return t.x end) "
                        "return 'started'")
        settled = reply(conn, F + "fiber.sleep(0.05) return 1 + 1")
        after = reply(conn, COUNT)
    assert started == ("ok", ["started"])
    assert settled == ("ok", [2])
    assert before == after
    with admin(spindle) as conn:
        assert reply(conn, "return 'still serving'") == ("ok", ["still serving"])
    log = spindle.log_text()
    assert "LuajitError: eval:1: boom now" in log


def test_cancelled_waiters_end(spindle):
    with admin(spindle) as conn:
        before = reply(conn, COUNT)
        got = reply(conn, F + "local c, ch = fiber.cond(), fiber.channel() local fs = {} "
                    "for i = 1, 50 do fs[#fs + 1] = fiber.create(function() c:wait() end) "
                    "fs[#fs + 1] = fiber.create(function() ch:get() end) "
                    "fs[#fs + 1] = fiber.create(function() fiber.sleep(1000) end) end "
                    "for _, f in ipairs(fs) do f:cancel() end fiber.sleep(0.05) "
                    "local alive = 0 for _, f in ipairs(fs) do "
                    "if f:status() ~= 'dead' then alive = alive + 1 end end return alive")
        after = reply(conn, COUNT)
    assert got == ("ok", [0])
    assert before == after


def test_the_fiber_bound_is_an_error(spindle):
    with admin(spindle) as conn:
        before = reply(conn, COUNT)
        got = reply(conn, F + "local c = fiber.cond() local made = 0 "
                    "local ok, e = pcall(function() for i = 1, 5000 do "
                    "fiber.new(function() c:wait() end) made = made + 1 end end) "
                    "fiber.yield() c:broadcast() fiber.sleep(0.2) return ok, made, tostring(e)")
        after = reply(conn, COUNT)
    kind, data = got
    assert kind == "ok" and data[0] is False, got
    assert data[1] == 4096 and "too many fibers" in data[2], got
    assert before == after


def test_a_fiber_acts_for_the_user_who_made_it(spindle):
    """A guest allowed to run code and read a space makes a fiber that writes the space: the
    write is refused for the guest. (Tarantool 2.6 runs such fibers as admin, in a
    'background' session; spindle keeps the creator's rights on purpose.)"""
    with admin(spindle) as conn:
        for rtype, body in [
            (ip.INSERT, {ip.K_SPACE_ID: 280,
                         ip.K_TUPLE: [742, 1, "guarded", "memtx", 0, {}, []]}),
            (ip.INSERT, {ip.K_SPACE_ID: 288,
                         ip.K_TUPLE: [742, 0, "pk", "tree", {"unique": True},
                                      [[0, "unsigned"]]]}),
            # guest: session + usage (its defaults) + execute on the universe; read on the space
            (ip.REPLACE, {ip.K_SPACE_ID: 312, ip.K_TUPLE: [1, 0, "universe", 0, 8 | 16 | 4]}),
            (ip.INSERT, {ip.K_SPACE_ID: 312, ip.K_TUPLE: [1, 0, "space", 742, 1]}),
        ]:
            h, b = conn.request(rtype, body)
            assert not h.get(ip.K_TYPE, 0) & ip.TYPE_ERROR, b
    with ip.connect(spindle) as guest:
        got = reply(guest, F + "local f = fiber.new(function() "
                    "return box.space.guarded:replace{2} end) f:set_joinable(true) "
                    "local ok, e = f:join() return ok, tostring(e)")
        rows = reply(guest, "return box.space.guarded:select()")
    assert got == ("ok", [False, "Write access to space 'guarded' is denied for user 'guest'"])
    assert rows == ("ok", [[]])
