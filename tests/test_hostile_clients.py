"""Clients that never read their replies (or read one a second) must not take the service down.

Each scenario opens HOSTILE_CONNS unauthenticated connections; each pipelines PIPELINE
guest SELECTs on `_vspace` (a 25-byte request, a ~1.7 KB reply) and then never reads (or
reads one reply a second).  For RUN_S seconds a well-behaved client pings: on one connection
opened before the flood, and on a new connection every round.  Every PING must be answered
within PING_DEADLINE_S (a generous liveness bound, not a speed measurement: the tight figures
are `make bench`'s "hostile neighbours" cell), and spindle's resident memory must stay under
the bound docs/architecture.md states for this load (checked for spindle only: Tarantool 2.6
buffers without a bound of its own).

Loopback only, bounded: a fixed number of connections, requests and seconds.
"""

import socket
import threading
import time

import pytest

from harness import iproto as ip

HOSTILE_CONNS = 200
PIPELINE = 3000
RUN_S = 10.0
PING_EVERY_S = 0.05
PING_DEADLINE_S = 1.0
VSPACE = 281
PING_SYNC = 7

# The bound of docs/architecture.md ("What a client can cost"), for one network thread:
# NET_OUTPUT_MAX of unsent replies, plus per connection the replies of CONN_MSG_MAX requests
# in flight when it stalls and its read buffer. Mirrors crates/types/src/limits.rs.
NET_OUTPUT_MAX = 64 << 20
CONN_MSG_MAX = 128
REPLY_MAX = 2 << 10
CONN_INPUT_MAX = 32 << 10
MEMORY_BOUND = NET_OUTPUT_MAX + HOSTILE_CONNS * (CONN_MSG_MAX * REPLY_MAX + CONN_INPUT_MAX)
# Allocator slack and the TX thread's reply batches in transit.
MEMORY_SLACK = 32 << 20


@pytest.fixture(scope="module")
def server(module_server_factory, server_kind):
    return module_server_factory(server_kind)()


def select_vspace(sync):
    return ip.packet({ip.K_TYPE: ip.SELECT, ip.K_SYNC: sync},
                     {ip.K_SPACE_ID: VSPACE, ip.K_INDEX_ID: 0, ip.K_LIMIT: ip.LIMIT_ALL,
                      ip.K_ITERATOR: 2, ip.K_KEY: []})


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def read_greeting(sock):
    got = b""
    while len(got) < 128:
        chunk = sock.recv(128 - len(got))
        if not chunk:
            raise ip.ConnectionClosed("closed during the greeting")
        got += chunk


class Flood:
    """The hostile connections: opened, flooded with pipelined SELECTs, then left unread or
    read one reply a second, until stop()."""

    def __init__(self, server, slow_reader):
        self.server = server
        self.slow_reader = slow_reader
        self.socks = []
        self.stopping = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        wire = b"".join(select_vspace(i) for i in range(PIPELINE))
        for _ in range(HOSTILE_CONNS):
            s = socket.create_connection((self.server.host, self.server.port), timeout=5.0)
            read_greeting(s)
            self.socks.append(s)
        self.wire = wire
        self.thread.start()

    def _run(self):
        for s in self.socks:
            if self.stopping.is_set():
                return
            s.setblocking(False)
            try:
                self.sent += s.send(self.wire)
            except (BlockingIOError, OSError):
                pass
        while not self.stopping.wait(1.0):
            if self.slow_reader:
                for s in self.socks:
                    try:
                        s.recv(REPLY_MAX)
                    except (BlockingIOError, OSError):
                        pass

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=10)
        for s in self.socks:
            s.close()


def ping(conn, sync=PING_SYNC):
    conn.send_bytes(ip.packet({ip.K_TYPE: ip.PING, ip.K_SYNC: sync}))
    h, _, _ = conn.read_packet()
    assert h.get(ip.K_TYPE) == 0 and h.get(ip.K_SYNC) == sync, h


def well_behaved_client(server, memory):
    """Pings for RUN_S seconds; returns the failures (a PING or connect past the deadline)."""
    failures, rounds = [], 0
    with ip.RawConn(server.host, server.port, timeout=PING_DEADLINE_S) as old:
        deadline = time.monotonic() + RUN_S
        while time.monotonic() < deadline:
            rounds += 1
            try:
                ping(old)
            except Exception as e:  # noqa: BLE001 - any failure is the finding
                failures.append(f"round {rounds}: PING on the open connection: {e!r}")
                break
            try:
                with ip.RawConn(server.host, server.port, timeout=PING_DEADLINE_S) as new:
                    ping(new)
            except Exception as e:  # noqa: BLE001
                failures.append(f"round {rounds}: PING on a new connection: {e!r}")
            memory()
            time.sleep(PING_EVERY_S)
    return failures, rounds


@pytest.mark.parametrize("slow_reader", [False, True], ids=["never-read", "read-1-per-second"])
def test_unread_replies_bounded_and_others_served(server, slow_reader):
    base = rss_bytes(server.pid) if server.kind == "spindle" else 0
    peak = [base]

    def memory():
        if server.kind == "spindle":
            peak[0] = max(peak[0], rss_bytes(server.pid))

    flood = Flood(server, slow_reader)
    flood.start()
    try:
        failures, rounds = well_behaved_client(server, memory)
    finally:
        flood.stop()
    assert server.is_running(), server.log_tail(30)
    assert flood.sent > 0
    assert not failures, f"{len(failures)} of {rounds} rounds failed: {failures[:5]}"
    grown = peak[0] - base
    print(f"[hostile] {server.kind} slow_reader={slow_reader}: {rounds} rounds, "
          f"{flood.sent} request bytes sent, RSS grew {grown / 2**20:.1f} MiB")
    if server.kind == "spindle":
        bound = MEMORY_BOUND + MEMORY_SLACK
        assert grown <= bound, (f"resident memory grew by {grown / 2**20:.1f} MiB, "
                                f"over the stated bound {bound / 2**20:.1f} MiB")
    # The server is still whole: a fresh client is served after the flood is gone.
    with ip.RawConn(server.host, server.port, timeout=5.0) as c:
        ping(c)
