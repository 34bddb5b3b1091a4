"""kill -9 while stored procedures commit: every commit a procedure was told is durable
survives the restart, and nothing else does.

Writer threads EVAL two kinds of procedure in a loop, each call with a fresh id `k`:

* STEPS: `STEPS` single-statement commits in order (`insert{k * 100 + i}` for i = 1..STEPS);
  each statement parks its fiber until the WAL has answered, so after a restart the rows of
  one call are a prefix 1..j of its steps, and all of them if the call replied.
* ATOMIC: one `box.begin() ... box.commit()` of ATOMIC_ROWS rows: all or nothing, all if the
  call replied.

The server gets SIGKILL while the writers run and is restarted on the same data directory.
Runs against spindle and, to validate the test, Tarantool 2.6.
"""

import os
import random
import signal
import socket
import threading
import time

import pytest

from harness import iproto as ip
from harness.durability import admin, create_space, select_all, tail

SPACE = 531
WRITERS = 16
STEPS = 5
ATOMIC_ROWS = 4
MIN_REPLIED = 300
ACK_WAIT = 30.0

STEPS_PROC = (f"local k = ... for i = 1, {STEPS} do box.space[{SPACE}]:insert{{k * 100 + i, k}} end "
              "return k")
ATOMIC_PROC = (f"local k = ... box.begin() for i = 1, {ATOMIC_ROWS} do "
               f"box.space[{SPACE}]:insert{{k * 100 + i, k}} end box.commit() return k")


class Writer(threading.Thread):
    def __init__(self, srv, w):
        super().__init__(daemon=True, name=f"proc-writer-{w}")
        self.srv, self.w = srv, w
        self.sent = {}      # k -> kind, recorded before the request goes out
        self.replied = {}   # k -> kind, when the reply arrived
        self.error = None

    def run(self):
        try:
            c = admin(self.srv, timeout=10.0)
        except (OSError, ip.ConnectionClosed) as e:
            self.error = f"connect: {e!r}"
            return
        seq = 0
        try:
            while True:
                seq += 1
                k = self.w * 100_000 + seq
                kind = "steps" if seq % 2 else "atomic"
                self.sent[k] = kind
                expr = STEPS_PROC if kind == "steps" else ATOMIC_PROC
                try:
                    got = c.call(ip.EVAL, {ip.K_EXPR: expr, ip.K_TUPLE: [k]})
                except (ip.ConnectionClosed, ConnectionError, socket.timeout, OSError):
                    return
                if got != [k]:
                    self.error = f"{kind} {k} answered {got!r}"
                    return
                self.replied[k] = kind
        except ip.IprotoError as e:
            self.error = f"procedure failed: {e}"
        finally:
            c.close()


def check(rows, sent, replied, where):
    by_call = {}
    for key, k in ((t[0], t[1]) for t in rows):
        assert key // 100 == k, f"{where}: row {key} does not belong to call {k}"
        by_call.setdefault(k, set()).add(key % 100)
    for k, steps in by_call.items():
        assert k in sent, f"{where}: rows of call {k}, which was never sent"
        n = STEPS if sent[k] == "steps" else ATOMIC_ROWS
        if sent[k] == "steps":
            assert steps == set(range(1, len(steps) + 1)), (
                f"{where}: call {k} left steps {sorted(steps)}, not a prefix of its commits")
        else:
            assert steps == set(range(1, n + 1)), (
                f"{where}: atomic call {k} left rows {sorted(steps)}: not all or nothing")
    for k, kind in replied.items():
        n = STEPS if kind == "steps" else ATOMIC_ROWS
        assert by_call.get(k) == set(range(1, n + 1)), (
            f"{where}: call {k} ({kind}) replied, but only rows {sorted(by_call.get(k, ()))} survived")
    return by_call


@pytest.mark.parametrize("mode", ["write", "fsync"])
def test_kill9_mid_procedure(server_factory, server_kind, mode):
    rng = random.Random(int(os.environ["ROBUSTNESS_SEED"]))
    srv = server_factory(server_kind)(wal_mode=mode)
    with admin(srv) as c:
        create_space(c, SPACE, "proc_crash")
    writers = [Writer(srv, w) for w in range(1, WRITERS + 1)]
    for t in writers:
        t.start()
    deadline = time.monotonic() + ACK_WAIT
    while sum(len(t.replied) for t in writers) < MIN_REPLIED:
        errors = [t.error for t in writers if t.error]
        assert not errors, f"writers failed before the kill: {errors[:5]}"
        if time.monotonic() > deadline:
            pytest.fail(f"only {sum(len(t.replied) for t in writers)} procedures replied within "
                        f"{ACK_WAIT}s\nlog tail:\n{tail(srv.log_text())}", pytrace=False)
        time.sleep(0.002)
    time.sleep(rng.random() * 0.02)
    assert srv.stop(signal.SIGKILL) == -signal.SIGKILL
    for t in writers:
        t.join(timeout=20)
        assert not t.is_alive(), f"{t.name} still running 20 s after the kill"
    errors = [t.error for t in writers if t.error]
    assert not errors, f"writers got unexpected replies: {errors[:5]}"
    sent, replied = {}, {}
    for t in writers:
        sent.update(t.sent)
        replied.update(t.replied)
    srv.start()
    with admin(srv) as c:
        by_call = check(select_all(c, SPACE), sent, replied, f"{server_kind} wal_mode={mode}")
    partial = sum(1 for k, s in by_call.items() if sent[k] == "steps" and len(s) < STEPS)
    print(f"\n[proc-crash] {server_kind} wal_mode={mode}: {len(replied)} procedures replied, "
          f"{len(sent) - len(replied)} in flight at the kill, {partial} left a prefix of their commits")
    srv.stop(signal.SIGTERM)
