"""Replication: spindle masters and replicas, and Tarantool 2.6 on either side.

Every scenario ends by comparing the FULL contents of the user spaces (and `_cluster`) of the
master and of every replica, tuple by tuple, after waiting (bounded) for them to converge.

* test_two_replicas_under_load: one spindle master, two `--read-only` spindle replicas joined
  from it, four writer threads (insert/replace/update/upsert/delete) running while the
  replicas join and follow; a write to a replica gets ER_READONLY (7) with Tarantool's text;
  both replicas are in the master's `_cluster` with ids 2 and 3; `tarantoolctl cat` reads a
  replica's own xlogs, whose rows keep the master's replica id.
* test_kill9_replica_and_master: kill -9 of a replica under load and its restart; SIGTERM of
  the other replica under load (it must exit cleanly) and its restart; kill -9 of
  the master under load and its restart on the same port: the replicas reconnect by
  themselves (backoff) and converge, with no duplicate and no gap (inserts of unique keys
  would fail on a duplicate and stop the applier).
* test_replica_far_behind_after_rotation: with a small `--wal-max-size` and
  `--checkpoint-count 1`, a stopped replica falls dozens of xlog files behind while the master
  checkpoints: the master keeps the files the replica needs (GC consumer), the restarted
  replica catches up from them, and once it has, the next checkpoint removes them.
* test_proxy_stall_and_cut: the replica reaches the master through a TCP proxy in this test
  that stalls (longer than the disconnect timeout) and cuts the connection mid-stream, again
  and again, under write load.
* test_tarantool_replica_follows_spindle / test_spindle_replica_follows_tarantool: an
  unmodified Tarantool 2.6 joins a spindle master with box.cfg{replication=...}, receives all
  data, follows new writes and a restart of the master; a spindle replica joins and follows a
  Tarantool master.
* test_replica_keeps_up_with_bench: sustained spindle-bench replace load on the master; the
  replica's lag stays bounded and it converges; rows/s and lag are printed.
* test_vote_ballot / test_replication_requests_are_checked (against spindle and Tarantool):
  the VOTE ballot; SUBSCRIBE from an unregistered instance (62) and JOIN as guest (42) are
  refused with Tarantool's exact messages.

Waits are bounded loops that fail when something never happens; no sleep is an assertion.
"""

import os
import random
import signal
import socket
import subprocess
import threading
import time

import pytest
import tarantool

from harness import servers

SPACE = 512
TIMEOUT = 0.2           # --replication-timeout for the tests: heartbeats 0.2 s, drop at 0.8 s
CONVERGE = 60.0


# -- helpers ---------------------------------------------------------------------------------

def connect(srv, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return tarantool.connect(srv.host, srv.port, user="admin", password=srv.password)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def uri(srv, port=None):
    return f"admin:{srv.password}@{srv.host}:{port or srv.port}"


def spindle(factory, *args, start=True, wal_mode="write"):
    return factory(extra_args=["--replication-timeout", str(TIMEOUT), *args], start=start,
                   wal_mode=wal_mode)


def replica(factory, master_port_or_srv, *args, start=True, wal_mode="write"):
    master = master_port_or_srv
    target = uri(master) if not isinstance(master, str) else master
    return spindle(factory, "--replication", target, "--read-only", *args, start=start,
                   wal_mode=wal_mode)


def create_space(c, space_id=SPACE, name="test"):
    c.insert("_space", [space_id, 1, name, "memtx", 0, {}, []])
    c.insert("_index", [space_id, 0, "primary", "tree", {"unique": True}, [[0, "unsigned"]]])


def select_all(c, space):
    return [list(t) for t in c.select(space, [], limit=2**31 - 1)]


def snapshot(c, spaces):
    return {s: select_all(c, s) for s in spaces}


def describe_diff(a, b):
    lines = []
    for space in sorted(set(a) | set(b)):
        x = {t[0]: t for t in a.get(space, [])}
        y = {t[0]: t for t in b.get(space, [])}
        missing = sorted(set(x) - set(y))[:5]
        extra = sorted(set(y) - set(x))[:5]
        changed = [k for k in sorted(set(x) & set(y)) if x[k] != y[k]][:5]
        if missing or extra or changed:
            lines.append(f"space {space}: {len(x)} vs {len(y)} tuples; missing {missing} "
                         f"extra {extra} different {[(x[k], y[k]) for k in changed]}")
    return "\n".join(lines)


def wait_converged(master, replicas, spaces=(SPACE, 320), timeout=CONVERGE):
    """Waits until every replica's full contents equal the master's; fails with a diff."""
    deadline = time.monotonic() + timeout
    mc = connect(master)
    conns = [connect(r) for r in replicas]
    while True:
        expected = snapshot(mc, spaces)
        try:
            got = [snapshot(c, spaces) for c in conns]
        except tarantool.DatabaseError:
            # A replica between two DDL rows (a space whose index is not there yet).
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
            continue
        if all(g == expected for g in got):
            return expected
        if time.monotonic() > deadline:
            diffs = [describe_diff(expected, g) for g in got]
            logs = "\n".join(r.log_tail(15) for r in replicas)
            raise AssertionError("replicas did not converge:\n" + "\n".join(diffs) + "\n" + logs)
        time.sleep(0.1)


class Writers:
    """Threads writing to the master: unique-key inserts (a replayed duplicate would fail on a
    replica), replaces, updates, upserts and deletes. Errors from a master that is down are
    expected in the kill tests: writers reconnect."""

    def __init__(self, srv, threads=4, key_base=0):
        self.srv = srv
        self.stop_flag = threading.Event()
        self.acked = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(key_base + i * 10**7, i),
                                         daemon=True) for i in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def run(self, base, seed):
        rnd = random.Random(seed)
        n = 0
        c = None
        while not self.stop_flag.is_set():
            try:
                if c is None:
                    c = tarantool.connect(self.srv.host, self.srv.port, user="admin",
                                          password=self.srv.password)
                n += 1
                key = base + n
                op = rnd.random()
                c.insert(SPACE, [key, "ins", n])
                if op < 0.3:
                    c.replace(SPACE, [base + rnd.randrange(1, n + 1), "rep", n])
                elif op < 0.5:
                    c.update(SPACE, base + rnd.randrange(1, n + 1), [("=", 1, "upd"), ("+", 2, 1)])
                elif op < 0.6:
                    c.upsert(SPACE, [base + rnd.randrange(1, n + 2), "ups", 0], [("+", 2, 5)])
                elif op < 0.7:
                    c.delete(SPACE, base + rnd.randrange(1, n + 1))
                with self.lock:
                    self.acked += 1
            except Exception:
                c = None
                n += 1000   # never reuse a key whose insert may have committed
                time.sleep(0.05)

    def wait_acked(self, count, timeout=30.0):
        deadline = time.monotonic() + timeout
        start = self.acked
        while self.acked - start < count:
            assert time.monotonic() < deadline, f"writers stalled at {self.acked - start}"
            time.sleep(0.02)

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=30)


class LoneReader:
    """One connection selecting in a tight loop, one request at a time: the TX thread serving
    it waits awake between requests (tx::lone), which must not keep the other fibers on that
    thread (the applier) from running."""

    def __init__(self, srv):
        self.srv = srv
        self.stop_flag = threading.Event()
        self.reads = 0
        self.errors = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def run(self):
        c = connect(self.srv)
        while not self.stop_flag.is_set():
            try:
                c.select(SPACE, [1])
                c.ping()
                self.reads += 2
            except Exception as e:      # recorded, and the test fails on it
                self.errors.append(repr(e))
                return

    def wait_reads(self, count, timeout=30.0):
        deadline = time.monotonic() + timeout
        while self.reads < count:
            assert not self.errors, self.errors
            assert time.monotonic() < deadline, f"reader stalled at {self.reads}"
            time.sleep(0.02)

    def stop(self):
        self.stop_flag.set()
        self.thread.join(timeout=30)


# -- scenarios -------------------------------------------------------------------------------

def test_two_replicas_under_load(spindle_server):
    master = spindle(spindle_server)
    c = connect(master)
    create_space(c)
    writers = Writers(master).start()
    writers.wait_acked(500)
    r1 = replica(spindle_server, master)
    writers.wait_acked(500)
    r2 = replica(spindle_server, master)
    writers.wait_acked(2000)
    writers.stop()
    final = wait_converged(master, [r1, r2])
    assert len(final[SPACE]) > 1000
    ids = sorted(t[0] for t in final[320])
    assert ids == [1, 2, 3], final[320]

    rc = connect(r1)
    with pytest.raises(tarantool.DatabaseError) as e:
        rc.replace(SPACE, [1, "nope"])
    assert e.value.args[0] == 7
    assert e.value.args[1] == "Can't modify data because this instance is in read-only mode."
    assert "following" in r1.log_text()
    assert "downstream" in master.log_text() and "following" in master.log_text()

    # The replica's own WAL holds the master's rows with their origin, in Tarantool's format.
    from harness.durability import tarantoolctl_cat
    r1.stop()
    rows = [row for f in xlogs(r1) for row in tarantoolctl_cat(os.path.join(r1.data_dir, f))]
    user_rows = [row for row in rows if row["BODY"].get("space_id") == SPACE]
    assert user_rows and all(row["HEADER"]["replica_id"] == 1 for row in user_rows)


def test_a_lone_reader_on_the_replica_does_not_hold_up_replication(spindle_server):
    master = spindle(spindle_server)
    create_space(connect(master))
    r = replica(spindle_server, master)
    wait_converged(master, [r])
    readers = [LoneReader(r).start(), LoneReader(master).start()]
    for reader in readers:
        reader.wait_reads(2000)
    writers = Writers(master, threads=1).start()
    writers.wait_acked(1000)
    writers.stop()
    final = wait_converged(master, [r])
    assert len(final[SPACE]) >= 1000 - 300  # inserts less the deletes (at most 30%)
    before = [reader.reads for reader in readers]
    for reader, n in zip(readers, before):
        reader.wait_reads(n + 2000)
        reader.stop()
        assert not reader.errors, reader.errors


@pytest.mark.parametrize("wal_mode", ["write", "fsync"])
def test_kill9_replica_and_master(spindle_server, wal_mode):
    # In fsync mode the files are written durably and zero-filled ahead of their data: the
    # relays read the live file up to the end the WAL published, and after the master's
    # kill -9 they read the zero-filled file it left (cut at restart) before the next one.
    master = spindle(spindle_server, wal_mode=wal_mode)
    create_space(connect(master))
    r1 = replica(spindle_server, master, wal_mode=wal_mode)
    r2 = replica(spindle_server, master, wal_mode=wal_mode)
    writers = Writers(master).start()
    writers.wait_acked(1000)

    r1.kill()
    writers.wait_acked(1000)
    r1.proc = None
    r1.start()
    writers.wait_acked(1000)
    assert r2.stop() == 0     # a clean shutdown while the master keeps streaming
    r2.proc = None
    r2.start()
    writers.wait_acked(1000)

    master.kill()
    master.proc = None
    master.start()            # same port: the replicas reconnect on their own
    writers.wait_acked(1500)
    writers.stop()
    wait_converged(master, [r1, r2])
    for r in (r1, r2):
        assert "reconnecting" in r.log_text()
    if wal_mode == "fsync":
        assert "preallocated bytes off" in master.log_text()


def xlogs(srv):
    return sorted(f for f in os.listdir(srv.data_dir) if f.endswith(".xlog"))


def wait_for(cond, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def checkpoint(srv):
    before = {f for f in os.listdir(srv.data_dir) if f.endswith(".snap")}
    mark = len(srv.log_text())
    srv.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: "checkpoint complete" in srv.log_text()[mark:]
             or "checkpoint failed" in srv.log_text()[mark:], "a checkpoint")
    assert "checkpoint complete" in srv.log_text()[mark:]
    return before


@pytest.mark.parametrize("wal_mode", ["write", "fsync"])
def test_replica_far_behind_after_rotation(spindle_server, wal_mode):
    # In fsync mode every file is zero-filled ahead of its data and cut at rotation: the
    # relay reads each one live, then sealed.
    master = spindle(spindle_server, "--wal-max-size", "16384", "--checkpoint-count", "1",
                     "--checkpoint-interval", "0", wal_mode=wal_mode)
    c = connect(master)
    create_space(c)
    r = replica(spindle_server, master, wal_mode=wal_mode)
    for i in range(200):
        c.replace(SPACE, [i, "x" * 50])
    wait_converged(master, [r])
    r.stop()

    # Far behind: many rotations and two checkpoints while the replica is down.
    for round_ in range(2):
        for i in range(3000):
            c.replace(SPACE, [i + round_ * 3000, "y" * 50, round_])
        checkpoint(master)
    kept = xlogs(master)
    assert len(kept) > 10, f"the master should keep the xlogs the replica needs: {kept}"
    for name in kept[:-1]:
        with open(os.path.join(master.data_dir, name), "rb") as f:
            assert f.read().endswith(bytes.fromhex("d510aded")), f"{name} is not closed clean"

    r.proc = None
    r.start()
    wait_converged(master, [r])
    # Once the replica has acknowledged everything, the next checkpoint drops the old files.
    c.replace(SPACE, [10**6, "after"])
    wait_converged(master, [r])

    def collected():
        checkpoint(master)    # the replica's ACK of the last row may still be on its way
        return len(xlogs(master)) <= 2
    wait_for(collected, "old xlogs removed after the replica caught up")


class Proxy:
    """A TCP proxy that can stall (stop forwarding) and cut every connection."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.flowing = threading.Event()
        self.flowing.set()
        self.socks = []
        self.lock = threading.Lock()
        self.closed = False
        self.connections = 0
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.socks += [client, upstream]
                self.connections += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pump, args=(a, b), daemon=True).start()

    def pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self.flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    def cut(self):
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def close(self):
        self.closed = True
        self.flowing.set()
        self.listener.close()
        self.cut()


def test_proxy_stall_and_cut(spindle_server):
    master = spindle(spindle_server)
    create_space(connect(master))
    proxy = Proxy(master.port)
    try:
        r = replica(spindle_server, uri(master, proxy.port))
        writers = Writers(master).start()
        for _ in range(3):
            writers.wait_acked(500)
            proxy.flowing.clear()            # stall well past the disconnect timeout
            time.sleep(TIMEOUT * 8)
            proxy.flowing.set()
            writers.wait_acked(500)
            proxy.cut()                      # cut mid-stream
        writers.stop()
        wait_converged(master, [r])
        assert proxy.connections >= 4, proxy.connections
    finally:
        proxy.close()


def test_tarantool_replica_follows_spindle(spindle_server, tarantool_server):
    master = spindle(spindle_server)
    c = connect(master)
    create_space(c)
    for i in range(500):
        c.replace(SPACE, [i, f"before-{i}"])
    tnt = tarantool_server(extra_cfg=f"replication = '{uri(master)}', "
                                     f"replication_timeout = {TIMEOUT},")
    wait_converged(master, [tnt])
    writers = Writers(master, threads=2).start()
    writers.wait_acked(1500)
    writers.stop()
    final = wait_converged(master, [tnt])
    assert sorted(t[0] for t in final[320]) == [1, 2]
    info = connect(tnt).eval("return box.info.replication[1].upstream.status").data
    assert info == ["follow"], info
    # The Tarantool replica reconnects to the restarted master by itself.
    master.restart()
    c = connect(master)
    for i in range(500, 700):
        c.replace(SPACE, [i, f"after-restart-{i}"])
    wait_converged(master, [tnt])


LOCAL_SPACE, TEMP_SPACE = 601, 602


def test_local_and_temporary_spaces_stay_home(spindle_server, tarantool_server):
    """Tarantool 2.6's rules, checked against a Tarantool replica: rows of an is_local space
    are logged with replica id 0 and LSNs of vclock component 0 and never replicated; a
    temporary space is not logged at all (empty after a restart) and not replicated."""
    master = spindle(spindle_server)
    c = connect(master)
    create_space(c)
    c.insert("_space", [LOCAL_SPACE, 1, "loc", "memtx", 0, {"group_id": 1}, []])
    c.insert("_space", [TEMP_SPACE, 1, "tmp", "memtx", 0, {"temporary": True}, []])
    for sid in (LOCAL_SPACE, TEMP_SPACE):
        c.insert("_index", [sid, 0, "primary", "tree", {"unique": True}, [[0, "unsigned"]]])
    tnt = tarantool_server(extra_cfg=f"replication = '{uri(master)}', "
                                     f"replication_timeout = {TIMEOUT},")
    r = replica(spindle_server, master)
    for i in range(50):
        c.replace(SPACE, [i, "global"])
        c.replace(LOCAL_SPACE, [i, "local"])
        c.replace(TEMP_SPACE, [i, "temporary"])
    wait_converged(master, [tnt, r])
    for other in (tnt, r):
        oc = connect(other)
        assert oc.select(LOCAL_SPACE, []).data == [], other.kind
        assert oc.select(TEMP_SPACE, []).data == [], other.kind

    master.restart()
    c = connect(master)
    assert len(c.select(LOCAL_SPACE, []).data) == 50
    assert c.select(TEMP_SPACE, []).data == []
    master.stop()
    from harness.durability import tarantoolctl_cat
    rows = [row for f in xlogs(master) for row in tarantoolctl_cat(os.path.join(master.data_dir, f))]
    local = [row["HEADER"] for row in rows if row.get("BODY", {}).get("space_id") == LOCAL_SPACE]
    assert [h["lsn"] for h in local] == list(range(1, 51))
    assert all(h.get("group_id") == 1 and "replica_id" not in h for h in local), local[:3]
    assert not [row for row in rows if row.get("BODY", {}).get("space_id") == TEMP_SPACE]


def test_spindle_replica_follows_tarantool(spindle_server, tarantool_server):
    tnt = tarantool_server()
    tc = connect(tnt)
    tc.eval("local s = box.schema.space.create('test', {id = 512}) s:create_index('primary')")
    for i in range(500):
        tc.replace(SPACE, [i, f"before-{i}"])
    r = replica(spindle_server, tnt)
    wait_converged(tnt, [r])
    writers = Writers(tnt, threads=2).start()
    writers.wait_acked(1500)
    # A multi-statement transaction arrives whole; one ending with a row of a local space
    # reaches the replica with a NOP carrying its end (the local row stays on the master).
    tc.eval("box.begin() for i = 1, 10 do box.space.test:replace{9000000 + i, 'txn'} end "
            "box.commit()")
    tc.eval("local l = box.schema.space.create('loc', {is_local = true, id = 600}) "
            "l:create_index('primary') "
            "box.begin() box.space.test:replace{9100000, 'g'} l:replace{1} box.commit()")
    writers.stop()
    final = wait_converged(tnt, [r])
    assert sorted(t[0] for t in final[320]) == [1, 2]
    assert tarantool_replica_status(tnt) == "follow"
    # The replica's own WAL (NOP included) replays on restart.
    r.restart()
    tc.replace(SPACE, [9200000, "after restart"])
    wait_converged(tnt, [r])
    assert not connect(r).select("loc", []).data


def tarantool_replica_status(tnt):
    return connect(tnt).eval(
        "return box.info.replication[2].downstream.status").data[0]


def bench_binary():
    path = os.path.join(os.path.dirname(servers.spindle_bin()), "spindle-bench")
    if not os.access(path, os.X_OK):
        pytest.fail(f"spindle-bench not found at {path} (cargo build --release -p spindle-bench)",
                    pytrace=False)
    return path


def test_replica_keeps_up_with_bench(spindle_server):
    master = spindle(spindle_server)
    r = replica(spindle_server, master)
    mc, rc = connect(master), connect(r)
    create_space(mc)
    wait_converged(master, [r])
    seconds = 8
    bench = subprocess.Popen(
        [bench_binary(), "--addr", f"{master.host}:{master.port}", "--user", "admin",
         "--password", master.password, "--duration", str(seconds), "--workload", "replace",
         "--space", "test", "--keys", "100000", "--connections", "16", "--depth", "16",
         "--progress", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Lag: how long a marker written under load takes to appear on the replica.
    lags = []
    marker = 10**9
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end - 0.5:
        marker += 1
        written = time.monotonic()
        mc.replace(SPACE, [marker, "marker"])
        wait_for(lambda: rc.select(SPACE, [marker]).data, "the marker on the replica",
                 timeout=30)
        lags.append(time.monotonic() - written)
        time.sleep(0.2)
    out, _ = bench.communicate(timeout=120)
    assert bench.returncode == 0, out
    started = time.monotonic()
    wait_converged(master, [r], spaces=(SPACE,))
    catch_up = time.monotonic() - started
    rows = len(select_all(mc, SPACE))
    print(f"\nbench output:\n{out}\nmarker lag: max {max(lags) * 1000:.1f} ms, "
          f"median {sorted(lags)[len(lags) // 2] * 1000:.1f} ms over {len(lags)} markers; "
          f"catch-up after the load {catch_up:.2f} s; {rows} rows")
    assert max(lags) < 5.0, lags


# -- protocol details, checked against Tarantool 2.6 too ---------------------------------------

VOTE, JOIN, SUBSCRIBE = 0x44, 0x41, 0x42
K_INSTANCE_UUID, K_CLUSTER_UUID, K_VCLOCK, K_BALLOT = 0x24, 0x25, 0x26, 0x29


def test_vote_ballot(server_kind, server_factory):
    from harness import iproto as ip
    srv = server_factory(server_kind)()
    with ip.connect(srv, "admin", srv.password) as c:
        c.call(ip.INSERT, {ip.K_SPACE_ID: 280, ip.K_TUPLE: [600, 1, "v", "memtx", 0, {}, []]})
        h, b = c.request(VOTE)
    assert h[ip.K_TYPE] == ip.OK, (h, b)
    ballot = b[K_BALLOT]
    assert ballot[1] is False and ballot[4] is False, ballot      # IS_RO, IS_LOADING
    assert isinstance(ballot[3], dict), ballot                      # GC_VCLOCK
    assert ballot[2].get(1, 0) >= 1, ballot                         # VCLOCK {1: lsn}


def test_replication_requests_are_checked(server_kind, server_factory):
    """SUBSCRIBE from an instance not in `_cluster` and JOIN as guest are refused with
    Tarantool's errors."""
    from harness import iproto as ip
    srv = server_factory(server_kind)()
    stranger = "11111111-2222-3333-4444-555555555555"
    with ip.connect(srv, "admin", srv.password) as c:
        cluster = [t for t in c.select(272) if t[0] == "cluster"][0][1]
        h, b = c.request(SUBSCRIBE, {K_CLUSTER_UUID: cluster, K_INSTANCE_UUID: stranger,
                                     K_VCLOCK: {}})
    assert h[ip.K_TYPE] == ip.TYPE_ERROR | 62, (h, b)
    assert b[ip.K_ERROR_24] == (f"Replica {stranger} is not registered with replica set "
                                f"{cluster}")
    with ip.connect(srv) as c:
        h, b = c.request(JOIN, {K_INSTANCE_UUID: stranger})
    assert h[ip.K_TYPE] == ip.TYPE_ERROR | 42, (h, b)
    assert b[ip.K_ERROR_24] == "Read access to universe '' is denied for user 'guest'", b


def test_a_second_subscribe_of_one_replica_is_refused(server_kind, server_factory):
    """While a relay serves a replica, another SUBSCRIBE with its UUID gets ER_CFG; once the
    first connection is gone, the replica may subscribe again."""
    from harness import iproto as ip
    srv = server_factory(server_kind)()
    replica_uuid = "11111111-2222-3333-4444-555555555555"
    with ip.connect(srv, "admin", srv.password) as c:
        c.call(ip.INSERT, {ip.K_SPACE_ID: 320, ip.K_TUPLE: [2, replica_uuid]})
        cluster = [t for t in c.select(272) if t[0] == "cluster"][0][1]
    body = {K_CLUSTER_UUID: cluster, K_INSTANCE_UUID: replica_uuid, K_VCLOCK: {}}
    first = ip.connect(srv, "admin", srv.password)
    h, b = first.request(SUBSCRIBE, body)
    assert h[ip.K_TYPE] == ip.OK, (h, b)
    with ip.connect(srv, "admin", srv.password) as c:
        h, b = c.request(SUBSCRIBE, body)
    assert h[ip.K_TYPE] == ip.TYPE_ERROR | 59, (h, b)
    assert b[ip.K_ERROR_24] == ("Incorrect value for option 'replication': duplicate "
                                "connection with the same replica UUID"), b
    first.close()
    deadline = time.monotonic() + 15
    while True:
        with ip.connect(srv, "admin", srv.password) as c:
            h, b = c.request(SUBSCRIBE, body)
        if h[ip.K_TYPE] == ip.OK:
            break
        assert h[ip.K_TYPE] == ip.TYPE_ERROR | 59, (h, b)
        assert time.monotonic() < deadline, "the first relay never ended"
        time.sleep(0.1)
