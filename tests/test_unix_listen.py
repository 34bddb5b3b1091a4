"""IPROTO over a Unix socket: `box.cfg{listen = '/path'}` or `'unix/:/path'` in an init script,
or `spindle serve --listen /path`, as tarantool-python's own test suite starts Tarantool
(`listen = '/tmp/tmpXXXX.sock'`) and connects with `Connection(host=None, port=path)`.

Checked against Tarantool 2.6 running the same init script: the requests' results, the
`box.cfg.listen` it reports, a stale socket file or a plain file left at the path is replaced,
and a second server on a path another one accepts on fails to start.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import msgpack
import pytest
import tarantool

from harness.servers import spindle_bin

START_TIMEOUT = 20.0

SCRIPT = """\
box.cfg{{listen = '{listen}'}}
box.schema.user.grant('guest', 'super', nil, nil, {{if_not_exists = true}})
"""

KINDS = ["tarantool", "spindle"]


@pytest.fixture
def sockdir():
    # Short: a Unix socket path must fit in 108 bytes, pytest's tmp_path may not.
    path = tempfile.mkdtemp(prefix="ux", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def kind_available(kind):
    if kind == "tarantool" and shutil.which("tarantool") is None:
        pytest.skip("tarantool is not installed")


class Server:
    def __init__(self, argv, cwd, path):
        self.path = path
        self.log_path = os.path.join(cwd, "server.log")
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(argv, cwd=cwd, stdout=self.log_file,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def log(self):
        with open(self.log_path) as f:
            return f.read()[-3000:]

    def wait_ready(self, **kw):
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.proc.poll() is None, f"exited with {self.proc.returncode}:\n{self.log()}"
            try:
                conn = tarantool.Connection(host=None, port=self.path, **kw)
            except tarantool.error.NetworkError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
                continue
            try:
                # The script's grant runs after box.cfg has started listening.
                conn.eval("return 1")
                return conn
            except tarantool.error.DatabaseError:
                conn.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log_file.close()


def start_script(kind, workdir, listen, path):
    os.makedirs(workdir, exist_ok=True)
    script = os.path.join(workdir, "init.lua")
    with open(script, "w") as f:
        f.write(SCRIPT.format(listen=listen))
    binary = spindle_bin() if kind == "spindle" else "tarantool"
    return Server([binary, script], workdir, path)


def stale_socket(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()
    assert os.path.exists(path)


def exercise(conn):
    """The same requests for every server; their results, to compare."""
    out = [conn.ping() is not None]
    out.append(conn.eval("return box.cfg.listen").data)
    conn.eval("box.schema.space.create('t', {if_not_exists = true})"
              ":create_index('pk', {if_not_exists = true})")
    out.append(conn.insert("t", (1, "one")).data)
    out.append(conn.replace("t", (2, "two")).data)
    out.append(conn.select("t").data)
    out.append(conn.select("t", 2).data)
    out.append(conn.eval("return box.space.t:count(), ...", (7, "x")).data)
    out.append(conn.call("box.space.t:get", 1).data)
    return out


def results_for(kind, base, form):
    workdir = os.path.join(base, kind)
    path = os.path.join(base, f"{kind[0]}.sock")
    listen = path if form == "path" else f"unix/:{path}"
    stale_socket(path)
    srv = start_script(kind, workdir, listen, path)
    try:
        conn = srv.wait_ready()
        try:
            return exercise(conn)
        finally:
            conn.close()
    finally:
        srv.stop()


@pytest.mark.parametrize("form", ["path", "unix"])
def test_init_script_listen_matches_tarantool(sockdir, form):
    kind_available("tarantool")
    want = results_for("tarantool", sockdir, form)
    got = results_for("spindle", sockdir, form)
    # box.cfg.listen echoes the script's text, which names each server's own file.
    assert got[1] == [want[1][0].replace("/t.sock", "/s.sock")], (got, want)
    assert got[:1] + got[2:] == want[:1] + want[2:], (got, want)
    assert got[4] == [[1, "one"], [2, "two"]]


@pytest.mark.spindle_only
def test_serve_listen_on_a_socket_path(sockdir):
    path = os.path.join(sockdir, "x.sock")
    stale_socket(path)
    srv = Server([spindle_bin(), "serve", "--listen", path, "--data-dir",
                  os.path.join(sockdir, "data"), "--admin-password", "pw"], sockdir, path)
    try:
        conn = srv.wait_ready(user="admin", password="pw")
        try:
            res = exercise(conn)
        finally:
            conn.close()
        assert res[0] is True
        assert res[4] == [[1, "one"], [2, "two"]]
        assert res[6] == [2, 7, "x"]
        assert f"listening on unix/:{path}" in srv.log()
    finally:
        srv.stop()
    assert srv.proc.returncode == 0, srv.log()
    assert not os.path.exists(path), "the socket file is removed at shutdown"


@pytest.mark.parametrize("kind", KINDS)
def test_plain_file_at_the_path_is_replaced(sockdir, kind):
    kind_available(kind)
    path = os.path.join(sockdir, "f.sock")
    with open(path, "w") as f:
        f.write("not a socket")
    srv = start_script(kind, os.path.join(sockdir, kind), path, path)
    try:
        conn = srv.wait_ready()
        assert conn.ping() is not None
        conn.close()
    finally:
        srv.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_path_in_use_fails_the_second_server(sockdir, kind):
    kind_available(kind)
    path = os.path.join(sockdir, "busy.sock")
    first = start_script(kind, os.path.join(sockdir, "a"), path, path)
    try:
        conn = first.wait_ready()
        second = start_script(kind, os.path.join(sockdir, "b"), path, path)
        try:
            rc = second.proc.wait(timeout=START_TIMEOUT)
        finally:
            second.stop()
        assert rc != 0, second.log()
        assert conn.ping() is not None, "the first server still accepts on its socket"
        assert conn.eval("return 1 + 1").data == [2]
        conn.close()
        again = tarantool.Connection(host=None, port=path)
        assert again.ping() is not None
        again.close()
    finally:
        first.stop()


def read_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "connection closed before the reply"
        data += chunk
    return data


def read_reply(sock):
    prefix = read_exactly(sock, 5)
    assert prefix[0] == 0xCE, prefix
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(read_exactly(sock, int.from_bytes(prefix[1:], "big")))
    header = unpacker.unpack()
    return header, unpacker.unpack()


def request(sock, header, body):
    payload = msgpack.packb(header) + msgpack.packb(body)
    sock.sendall(b"\xce" + len(payload).to_bytes(4, "big") + payload)
    return read_reply(sock)


@pytest.mark.spindle_only
def test_join_over_unix_socket_is_refused(sockdir):
    """Tarantool replicates over Unix sockets; spindle's relays take TCP sockets only, so a
    JOIN/SUBSCRIBE on a Unix connection gets an error reply and the connection stays up."""
    path = os.path.join(sockdir, "r.sock")
    srv = start_script("spindle", os.path.join(sockdir, "s"), path, path)
    try:
        srv.wait_ready().close()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(path)
            greeting = b""
            while len(greeting) < 128:
                greeting += s.recv(128 - len(greeting))
            for code in (65, 66):  # JOIN, SUBSCRIBE
                header, body = request(s, {0x00: code, 0x01: code},
                                       {0x24: "11111111-2222-3333-4444-555555555555"})
                assert header[0x00] == 0x8000 | 5, (header, body)  # ER_UNSUPPORTED
                assert header[0x01] == code
                assert body[0x31] == "spindle does not support replication over Unix sockets"
            header, _ = request(s, {0x00: 64, 0x01: 9}, {})  # PING
            assert header[0x00] == 0 and header[0x01] == 9
    finally:
        srv.stop()
