"""Start and stop spindle or real Tarantool 2.6 as a child process with one interface.

Both kinds expose: kind, host, port, data_dir, password, wal_mode, pid, start(), stop(sig),
restart(), kill(), is_running(), log_text(), addr.  Every process is started in its own
process group and killed at fixture teardown, whatever happened in the test.
"""

import os
import shutil
import signal
import socket
import subprocess
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_SPINDLE_BIN = os.path.join(REPO_ROOT, "target", "release", "spindle")
ADMIN_PASSWORD = "spindle-test-pw"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0


class ServerStartError(Exception):
    pass


def free_port():
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_tool(name, hint="run `make deps`"):
    path = shutil.which(name)
    if path is None:
        raise ServerStartError(f"required program `{name}` is not installed ({hint})")
    return path


def spindle_bin():
    return os.path.abspath(os.environ.get("SPINDLE_BIN", DEFAULT_SPINDLE_BIN))


def _probe_greeting(host, port, timeout=1.0):
    """True when the port accepts a connection and sends a full 128-byte greeting."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            got = b""
            while len(got) < 128:
                chunk = s.recv(128 - len(got))
                if not chunk:
                    return False
                got += chunk
            return got.startswith(b"Tarantool ") and got[63:64] == b"\n"
    except OSError:
        return False


class Server:
    kind = "abstract"

    def __init__(self, workdir, wal_mode="write", password=ADMIN_PASSWORD, extra_args=()):
        self.host = "127.0.0.1"
        self.port = None
        self.workdir = workdir
        self.data_dir = os.path.join(workdir, "data")
        self.password = password
        self.wal_mode = wal_mode
        self.extra_args = list(extra_args)
        self.proc = None
        self.log_path = os.path.join(workdir, f"{self.kind}.log")
        self._log_file = None
        self.starts = 0
        os.makedirs(self.data_dir, exist_ok=True)

    # -- interface ---------------------------------------------------------------------
    @property
    def addr(self):
        return (self.host, self.port)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def __repr__(self):
        return f"<{self.kind} {self.host}:{self.port} data={self.data_dir}>"

    def start(self):
        """Start on a fresh port (first start) or the same port (restart); wait until ready."""
        last_err = None
        for attempt in range(3):
            if self.port is None or attempt > 0:
                self.port = free_port()
            try:
                self._spawn()
                self._wait_ready()
                self.starts += 1
                return self
            except ServerStartError as e:
                last_err = e
                self.kill()
                # Only retry when the failure looks like a port clash.
                if "in use" not in self.log_text().lower():
                    break
        raise last_err

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Send `sig`, wait for exit; returns the exit code (negative = killed by a signal)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(
                    f"{self.kind} did not exit within {timeout}s after {signal.Signals(sig).name}; "
                    f"killed it. Log tail:\n{self.log_tail()}"
                )
        rc = self.proc.returncode
        self._close_log()
        return rc

    def restart(self, sig=signal.SIGTERM):
        rc = self.stop(sig)
        self.proc = None
        self.start()
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                try:
                    self.proc.kill()
                except ProcessLookupError:
                    pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._close_log()

    def is_running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=40):
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- internals ---------------------------------------------------------------------
    def _command(self):
        raise NotImplementedError

    def _env(self):
        return dict(os.environ)

    def _spawn(self):
        cmd = self._command()
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"\n=== start #{self.starts + 1}: {' '.join(cmd)}\n".encode())
        self._log_file.flush()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=self._log_file,
            cwd=self.workdir,
            env=self._env(),
            start_new_session=True,
        )

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise ServerStartError(
                    f"{self.kind} exited with code {rc} before accepting connections on "
                    f"{self.host}:{self.port}.\ncommand: {' '.join(self._command())}\n"
                    f"log tail:\n{self.log_tail()}"
                )
            if _probe_greeting(self.host, self.port) and self._ready_extra():
                return
            time.sleep(0.05)
        raise ServerStartError(
            f"{self.kind} did not accept connections on {self.host}:{self.port} within "
            f"{START_TIMEOUT}s.\nlog tail:\n{self.log_tail()}"
        )

    def _ready_extra(self):
        return True

    def _close_log(self):
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


class SpindleServer(Server):
    kind = "spindle"

    def __init__(self, workdir, wal_mode="write", password=ADMIN_PASSWORD, extra_args=(),
                 password_via_env=False):
        super().__init__(workdir, wal_mode, password, extra_args)
        self.binary = spindle_bin()
        self.password_via_env = password_via_env

    def _command(self):
        pw = [] if self.password_via_env else ["--admin-password", self.password]
        return [
            self.binary, "serve",
            "--listen", f"{self.host}:{self.port}",
            "--data-dir", self.data_dir,
            "--wal-mode", self.wal_mode,
            *pw,
            "--log-level", "info",
            *self.extra_args,
        ]

    def _env(self):
        env = dict(os.environ)
        env.pop("SPINDLE_ADMIN_PASSWORD", None)
        if self.password_via_env:
            env["SPINDLE_ADMIN_PASSWORD"] = self.password
        return env

    def _spawn(self):
        if not os.path.isfile(self.binary) or not os.access(self.binary, os.X_OK):
            raise ServerStartError(
                f"spindle binary not found or not executable at {self.binary} "
                f"(run `make build`, or set SPINDLE_BIN)"
            )
        super()._spawn()

    def _ready_extra(self):
        # The CLI contract says spindle logs `listening on HOST:PORT` once it accepts.
        return f"listening on {self.host}:{self.port}" in self.log_text()

    def wal_stats(self):
        """Parse the last `wal stats: rows=R batches=B fsyncs=F` line of the log, or None."""
        import re
        found = re.findall(r"wal stats: rows=(\d+) batches=(\d+) fsyncs=(\d+)", self.log_text())
        if not found:
            return None
        rows, batches, fsyncs = (int(x) for x in found[-1])
        return {"rows": rows, "batches": batches, "fsyncs": fsyncs}


TARANTOOL_SCRIPT = """\
-- generated by tests/harness/servers.py
box.cfg{{
    work_dir = {work_dir!r},
    wal_mode = {wal_mode!r},
    log_level = 5,
    {extra}
}}
box.schema.user.passwd('admin', {password!r})
box.cfg{{ listen = {listen!r} }}
"""


class TarantoolServer(Server):
    kind = "tarantool"

    def __init__(self, workdir, wal_mode="write", password=ADMIN_PASSWORD, extra_args=(),
                 extra_cfg=""):
        super().__init__(workdir, wal_mode, password, extra_args)
        self.binary = require_tool("tarantool")
        self.extra_cfg = extra_cfg
        self.script_path = os.path.join(workdir, "instance.lua")

    def _command(self):
        return [self.binary, self.script_path]

    def _spawn(self):
        # Lua: single-quoted repr of Python strings is a valid Lua string for our inputs.
        with open(self.script_path, "w") as f:
            f.write(TARANTOOL_SCRIPT.format(
                work_dir=self.data_dir, wal_mode=self.wal_mode, password=self.password,
                listen=f"{self.host}:{self.port}", extra=self.extra_cfg))
        super()._spawn()

    def wal_stats(self):
        return None


KINDS = {"spindle": SpindleServer, "tarantool": TarantoolServer}
