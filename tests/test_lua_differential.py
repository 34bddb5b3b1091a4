"""EVAL, CALL and CALL_16 against Tarantool 2.6 and spindle side by side: every case runs on
both servers in order, and the replies must match — the DATA values exactly (MessagePack
types included), or the error code and message.

Cases cover values of every MessagePack type, multiple returns, arguments, errors by code
(Lua errors are ER_PROC_LUA with Lua's message; box.error keeps its code), syntax errors,
unsupported return types, procedures that write through box.space and read their own writes,
access for guest (EVAL and CALL need execute on universe; access is checked before the name
is looked up), and CALL_16's wrapping of results as tuples.
"""

import pytest

from harness import iproto as ip

SPACE = 740

SETUP = [
    # A space with a TREE primary key on field 1, created through the system spaces.
    (ip.INSERT, {ip.K_SPACE_ID: 280, ip.K_TUPLE: [SPACE, 1, "luatest", "memtx", 0, {}, []]}),
    (ip.INSERT, {ip.K_SPACE_ID: 288, ip.K_TUPLE: [SPACE, 0, "pk", "tree", {"unique": True},
                                                   [[0, "unsigned"]]]}),
]


def ev(expr, *args, who="admin"):
    return ("eval", who, ip.EVAL, {ip.K_EXPR: expr, ip.K_TUPLE: list(args)})


def call(name, *args, who="admin", is_16=False):
    return ("call", who, ip.CALL_16 if is_16 else ip.CALL,
            {ip.K_FUNCTION_NAME: name, ip.K_TUPLE: list(args)})


LIM = "lim"

CASES = [
    # values
    ev("return 1"), ev("return -1"), ev("return 1, 2, 3"), ev("return"), ev("return nil"),
    ev("return 'x'"), ev("return true, false"), ev("return 1.5"), ev("return 2^53"),
    ev("return 2^64"), ev("return 10/3"), ev("return {}"), ev("return {1, 2, 3}"),
    ev("return {a = 1}"), ev("return {1, nil, 3}"), ev("return {{1, {2}}, {k = {}}}"),
    ev("return box.NULL"), ev("return 1, nil, box.NULL"),
    ev("return ...", 1, "a", [1, 2], {"k": "v"}, None, True, -5, 1.25),
    ev("local a, b = ... return b, a", "first", "second"),
    ev("return select('#', ...)", None, None),
    ev("return #'hello', string.upper('x'), math.floor(2.7)"),
    ev("return 1ULL, -1LL"),
    # arguments of every kind as CALL/EVAL decode them (plain ones skip mlua: crates/lua/src/raw.rs)
    ev("local t = {...} local out = {} for i = 1, select('#', ...) do "
       "out[i] = type(t[i]) .. ':' .. tostring(t[i] == nil) end return out",
       None, True, 0, -1, 2**53, -(2**53), 2**60, -(2**60), 2**64 - 1, 1.5, "s", b"\x00\xff",
       [], {}),
    ev("local a, m = ... return getmetatable(a).__serialize, getmetatable(m).__serialize, "
       "a, m", [1, None, 3], {"k": None}),
    ev("return ...", {1: "one", -2: "neg", 3.5: "float", "s": [1, {"deep": [[]]}]}),
    ev("return ...", 99999999999999, 100000000000000, -99999999999999, -100000000000000),
    ev("local t = ... local n = 0 for k, v in pairs(t) do n = n + 1 end return n, t[1], t.x",
       {1: 1, "x": [2], None: 3}),
    ev("return ...", [[[[[[[[[[[[[[[[[[[["deep"]]]]]]]]]]]]]]]]]]]]),
    ev("return {[1] = 'a', [2] = 'b', [4] = 'd'}, {[1] = 1, [20] = 20}, {n = 1, 2}"),
    ev("return {true, 0/0 ~= 0/0, -0.0, 1e300 * 1e10, 'x' .. '\\0'}"),
    # tuples: kept across collections, as statement arguments, as results, told from other
    # userdata (crates/lua/src/tuple.rs)
    ev("local s = box.space.luatest s:replace{900, 'a'} local t = s:get(900) "
       "local kept = {} for i = 1, 300 do kept[i] = s:get(900) end collectgarbage() "
       "s:replace{900, 'b'} collectgarbage() collectgarbage() "
       "return t, kept[300], #kept, s:get(900)"),
    ev("local s = box.space.luatest local t = box.tuple.new{901, 'from a tuple'} "
       "return s:replace(t), s:insert(s:get(901):update{{'=', 1, 902}}), s:delete(t), "
       "s:get(902)"),
    ev("return box.tuple.is(box.tuple.new{1}), box.tuple.is(newproxy(true)), "
       "box.tuple.is(newproxy()), box.tuple.is({1}), box.tuple.is(nil)"),
    ev("return box.tuple.new{1, {2, 3}, 'x'}, {box.tuple.new{4}}, box.tuple.new{5}:totable()"),
    ev("local t = box.tuple.new{1, 2, 3} return #t, t[2], t:bsize(), t:len(), "
       "tostring(t), t:unpack(2)"),
    ev("return (pcall(box.tuple.new{1}.totable, newproxy(true)))"),
    # errors
    ev("error('boom')"), ev("error('boom', 0)"), ev("error()"), ev("error(42)"),
    ev("x = = 1"), ev("return nosuch()"), ev("return function() end"),
    ev("box.error(box.error.ILLEGAL_PARAMS, 'bad things')"),
    ev("box.error{code = 1234, reason = 'custom reason'}"),
    ev("box.error{reason = 'my reason'}"),
    ev("error(box.error.new{code = 555, reason = 'r'})"),
    ev("local ok, e = pcall(error, 'inner') return ok, e"),
    ev("local ok, e = pcall(box.error, box.error.ILLEGAL_PARAMS, 'z') return ok, e.code, e.message"),
    # data through box.space
    ev(f"return box.space.luatest.id, box.space[{SPACE}].name, box.space.nosuch"),
    ev("return box.space.luatest:insert{1, 'one'}"),
    ev("return box.space.luatest:insert{1, 'again'}"),
    ev("return box.space.luatest:replace{2, 'two'}"),
    ev("return box.space.luatest:get(1), box.space.luatest:get{2}, box.space.luatest:get(3)"),
    ev("return box.space.luatest:select()"),
    ev("return box.space.luatest:select({}, {iterator = 'GE', limit = 1, offset = 1})"),
    ev("return box.space.luatest:select(1, {iterator = box.index.GT})"),
    ev("return box.space.luatest:len(), box.space.luatest:count()"),
    ev("return box.space.luatest:update(1, {{'=', 2, 'uno'}})"),
    ev("return box.space.luatest:delete(2)"),
    ev("return box.space.luatest:delete(2)"),
    ev("local s = box.space.luatest for i = 10, 14 do s:replace{i, i * i} end "
       "return s:get(12)[2], #s:select(), s:select(13)[1]:totable()"),
    ev("local t = box.space.luatest:get(10) box.space.luatest:delete(10) return t, t[1], #t"),
    ev("local t = box.space.luatest:get(11) return t:unpack()"),
    ev("return box.space.luatest.index.pk:min(), box.space.luatest.index[0]:max()"),
    ev("return box.space.luatest:insert{'bad'}"),
    ev("return box.space.luatest:insert(5)"),
    ev("return box.space._space:get(280)[3]"),
    # procedures defined and called
    ev("function echo(...) return ... end "
       "mod = {f = function(a) return a * 2 end, obj = {v = 7}} "
       "function mod.obj:m(x) return self.v, x end "
       "function fail() error('failing') end "
       "function tuples() return box.space.luatest:select() end "
       "function lone() return box.space.luatest:get(11) end"),
    call("echo", 1, "a", [2, 3], {"k": 1}, None),
    call("echo"), call("mod.f", 21), call("mod.obj:m", 9), call("fail"), call("nosuch"),
    call("nosuch.f"), call("mod.nosuch"), call("box.space.luatest:select", 11),
    call("box.space.luatest:get", 11), call("box.space.nosuch:get", 1),
    call("box.space.luatest:len"),
    # CALL_16 wraps results as tuples
    call("echo", is_16=True), call("echo", 1, is_16=True), call("echo", 1, "x", None, is_16=True),
    call("echo", [5, 6], is_16=True), call("echo", [[1], [2, 3]], is_16=True),
    call("echo", {"a": 1}, is_16=True), call("tuples", is_16=True), call("lone", is_16=True),
    call("box.space.luatest:select", 11, is_16=True),
    # guest: no execute on universe
    ev("return 1", who="guest"), call("echo", 1, who="guest"), call("nosuch", who="guest"),
    # transactions: box.begin/commit/rollback, savepoints, box.atomic, an open one at return
    ev("box.begin() box.space.luatest:replace{101} box.space.luatest:replace{102} box.commit() "
       "return box.space.luatest:select(100, {iterator = 'GT'})"),
    ev("box.begin() box.space.luatest:replace{103} box.rollback() return box.space.luatest:get(103)"),
    ev("box.begin() box.space.luatest:replace{104}"),
    ev("return box.space.luatest:get(104), box.is_in_txn()"),
    ev("box.begin() box.begin()"),
    ev("box.begin() box.space.luatest:replace{105} local sp = box.savepoint() "
       "box.space.luatest:replace{106} box.rollback_to_savepoint(sp) box.commit() "
       "return box.space.luatest:get(105), box.space.luatest:get(106)"),
    ev("return box.atomic(function(a) box.space.luatest:replace{107} return 'done', a end, 13)"),
    ev("return pcall(box.atomic, function() box.space.luatest:replace{108} error('no') end), "
       "box.space.luatest:get(108)"),
    ev("box.commit() box.rollback() return box.is_in_txn()"),
    ev("box.begin() box.space.luatest:insert{101} box.space.luatest:replace{109} box.commit()"),
    ev("return box.space.luatest:get(109)"),
    ev("box.begin() local ok, e = pcall(box.space.luatest.insert, box.space.luatest, {101}) "
       "box.space.luatest:replace{110} box.commit() return ok, e.code, box.space.luatest:get(110)"),
    # a memtx transaction that yields is rolled back, and its commit fails with 154 (2.6)
    ev("local fiber = require('fiber') box.begin() box.space.luatest:replace{120} "
       "fiber.sleep(0) box.space.luatest:replace{121} "
       "local inside = box.space.luatest:select({120}, {iterator = 'GE'}) "
       "local ok, e = pcall(box.commit) "
       "return inside, ok, e.code, e.message, box.is_in_txn(), box.space.luatest:get(120), "
       "box.space.luatest:get(121)"),
    ev("local fiber = require('fiber') box.begin() box.space.luatest:select{} fiber.yield() "
       "box.space.luatest:select{} local ok, e = pcall(box.commit) return ok, e.code"),
    ev("local fiber = require('fiber') box.begin() box.space.luatest:replace{122} "
       "box.rollback() fiber.sleep(0) return box.space.luatest:get(122), box.is_in_txn()"),
    ev("box.begin() box.space.luatest:replace{123} box.commit() require('fiber').sleep(0) "
       "return box.space.luatest:get(123)"),
    # sessions, info, tuples
    ev("return box.session.type(), box.session.user(), box.session.uid(), box.session.euid(), "
       "box.session.id() > 0"),
    ev("return box.session.su('guest', function() return box.session.user(), box.session.uid() end)"),
    ev("return box.info.status, box.info.ro, box.info.id, type(box.info.uuid), "
       "type(box.info.cluster.uuid), box.info().status, box.info.package"),
    ev("return box.tuple.new{1, 'a', {2, 3}}, box.tuple.new(1, 2, 3), box.tuple.new()"),
    ev("return box.tuple.is(box.tuple.new{1}), box.tuple.is({1})"),
    ev("local t = box.tuple.new{10, 20, 30, 40} return t:find(30), t:find(2, 40), t:find(99), "
       "t:findall(20)"),
    ev("local t = box.tuple.new{10, 20, 30, 40} return {t:slice(1, 3)}, {t:slice(-1)}, "
       "{t:slice(0)}"),
    ev("local t = box.tuple.new{1, 2, 3, 4} return t:transform(2, 1, 'a', 'b'), "
       "t:transform(1, 4)"),
    ev("local t = box.tuple.new{1, 'a', 5} return t:update{{'=', 2, 'b'}, {'+', 3, 10}}, t"),
    ev("local t = box.tuple.new{1, 'a', 5} return t:update{{'+', 2, 1}}"),
    ev("local t = box.tuple.new{1, 'a'} local out = {} for i, v in t:pairs() do "
       "out[#out + 1] = {i, v} end return out"),
    ev("local out = {} for _, t in box.space.luatest:pairs({11}, {iterator = 'GE'}) do "
       "out[#out + 1] = t[1] end return out"),
    ev("return box.space.luatest:pairs():map(function(t) return t[1] end):take(3):totable()"),
    ev("return box.space.luatest:pairs():filter(function(t) return t[1] > 100 end)"
       ":map(function(t) return t[1] end):totable()"),
    ev("return box.snapshot()"),
    # a user's rights hold inside the coroutines its request starts
    ev("box.schema.user.create('lim', {password = 'lim'}) "
       "box.schema.user.grant('lim', 'execute', 'universe') "
       "box.schema.user.grant('lim', 'read', 'space', 'luatest')"),
    ev("return box.session.user(), box.session.euid() == "
       "coroutine.wrap(function() return box.session.euid() end)()", who=LIM),
    ev("return coroutine.wrap(function() return box.space.luatest:replace{555} end)()", who=LIM),
    ev("return coroutine.wrap(function() return box.space.luatest:get(11) end)()", who=LIM),
    ev("return box.space.luatest:replace({556, 'x', {1, {a = 2}}, true, -1.5})", who=LIM),
    ev("return box.space.luatest:get(555), "
       "box.space.luatest:get(556)"),
    # statements with plain tables, nested tables, tuples and cdata as their arguments
    ev("return box.space.luatest:replace{557, {x = {1, 2, {}}, [1] = 'a'}, {[1] = 1, [3] = 3}}"),
    ev("return box.space.luatest:replace(box.tuple.new{558, 'tuple'}), "
       "box.space.luatest:replace{559, box.NULL, 1ULL, -2LL}"),
    ev("return box.space.luatest:replace{560, setmetatable({1, 2}, {__serialize = 'map'})}"),
    ev("return box.space.luatest:update(557, {{'=', 2, 'b'}}), box.space.luatest:delete{558}, "
       "box.space.luatest:delete(999), box.space.luatest:upsert({561}, {{'+', 2, 1}})"),
    ev("return box.space.luatest:insert{557}"),
    ev("return box.space.luatest:replace{'nope'}"),
    ev("return box.space.luatest:replace(7)"),
    # tuples of a space with a format have field names
    ev("local s = box.schema.space.create('named', {format = {{'id', 'unsigned'}, "
       "{'update', 'string'}, {'name', 'string', is_nullable = true}}}) "
       "s:create_index('pk') return s.id > 0"),
    ev("local t = box.space.named:replace{1, 'u', 'nm', 99} "
       "return type(t.update), t.name, t.id, t[4], t.nosuch, t['name']"),
    ev("local t = box.space.named:get(1) return t:tomap(), t:tomap({names_only = true})"),
    ev("return box.space.named:select(1)[1].name, box.space.named.index.pk:get(1).update, "
       "box.space.named:insert{2, 'x'}.name, box.space.named:delete(2).update"),
    ev("return box.tuple.new{1, 2}.id, box.tuple.new{1, 2}:tomap()"),
    ev("local t = box.space.named:get(1) box.space.named:format({{'id', 'unsigned'}, "
       "{'renamed', 'string'}}) return type(t.update), t.renamed, box.space.named:get(1).renamed"),
]


def connect(server, who):
    if who == "guest":
        return ip.connect(server)
    if who == LIM:
        return ip.connect(server, "lim", "lim")
    return ip.connect(server, "admin", server.password)


def reply(conn, rtype, body):
    h, b = conn.request(rtype, body)
    code = h.get(ip.K_TYPE, 0)
    if code & ip.TYPE_ERROR:
        return ("error", code & 0x7FFF, (b or {}).get(ip.K_ERROR_24))
    return ("ok", (b or {}).get(ip.K_DATA))


@pytest.fixture(scope="module")
def outcomes(module_server_factory):
    """Every case's reply from each server, in case order."""
    results = {}
    for kind in ("tarantool", "spindle"):
        srv = module_server_factory(kind)()
        with connect(srv, "admin") as admin:
            for rtype, body in SETUP:
                admin.call(rtype, body)
        got = []
        conns = {}
        try:
            for _what, who, rtype, body in CASES:
                if who not in conns:
                    conns[who] = connect(srv, who)
                got.append(reply(conns[who], rtype, body))
        finally:
            for c in conns.values():
                c.close()
        results[kind] = got
    return results


@pytest.mark.parametrize("i", range(len(CASES)), ids=[
    f"{n:02d}-{c[0]}-{c[3].get(ip.K_EXPR) or c[3].get(ip.K_FUNCTION_NAME)}"[:60] for n, c in enumerate(CASES)
])
def test_same_reply_as_tarantool(outcomes, i):
    want, got = outcomes["tarantool"][i], outcomes["spindle"][i]
    assert got == want, f"case {i} {CASES[i][2:]}:\n  tarantool: {want}\n  spindle:   {got}"
