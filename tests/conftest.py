"""Fixtures shared by spindle's integration tests.

Servers
  spindle_server(**kw)    factory: starts target/release/spindle (or $SPINDLE_BIN) serve
  tarantool_server(**kw)  factory: starts real Tarantool 2.6 from a generated Lua script
  server_factory(kind)    returns the factory for 'spindle' or 'tarantool'
  server_kind             parametrised over $TEST_SERVERS (default "tarantool,spindle"), so the
                          client tests run against spindle and, as a check of the tests
                          themselves, against Tarantool.
Every server gets a free loopback port, a fresh data dir under pytest's tmp dir and the admin
password harness.servers.ADMIN_PASSWORD; it is killed at teardown whatever happened.
The returned object has host, port, data_dir, password, stop(sig), restart(), kill(),
is_running(), log_text(), wal_stats().

Lua clients
  run_lua(script, *args)  runs `tarantool tests/lua/<script> args...` and returns the JSON
                          object printed on its last stdout line.

Missing dependencies are errors, never skips: run `make deps`.
"""

import importlib
import json
import os
import random
import shutil
import subprocess
import sys

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

_REQUIRED_MODULES = {"tarantool": "tarantool==1.3.0", "asynctnt": "asynctnt==2.4.0",
                     "msgpack": "msgpack", "pytest_timeout": "pytest-timeout",
                     "prometheus_client": "prometheus_client"}
_missing = []
for _mod, _pkg in _REQUIRED_MODULES.items():
    try:
        importlib.import_module(_mod)
    except ImportError:
        _missing.append(_pkg)
if _missing:
    raise RuntimeError(
        f"missing Python test dependencies: {', '.join(_missing)}. Run `make deps` "
        f"(pip install -r tests/requirements.txt). Tests never skip on missing dependencies.")

from harness import servers  # noqa: E402

# One seed for every randomised test of the run; printed in the header and in failures.
os.environ.setdefault("ROBUSTNESS_SEED", str(random.SystemRandom().randrange(2**32)))


def pytest_report_header(config):
    kinds = ",".join(server_kinds())
    return [f"robustness seed: ROBUSTNESS_SEED={os.environ['ROBUSTNESS_SEED']}",
            f"spindle binary: {servers.spindle_bin()}",
            f"tarantool: {shutil.which('tarantool')}",
            f"TEST_SERVERS={kinds}  DIFF_AGAINST={os.environ.get('DIFF_AGAINST', 'spindle')}"]


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"robustness seed: ROBUSTNESS_SEED={os.environ['ROBUSTNESS_SEED']} "
                                f"(set it to replay the random packets)")


def server_kinds():
    raw = os.environ.get("TEST_SERVERS", "tarantool,spindle")
    kinds = [k.strip() for k in raw.split(",") if k.strip()]
    for k in kinds:
        if k not in servers.KINDS:
            raise pytest.UsageError(f"TEST_SERVERS: unknown server kind {k!r} (use spindle,tarantool)")
    return kinds


def pytest_generate_tests(metafunc):
    if "server_kind" in metafunc.fixturenames:
        metafunc.parametrize("server_kind", server_kinds(), scope="module")


def require_tarantool():
    if shutil.which("tarantool") is None:
        pytest.fail("`tarantool` (2.6) is not installed: run `make deps`. "
                    "Tests never skip on a missing dependency.", pytrace=False)


class _Factory:
    def __init__(self, kind, tmp_path_factory):
        self.kind = kind
        self.tmp_path_factory = tmp_path_factory
        self.started = []

    def __call__(self, wal_mode="write", password=servers.ADMIN_PASSWORD, extra_args=(), start=True, **kw):
        if self.kind == "tarantool":
            require_tarantool()
        workdir = str(self.tmp_path_factory.mktemp(self.kind))
        try:
            srv = servers.KINDS[self.kind](workdir, wal_mode=wal_mode, password=password,
                                           extra_args=extra_args, **kw)
            self.started.append(srv)
            if start:
                srv.start()
        except servers.ServerStartError as e:
            pytest.fail(f"could not start {self.kind}: {e}", pytrace=False)
        return srv

    def cleanup(self):
        for srv in self.started:
            srv.kill()


def _factory_fixture(kind, tmp_path_factory):
    f = _Factory(kind, tmp_path_factory)
    try:
        yield f
    finally:
        f.cleanup()


@pytest.fixture
def spindle_server(tmp_path_factory):
    yield from _factory_fixture("spindle", tmp_path_factory)


@pytest.fixture
def tarantool_server(tmp_path_factory):
    yield from _factory_fixture("tarantool", tmp_path_factory)


@pytest.fixture(scope="module")
def module_server_factory(tmp_path_factory):
    """Module-scoped factories, for suites that share one server across tests."""
    made = {}

    def get(kind):
        if kind not in made:
            made[kind] = _Factory(kind, tmp_path_factory)
        return made[kind]
    try:
        yield get
    finally:
        for f in made.values():
            f.cleanup()


@pytest.fixture
def server_factory(tmp_path_factory):
    made = {}

    def get(kind):
        if kind not in made:
            made[kind] = _Factory(kind, tmp_path_factory)
        return made[kind]
    try:
        yield get
    finally:
        for f in made.values():
            f.cleanup()


# -- Lua (net.box) clients ----------------------------------------------------------------------
LUA_DIR = os.path.join(TESTS_DIR, "lua")


def run_lua_script(script, *args, timeout=60):
    require_tarantool()
    path = script if os.path.isabs(script) else os.path.join(LUA_DIR, script)
    proc = subprocess.run([shutil.which("tarantool"), path, *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=LUA_DIR)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines:
        raise AssertionError(
            f"Lua client {script} failed (exit {proc.returncode}).\nstdout:\n{proc.stdout}\n"
            f"stderr:\n{proc.stderr}")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError as e:
        raise AssertionError(f"Lua client {script} printed no JSON on its last line ({e}).\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")


@pytest.fixture
def run_lua():
    return run_lua_script
