"""Connectors' own init scripts, run unmodified by spindle as `tarantool SCRIPT.lua` runs them,
each checked against Tarantool 2.6 doing the same:

* tarantool-python 1.3.0's test/suites/box.lua, taken from its source package at test time
  (tests/tarantool_python/run_suite.py fetches it): `console.listen` before `box.cfg`, `box.cfg`
  from environment variables, `rawset(_G, 'ready', true)`; the harness polls the console.
* asynctnt 2.4.0's init template, rendered and started by its own `TarantoolSyncInstance`
  (from the installed package) with `spindle` as the command: `fun`-based version checks,
  `slab_alloc_arena`, `work_dir`, `custom_proc_title`, a grant with `if_not_exists`, console
  polling of `box.info.status`.
"""

import os
import socket
import subprocess
import sys
import time

import pytest
import tarantool

from harness.servers import free_port, spindle_bin

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "tarantool_python"))

import run_suite  # noqa: E402

START_TIMEOUT = 20.0


def command(kind):
    return spindle_bin() if kind == "spindle" else "tarantool"


def console(port, line, timeout=5.0):
    """One statement on a text console; the YAML reply text."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.settimeout(timeout)
        greeting = s.recv(128)
        while len(greeting) < 128:
            greeting += s.recv(128 - len(greeting))
        s.sendall(line.encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n...\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    return greeting, reply.decode()


def wait_console(port, line, want, proc, log):
    deadline = time.monotonic() + START_TIMEOUT
    last = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the server exited with {proc.returncode}:\n{log()}"
        try:
            _, last = console(port, line)
            if last == want:
                return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"console never answered {want!r} to {line!r} (last: {last!r}):\n{log()}")


@pytest.fixture
def box_lua_server(tmp_path, server_kind):
    script = os.path.join(run_suite.fetch_suite(), "test", "suites", "box.lua")
    listen, admin = free_port(), free_port()
    env = dict(os.environ, LISTEN=str(listen), ADMIN=str(admin), AUTH_TYPE="")
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([command(server_kind), script], cwd=tmp_path, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc, listen, admin, lambda: log_path.read_text(errors="replace")[-3000:]
    finally:
        proc.kill()
        proc.wait()


def test_tarantool_python_box_lua(box_lua_server, server_kind):
    proc, listen, admin, log = box_lua_server
    wait_console(admin, "ready", "---\n- true\n...\n", proc, log)
    greeting, reply = console(admin, "box.cfg.listen, box.cfg.memtx_memory, box.cfg.pid_file")
    assert greeting.startswith(b"Tarantool 2.6.0 (Lua console)")
    assert reply == f"---\n- '{listen}'\n- 107374182.4\n- box.pid\n...\n"
    assert console(admin, "box.info.status")[1] == "---\n- running\n...\n"
    # The binary port serves; the pid file is written in the working directory.
    c = tarantool.connect("127.0.0.1", listen)
    assert c.ping(notime=True) == "Success"
    c.close()


def test_asynctnt_init_template(tmp_path, server_kind):
    from asynctnt.instance import TarantoolSyncInstance
    import asynctnt

    port, console_port = free_port(), free_port()
    inst = TarantoolSyncInstance(
        port=port, console_port=console_port, root=str(tmp_path / "root"), wal_mode="write",
        command_to_run=command(server_kind), timeout=START_TIMEOUT,
        applua="function hello(name) return 'hi ' .. name end "
               "box.schema.space.create('tester', {if_not_exists = true}) "
               "box.space.tester:create_index('primary', {if_not_exists = true})")
    inst.start()
    try:
        assert inst.command("box.info.status")[0] == "running"

        async def session():
            conn = asynctnt.Connection(host="127.0.0.1", port=port)
            await conn.connect()
            try:
                hi = await conn.call("hello", ["x"])
                await conn.insert("tester", [1, "one"])
                rows = await conn.select("tester", [1])
                return list(hi), [list(t) for t in rows]
            finally:
                await conn.disconnect()

        import asyncio
        assert asyncio.run(session()) == (["hi x"], [[1, "one"]])
    finally:
        inst.stop()
