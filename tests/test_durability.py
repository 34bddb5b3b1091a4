"""Durability: acknowledged writes survive a restart, and the data files are Tarantool's.

For each server kind and WAL mode (write, fsync): create a space through _space/_index, apply
inserts, replaces, updates, upserts and deletes (every one acknowledged), stop the server
(SIGTERM: clean shutdown, exit code 0 -- or SIGKILL: no shutdown at all, since an acknowledged
write must already be in the OS's hands in both modes), check every *.xlog / *.snap in the data
dir with Tarantool's own `tarantoolctl cat`, restart on the same data dir and compare the
space's contents with what was acknowledged.  A second restart checks that a recovered server
writes recoverable files too.
"""

import glob
import json
import os
import shutil
import signal
import subprocess

import pytest

from harness import iproto as ip

SPACE_ID = 512
N_INSERTS = 300


@pytest.fixture(params=["write", "fsync"])
def wal_mode(request):
    return request.param


def admin(server):
    return ip.connect(server, "admin", server.password)


def create_schema(c):
    c.call(ip.INSERT, {ip.K_SPACE_ID: 280, ip.K_TUPLE: [
        SPACE_ID, 1, "durable", "memtx", 0, {},
        [{"name": "id", "type": "unsigned"}, {"name": "payload", "type": "any"}]]})
    c.call(ip.INSERT, {ip.K_SPACE_ID: 288, ip.K_TUPLE: [
        SPACE_ID, 0, "primary", "tree", {"unique": True}, [[0, "unsigned"]]]})
    c.call(ip.INSERT, {ip.K_SPACE_ID: 288, ip.K_TUPLE: [
        SPACE_ID, 1, "by_payload_kind", "tree", {"unique": False}, [[2, "string"]]]})


def write_workload(c, start=0):
    """Returns the expected contents {key: tuple} after a mix of acknowledged writes."""
    expected = {}
    values = [lambda i: "s%d" % i, lambda i: i * 1.5, lambda i: -i, lambda i: b"\x00\xff" * (i % 7),
              lambda i: [i, {"k": i}], lambda i: None, lambda i: True, lambda i: 2**64 - 1 - i]
    for i in range(start, start + N_INSERTS):
        t = [i, values[i % len(values)](i), "kind%d" % (i % 5)]
        got = c.call(ip.INSERT, {ip.K_SPACE_ID: SPACE_ID, ip.K_TUPLE: t})
        assert got == [t], f"insert {i} answered {got}"
        expected[i] = t
    for i in range(start, start + N_INSERTS, 7):
        t = [i, "replaced", "kind9"]
        c.call(ip.REPLACE, {ip.K_SPACE_ID: SPACE_ID, ip.K_TUPLE: t})
        expected[i] = t
    for i in range(start + 1, start + N_INSERTS, 11):
        got = c.call(ip.UPDATE, {ip.K_SPACE_ID: SPACE_ID, ip.K_KEY: [i],
                                 ip.K_TUPLE: [["=", 1, "updated"], ["!", 3, i]]})
        expected[i] = got[0]
    for i in range(start + 2, start + N_INSERTS, 13):
        c.call(ip.DELETE, {ip.K_SPACE_ID: SPACE_ID, ip.K_KEY: [i]})
        expected.pop(i, None)
    c.call(ip.UPSERT, {ip.K_SPACE_ID: SPACE_ID, ip.K_TUPLE: [start + 10**6, "upserted", "k"],
                       ip.K_OPS: [["=", 1, "never"]]})
    expected[start + 10**6] = [start + 10**6, "upserted", "k"]
    return expected


def current(c):
    return {t[0]: t for t in c.select(SPACE_ID, [], iterator=2)}


def tarantoolctl_cat(path):
    tool = shutil.which("tarantoolctl")
    if tool is None:
        pytest.fail("`tarantoolctl` is not installed: run `make deps` (Debian package tarantool)", pytrace=False)
    proc = subprocess.run([tool, "cat", "--format=json", "--show-system", path],
                          capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=120)
    assert proc.returncode == 0, (f"`tarantoolctl cat {path}` exited {proc.returncode}\n"
                                  f"stderr:\n{proc.stderr[-3000:]}\nstdout tail:\n{proc.stdout[-2000:]}")
    rows = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            rows.append(json.loads(line, strict=False))  # binary fields come out raw
    return rows


def check_files_with_tarantoolctl(server, expected):
    data_files = sorted(glob.glob(os.path.join(server.data_dir, "*.xlog")))
    snaps = sorted(glob.glob(os.path.join(server.data_dir, "*.snap")))
    assert data_files or snaps, f"no *.xlog or *.snap in {server.data_dir}: {os.listdir(server.data_dir)}"
    keys_in_files = set()
    lsns = []
    for path in data_files + snaps:
        rows = tarantoolctl_cat(path)
        for r in rows:
            body = r.get("BODY", {})
            if path.endswith(".xlog"):
                lsns.append(r.get("HEADER", {}).get("lsn"))
            if body.get("space_id") == SPACE_ID and isinstance(body.get("tuple"), list) and body["tuple"]:
                if r.get("HEADER", {}).get("type") in ("INSERT", "REPLACE", "UPSERT"):
                    keys_in_files.add(body["tuple"][0])
    assert data_files, f"no *.xlog in {server.data_dir}: {os.listdir(server.data_dir)}"
    # every acknowledged key was written as a row at some point (snapshot or log)
    missing = sorted(k for k in expected if k not in keys_in_files)
    assert not missing, (f"{len(missing)} acknowledged keys never appear as INSERT/REPLACE/UPSERT rows in "
                         f"{[os.path.basename(p) for p in data_files + snaps]} (tarantoolctl cat): {missing[:20]}")
    assert all(isinstance(x, int) for x in lsns), f"xlog rows without an integer LSN: {lsns[:10]}"
    assert lsns == sorted(lsns) and len(set(lsns)) == len(lsns), \
        "xlog LSNs (files in name order) must be strictly increasing"


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_acknowledged_writes_survive_restart(server_factory, server_kind, wal_mode, stop_signal):
    srv = server_factory(server_kind)(wal_mode=wal_mode)
    with admin(srv) as c:
        create_schema(c)
        expected = write_workload(c)
        assert current(c) == expected
    rc = srv.stop(stop_signal)
    if stop_signal == signal.SIGTERM:
        assert rc == 0, f"{server_kind} exited with {rc} on SIGTERM (expected a clean exit 0)\n{srv.log_tail()}"
        if server_kind == "spindle":
            assert srv.wal_stats() is not None, f"no `wal stats:` line logged on shutdown:\n{srv.log_tail()}"
    else:
        assert rc == -signal.SIGKILL
    check_files_with_tarantoolctl(srv, expected)

    srv.start()
    with admin(srv) as c:
        got = current(c)
        assert got == expected, _diff(expected, got)
        # schema survived: the space and both indexes are there, by name
        assert c.select(281, ["durable"], index=2)[0][:3] == [SPACE_ID, 1, "durable"]
        assert [r[2] for r in c.select(289, [SPACE_ID])] == ["primary", "by_payload_kind"]
        assert len(c.select(SPACE_ID, ["kind9"], index=1)) == sum(1 for t in expected.values() if t[2] == "kind9")
        # the recovered server keeps writing, and that survives another restart
        expected.update(write_workload(c, start=5000))
    rc = srv.stop(stop_signal)
    srv.start()
    with admin(srv) as c:
        got = current(c)
        assert got == expected, _diff(expected, got)
    srv.stop(signal.SIGTERM)
    check_files_with_tarantoolctl(srv, expected)


def _diff(expected, got):
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    changed = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
    return (f"after restart: {len(missing)} acknowledged rows missing {missing[:10]}, {len(extra)} unexpected "
            f"{extra[:10]}, {len(changed)} changed " +
            ", ".join(f"{k}: {expected[k]!r} -> {got[k]!r}" for k in changed[:5]))


def test_clean_shutdown_on_sigint(server_factory, server_kind):
    srv = server_factory(server_kind)()
    with admin(srv) as c:
        create_schema(c)
        c.call(ip.INSERT, {ip.K_SPACE_ID: SPACE_ID, ip.K_TUPLE: [1, "x", "k"]})
    rc = srv.stop(signal.SIGINT)
    assert rc == 0, f"{server_kind} exited with {rc} on SIGINT\n{srv.log_tail()}"
    srv.start()
    with admin(srv) as c:
        assert c.select(SPACE_ID, [1]) == [[1, "x", "k"]]
