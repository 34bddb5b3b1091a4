"""IPROTO_ID, streams and BEGIN/COMMIT/ROLLBACK (issue 16, step 1: the MVCC engine off).

spindle runs with `--compat-version 2.11.0`, so asynctnt 2.4.0 sends IPROTO_ID and offers
`conn.stream()`. The expected codes and messages are 2.11's (shared docs
transactions-and-http.md §A1-§A2); real Tarantool 2.6 has none of this, so with the default
compat version (2.6.0) spindle is compared against it instead: ID and BEGIN are unknown request
types and STREAM_ID is ignored (also in the differential suite, harness/diff_ops.py).

MVCC off, as Tarantool without `memtx_use_mvcc_engine`: a transaction's first statement answers
normally, the end of its request is a yield that rolls the transaction back, the next statement
and COMMIT answer 154, ROLLBACK answers OK.
"""

import asyncio
import socket
import subprocess
import time

import asynctnt
import msgpack
import pytest
from asynctnt.exceptions import TarantoolDatabaseError
from asynctnt.stream import Stream

from harness import iproto as ip
from harness import servers

TIMEOUT = 30
STREAM_ID = 0x0A
BEGIN, COMMIT, ROLLBACK, ID = 14, 15, 16, 73
K_VERSION, K_FEATURES, K_TIMEOUT, K_TXN_ISOLATION, K_AUTH_TYPE = 0x54, 0x55, 0x56, 0x59, 0x5B
CONN_TXNS_MAX, TXNS_MAX = 1024, 65_536  # crates/types/src/limits.rs


@pytest.fixture
def server(spindle_server):
    srv = spindle_server(extra_args=("--compat-version", "2.11.0"))
    with ip.connect(srv, "admin", srv.password) as c:
        c.call(ip.EVAL, {ip.K_EXPR: "box.schema.space.create('t'):create_index('pk')", ip.K_TUPLE: []})
        c.call(ip.EVAL, {ip.K_EXPR: "_G.gate = require('fiber').channel(1)", ip.K_TUPLE: []})
    return srv


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


async def connect(server):
    conn = asynctnt.Connection(host=server.host, port=server.port, username="admin",
                               password=server.password, connect_timeout=5, request_timeout=10)
    await conn.connect()
    return conn


async def expect_error(coro, code, message=None):
    with pytest.raises(TarantoolDatabaseError) as e:
        await coro
    assert e.value.code == code, e.value
    if message is not None:
        assert e.value.message == message
    return e.value


def open_stream(conn):
    """`conn.stream()`, without asynctnt's stub: once any connection of the process has met a
    server without STREAMS, asynctnt replaces `Connection.stream` on the class itself (for
    every later connection too — test_asynctnt.py's 2.6 servers do that). So check the
    feature here and build the stream as `Connection.stream` does."""
    assert conn.features.streams, "the server did not announce STREAMS"
    stream = Stream()
    stream._set_db(conn._protocol.create_db(True))
    return stream


def rows(resp):
    return [list(t) for t in resp]


def raw(server, auth=True):
    return ip.connect(server, "admin" if auth else None, server.password)


def error_of(header, body):
    code = header.get(ip.K_TYPE, 0)
    assert code & ip.TYPE_ERROR, f"expected an error, got {header} {body}"
    return code & 0x7FFF, body.get(ip.K_ERROR_24)


def ok_body(header, body):
    assert header.get(ip.K_TYPE) == ip.OK, f"expected OK, got {header} {body}"
    return body


def in_stream(stream, **extra):
    return {STREAM_ID: stream, **extra}


YIELD = (154, "Transaction has been aborted by a fiber yield")


# -- IPROTO_ID ----------------------------------------------------------------------------------

def test_asynctnt_negotiates_streams_and_transactions(server):
    async def main():
        conn = await connect(server)
        try:
            assert conn.version == (2, 11, 0)
            f = conn.features
            assert (f.streams, f.transactions) == (True, True)
            # PAGINATION is not implemented, so not announced (watchers: test_watchers.py,
            # error extension: test_error_extension.py).
            assert (f.error_extension, f.watchers, f.pagination) == (True, True, False)
            resp = await conn.eval("return box.info.version, _TARANTOOL")
            assert list(resp) == ["2.11.0-0-spindle", "2.11.0-0-spindle"]
        finally:
            await conn.disconnect()
    run(main())


def test_id_reply_and_body_errors(server):
    with raw(server, auth=False) as c:
        assert c.version == "2.11.0"
        # Before AUTH; unknown keys skipped.
        body = ok_body(*c.request(ID, {K_VERSION: 3, K_FEATURES: [0, 1, 2], K_AUTH_TYPE: "chap-sha1",
                                       0x70: [1, {2: 3}]}))
        assert body == {K_VERSION: 4, K_FEATURES: [0, 1, 2, 3], K_AUTH_TYPE: "chap-sha1"}
        assert ok_body(*c.request(ID, {}))[K_VERSION] == 4
        bad = "Invalid MsgPack - request body"
        for wrong in ({K_VERSION: "3"}, {K_FEATURES: 1}, {K_FEATURES: ["x"]}, {K_AUTH_TYPE: 5}, [1], None):
            assert error_of(*c.request(ID, wrong)) == (20, bad), wrong
        assert error_of(*c.request(ID, {K_VERSION: 3}, header_extra=in_stream(1))) == (
            229, "Unable to process ID request in stream")
        # The connection stays usable after each error.
        ok_body(*c.ping())


# -- misuse -------------------------------------------------------------------------------------

def test_transaction_requests_out_of_stream_and_session_requests_in_stream(server):
    with raw(server) as c:
        for rtype, name in ((BEGIN, "BEGIN"), (COMMIT, "COMMIT"), (ROLLBACK, "ROLLBACK")):
            assert error_of(*c.request(rtype)) == (230, f"Unable to process {name} request out of stream")
        auth = {ip.K_USER_NAME: "guest", ip.K_TUPLE: []}
        assert error_of(*c.request(ip.AUTH, auth, header_extra=in_stream(5))) == (
            229, "Unable to process AUTH request in stream")
        # WATCH is a session request: not in a stream.
        assert error_of(*c.request(74, {0x57: "box.id"}, header_extra=in_stream(5))) == (
            229, "Unable to process WATCH request in stream")
        # PING and data requests are fine in a stream.
        ok_body(*c.request(ip.PING, header_extra=in_stream(5)))
        ok_body(*c.request(ip.SELECT, {ip.K_SPACE_ID: 512, ip.K_KEY: [], ip.K_LIMIT: 1},
                           header_extra=in_stream(5)))


def test_begin_body_checks(server):
    with raw(server) as c:
        s = in_stream(1)
        bad = (20, "Invalid MsgPack - request body")
        assert error_of(*c.request(BEGIN, {K_TIMEOUT: 1}, header_extra=s)) == bad
        assert error_of(*c.request(BEGIN, {K_TXN_ISOLATION: "x"}, header_extra=s)) == bad
        assert error_of(*c.request(BEGIN, {K_TIMEOUT: -1.0}, header_extra=s)) == (
            1, "Illegal parameters, timeout must be a number greater than 0")
        assert error_of(*c.request(BEGIN, {K_TXN_ISOLATION: 4}, header_extra=s)) == (
            5, "Linearizable transaction does not support disabled memtx mvcc engine")
        assert error_of(*c.request(BEGIN, {K_TXN_ISOLATION: 5}, header_extra=s)) == (
            1, "Illegal parameters, unknown isolation level")
        # None of those left a transaction behind; every level 0-3, a 0.0 timeout, no body.
        for level in range(4):
            assert ok_body(*c.request(BEGIN, {K_TXN_ISOLATION: level, K_TIMEOUT: 0.0}, header_extra=s)) == {}
            assert ok_body(*c.request(COMMIT, header_extra=s)) == {}
        assert ok_body(*c.request(BEGIN, header_extra=s)) == {}
        assert ok_body(*c.request(ROLLBACK, {}, header_extra=s)) == {}


def test_begin_twice_and_commit_or_rollback_without_transaction(server):
    async def main():
        conn = await connect(server)
        try:
            s = open_stream(conn)
            await s.commit()
            await s.rollback()
            await s.begin()
            await expect_error(s.begin(), 79, "Operation is not permitted when there is an active transaction ")
            # The open one is untouched: still open, so BEGIN -> COMMIT works.
            await s.commit()
            await s.begin()
            await s.commit()
        finally:
            await conn.disconnect()
    run(main())


# -- MVCC-off outcomes --------------------------------------------------------------------------

def test_first_statement_answers_then_the_transaction_is_aborted(server):
    async def main():
        conn = await connect(server)
        try:
            s = open_stream(conn)
            await s.begin()
            assert rows(await s.insert("t", [1, "a"])) == [[1, "a"]]
            # Rolled back at the end of its request: nobody sees it.
            assert rows(await conn.select("t")) == []
            await expect_error(s.insert("t", [2, "b"]), *YIELD)
            await expect_error(s.select("t"), *YIELD)
            await expect_error(s.begin(), 79)
            await expect_error(s.commit(), *YIELD)
            # COMMIT freed it: the stream autocommits again.
            assert rows(await s.insert("t", [3, "c"])) == [[3, "c"]]
            assert rows(await conn.select("t")) == [[3, "c"]]
            # A read is a statement too; ROLLBACK of an aborted transaction is OK.
            await s.begin()
            assert rows(await s.select("t")) == [[3, "c"]]
            await expect_error(s.replace("t", [3, "x"]), *YIELD)
            await s.rollback()
            assert rows(await conn.select("t")) == [[3, "c"]]
            # A failing first statement aborts it as well.
            await s.begin()
            await expect_error(s.insert("t", [3, "dup"]), 3)
            await expect_error(s.commit(), *YIELD)
        finally:
            await conn.disconnect()
    run(main())


def test_streams_have_their_own_transactions(server):
    async def main():
        conn = await connect(server)
        try:
            a, b = open_stream(conn), open_stream(conn)
            await a.begin()
            # b and plain requests are not in a's transaction.
            assert rows(await b.insert("t", [1])) == [[1]]
            assert rows(await conn.insert("t", [2])) == [[2]]
            await b.begin()
            await b.commit()
            await a.commit()
            assert rows(await conn.select("t")) == [[1], [2]]
        finally:
            await conn.disconnect()
    run(main())


def test_timeout_rolls_back_and_answers_231(server):
    async def main():
        conn = await connect(server)
        try:
            s = open_stream(conn)
            await s.begin(tx_timeout=0.05)
            # Past the timeout (the check is on the next use; no time is measured).
            await asyncio.sleep(0.3)
            await expect_error(s.select("t"), 231, "Transaction has been aborted by timeout")
            await expect_error(s.commit(), 231)
            await s.begin(tx_timeout=0.05)
            await asyncio.sleep(0.3)
            await expect_error(s.commit(), 231)
            # Freed by COMMIT.
            await s.begin(tx_timeout=100.0)
            await s.commit()
        finally:
            await conn.disconnect()
    run(main())


def test_call_and_eval_in_a_stream_transaction(server):
    """A procedure of a stream runs inside the stream's transaction and may leave it open:
    without a memtx statement it stays open; with one it is rolled back at the end of the
    request (MVCC off); box.commit() inside commits it; box.begin() in a stream without BEGIN
    gives the stream a transaction instead of failing with ER_FUNCTION_TX_ACTIVE (30)."""
    async def main():
        conn = await connect(server)
        try:
            s = open_stream(conn)
            assert list(await s.eval("return 1")) == [1]
            await s.begin()
            assert list(await s.eval("return 2")) == [2]
            await expect_error(s.eval("box.begin()"), 79)
            await s.commit()
            # A statement inside: answered, then rolled back and the transaction aborted.
            await s.begin()
            assert list(await s.eval("box.space.t:insert{1} return box.space.t:get(1)")) == [[1]]
            assert rows(await conn.select("t")) == []
            await expect_error(s.eval("return 3"), *YIELD)
            await expect_error(s.commit(), *YIELD)
            # Committed inside: through the WAL like any commit; the stream has none left.
            await s.begin()
            await s.eval("box.space.t:insert{2} box.commit()")
            assert rows(await conn.select("t")) == [[2]]
            await s.begin()
            await s.rollback()
            # box.begin() without BEGIN: the stream's transaction from then on.
            await s.eval("box.begin()")
            await expect_error(s.begin(), 79)
            await s.commit()
            await s.eval("box.begin() box.space.t:insert{3}")
            assert rows(await conn.select("t")) == [[2]]
            await expect_error(s.insert("t", [4]), *YIELD)
            await s.rollback()
            # Outside a stream a function still may not return with a transaction open.
            await expect_error(conn.eval("box.begin()"), 30,
                               "Transaction is active at return from function")
            assert rows(await conn.select("t")) == [[2]]
        finally:
            await conn.disconnect()
    run(main())


# -- ordering -----------------------------------------------------------------------------------

def test_a_stream_runs_its_requests_one_after_another(server):
    """Pipelined on one socket: stream 1's EVAL waits on a channel that only a later plain
    request fills; stream 1's SELECT must wait for that EVAL (so it sees its row), while
    stream 2's SELECT and the plain request run at once. Without per-stream ordering the
    SELECT of stream 1 would see nothing; without interleaving the pipeline would hang."""
    with raw(server) as c:
        reqs = [
            (101, ip.EVAL, {ip.K_EXPR: "local v = _G.gate:get(10) box.space.t:replace{1, v} return v",
                            ip.K_TUPLE: []}, in_stream(1)),
            (102, ip.SELECT, {ip.K_SPACE_ID: 512, ip.K_KEY: [1], ip.K_LIMIT: 1}, in_stream(1)),
            (103, ip.SELECT, {ip.K_SPACE_ID: 512, ip.K_KEY: [1], ip.K_LIMIT: 1}, in_stream(2)),
            (104, ip.EVAL, {ip.K_EXPR: "_G.gate:put('x')", ip.K_TUPLE: []}, {}),
        ]
        c.send_bytes(b"".join(ip.packet({ip.K_TYPE: t, ip.K_SYNC: sync, **extra}, body)
                              for sync, t, body, extra in reqs))
        order, data = [], {}
        for _ in reqs:
            h, b, _ = c.read_packet()
            assert h[ip.K_TYPE] == ip.OK, (h, b)
            order.append(h[ip.K_SYNC])
            data[h[ip.K_SYNC]] = b.get(ip.K_DATA)
        assert data[102] == [[1, "x"]], "stream 1's SELECT ran before its EVAL finished"
        assert data[103] == [], "stream 2 waited for stream 1"
        assert order.index(101) < order.index(102)
        assert order.index(103) < order.index(101) and order.index(104) < order.index(101)


def test_pipelined_streams_keep_their_order(server):
    """Many streams, each a pipelined chain of REPLACEs of one key then a SELECT: every
    SELECT sees its own stream's last value, every reply of a stream comes in order."""
    streams, depth = 20, 10
    with raw(server) as c:
        out, sync = [], 1000
        for step in range(depth + 1):
            for st in range(1, streams + 1):
                sync += 1
                if step < depth:
                    out.append(ip.packet({ip.K_TYPE: ip.REPLACE, ip.K_SYNC: sync, STREAM_ID: st},
                                         {ip.K_SPACE_ID: 512, ip.K_TUPLE: [st, step]}))
                else:
                    out.append(ip.packet({ip.K_TYPE: ip.SELECT, ip.K_SYNC: sync, STREAM_ID: st},
                                         {ip.K_SPACE_ID: 512, ip.K_KEY: [st], ip.K_LIMIT: 1}))
        c.send_bytes(b"".join(out))
        seen = {}
        for _ in range(len(out)):
            h, b, _ = c.read_packet()
            assert h[ip.K_TYPE] == ip.OK, (h, b)
            s = h[ip.K_SYNC]
            st = (s - 1001) % streams + 1
            assert seen.get(st, 0) < s, f"stream {st}: reply {s} after a later one"
            seen[st] = s
            if (s - 1001) // streams == depth:
                assert b[ip.K_DATA] == [[st, depth - 1]]


def test_requests_read_before_a_disconnect_still_run(server):
    """A stream's REPLACE queued behind its running EVAL when the client closes the socket
    still runs, after the EVAL; an open transaction of the closed connection is dropped."""
    with raw(server) as c:
        c.send_bytes(
            ip.packet({ip.K_TYPE: BEGIN, ip.K_SYNC: 1, STREAM_ID: 7})
            + ip.packet({ip.K_TYPE: ip.EVAL, ip.K_SYNC: 2, STREAM_ID: 1},
                        {ip.K_EXPR: "_G.gate:get(10)", ip.K_TUPLE: []})
            + ip.packet({ip.K_TYPE: ip.REPLACE, ip.K_SYNC: 3, STREAM_ID: 1},
                        {ip.K_SPACE_ID: 512, ip.K_TUPLE: [42, "after close"]}))
        h, _, _ = c.read_packet()
        assert h[ip.K_SYNC] == 1
    with raw(server) as c:
        c.call(ip.EVAL, {ip.K_EXPR: "_G.gate:put(true)", ip.K_TUPLE: []})
        got = c.call(ip.EVAL, {ip.K_EXPR: "for _ = 1, 500 do if box.space.t:get(42) then break end "
                                          "require('fiber').sleep(0.01) end return box.space.t:get(42)",
                               ip.K_TUPLE: []})
        assert got == [[42, "after close"]]


# -- limits -------------------------------------------------------------------------------------

def test_open_transactions_per_connection_are_bounded(server):
    with raw(server) as c:
        n = CONN_TXNS_MAX + 1
        c.send_bytes(b"".join(ip.packet({ip.K_TYPE: BEGIN, ip.K_SYNC: i, STREAM_ID: i})
                              for i in range(1, n + 1)))
        codes = {}
        for _ in range(n):
            h, b, _ = c.read_packet()
            codes[h[ip.K_SYNC]] = (h[ip.K_TYPE] & 0x7FFF, (b or {}).get(ip.K_ERROR_24))
        assert all(codes[i] == (0, None) for i in range(1, n)), "the first ones open"
        code, message = codes[n]
        assert code == 5 and f"more than {CONN_TXNS_MAX} open stream transactions" in message
        # Another connection is not affected; closing frees them.
        with raw(server) as other:
            ok_body(*other.request(BEGIN, header_extra=in_stream(1)))
    with raw(server) as c:
        ok_body(*c.request(BEGIN, header_extra=in_stream(1)))


def test_open_transactions_in_total_are_bounded(server):
    conns = [raw(server) for _ in range(TXNS_MAX // CONN_TXNS_MAX)]
    try:
        for c in conns:
            c.send_bytes(b"".join(ip.packet({ip.K_TYPE: BEGIN, ip.K_SYNC: i, STREAM_ID: i})
                                  for i in range(1, CONN_TXNS_MAX + 1)))
        for c in conns:
            for _ in range(CONN_TXNS_MAX):
                h, b, _ = c.read_packet()
                assert h[ip.K_TYPE] == ip.OK, (h, b)
        with raw(server) as extra:
            code, message = error_of(*extra.request(BEGIN, header_extra=in_stream(1)))
            assert code == 5 and f"more than {TXNS_MAX} open stream transactions in total" in message
            # Ending one makes room.
            ok_body(*conns[0].request(ROLLBACK, header_extra=in_stream(1)))
            ok_body(*extra.request(BEGIN, header_extra=in_stream(1)))
    finally:
        for c in conns:
            c.close()


# -- compat version -----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["tarantool", "spindle"])
def test_default_compat_is_2_6(kind, server_factory):
    """spindle's default and real Tarantool 2.6 answer alike: 2.6.0 greeting, ID/BEGIN/COMMIT
    unknown (48), STREAM_ID ignored on data requests."""
    srv = server_factory(kind)()
    with raw(srv) as c:
        assert c.version == "2.6.0"
        for rtype in (ID, BEGIN, COMMIT, ROLLBACK):
            extra = in_stream(1) if rtype != ID else {}
            assert error_of(*c.request(rtype, {}, header_extra=extra)) == (48, f"Unknown request type {rtype}")
        c.call(ip.EVAL, {ip.K_EXPR: "box.schema.space.create('s', {id = 600}):create_index('pk')",
                         ip.K_TUPLE: []})
        assert c.call(ip.REPLACE, {ip.K_SPACE_ID: 600, ip.K_TUPLE: [1]}, header_extra=in_stream(1)) == [[1]]
        assert c.call(ip.SELECT, {ip.K_SPACE_ID: 600, ip.K_KEY: [], ip.K_LIMIT: 10},
                      header_extra=in_stream(1)) == [[1]]
        assert c.call(ip.EVAL, {ip.K_EXPR: "return box.info.version:sub(1, 5)", ip.K_TUPLE: []}) == ["2.6.0"]


def test_asynctnt_without_id_against_the_default(spindle_server):
    # The 2.6.0 greeting keeps asynctnt from sending ID: no streams offered.
    srv = spindle_server()

    async def main():
        conn = await connect(srv)
        try:
            assert conn.version == (2, 6, 0)
            assert not conn.features.streams
        finally:
            await conn.disconnect()
    run(main())


def test_a_script_sets_compat_version_in_box_cfg(tmp_path):
    port = servers.free_port()
    script = tmp_path / "init.lua"
    script.write_text(
        f"box.cfg{{listen = {port}, compat_version = '2.11.0'}}\n"
        "local ok, err = pcall(box.cfg, {compat_version = '2.10.0'})\n"
        "assert(not ok and err.code == 58, tostring(err))\n"
        "assert(box.info.version == '2.11.0-0-spindle' and box.cfg.compat_version == '2.11.0')\n"
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
        with ip.RawConn("127.0.0.1", port) as c:
            assert c.version == "2.11.0"
            assert ok_body(*c.request(ID, {K_VERSION: 3}))[K_FEATURES] == [0, 1, 2, 3]
    finally:
        proc.kill()
        proc.wait()
        log.close()


@pytest.mark.parametrize("bad", ["2.x.0", "2.11", "2.11.0.1", "", "300.0.0"])
def test_malformed_compat_version_is_refused_at_startup(bad, tmp_path):
    proc = subprocess.run([servers.spindle_bin(), "serve", "--listen", "127.0.0.1:0",
                           "--data-dir", str(tmp_path), "--compat-version", bad],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc
    assert "compat_version" in proc.stderr, proc.stderr
