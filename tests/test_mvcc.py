"""Stream transactions on the MVCC engine (issue 16, step 2): `--memtx-use-mvcc-engine` with
`--compat-version 2.11.0`, driven by asynctnt 2.4.0.

The expected outcomes are 2.11's, from the scenario table of the shared docs
(transactions-and-http.md §A3): a transaction's writes are private until COMMIT, it reads its
own writes, a commit that breaks what a transaction read aborts it if it has written (97 at its
next statement or COMMIT) or sends it to a read view if it has not, blind REPLACEs never
conflict. Scenario 12 (MVCC off: the second statement answers 154) is test_streams.py's.
"""

import asyncio
import glob
import json
import os
import signal
import subprocess
import time

import asynctnt
import pytest
from asynctnt.api import Isolation

from harness import servers
from test_durability import tarantoolctl_cat
from test_streams import connect, expect_error, open_stream, rows

TIMEOUT = 30
CONFLICT = (97, "Transaction has been aborted by conflict")
MVCC_ARGS = ("--compat-version", "2.11.0", "--memtx-use-mvcc-engine")


@pytest.fixture
def server(spindle_server):
    srv = spindle_server(extra_args=MVCC_ARGS)

    async def create():
        conn = await connect(srv)
        await conn.eval("box.schema.space.create('s'):create_index('pk')")
        await conn.disconnect()

    run(create())
    return srv


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


async def two(server):
    """Two connections with one stream each, and a third connection for autocommit reads."""
    a, b, c = await connect(server), await connect(server), await connect(server)
    return a, b, c, open_stream(a), open_stream(b)


def scenario(server, body):
    async def main():
        a, b, c, sa, sb = await two(server)
        try:
            await body(sa, sb, c)
        finally:
            for conn in (a, b, c):
                await conn.disconnect()

    run(main())


def test_writes_are_private_until_commit(server):
    async def body(sa, sb, c):
        await c.replace("s", [1, "old"])
        await sa.begin()
        await sa.replace("s", [2, "new"])
        await sa.delete("s", [1])
        await sa.update("s", [2], [["=", 1, "newer"]])
        assert rows(await sa.select("s")) == [[2, "newer"]]
        assert rows(await c.select("s")) == [[1, "old"]]
        await sb.begin()
        assert rows(await sb.select("s")) == [[1, "old"]]
        await sa.commit()
        assert rows(await c.select("s")) == [[2, "newer"]]
        await sb.commit()

    scenario(server, body)


def test_scenario_1_read_then_replace_the_later_committer_conflicts(server):
    async def body(sa, sb, c):
        await sa.begin()
        await sb.begin()
        assert rows(await sa.select("s", [1])) == []
        await sa.replace("s", [1, 1])
        assert rows(await sb.select("s", [1])) == []
        await sb.replace("s", [1, 2])
        await sa.commit()
        await expect_error(sb.commit(), *CONFLICT)
        assert rows(await c.select("s")) == [[1, 1]]

    scenario(server, body)


def test_scenario_2_updates_read_their_key(server):
    async def body(sa, sb, c):
        await c.replace("s", [1, 0])
        await sa.begin()
        await sb.begin()
        assert rows(await sa.update("s", [1], [["+", 1, 3]])) == [[1, 3]]
        assert rows(await sb.update("s", [1], [["+", 1, 5]])) == [[1, 5]]
        await sa.commit()
        await expect_error(sb.commit(), *CONFLICT)
        assert rows(await c.select("s")) == [[1, 3]]

    scenario(server, body)


def test_scenario_3_blind_replaces_all_commit_and_the_last_wins(server):
    async def main():
        conns = [await connect(server) for _ in range(4)]
        streams = [open_stream(conn) for conn in conns[:3]]
        for i, s in enumerate(streams):
            await s.begin()
            await s.replace("s", [1, i + 1])
        for s in streams:
            await s.commit()
        assert rows(await conns[3].select("s")) == [[1, 3]]
        for conn in conns:
            await conn.disconnect()

    run(main())


def test_scenario_4_a_reader_keeps_its_read_view(server):
    async def body(sa, sb, c):
        for k in (1, 2, 3):
            await c.replace("s", [k, k])
        await sa.begin()
        assert rows(await sa.select("s")) == [[1, 1], [2, 2], [3, 3]]
        await sb.begin()
        await sb.replace("s", [1, 11])
        await sb.replace("s", [2, 12])
        await sb.commit()
        assert rows(await sa.select("s")) == [[1, 1], [2, 2], [3, 3]]
        await sa.commit()
        assert rows(await c.select("s")) == [[1, 11], [2, 12], [3, 3]]

    scenario(server, body)


def test_scenario_5_a_read_view_that_writes_is_aborted(server):
    async def body(sa, sb, c):
        for k in (1, 2, 3):
            await c.replace("s", [k, k])
        await sa.begin()
        assert rows(await sa.select("s")) == [[1, 1], [2, 2], [3, 3]]
        await sb.begin()
        await sb.replace("s", [1, 11])
        await sb.replace("s", [2, 12])
        await sb.commit()
        assert rows(await sa.select("s")) == [[1, 1], [2, 2], [3, 3]]
        await expect_error(sa.replace("s", [3, 13]), *CONFLICT)
        await expect_error(sa.select("s"), *CONFLICT)
        await expect_error(sa.commit(), *CONFLICT)
        assert rows(await c.select("s")) == [[1, 11], [2, 12], [3, 3]]
        # COMMIT freed it: the stream may begin again.
        await sa.begin()
        await sa.rollback()

    scenario(server, body)


def test_scenario_6_write_skew_over_a_gap_is_prevented(server):
    async def body(sa, sb, c):
        await sa.begin()
        await sb.begin()
        assert rows(await sa.select("s")) == []
        assert rows(await sb.select("s")) == []
        await sa.replace("s", [1, 1])
        await sb.replace("s", [2, 2])
        await sa.commit()
        await expect_error(sb.commit(), *CONFLICT)
        assert rows(await c.select("s")) == [[1, 1]]

    scenario(server, body)


def test_scenario_7_the_same_point_hole_conflicts(server):
    async def body(sa, sb, c):
        await sa.begin()
        await sb.begin()
        assert rows(await sa.select("s", [1])) == []
        assert rows(await sb.select("s", [1])) == []
        await sa.replace("s", [1, 1])
        await sb.replace("s", [1, 2])
        await sa.commit()
        await expect_error(sb.commit(), *CONFLICT)
        assert rows(await c.select("s")) == [[1, 1]]

    scenario(server, body)


def test_scenario_8_different_holes_do_not_meet(server):
    async def body(sa, sb, c):
        await sa.begin()
        await sb.begin()
        assert rows(await sa.select("s", [1])) == []
        assert rows(await sb.select("s", [2])) == []
        await sa.replace("s", [1, 1])
        await sb.replace("s", [2, 2])
        await sa.commit()
        await sb.commit()
        assert rows(await c.select("s")) == [[1, 1], [2, 2]]

    scenario(server, body)


def test_scenario_9_gt_does_not_cover_its_key(server):
    async def body(sa, sb, c):
        await sa.begin()
        await sb.begin()
        assert rows(await sa.select("s", [5], iterator="GT")) == []
        await sb.replace("s", [5, 1])
        await sb.commit()
        assert rows(await sa.select("s", [5], iterator="GT")) == []
        await sa.replace("s", [6, 1])
        await sa.commit()
        assert rows(await c.select("s")) == [[5, 1], [6, 1]]

    scenario(server, body)


def test_scenario_10_deleting_what_another_deleted_conflicts(server):
    async def body(sa, sb, c):
        await c.replace("s", [2, 2])
        await sa.begin()
        await sb.begin()
        assert rows(await sb.select("s")) == [[2, 2]]
        await sa.delete("s", [2])
        await sa.commit()
        await expect_error(sb.delete("s", [2]), *CONFLICT)
        await expect_error(sb.commit(), *CONFLICT)
        assert rows(await c.select("s")) == []

    scenario(server, body)


def test_scenario_11_two_inserts_of_one_key(server):
    async def body(sa, sb, c):
        await sa.begin()
        await sb.begin()
        assert rows(await sa.insert("s", [1, "A"])) == [[1, "A"]]
        assert rows(await sb.insert("s", [1, "B"])) == [[1, "B"]]
        await sa.commit()
        await expect_error(sb.commit(), *CONFLICT)
        assert rows(await c.select("s")) == [[1, "A"]]

    scenario(server, body)


def test_a_limited_select_reads_only_up_to_its_last_tuple(server):
    """Taking the head of a queue (SELECT LIMIT 1, DELETE it) does not conflict with a
    producer appending at the tail; it does with one that takes the same head."""
    async def body(sa, sb, c):
        for k in (1, 2, 3):
            await c.replace("s", [k])
        await sa.begin()
        assert rows(await sa.select("s", [], limit=1)) == [[1]]
        await sa.delete("s", [1])
        await c.replace("s", [4])
        await sa.commit()
        await sa.begin()
        await sb.begin()
        assert rows(await sa.select("s", [], limit=1)) == [[2]]
        assert rows(await sb.select("s", [], limit=1)) == [[2]]
        await sa.delete("s", [2])
        await sb.delete("s", [2])
        await sb.commit()
        await expect_error(sa.commit(), *CONFLICT)
        assert rows(await c.select("s")) == [[3], [4]]

    scenario(server, body)


def test_reads_through_a_secondary_index(server):
    """A transaction reads its own writes through a secondary index too, and a commit that
    moves a tuple into the secondary key range it scanned is a conflict."""
    async def body(sa, sb, c):
        await c.replace("s", [1, "a"])
        await c.replace("s", [2, "b"])
        await sa.begin()
        await sa.replace("s", [3, "a"])
        assert rows(await sa.select("s", ["a"], index="sk")) == [[1, "a"], [3, "a"]]
        assert rows(await c.select("s", ["a"], index="sk")) == [[1, "a"]]
        await c.update("s", [2], [["=", 1, "a"]])
        await expect_error(sa.select("s", ["b"], index="sk"), *CONFLICT)
        await sb.begin()
        assert rows(await sb.select("s", ["c"], index="sk")) == []
        await sb.replace("s", [4, "d"])
        await c.update("s", [1], [["=", 1, "z"]])
        await sb.commit()
        assert rows(await c.select("s", [], index="sk")) == [[2, "a"], [4, "d"], [1, "z"]]

    async def create():
        conn = await connect(server)
        await conn.eval("box.space.s:create_index('sk', {parts = {2, 'string'}, unique = false})")
        await conn.disconnect()

    run(create())
    scenario(server, body)


def test_concurrent_transfers_keep_the_total(server):
    """Clients move money between five accounts in transactions (read both, write both),
    retrying on 97, while auditors sum every account in read-only transactions: a lost
    update would change the total, a torn read would show another one."""
    accounts, total = 5, 5 * 1000

    async def transfer(conn, seed):
        s = open_stream(conn)
        done = 0
        for i in range(40):
            a, b = (seed + i) % accounts, (seed * 7 + i * 3 + 1) % accounts
            if a == b:
                continue
            while True:
                await s.begin()
                try:
                    x = rows(await s.select("s", [a]))[0][1]
                    y = rows(await s.select("s", [b]))[0][1]
                    await s.replace("s", [a, x - 1])
                    await s.replace("s", [b, y + 1])
                    await s.commit()
                    done += 1
                    break
                except asynctnt.exceptions.TarantoolDatabaseError as e:
                    assert e.code == 97, e
                    await s.rollback()
        return done

    async def audit(conn, stop):
        s = open_stream(conn)
        seen = 0
        while not stop.is_set() or seen == 0:
            await s.begin()
            assert sum(t[1] for t in rows(await s.select("s"))) == total
            # One account at a time: transfers commit in between.
            balances = [rows(await s.select("s", [k]))[0][1] for k in range(accounts)]
            assert sum(balances) == total
            await s.commit()
            seen += 1
        return seen

    async def main():
        conns = [await connect(server) for _ in range(6)]
        for k in range(accounts):
            await conns[0].replace("s", [k, total // accounts])
        stop = asyncio.Event()
        auditors = [asyncio.ensure_future(audit(c, stop)) for c in conns[4:]]
        done = await asyncio.gather(*(transfer(c, i) for i, c in enumerate(conns[:4])))
        stop.set()
        assert all(n > 0 for n in await asyncio.gather(*auditors))
        assert sum(done) > 0
        assert sum(t[1] for t in rows(await conns[0].select("s"))) == total
        for c in conns:
            await c.disconnect()

    run(main())


def test_the_bench_counter_loses_no_increment(server):
    """spindle-bench's `counter` workload: 12 streams read-modify-write 5 counters, each
    retried after a conflict. Every commit it counted is one increment in the rows, and the
    races it lost were conflicts (97), nothing else."""
    bench = os.path.join(os.path.dirname(servers.spindle_bin()), "spindle-bench")
    out = subprocess.run(
        [bench, "--addr", f"{server.host}:{server.port}", "--user", "admin",
         "--password", server.password, "--workload", "counter", "--space", "counters",
         "--keys", "5", "--connections", "3", "--depth", "4", "--duration", "2",
         "--warmup", "0", "--json", "-q"],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    commits = report["total"]["ok"]
    assert commits > 0
    assert {e["code"] for e in report["errors"]} <= {97}, report["errors"]

    async def total():
        conn = await connect(server)
        try:
            got = await conn.select("counters", [])
            return sum(row[1] for row in rows(got))
        finally:
            await conn.disconnect()

    assert run(total()) == commits


def test_a_transaction_spans_other_clients_autocommit_writes(server):
    async def body(sa, sb, c):
        await c.replace("s", [1, 1])
        await sa.begin()
        assert rows(await sa.select("s", [1])) == [[1, 1]]
        await sa.replace("s", [10, 1])
        # Writes to keys it did not read change nothing for it; it sees them.
        await c.replace("s", [2, 2])
        assert rows(await sa.select("s", [2])) == [[2, 2]]
        await sa.replace("s", [11, 1])
        await sa.commit()
        assert rows(await c.select("s")) == [[1, 1], [2, 2], [10, 1], [11, 1]]
        # One that changes a key it read aborts it: it has written.
        await sa.begin()
        assert rows(await sa.select("s", [1])) == [[1, 1]]
        await sa.replace("s", [12, 1])
        await c.update("s", [1], [["+", 1, 1]])
        await expect_error(sa.select("s", [2]), *CONFLICT)
        await expect_error(sa.commit(), *CONFLICT)
        assert rows(await c.select("s", [12])) == []

    scenario(server, body)


def test_a_read_only_transaction_commits(server):
    async def body(sa, sb, c):
        await c.replace("s", [1, 1])
        await sa.begin()
        assert rows(await sa.select("s")) == [[1, 1]]
        await c.replace("s", [1, 2])
        assert rows(await sa.select("s")) == [[1, 1]]
        await sa.commit()
        assert rows(await sa.select("s")) == [[1, 2]]

    scenario(server, body)


def test_disconnect_and_timeout_roll_back_private_writes(server):
    async def main():
        a, c = await connect(server), await connect(server)
        s = open_stream(a)
        await s.begin()
        await s.replace("s", [1, "lost"])
        await a.disconnect()
        assert rows(await c.select("s")) == []
        a = await connect(server)
        s = open_stream(a)
        await s.begin(tx_timeout=0.05)
        await s.replace("s", [2, "late"])
        await asyncio.sleep(0.2)
        await expect_error(s.select("s"), 231, "Transaction has been aborted by timeout")
        await expect_error(s.commit(), 231)
        assert rows(await c.select("s")) == []
        for conn in (a, c):
            await conn.disconnect()

    run(main())


def test_isolation_levels_are_accepted_and_linearizable_is_not(server):
    async def body(sa, sb, c):
        for level in (Isolation.READ_COMMITTED, Isolation.READ_CONFIRMED, Isolation.BEST_EFFORT):
            await sa.begin(isolation=level)
            await sa.replace("s", [int(level), 1])
            assert rows(await sa.select("s", [int(level)])) == [[int(level), 1]]
            await sa.commit()
        assert len(rows(await c.select("s"))) == 3

    scenario(server, body)


def test_a_schema_change_aborts_open_transactions(server):
    async def body(sa, sb, c):
        await sa.begin()
        await sa.replace("s", [1, 1])
        await sb.begin()
        assert rows(await sb.select("s")) == []
        await c.eval("box.space.s:create_index('sk', {parts = {2, 'unsigned'}, unique = false})")
        await expect_error(sa.select("s"), *CONFLICT)
        await expect_error(sb.select("s"), *CONFLICT)
        await expect_error(sa.commit(), *CONFLICT)
        await sb.rollback()
        assert rows(await c.select("s")) == []

    scenario(server, body)


def test_bad_txn_isolation_is_refused_at_start(tmp_path):
    proc = subprocess.run(
        [servers.spindle_bin(), "serve", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0",
         "--memtx-use-mvcc-engine", "--txn-isolation", "default"],
        capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode != 0
    assert "txn_isolation" in proc.stderr


def test_kill_9_under_transactional_load_keeps_transactions_whole(spindle_server):
    """Writers commit pairs of rows ({n, 'a', v} and {n + 1000000, 'b', v}) in stream
    transactions while the server is killed with SIGKILL: after the restart every pair is
    whole or absent, and every commit that was answered is there."""
    srv = spindle_server(extra_args=MVCC_ARGS)
    acked = []

    async def writer(w, stop):
        # No reconnecting: once the server is killed, every request fails at once.
        conn = asynctnt.Connection(host=srv.host, port=srv.port, username="admin",
                                   password=srv.password, connect_timeout=5,
                                   request_timeout=10, reconnect_timeout=0)
        await conn.connect()
        s = open_stream(conn)
        n = w * 100000
        try:
            while not stop.is_set():
                n += 1
                await s.begin()
                await s.replace("s", [n, "a", n])
                await s.replace("s", [n + 1000000, "b", n])
                await s.commit()
                acked.append(n)
        except Exception:
            pass
        finally:
            await conn.disconnect()

    async def load():
        conn = await connect(srv)
        await conn.eval("box.schema.space.create('s'):create_index('pk')")
        stop = asyncio.Event()
        tasks = [asyncio.ensure_future(writer(w, stop)) for w in range(4)]
        while len(acked) < 300:
            await asyncio.sleep(0.01)
        srv.stop(signal.SIGKILL)
        stop.set()
        await asyncio.gather(*tasks)

    run(load())
    srv.start()

    async def check():
        conn = await connect(srv)
        got = {t[0]: list(t) for t in await conn.select("s")}
        await conn.disconnect()
        return got

    got = run(check())
    firsts = [k for k in got if k < 1000000]
    assert firsts, "nothing survived"
    for k in firsts:
        assert got.get(k + 1000000) == [k + 1000000, "b", k]
    for k in got:
        if k >= 1000000:
            assert got.get(k - 1000000) == [k - 1000000, "a", k - 1000000]
    missing = [n for n in acked if n not in got]
    assert not missing, f"{len(missing)} acknowledged commits lost, e.g. {missing[:5]}"


def transaction_survives_two_statements(host, port, password=None):
    async def main():
        conn = asynctnt.Connection(host=host, port=port, username="admin" if password else None,
                                   password=password, connect_timeout=5, request_timeout=10)
        await conn.connect()
        s = open_stream(conn)
        await s.begin()
        await s.replace("s", [1])
        assert rows(await s.select("s")) == [[1]]
        assert rows(await conn.select("s")) == []
        await s.commit()
        assert rows(await conn.select("s")) == [[1]]
        await conn.disconnect()

    run(main())


def test_an_init_script_turns_mvcc_on_in_box_cfg(tmp_path):
    port = servers.free_port()
    script = tmp_path / "init.lua"
    script.write_text(
        f"box.cfg{{listen = {port}, compat_version = '2.11.0', memtx_use_mvcc_engine = true,\n"
        "         txn_isolation = 'read-committed'}\n"
        "local ok, err = pcall(box.cfg, {txn_isolation = 'default'})\n"
        "assert(not ok and err.code == 59, tostring(err))\n"
        "box.cfg{txn_isolation = 2}\n"
        "assert(box.cfg.memtx_use_mvcc_engine == true and box.cfg.txn_isolation == 2)\n"
        "box.schema.space.create('s'):create_index('pk')\n"
        "box.schema.user.grant('guest', 'read,write', 'space', 's')\n"
        "local f = io.open('checked', 'w') f:write('ok') f:close()\n")
    log = open(tmp_path / "log", "w")
    proc = subprocess.Popen([servers.spindle_bin(), str(script)], cwd=tmp_path, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        # The script writes `checked` once its own assertions passed.
        for _ in range(500):
            if proc.poll() is not None or (tmp_path / "checked").exists():
                break
            time.sleep(0.02)
        assert (tmp_path / "checked").exists(), (tmp_path / "log").read_text()
        transaction_survives_two_statements("127.0.0.1", port)
    finally:
        proc.kill()
        proc.wait()
        log.close()


def test_the_config_file_turns_mvcc_on(spindle_server, tmp_path):
    config = tmp_path / "spindle.toml"
    config.write_text('compat_version = "2.11.0"\nmemtx_use_mvcc_engine = true\n'
                      'txn_isolation = "read-confirmed"\n')
    srv = spindle_server(extra_args=("--config", str(config)))

    async def create():
        conn = await connect(srv)
        await conn.eval("box.schema.space.create('s'):create_index('pk')")
        assert list(await conn.eval("return box.cfg.memtx_use_mvcc_engine")) == [True]
        await conn.disconnect()

    run(create())
    transaction_survives_two_statements(srv.host, srv.port, srv.password)


def test_a_replica_and_the_wal_see_a_transaction_whole(spindle_server):
    """The master's WAL holds the committed transaction as one (one tsn, the commit flag on
    its last row); a replica running MVCC transactions of its own records what its applier
    writes, so a reader there keeps its read view."""
    master = spindle_server(extra_args=MVCC_ARGS)
    replica = spindle_server(extra_args=(
        *MVCC_ARGS, "--replication", f"admin:{master.password}@{master.host}:{master.port}",
        "--read-only"))

    async def main():
        m, r = await connect(master), await connect(replica)
        await m.eval("box.schema.space.create('s'):create_index('pk')")
        # The space and its index come in two transactions.
        await wait_for(lambda: r.eval("return box.space.s and box.space.s.index[0] ~= nil"))
        await r.refetch_schema()
        reader = open_stream(r)
        await reader.begin()
        assert rows(await reader.select("s")) == []
        writer = open_stream(m)
        await writer.begin()
        for k in (1, 2, 3):
            await writer.replace("s", [k, "x"])
        await writer.commit()
        await wait_for(lambda: r.eval("return box.space.s:len() == 3"))
        assert rows(await reader.select("s")) == []
        await reader.commit()
        assert len(rows(await r.select("s"))) == 3
        for conn in (m, r):
            await conn.disconnect()

    run(main())
    ours = [row for path in sorted(glob.glob(os.path.join(master.data_dir, "*.xlog")))
            for row in tarantoolctl_cat(path)
            if row.get("BODY", {}).get("tuple", [None])[-1:] == ["x"]]
    assert len(ours) == 3, ours
    headers = [row["HEADER"] for row in ours]
    assert len({h.get("tsn", h["lsn"]) for h in headers}) == 1, headers
    assert [bool(h.get("commit")) for h in headers] == [False, False, True], headers


async def wait_for(check):
    for _ in range(1000):
        if (await check())[0]:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not reached")
