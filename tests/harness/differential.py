"""Machinery of the differential suite: operations, execution, normalisation, comparison.

An operation (`Op`) runs against one server through an `Executor`, which holds the
connections (tarantool-python as admin and as guest, plus fresh raw sockets per raw op) and
returns a *normalised* result: plain Python data whose `repr` is compared between the reference
(real Tarantool 2.6) and the server under test.  Normalisation removes only what legitimately
differs between two correct servers:

* absolute schema versions (we record whether the version *changed* during the op instead;
  the current version inside the ER_WRONG_SCHEMA_VERSION message becomes `<current>`);
* `file` and `line` of entries in the extended error stack (IPROTO_ERROR 0x52);
* map key order (maps are compared as maps);
* iteration order of HASH indexes, where the op says so (`norm=unordered` or a property check).
"""

import difflib
import pprint
import re
import socket

import tarantool
import tarantool.error

from . import iproto as ip

REPLY_TIMEOUT = 5.0


# -- canonical form -------------------------------------------------------------------------
class Map:
    """A msgpack map compared independently of key order, printed in a stable order."""

    def __init__(self, d):
        self.items = sorted(((canon(k), canon(v)) for k, v in d.items()), key=lambda kv: repr(kv[0]))

    def __eq__(self, other):
        return isinstance(other, Map) and repr(self) == repr(other)

    def __repr__(self):
        return "{" + ", ".join(f"{k!r}: {v!r}" for k, v in self.items) + "}"


def canon(x):
    """Canonical, type-exact form: 1, 1.0, True, '1' and b'1' all print differently."""
    if isinstance(x, dict):
        return Map(x)
    if isinstance(x, (list, tuple)):
        return [canon(v) for v in x]
    return x


def unordered(data):
    """For HASH scans: compare the multiset of tuples, not their order."""
    if not isinstance(data, list):
        return data
    return sorted((canon(t) for t in data), key=repr)


# -- operations -----------------------------------------------------------------------------
class Op:
    def __init__(self, group, desc, kind, spec, norm=None, replies=1):
        self.replies = replies
        self.group = group
        self.desc = desc
        self.kind = kind      # 'py', 'raw', 'composite'
        self.spec = spec
        self.norm = norm
        self.index = None

    def describe(self):
        if self.kind == "py":
            who, method, args, kwargs = self.spec
            a = ", ".join([repr(x) for x in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
            return f"[{who}] conn.{method}({a})"
        if self.kind == "raw":
            who, data, framed = self.spec
            if isinstance(data, tuple):
                header, body = data
                return f"[{who} raw] header={header!r} body={body!r}"
            return f"[{who} raw bytes{'' if framed else ', unframed'}] {data.hex(' ')}"
        return f"[composite] {self.desc}"

    def __repr__(self):
        return f"#{self.index} {self.group}: {self.desc} -- {self.describe()}"


class OpList:
    """Builder used by diff_ops.py."""

    def __init__(self):
        self.ops = []
        self.group = None

    def set_group(self, name):
        self.group = name

    def _add(self, op):
        op.index = len(self.ops)
        self.ops.append(op)
        return op

    def py(self, desc, method, *args, who="admin", norm=None, **kwargs):
        """A call through tarantool-python 1.3.0: conn.<method>(*args, **kwargs)."""
        return self._add(Op(self.group, desc, "py", (who, method, args, kwargs), norm))

    def raw(self, desc, header, body=None, who="admin"):
        """A request built from a header map and a body (map, or raw bytes)."""
        return self._add(Op(self.group, desc, "raw", (who, (header, body), True)))

    def raw_bytes(self, desc, data, framed=True, who="admin", replies=1):
        """Exact bytes: `framed` adds the 0xce+u32 length prefix, otherwise sent as given.
        `replies` responses are read (pipelined requests); order-insensitive by SYNC."""
        return self._add(Op(self.group, desc, "raw", (who, data, framed), replies=replies))

    def composite(self, desc, fn):
        """fn(executor) -> normalised result (plain data)."""
        return self._add(Op(self.group, desc, "composite", fn))

    def groups(self):
        seen = []
        for op in self.ops:
            if op.group not in seen:
                seen.append(op.group)
        return seen


# -- execution ------------------------------------------------------------------------------
def error_result(e):
    info = getattr(e, "extra_info", None)
    out = {"error": {"code": getattr(e, "code", None), "message": getattr(e, "message", str(e))}}
    if info is not None:
        out["error"]["stack"] = {"type": info.type, "errcode": info.errcode, "errno": info.errno,
                                 "message": info.message, "fields": canon(info.fields)}
    return out


def normalise_raw_reply(header, body, current_sv):
    h = dict(header) if isinstance(header, dict) else {"<not a map>": header}
    hn = {}
    for k, v in h.items():
        if k == ip.K_SCHEMA_VERSION:
            hn["schema_version"] = "<present, > 0>" if isinstance(v, int) and v > 0 else f"<bad: {v!r}>"
        elif k == ip.K_TYPE:
            hn["type"] = f"0x{v:x}" if isinstance(v, int) else v
        elif k == ip.K_SYNC:
            hn["sync"] = v
        else:
            hn[k] = v
    bn = body
    if isinstance(body, dict):
        bn = dict(body)
        msg = bn.get(ip.K_ERROR_24)
        code = h.get(ip.K_TYPE, 0) & 0x7FFF if isinstance(h.get(ip.K_TYPE), int) else None
        if code == 109 and isinstance(msg, str) and current_sv is not None:
            bn[ip.K_ERROR_24] = _mask_schema_version(msg, current_sv)
        stack = bn.get(ip.K_ERROR)
        if isinstance(stack, dict) and isinstance(stack.get(0), list):
            entries = []
            for e in stack[0]:
                if isinstance(e, dict):
                    e = {k: v for k, v in e.items() if k not in (1, 2)}  # file, line
                    if code == 109 and isinstance(e.get(3), str) and current_sv is not None:
                        e[3] = _mask_schema_version(e[3], current_sv)
                entries.append(e)
            bn[ip.K_ERROR] = {**stack, 0: entries}
    return {"header": canon(hn), "body": canon(bn)}


def _mask_schema_version(msg, sv):
    # Tarantool 2.6 prints "current: <request value>, in request: <current>" (swapped args).
    return re.sub(rf"\b{sv}\b", "<current>", msg)


class Executor:
    def __init__(self, server):
        self.server = server
        self.conns = {}
        self.monitor = None
        self.dead_reason = None

    # connections -------------------------------------------------------------------------
    def py_conn(self, who):
        c = self.conns.get(who)
        if c is None:
            kw = dict(socket_timeout=REPLY_TIMEOUT, connection_timeout=REPLY_TIMEOUT,
                      reconnect_max_attempts=1, reconnect_delay=0.1)
            if who == "admin":
                c = tarantool.Connection(self.server.host, self.server.port, user="admin",
                                         password=self.server.password, **kw)
            elif who == "guest":
                c = tarantool.Connection(self.server.host, self.server.port, **kw)
            else:
                raise ValueError(who)
            self.conns[who] = c
        return c

    def drop_conn(self, who):
        c = self.conns.pop(who, None)
        if c is not None:
            try:
                c.close()
            except Exception:
                pass

    def raw_conn(self, who):
        c = ip.RawConn(self.server.host, self.server.port, timeout=REPLY_TIMEOUT)
        if who == "admin":
            c.auth("admin", self.server.password)
        return c

    def schema_version(self):
        """Current schema version as seen on a PING by a dedicated admin connection."""
        for _ in range(2):
            try:
                if self.monitor is None:
                    self.monitor = self.raw_conn("admin")
                h, _ = self.monitor.ping()
                return h.get(ip.K_SCHEMA_VERSION)
            except Exception:
                if self.monitor is not None:
                    self.monitor.close()
                self.monitor = None
        return None

    def close(self):
        for who in list(self.conns):
            self.drop_conn(who)
        if self.monitor is not None:
            self.monitor.close()

    # ops ---------------------------------------------------------------------------------
    def run(self, op):
        if self.dead_reason is None and not self.server.is_running():
            self.dead_reason = f"{self.server.kind} process is not running (exit code {self.server.proc.returncode})"
        if self.dead_reason is not None:
            return {"result": {"server_dead": self.dead_reason}}
        before = self.schema_version()
        try:
            if op.kind == "py":
                res = self._run_py(op)
            elif op.kind == "raw":
                res = self._run_raw(op)
            else:
                res = op.spec(self)
        except Exception as e:  # a harness-level failure is a result too; it is compared
            res = {"exception": f"{type(e).__name__}: {e}"}
        after = self.schema_version()
        out = {"result": res}
        if before is None or after is None:
            out["schema_version"] = f"<unavailable: before={before!r} after={after!r}>"
        else:
            out["schema_changed"] = after != before
        return out

    def _run_py(self, op):
        who, method, args, kwargs = op.spec
        try:
            conn = self.py_conn(who)
            resp = getattr(conn, method)(*args, **kwargs)
        except tarantool.error.NetworkError as e:
            self.drop_conn(who)
            return {"client_exception": f"NetworkError: {e}"}
        except tarantool.error.DatabaseError as e:
            return error_result(e)
        data = resp.data if hasattr(resp, "data") else resp
        if op.norm is not None:
            data = op.norm(data)
        return {"ok": canon(data)}

    def _run_raw(self, op):
        who, data, framed = op.spec
        conn = self.raw_conn(who)
        try:
            if isinstance(data, tuple):
                header, body = data
                payload = ip.pack(header)
                if body is not None:
                    payload += body if isinstance(body, (bytes, bytearray)) else ip.pack(body)
                wire = ip.frame(payload)
            else:
                wire = ip.frame(data) if framed else data
            conn.send_bytes(wire)
            replies = []
            try:
                for _ in range(op.replies):
                    h, b, _ = conn.read_packet()
                    sv = h.get(ip.K_SCHEMA_VERSION) if isinstance(h, dict) else None
                    replies.append(normalise_raw_reply(h, b, sv))
            except ip.ConnectionClosed:
                return {"replies_before_close": replies, "closed_without_reply": True}
            except socket.timeout:
                return {"replies_before_timeout": replies, "no_reply_within_s": REPLY_TIMEOUT}
            # Pipelined replies may legally come in any order: compare them sorted by SYNC.
            reply = replies[0] if op.replies == 1 else sorted(replies, key=repr)
            # Is the connection still usable?  A PING on the same socket answers that.
            try:
                ph, _ = conn.ping()
                open_after = "open (PING answered)" if ph.get(ip.K_TYPE) == 0 else f"open, PING failed: {ph}"
            except ip.ConnectionClosed:
                open_after = "closed"
            except socket.timeout:
                open_after = "open but PING not answered"
            return {"reply": reply, "connection_after": open_after}
        finally:
            conn.close()


def run_all(server, ops):
    ex = Executor(server)
    try:
        return [ex.run(op) for op in ops]
    finally:
        ex.close()


# -- comparison -----------------------------------------------------------------------------
def render(x):
    return pprint.pformat(x, width=100, sort_dicts=False)


def compare(ops, ref_results, sut_results, ref_name="tarantool", sut_name="spindle"):
    """Returns a list of (op, ref, sut) that differ."""
    bad = []
    for op, r, s in zip(ops, ref_results, sut_results):
        if repr(r) != repr(s):
            bad.append((op, r, s))
    return bad


def format_mismatch(op, ref, sut, ref_name, sut_name):
    a = render(ref).splitlines()
    b = render(sut).splitlines()
    diff = "\n".join(difflib.unified_diff(a, b, fromfile=ref_name, tofile=sut_name, lineterm=""))
    return (f"--- op #{op.index} [{op.group}] {op.desc}\n    {op.describe()}\n"
            f"  {ref_name}:\n{_indent(render(ref))}\n  {sut_name}:\n{_indent(render(sut))}\n"
            f"  diff:\n{_indent(diff)}")


def _indent(s, n=6):
    return "\n".join(" " * n + line for line in s.splitlines())
