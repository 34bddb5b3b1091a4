"""The admin console (`require('console')`) against Tarantool 2.6, byte for byte.

Both servers open their console ports the same way, by an EVAL of `console.listen(...)` over
the binary port (a TCP port and a Unix socket). Each transcript is a list of steps: bytes sent
on one console connection, then the replies they produce, read until that many replies are
complete (a YAML reply ends at `\\n...\\n`, a Lua one at `;`). The greeting and every reply
must equal Tarantool's exactly; only object addresses (`0x...`) are masked.

Covered: greeting (one 128-byte write), values of every kind in YAML and Lua output, errors
(Lua, box.error, syntax, runtime, table errors), `\\set delimiter`, `\\set output lua` /
`lua,block`, bad commands, CRLF, several requests in one packet, partial lines, a Unix socket,
`~.` and `\\q`; `console.eval` and `console.delimiter` from a binary session; then
`tarantoolctl connect` and `spindle connect` with piped stdin, against the console port and the
binary port of both servers, compared with `tarantoolctl connect` against Tarantool.
"""

import os
import re
import socket
import subprocess
import time

import pytest

from harness import iproto as ip
from harness import servers

SPACE = 741
SETUP = [
    (ip.INSERT, {ip.K_SPACE_ID: 280, ip.K_TUPLE: [SPACE, 1, "contest", "memtx", 0, {}, []]}),
    (ip.INSERT, {ip.K_SPACE_ID: 288, ip.K_TUPLE: [SPACE, 0, "pk", "tree", {"unique": True},
                                                   [[0, "unsigned"]]]}),
]
GREETING = 128
IO_TIMEOUT = 10.0


def admin_eval(srv, expr, *args):
    with ip.connect(srv, "admin", srv.password) as conn:
        return conn.call(ip.EVAL, {ip.K_EXPR: expr, ip.K_TUPLE: list(args)})


class Console:
    """One console connection, read reply by reply."""

    def __init__(self, address):
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(IO_TIMEOUT)
        self.sock.connect(address)
        self.pending = b""

    def greeting_in_one_read(self):
        """What a single recv returns at first (tarantool-python reads the greeting so)."""
        return self.sock.recv(256)

    def send(self, data):
        self.sock.sendall(data)

    def replies(self, count):
        got = []
        while len(got) < count:
            end = self._reply_end()
            if end is None:
                chunk = self.sock.recv(65536)
                assert chunk, f"connection closed after {got!r}, pending {self.pending!r}"
                self.pending += chunk
                continue
            got.append(self.pending[:end])
            self.pending = self.pending[end:]
        return got

    def _reply_end(self):
        if not self.pending:
            return None
        if self.pending.startswith(b"---") or self.pending.startswith(b"%TAG"):
            at = self.pending.find(b"\n...\n")
            return None if at < 0 else at + 5
        at = self.pending.find(b";")
        return None if at < 0 else at + 1

    def closed(self):
        """True if the server closed the connection (EOF), with nothing more sent."""
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        return data == b"" and self.pending == b""

    def close(self):
        self.sock.close()


def mask(data):
    return re.sub(rb"0x[0-9a-f]+", b"0xADDR", data)


def run_transcript(address, steps):
    """[(sent, replies)] for each step; a step's reply count of -1 expects the close."""
    con = Console(address)
    try:
        out = [("greeting", con.greeting_in_one_read())]
        for data, count in steps:
            con.send(data)
            if count < 0:
                out.append((data, "closed" if con.closed() else "open"))
            else:
                out.append((data, [mask(r) for r in con.replies(count)]))
        return out
    finally:
        con.close()


# Each transcript: name -> [(bytes sent, number of replies)].
TRANSCRIPTS = {
    "scalars": [
        (b"1\n", 1), (b"nil\n", 1), (b"box.NULL\n", 1), (b"1, nil, 'x', box.NULL\n", 1),
        (b"x = 5\n", 1), (b"return\n", 1), (b"x\n", 1), (b"true, false\n", 1),
        (b"'1', 'true', 'null', 'yes', 'No', '~', ' x', 'a: b'\n", 1), (b"''\n", 1),
        (b"'multi\\nline'\n", 1), (b"\"it's\", 'q\"q'\n", 1),
        (b"10/3, 2^63, 2^64, 0.1+0.2, 1/0, -1/0, 0/0, -0.0, 1e100, 1e-7\n", 1),
        (b"1ULL, -1LL, 2^53, -2^63\n", 1), (b"local x = 1\n", 1), (b"\n", 1),
    ],
    "tables": [
        (b"{1, 2, 3}\n", 1), (b"{}\n", 1), (b"{a = 1}\n", 1), (b"{a = {b = {c = 'd'}}}\n", 1),
        (b"{{1, {2}}, {k = {}}}\n", 1), (b"{1, nil, 3}\n", 1), (b"{[5] = 'x'}\n", 1),
        (f"box.space.contest:replace{{1, 'one'}}\n".encode(), 1),
        (b"box.space.contest:select{}\n", 1), (b"box.space.contest:get(2)\n", 1),
        (b"function() end\n", 1),
        (b"setmetatable({}, {__serialize = 'map'})\n", 1),
    ],
    "errors": [
        (b"error('boom')\n", 1), (b"error('boom', 0)\n", 1), (b"error()\n", 1),
        (b"error({code = 42})\n", 1), (b"box.error(box.error.ILLEGAL_PARAMS, 'bad')\n", 1),
        (b"x = = 1\n", 1), (b"nosuchfunc()\n", 1), (b"return nosuchfunc()\n", 1),
        (b"local t = nil return t.field_of_a_nil_value_in_a_long_chunk_name\n", 1),
        (b"error('multi\\nline')\n", 1), (b"x y\n", 1), (b"for\n", 1),
        (b"coroutine.yield(1)\n", 1), (b"'after a yield'\n", 1),
    ],
    "commands": [
        (b"\\set\n", 1), (b"\\set foo bar\n", 1), (b"\\x\n", 1), (b"\\x y z\n", 1),
        (b"\\set output json\n", 1), (b"\\set output\n", 1), (b"\\set output lua,foo\n", 1),
        (b"\\set language\n", 1), (b"\\set language foo\n", 1), (b"\\set language lua\n", 1),
        (b"\\s o yaml\n", 1), (b"  \\set output yaml\n", 1), (b"\\help\n", 1), (b"\\h\n", 1),
        (b"\\\n", 1), (b"help\n", 1),
    ],
    "lua_output": [
        (b"\\set output lua\n", 1), (b"1, nil, 'x', {a = 1}, box.NULL\n", 1),
        (b"{1, 2, {3, {a = 'q\"\\n'}}}\n", 1), (b"x = 1\n", 1), (b"error('boom')\n", 1),
        (b"error({code = 42})\n", 1), (b"error()\n", 1), (b"nosuch()\n", 1),
        (b"'a\\tb', '\\1', '\\233', 'a\\\\b', \"it's\", '\\0'\n", 1), (b"'\\255'\n", 1),
        (b"0/0, -(0/0), -1/0, -0.0, 2^64, -2^63, 1e15, 1e15 + 0.5, 10/3\n", 1),
        (b"{[1] = 1, [3] = 3}, {[2] = 2}, {[0] = 5}, {1, nil, 3}\n", 1),
        (b"{['a b'] = 1}, {['end'] = 1}, {_x = 2}, {['1a'] = 3}, {[true] = 1}, {[1.5] = 2}\n", 1),
        (b"local t = {} t.x = t return t\n", 1), (b"setmetatable({1, 2}, {__serialize = 'map'})\n", 1),
        (b"setmetatable({a = 1}, {__serialize = function() return {9} end})\n", 1),
        (b"1ULL, -1LL\n", 1), (f"box.space.contest:replace{{2, 'two'}}\n".encode(), 1),
        (b"function() end\n", 1), (b"\\set output lua,block\n", 1),
        (b"{1, 2, {3, {a = 'q'}}}\n", 1), (b"{{}}\n", 1), (b"nil, {a = {}}, box.NULL\n", 1),
        (b"error({a = {b = 1}})\n", 1), (b"{}\n", 1), (b"\\set output lua,line\n", 1),
        (b"{{}}\n", 1), (b"\\set output yaml\n", 1), (b"1\n", 1),
    ],
    "delimiter": [
        (b"\\set delimiter !\n", 1), (b"1\n", 0), (b"+ 2!\n", 1), (b"'a', \n'b'!\n", 1),
        (b"3!\r", 1), (b"\\set delimiter !!\n", 1), (b"4!\n", 1), (b"\\set delimiter !!!\n", 1),
        (b"5!!\n", 1), (b"\\set delimiter!!\n", 1), (b"6\n", 1),
        (b"require('console').delimiter()\n", 1), (b"require('console').delimiter('#')\n", 1),
        (b"7#\n", 1), (b"require('console').delimiter(5)#\n", 1), (b"\\set d#\n", 1), (b"8\n", 1),
    ],
    "framing": [
        (b"2\r\n", 2), (b"1\n2\n3\n", 3), (b"5", 0), (b"6\n", 1), (b"'a'\r'b'\r", 2),
        (b"7\n8", 1), (b"\n", 1), (b" ~.\n", 1), (b"~.\r", 1), (b"~.\n", -1),
    ],
    "quit": [(b"1\n", 1), (b"\\q\n", -1)],
    "quit_long": [(b"\\quit\n", -1)],
}


@pytest.fixture(scope="module")
def consoles(module_server_factory, tmp_path_factory):
    """For each server kind: (tcp address, unix socket path, server)."""
    out = {}
    for kind in ("tarantool", "spindle"):
        srv = module_server_factory(kind)()
        with ip.connect(srv, "admin", srv.password) as admin:
            for rtype, body in SETUP:
                admin.call(rtype, body)
        port = servers.free_port()
        sock = str(tmp_path_factory.mktemp(f"{kind}-console") / "admin.sock")
        admin_eval(srv, "require('console').listen(...)", f"127.0.0.1:{port}")
        admin_eval(srv, "require('console').listen(...)", f"unix/:{sock}")
        out[kind] = (("127.0.0.1", port), sock, srv)
    return out


@pytest.mark.parametrize("name", sorted(TRANSCRIPTS))
def test_transcript_matches_tarantool(consoles, name):
    want = run_transcript(consoles["tarantool"][0], TRANSCRIPTS[name])
    got = run_transcript(consoles["spindle"][0], TRANSCRIPTS[name])
    for (sent, w), (_, g) in zip(want, got):
        assert g == w, f"after sending {sent!r}"


def test_greeting_is_one_128_byte_write(consoles):
    for kind in ("tarantool", "spindle"):
        con = Console(consoles[kind][0])
        try:
            greeting = con.greeting_in_one_read()
        finally:
            con.close()
        assert len(greeting) == GREETING, kind
        assert greeting == (b"Tarantool 2.6.0 (Lua console)".ljust(63) + b"\n"
                            + b"type 'help' for interactive help".ljust(63) + b"\n"), kind


def test_unix_socket_matches_tarantool(consoles):
    steps = [(b"1 + 1\n", 1), (b"\\set output lua\n", 1), (b"{1, 'x'}\n", 1)]
    want = run_transcript(consoles["tarantool"][1], steps)
    got = run_transcript(consoles["spindle"][1], steps)
    assert got == want


def test_output_format_is_per_connection(consoles):
    for kind in ("tarantool", "spindle"):
        first, second = Console(consoles[kind][0]), Console(consoles[kind][0])
        try:
            first.greeting_in_one_read()
            second.greeting_in_one_read()
            first.send(b"\\set output lua\n")
            assert first.replies(1) == [b"true;"], kind
            second.send(b"1\n")
            assert second.replies(1) == [b"---\n- 1\n...\n"], kind
        finally:
            first.close()
            second.close()


BINARY_EVALS = [
    ("return require('console').eval('1, nil')",),
    ("return require('console').eval(...)", "error('x')"),
    ("return require('console').eval(...)", "x = = 1"),
    ("return require('console').eval(...)", "\\set output lua"),
    ("return require('console').eval(...)", "1, 'a'"),
    ("return require('console').eval(...)", "\\set delimiter ;"),
    ("return require('console').eval(...)", "\\set output yaml"),
    ("return pcall(require('console').delimiter)",),
    ("return require('console').eval(...)", "\\help"),
    ("return require('console').eval(...)", "\\q"),
    ("return require('console').eval(...)", "\\set language"),
    ("return require('console').eval()",),
]


def test_console_eval_on_a_binary_session_matches_tarantool(consoles):
    got = {}
    for kind in ("tarantool", "spindle"):
        srv = consoles[kind][2]
        with ip.connect(srv, "admin", srv.password) as conn:
            got[kind] = [conn.call(ip.EVAL, {ip.K_EXPR: e[0], ip.K_TUPLE: list(e[1:])})
                         for e in BINARY_EVALS]
    assert got["spindle"] == got["tarantool"]


LISTEN_ERRORS = [
    "return pcall(require('console').listen, 'unix/:/nonexistent/dir/x.sock')",
    "return pcall(require('console').listen, 'nonsense')",
    "return pcall(require('console').listen, ...)",
]


def test_listen_errors_match_tarantool(consoles):
    got = {}
    for kind in ("tarantool", "spindle"):
        (host, port), _, srv = consoles[kind]
        with ip.connect(srv, "admin", srv.password) as conn:
            got[kind] = [conn.call(ip.EVAL, {ip.K_EXPR: e, ip.K_TUPLE: [f"{host}:{port}"]})
                         for e in LISTEN_ERRORS]
    # The port is each server's own console port, in the message.
    got["spindle"][2][1] = got["spindle"][2][1].replace(
        str(consoles["spindle"][0][1]), str(consoles["tarantool"][0][1]))
    assert got["spindle"] == got["tarantool"]
    assert "Address already in use" in got["tarantool"][2][1]


def test_stale_unix_socket_is_replaced(consoles, tmp_path):
    path = str(tmp_path / "stale.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays, with nobody listening
    srv = consoles["spindle"][2]
    admin_eval(srv, "require('console').listen(...)", f"unix/:{path}")
    assert run_transcript(path, [(b"2 * 21\n", 1)])[1][1] == [b"---\n- 42\n...\n"]


# -- clients with piped stdin ---------------------------------------------------------------------

PIPED = [
    b"1, 'x'\n", b"error('boom')", b"box.error(box.error.ILLEGAL_PARAMS, 'bad')",
    b"error({code = 5})", b"x = ", b"local a = 1\nlocal b = 2\nreturn a + b\n", b"",
]


def client_run(argv, stdin):
    proc = subprocess.run(argv, input=stdin, capture_output=True, timeout=60)
    err = re.sub(rb"connected to \S+", b"connected to ADDR", proc.stderr)
    return proc.returncode, proc.stdout, err


def uris(consoles, kind):
    (host, port), sock, srv = consoles[kind]
    return {
        "console": f"{host}:{port}",
        "unix": f"unix/:{sock}",
        "binary": f"admin:{srv.password}@{srv.host}:{srv.port}",
    }


def tarantoolctl():
    return [servers.require_tool("tarantoolctl"), "connect"]


def spindle_connect():
    return [servers.spindle_bin(), "connect"]


@pytest.mark.parametrize("port", ["console", "binary"])
@pytest.mark.parametrize("stdin", PIPED, ids=[repr(p)[:24] for p in PIPED])
def test_tarantoolctl_connect_to_spindle(consoles, port, stdin):
    want = client_run(tarantoolctl() + [uris(consoles, "tarantool")[port]], stdin)
    got = client_run(tarantoolctl() + [uris(consoles, "spindle")[port]], stdin)
    assert got == want


@pytest.mark.parametrize("kind", ["tarantool", "spindle"])
@pytest.mark.parametrize("port", ["console", "unix", "binary"])
@pytest.mark.parametrize("stdin", PIPED, ids=[repr(p)[:24] for p in PIPED])
def test_spindle_connect_matches_tarantoolctl(consoles, kind, port, stdin):
    want = client_run(tarantoolctl() + [uris(consoles, "tarantool")[port]], stdin)
    got = client_run(spindle_connect() + [uris(consoles, kind)[port]], stdin)
    assert got == want


def test_connect_failures_exit_2(tmp_path):
    missing = f"unix/:{tmp_path / 'nobody.sock'}"
    for argv in (tarantoolctl(), spindle_connect()):
        code, out, err = client_run(argv + [missing], b"1\n")
        assert (code, out) == (2, b""), argv
        assert b"Failed to connect to Tarantool" in err, argv


# -- the REPL on stdin ----------------------------------------------------------------------------

REPL_INPUT = b"1+1\nfor i=1,2 do\nend\n\\set output lua\n{1,2}\nerror('x')\n"


def test_repl_on_stdin_matches_tarantool(tmp_path):
    """`console.start()` reads the server's stdin without blocking the TX thread: another
    connection is served while the REPL waits; the output equals Tarantool's."""
    tarantool = servers.require_tool("tarantool")
    want = subprocess.run([tarantool, "-e", "require('console').start() os.exit(0)"],
                          input=REPL_INPUT, capture_output=True, timeout=60).stdout
    port = servers.free_port()
    data = tmp_path / "data"
    data.mkdir()
    with open(tmp_path / "log", "w") as log:
        proc = subprocess.Popen(
            [servers.spindle_bin(), "serve", "--listen", f"127.0.0.1:{port}",
             "--data-dir", str(data), "--admin-password", "pw"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
    try:
        srv = type("Addr", (), {"host": "127.0.0.1", "port": port})
        for _ in range(100):
            if servers._probe_greeting("127.0.0.1", port) or proc.poll() is not None:
                break
            time.sleep(0.1)
        repl = ip.connect(srv, "admin", "pw")
        repl.send_bytes(ip.packet({ip.K_TYPE: ip.EVAL, ip.K_SYNC: 7},
                                  {ip.K_EXPR: "require('console').start() return 'done'",
                                   ip.K_TUPLE: []}))
        with ip.connect(srv, "admin", "pw") as other:
            assert other.call(ip.EVAL, {ip.K_EXPR: "return 6 * 7"}) == [42]
        proc.stdin.write(REPL_INPUT)
        proc.stdin.close()
        _, body, _ = repl.read_packet()
        assert body == {ip.K_DATA: ["done"]}
        repl.close()
    finally:
        proc.terminate()
        got = proc.stdout.read()
        proc.wait(timeout=30)
    assert got == want


# -- spindle connect on a terminal ----------------------------------------------------------------

TERMINAL_STEPS = [(b"1+1\r", 1), (b"for i = 1, 2 do\r", 0), (b"end\r", 1), (b"error('x')\r", 1),
                  (b"math.max(\r", 0), (b"1, 2)\r", 1)]
TERMINAL_READ_TIMEOUT = 20


def strip_terminal(out):
    return re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", out).replace(b"\r", b"")


def terminal_session(argv, steps):
    """Runs a client in a pseudo-terminal, typing each line after the previous reply (and
    the next prompt) arrived; returns the YAML documents it printed and its exit code."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:
        os.execv(argv[0], argv)
    out = b""

    def read_until(done):
        nonlocal out
        while not done(strip_terminal(out)):
            ready, _, _ = select.select([fd], [], [], TERMINAL_READ_TIMEOUT)
            assert ready, f"no output; so far: {out!r}"
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            out += chunk

    read_until(lambda t: b"> " in t)
    docs = 0
    for line, replies in steps:
        prompts = strip_terminal(out).count(b"> ")
        os.write(fd, line)
        docs += replies
        read_until(lambda t, p=prompts, d=docs: t.count(b"\n...\n") >= d and t.count(b"> ") > p)
    os.write(fd, b"\x04")
    read_until(lambda t: False)
    _, status = os.waitpid(pid, 0)
    return yaml_documents(strip_terminal(out)), os.waitstatus_to_exitcode(status)


def yaml_documents(text):
    docs, current = [], None
    for line in text.split(b"\n"):
        if line == b"---":
            current = [line]
        elif current is not None:
            current.append(line)
            if line == b"...":
                docs.append(b"\n".join(current) + b"\n")
                current = None
    return docs


@pytest.mark.parametrize("port", ["console", "binary"])
def test_spindle_connect_on_a_terminal(consoles, port):
    want = terminal_session(tarantoolctl() + [uris(consoles, "tarantool")[port]], TERMINAL_STEPS)
    got = terminal_session(spindle_connect() + [uris(consoles, "spindle")[port]],
                           TERMINAL_STEPS)
    assert got == want
    assert len(want[0]) == 4 and want[0][-1] == b"---\n- 2\n...\n"


def test_server_object_and_close_match_tarantool(consoles):
    expr = ("local s = require('console').listen(...) "
            "return type(s), tostring(s):match('aka (.*)'), s:name(), s:close()")
    got = {}
    for kind in ("tarantool", "spindle"):
        srv = consoles[kind][2]
        port = servers.free_port()
        got[kind] = admin_eval(srv, expr, f"127.0.0.1:{port}")
        got[kind][1] = got[kind][1].replace(str(port), "PORT")
        got[kind][2]["port"] = "PORT"
        with pytest.raises(ConnectionRefusedError):
            Console(("127.0.0.1", port))
    assert got["spindle"] == got["tarantool"]
    assert got["tarantool"][1:] == ["127.0.0.1:PORT", {
        "host": "127.0.0.1", "port": "PORT", "family": "AF_INET", "type": "SOCK_STREAM",
        "protocol": "tcp"}, True]


def test_closing_a_unix_console_removes_its_socket(consoles, tmp_path):
    for kind in ("tarantool", "spindle"):
        path = str(tmp_path / f"{kind}.sock")
        srv = consoles[kind][2]
        admin_eval(srv, "closing = require('console').listen(...)", f"unix/:{path}")
        assert run_transcript(path, [(b"1\n", 1)])[1][1] == [b"---\n- 1\n...\n"], kind
        assert admin_eval(srv, "return closing:close()") == [True], kind
        assert not os.path.exists(path), kind


def test_listen_on_port_0_tells_the_port(consoles):
    srv = consoles["spindle"][2]
    (port,) = admin_eval(srv, "return require('console').listen('127.0.0.1:0'):name().port")
    assert port > 0
    assert run_transcript(("127.0.0.1", port), [(b"'hi'\n", 1)])[1][1] == [b"---\n- hi\n...\n"]


def test_guest_without_rights_cannot_connect_to_a_binary_port(consoles):
    results = []
    for kind, argv in (("tarantool", tarantoolctl()), ("spindle", spindle_connect())):
        srv = consoles[kind][2]
        code, out, err = client_run(argv + [f"{srv.host}:{srv.port}"], b"1\n")
        results.append((code, out, err.splitlines()[:1]))
    assert results[1] == results[0] == (2, b"", [b"Failed to connect to Tarantool"])


def test_many_consoles_writing_at_once(consoles):
    """Console fibers park in their Lua threads while their writes wait for the WAL; many at
    once must each get their own answers."""
    address = consoles["spindle"][0]
    conns = [Console(address) for _ in range(16)]
    try:
        for con in conns:
            assert len(con.greeting_in_one_read()) == GREETING
        for round_ in range(20):
            for i, con in enumerate(conns):
                key = 1000 + i * 100 + round_
                con.send(f"box.space.contest:replace{{{key}, 'v{round_}'}}\n"
                         f"box.space.contest:get({key})[2], {i}\n".encode())
            for i, con in enumerate(conns):
                key = 1000 + i * 100 + round_
                assert con.replies(2) == [f"---\n- [{key}, 'v{round_}']\n...\n".encode(),
                                          f"---\n- v{round_}\n- {i}\n...\n".encode()]
    finally:
        for con in conns:
            con.close()
