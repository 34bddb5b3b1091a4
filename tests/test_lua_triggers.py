"""Space triggers (`space:on_replace`, `space:before_replace`) against Tarantool 2.6 and
spindle side by side: every case runs on both servers in order, and the replies must match —
the DATA values exactly, or the error code and message, and the IPROTO_CHUNK messages
(`box.session.push`) a request got before its reply.

Cases cover the registration forms (add, replace, delete, list, bad arguments), the
arguments a trigger gets for each request type from Lua and from plain IPROTO requests, the
order of several triggers, what each before_replace return does, errors in triggers (the
statement is rolled back, with the trigger's own DML), DML in a trigger joining the
statement's transaction, triggers inside box.begin(), a yield in a trigger (154), the session
a trigger runs in, pushes from a trigger to the client of a plain INSERT, triggers dropped
with their space, and box.on_commit/box.on_rollback (forms, order, the changes iterator,
a rollback after a yield).
"""

import pytest

from harness import iproto as ip

SPACE, AUDIT = 741, 742


def ev(expr, *args):
    return ("eval", ip.EVAL, {ip.K_EXPR: expr, ip.K_TUPLE: list(args)})


def dml(rtype, who="admin", **body):
    keys = {"space": ip.K_SPACE_ID, "index": ip.K_INDEX_ID, "key": ip.K_KEY,
            "tuple": ip.K_TUPLE, "ops": ip.K_OPS, "index_base": ip.K_INDEX_BASE}
    return ("dml", rtype, {keys[k]: v for k, v in body.items()}, who)


# The log the test triggers fill: {name, old, new, space name, request type}, NULL for nil.
LOG = ("log = {} "
       "function show(v) if v == nil then return box.NULL end "
       "if box.tuple.is(v) then return v:totable() end return v end "
       "function logger(name) return function(o, n, sn, rt) "
       "table.insert(log, {name, show(o), show(n), sn, rt}) end end "
       "function take() local l = log log = {} return l end ")

CASES = [
    ev(f"box.schema.space.create('trg', {{id = {SPACE}}}) box.space.trg:create_index('pk') "
       f"box.schema.space.create('audit', {{id = {AUDIT}}}) box.space.audit:create_index('pk') "
       + LOG),
    # registration: add returns the function, the list is oldest first
    ev("f1, f2 = logger('f1'), logger('f2') local s = box.space.trg "
       "local a, b = s:on_replace(f1), s:on_replace(f2) "
       "local l = s:on_replace() return a == f1, b == f2, #l, l[1] == f1, l[2] == f2, "
       "#s:before_replace()"),
    # every request type from Lua; triggers run newest first
    ev("local s = box.space.trg s:insert{1, 'a'} s:replace{1, 'b'} "
       "s:update(1, {{'=', 2, 'c'}}) s:upsert({1, 'x'}, {{'=', 2, 'd'}}) "
       "s:upsert({2, 'x'}, {{'=', 2, 'd'}}) s:delete(1) s:delete(99) "
       "s:update(99, {{'=', 2, 'c'}}) s.index.pk:update(2, {{'=', 2, 'e'}}) "
       "s.index.pk:delete(2) return take()"),
    ev("local s = box.space.trg return s:insert{3, 'r'}, s:replace{3, 's'}, s:delete(3), "
       "s:upsert({3}, {})"),
    ev("return take()"),
    # replace and delete forms, and their errors
    ev("local s = box.space.trg return s:on_replace(nil, f1), #s:on_replace(), "
       "s:on_replace()[1] == f2"),
    ev("local s = box.space.trg return s:on_replace(f1, f2) == f1, #s:on_replace(), "
       "s:on_replace()[1] == f1"),
    ev("local s = box.space.trg local r = {} "
       "for _, args in ipairs({{nil, f2}, {'x'}, {f1, 5}, {f2, f2}}) do "
       "local ok, e = pcall(s.on_replace, s, args[1], args[2]) "
       "table.insert(r, {ok, tostring(e)}) end "
       "table.insert(r, {pcall(s.on_replace)}) "
       "table.insert(r, {type(s:on_replace(nil, nil)), #s:on_replace(nil)}) return r"),
    ev("local s = box.space.trg s:on_replace(nil, f1) return #s:on_replace(), take()"),
    # plain IPROTO requests run the triggers, in the session of the request
    ev("sid = box.session.id() box.space.trg:on_replace(function(o, n, sn, rt) "
       "table.insert(log, {rt, show(o), show(n), box.session.id() == sid, "
       "box.session.type(), box.session.user()}) end) return #box.space.trg:on_replace()"),
    dml(ip.INSERT, space=SPACE, tuple=[10, "ten"]),
    dml(ip.INSERT, space=SPACE, tuple=[10, "again"]),
    dml(ip.REPLACE, space=SPACE, tuple=[10, "TEN"]),
    dml(ip.UPDATE, space=SPACE, index=0, key=[10], tuple=[["=", 1, "upd"]]),
    dml(ip.UPDATE, space=SPACE, index=0, key=[10], tuple=[["=", 2, "base1"]], index_base=1),
    dml(ip.UPSERT, space=SPACE, tuple=[11, "new"], ops=[["=", 1, "x"]]),
    dml(ip.UPSERT, space=SPACE, tuple=[11, "new"], ops=[["=", 1, "ups"]]),
    dml(ip.DELETE, space=SPACE, index=0, key=[10]),
    dml(ip.DELETE, space=SPACE, index=0, key=[10]),
    dml(ip.DELETE, space=SPACE, index=0, key=["bad"]),
    ev("return take(), box.space.trg:select()"),
    # access is checked before any trigger runs; with the grant the trigger runs as guest
    dml(ip.INSERT, who="guest", space=SPACE, tuple=[12, "guest"]),
    ev("box.schema.user.grant('guest', 'read,write', 'space', 'trg') return true"),
    dml(ip.INSERT, who="guest", space=SPACE, tuple=[12, "guest"]),
    ev("box.schema.user.revoke('guest', 'read,write', 'space', 'trg') "
       "box.space.trg:delete(12) return take()"),
    # a push from a trigger reaches the client of a plain INSERT before its reply
    ev("box.space.trg:on_replace(function(o, n) box.session.push({'pushed', show(n)}) end) "
       "return true"),
    dml(ip.INSERT, space=SPACE, tuple=[20, "p"]),
    dml(ip.REPLACE, space=SPACE, tuple=[20, "q"]),
    ev("box.space.trg:insert{21} return take()"),
    ev("local s = box.space.trg for _, f in ipairs(s:on_replace()) do s:on_replace(nil, f) end "
       "s:truncate() return #s:on_replace()"),
    # an error in on_replace rolls the statement back with the trigger's own DML
    ev("box.space.trg:on_replace(function(o, n, sn, rt) "
       "box.space.audit:replace{n and n[1] or o[1], rt} "
       "if n and n[2] == 'bad' then error('bad one') end "
       "if n and n[2] == 'boxerr' then box.error(box.error.ILLEGAL_PARAMS, 'zzz') end end) "
       "return true"),
    ev("local s = box.space.trg return pcall(s.insert, s, {1, 'ok'})"),
    ev("local s = box.space.trg local ok, e = pcall(s.insert, s, {2, 'bad'}) return ok, tostring(e)"),
    ev("local s = box.space.trg local ok, e = pcall(s.insert, s, {3, 'boxerr'}) "
       "return ok, e.code, e.message"),
    dml(ip.INSERT, space=SPACE, tuple=[4, "bad"]),
    dml(ip.INSERT, space=SPACE, tuple=[5, "boxerr"]),
    dml(ip.INSERT, space=SPACE, tuple=[6, "ok"]),
    ev("return box.space.trg:select(), box.space.audit:select()"),
    # inside box.begin(): a failing statement is undone alone
    ev("local s = box.space.trg box.begin() s:insert{7, 'ok'} "
       "local ok = pcall(s.insert, s, {8, 'bad'}) s:insert{9, 'ok'} box.commit() "
       "return ok, s:select(), box.space.audit:select()"),
    ev("local s = box.space.trg box.begin() s:insert{30, 'ok'} box.rollback() "
       "return s:get(30), box.space.audit:get(30)"),
    ev("local s = box.space.trg for _, f in ipairs(s:on_replace()) do s:on_replace(nil, f) end "
       "s:truncate() box.space.audit:truncate() return true"),
    # a yield in on_replace aborts the memtx transaction: 154, nothing written
    ev("yielder = box.space.trg:on_replace(function() require('fiber').sleep(0) end) "
       "local s = box.space.trg local ok, e = pcall(s.insert, s, {10, 'y'}) "
       "return ok, e.code, e.message, s:get(10)"),
    ev("local s = box.space.trg box.begin() local ok1 = pcall(s.insert, s, {11, 'y'}) "
       "local ok2, e = pcall(box.commit) return ok1, ok2, e.code, s:get(11), box.is_in_txn()"),
    dml(ip.INSERT, space=SPACE, tuple=[12, "y"]),
    ev("box.space.trg:on_replace(nil, yielder) return box.space.trg:select()"),
    # before_replace: each return value, and what on_replace then sees
    ev("box.space.trg:on_replace(logger('on')) "
       "box.space.trg:before_replace(function(o, n, sn, rt) "
       "table.insert(log, {'before', show(o), show(n), sn, rt}) "
       "if mode == 'none' then return end "
       "if mode == 'nil' then return nil end "
       "if mode == 'old' then return o end "
       "if mode == 'new' then return n end "
       "if mode == 'other' then return box.tuple.new{n and n[1] or o[1], 'other'} end "
       "if mode == 'pk' then return box.tuple.new{777, 'pk'} end "
       "if mode == 'table' then return {1} end "
       "if mode == 'num' then return 5 end "
       "if mode == 'err' then box.error(box.error.ILLEGAL_PARAMS, 'before') end end) "
       "return #box.space.trg:before_replace()"),
    *[ev("local s, r = box.space.trg, {} s:truncate() s:replace{1, 'one'} take() mode = ... "
         "local function try(f, ...) local res = {pcall(f, s, ...)} "
         "if not res[1] then res[2] = tostring(res[2]) end "
         "res[#res + 1] = select('#', unpack(res)) table.insert(r, res) end "
         "try(s.insert, {2, 'two'}) try(s.replace, {1, 'uno'}) "
         "try(s.update, 1, {{'=', 2, 'upd'}}) try(s.delete, 1) "
         "try(s.upsert, {3, 'ups'}, {{'=', 2, 'u'}}) mode = nil "
         "return r, s:select(), take()", m)
      for m in ("none", "nil", "old", "new", "other", "pk", "table", "num", "err")],
    ev("mode = 'other' return true"),
    dml(ip.INSERT, space=SPACE, tuple=[40, "raw"]),
    dml(ip.UPSERT, space=SPACE, tuple=[41, "raw"], ops=[["=", 1, "x"]]),
    ev("mode = 'nil' return take()"),
    dml(ip.DELETE, space=SPACE, index=0, key=[40]),
    dml(ip.INSERT, space=SPACE, tuple=[42, "raw"]),
    ev("mode = nil return take(), box.space.trg:select()"),
    # an INSERT of a taken key: before_replace sees the tuple there and may save the insert
    *[ev("local s = box.space.trg s:truncate() s:replace{1, 'one'} take() mode = ... "
         "local ok, e = pcall(s.insert, s, {1, 'dup'}) if not ok then e = tostring(e) end "
         "mode = nil return ok, e, s:select(), take()", m)
      for m in ("none", "nil", "old", "other", "err")],
    ev("mode = 'other' return true"),
    dml(ip.INSERT, space=SPACE, tuple=[1, "dup"]),
    ev("mode = nil return true"),
    dml(ip.INSERT, space=SPACE, tuple=[1, "dup"]),
    ev("return take()"),
    # several before_replace triggers: newest first, each given the previous one's tuple
    ev("local s = box.space.trg for _, f in ipairs(s:before_replace()) do "
       "s:before_replace(nil, f) end "
       "s:before_replace(function(o, n) return box.tuple.new{n[1], n[2] .. '+b1'} end) "
       "s:before_replace(function(o, n) return box.tuple.new{n[1], n[2] .. '+b2'} end) "
       "return s:replace{50, 'v'}, take()"),
    # triggers are per space, kept across lookups of box.space, and go with a drop
    ev("return #box.space.trg:on_replace(), #box.space.trg:before_replace(), "
       "#box.space.audit:on_replace()"),
    ev(f"box.space.trg:drop() box.schema.space.create('trg', {{id = {SPACE}}}) "
       "box.space.trg:create_index('pk') "
       "return #box.space.trg:on_replace(), #box.space.trg:before_replace()"),
    dml(ip.INSERT, space=SPACE, tuple=[60, "plain"]),
    ev("return take()"),
    # box.on_commit / box.on_rollback inside box.begin()
    ev("local r = {} for _, f in ipairs({box.on_commit, box.on_rollback}) do "
       "local ok, e = pcall(f, function() end) table.insert(r, {ok, tostring(e)}) end return r"),
    ev("function txlog(name) return function(it) local r = {name, type(it)} "
       "for n, o, nw, sid in it() do table.insert(r, {n, show(o), show(nw), sid}) end "
       "table.insert(log, r) end end "
       "c1, c2 = txlog('c1'), txlog('c2') local s = box.space.trg box.begin() "
       "local a, b = box.on_commit(c1), box.on_commit(c2) "
       "local l = box.on_commit() s:replace{1} s:replace{2} s:delete{1} box.commit() "
       "return a == c1, b == c2, #l, l[1] == c1, take()"),
    ev("local s = box.space.trg box.begin() box.on_rollback(c1) box.on_rollback(c2) "
       "box.on_commit(c1) s:replace{3} box.rollback() return take(), s:get(3)"),
    ev("box.begin() box.on_commit(c1) local r = {box.on_commit(nil, c1)} "
       "table.insert(r, #box.on_commit()) table.insert(r, {pcall(box.on_commit, nil, c2)}) "
       "local ok, e = pcall(box.on_commit, 5) table.insert(r, {ok, tostring(e)}) "
       "box.commit() return r, take()"),
    ev("local s = box.space.trg box.begin() box.on_rollback(c2) box.on_commit(c1) "
       "s:replace{5} require('fiber').sleep(0) local ok, e = pcall(box.commit) "
       "return ok, e.code, take()"),
    ev("box.begin() box.on_commit(c2) box.commit() return take()"),
    ev("return box.atomic(function() box.on_commit(c1) box.space.trg:replace{6} end), take()"),
    ev("box.space.trg:on_replace(function(o, n) box.on_rollback(c2) "
       "if n[2] == 'bad' then error('bad') end end) "
       "box.begin() box.on_rollback(c1) box.space.trg:replace{7, 'ok'} "
       "pcall(box.space.trg.replace, box.space.trg, {8, 'bad'}) box.rollback() "
       "return take(), box.space.trg:select()"),
]


def connect(server):
    return ip.connect(server, "admin", server.password)


def reply(conn, rtype, body):
    """The reply and the pushes (IPROTO_CHUNK) that came before it."""
    conn.send_bytes(ip.packet({ip.K_TYPE: rtype, ip.K_SYNC: 7}, body))
    pushes = []
    while True:
        h, b, _ = conn.read_packet()
        code = h.get(ip.K_TYPE, 0)
        if code == ip.CHUNK:
            pushes.append((b or {}).get(ip.K_DATA))
            continue
        if code & ip.TYPE_ERROR:
            return ("error", code & 0x7FFF, (b or {}).get(ip.K_ERROR_24), pushes)
        return ("ok", (b or {}).get(ip.K_DATA), pushes)


@pytest.fixture(scope="module")
def outcomes(module_server_factory):
    """Every case's reply from each server, in case order."""
    results = {}
    for kind in ("tarantool", "spindle"):
        srv = module_server_factory(kind)()
        conns = {"admin": connect(srv), "guest": ip.connect(srv)}
        try:
            results[kind] = [reply(conns[c[3] if len(c) > 3 else "admin"], c[1], c[2])
                             for c in CASES]
        finally:
            for conn in conns.values():
                conn.close()
    return results


def case_id(n, c):
    text = c[2].get(ip.K_EXPR) or str(c[2].get(ip.K_TUPLE) or c[2].get(ip.K_KEY))
    return f"{n:02d}-{c[0]}-{text}"[:60]


@pytest.mark.parametrize("i", range(len(CASES)), ids=[case_id(n, c) for n, c in enumerate(CASES)])
def test_same_reply_as_tarantool(outcomes, i):
    want, got = outcomes["tarantool"][i], outcomes["spindle"][i]
    assert got == want, f"case {i} {CASES[i][1:]}:\n  tarantool: {want}\n  spindle:   {got}"


PLAIN = 743

PIPELINE_SETUP = (
    f"box.schema.space.create('trg', {{id = {SPACE}}}) box.space.trg:create_index('pk') "
    f"box.schema.space.create('audit', {{id = {AUDIT}}}) box.space.audit:create_index('pk') "
    f"box.schema.space.create('plain', {{id = {PLAIN}}}) box.space.plain:create_index('pk') "
    "seen = {} box.space.trg:on_replace(function(o, n) table.insert(seen, n[1]) "
    "box.space.audit:replace{n[1], #seen} if n[2] == 'bad' then error('bad', 0) end end) "
    "return true"
)


def pipelined(conn):
    """Writes to a space with triggers, to one without, and reads, sent before any reply is
    read: the replies by sync, then what the triggers saw and the data."""
    packets, sync = [], 100
    for i in range(30):
        body = {ip.K_SPACE_ID: SPACE, ip.K_TUPLE: [i, "bad" if i % 7 == 3 else "ok"]}
        packets.append(ip.packet({ip.K_TYPE: ip.INSERT, ip.K_SYNC: sync}, body))
        packets.append(ip.packet({ip.K_TYPE: ip.INSERT, ip.K_SYNC: sync + 1},
                                 {ip.K_SPACE_ID: PLAIN, ip.K_TUPLE: [i]}))
        packets.append(ip.packet({ip.K_TYPE: ip.EVAL, ip.K_SYNC: sync + 2},
                                 {ip.K_EXPR: "return #seen, box.space.plain:len()",
                                  ip.K_TUPLE: []}))
        sync += 3
    conn.send_bytes(b"".join(packets))
    replies = {}
    for _ in packets:
        h, b, _ = conn.read_packet()
        code = h.get(ip.K_TYPE, 0)
        replies[h[ip.K_SYNC]] = (code & 0x7FFF if code & ip.TYPE_ERROR else 0,
                                 (b or {}).get(ip.K_DATA) or (b or {}).get(ip.K_ERROR_24))
    return sorted(replies.items())


def state(conn):
    return conn.call(ip.EVAL, {ip.K_EXPR: "return box.space.trg:select(), "
                               "box.space.audit:select(), box.space.plain:len()",
                               ip.K_TUPLE: []})


def test_pipelined_writes_and_restart_as_tarantool(server_factory):
    """Pipelined plain INSERTs on a space with triggers interleave with other requests as on
    Tarantool, failed ones leave nothing, and what they wrote survives a restart."""
    results = {}
    for kind in ("tarantool", "spindle"):
        srv = server_factory(kind)()
        with connect(srv) as conn:
            conn.call(ip.EVAL, {ip.K_EXPR: PIPELINE_SETUP, ip.K_TUPLE: []})
            replies = pipelined(conn)
            seen = conn.call(ip.EVAL, {ip.K_EXPR: "return seen", ip.K_TUPLE: []})
            before = state(conn)
        srv.restart()
        with connect(srv) as conn:
            after = state(conn)
        results[kind] = (replies, seen, before, after)
    want, got = results["tarantool"], results["spindle"]
    for part, name in enumerate(("replies", "seen", "state", "state after restart")):
        assert got[part] == want[part], f"{name}:\n  tarantool: {want[part]}\n  spindle:   {got[part]}"
