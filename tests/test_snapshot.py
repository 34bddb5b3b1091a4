"""Checkpoints (snapshots) on SIGUSR1, WAL rotation and garbage collection of old files.

* test_checkpoint_while_serving: 200k preloaded rows, a writer thread (insert/replace/update/
  delete on two spaces, the model updated only on acknowledged replies) and a reader thread keep
  running while SIGUSR1 writes a checkpoint. Asserted: at least one read and one write were
  answered while `<sig>.snap.inprogress` existed (the server serves during the checkpoint), the
  reads always returned the right row, the `.snap` exists and no `.snap.inprogress` is left,
  spindle logged `checkpoint started` and `checkpoint complete: <that path>`; after more writes,
  SIGTERM + restart gives the FULL contents of every user space equal to the model; then a second
  checkpoint, more writes, kill -9 + restart: equal again.
* test_snapshot_file_is_tarantools: `tarantoolctl cat` reads the `.snap` (exit 0) and its user
  rows are exactly the model's rows (all INSERT, in primary-key order); the file is SNAP 0.13 with
  an EOF marker; with every `.xlog` deleted, the snapshot alone restores everything.
* test_second_sigusr1_during_checkpoint: a second SIGUSR1 while the first checkpoint still writes
  (seen by its `.snap.inprogress`) is refused with `checkpoint already in progress` (Tarantool 2.6:
  "ER_CHECKPOINT_IN_PROGRESS: Snapshot is already in progress") and makes no second snapshot.
* test_rotation_and_gc: `--wal-max-size 65536 --checkpoint-count 2 --checkpoint-interval 0`: the
  WAL rotates near the size, and after each of 3 checkpoints only the files of the newest 2
  checkpoints remain (2 `.snap`, no `.xlog` entirely older than the older kept snapshot, but the
  xlog that snapshot needs is kept); SIGTERM and kill -9 restarts restore everything.
* test_kill9_during_checkpoint: kill -9 while `.snap.inprogress` is being written: the restart
  ignores the partial file and recovers everything from the older snapshot + xlogs; a checkpoint
  right after (for spindle: same vclock, so the same file name as the stale `.inprogress`)
  succeeds and leaves no `.inprogress`.
* test_checkpoint_interval: `--checkpoint-interval 1` writes a checkpoint without any signal.

All tests run against spindle and, to validate them, Tarantool 2.6 (which also checkpoints on
SIGUSR1); spindle's log lines are checked for spindle only.  Waits are bounded, never timed.
"""

import hashlib
import os
import signal
import threading
import time

import pytest

from harness import iproto as ip
from harness import xlogfile as xf
from harness.durability import (admin, assert_contents, checkpoint, create_space, log_mark,
                                log_since, server_kwargs, snap_inprogress, tail,
                                tarantoolctl_cat)

A, B = 520, 521           # A: unsigned primary key + non-unique secondary; B: string primary key
PRELOAD = 200_000
PIPELINE = 2000
WAIT = 30.0


def preload_tuple(i):
    # hex of a hash: compresses only ~2:1, so the snapshot is several MB and takes a while
    return [i, hashlib.blake2b(i.to_bytes(8, "little"), digest_size=24).hexdigest(), i % 100]


def pipelined_insert(c, space, tuples):
    """Insert with PIPELINE requests in flight; every reply must be OK."""
    sync = 10**6
    for s in range(0, len(tuples), PIPELINE):
        chunk = tuples[s:s + PIPELINE]
        frames = []
        for t in chunk:
            sync += 1
            frames.append(ip.packet({ip.K_TYPE: ip.INSERT, ip.K_SYNC: sync}, {ip.K_SPACE_ID: space, ip.K_TUPLE: t}))
        c.send_bytes(b"".join(frames))
        for _ in chunk:
            h, b, _ = c.read_packet()
            assert h.get(ip.K_TYPE) == ip.OK, f"pipelined insert failed: {h} {b}"


def setup_spaces(c, preload=0):
    create_space(c, A, "snap_a", secondary=(2, "unsigned"))
    create_space(c, B, "snap_b", pk_type="string")
    model = {A: {}, B: {}}
    if preload:
        tuples = [preload_tuple(i) for i in range(preload)]
        pipelined_insert(c, A, tuples)
        model[A] = {t[0]: t for t in tuples}
    return model


def apply_op(c, model, i, base):
    """One acknowledged write (insert/replace/update/delete), reflected in the model on success."""
    ka = base + i
    kind = i % 6
    if kind in (0, 1, 2):
        t = [ka, "w%d" % i, i % 100]
        assert c.call(ip.INSERT, {ip.K_SPACE_ID: A, ip.K_TUPLE: t}) == [t]
        model[A][ka] = t
    elif kind == 3:
        t = ["k%d" % (i % 50), i, {"m": i, "l": [i, "x"]}, None, True]
        assert c.call(ip.REPLACE, {ip.K_SPACE_ID: B, ip.K_TUPLE: t}) == [t]
        model[B][t[0]] = t
    elif kind == 4:
        key = base + i - 4
        got = c.call(ip.UPDATE, {ip.K_SPACE_ID: A, ip.K_KEY: [key], ip.K_TUPLE: [["=", 1, "upd%d" % i]]})
        if key in model[A]:
            model[A][key] = model[A][key][:1] + ["upd%d" % i] + model[A][key][2:]
            assert got == [model[A][key]], f"update {key}: {got}"
        else:
            assert got == [], f"update of a missing key {key}: {got}"
    else:
        key = base + i - 5
        c.call(ip.DELETE, {ip.K_SPACE_ID: A, ip.K_KEY: [key]})
        model[A].pop(key, None)


class Load:
    """A writer thread (apply_op) and a reader thread (a preloaded row and space B), counting the
    replies that arrive while a `.snap.inprogress` exists."""

    def __init__(self, srv, model, base):
        self.srv, self.model, self.base = srv, model, base
        self.stop = threading.Event()
        self.writes = 0
        self.reads = 0
        self.writes_during = 0
        self.reads_during = 0
        self.errors = []
        self.threads = [threading.Thread(target=self._guard, args=(self._writer,), daemon=True),
                        threading.Thread(target=self._guard, args=(self._reader,), daemon=True)]

    def _guard(self, fn):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 -- reported by the test
            self.errors.append(f"{fn.__name__}: {type(e).__name__}: {e}")
            self.stop.set()

    def _writer(self):
        with admin(self.srv) as c:
            i = 0
            while not self.stop.is_set():
                apply_op(c, self.model, i, self.base)
                i += 1
                self.writes += 1
                if snap_inprogress(self.srv.data_dir):
                    self.writes_during += 1

    def _reader(self):
        with admin(self.srv) as c:
            probe = preload_tuple(7)
            while not self.stop.is_set():
                got = c.select(A, [7])
                assert got == [probe], f"select A[7] returned {got!r} (expected {probe!r})"
                c.select(B, [], iterator=2)
                self.reads += 1
                if snap_inprogress(self.srv.data_dir):
                    self.reads_during += 1

    def start(self):
        for t in self.threads:
            t.start()

    def wait_writes(self, n, what):
        target = self.writes + n
        deadline = time.monotonic() + WAIT
        while self.writes < target:
            assert not self.errors, f"load failed {what}: {self.errors}"
            assert time.monotonic() < deadline, f"{what}: writes stalled at {self.writes} (want {target})"
            time.sleep(0.005)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=WAIT)
            assert not t.is_alive(), "load thread did not stop"
        assert not self.errors, f"client errors during the checkpoint: {self.errors}"


def do_writes(srv, model, base, n):
    with admin(srv) as c:
        for i in range(n):
            apply_op(c, model, i, base)


def restart_and_compare(srv, model, sig, when):
    rc = srv.stop(sig)
    if sig == signal.SIGTERM:
        assert rc == 0, f"{srv.kind} exited {rc} on SIGTERM\n{tail(srv.log_text())}"
    srv.start()
    with admin(srv, timeout=30) as c:
        assert_contents(c, model, when)


def test_checkpoint_while_serving(server_factory, server_kind):
    srv = server_factory(server_kind)()
    with admin(srv, timeout=30) as c:
        model = setup_spaces(c, preload=PRELOAD)
    load = Load(srv, model, base=10**7)
    load.start()
    load.wait_writes(20, "before the checkpoint")
    snap = checkpoint(srv)
    load.wait_writes(20, "after the checkpoint")
    load.finish()
    print(f"\n[snapshot] {server_kind}: {load.reads} reads / {load.writes} writes, of which "
          f"{load.reads_during} / {load.writes_during} answered while {os.path.basename(snap)}.inprogress existed")
    assert load.reads_during >= 1 and load.writes_during >= 1, (
        f"no read ({load.reads_during}) or no write ({load.writes_during}) was answered while the snapshot "
        f"was being written (.snap.inprogress present): clients must keep being served during a checkpoint "
        f"(or the snapshot is not written through <sig>.snap.inprogress)")
    assert os.path.isfile(snap) and not snap_inprogress(srv.data_dir), xf.listing(srv.data_dir)
    snap_file = xf.parse(snap)
    assert snap_file.filetype == "SNAP" and snap_file.closed, f"bad snapshot file: {snap_file.describe()}"

    do_writes(srv, model, base=2 * 10**7, n=60)
    restart_and_compare(srv, model, signal.SIGTERM, "SIGTERM restart after a checkpoint under load")
    do_writes(srv, model, base=3 * 10**7, n=30)
    checkpoint(srv)
    do_writes(srv, model, base=4 * 10**7, n=60)
    restart_and_compare(srv, model, signal.SIGKILL, "kill -9 restart after a second checkpoint")


def test_snapshot_file_is_tarantools(server_factory, server_kind):
    srv = server_factory(server_kind)()
    with admin(srv) as c:
        model = setup_spaces(c, preload=300)
        for i in range(120):
            apply_op(c, model, i, base=10**6)
    snap = checkpoint(srv)
    f = xf.parse(snap)
    assert (f.filetype, f.version) == ("SNAP", "0.13") and f.closed, f"snapshot header/EOF: {f.describe()}"
    assert "VClock" in f.meta and "Instance" in f.meta and "PrevVClock" not in f.meta, f.meta
    rows = tarantoolctl_cat(snap)
    types = {r.get("HEADER", {}).get("type") for r in rows}
    assert types <= {"INSERT"}, f"snapshot rows must all be INSERT, got types {types}"
    in_snap = {A: [], B: []}
    for r in rows:
        sid = r.get("BODY", {}).get("space_id")
        if sid in in_snap:
            in_snap[sid].append(r["BODY"]["tuple"])
    expected = {sid: [rows_[k] for k in sorted(rows_)] for sid, rows_ in model.items()}
    for sid in (A, B):
        assert in_snap[sid] == expected[sid], (
            f"space {sid} in {os.path.basename(snap)} (tarantoolctl cat): {len(in_snap[sid])} rows, expected "
            f"{len(expected[sid])}; first difference at "
            f"{next((i for i, (x, y) in enumerate(zip(in_snap[sid], expected[sid])) if x != y), 'the end')}")
    # the snapshot alone restores everything
    assert srv.stop(signal.SIGTERM) == 0
    for p in xf.files(srv.data_dir, "xlog"):
        os.unlink(p)
    srv.start()
    with admin(srv) as c:
        assert_contents(c, model, "restart from the snapshot alone (all .xlog files deleted)")
        do_writes(srv, model, base=5 * 10**6, n=20)
    restart_and_compare(srv, model, signal.SIGKILL, "kill -9 restart after recovering from the snapshot alone")


def test_second_sigusr1_during_checkpoint(server_factory, server_kind):
    # Tarantool writes 200k rows in a few ms; its rate limit makes the window visible there.
    srv = server_factory(server_kind)(**server_kwargs(server_kind, snap_io_rate_limit=5))
    with admin(srv, timeout=30) as c:
        model = setup_spaces(c, preload=PRELOAD)
    refused_text = "checkpoint already in progress" if server_kind == "spindle" else "Snapshot is already in progress"
    attempts = []
    for attempt in range(5):
        before = set(xf.files(srv.data_dir, "snap"))
        mark = log_mark(srv)
        os.kill(srv.pid, signal.SIGUSR1)
        deadline = time.monotonic() + WAIT
        second_sent = False
        while time.monotonic() < deadline:
            assert srv.is_running(), f"{server_kind} died after SIGUSR1:\n{tail(srv.log_text())}"
            if snap_inprogress(srv.data_dir):
                os.kill(srv.pid, signal.SIGUSR1)
                second_sent = True
                break
            if set(xf.files(srv.data_dir, "snap")) - before:
                break  # finished before we saw it running
            time.sleep(0.0005)
        # let everything started by the signals finish
        while time.monotonic() < deadline:
            log = log_since(srv, mark)
            quiet = not snap_inprogress(srv.data_dir) and set(xf.files(srv.data_dir, "snap")) - before
            if server_kind == "spindle":
                quiet = quiet and log.count("checkpoint complete") + log.count("checkpoint failed") \
                    >= log.count("checkpoint started")
            if quiet:
                break
            time.sleep(0.01)
        else:
            pytest.fail(f"checkpoint did not finish within {WAIT}s:\n{tail(log_since(srv, mark))}", pytrace=False)
        time.sleep(0.2)  # a refusal is logged right away; give a late one (no timing is asserted) a moment
        log = log_since(srv, mark)
        new = set(xf.files(srv.data_dir, "snap")) - before
        attempts.append(f"attempt {attempt + 1}: second signal sent while .inprogress existed: {second_sent}, "
                        f"new snapshots {sorted(os.path.basename(p) for p in new)}")
        if second_sent and refused_text in log:
            assert len(new) == 1, f"the refused second SIGUSR1 still produced snapshots: {new}"
            if server_kind == "spindle":
                assert log.count("checkpoint started") == 1, f"two checkpoints started:\n{tail(log)}"
            break
        if second_sent and server_kind == "spindle" and log.count("checkpoint started") == 1:
            # (two `checkpoint started` lines: the first one ended before the second signal was
            # handled -- a race, tried again)
            pytest.fail(f"a second SIGUSR1 sent while {sorted(snap_inprogress(srv.data_dir)) or 'the .inprogress'} "
                        f"existed did not log `{refused_text}`:\n{tail(log)}", pytrace=False)
        do_writes(srv, model, base=10**7 + attempt * 1000, n=3)  # a new vclock for the next attempt
    else:
        pytest.fail(f"never caught a running checkpoint with a second SIGUSR1 that logged `{refused_text}`:\n"
                    + "\n".join(attempts) + f"\nlog tail:\n{tail(srv.log_text())}", pytrace=False)
    print(f"\n[snapshot] {server_kind}: " + "; ".join(attempts))
    with admin(srv) as c:
        assert c.select(A, [7]) == [preload_tuple(7)]


def test_kill9_during_checkpoint(server_factory, server_kind):
    srv = server_factory(server_kind)(**server_kwargs(server_kind, snap_io_rate_limit=5))
    with admin(srv, timeout=30) as c:
        model = setup_spaces(c, preload=PRELOAD)
    stale = []
    for attempt in range(3):
        do_writes(srv, model, base=10**7 + attempt * 1000, n=30)
        before = set(xf.files(srv.data_dir, "snap"))
        os.kill(srv.pid, signal.SIGUSR1)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            assert srv.is_running(), f"{server_kind} died after SIGUSR1:\n{tail(srv.log_text())}"
            if snap_inprogress(srv.data_dir):
                srv.stop(signal.SIGKILL)
                break
            if set(xf.files(srv.data_dir, "snap")) - before:
                break
            time.sleep(0.0005)
        if not srv.is_running():
            stale = snap_inprogress(srv.data_dir)
            if stale:
                break
            srv.start()
        while snap_inprogress(srv.data_dir) and time.monotonic() < deadline:
            time.sleep(0.01)   # caught it too late: let it finish, then try again
    assert stale, "never managed to kill the server while its .snap.inprogress existed (3 attempts)"
    print(f"\n[snapshot] {server_kind}: killed during the checkpoint, left {[os.path.basename(p) for p in stale]}")
    srv.start()
    with admin(srv, timeout=30) as c:
        assert_contents(c, model, "restart after kill -9 in the middle of writing a snapshot")
    # No write in between, so for spindle this checkpoint has the interrupted one's vclock and
    # file name (Tarantool's instance script writes at every start: its vclock moved on).
    snap = checkpoint(srv)
    same = os.path.basename(snap) + ".inprogress" == os.path.basename(stale[0])
    print(f"[snapshot] {server_kind}: next checkpoint {os.path.basename(snap)} "
          f"({'same' if same else 'another'} file name as the interrupted one)")
    assert xf.parse(snap).closed
    do_writes(srv, model, base=2 * 10**7, n=30)
    restart_and_compare(srv, model, signal.SIGKILL, "kill -9 restart after the repeated checkpoint")


def _check_gc(data_dir, checkpoints, count):
    """Problems with the file set after the given checkpoints (newest last), or [] if none."""
    snaps = xf.files(data_dir, "snap")
    xlogs = xf.files(data_dir, "xlog")
    problems = []
    kept = [os.path.basename(p) for p in checkpoints[-count:]]
    if sorted(os.path.basename(p) for p in snaps) != sorted(kept):
        problems.append(f"snapshots on disk {[os.path.basename(p) for p in snaps]}, expected exactly the newest "
                        f"{count} checkpoints {kept}")
    oldest_kept = xf.signature_of(checkpoints[-count]) if len(checkpoints) >= count else 0
    sigs = [xf.signature_of(p) for p in xlogs]
    stale = [os.path.basename(p) for p, nxt in zip(xlogs, sigs[1:]) if nxt <= oldest_kept]
    if stale:
        problems.append(f"xlogs entirely older than the oldest kept snapshot ({oldest_kept}) remain: {stale}")
    if sigs and sigs[0] > oldest_kept:
        problems.append(f"the xlog the oldest kept snapshot ({oldest_kept}) needs was removed: oldest xlog "
                        f"is {os.path.basename(xlogs[0])}")
    return problems


def test_rotation_and_gc(server_factory, server_kind):
    max_size, count = 65536, 2
    srv = server_factory(server_kind)(**server_kwargs(server_kind, wal_max_size=max_size, checkpoint_count=count,
                                                                checkpoint_interval=0))
    with admin(srv) as c:
        model = setup_spaces(c)
    checkpoints = list(xf.files(srv.data_dir, "snap"))  # the bootstrap checkpoint
    assert len(checkpoints) == 1, f"expected one bootstrap snapshot: {xf.listing(srv.data_dir)}"
    payload = "r" * 700
    report = []
    for rnd in range(3):
        n_before = len(xf.files(srv.data_dir, "xlog"))
        with admin(srv) as c:
            for i in range(300):     # ~220 KB of rows, one per request: several rotations
                k = 10**6 * (rnd + 1) + i
                t = [k, payload + str(i), i % 10]
                assert c.call(ip.INSERT, {ip.K_SPACE_ID: A, ip.K_TUPLE: t}) == [t]
                model[A][k] = t
            c.call(ip.DELETE, {ip.K_SPACE_ID: A, ip.K_KEY: [10**6 * (rnd + 1)]})
            model[A].pop(10**6 * (rnd + 1))
        xlogs = xf.files(srv.data_dir, "xlog")
        assert len(xlogs) - n_before >= 2, (f"round {rnd + 1}: ~220 KB written with --wal-max-size {max_size} but "
                                            f"only {len(xlogs) - n_before} new xlog files: {xf.listing(srv.data_dir)}")
        oversized = [f"{os.path.basename(p)} {os.path.getsize(p)}" for p in xlogs[:-1]
                     if os.path.getsize(p) > max_size + 8192]
        assert not oversized, f"closed xlogs far beyond --wal-max-size {max_size}: {oversized}"
        checkpoints.append(checkpoint(srv))
        deadline = time.monotonic() + WAIT
        while True:
            problems = _check_gc(srv.data_dir, checkpoints, count)
            if not problems:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"after checkpoint {rnd + 1} (--checkpoint-count {count}), within {WAIT}s:\n"
                            + "\n".join(problems) + f"\nfiles: {xf.listing(srv.data_dir)}", pytrace=False)
            time.sleep(0.02)
        report.append(f"checkpoint {rnd + 1}: {len(xf.files(srv.data_dir, 'snap'))} snap, "
                      f"{len(xf.files(srv.data_dir, 'xlog'))} xlog (created {len(xlogs) - n_before} xlogs)")
    print(f"\n[snapshot] {server_kind} rotation+gc: " + "; ".join(report))
    do_writes(srv, model, base=9 * 10**6, n=30)
    restart_and_compare(srv, model, signal.SIGTERM, "SIGTERM restart after rotation and GC")
    do_writes(srv, model, base=8 * 10**6, n=30)
    restart_and_compare(srv, model, signal.SIGKILL, "kill -9 restart after rotation and GC")


def test_checkpoint_interval(server_factory, server_kind):
    srv = server_factory(server_kind)(**server_kwargs(server_kind, checkpoint_interval=1))
    with admin(srv) as c:
        model = setup_spaces(c, preload=50)
    before = set(xf.files(srv.data_dir, "snap"))
    mark = log_mark(srv)
    deadline = time.monotonic() + WAIT
    while not (set(xf.files(srv.data_dir, "snap")) - before) or snap_inprogress(srv.data_dir):
        assert time.monotonic() < deadline, (f"--checkpoint-interval 1: no new snapshot within {WAIT}s: "
                                             f"{xf.listing(srv.data_dir)}\n{tail(log_since(srv, mark))}")
        time.sleep(0.05)
    if server_kind == "spindle":
        while "checkpoint complete" not in log_since(srv, mark):
            assert time.monotonic() < deadline, f"no `checkpoint complete` logged:\n{tail(log_since(srv, mark))}"
            time.sleep(0.05)
    restart_and_compare(srv, model, signal.SIGKILL, "kill -9 restart after an automatic checkpoint")
