"""box.session.push over IPROTO: each push reaches the client as an IPROTO_CHUNK with the
request's sync before its reply, through tarantool-python's on_push; run against Tarantool
2.6 and spindle with the same expectations."""

import tarantool


def connect(srv):
    return tarantool.connect(srv.host, srv.port, user="admin", password=srv.password)


def test_pushes_arrive_before_the_reply(server_factory, server_kind):
    srv = server_factory(server_kind)()
    c = connect(srv)
    got = []
    r = c.eval("box.session.push(1) box.session.push({a = 2}) box.session.push('x') "
               "return 'done'", on_push=lambda v, ctx: got.append(v))
    assert got == [[1], [{"a": 2}], ["x"]]
    assert r.data == ["done"]
    # The connection goes on: pushes did not count as replies.
    assert c.eval("return 5").data == [5]
    c.close()


def test_push_usage_error(server_factory, server_kind):
    srv = server_factory(server_kind)()
    c = connect(srv)
    try:
        c.eval("return box.session.push(1, 'x')")
        raise AssertionError("no error")
    except tarantool.DatabaseError as e:
        assert e.args[0] == 32
        assert e.args[1] == "Usage: box.session.push(data)"
    c.close()


def test_many_pushes_from_many_calls(server_factory, server_kind):
    srv = server_factory(server_kind)()
    c = connect(srv)
    c.eval("function pusher(n) for i = 1, n do box.session.push(i) end return n end")
    for n in (0, 1, 50, 500):
        got = []
        r = c.call("pusher", n, on_push=lambda v, ctx: got.append(v[0]))
        assert r.data == [n]
        assert got == list(range(1, n + 1))
    c.close()
