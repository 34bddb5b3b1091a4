"""IPROTO_ID feature 2, ERROR_EXTENSION (issue 16): a session whose client announced it gets
box.error values inside CALL/EVAL results as MP_EXT type 3 (MP_ERROR), the payload being the
error-stack map of IPROTO_ERROR (0x52); other sessions keep getting the error's message as a
string. With the default compat version (2.6.0) nothing changes, compared with a real
Tarantool 2.6.
"""

import msgpack
import pytest

from harness import iproto as ip

ID, K_FEATURES = 73, 0x55
MP_ERROR = 3
# Error-stack keys (crates/types/src/iproto.rs, error_key).
STACK, E_TYPE, E_FILE, E_LINE, E_MESSAGE, E_ERRNO, E_CODE, E_FIELDS = 0, 0, 1, 2, 3, 4, 5, 6

MAKE = "return box.error.new{code = 4242, reason = 'custom failure'}"


@pytest.fixture
def server(spindle_server):
    srv = spindle_server(extra_args=("--compat-version", "2.11.0"))
    with ip.connect(srv, "admin", srv.password) as c:
        c.call(ip.EVAL, {ip.K_EXPR: "function make_err(c, r) return box.error.new{code = c, reason = r} end",
                         ip.K_TUPLE: []})
    return srv


def session(srv, features):
    c = ip.connect(srv, "admin", srv.password)
    if features is not None:
        h, _ = c.request(ID, {K_FEATURES: features})
        assert h.get(ip.K_TYPE) == ip.OK
    return c


def stack_of(value):
    assert isinstance(value, msgpack.ExtType), value
    assert value.code == MP_ERROR
    payload = msgpack.unpackb(value.data, raw=False, strict_map_key=False)
    assert list(payload) == [STACK]
    return payload[STACK]


def test_call_and_eval_results_carry_mp_error(server):
    with session(server, [0, 1, 2, 3]) as c:
        for rtype, body in ((ip.CALL, {ip.K_FUNCTION_NAME: "make_err", ip.K_TUPLE: [4242, "custom failure"]}),
                            (ip.EVAL, {ip.K_EXPR: MAKE, ip.K_TUPLE: []})):
            [value] = c.call(rtype, body)
            [entry] = stack_of(value)
            assert entry[E_TYPE] == "ClientError"
            assert entry[E_CODE] == 4242
            assert entry[E_MESSAGE] == "custom failure"
            assert entry[E_ERRNO] == 0
            assert isinstance(entry[E_FILE], str) and entry[E_LINE] > 0


def test_nested_errors_and_causes(server):
    with session(server, [2]) as c:
        expr = ("local e = box.error.new{code = 1, reason = 'outer'} "
                "e:set_prev(box.error.new{code = 2, reason = 'inner'}) "
                "return {e, 'plain', {k = e}}")
        [[first, plain, inner]] = c.call(ip.EVAL, {ip.K_EXPR: expr, ip.K_TUPLE: []})
        assert plain == "plain"
        for value in (first, inner["k"]):
            stack = stack_of(value)
            assert [(e[E_CODE], e[E_MESSAGE]) for e in stack] == [(1, "outer"), (2, "inner")]


@pytest.mark.parametrize("features", [None, [0, 1, 3]])
def test_without_the_feature_errors_are_their_message(server, features):
    with session(server, features) as c:
        assert c.call(ip.EVAL, {ip.K_EXPR: MAKE, ip.K_TUPLE: []}) == ["custom failure"]


def test_an_error_raised_is_still_an_error_reply(server):
    with session(server, [2]) as c:
        with pytest.raises(ip.IprotoError) as e:
            c.call(ip.EVAL, {ip.K_EXPR: "box.error{code = 4242, reason = 'raised'}", ip.K_TUPLE: []})
        assert (e.value.code, e.value.message) == (4242, "raised")


@pytest.mark.parametrize("kind", ["tarantool", "spindle"])
def test_default_compat_keeps_the_2_6_encoding(kind, server_factory):
    """2.6 has no ID: the request is unknown and an error result is its message."""
    srv = server_factory(kind)()
    with ip.connect(srv, "admin", srv.password) as c:
        h, b = c.request(ID, {K_FEATURES: [2]})
        assert h.get(ip.K_TYPE) == ip.TYPE_ERROR | 48
        assert c.call(ip.EVAL, {ip.K_EXPR: MAKE, ip.K_TUPLE: []}) == ["custom failure"]


def mp_error(*entries, extra=None):
    """An MP_ERROR value holding `entries` (dicts of error-stack keys)."""
    payload = {STACK: list(entries)}
    if extra:
        payload.update(extra)
    return msgpack.ExtType(MP_ERROR, msgpack.packb(payload, use_bin_type=True))


def entry(code, message, etype="ClientError", fields=None):
    e = {E_TYPE: etype, E_FILE: "client.lua", E_LINE: 7, E_MESSAGE: message, E_ERRNO: 0,
         E_CODE: code}
    if fields is not None:
        e[E_FIELDS] = fields
    return e


@pytest.mark.parametrize("features", [None, [2]])
def test_an_mp_error_argument_is_a_box_error(server, features):
    arg = mp_error(entry(77, "from the client"), entry(78, "its cause", "CustomError"),
                   extra={0x7F: [1, {2: 3}]})
    with session(server, features) as c:
        expr = ("local e = ... return box.error.is(e), e.code, e.message, e.type, "
                "e.trace[1].file, e.trace[1].line, e.prev.code, e.prev.type, e.prev.prev == nil")
        assert c.call(ip.EVAL, {ip.K_EXPR: expr, ip.K_TUPLE: [arg]}) == [
            True, 77, "from the client", "ClientError", "client.lua", 7, 78, "CustomError", True]
        fields = c.call(ip.EVAL, {ip.K_EXPR: "local e = ... return e.object_name, e.code",
                                  ip.K_TUPLE: [mp_error(entry(42, "denied", "AccessDeniedError",
                                                              {"object_name": "t"}))]})
        assert fields == ["t", 42]
        [back] = c.call(ip.EVAL, {ip.K_EXPR: "return ...", ip.K_TUPLE: [arg]})
        if features is None:
            assert back == "from the client"
        else:
            stack = stack_of(back)
            # Known gap: a type spindle has no ErrorKind for goes back as ClientError.
            assert [(e[E_CODE], e[E_MESSAGE], e[E_TYPE]) for e in stack] == [
                (77, "from the client", "ClientError"), (78, "its cause", "ClientError")]
            assert (stack[0][E_FILE], stack[0][E_LINE]) == ("client.lua", 7)


@pytest.mark.parametrize("payload", [
    b"", b"\x90", b"\x80", b"\x81\x00\x90", b"\x81\x00\x91\xc0", b"\x81\x00\x91\x81\x05\xa1x",
    b"\x81\x00\x91\x81\x03\x01", b"\x81\x00\x92\x80", b"\x81\x00\x91\x80\xc0", b"\x81\x00",
])
def test_a_malformed_mp_error_argument_is_invalid_msgpack(server, payload):
    with session(server, [2]) as c:
        with pytest.raises(ip.IprotoError) as e:
            c.call(ip.EVAL, {ip.K_EXPR: "return ...", ip.K_TUPLE: [msgpack.ExtType(MP_ERROR, payload)]})
        assert e.value.code == 20, e.value.message
        assert c.call(ip.EVAL, {ip.K_EXPR: "return 1", ip.K_TUPLE: []}) == [1]


@pytest.mark.parametrize("features", [None, [2]])
def test_pushed_errors_follow_the_session(server, features):
    with session(server, features) as c:
        c.send_bytes(ip.packet({ip.K_TYPE: ip.EVAL, ip.K_SYNC: 900},
                               {ip.K_EXPR: "box.session.push(box.error.new{code = 5, reason = 'pushed'}) "
                                           "return 1", ip.K_TUPLE: []}))
        h, b, _ = c.read_packet()
        assert h[ip.K_TYPE] == 0x80 and h[ip.K_SYNC] == 900
        [value] = b[ip.K_DATA]
        if features is None:
            assert value == "pushed"
        else:
            assert [(e[E_CODE], e[E_MESSAGE]) for e in stack_of(value)] == [(5, "pushed")]
        h, b, _ = c.read_packet()
        assert h[ip.K_TYPE] == ip.OK and b[ip.K_DATA] == [1]
