"""The HTTP commit API (docs/http-api.md) against a real spindle over loopback: every endpoint
and error answer, precondition semantics, a concurrent counter, keep-alive and pipelining,
timeouts, versions across restarts, /metrics through prometheus_client's parser."""

import base64
import http.client
import json
import re
import signal
import socket
import threading
import time

import pytest
import tarantool
from prometheus_client.parser import text_string_to_metric_families


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def unb64(text):
    return base64.b64decode(text)


def http_port(srv, timeout=10.0):
    """The HTTP port of the server's latest start (it listens on port 0)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.findall(r"HTTP API listening on 127\.0\.0\.1:(\d+)", srv.log_text())
        if len(found) >= srv.starts:
            return int(found[-1])
        time.sleep(0.05)
    raise AssertionError(f"no HTTP listening line in the log:\n{srv.log_text()}")


class Api:
    """A keep-alive JSON client."""

    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method, path, body=None, raw=None, headers=None):
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        self.conn.request(method, path, body=data, headers=headers or {})
        resp = self.conn.getresponse()
        payload = resp.read()
        text = payload.decode()
        parsed = json.loads(text) if resp.getheader("Content-Type", "").startswith(
            "application/json") else text
        return resp.status, parsed, resp

    def commit(self, operations, read_version=None, preconditions=None, **extra):
        if read_version is None:
            read_version = self.version()
        body = {"read_version": read_version, "operations": operations, **extra}
        if preconditions is not None:
            body["preconditions"] = preconditions
        return self.call("POST", "/v1/commit", body)[:2]

    def version(self):
        status, body, _ = self.call("GET", "/v1/version")
        assert status == 200, body
        return body["version"]

    def read(self, key):
        status, body, _ = self.call("GET", f"/v1/read?key={b64(key).replace('=', '%3D').replace('+', '%2B').replace('/', '%2F')}")
        assert status == 200, body
        value = body["value"]
        return (None if value is None else unb64(value)), body["version"]

    def close(self):
        self.conn.close()


def write(key, value):
    return {"type": "write", "key": b64(key), "value": b64(value)}


def point(key, version=None):
    p = {"type": "point_read", "key": b64(key)}
    if version is not None:
        p["version"] = version
    return p


def range_read(begin, end, version=None):
    p = {"type": "range_read", "begin": b64(begin), "end": b64(end)}
    if version is not None:
        p["version"] = version
    return p


def start(spindle_server, *args):
    srv = spindle_server(extra_args=["--http-listen", "127.0.0.1:0", *args])
    return srv, Api(http_port(srv))


def test_commit_read_range_and_version(spindle_server):
    srv, api = start(spindle_server)
    assert api.version() == 0
    status, body = api.commit([write("a", "1"), write("b", "2"), write("c", "3")], read_version=0)
    assert status == 200, body
    assert body["status"] == "committed" and body["version"] == 1
    assert re.fullmatch(r"[0-9a-f-]{36}", body["request_id"]), body
    _, version_body, _ = api.call("GET", "/v1/version")
    assert version_body == {"version": 1, "leader_id": body["leader_id"]}
    assert api.read("a") == (b"1", 1)
    assert api.read("zz") == (None, 1)
    status, r, _ = api.call("GET", f"/v1/range?begin={b64('b')}&limit=10")
    assert status == 200
    assert [(unb64(p["key"]), unb64(p["value"])) for p in r["pairs"]] == [(b"b", b"2"), (b"c", b"3")]
    assert r["more"] is False and r["version"] == 1
    status, r, _ = api.call("GET", f"/v1/range?begin=&end={b64('c')}&limit=1")
    assert [unb64(p["key"]) for p in r["pairs"]] == [b"a"] and r["more"] is True
    status, body = api.commit([{"type": "delete", "key": b64("a")},
                               {"type": "range_delete", "begin": b64("b"), "end": b64("c")}],
                              request_id="my-own-request-id-000001")
    assert status == 200 and body["version"] == 2
    assert body["request_id"] == "my-own-request-id-000001"
    status, r, _ = api.call("GET", "/v1/range")
    assert [unb64(p["key"]) for p in r["pairs"]] == [b"c"]
    # Binary keys and an unbounded range delete.
    status, body = api.commit([write(b"\x00\xff", b"\x01"), write(b"\xff", b"")])
    assert status == 200 and body["version"] == 3
    assert api.read(b"\x00\xff") == (b"\x01", 3)
    status, body = api.commit([{"type": "range_delete", "begin": b64(b"\x00")}])
    assert status == 200
    status, r, _ = api.call("GET", "/v1/range")
    assert r["pairs"] == []


def test_point_and_range_preconditions(spindle_server):
    srv, api = start(spindle_server)
    _, c1 = api.commit([write("k1", "a"), write("m", "a")], read_version=0)  # version 1
    _, c2 = api.commit([write("k2", "b")], read_version=1)                   # version 2
    assert (c1["version"], c2["version"]) == (1, 2)
    # A point read fails if its key was written after its version, not at or before it.
    status, body = api.commit([write("x", "1")], read_version=1,
                              preconditions=[point("k1"), point("k2"), point("k3")])
    assert status == 409, body
    assert body["status"] == "not_committed" and body["conflicts"] == [1]
    assert body["version"] == 2
    # A refused commit takes no version: the next one is 3.
    status, body = api.commit([write("x", "1")], read_version=2, preconditions=[point("k2")])
    assert (status, body["version"]) == (200, 3)
    # Ranges: begin inclusive, end exclusive.
    status, body = api.commit([write("y", "1")], read_version=1,
                              preconditions=[range_read("k2", "k3"),   # holds k2: broken
                                             range_read("k0", "k2"),   # ends before k2: holds
                                             range_read("k2\x00", "l"),  # starts after k2
                                             range_read("w", "x"),     # x written at 3, excluded
                                             range_read("x", "x\x00")])  # x itself: broken
    assert status == 409, body
    assert body["conflicts"] == [0, 4]
    # A precondition's own version overrides read_version.
    status, body = api.commit([write("y", "1")], read_version=0,
                              preconditions=[point("k2", version=2), range_read("", "", version=3)])
    assert (status, body["version"]) == (200, 4), body
    # An empty end reaches the last key.
    status, body = api.commit([write("z", "1")], read_version=3,
                              preconditions=[{"type": "range_read", "begin": b64("y")}])
    assert status == 409 and body["conflicts"] == [0]


def test_read_version_at_the_window_edge(spindle_server):
    srv, api = start(spindle_server, "--http-conflict-window", "3")
    for i in range(6):
        status, _ = api.commit([write("k", str(i))])
        assert status == 200
    assert api.version() == 6
    # Commits 4, 5, 6 are kept: read_version 3 is the oldest that can be checked.
    status, body = api.commit([write("other", "1")], read_version=3, preconditions=[point("nope")])
    assert status == 200, body
    assert body["version"] == 7
    # Now commits 5..7 are kept: 4 is the edge, 3 is too old.
    status, body = api.commit([write("other", "2")], read_version=4, preconditions=[point("k")])
    assert status == 409 and body["conflicts"] == [0]
    status, body = api.commit([write("other", "2")], read_version=3, preconditions=[point("k")])
    assert status == 410, body
    assert body["status"] == "read_version_too_old" and body["oldest_version"] == 4
    # Without preconditions the read version is not checked against the window.
    status, body = api.commit([write("other", "3")], read_version=0)
    assert status == 200 and body["version"] == 8


def test_request_id_leader_and_future_version(spindle_server):
    srv, api = start(spindle_server)
    status, body = api.commit([write("a", "1")], request_id="reused-id-0000000000001")
    assert status == 200
    leader = body["leader_id"]
    status, again = api.commit([write("a", "2")], request_id="reused-id-0000000000001")
    assert status == 422, again
    assert again["status"] == "request_id_used" and again["version"] == body["version"]
    status, r = api.commit([write("a", "2")], leader_id="not-the-leader")
    assert status == 421 and r["status"] == "leader_changed" and r["leader_id"] == leader
    status, r = api.commit([write("a", "2")], leader_id=leader)
    assert status == 200 and r["version"] == 2
    status, r = api.commit([write("a", "3")], read_version=99, preconditions=[point("a")])
    assert status == 400 and r["field"] == "read_version", r
    assert api.read("a") == (b"2", 2)


BAD_BODIES = [
    ("{not json", "body"),
    ("[1, 2]", "body"),
    (json.dumps({"operations": [write("a", "1")]}), "read_version"),
    (json.dumps({"read_version": "1", "operations": [write("a", "1")]}), "read_version"),
    (json.dumps({"read_version": 0}), "operations"),
    (json.dumps({"read_version": 0, "operations": {}}), "operations"),
    (json.dumps({"read_version": 0, "operations": []}), "operations"),
    (json.dumps({"read_version": 0, "operations": [{"type": "upsert", "key": "YQ=="}]}),
     "operations[0].type"),
    (json.dumps({"read_version": 0, "operations": [{"key": "YQ=="}]}), "operations[0].type"),
    (json.dumps({"read_version": 0, "operations": [write("a", "1"),
                                                   {"type": "write", "key": "YQ", "value": "YQ=="}]}),
     "operations[1].key"),
    (json.dumps({"read_version": 0, "operations": [{"type": "write", "key": "YQ=="}]}),
     "operations[0].value"),
    (json.dumps({"read_version": 0, "operations": [{"type": "delete", "key": 7}]}),
     "operations[0].key"),
    (json.dumps({"read_version": 0, "operations": [{"type": "range_delete"}]}),
     "operations[0].begin"),
    (json.dumps({"read_version": 0, "operations": [write("a", "1")],
                 "preconditions": [{"type": "point_read"}]}), "preconditions[0].key"),
    (json.dumps({"read_version": 0, "operations": [write("a", "1")],
                 "preconditions": [{"type": "range_read", "begin": "!!"}]}),
     "preconditions[0].begin"),
    (json.dumps({"read_version": 0, "operations": [write("a", "1")],
                 "preconditions": [{"type": "point_read", "key": "YQ==", "version": -2}]}),
     "preconditions[0].version"),
    (json.dumps({"read_version": 0, "operations": [write("a", "1")],
                 "preconditions": [{"type": "exists", "key": "YQ=="}]}), "preconditions[0].type"),
    (json.dumps({"read_version": 0, "operations": [write("a", "1")], "preconditions": 5}),
     "preconditions"),
    (json.dumps({"read_version": 0, "operations": [write("a", "1")], "request_id": 12}),
     "request_id"),
    (json.dumps({"read_version": 0, "operations": [write("a", "1")], "leader_id": 12}),
     "leader_id"),
]


def test_bad_input_names_the_field(spindle_server):
    srv, api = start(spindle_server, "--http-max-body-size", "4096")
    for raw, field in BAD_BODIES:
        status, body, _ = api.call("POST", "/v1/commit", raw=raw)
        assert status == 400, (raw, body)
        assert body["field"] == field, (raw, body)
    for path, field in [("/v1/read", "key"), ("/v1/read?key=YQ", "key"),
                        ("/v1/read?key=%zz", "key"), ("/v1/range?begin=*", "begin"),
                        ("/v1/range?end=YQ", "end"), ("/v1/range?limit=0", "limit"),
                        ("/v1/range?limit=x", "limit"), ("/v1/range?limit=10001", "limit")]:
        status, body, _ = api.call("GET", path)
        assert status == 400 and body["field"] == field, (path, body)
    status, body, _ = api.call("GET", "/v1/nothing")
    assert status == 404 and body["status"] == "not_found"
    status, body, resp = api.call("GET", "/v1/commit")
    assert status == 405 and resp.getheader("Allow") == "POST"
    status, body, resp = api.call("POST", "/v1/version", raw="")
    assert status == 405 and resp.getheader("Allow") == "GET"
    status, body, _ = api.call("GET", "/v1/subscribe")
    assert status == 501
    status, body, _ = api.call("GET", "/v1/status/x?min_version=no")
    assert status == 400 and body["field"] == "min_version"
    # The connection survived every 4xx above; nothing was committed.
    assert api.version() == 0
    big = json.dumps({"read_version": 0, "operations": [write("a", "x" * 5000)]})
    status, body, resp = api.call("POST", "/v1/commit", raw=big)
    assert status == 413 and resp.getheader("Connection") == "close"
    assert srv.is_running()


def raw_exchange(port, data, expect_responses=1, timeout=10):
    """Sends bytes, reads until `expect_responses` complete responses or the server closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    got = b""
    responses = []
    while len(responses) < expect_responses:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
        while True:
            head_end = got.find(b"\r\n\r\n")
            if head_end < 0:
                break
            head = got[:head_end].decode()
            m = re.search(r"Content-Length: (\d+)", head)
            length = int(m.group(1)) if m else 0
            if len(got) < head_end + 4 + length:
                break
            body = got[head_end + 4:head_end + 4 + length]
            responses.append((int(head.split()[1]), head, body))
            got = got[head_end + 4 + length:]
    s.close()
    return responses


def test_pipelined_requests_are_answered_in_order(spindle_server):
    srv, api = start(spindle_server)
    port = api.port
    commit = json.dumps({"read_version": 0, "operations": [write("p", "1")]}).encode()
    req = (b"POST /v1/commit HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(commit), commit)
           + f"GET /v1/read?key={b64('p').replace('=', '%3D')} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
           + b"GET /v1/nope HTTP/1.1\r\n\r\n"
           + b"GET /v1/version HTTP/1.1\r\nConnection: close\r\n\r\n")
    responses = raw_exchange(port, req, expect_responses=4)
    assert [r[0] for r in responses] == [200, 200, 404, 200]
    assert json.loads(responses[0][2])["version"] == 1
    assert unb64(json.loads(responses[1][2])["value"]) == b"1"
    assert json.loads(responses[3][2])["version"] == 1
    assert "Connection: close" in responses[3][1]


def test_malformed_heads(spindle_server):
    srv, api = start(spindle_server)
    port = api.port
    cases = [
        (b"POST /v1/commit HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
        (b"POST /v1/commit HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400),
        (b"GET /v1/version HTTP/1.1\r\n" + b"X-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
        (b"GET /v1/version HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(40)) + b"\r\n", 431),
        (b"\x00\x01garbage\r\n\r\n", 400),
    ]
    for data, status in cases:
        responses = raw_exchange(port, data)
        assert [r[0] for r in responses] == [status], (data[:40], responses)
    # Expect: 100-continue gets its go-ahead before the body is sent.
    body = json.dumps({"read_version": 0, "operations": [write("e", "1")]}).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST /v1/commit HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
    assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    s.sendall(body)
    s.settimeout(10)
    reply = b""
    while b"committed" not in reply:
        chunk = s.recv(4096)
        assert chunk, reply
        reply += chunk
    s.close()
    assert srv.is_running() and api.version() == 1


def test_idle_and_slow_clients_time_out(spindle_server):
    srv, api = start(spindle_server, "--http-idle-timeout", "0.3")
    idle = socket.create_connection(("127.0.0.1", api.port), timeout=20)
    assert idle.recv(100) == b""  # closed by the server, never answered
    slow = socket.create_connection(("127.0.0.1", api.port), timeout=20)
    slow.sendall(b"POST /v1/commit HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
    got = b""
    while True:
        chunk = slow.recv(4096)
        if not chunk:
            break
        got += chunk
    assert got.startswith(b"HTTP/1.1 408 "), got
    fresh = Api(api.port)
    assert fresh.version() == 0
    status, body = fresh.commit([write("a", "1")])
    assert status == 200


def test_concurrent_counter(spindle_server):
    srv, api = start(spindle_server)
    api.commit([write("counter", "0")], read_version=0)
    workers, increments = 8, 40
    conflicts = [0] * workers
    errors = []

    def worker(n):
        client = Api(api.port)
        try:
            done = 0
            while done < increments:
                value, version = client.read("counter")
                status, body = client.commit([write("counter", str(int(value) + 1))],
                                             read_version=version,
                                             preconditions=[point("counter")])
                if status == 200:
                    done += 1
                elif status == 409:
                    conflicts[n] += 1
                else:
                    errors.append((status, body))
                    return
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    value, version = api.read("counter")
    assert int(value) == workers * increments
    # Every commit took one version: the first write plus every increment, no gaps.
    assert version == 1 + workers * increments
    families = {f.name: f for f in text_string_to_metric_families(api.call("GET", "/metrics")[1])}
    conflicts_seen = families["spindle_kv_conflicts"].samples[0].value
    assert conflicts_seen == sum(conflicts)


def admin(srv):
    return tarantool.connect(srv.host, srv.port, user="admin", password=srv.password)


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_versions_survive_restart(spindle_server, how):
    srv, api = start(spindle_server)
    for i in range(5):
        status, body = api.commit([write(f"k{i}", str(i))], request_id=f"restart-request-{i:08d}")
        assert status == 200
    api.close()
    if how == "sigterm":
        srv.restart()
    else:
        srv.kill()
        srv.start()
    api = Api(http_port(srv))
    assert api.version() == 5
    assert api.read("k4") == (b"4", 5)
    status, body = api.commit([write("k5", "5")])
    assert (status, body["version"]) == (200, 6)
    status, body = api.commit([write("k0", "x")], request_id="restart-request-00000002")
    assert status == 422 and body["version"] == 3
    status, body, _ = api.call("GET", "/v1/status/restart-request-00000003")
    assert (status, body["status"], body["version"]) == (200, "committed", 4)
    # The commit records are ordinary rows: gapless versions with their request ids.
    c = admin(srv)
    rows = c.select("_kv_commit")
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r[1] for r in rows[:5]] == [f"restart-request-{i:08d}" for i in range(5)]
    assert len({r[2] for r in rows}) == 2  # one leader id per run
    assert c.select("_kv", [b"k4"])[0][1] == b"4"


def test_plain_dml_on_the_keyspace_is_refused(spindle_server):
    srv, api = start(spindle_server)
    api.commit([write("a", "1")])
    c = admin(srv)
    for op in (lambda: c.replace("_kv", [b"b", b"2"]),
               lambda: c.delete("_kv", [b"a"]),
               lambda: c.insert("_kv_commit", [99, "x", "y", 0.0]),
               lambda: c.eval("box.space._kv:replace{'c', 'd'}")):
        with pytest.raises(tarantool.error.DatabaseError) as e:
            op()
        assert e.value.args[0] == 5, e.value.args  # ER_UNSUPPORTED
    assert c.select("_kv")[0][0] == b"a"
    assert api.version() == 1


def test_metrics_parse(spindle_server):
    srv, api = start(spindle_server)
    api.commit([write("a", "1")])
    api.commit([write("a", "2")], read_version=0, preconditions=[point("a")])
    api.call("GET", "/nope")
    status, text, resp = api.call("GET", "/metrics")
    assert status == 200 and resp.getheader("Content-Type").startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    value = lambda name: families[name].samples[0].value  # noqa: E731
    assert families["tnt_info_uptime"].type == "gauge"
    assert value("spindle_kv_commits") == 1
    assert value("spindle_kv_conflicts") == 1
    assert value("spindle_kv_durable_version") == 1
    assert value("spindle_http_bad_requests") >= 1
    assert value("spindle_http_tx_requests") == 2  # /v1/version and /metrics never reach TX
    assert families["spindle_kv_commits"].type == "counter"
    # The WAL's counters: the keyspace's DDL (6 rows) and the commit (2 rows) are in the log.
    assert value("tnt_info_lsn") >= 8
    assert value("spindle_wal_txns") >= 2
    assert value("spindle_wal_rows") >= value("spindle_wal_txns") + 6
    assert value("spindle_wal_writes") <= value("spindle_wal_txns")


def test_kill9_under_load_keeps_every_acknowledged_commit(spindle_server):
    srv, api = start(spindle_server)
    acked = {}
    lock = threading.Lock()
    stop = threading.Event()

    def writer(n):
        client = Api(api.port)
        i = 0
        try:
            while not stop.is_set():
                rid = f"load-{n}-{i:08d}"
                status, body = client.commit([write(f"w{n}-{i}", rid)], read_version=0,
                                             request_id=rid)
                if status == 200:
                    with lock:
                        acked[body["version"]] = rid
                i += 1
        except (OSError, http.client.HTTPException):
            pass  # the server died under us

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acked) < 300 and time.monotonic() < deadline:
        time.sleep(0.01)
    srv.kill()
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert len(acked) >= 300
    srv.start()
    c = admin(srv)
    rows = {r[0]: r[1] for r in c.select("_kv_commit", limit=2**31 - 1)}
    assert sorted(rows) == list(range(1, len(rows) + 1))  # gapless
    for version, rid in acked.items():
        assert rows.get(version) == rid, (version, rid)
        n, i = rid.split("-")[1:]
        assert c.select("_kv", [f"w{n}-{int(i)}".encode()])[0][1] == rid.encode()
    api = Api(http_port(srv))
    assert api.version() == len(rows)


def test_replica_sees_the_versions(spindle_server):
    master, api = start(spindle_server)
    for i in range(3):
        api.commit([write(f"r{i}", str(i))])
    replica = spindle_server(extra_args=[
        "--replication", f"admin:{master.password}@{master.host}:{master.port}", "--read-only",
        "--http-listen", "127.0.0.1:0"])
    rapi = Api(http_port(replica))
    api.commit([write("late", "x")])
    deadline = time.monotonic() + 30
    while rapi.read("late")[0] is None:
        assert time.monotonic() < deadline, "the replica never got the commit"
        time.sleep(0.05)
    assert rapi.read("late") == (b"x", 4)
    deadline = time.monotonic() + 30
    while rapi.version() != 4:
        assert time.monotonic() < deadline, "the replica's durable version never moved"
        time.sleep(0.05)
    rows = [list(r) for r in admin(replica).select("_kv_commit", limit=100)]
    assert [r[0] for r in rows] == [1, 2, 3, 4]
    assert rows == [list(r) for r in admin(master).select("_kv_commit", limit=100)]
    status, body = rapi.commit([write("nope", "1")], read_version=4)
    assert status == 503 and body["status"] == "unavailable", body


def test_box_cfg_http_listen_in_an_init_script(tmp_path):
    import subprocess
    from harness import servers
    port = servers.free_port()
    script = tmp_path / "app.lua"
    script.write_text(
        f"box.cfg{{listen = {port}, http_listen = '127.0.0.1:0', work_dir = '{tmp_path}'}}\n"
        "box.schema.user.passwd('admin', 'secret')\n")
    log = open(tmp_path / "log", "wb")
    proc = subprocess.Popen([servers.spindle_bin(), str(script)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        found = []
        while not found:
            assert time.monotonic() < deadline and proc.poll() is None, \
                (tmp_path / "log").read_text()
            time.sleep(0.05)
            found = re.findall(r"HTTP API listening on 127\.0\.0\.1:(\d+)",
                               (tmp_path / "log").read_text())
        api = Api(int(found[0]))
        status, body = api.commit([write("a", "1")], read_version=0)
        assert (status, body["version"]) == (200, 1)
        c = tarantool.connect("127.0.0.1", port, user="admin", password="secret")
        assert c.eval("return box.cfg.http_listen")[0] == "127.0.0.1:0"
        assert c.select("_kv")[0][0] == b"a"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def test_config_file_key(spindle_server, tmp_path):
    config = tmp_path / "spindle.toml"
    config.write_text('http_listen = "127.0.0.1:0"\nhttp_conflict_window = 2\n')
    srv = spindle_server(extra_args=["--config", str(config)])
    api = Api(http_port(srv))
    for i in range(4):
        assert api.commit([write("k", str(i))])[0] == 200
    status, body = api.commit([write("k", "x")], read_version=1, preconditions=[point("k")])
    assert status == 410 and body["oldest_version"] == 2


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_clients_that_never_read_are_bounded(spindle_server):
    srv, api = start(spindle_server)
    assert api.version() == 0
    before = rss_kib(srv.pid)
    request = b"GET /v1/version HTTP/1.1\r\nHost: x\r\n\r\n" * 2000
    hogs, sent = [], 0
    for _ in range(50):
        s = socket.create_connection(("127.0.0.1", api.port), timeout=10)
        s.setblocking(False)
        for _ in range(60):  # as much as the kernel takes once the server stops reading
            try:
                sent += s.send(request)
            except BlockingIOError:
                break
        hogs.append(s)
    # Unbounded, the answers to what was sent would take ~3x its size in the server.
    assert sent > 50 * 2 * 1024 * 1024, sent
    # A well-behaved client is still served, on a new connection and an old one.
    fresh = Api(api.port)
    status, body = fresh.commit([write("a", "1")])
    assert status == 200
    assert api.version() == 1
    # Each hog holds at most a read chunk and a little over 1 MiB of unsent answers.
    grown = rss_kib(srv.pid) - before
    assert grown < 50 * (1024 + 128) + 16 * 1024, (grown, sent)
    for s in hogs:
        s.close()
    assert fresh.read("a") == (b"1", 1)


def test_status_bans_and_answers_definitively(spindle_server):
    srv, api = start(spindle_server)
    status, body = api.commit([write("a", "1")], request_id="status-committed-000001")
    assert status == 200
    status, body, _ = api.call("GET", "/v1/status/status-committed-000001?min_version=0")
    assert status == 200, body
    assert body == {"status": "committed", "version": 1, "leader_id": body["leader_id"],
                    "request_id": "status-committed-000001"}
    status, body, _ = api.call("GET", "/v1/status/never%20sent")
    assert (status, body["status"], body["request_id"]) == (200, "not_committed", "never sent")
    # Banned now: it can never commit, and says so; asking again gives the same answer.
    status, body = api.commit([write("b", "1")], request_id="never sent")
    assert status == 422 and body["status"] == "request_id_banned", body
    status, body, _ = api.call("GET", "/v1/status/never%20sent")
    assert body["status"] == "not_committed"
    assert api.read("b") == (None, 1)
    families = {f.name: f for f in text_string_to_metric_families(api.call("GET", "/metrics")[1])}
    assert families["spindle_kv_bans"].samples[0].value == 2


def test_status_racing_a_commit_has_one_winner(spindle_server):
    srv, api = start(spindle_server)
    rounds = 60
    outcomes = []

    def commit_side(rid, out):
        c = Api(api.port)
        out["commit"] = c.commit([write(rid, "1")], read_version=0, request_id=rid)
        c.close()

    def status_side(rid, out):
        c = Api(api.port)
        status, body, _ = c.call("GET", f"/v1/status/{rid}")
        out["status"] = (status, body)
        c.close()

    for i in range(rounds):
        rid = f"race-{i:04d}-0000000000000"
        out = {}
        threads = [threading.Thread(target=commit_side, args=(rid, out)),
                   threading.Thread(target=status_side, args=(rid, out))]
        if i % 2:
            threads.reverse()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        (cs, cb), (ss, sb) = out["commit"], out["status"]
        assert ss == 200, sb
        if sb["status"] == "committed":
            assert cs == 200 and cb["version"] == sb["version"], (cb, sb)
        else:
            assert sb["status"] == "not_committed", sb
            assert cs == 422 and cb["status"] == "request_id_banned", (cb, sb)
        outcomes.append(sb["status"])
    # Whoever won, the log agrees: committed ids have a record, banned ones none.
    rows = {r[1] for r in admin(srv).select("_kv_commit", limit=1000)}
    for i, outcome in enumerate(outcomes):
        rid = f"race-{i:04d}-0000000000000"
        assert (rid in rows) == (outcome == "committed"), (rid, outcome)
