"""Helpers shared by test_crash.py, test_snapshot.py and test_recovery_errors.py.

* `server_kwargs(kind, ...)`: the same settings for spindle (command-line flags) and Tarantool
  (box.cfg options), so one test body runs against both.
* schema/model helpers over the raw IPROTO client: create a space, select a whole space, list the
  user spaces, compare full contents with a model and render the difference.
* `checkpoint(srv)`: SIGUSR1 and a bounded wait for the new `.snap` (both kinds: Tarantool 2.6 also
  checkpoints on SIGUSR1); for spindle also the `checkpoint started` / `checkpoint complete: <path>`
  log lines of the contract.
* `tarantoolctl_cat(path)`: rows of a file as Tarantool's own tool reads them.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from harness import iproto as ip
from harness import xlogfile as xf

ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
CHECKPOINT_TIMEOUT = 60.0


# -- server settings -------------------------------------------------------------------------
def server_kwargs(kind, wal_max_size=None, checkpoint_count=None, checkpoint_interval=None,
                  force_recovery=False, snap_io_rate_limit=None):
    """kwargs for server_factory(kind)(...) expressing the same settings for both kinds.
    `snap_io_rate_limit` (MB/s) exists only in Tarantool; spindle ignores it."""
    if kind == "spindle":
        args = []
        if wal_max_size is not None:
            args += ["--wal-max-size", str(wal_max_size)]
        if checkpoint_count is not None:
            args += ["--checkpoint-count", str(checkpoint_count)]
        if checkpoint_interval is not None:
            args += ["--checkpoint-interval", str(checkpoint_interval)]
        if force_recovery:
            args.append("--force-recovery")
        return {"extra_args": args}
    cfg = []
    if wal_max_size is not None:
        cfg.append(f"wal_max_size = {wal_max_size},")
    if checkpoint_count is not None:
        cfg.append(f"checkpoint_count = {checkpoint_count},")
    if checkpoint_interval is not None:
        cfg.append(f"checkpoint_interval = {checkpoint_interval},")
    if force_recovery:
        cfg.append("force_recovery = true,")
    if snap_io_rate_limit is not None:
        cfg.append(f"snap_io_rate_limit = {snap_io_rate_limit},")
    return {"extra_cfg": " ".join(cfg)}


def set_force_recovery(srv, on=True):
    """Toggle force recovery for the next start of a stopped server."""
    if srv.kind == "spindle":
        srv.extra_args = [a for a in srv.extra_args if a != "--force-recovery"]
        if on:
            srv.extra_args.append("--force-recovery")
    else:
        srv.extra_cfg = srv.extra_cfg.replace("force_recovery = true,", "")
        if on:
            srv.extra_cfg += " force_recovery = true,"


# -- logs ----------------------------------------------------------------------------------
def log_mark(srv):
    return len(srv.log_text())


def log_since(srv, mark):
    return ANSI_RE.sub("", srv.log_text()[mark:])


def tail(text, lines=30):
    return "\n".join(ANSI_RE.sub("", text).splitlines()[-lines:])


# -- schema and contents -------------------------------------------------------------------
def admin(srv, timeout=10.0):
    return ip.connect(srv, "admin", srv.password, timeout=timeout)


def create_space(c, space_id, name, pk_type="unsigned", secondary=None, engine="memtx"):
    """A memtx space with a TREE primary key on field 1 and optionally a non-unique TREE index
    `secondary = (field_no, type)`."""
    c.call(ip.INSERT, {ip.K_SPACE_ID: 280, ip.K_TUPLE: [space_id, 1, name, engine, 0, {}, []]})
    c.call(ip.INSERT, {ip.K_SPACE_ID: 288, ip.K_TUPLE: [
        space_id, 0, "primary", "tree", {"unique": True}, [[0, pk_type]]]})
    if secondary is not None:
        field, ftype = secondary
        c.call(ip.INSERT, {ip.K_SPACE_ID: 288, ip.K_TUPLE: [
            space_id, 1, "secondary", "tree", {"unique": False}, [[field, ftype]]]})


def select_all(c, space_id):
    return c.select(space_id, [], iterator=2)


def user_spaces(c):
    """{space_id: name} of every space with id >= 512."""
    return {t[0]: t[2] for t in select_all(c, 280) if t[0] >= 512}


def contents(c, space_ids):
    return {sid: select_all(c, sid) for sid in space_ids}


def model_contents(model):
    """model: {space_id: {key: tuple}} -> {space_id: [tuples in primary-key order]}."""
    return {sid: [rows[k] for k in sorted(rows)] for sid, rows in model.items()}


def diff_contents(expected, got, limit=8):
    """Human-readable difference of two {space_id: [tuples]} (tuples keyed by field 0)."""
    out = []
    for sid in sorted(set(expected) | set(got)):
        e = {t[0]: t for t in expected.get(sid, [])}
        g = {t[0]: t for t in got.get(sid, [])}
        missing = sorted(set(e) - set(g), key=repr)
        extra = sorted(set(g) - set(e), key=repr)
        changed = sorted((k for k in set(e) & set(g) if e[k] != g[k]), key=repr)
        order_ok = [t[0] for t in got.get(sid, [])] == sorted(g, key=lambda k: (type(k).__name__, k))
        if missing or extra or changed:
            out.append(f"space {sid}: expected {len(e)} rows, got {len(g)}; "
                       f"{len(missing)} missing {missing[:limit]}, {len(extra)} unexpected {extra[:limit]}, "
                       f"{len(changed)} changed " +
                       "; ".join(f"{k!r}: {e[k]!r} -> {g[k]!r}" for k in changed[:limit]))
        elif expected.get(sid) != got.get(sid):
            out.append(f"space {sid}: same rows, different order (primary-key order ok: {order_ok})")
    return "\n".join(out) or "(no difference)"


def assert_contents(c, model, when):
    """The FULL contents of every user space equal the model, and no other user space exists."""
    spaces = user_spaces(c)
    assert set(spaces) == set(model), (f"{when}: user spaces are {spaces}, expected ids {sorted(model)}")
    expected = model_contents(model)
    got = contents(c, sorted(model))
    assert got == expected, f"{when}: contents differ from the model:\n{diff_contents(expected, got)}"


# -- checkpoints ---------------------------------------------------------------------------
def snap_inprogress(data_dir):
    return [p for p in xf.inprogress_files(data_dir) if p.endswith(".snap.inprogress")]


def checkpoint(srv, timeout=CHECKPOINT_TIMEOUT):
    """Send SIGUSR1 and wait (bounded) until a new `.snap` exists and no `.snap.inprogress` is
    left; for spindle also until `checkpoint complete: <path>` is logged. Returns the new path."""
    before = set(xf.files(srv.data_dir, "snap"))
    mark = log_mark(srv)
    os.kill(srv.pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while True:
        if not srv.is_running():
            rc = srv.proc.returncode
            pytest.fail(f"{srv.kind} exited with code {rc} after SIGUSR1 (expected: a checkpoint; "
                        f"{'-10 = killed by SIGUSR1: no handler installed' if rc == -signal.SIGUSR1 else ''})"
                        f"\nlog tail:\n{tail(srv.log_text())}", pytrace=False)
        log = log_since(srv, mark)
        if srv.kind == "spindle" and "checkpoint failed" in log:
            pytest.fail(f"spindle logged a failed checkpoint:\n{tail(log)}\nfiles: {xf.listing(srv.data_dir)}",
                        pytrace=False)
        new = [p for p in xf.files(srv.data_dir, "snap") if p not in before]
        done = bool(new) and not snap_inprogress(srv.data_dir)
        if srv.kind == "spindle":
            done = done and "checkpoint complete" in log
        if done:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"no checkpoint completed within {timeout}s of SIGUSR1 ({srv.kind}): new .snap "
                        f"files {new}, data dir: {xf.listing(srv.data_dir)}\nlog since the signal:\n"
                        f"{tail(log)}", pytrace=False)
        time.sleep(0.01)
    assert len(new) == 1, f"one SIGUSR1 produced {len(new)} new snapshots: {new}"
    if srv.kind == "spindle":
        assert "checkpoint started" in log, f"spindle did not log `checkpoint started`:\n{tail(log)}"
        m = re.search(r"checkpoint complete: (\S+\.snap)\b", log)
        assert m, f"`checkpoint complete: <path>.snap` not logged:\n{tail(log)}"
        assert os.path.basename(m.group(1)) == os.path.basename(new[0]), (
            f"`checkpoint complete` names {m.group(1)}, but the new snapshot is {new[0]}")
    return new[0]


# -- tarantoolctl --------------------------------------------------------------------------
def tarantoolctl_cat(path, timeout=120):
    tool = shutil.which("tarantoolctl")
    if tool is None:
        pytest.fail("`tarantoolctl` is not installed: run `make deps` (Debian package tarantool). "
                    "Tests never skip on a missing dependency.", pytrace=False)
    proc = subprocess.run([tool, "cat", "--format=json", "--show-system", path],
                          capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=timeout)
    assert proc.returncode == 0, (f"`tarantoolctl cat {path}` exited {proc.returncode}\n"
                                  f"stderr:\n{proc.stderr[-3000:]}\nstdout tail:\n{proc.stdout[-2000:]}")
    rows = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            rows.append(json.loads(line, strict=False))
    return rows
