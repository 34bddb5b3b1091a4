"""What ends a Lua request without ending the process (spindle only: Tarantool 2.6 itself dies
on deep C recursion): a Lua stack overflow, nested `string.gsub`/`table.sort` callbacks past
the C-stack guard, running out of the Lua memory limit, and an error inside a fiber. After
each, the same connection gets the next answer and memory is given back."""

import pytest
import tarantool

pytestmark = pytest.mark.spindle_only

GSUB = ("local function g(n) if n == 0 then return 'x' end "
        "return (string.gsub('a', 'a', function() return g(n - 1) end)) end return g(...)")
# Only the first comparison of each level recurses: the depth grows linearly.
SORT = ("local function s(n) local t = {3, 1, 2} table.sort(t, function(a, b) "
        "if n > 0 then local m = n n = 0 s(m - 1) end return a < b end) return t[1] end "
        "return s(...)")


@pytest.fixture(scope="module")
def conn(module_server_factory):
    srv = module_server_factory("spindle")()
    c = tarantool.connect(srv.host, srv.port, user="admin", password=srv.password)
    yield c
    c.close()


def error_of(conn, expr, *args):
    with pytest.raises(tarantool.DatabaseError) as e:
        conn.eval(expr, list(args))
    return e.value.args[0], e.value.args[1]


def test_lua_stack_overflow_is_an_error(conn):
    assert error_of(conn, "local function f() return f() + 1 end return f()") == (
        32, "eval:1: stack overflow")
    assert conn.eval("return 1").data == [1]


@pytest.mark.parametrize("expr", [GSUB, SORT], ids=["gsub", "sort"])
def test_deep_c_callbacks_are_an_error(conn, expr):
    assert conn.eval(expr, [30]).data[0] in ("x", 1)
    assert error_of(conn, expr, 5000) == (32, "eval:1: C stack overflow")
    # The guard's count went back down: the same depth works again.
    assert conn.eval(expr, [30]).data[0] in ("x", 1)


def test_out_of_lua_memory_is_an_error(conn):
    code, message = error_of(
        conn, "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1e6) .. i end")
    assert (code, message) == (32, "not enough memory")
    assert conn.eval("collectgarbage() return collectgarbage('count') < 100 * 1024").data == [True]


def test_error_in_a_fiber_leaves_the_server_serving(conn):
    conn.eval("require('fiber').create(function() error('boom in a fiber') end)")
    assert conn.eval("return 2").data == [2]


def test_sql_says_it_is_not_supported(conn):
    for expr in ("return box.execute('SELECT 1')", "return box.prepare('SELECT 1')"):
        assert error_of(conn, expr) == (5, "SQL is not supported yet")
