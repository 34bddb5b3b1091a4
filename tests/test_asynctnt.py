"""asynctnt 2.4.0 against the server (parametrised: spindle, and Tarantool as a check).

asynctnt pipelines its schema fetch (_vspace and _vindex in flight together), sends SELECT with
LIMIT 2^64-1 and defaults omitted, sends the chap-sha1 scramble as MP_STR, keeps many requests in
flight, and refetches the schema by itself when a reply's schema version changes
(auto_refetch_schema).  Each test runs its own event loop via asyncio.run.
"""

import asyncio

import asynctnt
import pytest
from asynctnt.exceptions import TarantoolDatabaseError

TIMEOUT = 30


@pytest.fixture
def server(server_factory, server_kind):
    return server_factory(server_kind)()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


def conn_for(server, username="admin", password=None, **kw):
    kw.setdefault("connect_timeout", 5)
    kw.setdefault("request_timeout", 10)
    return asynctnt.Connection(host=server.host, port=server.port, username=username,
                               password=server.password if password is None and username else password,
                               **kw)


def rows(resp):
    return [list(t) for t in resp]


async def wait_for_space(conn, name, indexes=()):
    """asynctnt refetches the schema by itself when a reply carries a new schema version, but
    asynchronously: wait (bounded) until the space and its indexes are known by name."""
    for _ in range(250):
        sp = conn.schema.spaces.get(name)
        if sp is not None and all(i in sp.indexes for i in indexes):
            return sp
        await asyncio.sleep(0.02)
    raise AssertionError(f"asynctnt never learned about space {name!r} (indexes {list(indexes)}) from the "
                         f"server's schema (auto_refetch_schema); known: {sorted(map(str, conn.schema.spaces))}")


async def create_space(conn, sid, name, fmt, indexes):
    await conn.insert("_space", [sid, 1, name, "memtx", 0, {}, [{"name": n, "type": t} for n, t in fmt]])
    for iid, (iname, itype, unique, parts) in enumerate(indexes):
        await conn.insert("_index", [sid, iid, iname, itype, {"unique": unique}, parts])
    await wait_for_space(conn, name, [i[0] for i in indexes])


async def make_users(conn, sid=512):
    await create_space(conn, sid, "users", [("id", "unsigned"), ("name", "string"), ("score", "integer")],
                       [("primary", "tree", True, [[0, "unsigned"]]),
                        ("by_name", "tree", False, [[1, "string"]])])


def test_connect_and_crud_by_name(server):
    async def main():
        conn = conn_for(server)
        await conn.connect()
        try:
            await conn.ping()
            await make_users(conn)
            assert rows(await conn.insert("users", [1, "alice", 10])) == [[1, "alice", 10]]
            assert rows(await conn.insert("users", [2, "bob", 20])) == [[2, "bob", 20]]
            assert rows(await conn.replace("users", [2, "bob", 21])) == [[2, "bob", 21]]
            assert rows(await conn.select("users", [1])) == [[1, "alice", 10]]
            assert rows(await conn.select("users")) == [[1, "alice", 10], [2, "bob", 21]]
            assert rows(await conn.select("users", ["bob"], index="by_name")) == [[2, "bob", 21]]
            assert rows(await conn.select("users", [1], iterator="GT")) == [[2, "bob", 21]]
            assert rows(await conn.select("users", [], iterator="REQ", limit=1)) == [[2, "bob", 21]]
            # asynctnt update: 0-based field numbers or names
            assert rows(await conn.update("users", [1], [["+", 2, 5]])) == [[1, "alice", 15]]
            assert rows(await conn.update("users", [1], [["=", "name", "alicia"]])) == [[1, "alicia", 15]]
            assert rows(await conn.upsert("users", [3, "carol", 1], [["+", 2, 1]])) == []
            assert rows(await conn.upsert("users", [3, "carol", 1], [["+", 2, 1]])) == []
            assert rows(await conn.select("users", [3])) == [[3, "carol", 2]]
            assert rows(await conn.delete("users", [2])) == [[2, "bob", 21]]
            assert rows(await conn.delete("users", [2])) == []
            resp = await conn.select("users")
            # tuples carry the space format: fields are reachable by name
            assert [t["name"] for t in resp] == ["alicia", "carol"]
        finally:
            await conn.disconnect()
    run(main())


def test_errors_surface_codes(server):
    async def main():
        conn = conn_for(server)
        await conn.connect()
        try:
            await make_users(conn)
            await conn.insert("users", [1, "alice", 10])
            with pytest.raises(TarantoolDatabaseError) as e:
                await conn.insert("users", [1, "x", 0])
            assert e.value.code == 3
            assert e.value.message == "Duplicate key exists in unique index 'primary' in space 'users'"
            with pytest.raises(TarantoolDatabaseError) as e:
                await conn.select(9999, [])
            assert e.value.code == 36
            with pytest.raises(TarantoolDatabaseError) as e:
                await conn.insert("users", [2, 2, 2])
            assert e.value.code == 23
            with pytest.raises(TarantoolDatabaseError) as e:
                await conn.update("users", [1], [["=", 0, 5]])
            assert e.value.code == 94
            # asynctnt decodes the extended error stack (IPROTO_ERROR) too
            assert e.value.error is not None
            await conn.ping()
        finally:
            await conn.disconnect()
    run(main())


def test_wrong_password_refused(server):
    async def main():
        conn = conn_for(server, password="definitely-wrong", reconnect_timeout=0)
        with pytest.raises(TarantoolDatabaseError) as e:
            await conn.connect()
        await conn.disconnect()
        return e.value
    err = run(main())
    assert err.code == 47, err
    assert err.message == "Incorrect password supplied for user 'admin'"


def test_guest_refused_writes(server):
    async def main():
        admin = conn_for(server)
        await admin.connect()
        guest = conn_for(server, username=None)
        await guest.connect()
        try:
            await make_users(admin)
            await guest.ping()
            with pytest.raises(TarantoolDatabaseError) as e:
                await guest.insert(512, [5, "mallory", 0])
            assert e.value.code == 42
            assert e.value.message == "Write access to space 'users' is denied for user 'guest'"
            with pytest.raises(TarantoolDatabaseError) as e:
                await guest.select(512)
            assert e.value.code == 42
        finally:
            await admin.disconnect()
            await guest.disconnect()
    run(main())


def test_schema_refetch_after_ddl(server):
    """A space created after connect (by another connection) becomes usable by name: asynctnt
    notices the schema version change in a reply and refetches _vspace/_vindex."""
    async def main():
        early = conn_for(server)
        await early.connect()
        admin = conn_for(server)
        await admin.connect()
        try:
            await make_users(admin)
            await create_space(admin, 513, "events", [("id", "unsigned"), ("kind", "string")],
                               [("primary", "tree", True, [[0, "unsigned"]])])
            # Any reply carries the new schema version; asynctnt then refetches the schema
            # without being asked (no explicit refetch_schema() here).
            await early.ping()
            await wait_for_space(early, "events", ["primary"])
            assert rows(await early.insert("events", [1, "start"])) == [[1, "start"]]
            assert rows(await early.select("events")) == [[1, "start"]]
            # an index added later is picked up the same way
            await admin.insert("_index", [513, 1, "by_kind", "tree", {"unique": False}, [[1, "string"]]])
            await early.ping()
            await wait_for_space(early, "events", ["primary", "by_kind"])
            assert rows(await early.select("events", ["start"], index="by_kind")) == [[1, "start"]]
            assert early.schema.spaces["events"].sid == 513
        finally:
            await early.disconnect()
            await admin.disconnect()
    run(main())


def test_pipelined_selects_around_writes(server):
    """Runs of pipelined primary-key SELECTs (the server looks their keys up in one batched
    walk of the tree) see every write pipelined before them and none after, including
    writes to the very key they read; a bad key inside a run fails alone."""
    async def main():
        conn = conn_for(server)
        await conn.connect()
        try:
            await make_users(conn, sid=515)
            await asyncio.gather(*(conn.insert("users", [i, f"n{i}", i]) for i in range(200)))
            calls = []
            for k in (5, 150, 199):
                calls += [conn.select("users", [k]) for _ in range(12)]
                calls.append(conn.replace("users", [k, f"new{k}", -k]))
                calls += [conn.select("users", [k]) for _ in range(12)]
                calls.append(conn.delete("users", [k + 1]))
                calls += [conn.select("users", [j]) for j in range(k - 3, k + 3)]
            calls += [conn.select("users", [i]) for i in range(190, 210)]
            calls.insert(5, conn.select("users", ["not a number"]))
            results = await asyncio.gather(*calls, return_exceptions=True)
            bad = results.pop(5)
            assert isinstance(bad, TarantoolDatabaseError) and bad.code == 18  # ER_KEY_PART_TYPE

            expected, model, i = [], {j: [j, f"n{j}", j] for j in range(200)}, 0
            for k in (5, 150, 199):
                expected += [[model[k]]] * 12
                model[k] = [k, f"new{k}", -k]
                expected.append([model[k]])
                expected += [[model[k]]] * 12
                expected.append([model.pop(k + 1)] if k + 1 in model else [])
                expected += [[model[j]] if j in model else [] for j in range(k - 3, k + 3)]
            expected += [[model[j]] if j in model else [] for j in range(190, 210)]
            assert [rows(r) for r in results] == expected
        finally:
            await conn.disconnect()
    run(main())


def test_pipelined_requests(server):
    """Many requests in flight on one connection; replies are matched by SYNC."""
    async def main():
        conn = conn_for(server)
        await conn.connect()
        try:
            await create_space(conn, 514, "kv", [("k", "unsigned"), ("v", "string")],
                               [("primary", "hash", True, [[0, "unsigned"]])])
            await asyncio.gather(*(conn.insert("kv", [i, f"v{i}"]) for i in range(300)))
            results = await asyncio.gather(*(conn.select("kv", [i]) for i in range(300)))
            assert [rows(r) for r in results] == [[[i, f"v{i}"]] for i in range(300)]
            everything = rows(await conn.select("kv", [], iterator="ALL"))
            assert sorted(everything) == [[i, f"v{i}"] for i in range(300)]
        finally:
            await conn.disconnect()
    run(main())
