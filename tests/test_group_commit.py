"""Group commit under --wal-mode fsync, and readers that do not wait behind writers.

100 writer connections (asyncio + asynctnt 2.4.0) each insert WRITES_PER_CONN rows while one
reader connection keeps selecting.  Nothing here measures time; the assertions are on counts
and on the order in which replies arrive:

* reads complete while writes are still in flight (a shared in-flight counter is > 0 when a read
  reply arrives), and at least one read completes during the write phase;
* a SELECT pipelined right behind an INSERT on the same connection is answered before that
  INSERT (the INSERT waits for its fsync, the SELECT must not), for at least one of the probes;
* every acknowledged insert is there afterwards;
* (spindle only, from its `wal stats: rows=R batches=B fsyncs=F` shutdown line) F < R: commits
  shared fsyncs.  Commits per fsync is printed.  Tarantool does not report its fsync count, so
  the Tarantool run of the first test validates only the load/reader part.
"""

import asyncio
import re
import signal

import asynctnt
import pytest

WRITERS = 100
WRITES_PER_CONN = 20
PROBES = 40
SPACE = "gc"
TIMEOUT = 300


async def _setup(server):
    conn = asynctnt.Connection(host=server.host, port=server.port, username="admin",
                               password=server.password, connect_timeout=10, request_timeout=60)
    await conn.connect()
    await conn.insert("_space", [600, 1, SPACE, "memtx", 0, {},
                                 [{"name": "id", "type": "unsigned"}, {"name": "w", "type": "unsigned"}]])
    await conn.insert("_index", [600, 0, "primary", "tree", {"unique": True}, [[0, "unsigned"]]])
    await conn.refetch_schema()
    await conn.insert(600, [0, 0])
    return conn


async def _load(server):
    setup = await _setup(server)
    state = {"in_flight": 0, "writes_done": 0, "writers_running": WRITERS,
             "reads": 0, "reads_during_writes": 0, "reads_with_writes_in_flight": 0,
             "probe_select_first": 0, "probe_insert_first": 0}

    async def writer(w):
        conn = asynctnt.Connection(host=server.host, port=server.port, username="admin",
                                   password=server.password, connect_timeout=10, request_timeout=120)
        await conn.connect()
        try:
            for i in range(WRITES_PER_CONN):
                key = 1 + w * WRITES_PER_CONN + i
                state["in_flight"] += 1
                try:
                    resp = await conn.insert(600, [key, w])
                finally:
                    state["in_flight"] -= 1
                assert list(resp[0]) == [key, w]
                state["writes_done"] += 1
        finally:
            state["writers_running"] -= 1
            await conn.disconnect()

    async def reader(conn):
        while state["writers_running"] > 0:
            in_flight_before = state["in_flight"]
            resp = await conn.select(600, [0])
            assert list(resp[0]) == [0, 0]
            state["reads"] += 1
            if state["writers_running"] > 0:
                state["reads_during_writes"] += 1
            if in_flight_before > 0 and state["in_flight"] > 0:
                state["reads_with_writes_in_flight"] += 1

    async def prober(conn):
        """INSERT and SELECT pipelined on one connection: which reply comes first?"""
        for p in range(PROBES):
            if state["writers_running"] == 0:
                break
            order = []

            async def ins(k):
                await conn.insert(600, [k, 999])
                order.append("insert")

            async def sel():
                await conn.select(600, [0])
                order.append("select")
            await asyncio.gather(ins(10**6 + p), sel())
            if order[0] == "select":
                state["probe_select_first"] += 1
            else:
                state["probe_insert_first"] += 1

    read_conn = asynctnt.Connection(host=server.host, port=server.port, username="admin",
                                    password=server.password, connect_timeout=10, request_timeout=60)
    await read_conn.connect()
    probe_conn = asynctnt.Connection(host=server.host, port=server.port, username="admin",
                                     password=server.password, connect_timeout=10, request_timeout=120)
    await probe_conn.connect()
    writers = [asyncio.ensure_future(writer(w)) for w in range(WRITERS)]
    await asyncio.gather(reader(read_conn), prober(probe_conn), *writers)
    rows = await setup.select(600, [], iterator="ALL")
    state["rows_after"] = len(rows)
    state["probe_rows"] = sum(1 for t in rows if t[0] >= 10**6)
    for c in (setup, read_conn, probe_conn):
        await c.disconnect()
    return state


def run_load(server):
    return asyncio.run(asyncio.wait_for(_load(server), TIMEOUT))


def check_load(server, st):
    print(f"\n[group-commit] {server.kind}: {st}")
    expected_rows = 1 + WRITERS * WRITES_PER_CONN + st["probe_rows"]
    assert st["writes_done"] == WRITERS * WRITES_PER_CONN, st
    assert st["rows_after"] == expected_rows, f"acknowledged inserts missing after the load: {st}"
    assert st["reads_during_writes"] > 0, f"no SELECT completed while writers were running: {st}"
    assert st["reads_with_writes_in_flight"] > 0, \
        f"no SELECT completed while an INSERT was waiting for its commit (reads blocked by writes?): {st}"
    assert st["probe_select_first"] > 0, \
        (f"in {st['probe_insert_first']} pipelined INSERT+SELECT probes the SELECT was never answered before "
         f"the INSERT: reads appear to wait behind fsync'ed writes: {st}")


def test_readers_not_blocked_by_fsync_writes(server_factory, server_kind):
    srv = server_factory(server_kind)(wal_mode="fsync")
    st = run_load(srv)
    check_load(srv, st)
    assert srv.stop(signal.SIGTERM) == 0, srv.log_tail()


@pytest.mark.spindle_only
def test_group_commit_shares_fsyncs(spindle_server):
    """spindle-specific: needs the `wal stats:` shutdown line."""
    srv = spindle_server(wal_mode="fsync")
    st = run_load(srv)
    check_load(srv, st)
    rc = srv.stop(signal.SIGTERM)
    assert rc == 0, f"spindle exited with {rc} on SIGTERM\n{srv.log_tail()}"
    stats = srv.wal_stats()
    assert stats is not None, ("spindle logged no `wal stats: rows=R batches=B fsyncs=F` line on shutdown "
                               f"(CLI contract). Log tail:\n{srv.log_tail()}")
    commits = stats["rows"]
    print(f"[group-commit] wal stats {stats}: {commits / max(stats['fsyncs'], 1):.2f} commits per fsync, "
          f"{commits / max(stats['batches'], 1):.2f} rows per batch")
    assert commits >= WRITERS * WRITES_PER_CONN, f"fewer WAL rows than acknowledged inserts: {stats}"
    assert stats["fsyncs"] >= 1, f"--wal-mode fsync but no fsync reported: {stats}"
    assert stats["batches"] <= commits, stats
    assert stats["fsyncs"] < commits, f"no fsync was shared between commits (no group commit): {stats}"
    assert re.search(r"listening on 127\.0\.0\.1:\d+", srv.log_text())
