"""box.schema against Tarantool 2.6, side by side: the same EVALs and CALLs run in order on
both servers (state builds up case by case), and every reply must match — the DATA values
exactly, or the error code and message.

Covered: spaces created and dropped with every option and shorthand (ids from `_schema`'s
max_id, if_not_exists, duplicates, option type errors), formats (all entry forms, legacy
types, get and set), indexes (every part form, stored `_index` rows, defaults, errors,
rename/alter/drop), rename, truncate (`_truncate` counter, len), `pairs(box.space)` and space
objects that follow renames; users and roles (create/exists/info/drop, passwords and their
hash, grants and revokes with their errors, role grants) and what a granted user can then do
over IPROTO as itself; `_func` functions with and without a body, called by CALL and through
`box.func`; `box.once`; and a restart, after which both servers show the same schema.

Cases spindle answers differently for reasons outside box.schema are marked `gap(...)` with the
reason and expected to fail (strict xfail), so that fixing the cause shows up here.
"""

import re

import pytest

from harness import iproto as ip


def ev(expr, *args, who="admin"):
    return (who, ip.EVAL, {ip.K_EXPR: expr, ip.K_TUPLE: list(args)})


def call(name, *args, who="admin"):
    return (who, ip.CALL, {ip.K_FUNCTION_NAME: name, ip.K_TUPLE: list(args)})


def gap(case, reason):
    """A case spindle is known to answer differently, for `reason` (outside box.schema)."""
    return case + ({"gap": reason},)


def unplaced(case):
    """A case whose Lua error message starts with a source position (`file:line: `), which
    is compared without it: Tarantool's points into its own box.schema code."""
    return case + ({"unplaced": True},)


def options(case):
    return case[3] if len(case) > 3 else {}


def without_position(result):
    if result[0] == "error" and isinstance(result[2], str):
        return result[:2] + (re.sub(r"^[^:\s]+:\d+: ", "", result[2]),)
    return result


COMPACT_PARTS = ("a compact [field, type] part takes is_nullable from the space format in "
                 "spindle_box::catalog; 2.6 ignores the format there")

U1 = ("u1", "pw1")
U1_NEW = ("u1", "new")
U2 = ("u2", "pw2")

CASES = [
    # -- spaces ---------------------------------------------------------------------------
    ev("return box.schema.space.create('a').id"),
    ev("return box.schema.space.create('a')"),
    ev("return box.schema.space.create('a', {if_not_exists = true}).id"),
    ev("return box.space._schema:get('max_id')"),
    ev("box.space.a:drop() return box.schema.space.create('b').id, box.space.a"),
    ev("return box.schema.space.create('c', {id = 600}).id"),
    ev("return box.schema.create_space('d').id"),
    ev("return box.schema.space.create('e', {bogus = 1})"),
    ev("return box.schema.space.create('e', {id = 'x'})"),
    ev("return box.schema.space.create(1)"),
    ev("return box.schema.space.create()"),
    ev("return box.schema.space.create('e', 'x')"),
    ev("return box.schema.space.create('e', {if_not_exists = 1})"),
    ev("return box.schema.space.create('e', {field_count = 'x'})"),
    ev("return box.schema.space.create('e', {format = 'x'})"),
    ev("return box.schema.space.create('e', {temporary = 1})"),
    ev("return box.schema.space.create('e', {user = 'nosuch'})"),
    ev("return box.schema.space.create('e', {engine = 'foo'})"),
    ev("return box.schema.space.create('e', {id = 600})"),
    ev("return box.schema.space.create('', {})"),
    ev("local s = box.schema.space.create('g', {temporary = true, field_count = 3, "
       "user = 'admin'}) return s.temporary, s.is_local, s.field_count, s.engine, "
       "box.space._space:get(s.id)"),
    ev("local s = box.schema.space.create('l', {is_local = true, engine = 'memtx'}) "
       "return s.is_local, s.temporary, box.space._space:get(s.id)"),
    ev("local s = box.schema.space.create('h', {format = {{name = 'id', type = 'unsigned'}, "
       "{'name', 'string'}, {'x', type = 'num'}, {name = 'y', type = 'STR'}, {'z'}}}) "
       "return s:format(), box.space._space:get(s.id)[7]"),
    ev("return box.schema.space.create('r', {format = {{'a', 'uint'}}})"),
    ev("return box.schema.space.create('r', {format = {{name = 1}}})"),
    ev("return box.space._schema:get('max_id')"),
    # formats
    ev("local k = box.schema.space.create('k') return k:format()"),
    ev("return box.space.k:format({{'id'}, {'n', 'bad'}})"),
    ev("box.space.k:format({{'id'}, {'n'}}) return box.space.k:format()"),
    ev("return box.space.k:format({{'id', 'uint'}, {name = 'n', type = 'NUM'}})"),
    ev("return box.space.k:format({{name = 1}})"),
    ev("return box.space.k:format('x')"),
    ev("box.space.k:format({{'a', 'unsigned', is_nullable = true}, "
       "{name = 'b', type = 'string', is_nullable = true}}) return box.space.k:format()"),
    ev("return box.space.k:format({{'a', 'unsigned'}, {'a', 'string'}})"),
    # -- indexes --------------------------------------------------------------------------
    ev("s = box.schema.space.create('s', {format = {{'id', 'unsigned'}, {'name', 'string'}, "
       "{'v', 'num'}}}) return s.id, s:create_index('pk').id"),
    ev("return box.space._index:select{s.id}"),
    ev("return s:create_index('pk')"),
    ev("return s:create_index('pk', {if_not_exists = true}).name"),
    ev("return s:create_index('n', {parts = {'name'}, unique = false}).id"),
    ev("return s:create_index('h', {type = 'HASH', parts = {2, 'str'}}).type"),
    ev("return s:create_index('t2', {type = 'TREE', parts = {{field = 3, type = 'num'}}}).type"),
    ev("return s:create_index('t3', {parts = {{3, 'string', is_nullable = true}}, "
       "unique = false})"),
    ev("return s:create_index('t4', {parts = {{'v', 'unsigned'}, {2, 'string'}}, id = 20})"),
    ev("return box.space._index:select{s.id}"),
    ev("return s:create_index('x', {bogus = 1})"),
    ev("return s:create_index('xn', {name = 'y'}).name, s.index.xn:drop()"),
    ev("return s:create_index('xs', {sequence = false, parts = {2, 'string'}, "
       "unique = false}).id, s.index.xs:drop()"),
    ev("return s:create_index('x', {type = 'bitset2'})"),
    ev("return s:create_index('x', {unique = 'yes'})"),
    ev("return s:create_index(5)"),
    ev("return s:create_index('x', 5)"),
    ev("return s:create_index('x', {parts = {}})"),
    ev("return s:create_index('x', {parts = 'x'})"),
    ev("return s:create_index('x', {parts = {{}}})"),
    ev("return s:create_index('x', {id = 'x'})"),
    ev("return s:create_index('x', {type = 'hash', unique = false})"),
    ev("return s.index.t4.parts, s.index.pk"),
    ev("s.index.t4:drop() return s.index.t4, box.space._index:get{s.id, 20}"),
    ev("s.index.t2:rename('t22') return s.index.t22.id, s.index.t2"),
    ev("s.index.t22:alter({parts = {{2, 'string'}}, unique = false, name = 't5'}) "
       "return box.space._index:get{s.id, 3}, s.index.t5.unique, s.index.t5.parts"),
    ev("return s.index.pk:drop()"),
    unplaced(ev("return s.drop()")),
    unplaced(ev("return s.create_index('x')")),
    unplaced(ev("return s.format()")),
    unplaced(ev("return s.truncate()")),
    unplaced(ev("return s.rename('x')")),
    unplaced(ev("return s.index.pk.drop()")),
    unplaced(ev("return s.index.pk.rename('x')")),
    unplaced(ev("return s.index.pk.alter({})")),
    ev("local f = box.schema.space.create('f', {format = {{'id', 'string'}, "
       "{'name', 'string', is_nullable = true}, {'v'}}}) "
       "return f:create_index('pk').parts, "
       "f:create_index('a', {parts = {{2, 'string', is_nullable = true}}, unique = false}).parts, "
       "f:create_index('b', {parts = {'name'}, unique = false}).parts, "
       "f:create_index('c', {parts = {3, 'unsigned', 1, 'string'}}).parts, "
       "f:create_index('d', {parts = {{field = 'v', type = 'unsigned'}}}).parts, "
       "f:create_index('e', {parts = {{1, 'string', is_nullable = false}}, type = 'hash'}).parts, "
       "box.space._index:select{f.id}"),
    ev("return box.space.f:create_index('g', {parts = {{field = 1}}}).parts"),
    ev("return box.space.f:create_index('z', {parts = {{'v'}}})"),
    ev("local t = box.schema.space.create('t') "
       "return t:create_index('pk', {parts = {1, 'num'}}).parts, t.index.pk, "
       "box.space._index:get{t.id, 0}"),
    ev("local t = box.space.t return t:format(), t.field_count, t.engine, t.temporary, "
       "t.is_local, t.enabled, t.index[0].type, t.index.pk.unique, t.index.pk.space_id"),
    # data, truncate, rename, drop
    ev("local t = box.space.t for i = 1, 5 do t:insert{i, 'x'} end return t:len(), t:select{3}"),
    ev("box.space.t:truncate() return box.space.t:len(), box.space.t:select{}, "
       "box.space._truncate:get{box.space.t.id}"),
    ev("box.space.t:insert{7} box.space.t:truncate() return box.space.t:len(), "
       "box.space._truncate:get{box.space.t.id}"),
    ev("local q = box.schema.space.create('q') return q:insert{1}"),
    ev("box.space.q:truncate() return box.space.q:len()"),
    ev("local t = box.space.t t:rename('t2') return box.space.t, box.space.t2.name, t.name, "
       "box.space[t.id].name"),
    ev("return box.space.t2:rename(5)"),
    ev("local t = box.space.t2 t:drop() return box.space.t2, box.space[t.id], "
       "box.space._index:select{t.id}, box.space._truncate:get{t.id}"),
    ev("local q = box.space.q q:drop() return q:drop()"),
    ev("local q = box.schema.space.create('qq') q:create_index('pk') q:insert{1} "
       "return q:drop(), box.space.qq"),
    # box.space as a table
    ev("local s = box.space.s local r = {} for k, v in pairs(s) do "
       "if type(v) ~= 'function' and type(v) ~= 'table' and type(v) ~= 'cdata' then "
       "r[k] = v end end return r"),
    ev("local s = box.space.s local r = {} for k, v in pairs(s.index) do "
       "r[#r + 1] = tostring(k) end table.sort(r) return r"),
    ev("local r = {} for k, v in pairs(box.space._space.index.name) do "
       "if type(v) ~= 'function' and type(v) ~= 'table' and type(v) ~= 'cdata' then "
       "r[k] = v end end return r, box.space._space.index.name.parts"),
    ev("return box.space._space.id, box.space._vspace.engine, box.space._schema.enabled"),
    ev("local n = 0 for k, v in pairs(box.space) do n = n + 1 end return n"),
    ev("local names = {} for k, v in pairs(box.space) do "
       "if type(k) == 'string' then names[#names + 1] = k end end "
       "table.sort(names) return names"),
    ev("box.space._space:insert{700, 1, 'raw', 'memtx', 0, {}, {}} "
       "return box.space.raw.id, box.space[700].name"),
    ev("box.space._space:delete{700} return box.space._space:get{700}"),
    ev("return box.space.raw"),
    ev("local ri = box.schema.space.create('ri') "
       "box.space._index:insert{ri.id, 0, 'pk', 'tree', {unique = true}, {{0, 'unsigned'}}} "
       "return ri.index.pk.id, box.space.ri.index[0].name"),
    gap(ev("local kn = box.schema.space.create('kn', {format = {{'a', 'unsigned', "
           "is_nullable = true}}}) box.space._index:insert{kn.id, 0, 'pk', 'tree', "
           "{unique = true}, {{0, 'unsigned'}}} return kn.index.pk.id"), COMPACT_PARTS),
    ev("return box.space.k:create_index('pk', {parts = {{1, 'unsigned', "
       "is_nullable = false}}}).parts, box.space._index:get{box.space.k.id, 0}"),
    ev("local tmp = box.schema.space.create('tmp', {temporary = true}) "
       "tmp:create_index('pk') tmp:insert{1} tmp:insert{2} tmp:truncate() "
       "return tmp:len(), box.space._truncate:get{tmp.id}"),
    ev("local x = box.schema.space.create('x') x:create_index('pk') "
       "x:create_index('sk', {parts = {2, 'string'}}) x:insert{1, 'a'} "
       "return x:create_index('bad', {parts = {3, 'unsigned'}})"),
    ev("local x = box.space.x x:insert{2, 'a', 5} "
       "return x:create_index('u', {parts = {2, 'string'}})"),
    ev("return box.space.x.index.sk:alter({id = 7}), box.space.x.index.sk.id, "
       "box.space._index:select{box.space.x.id}"),
    ev("return box.space.x.index.sk:alter({bogus = 1})"),
    ev("return box.space.x.index.sk:alter({if_not_exists = true})"),
    ev("return box.space.x.index.sk:alter({type = 'hash'}), box.space.x.index.sk.type"),
    ev("return box.space.x.index.sk:rename(1)"),
    ev("local i = box.space.x.index.sk i:drop() return i:drop()"),
    ev("return box.space.x.index.pk:drop()"),
    ev("box.space.x:truncate() "
       "return box.space.x.index.pk:drop(), box.space.x:drop(), box.space.x"),
    ev("return box.space._schema:drop()"),
    ev("return box.space._space:create_index('pk')"),
    ev("return box.space._schema:truncate()"),
    # -- users and roles ------------------------------------------------------------------
    ev("return box.schema.user.create('u1', {password = 'pw1'})"),
    ev("return box.schema.user.create('u1')"),
    ev("return box.schema.user.create('u1', {if_not_exists = true})"),
    ev("return box.space._user.index.name:get('u1')"),
    ev("return box.schema.user.exists('u1'), box.schema.user.exists('nosuch'), "
       "box.schema.user.exists(1), box.schema.user.exists('public')"),
    ev("return box.schema.user.info('u1')"),
    ev("return box.schema.user.info('nosuch')"),
    ev("return box.schema.user.info('admin')"),
    ev("return box.schema.user.info('guest')"),
    ev("return box.schema.user.info()"),
    ev("return box.schema.user.password('pw')"),
    ev("return box.schema.user.create('u2', {password = 1})"),
    ev("return box.schema.user.create('u2', {bogus = 1})"),
    ev("return box.schema.user.create('u2', 'y')"),
    ev("return box.schema.user.create('public')"),
    # what a new user can do
    ev("return 1", who=U1),
    call("box.space.s:select", who=U1),
    ev("return box.schema.user.grant('u1', 'read,write,execute', 'universe')"),
    ev("return box.schema.user.grant('u1', 'read,write,execute', 'universe')"),
    ev("return box.schema.user.grant('u1', 'read,write,execute', 'universe', nil, "
       "{if_not_exists = true})"),
    ev("return box.schema.user.info('u1')"),
    ev("return box.space.s:insert{1, 'one', 1}", who=U1),
    ev("return box.space.s:select{}", who=U1),
    ev("return box.schema.user.revoke('u1', 'read,write,execute', 'universe')"),
    ev("return box.schema.user.revoke('u1', 'read,write,execute', 'universe')"),
    ev("return box.schema.user.revoke('u1', 'read', 'universe', nil, {if_exists = true})"),
    ev("return 1", who=U1),
    ev("box.schema.user.grant('u1', 'read', 'universe') "
       "return box.schema.user.grant('u1', 'read,write', 'universe')"),
    ev("return box.schema.user.revoke('u1', 'read,write,execute', 'universe')"),
    ev("return box.schema.user.grant('u1', 'execute', 'universe')"),
    ev("return 1", who=U1),
    ev("return box.space.s:select{}", who=U1),
    call("box.space.s:select", who=U1),
    ev("return box.schema.user.grant('u1', 'read', 'space', 's')"),
    ev("return box.space.s:select{}", who=U1),
    call("box.space.s:select", who=U1),
    ev("return box.space.s:insert{2, 'two', 2}", who=U1),
    ev("return box.space.k:select{}", who=U1),
    ev("return box.schema.user.grant('u1', 'write', 'space', 's')"),
    ev("return box.space.s:insert{2, 'two', 2}", who=U1),
    ev("return box.schema.user.grant('u1', 'read', 'space', 's')"),
    ev("return box.schema.user.grant('u1', 'read', 'space', 'nosuch')"),
    ev("return box.schema.user.grant('u1', 'read', 'nosuchtype', 'x')"),
    ev("return box.schema.user.grant('u1', 'bogus', 'universe')"),
    ev("return box.schema.user.grant('u1', 'read', 'function', 'f')"),
    ev("return box.schema.user.grant('u1', 'session', 'space', 's')"),
    ev("return box.schema.user.grant('u1', 'READ, write', 'space', 's')"),
    ev("return box.schema.user.grant('nosuch', 'read', 'universe')"),
    ev("return box.schema.user.grant('u1', 'execute', 'function', 'nosuchfunc')"),
    ev("return box.schema.user.grant('u1', 'read')"),
    ev("return box.schema.user.grant('u1', 'read', 'space')"),
    ev("return box.schema.user.grant('u1', 'read', 'space')"),
    ev("return box.schema.user.revoke('u1', 'read', 'space')"),
    ev("return box.schema.user.revoke('u1', 'read', 'space')"),
    ev("return box.schema.user.grant('u1', 'execute', 'function')"),
    ev("return box.schema.user.grant('u1', 'create', 'user', 'u1')"),
    ev("return box.schema.user.grant('u1', 'usage', 'sequence', 'nosuchseq')"),
    ev("return box.schema.user.grant('u1', 'read', 'universe', 'anything')"),
    ev("return box.schema.user.grant('u1', 1, 'space', 'k')"),
    ev("return box.schema.user.grant('u1', 1, 'space', 'k')"),
    ev("return box.schema.user.grant('u1', 'read', 'space', box.space.k.id)"),
    ev("return box.schema.user.revoke('u1', 'read', 'space', 'k', {if_exists = true, x = 1})"),
    ev("return box.schema.user.grant('u1', 'read', 'space', 'k', {grantor = 'nosuch'})"),
    ev("return box.schema.user.revoke('u1', 'read', 'space', 'k')"),
    ev("return box.schema.user.info('u1')"),
    call("box.space.s:select", who=U1),
    ev("return box.space.s:insert{2, 'two', 2}", who=U1),
    ev("return box.space.s.index.pk:select{}", who=U1),
    ev("return box.schema.user.grant('u1', 'super')"),
    ev("return box.schema.user.grant('u1', 'super')"),
    ev("return box.schema.user.grant('u1', 'super', nil, nil, {if_not_exists = true})"),
    ev("return box.schema.user.grant('u1', 'nosuchrole')"),
    ev("return box.schema.user.grant('u1', 'replication')"),
    ev("return box.schema.user.grant('u1', 'create,read,write,drop,alter', 'space', 'k')"),
    ev("return box.schema.user.grant('u1', 'session,usage', 'universe', nil, "
       "{if_not_exists = true})"),
    ev("return box.schema.user.info('u1')"),
    ev("return box.space.k:select{}", who=U1),
    ev("return box.schema.user.revoke('u1', 'super')"),
    ev("return box.schema.user.revoke('u1', 'super')"),
    ev("return box.schema.user.revoke('u1', 'read', 'space', 's')"),
    ev("return box.schema.user.revoke('u1', 'write', 'space', 's')"),
    ev("return box.schema.user.revoke('u1', 'read', 'space', 's')"),
    ev("return box.schema.user.revoke('u1', 'nosuchrole')"),
    ev("return box.schema.user.info('u1')"),
    ev("return box.space.s:insert{3, 'three', 3}", who=U1),
    ev("return box.schema.space.create('byu1')", who=U1),
    ev("return box.schema.user.create('byu1')", who=U1),
    ev("return box.schema.func.create('byu1')", who=U1),
    ev("return box.schema.user.grant('u1', 'read', 'space', 's')", who=U1),
    ev("return box.space.s:truncate()", who=U1),
    ev("return box.space.s:drop()", who=U1),
    ev("return box.space.s:create_index('byu1')", who=U1),
    ev("return box.space.s:format()", who=U1),
    ev("return box.schema.user.info()", who=U1),
    ev("return box.schema.user.info('admin')", who=U1),
    ev("return box.schema.user.passwd('u1', 'new')"),
    ev("return box.space._user.index.name:get('u1')"),
    ev("return 1", who=U1),
    ev("return 1", who=U1_NEW),
    ev("return box.schema.user.passwd('nosuch', 'x')"),
    ev("return box.schema.user.passwd()"),
    ev("return box.schema.user.create('u2', {password = 'pw2'})"),
    ev("return 2", who=U2),
    ev("return box.schema.user.passwd('u2', 'pw2') or box.space._user.index.name:get('u2')[5]"),
    ev("box.schema.user.grant('u2', 'execute', 'universe') "
       "return box.schema.user.info('u2')"),
    ev("return box.schema.user.passwd('pw2b')", who=U2),
    ev("return 3", who=("u2", "pw2b")),
    ev("return box.schema.user.passwd('u2', 'pw2') or box.schema.user.revoke('u2', 'execute', "
       "'universe')"),
    ev("return box.schema.space.create('u1space', {user = 'u1'}):create_index('pk').id, "
       "box.space.u1space.id"),
    # roles
    ev("return box.schema.role.create('r1')"),
    ev("return box.schema.role.create('r1')"),
    ev("return box.schema.role.create('r1', {if_not_exists = true})"),
    ev("return box.schema.role.create('u1')"),
    ev("return box.schema.role.exists('r1'), box.schema.role.exists('u1'), "
       "box.schema.role.exists('admin'), box.schema.role.exists('public')"),
    ev("return box.schema.role.grant('r1', 'read,write', 'space', 's')"),
    ev("return box.schema.role.grant('r1', 'read,write', 'space', 's')"),
    ev("return box.schema.role.grant('r1', 'execute', 'universe')"),
    ev("return box.schema.role.info('r1')"),
    ev("return box.schema.role.info('u1')"),
    ev("return box.schema.role.grant('nosuch', 'public')"),
    ev("return box.schema.role.revoke('r1', 'read,write,execute', 'space', 'k')"),
    ev("return box.space.s:select{}", who=U2),
    ev("return box.schema.user.grant('u2', 'r1')"),
    ev("return box.schema.user.grant('u2', 'execute', 'role', 'r1')"),
    ev("return box.schema.user.info('u2')"),
    ev("return box.space.s:select{}", who=U2),
    ev("return box.space.s:replace{4, 'four', 4}", who=U2),
    ev("return box.schema.role.revoke('u2', 'r1')"),
    ev("return box.schema.user.revoke('u2', 'r1')"),
    ev("return box.schema.user.revoke('u2', 'r1')"),
    ev("return box.space.s:select{}", who=U2),
    ev("box.schema.user.grant('u2', 'r1') return box.schema.role.drop('r1')"),
    ev("return box.schema.user.info('u2')"),
    ev("return box.schema.role.drop('r1')"),
    ev("return box.schema.role.drop('r1', {if_exists = true})"),
    ev("return box.schema.role.drop('public')"),
    ev("return box.schema.role.drop('u2')"),
    ev("return box.schema.role.info('nosuch')"),
    # drops
    ev("return box.schema.user.drop('u2')"),
    ev("return box.schema.user.drop('u2')"),
    ev("return box.schema.user.drop('u2', {if_exists = true})"),
    ev("return box.schema.user.drop('admin')"),
    ev("return box.schema.user.drop('guest')"),
    ev("return box.schema.user.drop('public')"),
    ev("return box.schema.user.exists('u2'), box.space._priv.index.primary:select{33}"),
    # guest, as connector test scripts set it up
    ev("return 1", who="guest"),
    ev("return box.schema.user.grant('guest', 'read,write,execute', 'universe')"),
    ev("return box.schema.user.grant('guest', 'read,write,execute', 'universe', nil, "
       "{if_not_exists = true})"),
    ev("return box.space.s:select{1}", who="guest"),
    ev("return box.schema.user.revoke('guest', 'read,write,execute', 'universe')"),
    ev("return 1", who="guest"),
    ev("return box.schema.user.grant('guest', 'super'), box.schema.user.info('guest')"),
    ev("return box.space.s:count()", who="guest"),
    ev("return box.schema.user.revoke('guest', 'super')"),
    ev("local t = box.schema.space.create('tester', {id = 999, if_not_exists = true, "
       "format = {{name = 'id', type = 'unsigned'}, {name = 'name', type = 'string'}}}) "
       "local t2 = box.schema.space.create('tester', {id = 999, if_not_exists = true}) "
       "local p = t:create_index('primary', {type = 'tree', parts = {1, 'unsigned'}, "
       "if_not_exists = true}) "
       "local p2 = t:create_index('primary', {type = 'hash', parts = {2, 'string'}, "
       "if_not_exists = true}) "
       "return t == t2, p == p2, p.type, p.parts, t.id"),
    # -- functions ------------------------------------------------------------------------
    ev("local n = 0 for k, v in pairs(box.func) do n = n + 1 end return n, box.func.LUA.id"),
    ev("return box.schema.func.create('f1')"),
    ev("return box.schema.func.create('f1')"),
    ev("return box.schema.func.create('f1', {if_not_exists = true})"),
    ev("local t = box.space._func.index.name:get('f1') return t[1], t[2], t[3], t[4], t[5], "
       "t[6], t[7], t[8], t[9], t[10], t[11], t[12], t[13], t[14], t[15], t[17]"),
    ev("return box.schema.func.create('f2', {body = 'function(a) return a * 2 end', "
       "setuid = true})"),
    ev("local t = box.space._func.index.name:get('f2') return t[1], t[4], t[5], t[6]"),
    ev("return box.schema.func.create('f3', {bogus = 1})"),
    ev("return box.schema.func.create('f3', {body = 'x x'})"),
    ev("return box.schema.func.create('f3', {setuid = 'yes'})"),
    ev("return box.schema.func.create('f3', {body = '1'})"),
    ev("return box.schema.func.create('f3', {body = 'error(\"at load\")'})"),
    ev("return box.schema.func.create(5)"),
    ev("return box.schema.func.drop(66)"),
    ev("return box.schema.func.drop('LUA')"),
    unplaced(ev("return box.func.f2:call(21)")),
    unplaced(ev("return box.func.f2.call({21})")),
    ev("return box.schema.func.exists('f1'), box.schema.func.exists('nosuch'), "
       "box.schema.func.exists(1)"),
    ev("return box.func.f2:call({21})"),
    ev("function f1(x) return 'global', x end function f2() return 'global f2' end "
       "return box.func.f1:call({1})"),
    ev("return box.func.f2.name, box.func.f2.setuid, box.func.f2.language, box.func.f2.id, "
       "box.func.nosuch"),
    ev("return box.func.f1, box.func.f2"),
    ev("local names = {} for k, v in pairs(box.func) do "
       "if type(k) == 'string' and k:sub(1, 1) == 'f' then names[#names + 1] = k end end "
       "table.sort(names) return names"),
    ev("local n = 0 for k, v in pairs(box.func) do n = n + 1 end return n"),
    ev("return box.func.f1:call({1, 2}), box.func.f1:call(), box.func.f2:call({4})"),
    call("f1", 5),
    call("f2", 21),
    call("f2", "x"),
    ev("return box.schema.func.create('f4', {body = 'function(a, b) return a, b, "
       "box.space.s.id end', language = 'lua', is_deterministic = true})"),
    call("f4", 1, 2),
    call("f4", 1, 2, who=U1_NEW),
    ev("return box.schema.user.revoke('u1', 'execute', 'universe'), "
       "box.schema.user.revoke('u1', 'execute', 'function')"),
    call("f4", 1, 2, who=U1_NEW),
    call("nosuch", who=U1_NEW),
    ev("return box.schema.user.grant('u1', 'execute', 'function', 'f4')"),
    ev("return box.schema.user.info('u1')"),
    call("f4", 1, 2, who=U1_NEW),
    call("f2", 1, who=U1_NEW),
    ev("return box.schema.user.grant('u1', 'execute', 'function')"),
    call("f2", 1, who=U1_NEW),
    ev("return box.schema.func.drop('f1')"),
    ev("return box.schema.func.drop('f1')"),
    ev("return box.schema.func.drop('f1', {if_exists = true})"),
    ev("return box.schema.func.exists('f1'), box.func.f1"),
    call("f1", 5),
    ev("return box.schema.func.drop('f4'), box.schema.user.info('u1')"),
    # -- box.once -------------------------------------------------------------------------
    ev("n = 0 box.once('k', function(a) n = n + a end, 5) "
       "box.once('k', function(a) n = n + a end, 5) return n, box.space._schema:get('oncek')"),
    ev("return box.once('k', function() return 'again' end)"),
    ev("return box.once('k')"),
    ev("return box.once(1, function() end)"),
    ev("return box.once('z', function(...) return ... end, 1, 2)"),
    ev("return box.schema.user.drop('u1'), box.schema.user.exists('u1'), box.space.u1space, "
       "box.space._priv.index.primary:select{32}"),
    # -- setuid functions: the owner's rights, the caller's session -------------------------
    ev("box.schema.user.create('su', {password = 'supw'}) "
       "local s = box.schema.space.create('secret') s:create_index('pk') s:replace{1, 'hidden'} "
       "function peek() return box.session.euid(), box.session.uid(), box.session.user(), "
       "box.space.secret:get(1) end "
       "box.schema.func.create('peek', {setuid = true}) "
       "box.schema.func.create('peek_plain') "
       "function peek_plain() return box.space.secret:get(1) end "
       "box.schema.user.grant('su', 'execute', 'function', 'peek') "
       "box.schema.user.grant('su', 'execute', 'function', 'peek_plain') return true"),
    call("peek", who=("su", "supw")),
    call("peek_plain", who=("su", "supw")),
    call("peek", who="guest"),
]


def connect(server, who):
    if who == "guest":
        return ip.connect(server)
    if who == "admin":
        return ip.connect(server, "admin", server.password)
    return ip.connect(server, who[0], who[1])


def reply(conn, rtype, body):
    h, b = conn.request(rtype, body)
    code = h.get(ip.K_TYPE, 0)
    if code & ip.TYPE_ERROR:
        return ("error", code & 0x7FFF, (b or {}).get(ip.K_ERROR_24))
    return ("ok", (b or {}).get(ip.K_DATA))


def run_case(server, conns, who, rtype, body):
    if who not in conns:
        try:
            conns[who] = connect(server, who)
        except ip.IprotoError as e:
            return ("auth error", e.args[0] if e.args else str(e))
    try:
        return reply(conns[who], rtype, body)
    finally:
        # A user's rights are looked up per request, but its password only at auth time:
        # users reconnect for every case so that password changes are seen.
        if who not in ("admin", "guest"):
            conns.pop(who).close()


@pytest.fixture(scope="module")
def outcomes(module_server_factory):
    """Every case's reply from each server, in case order."""
    results = {}
    for kind in ("tarantool", "spindle"):
        srv = module_server_factory(kind)()
        conns = {}
        try:
            results[kind] = [run_case(srv, conns, *case[:3]) for case in CASES]
        finally:
            for c in conns.values():
                c.close()
    return results


def case_id(n, case):
    who, _rtype, body = case[:3]
    text = body.get(ip.K_EXPR) or body.get(ip.K_FUNCTION_NAME)
    user = who if isinstance(who, str) else who[0]
    return f"{n:03d}-{user}-{text}"[:70]


def case_param(n, case):
    reason = options(case).get("gap")
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(n, id=case_id(n, case), marks=marks)


@pytest.mark.parametrize("i", [case_param(n, c) for n, c in enumerate(CASES)])
def test_same_reply_as_tarantool(outcomes, i):
    want, got = outcomes["tarantool"][i], outcomes["spindle"][i]
    if options(CASES[i]).get("unplaced"):
        want, got = without_position(want), without_position(got)
    assert got == want, f"case {i} {CASES[i]}:\n  tarantool: {want}\n  spindle:   {got}"


RESTART_SETUP = [
    "box.schema.space.create('kept', {format = {{'id', 'unsigned'}, {'v', 'string'}}})",
    "box.space.kept:create_index('pk') box.space.kept:create_index('v', {parts = {'v'}})",
    "box.space.kept:insert{1, 'a'} box.space.kept:insert{2, 'b'}",
    "box.schema.user.create('keeper', {password = 'kpw'})",
    "box.schema.user.grant('keeper', 'read', 'space', 'kept') "
    "box.schema.user.grant('keeper', 'execute', 'universe')",
    "box.schema.func.create('kept_f', {body = 'function(x) return x + 100 end'})",
    "once_runs = 0 box.once('kept_once', function() once_runs = once_runs + 1 end)",
    "box.space.kept:rename('kept2')",
]

RESTART_CHECKS = [
    ev("return box.space.kept, box.space.kept2.id, box.space.kept2:format(), "
       "box.space.kept2.index.v.parts, box.space.kept2:select{}"),
    ev("once_runs = 0 box.once('kept_once', function() once_runs = once_runs + 1 end) "
       "return once_runs"),
    ev("return box.schema.user.info('keeper')"),
    call("kept_f", 1),
    ev("return box.space.kept2.index.v:select{'b'}", who=("keeper", "kpw")),
    ev("return box.space.kept2:insert{3, 'c'}", who=("keeper", "kpw")),
    ev("box.space.kept2:truncate() return box.space.kept2:len()"),
]


def test_schema_survives_a_restart(server_factory):
    """DDL made through box.schema is logged like any change of the system spaces: after a
    restart both servers show the same schema, users, functions and once-keys."""
    got = {}
    for kind in ("tarantool", "spindle"):
        srv = server_factory(kind)()
        with connect(srv, "admin") as admin:
            for expr in RESTART_SETUP:
                reply(admin, ip.EVAL, {ip.K_EXPR: expr, ip.K_TUPLE: []})
        srv.restart()
        conns = {}
        try:
            got[kind] = [run_case(srv, conns, *case) for case in RESTART_CHECKS]
        finally:
            for c in conns.values():
                c.close()
    assert got["spindle"] == got["tarantool"]
