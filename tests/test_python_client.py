"""tarantool-python 1.3.0 against the server (parametrised: spindle, and Tarantool as a check).

Covers what application code does with this connector: authenticate as admin, create spaces by
inserting into _space/_index, CRUD by space and index *name* (the connector resolves names via
_vspace/_vindex), errors surfaced as DatabaseError with the server's code, wrong password (47),
guest denied writes (42), and name lookups of a space created after the connection was made.
"""

import pytest
import tarantool
from tarantool.error import DatabaseError, NetworkError
from tarantool.utils import version_id

EQ, REQ, ALL, LT, LE, GE, GT = 0, 1, 2, 3, 4, 5, 6


@pytest.fixture
def server(server_factory, server_kind):
    return server_factory(server_kind)()


def connect(server, user="admin", password=None, **kw):
    if user is None:
        return tarantool.Connection(server.host, server.port, socket_timeout=10, **kw)
    return tarantool.Connection(server.host, server.port, user=user,
                                password=server.password if password is None else password,
                                socket_timeout=10, **kw)


def create_space(conn, sid, name, fmt, indexes):
    """DDL the way a driver-only application does it: rows into _space and _index."""
    conn.insert("_space", [sid, 1, name, "memtx", 0, {}, [{"name": n, "type": t} for n, t in fmt]])
    for iid, (iname, itype, unique, parts) in enumerate(indexes):
        conn.insert("_index", [sid, iid, iname, itype, {"unique": unique}, parts])


def make_users_space(conn, sid=512):
    create_space(conn, sid, "users", [("id", "unsigned"), ("name", "string"), ("score", "integer")],
                 [("primary", "tree", True, [[0, "unsigned"]]),
                  ("by_name", "tree", False, [[1, "string"]])])


def test_connect_ping_and_greeting(server):
    conn = connect(server)
    try:
        assert conn.ping(notime=True) == "Success"
        # tarantool-python parses the greeting: the server must claim 2.6.x (see iproto.md §1.1)
        assert version_id(2, 6, 0) <= conn.version_id < version_id(2, 7, 0), conn.version_id
    finally:
        conn.close()


def test_crud_by_name_after_ddl(server):
    conn = connect(server)
    try:
        make_users_space(conn)
        assert conn.insert("users", (1, "alice", 10)).data == [[1, "alice", 10]]
        assert conn.insert("users", (2, "bob", 20)).data == [[2, "bob", 20]]
        assert conn.insert("users", (3, "carol", 30)).data == [[3, "carol", 30]]
        assert conn.replace("users", (3, "carol", 31)).data == [[3, "carol", 31]]
        assert conn.select("users", 1).data == [[1, "alice", 10]]
        assert conn.select("users").data == [[1, "alice", 10], [2, "bob", 20], [3, "carol", 31]]
        assert conn.select("users", [2], iterator=GE, limit=10).data == [[2, "bob", 20], [3, "carol", 31]]
        assert conn.select("users", [2], iterator=LT).data == [[1, "alice", 10]]
        assert conn.select("users", [], iterator=REQ, offset=1, limit=1).data == [[2, "bob", 20]]
        assert conn.select("users", "bob", index="by_name").data == [[2, "bob", 20]]
        # update: the connector sends 0-based field numbers (no INDEX_BASE) and resolves names
        assert conn.update("users", 1, [("+", 2, 5)]).data == [[1, "alice", 15]]
        assert conn.update("users", 1, [("=", "name", "alicia")]).data == [[1, "alicia", 15]]
        assert conn.update("users", 99, [("+", 2, 5)]).data == []
        assert conn.upsert("users", (4, "dave", 1), [("+", 2, 1)]).data == []
        assert conn.upsert("users", (4, "dave", 1), [("+", 2, 1)]).data == []
        assert conn.select("users", 4).data == [[4, "dave", 2]]
        assert conn.delete("users", 2).data == [[2, "bob", 20]]
        assert conn.delete("users", 2).data == []
        assert [t[0] for t in conn.select("users").data] == [1, 3, 4]
        # the space object API resolves the same names
        assert conn.space("users").select(3).data == [[3, "carol", 31]]
    finally:
        conn.close()


def test_errors_carry_server_codes(server):
    conn = connect(server)
    try:
        make_users_space(conn)
        conn.insert("users", (1, "alice", 10))
        with pytest.raises(DatabaseError) as e:
            conn.insert("users", (1, "again", 0))
        assert e.value.code == 3, e.value
        assert e.value.message == "Duplicate key exists in unique index 'primary' in space 'users'"
        with pytest.raises(DatabaseError) as e:
            conn.insert("users", (2, 5, 0))
        assert e.value.code == 23, e.value
        with pytest.raises(DatabaseError) as e:
            conn.select(9999, [])
        assert e.value.code == 36, e.value
        with pytest.raises(DatabaseError) as e:
            conn.select("users", [], index=7)
        assert e.value.code == 35, e.value
        with pytest.raises(DatabaseError) as e:
            conn.select("users", ["x"])
        assert e.value.code == 18, e.value
        with pytest.raises(DatabaseError) as e:
            conn.update("users", 1, [("=", 0, 100)])
        assert e.value.code == 94, e.value
        with pytest.raises(DatabaseError) as e:
            conn.insert("_vspace", [600, 1, "x", "memtx", 0, {}, []])
        assert e.value.code == 113, e.value
        # the extended error (IPROTO_ERROR) is decoded by 1.3.0 into extra_info
        with pytest.raises(DatabaseError) as e:
            conn.insert("users", (1, "again", 0))
        assert e.value.extra_info is not None and e.value.extra_info.type == "ClientError"
        assert e.value.extra_info.errcode == 3
        # the connection survives errors
        assert conn.ping(notime=True) == "Success"
    finally:
        conn.close()


def connect_error(server, **kw):
    """tarantool-python 1.3.0 wraps an AUTH failure during connect in NetworkError(DatabaseError)."""
    with pytest.raises((DatabaseError, NetworkError)) as e:
        connect(server, **kw)
    err = e.value
    if isinstance(err, NetworkError) and err.args and isinstance(err.args[0], DatabaseError):
        err = err.args[0]
    assert isinstance(err, DatabaseError), f"expected a DatabaseError from AUTH, got {e.value!r}"
    return err


def test_wrong_password_refused(server):
    err = connect_error(server, password="definitely-wrong")
    assert err.code == 47, err
    assert err.message == "Incorrect password supplied for user 'admin'"


def test_unknown_user_refused(server):
    err = connect_error(server, user="nobody", password="x")
    assert err.code == 45, err
    assert err.message == "User 'nobody' is not found"


def test_guest_refused_writes(server):
    admin = connect(server)
    guest = connect(server, user=None)
    try:
        make_users_space(admin)
        admin.insert("users", (1, "alice", 10))
        assert guest.ping(notime=True) == "Success"
        with pytest.raises(DatabaseError) as e:
            guest.insert(512, (2, "mallory", 0))
        assert e.value.code == 42, e.value
        assert e.value.message == "Write access to space 'users' is denied for user 'guest'"
        with pytest.raises(DatabaseError) as e:
            guest.select(512, [])
        assert e.value.code == 42, e.value
        with pytest.raises(DatabaseError) as e:
            guest.insert(280, [600, 1, "evil", "memtx", 0, {}, []])
        assert e.value.code == 42, e.value
        assert admin.select("users").data == [[1, "alice", 10]]
    finally:
        admin.close()
        guest.close()


def test_space_created_after_connect_is_usable_by_name(server):
    early = connect(server)     # fetched the schema before the DDL below
    admin = connect(server)
    try:
        make_users_space(admin)
        early.insert("users", (1, "a", 1))
        create_space(admin, 513, "events", [("id", "unsigned"), ("kind", "string")],
                     [("primary", "tree", True, [[0, "unsigned"]]),
                      ("by_kind", "hash", True, [[1, "string"]])])
        assert early.insert("events", (1, "start")).data == [[1, "start"]]
        assert early.select("events", "start", index="by_kind").data == [[1, "start"]]
        assert early.select("users").data == [[1, "a", 1]]
        # an index added after the space was cached is found by name too (lazy _vindex lookup)
        admin.insert("_index", [512, 2, "by_score", "tree", {"unique": False}, [[2, "integer"]]])
        assert early.select("users", 1, index="by_score").data == [[1, "a", 1]]
    finally:
        early.close()
        admin.close()


def test_many_rows_and_limits(server):
    conn = connect(server)
    try:
        create_space(conn, 520, "bulk", [("id", "unsigned"), ("payload", "string")],
                     [("primary", "tree", True, [[0, "unsigned"]])])
        for i in range(500):
            conn.insert("bulk", (i, "x" * (i % 50)))
        assert len(conn.select("bulk", [], iterator=ALL).data) == 500
        page = conn.select("bulk", [100], iterator=GT, limit=10).data
        assert [t[0] for t in page] == list(range(101, 111))
        assert [t[0] for t in conn.select("bulk", [100], iterator=LT, limit=3).data] == [99, 98, 97]
    finally:
        conn.close()
