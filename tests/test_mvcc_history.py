"""A model-based check of the MVCC engine (issue 16): many clients run random transactions
over a few keys at once, every statement and its result is recorded, and the recorded history
must be explainable by one serial order — the order the commits reached the WAL.

Each client has streams on its own connection; a transaction is 1–4 statements (a point
read, a full scan, a REPLACE of a value naming the transaction, a DELETE), then COMMIT, with
the event loop free to interleave every await. A write transaction also REPLACEs its own row
in `marks` (a blind write of a key nobody else touches: no conflict), which names it in the
WAL. After the run the server stops and `tarantoolctl cat` gives the commit order. The model
applies the committed write transactions in that order and checks:

* a committed writer's reads give what the state just before its commit, plus its own
  earlier writes, gives (a conflict would have aborted it otherwise);
* a committed read-only transaction read one consistent state: some prefix of the order;
* an aborted transaction failed with ER_TRANSACTION_CONFLICT (97) and left nothing in the WAL.
"""

import asyncio
import glob
import os
import random
import signal

import pytest
from asynctnt.api import Isolation
from asynctnt.exceptions import TarantoolDatabaseError

from test_durability import tarantoolctl_cat
from test_mvcc import MVCC_ARGS
from test_streams import connect, open_stream, rows

KEYS = 6
CLIENTS = 6
STREAMS = 2
TXNS_PER_STREAM = 30
CONFLICT = 97
TIMEOUT = 120


def plan(rng, txn_id):
    """The statements of one transaction: ("get", k) / ("scan",) / ("put", k, value) /
    ("del", k)."""
    steps = []
    for i in range(rng.randint(1, 4)):
        k = rng.randint(1, KEYS)
        kind = rng.choices(["get", "scan", "put", "del"], weights=[4, 1, 4, 1])[0]
        if kind == "get":
            steps.append(("get", k))
        elif kind == "scan":
            steps.append(("scan",))
        elif kind == "put":
            steps.append(("put", k, f"{txn_id}.{i}"))
        else:
            steps.append(("del", k))
    return steps


async def run_txn(stream, txn_id, steps, isolation):
    """Runs one transaction; its record: (txn_id, steps, results, "committed"/"aborted")."""
    results = []
    writes = any(s[0] in ("put", "del") for s in steps)
    try:
        await stream.begin(isolation=isolation)
        for step in steps:
            if step[0] == "get":
                got = rows(await stream.select("h", [step[1]]))
                results.append(got[0][1] if got else None)
            elif step[0] == "scan":
                got = rows(await stream.select("h", []))
                results.append({t[0]: t[1] for t in got})
            elif step[0] == "put":
                await stream.replace("h", [step[1], step[2]])
                results.append(None)
            else:
                await stream.delete("h", [step[1]])
                results.append(None)
        if writes:
            await stream.replace("marks", [txn_id])
        await stream.commit()
        return (txn_id, steps, results, "committed")
    except TarantoolDatabaseError as e:
        assert e.code == CONFLICT, f"transaction {txn_id}: {e.code} {e.message}"
        await stream.rollback()
        return (txn_id, steps, results, "aborted")


async def client(server, c, seed, history, isolation):
    conn = await connect(server)
    rng = random.Random(seed)

    async def one_stream(s):
        stream = open_stream(conn)
        for n in range(TXNS_PER_STREAM):
            txn_id = (c * STREAMS + s) * 1000 + n + 1
            history.append(await run_txn(stream, txn_id, plan(rng, txn_id), isolation))

    try:
        await asyncio.gather(*(one_stream(s) for s in range(STREAMS)))
    finally:
        await conn.disconnect()


def commit_order(data_dir, space_id, marks_id):
    """The write transactions in WAL order: [(txn_id, [(op, key, value)])]."""
    order, pending = [], []
    for path in sorted(glob.glob(os.path.join(data_dir, "*.xlog"))):
        for row in tarantoolctl_cat(path):
            body = row.get("BODY", {})
            kind = row.get("HEADER", {}).get("type")
            if body.get("space_id") == marks_id:
                order.append((body["tuple"][0], pending))
                pending = []
            elif body.get("space_id") == space_id:
                if kind == "REPLACE":
                    pending.append(("put", body["tuple"][0], body["tuple"][1]))
                elif kind == "DELETE":
                    pending.append(("del", body["key"][0], None))
    assert not pending, f"rows after the last transaction's mark: {pending}"
    return order


def replay(state, steps, results):
    """Whether `results` are what `steps` give from `state` (with the transaction's own
    writes applied as it goes); the state after them."""
    mine = dict(state)
    for step, got in zip(steps, results):
        if step[0] == "get":
            if mine.get(step[1]) != got:
                return False, mine
        elif step[0] == "scan":
            if mine != got:
                return False, mine
        elif step[0] == "put":
            mine[step[1]] = step[2]
        else:
            mine.pop(step[1], None)
    return True, mine


def check(history, order):
    by_id = {rec[0]: rec for rec in history}
    committed_writers = [t for t, _ in order]
    for txn_id, steps, results, outcome in history:
        wrote = any(s[0] in ("put", "del") for s in steps)
        if outcome == "aborted" or not wrote:
            assert txn_id not in committed_writers, f"{txn_id} is in the WAL: {outcome}"
        elif wrote:
            assert txn_id in committed_writers, f"committed {txn_id} is not in the WAL"
    states = [{}]
    for txn_id, rows_written in order:
        _, steps, results, _ = by_id[txn_id]
        ok, after = replay(states[-1], steps, results)
        assert ok, (f"writer {txn_id} read {results} for {steps}, the state before its "
                    f"commit was {states[-1]}")
        assert sorted(after.items()) == sorted(
            apply_rows(states[-1], rows_written).items()), f"{txn_id}: WAL rows {rows_written}"
        states.append(after)
    for txn_id, steps, results, outcome in history:
        if outcome != "committed" or any(s[0] in ("put", "del") for s in steps):
            continue
        assert any(replay(s, steps, results)[0] for s in states), (
            f"read-only {txn_id} read {results} for {steps}: no state in the order gives it")


def apply_rows(state, rows_written):
    out = dict(state)
    for op, k, v in rows_written:
        if op == "put":
            out[k] = v
        else:
            out.pop(k, None)
    return out


# Best-effort (read-confirmed until a transaction writes) found a read view that rose back
# to a newer state once the commits it had skipped were written (conflict::Tracker::rewind).
@pytest.mark.parametrize("isolation", [Isolation.BEST_EFFORT, Isolation.READ_CONFIRMED,
                                       Isolation.READ_COMMITTED])
def test_random_transactions_are_serializable_in_wal_order(spindle_server, isolation):
    server = spindle_server(extra_args=MVCC_ARGS)
    history = []

    async def main():
        conn = await connect(server)
        await conn.eval("box.schema.space.create('h'):create_index('pk') "
                        "box.schema.space.create('marks'):create_index('pk')")
        ids = list(await conn.eval("return box.space.h.id, box.space.marks.id"))
        await conn.disconnect()
        seed = random.randrange(1 << 30)
        print(f"history seed {seed}")
        await asyncio.gather(*(client(server, c, seed + c, history, isolation)
                               for c in range(CLIENTS)))
        return ids

    ids = asyncio.run(asyncio.wait_for(main(), TIMEOUT))
    space_id, marks_id = ids[0], ids[1]
    server.stop(signal.SIGTERM)
    order = commit_order(server.data_dir, space_id, marks_id)
    committed = sum(1 for rec in history if rec[3] == "committed")
    aborted = len(history) - committed
    print(f"{committed} committed ({len(order)} writers in the WAL), {aborted} aborted")
    assert len(history) == CLIENTS * STREAMS * TXNS_PER_STREAM
    # The load must produce both outcomes, or it checks nothing about conflicts.
    assert committed > 0 and aborted > 0, (committed, aborted)
    check(history, order)
