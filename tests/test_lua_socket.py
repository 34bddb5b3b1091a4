"""Lua's `socket` module over EVAL, against Tarantool 2.6 and spindle side by side.

Differential (the same replies from both servers, error positions cut): a `tcp_server` echo
handler and a `tcp_connect` client in one request (buffered `read` by delimiter and size,
read timeouts with `errno`/`error`, `send`, `recv`/`sysread` without waiting, `nonblock`,
`shutdown`, end of stream, `peer`/`name`, options, `linger`, closed-socket errors, a busy
port, a refused connect's errno, `getaddrinfo` of a literal); reads at the end of a stream
and argument errors; a `tcp_server` echo handler driven by a Python client; `tcp_connect`
from Lua to a Python listener; Unix sockets (`unix/` host); a transaction open across a
socket wait (a yield: the commit fails with 154); a cancel ends a fiber's socket wait, a
wake-up does not; an init script that serves and connects
before the server is up.

spindle only: a handler waiting on a silent client parks its fiber, not the TX thread (other
requests are served meanwhile), and a closed server frees its port.
"""

import os
import re
import socket
import subprocess
import threading
import time

import tarantool

from harness.servers import free_port, spindle_bin

SPACE = 742

S = "local socket = require('socket') local fiber = require('fiber') "

SESSION = S + """
local out = {}
local function show(...) out[#out + 1] = {...} end
local srv = socket.tcp_server('127.0.0.1', 0, function(s, from)
    show('handler', type(s), type(from), from.family, from.host, type(from.port), s:fd() > 0)
    while true do
        local l = s:read('\\n')
        if l == nil or l == '' then break end
        s:write('echo:' .. l)
    end
    s:close()
end)
show('server', type(srv), srv:name().host, srv:name().family, srv:name().type)
local port = srv:name().port
local c = socket.tcp_connect('127.0.0.1', port)
show('connected', c ~= nil, c:peer().host, c:peer().port == port, c:name().family,
     c:name().type, c:name().protocol, c:name().host)
show('write', c:write('hello\\nworld\\n'))
show('read', c:read('\\n'), c:read(6))
show('read timeout', c:read(10, 0.1), c:errno(), c:error())
show('send', c:send('x\\n'))
show('read opts', c:read({delimiter = '\\n'}))
show('nonblock', c:nonblock(), c:nonblock(true), c:nonblock(false), c:nonblock(), c:nonblock(true))
show('recv nothing', c:recv(10))
c:write('a\\n')
fiber.sleep(0.05)
show('recv data', c:recv(100))
show('sysread nothing', c:sysread(10), c:errno())
c:write('b\\nc\\n')
show('read size then line', c:read(3), c:read('\\n'))
show('shutdown', c:shutdown(1))
show('read to the end', c:read(100))
show('read eof', c:read(10))
show('close', c:close())
show('closed ops', pcall(c.read, c, 1))
show('refused', socket.tcp_connect('127.0.0.1', 1))
show('errno after refused', require('errno')(), require('errno').strerror())
show('server close', srv:close())
show('getaddrinfo', socket.getaddrinfo('127.0.0.1', 80, {type = 'SOCK_STREAM'}))
local s2 = socket.tcp_server('127.0.0.1', 0,
    {handler = function(s) s:write('hi') s:close() end, name = 'x'})
local c2 = socket.tcp_connect('127.0.0.1', s2:name().port, 1)
show('opts server', c2:read(10), c2:read(10))
show('keepalive', c2:setsockopt('SOL_SOCKET', 'SO_KEEPALIVE', true),
     c2:getsockopt('SOL_SOCKET', 'SO_KEEPALIVE'), c2:getsockopt('SOL_SOCKET', 'SO_TYPE'))
show('nodelay', c2:setsockopt('IPPROTO_TCP', 'TCP_NODELAY', true),
     c2:getsockopt('IPPROTO_TCP', 'TCP_NODELAY'))
show('linger', c2:linger())
c2:close()
s2:close()
local s3 = socket.tcp_server('127.0.0.1', 0, function() end)
show('busy port', socket.tcp_server('127.0.0.1', s3:name().port, function() end))
show('errno', require('errno')())
s3:close()
return out
"""

POSITION = re.compile(r"^[^:\s]*:\d+: ")


def strip(v):
    if isinstance(v, str):
        return POSITION.sub("", v)
    if isinstance(v, list):
        return [strip(x) for x in v]
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items()}
    return v


def connect(srv):
    return tarantool.connect(srv.host, srv.port, user="admin", password=srv.password)


def on_both(server_factory, run):
    return {kind: run(server_factory(kind)()) for kind in ("tarantool", "spindle")}


def test_one_request_plays_server_and_client_as_tarantool_does(server_factory):
    def run(srv):
        conn = connect(srv)
        try:
            return strip(conn.eval(SESSION).data)
        finally:
            conn.close()
    got = on_both(server_factory, run)
    assert got["spindle"] == got["tarantool"]
    assert ["read", "echo:hello\n", "echo:w"] in got["tarantool"][0]


EDGES = S + """
local out = {}
local function show(...) out[#out + 1] = {...} end
local names = {}
local srv = socket.tcp_server('127.0.0.1', 0, function(s, from)
    names[#names + 1] = (fiber.name():gsub('%d+', 'N'))
    s:write('abc\\ndef')
    fiber.sleep(0.05)
    s:write('ghi')
    s:shutdown('W')
    s:read(1)
end)
fiber.sleep(0.01)
local c = socket.tcp_connect('127.0.0.1', srv:name().port)
show('read0', c:read(0))
show('read delim', c:read('\\n'))
show('read big', c:read(100))
show('read again', c:read(100))
show('read after eof', c:read('\\n'))
show('names', names)
show('write num', pcall(c.write, c, 123))
show('errno fresh', c:errno())
show('bad read arg', pcall(c.read, c, true))
show('tostring', (tostring(c):gsub('%d+', 'N')))
show('fd type', type(c:fd()))
show('readable', c:readable(0.01))
c:close()
show('close srv', srv:close(), pcall(srv.close, srv))
show('connect bad args', pcall(socket.tcp_connect))
show('server bad args', pcall(socket.tcp_server, '127.0.0.1', 0))
show('gai', socket.getaddrinfo('localhost', 80, {family = 'AF_INET', type = 'SOCK_STREAM'}))
show('socket call', type(socket), socket.SOMAXCONN)
return out
"""


def test_reads_at_the_end_of_a_stream_and_argument_errors_as_tarantool(server_factory):
    def run(srv):
        conn = connect(srv)
        try:
            return strip(conn.eval(EDGES).data)
        finally:
            conn.close()
    got = on_both(server_factory, run)
    assert got["spindle"] == got["tarantool"]
    assert ["read big", "defghi"] in got["tarantool"][0]


ECHO_SERVER = S + """
local srv = socket.tcp_server('127.0.0.1', 0, function(s, from)
    s:write('hello ' .. from.family .. '\\n')
    while true do
        local l = s:read({delimiter = '\\n', chunk = 8})
        if l == nil or l == '' then break end
        s:write('[' .. l .. ']')
    end
end)
rawset(_G, 'echo_server', srv)
return srv:name().port
"""


def recv_until(sock, n):
    data = b""
    while len(data) < n:
        part = sock.recv(4096)
        if not part:
            break
        data += part
    return data


def test_an_echo_handler_serves_a_python_client_as_tarantool_does(server_factory):
    def run(srv):
        conn = connect(srv)
        try:
            port = conn.eval(ECHO_SERVER).data[0]
            with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                first = recv_until(c, len(b"hello AF_INET\n"))
                c.sendall(b"one\ntwo\nthree-is-long\n")
                echoed = recv_until(c, len(b"[one\n][two\n][three-is][-long\n]"))
                c.shutdown(socket.SHUT_WR)
                rest = recv_until(c, 1)
            closed = conn.eval("return echo_server:close()").data
            return first, echoed, rest, closed
        finally:
            conn.close()
    got = on_both(server_factory, run)
    assert got["spindle"] == got["tarantool"]
    assert got["tarantool"][1] == b"[one\n][two\n][three-is][-long\n]"


def python_listener():
    """A one-shot Python server: greets, reads a line, answers it, closes."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    seen = []

    def serve():
        conn, _ = lsock.accept()
        with conn:
            conn.sendall(b"greeting\n")
            line = b""
            while not line.endswith(b"\n"):
                part = conn.recv(100)
                if not part:
                    break
                line += part
            seen.append(line)
            conn.sendall(b"got " + line)
        lsock.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return lsock.getsockname()[1], t, seen


CLIENT = S + """
local port = ...
local c = socket.tcp_connect('127.0.0.1', port, 5)
local greeting = c:read('\\n', 5)
local wrote = c:write('ping from lua\\n')
local answer = c:read(100, 5)
local eof = c:read(100, 5)
c:close()
return greeting, wrote, answer, eof
"""


def test_tcp_connect_talks_to_a_python_listener_as_tarantool_does(server_factory):
    def run(srv):
        port, t, seen = python_listener()
        conn = connect(srv)
        try:
            data = conn.eval(CLIENT, [port]).data
        finally:
            conn.close()
        t.join(10)
        return data, seen
    got = on_both(server_factory, run)
    assert got["spindle"] == got["tarantool"]
    assert got["tarantool"][1] == [b"ping from lua\n"]


REFUSED = S + """
local port = ...
local c = socket.tcp_connect('127.0.0.1', port)
return c, require('errno')(), require('errno').strerror()
"""


def test_a_refused_connect_is_nil_and_econnrefused(server_factory):
    def run(srv):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()  # bound, never listening: connects are refused
        conn = connect(srv)
        try:
            return conn.eval(REFUSED, [port]).data
        finally:
            conn.close()
    got = on_both(server_factory, run)
    assert got["spindle"] == got["tarantool"] == [None, 111, "Connection refused"]


TXN = S + f"""
local srv = socket.tcp_server('127.0.0.1', 0, function(s) fiber.sleep(0.05) s:write('x') end)
local c = socket.tcp_connect('127.0.0.1', srv:name().port)
box.begin()
box.space[{SPACE}]:replace{{1, 'before the wait'}}
local got = c:read(1)
local ok, err = pcall(box.commit)
c:close() srv:close()
return got, ok, err and err.code, box.space[{SPACE}]:get{{1}}
"""


def test_a_socket_wait_is_a_yield_for_transactions(server_factory):
    def run(srv):
        conn = connect(srv)
        try:
            conn.insert(280, [SPACE, 1, "socktest", "memtx", 0, {}, []])
            conn.insert(288, [SPACE, 0, "pk", "tree", {"unique": True}, [[0, "unsigned"]]])
            return strip(conn.eval(TXN).data)
        finally:
            conn.close()
    got = on_both(server_factory, run)
    assert got["spindle"] == got["tarantool"]
    assert got["tarantool"][:3] == ["x", False, 154]


def test_a_waiting_handler_parks_its_fiber_not_the_server(server_factory):
    srv = server_factory("spindle")()
    conn = connect(srv)
    try:
        port = conn.eval(S + """
            local srv = socket.tcp_server('127.0.0.1', 0, function(s)
                rawset(_G, 'waiting', true)
                local l = s:read('\\n')
                rawset(_G, 'line', l)
                s:write('bye\\n')
            end)
            rawset(_G, 'srv', srv)
            return srv:name().port""").data[0]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            for _ in range(100):
                if conn.eval("return rawget(_G, 'waiting')").data == [True]:
                    break
            # The handler is parked in its read: other requests are served meanwhile.
            assert conn.eval("return 1 + 1").data == [2]
            assert conn.eval("return rawget(_G, 'line')").data == [None]
            c.sendall(b"late line\n")
            assert recv_until(c, 4) == b"bye\n"
        assert conn.eval("return rawget(_G, 'line')").data == ["late line\n"]
        assert conn.eval("return srv:close()").data == [True]
        # The port is free again.
        with socket.socket() as again:
            again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            again.bind(("127.0.0.1", port))
    finally:
        conn.close()


UNIX = S + """
local path = ...
local out = {}
local function show(...) out[#out + 1] = {...} end
local froms = {}
local srv = socket.tcp_server('unix/', path, function(s, from)
    froms[#froms + 1] = from
    s:write('hi ' .. s:read('\\n'))
end)
show('server', srv ~= nil, srv and srv:name())
local c = socket.tcp_connect('unix/', path)
show('client', c ~= nil, c and c:peer(), c and c:name())
c:write('there\\n')
show('reply', c:read(100))
show('froms', froms)
c:close()
srv:close()
show('gone', socket.tcp_connect('unix/', path), require('errno')())
show('file removed', require('fio').path.exists(path))
return out
"""


def test_unix_sockets_serve_and_connect_as_tarantool(server_factory, tmp_path):
    def run(srv):
        path = str(tmp_path / f"{srv.port}.sock")
        conn = connect(srv)
        try:
            data = conn.eval(UNIX, [path]).data
        finally:
            conn.close()
        return [[path_masked(v, path) for v in row] for row in data[0]]
    got = on_both(server_factory, run)
    assert got["spindle"] == got["tarantool"]
    assert ["reply", "hi there\n"] in got["tarantool"]


def path_masked(v, path):
    if isinstance(v, dict):
        return {k: ("PATH" if x == path else x) for k, x in v.items()}
    return v


INIT = """
box.cfg{listen = '127.0.0.1:' .. os.getenv('LISTEN')}
box.schema.user.grant('guest', 'execute', 'universe', nil, {if_not_exists = true})
local socket = require('socket')
local srv = socket.tcp_server('127.0.0.1', 0, function(s) s:write('[' .. s:read('\\n') .. ']') end)
local c = socket.tcp_connect('127.0.0.1', srv:name().port)
c:write('from init\\n')
local reply = c:read(100)
function init_result() return reply end
"""


def test_an_init_script_serves_and_connects_before_the_server_is_up(tmp_path, server_kind):
    """The init script's own fiber parks in socket waits like any other fiber."""
    script = tmp_path / "init.lua"
    script.write_text(INIT)
    listen = free_port()
    binary = spindle_bin() if server_kind == "spindle" else "tarantool"
    with open(tmp_path / "server.log", "w") as log:
        proc = subprocess.Popen([binary, str(script)], cwd=tmp_path, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env=dict(os.environ, LISTEN=str(listen)))
    try:
        for _ in range(200):
            try:
                conn = tarantool.connect("127.0.0.1", listen)
                break
            except tarantool.error.NetworkError:
                time.sleep(0.1)
        else:
            raise AssertionError((tmp_path / "server.log").read_text()[-2000:])
        assert conn.call("init_result").data == ["[from init\n]"]
        conn.close()
    finally:
        proc.kill()
        proc.wait()


CANCEL = S + """
local out = {}
local srv = socket.tcp_server('127.0.0.1', 0, function(s) fiber.sleep(3) end)
local c = socket.tcp_connect('127.0.0.1', srv:name().port)
local f = fiber.create(function()
    local ok, a, b = pcall(c.read, c, 10)
    out[#out + 1] = {'reader', ok, a, b, c:errno()}
end)
fiber.sleep(0.05)
f:wakeup()
fiber.sleep(0.05)
out[#out + 1] = {'after wakeup', f:status()}
f:cancel()
fiber.sleep(1.5)
out[#out + 1] = {'after cancel', f:status()}
c:close() srv:close()
return out
"""


def test_a_cancel_ends_a_socket_wait_and_a_wakeup_does_not(server_factory):
    def run(srv):
        conn = connect(srv)
        try:
            return strip(conn.eval(CANCEL).data)
        finally:
            conn.close()
    got = on_both(server_factory, run)
    assert got["spindle"] == got["tarantool"]
    assert ["reader", False, "fiber is cancelled", None, 0] in got["tarantool"][0]
