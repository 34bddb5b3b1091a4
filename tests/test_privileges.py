"""DDL privileges against Tarantool 2.6, side by side: limited users create, alter and drop
spaces, indexes, functions, users and roles, and grant and revoke, through box.schema over
EVAL and through raw IPROTO writes into the system spaces; the same requests run in order on
both servers and every reply must match: the DATA, or the error code, message, type and the
MP_ERROR fields (object_type, object_name, access_type) of each error stack entry.

Users: `rw` has execute,read,write on the universe (like tarantool-python's `test` user) and
gets the `create`/`drop`/`alter` privileges case by case; `ex` has execute only; `own`
creates objects and then owns them; `top` has every DDL privilege on the universe. Also
covered: what box.schema does as the admin in 2.6 (a new user's universe grants, a dropped
user's privileges, changing one's own password), `box.session.su` (checks the target), a
setuid function creating a space, and raw deletes of `_user` rows of users that still own
objects. Grants on every object of a type by a non-admin are left out: 2.6 answers them with
a garbage object type or crashes.
"""

import pytest

from harness import iproto as ip

RW = ("rw", "p1")
EX = ("ex", "p2")
OWN = ("own", "p3")
TOP = ("top", "p4")


def ev(expr, *args, who="admin"):
    return (who, ip.EVAL, {ip.K_EXPR: expr, ip.K_TUPLE: list(args)})


def call(name, *args, who="admin"):
    return (who, ip.CALL, {ip.K_FUNCTION_NAME: name, ip.K_TUPLE: list(args)})


def raw(rtype, space, tuple_or_key, who, ops=None):
    """An IPROTO write into a system space: INSERT/REPLACE take a tuple, DELETE a key,
    UPDATE a key and ops."""
    body = {ip.K_SPACE_ID: space}
    if rtype in (ip.DELETE, ip.UPDATE):
        body[ip.K_KEY] = tuple_or_key
    else:
        body[ip.K_TUPLE] = tuple_or_key
    if ops is not None:
        body[ip.K_TUPLE] = ops
    return (who, rtype, body)


def gap(case, reason):
    """A case spindle is known to answer differently, for `reason`."""
    return case + ({"gap": reason},)


SPACE, INDEX, FUNC, USER, PRIV = 280, 288, 296, 304, 312

CASES = [
    # -- setup ----------------------------------------------------------------------------
    ev("box.schema.user.create('rw', {password = 'p1'}) "
       "box.schema.user.grant('rw', 'execute,read,write', 'universe')"),
    ev("box.schema.user.create('ex', {password = 'p2'}) "
       "box.schema.user.grant('ex', 'execute', 'universe')"),
    ev("box.schema.user.create('own', {password = 'p3'}) "
       "box.schema.user.grant('own', 'execute,read,write', 'universe')"),
    ev("box.schema.user.create('top', {password = 'p4'}) "
       "box.schema.user.grant('top', 'execute,read,write,create,drop,alter', 'universe')"),
    ev("box.schema.space.create('adm') box.space.adm:create_index('pk') "
       "box.schema.func.create('adm_f') box.schema.role.create('adm_role') "
       "box.schema.user.create('adm_user')"),
    ev("return box.space.adm.id"),
    # -- nothing but read/write: every create is refused ------------------------------------
    ev("box.schema.func.create('forbidden_function')", who=RW),
    ev("box.schema.space.create('s_rw')", who=RW),
    ev("box.schema.user.create('u_rw')", who=RW),
    ev("box.schema.role.create('r_rw')", who=RW),
    ev("box.space.adm:create_index('sk', {parts = {2, 'unsigned'}})", who=RW),
    ev("box.space.adm:drop()", who=RW),
    ev("box.space.adm:format({{'id', 'unsigned'}})", who=RW),
    ev("box.space.adm.index.pk:alter({parts = {1, 'integer'}})", who=RW),
    ev("box.schema.func.drop('adm_f')", who=RW),
    ev("box.schema.user.drop('adm_user')", who=RW),
    ev("box.schema.role.drop('adm_role')", who=RW),
    ev("box.schema.user.passwd('adm_user', 'x')", who=RW),
    ev("box.schema.user.create('alt_user') box.schema.user.grant('rw', 'alter', 'user', "
       "'alt_user')"),
    ev("box.schema.user.passwd('alt_user', 'x')", who=RW),
    ev("box.schema.user.drop('alt_user')", who=RW),
    ev("box.space.adm:rename('adm2')", who=RW),
    ev("box.space.adm:truncate()", who=RW),
    # -- execute only: the system spaces themselves are closed ------------------------------
    ev("box.schema.space.create('s_ex')", who=EX),
    ev("box.schema.func.create('f_ex')", who=EX),
    ev("box.schema.user.create('u_ex')", who=EX),
    ev("box.space.adm:drop()", who=EX),
    # -- the same refusals for raw IPROTO writes into the system spaces ---------------------
    raw(ip.INSERT, SPACE, [700, 2, "raw_s", "memtx", 0, {}, []], RW),
    raw(ip.INSERT, FUNC, [90, 2, "raw_f", 0, "LUA", "", "function", [], "any", "none",
                          "none", False, False, True, ["LUA"], {}, "", "", ""], RW),
    raw(ip.INSERT, USER, [90, 2, "raw_u", "user", {}], RW),
    raw(ip.INSERT, USER, [90, 2, "raw_r", "role", {}], RW),
    raw(ip.DELETE, SPACE, [512], RW),
    raw(ip.INSERT, INDEX, [512, 1, "sk", "tree", {"unique": True}, [[1, "unsigned"]]], RW),
    raw(ip.INSERT, SPACE, [701, 2, "raw_s2", "memtx", 0, {}, []], EX),
    raw(ip.UPDATE, SPACE, [512], RW, ops=[["=", 2, "adm_x"]]),
    raw(ip.UPDATE, INDEX, [512, 0], RW, ops=[["=", 2, "pk_x"]]),
    raw(ip.DELETE, INDEX, [512, 0], RW),
    raw(ip.DELETE, FUNC, [68], RW),
    raw(ip.UPDATE, USER, [1], RW, ops=[["=", 2, "admin2"]]),
    raw(ip.UPDATE, SPACE, [512], RW, ops=[["=", 3, "no_engine"]]),
    raw(ip.INSERT, SPACE, [702, 2, "raw_s3", "memtx", "x", {}, []], RW),
    raw(ip.INSERT, INDEX, [512, 1, "sk", "nope", {}, [[1, "unsigned"]]], RW),
    # -- create on an object type -----------------------------------------------------------
    ev("box.schema.user.grant('own', 'create', 'space')"),
    ev("return box.schema.space.create('s_own').id", who=OWN),
    ev("return box.space._space.index.name:get('s_own')[2] == box.session.uid()", who=OWN),
    ev("box.space.s_own:create_index('pk')", who=OWN),
    ev("box.space.s_own:create_index('sk', {parts = {2, 'string'}})", who=OWN),
    ev("box.space.s_own.index.sk:alter({parts = {2, 'unsigned'}})", who=OWN),
    ev("box.space.s_own.index.sk:drop()", who=OWN),
    ev("box.space.s_own:format({{'id', 'unsigned'}})", who=OWN),
    ev("box.space.s_own:rename('s_own2') box.space.s_own2:rename('s_own')", who=OWN),
    ev("box.space.s_own:insert{1} return box.space.s_own:select{}", who=OWN),
    ev("box.space.s_own:truncate() return box.space.s_own:count()", who=OWN),
    ev("box.space.adm:drop()", who=OWN),
    ev("box.space.adm:create_index('sk2', {parts = {2, 'unsigned'}})", who=OWN),
    ev("box.schema.func.create('f_own')", who=OWN),
    ev("box.schema.user.grant('own', 'create', 'function')"),
    ev("box.schema.func.create('f_own')", who=OWN),
    ev("box.schema.func.drop('adm_f')", who=OWN),
    ev("box.schema.user.create('u_own')", who=OWN),
    ev("box.schema.user.grant('own', 'create', 'user')"),
    ev("box.schema.user.create('u_own', {password = 'x'})", who=OWN),
    ev("box.schema.role.create('r_own')", who=OWN),
    ev("box.schema.user.grant('own', 'create', 'role')"),
    ev("box.schema.role.create('r_own')", who=OWN),
    # -- grants by a non-admin: only on what it owns ----------------------------------------
    ev("box.schema.user.grant('ex', 'read', 'space', 's_own')", who=OWN),
    ev("box.schema.user.grant('ex', 'read', 'space', 'adm')", who=OWN),
    ev("box.schema.user.grant('ex', 'execute', 'function', 'f_own')", who=OWN),
    ev("box.schema.user.grant('ex', 'execute', 'function', 'adm_f')", who=OWN),
    ev("box.schema.user.grant('ex', 'read', 'universe')", who=OWN),
    ev("box.schema.user.grant('ex', 'r_own')", who=OWN),
    ev("box.schema.user.grant('ex', 'adm_role')", who=OWN),
    ev("box.schema.user.grant('ex', 'public')", who=OWN),
    ev("box.schema.user.grant('u_own', 'alter', 'user', 'u_own')", who=OWN),
    ev("box.schema.user.grant('ex', 'alter', 'user', 'adm_user')", who=OWN),
    ev("box.schema.user.revoke('ex', 'read', 'space', 's_own')", who=OWN),
    ev("box.schema.user.revoke('rw', 'read', 'universe')", who=OWN),
    ev("box.schema.user.revoke('adm_user', 'public')", who=OWN),
    ev("return box.space._priv:select{box.user_id}", who=OWN),
    raw(ip.REPLACE, PRIV, [1, 3, "universe", 0, 1], OWN),
    raw(ip.REPLACE, PRIV, [3, 3, "universe", 0, 1], OWN),
    ev("box.space._priv:replace{box.session.uid(), 99, 'space', box.space.s_own.id, 1}",
       who=OWN),
    ev("box.space._priv:replace{box.session.uid(), box.session.uid(), 'space', 9999, 1}",
       who=OWN),
    ev("local ex = box.space._user.index.name:get('ex')[1] "
       "box.space._priv:replace{1, ex, 'space', box.space.s_own.id, 1}", who=OWN),
    ev("local ex = box.space._user.index.name:get('ex')[1] "
       "box.space._priv:replace{box.session.uid(), ex, 'role', 2, 5}", who=OWN),
    ev("local ex = box.space._user.index.name:get('ex')[1] "
       "box.space._priv:replace{box.session.uid(), ex, 'role', 3, 4}", who=OWN),
    ev("local ex = box.space._user.index.name:get('ex')[1] "
       "box.space._priv:replace{box.session.uid(), ex, 'user', box.session.uid(), 128}",
       who=OWN),
    ev("local ex = box.space._user.index.name:get('ex')[1] "
       "box.space._priv:replace{box.session.uid(), ex, 'space', box.space.s_own.id, 3} "
       "return box.space._priv:get{ex, 'space', box.space.s_own.id}[5]", who=OWN),
    ev("box.space._user:delete{box.space._user.index.name:get('own')[1]}"),
    ev("box.space._user:delete{box.space._user.index.name:get('ex')[1]}"),
    ev("box.schema.role.create('r9') box.schema.role.grant('r9', 'read', 'space', '_space') "
       "box.schema.user.grant('ex', 'r9') "
       "box.space._priv:delete{box.space._user.index.name:get('r9')[1], 'space', 281}"),
    ev("box.space._user:delete{box.space._user.index.name:get('r9')[1]}"),
    ev("box.schema.role.drop('r9') return box.schema.role.exists('r9')"),
    # -- owners drop what they own, and nothing else ----------------------------------------
    ev("box.schema.user.drop('u_own')", who=OWN),
    ev("box.schema.role.drop('r_own')", who=OWN),
    ev("box.schema.func.drop('f_own')", who=OWN),
    ev("box.schema.user.drop('adm_user')", who=OWN),
    ev("box.schema.role.drop('adm_role')", who=OWN),
    ev("box.space.s_own:drop()", who=OWN),
    ev("return box.space.s_own", who=OWN),
    # -- object privileges granted by the admin ---------------------------------------------
    ev("box.schema.user.grant('rw', 'drop', 'space', 'adm')"),
    ev("box.schema.user.grant('rw', 'alter', 'space', 'adm')"),
    ev("box.space.adm:format({{'id', 'unsigned'}}) return box.space.adm:format()[1].name",
       who=RW),
    ev("box.space.adm:create_index('sk', {parts = {1, 'unsigned'}})", who=RW),
    ev("box.schema.user.grant('rw', 'create', 'space', 'adm')"),
    ev("box.schema.user.grant('rw', 'drop', 'function', 'adm_f')"),
    ev("box.schema.func.drop('adm_f')", who=RW),
    ev("box.schema.user.grant('rw', 'drop', 'user', 'adm_user')"),
    ev("box.schema.user.drop('adm_user')", who=RW),
    ev("box.schema.user.grant('rw', 'alter', 'user', 'adm_user')"),
    ev("box.schema.user.passwd('adm_user', 'x')", who=RW),
    # -- drop and alter on an object type ---------------------------------------------------
    ev("box.schema.func.create('adm_f2') box.schema.space.create('adm3')"),
    ev("box.schema.func.drop('adm_f2')", who=RW),
    ev("box.schema.user.grant('rw', 'drop', 'function')"),
    ev("box.schema.func.drop('adm_f2') return box.schema.func.exists('adm_f2')", who=RW),
    ev("box.space.adm3:format({{'k', 'unsigned'}})", who=RW),
    ev("box.schema.user.grant('rw', 'alter', 'space')"),
    ev("box.space.adm3:format({{'k', 'unsigned'}}) box.space.adm3:rename('adm4')", who=RW),
    ev("box.space.adm4:drop()", who=RW),
    # -- the universe -----------------------------------------------------------------------
    ev("box.schema.space.create('s_top') box.space.s_top:create_index('pk')", who=TOP),
    ev("box.space.adm:create_index('sk3', {parts = {1, 'unsigned'}})", who=TOP),
    ev("box.schema.func.create('f_top') box.schema.func.drop('f_top')", who=TOP),
    ev("box.schema.user.create('u_top') box.schema.user.drop('u_top')", who=TOP),
    ev("box.schema.role.create('r_top') box.schema.role.drop('r_top')", who=TOP),
    ev("box.schema.user.grant('ex', 'read', 'space', 's_top')", who=TOP),
    ev("box.schema.user.grant('ex', 'read', 'space', 'adm')", who=TOP),
    ev("box.schema.user.grant('ex', 'read', 'universe')", who=TOP),
    ev("box.schema.user.grant('ex', 'write', 'space', 's_top')"),
    ev("box.schema.user.revoke('ex', 'write', 'space', 's_top')", who=TOP),
    ev("box.schema.user.revoke('ex', 'read', 'space', 's_top')", who=TOP),
    ev("box.space.s_top:drop() box.space.adm:drop()", who=TOP),
    # -- a setuid function creates for its caller, as its owner -----------------------------
    ev("box.schema.func.create('mk', {setuid = true, body = "
       "'function(n) box.schema.space.create(n) return box.space[n].id end'}) "
       "box.schema.user.grant('ex', 'execute', 'function', 'mk')"),
    call("mk", "s_mk", who=EX),
    ev("return box.space._space.index.name:get('s_mk')[2]"),
    ev("box.schema.space.create('s_mk2')", who=EX),
    # -- box.session.su checks the target user, not the caller -----------------------------
    ev("return box.session.su('admin', function() return box.session.euid() end)", who=RW),
    ev("return box.session.su('public', function() return 1 end)", who=RW),
    ev("return box.session.su('nobody', function() return 1 end)", who=RW),
    ev("box.schema.user.revoke('ex', 'session', 'universe')"),
    ev("return box.session.su('ex', function() return 1 end)", who=RW),
    ev("box.schema.user.grant('ex', 'session', 'universe')"),
    # -- a user changes its own password ----------------------------------------------------
    ev("box.schema.user.passwd('p2b')", who=EX),
    ev("return 1", who=("ex", "p2b")),
    ev("box.schema.user.passwd('ex', 'p2c')", who=("ex", "p2b")),
    ev("box.schema.user.passwd('p3b')", who=OWN),
    ev("return 2", who=("own", "p3b")),
]


def connect(server, who):
    if who == "admin":
        return ip.connect(server, "admin", server.password)
    return ip.connect(server, who[0], who[1])


def error_entries(body):
    stack = ((body or {}).get(ip.K_ERROR) or {}).get(0) or []
    return [(e.get(0), e.get(5), e.get(3), e.get(6)) for e in stack]


def reply(conn, rtype, body):
    h, b = conn.request(rtype, body)
    code = h.get(ip.K_TYPE, 0)
    if code & ip.TYPE_ERROR:
        return ("error", code & 0x7FFF, (b or {}).get(ip.K_ERROR_24), error_entries(b))
    return ("ok", (b or {}).get(ip.K_DATA))


def run_case(server, who, rtype, body):
    try:
        conn = connect(server, who)
    except ip.IprotoError as e:
        return ("auth error", e.args[0] if e.args else str(e))
    # A fresh connection per case: passwords are checked at auth time only.
    try:
        return reply(conn, rtype, body)
    finally:
        conn.close()


def run_all(server):
    return [run_case(server, *case[:3]) for case in CASES]


@pytest.fixture(scope="module")
def outcomes(module_server_factory):
    return {kind: run_all(module_server_factory(kind)()) for kind in ("tarantool", "spindle")}


def case_id(n, case):
    who, _rtype, body = case[:3]
    text = body.get(ip.K_EXPR) or body.get(ip.K_FUNCTION_NAME) or f"raw {body.get(ip.K_SPACE_ID)}"
    user = who if isinstance(who, str) else who[0]
    return f"{n:03d}-{user}-{text}"[:70]


def case_param(n, case):
    reason = case[3].get("gap") if len(case) > 3 else None
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(n, id=case_id(n, case), marks=marks)


@pytest.mark.parametrize("i", [case_param(n, c) for n, c in enumerate(CASES)])
def test_same_reply_as_tarantool(outcomes, i):
    want, got = outcomes["tarantool"][i], outcomes["spindle"][i]
    assert got == want, f"case {i} {CASES[i]}:\n  tarantool: {want}\n  spindle:   {got}"
