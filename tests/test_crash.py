"""kill -9 under concurrent writers: every acknowledged commit survives (wal_mode write / fsync).

WRITERS client threads (one raw IPROTO connection each) insert unique keys as fast as they can and
record which inserts were acknowledged.  While they are running the server gets SIGKILL; it is
restarted on the SAME data dir, and the cycle repeats CYCLES times.  After every restart:

* every key acknowledged in any cycle so far is present, with exactly the tuple that was sent;
* every present key was sent at some point (nothing invented, nothing from a torn write);
* every key seen after an earlier restart is still there (recovered data never disappears);
* keys whose insert was in flight at the kill may or may not be there.

`kill -9` of the process leaves the page cache intact, so `write` must pass this as well as
`fsync` (power loss, which only `fsync` survives, cannot be simulated here).  Each run prints the
acknowledged counts per cycle.  With `wal_mode none` nothing survives a restart, but the server
starts.  Every test runs against spindle and, to validate the test itself, Tarantool 2.6.
"""

import os
import random
import signal
import socket
import threading
import time

import pytest

from harness import iproto as ip
from harness.durability import admin, create_space, select_all, tail, user_spaces

SPACE = 530
WRITERS = 24
CYCLES = 5
MIN_ACKED_PER_CYCLE = 1000  # kill only once this many inserts were acknowledged in the cycle
ACK_WAIT = 30.0             # bound for reaching MIN_ACKED_PER_CYCLE
KEY_STRIDE = 10**6          # key = cycle * WRITERS * KEY_STRIDE + writer * KEY_STRIDE + seq


def tuple_for(key, writer):
    """The exact tuple sent for a key; the payload length varies so blocks differ in size."""
    return [key, writer, "v%d-" % key + "p" * (key % 97)]


class Writer(threading.Thread):
    def __init__(self, srv, cycle, w, stop):
        super().__init__(daemon=True, name=f"writer-{cycle}-{w}")
        self.srv, self.cycle, self.w, self.stop_ev = srv, cycle, w, stop
        self.sent = {}      # key -> tuple, recorded BEFORE the request goes out
        self.acked = {}     # key -> tuple, recorded when the OK reply arrived
        self.error = None   # an unexpected error (not the connection dying at the kill)
        self.ended_by = None

    def run(self):
        base = (self.cycle * WRITERS + self.w) * KEY_STRIDE
        try:
            c = admin(self.srv, timeout=10.0)
        except (OSError, ip.ConnectionClosed) as e:
            self.ended_by = f"connect: {e!r}"
            return
        try:
            seq = 0
            while not self.stop_ev.is_set():
                key = base + seq
                seq += 1
                t = tuple_for(key, self.w)
                self.sent[key] = t
                try:
                    got = c.call(ip.INSERT, {ip.K_SPACE_ID: SPACE, ip.K_TUPLE: t})
                except (ip.ConnectionClosed, ConnectionError, socket.timeout, OSError) as e:
                    self.ended_by = repr(e)   # the server died: this key is "unknown"
                    return
                if got != [t]:
                    self.error = f"insert {key} answered {got!r}"
                    return
                self.acked[key] = t
        except ip.IprotoError as e:
            self.error = f"insert failed with {e}"
        except Exception as e:  # noqa: BLE001 -- reported by the test
            self.error = f"{type(e).__name__}: {e}"
        finally:
            c.close()


def run_cycle(srv, cycle, rng):
    stop = threading.Event()
    writers = [Writer(srv, cycle, w, stop) for w in range(WRITERS)]
    for t in writers:
        t.start()
    deadline = time.monotonic() + ACK_WAIT
    while sum(len(t.acked) for t in writers) < MIN_ACKED_PER_CYCLE:
        errors = [t.error for t in writers if t.error]
        assert not errors, f"cycle {cycle}: writers failed before the kill: {errors[:5]}"
        if time.monotonic() > deadline:
            stop.set()
            pytest.fail(f"cycle {cycle}: only {sum(len(t.acked) for t in writers)} inserts acknowledged "
                        f"within {ACK_WAIT}s (need {MIN_ACKED_PER_CYCLE}) on {srv.kind}; ended: "
                        f"{[t.ended_by for t in writers if t.ended_by][:3]}\nlog tail:\n{tail(srv.log_text())}",
                        pytrace=False)
        time.sleep(0.002)
    time.sleep(rng.random() * 0.02)  # vary the moment of the kill a little (seeded)
    rc = srv.stop(signal.SIGKILL)
    assert rc == -signal.SIGKILL, f"cycle {cycle}: {srv.kind} exit code {rc} (expected killed by SIGKILL)"
    # The writers are not told to stop: each one ends when its connection dies, so every writer
    # has a request that was sent but never answered.
    for t in writers:
        t.join(timeout=20)
        if t.is_alive():
            stop.set()
            pytest.fail(f"cycle {cycle}: writer {t.name} still running 20 s after the kill", pytrace=False)
    errors = [t.error for t in writers if t.error]
    assert not errors, f"cycle {cycle}: writers got unexpected replies/errors: {errors[:5]}"
    sent, acked = {}, {}
    for t in writers:
        sent.update(t.sent)
        acked.update(t.acked)
    return sent, acked


def check_after_restart(c, cycle, all_sent, all_acked, seen_before, mode, kind):
    rows = select_all(c, SPACE)
    present = {t[0]: t for t in rows}
    missing = sorted(k for k in all_acked if k not in present)
    wrong = sorted(k for k in all_acked if k in present and present[k] != all_acked[k])
    invented = sorted(k for k in present if k not in all_sent)
    garbled = sorted(k for k in present if k in all_sent and present[k] != all_sent[k])
    lost_again = sorted(k for k in seen_before if k not in present)
    where = f"{kind} wal_mode={mode}, after restart #{cycle + 1}"
    assert not missing, (f"{where}: {len(missing)} of {len(all_acked)} ACKNOWLEDGED inserts are missing, "
                         f"e.g. {missing[:10]}")
    assert not wrong, f"{where}: acknowledged rows with a different tuple: " + "; ".join(
        f"{k}: sent {all_acked[k]!r}, got {present[k]!r}" for k in wrong[:5])
    assert not invented, f"{where}: {len(invented)} rows whose key was never sent: {invented[:10]}"
    assert not garbled, f"{where}: unacknowledged rows with a tuple that was never sent: " + "; ".join(
        f"{k}: sent {all_sent[k]!r}, got {present[k]!r}" for k in garbled[:5])
    assert not lost_again, (f"{where}: {len(lost_again)} rows that were there after an earlier restart "
                            f"are gone: {lost_again[:10]}")
    return set(present)


@pytest.mark.parametrize("mode", ["fsync", "write"])
def test_kill9_under_concurrent_writers(server_factory, server_kind, mode):
    rng = random.Random(int(os.environ["ROBUSTNESS_SEED"]))
    srv = server_factory(server_kind)(wal_mode=mode)
    with admin(srv) as c:
        create_space(c, SPACE, "crash", secondary=(1, "unsigned"))
    all_sent, all_acked, seen = {}, {}, set()
    report = []
    for cycle in range(CYCLES):
        sent, acked = run_cycle(srv, cycle, rng)
        all_sent.update(sent)
        all_acked.update(acked)
        in_flight = set(sent) - set(acked)
        srv.start()
        with admin(srv) as c:
            seen = check_after_restart(c, cycle, all_sent, all_acked, seen, mode, server_kind)
            # the secondary index was rebuilt with every row
            by_writer = sum(len(c.select(SPACE, [w], index=1)) for w in range(WRITERS))
            assert by_writer == len(seen), (f"secondary index holds {by_writer} rows, primary {len(seen)} "
                                            f"after restart #{cycle + 1}")
        recovered_in_flight = len(in_flight & seen)
        report.append(f"cycle {cycle + 1}: acked {len(acked)}, in flight at kill {len(in_flight)} "
                      f"(recovered {recovered_in_flight}), rows after restart {len(seen)}")
    print(f"\n[crash] {server_kind} wal_mode={mode}: {CYCLES} kill -9/restart cycles on one data dir, "
          f"{WRITERS} writer threads, {len(all_acked)} acknowledged inserts in total, all present")
    for line in report:
        print(f"[crash]   {line}")
    srv.stop(signal.SIGTERM)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_wal_mode_none_keeps_nothing(server_factory, server_kind, stop_signal):
    srv = server_factory(server_kind)(wal_mode="none")
    with admin(srv) as c:
        create_space(c, SPACE, "volatile")
        for i in range(50):
            c.call(ip.INSERT, {ip.K_SPACE_ID: SPACE, ip.K_TUPLE: [i, "x%d" % i]})
        assert len(select_all(c, SPACE)) == 50
    srv.stop(stop_signal)
    srv.start()   # fails the test (not skips) if the server does not come back
    with admin(srv) as c:
        assert user_spaces(c) == {}, (f"wal_mode none: after a restart the space created before it "
                                      f"still exists: {user_spaces(c)}")
        with pytest.raises(ip.IprotoError) as e:
            c.select(SPACE, [])
        assert e.value.code == 36, f"select from the vanished space: {e.value}"
        # and the server is usable: the same DDL and DML work again
        create_space(c, SPACE, "volatile")
        c.call(ip.INSERT, {ip.K_SPACE_ID: SPACE, ip.K_TUPLE: [1, "again"]})
        assert select_all(c, SPACE) == [[1, "again"]]
