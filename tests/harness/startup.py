"""Start a server once on its existing data dir and report whether it came up or refused.

`attempt_start(srv)` runs the same command line the fixture uses (spindle: `serve ...` with the
server's extra_args; Tarantool: its generated script with extra_cfg) with stdout and stderr in
separate files, and waits (bounded) until the process either exits or accepts connections on its
port.  A server that comes up is killed again: this is for tests that expect a refusal and for
comparing start-vs-refuse between spindle and Tarantool.  Tests that expect a start use the
fixture's srv.start() instead, which leaves the server running.
"""

import os
import signal
import subprocess
import time

from harness import servers

ATTEMPT_TIMEOUT = 15.0


class StartAttempt:
    def __init__(self, started, returncode, stdout, stderr, command):
        self.started = started        # True: it accepted connections (and was then killed)
        self.returncode = returncode  # exit code when it did not start (None if it started)
        self.stdout = stdout
        self.stderr = stderr
        self.command = command

    def describe(self):
        what = "STARTED (accepted connections)" if self.started else f"exited with code {self.returncode}"
        return (f"{what}\ncommand: {' '.join(self.command)}\n"
                f"stderr (tail):\n{_tail(self.stderr)}\nstdout (tail):\n{_tail(self.stdout)}")


def _tail(text, lines=30):
    return "\n".join(text.splitlines()[-lines:])


def _write_tarantool_script(srv):
    with open(srv.script_path, "w") as f:
        f.write(servers.TARANTOOL_SCRIPT.format(
            work_dir=srv.data_dir, wal_mode=srv.wal_mode, password=srv.password,
            listen=f"{srv.host}:{srv.port}", extra=srv.extra_cfg))


def attempt_start(srv, timeout=ATTEMPT_TIMEOUT, label="attempt"):
    """Run srv's command once (the server must be stopped) on a fresh port; see the module doc.
    A refusal caused by the port being taken (not by the data) is retried on another port."""
    assert not srv.is_running(), "attempt_start needs a stopped server"
    for _ in range(3):
        srv.port = servers.free_port()
        result = _attempt(srv, timeout, label)
        if result.started or "in use" not in result.stderr.lower():
            return result
    return result


def _attempt(srv, timeout, label):
    if srv.kind == "tarantool":
        _write_tarantool_script(srv)
    elif not (os.path.isfile(srv.binary) and os.access(srv.binary, os.X_OK)):
        raise AssertionError(f"spindle binary not found or not executable at {srv.binary} "
                             f"(run `make build`, or set SPINDLE_BIN)")
    cmd = srv._command()
    n = srv.starts + 1
    out_path = os.path.join(srv.workdir, f"{label}-{n}-{time.monotonic_ns()}.stdout")
    err_path = out_path[:-len(".stdout")] + ".stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                cwd=srv.workdir, env=srv._env(), start_new_session=True)
    started = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if servers._probe_greeting(srv.host, srv.port, timeout=0.5):
                started = True
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"{srv.kind} neither exited nor accepted connections within "
                                 f"{timeout}s; command: {' '.join(cmd)}\nstderr:\n"
                                 f"{_tail(_read(err_path))}")
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
    return StartAttempt(started, None if started else proc.returncode, _read(out_path), _read(err_path), cmd)


def _read(path):
    try:
        with open(path, "r", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""
