"""The server's command-line and process contract, and the greeting.

spindle serve --listen HOST:PORT --data-dir DIR [--wal-mode none|write|fsync]
              [--admin-password PW | env SPINDLE_ADMIN_PASSWORD] [--log-level L]
              [--net-msg-max N] [--iproto-threads N]
logs `listening on HOST:PORT` once it accepts, exits 0 on SIGTERM/SIGINT and logs
`wal stats: rows=R batches=B fsyncs=F` on shutdown.
"""

import base64
import re
import signal

import pytest

from harness import iproto as ip


@pytest.fixture
def server(server_factory, server_kind):
    return server_factory(server_kind)()


def test_greeting(server):
    with socket_greeting(server) as g:
        line1, line2 = g[:64].decode(), g[64:].decode()
    assert len(g) == 128 and line1.endswith("\n") and line2.endswith("\n"), g
    m = re.match(r"^Tarantool 2\.6\.0 \(Binary\) ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}) +\n$",
                 line1)
    assert m, f"greeting line 1 must be 'Tarantool 2.6.0 (Binary) <uuid>' padded to 63 bytes: {line1!r}"
    salt = base64.b64decode(line2.strip())
    assert 20 <= len(salt) < 64, f"salt must decode to >= 20 bytes (Tarantool sends 32): {line2!r}"
    # salts differ per connection
    with socket_greeting(server) as g2:
        assert g2[64:] != g[64:], "the salt must be random per connection"
        assert g2[:64] == g[:64], "the instance UUID must be stable"


class socket_greeting:
    def __init__(self, server):
        self.conn = ip.RawConn(server.host, server.port)

    def __enter__(self):
        return self.conn.greeting

    def __exit__(self, *exc):
        self.conn.close()


@pytest.mark.spindle_only
def test_admin_password_from_env(spindle_server):
    srv = spindle_server(password_via_env=True)
    assert "--admin-password" not in srv._command()
    with ip.connect(srv, "admin", srv.password) as c:
        assert c.ping()[0][ip.K_TYPE] == 0
    with pytest.raises(ip.IprotoError) as e:
        ip.connect(srv, "admin", "wrong")
    assert e.value.code == 47


@pytest.mark.spindle_only
def test_listening_line_and_clean_shutdown(spindle_server):
    srv = spindle_server()
    assert f"listening on {srv.host}:{srv.port}" in srv.log_text()
    with ip.connect(srv, "admin", srv.password) as c:
        c.call(ip.INSERT, {ip.K_SPACE_ID: 280, ip.K_TUPLE: [512, 1, "t", "memtx", 0, {}, []]})
        c.call(ip.INSERT, {ip.K_SPACE_ID: 288, ip.K_TUPLE: [512, 0, "pk", "tree", {"unique": True}, [[0, "unsigned"]]]})
        for i in range(10):
            c.call(ip.INSERT, {ip.K_SPACE_ID: 512, ip.K_TUPLE: [i]})
    assert srv.stop(signal.SIGTERM) == 0, srv.log_tail()
    stats = srv.wal_stats()
    assert stats is not None, f"no `wal stats: rows=R batches=B fsyncs=F` line on shutdown:\n{srv.log_tail()}"
    assert stats["rows"] >= 12, stats
    srv.start()
    assert srv.stop(signal.SIGINT) == 0, srv.log_tail()


@pytest.mark.parametrize("mode", ["none", "write", "fsync"])
def test_wal_modes_accepted(server_factory, server_kind, mode):
    srv = server_factory(server_kind)(wal_mode=mode)
    with ip.connect(srv, "admin", srv.password) as c:
        c.call(ip.INSERT, {ip.K_SPACE_ID: 280, ip.K_TUPLE: [512, 1, "t", "memtx", 0, {}, []]})
        c.call(ip.INSERT, {ip.K_SPACE_ID: 288, ip.K_TUPLE: [512, 0, "pk", "tree", {"unique": True}, [[0, "unsigned"]]]})
        assert c.call(ip.INSERT, {ip.K_SPACE_ID: 512, ip.K_TUPLE: [1, mode]}) == [[1, mode]]
    assert srv.stop(signal.SIGTERM) == 0, srv.log_tail()


@pytest.mark.spindle_only
def test_tuning_flags_accepted(spindle_server):
    srv = spindle_server(extra_args=["--net-msg-max", "64", "--iproto-threads", "2"])
    with ip.connect(srv, "admin", srv.password) as c:
        assert c.ping()[0][ip.K_TYPE] == 0
    assert srv.stop(signal.SIGTERM) == 0, srv.log_tail()


@pytest.mark.spindle_only
def test_config_file_and_flag_precedence(tmp_path):
    """`--config FILE` takes box.cfg-style keys; a flag given too wins over the file."""
    import os
    import subprocess
    import time

    from harness import servers

    file_port, flag_port = servers.free_port(), servers.free_port()
    data = tmp_path / "from-file"
    cfg = tmp_path / "spindle.toml"
    cfg.write_text(f'listen = "127.0.0.1:{file_port}"\ndata_dir = "{data}"\n'
                   f'wal_mode = "fsync"\nadmin_password = "file-pw"\n')
    log = tmp_path / "log"
    cmd = [servers.spindle_bin(), "serve", "--config", str(cfg), "--listen", f"127.0.0.1:{flag_port}"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "SPINDLE_ADMIN_PASSWORD": ""})
    try:
        deadline = time.monotonic() + 10
        while f"listening on 127.0.0.1:{flag_port}" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert "wal_mode Fsync" in log.read_text(), log.read_text()
        with ip.connect(type("S", (), {"host": "127.0.0.1", "port": flag_port})(), "admin", "file-pw") as c:
            assert c.ping()[0][ip.K_TYPE] == 0
        assert any(p.suffix == ".snap" for p in data.iterdir()), "data_dir from the file must be used"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, log.read_text()

    bad = tmp_path / "bad.toml"
    bad.write_text('listen = "127.0.0.1:1"\nno_such_option = 1\n')
    res = subprocess.run([servers.spindle_bin(), "serve", "--config", str(bad)],
                         capture_output=True, text=True, timeout=10)
    assert res.returncode != 0 and "no_such_option" in res.stderr, res.stderr
