"""A minimal raw IPROTO client: exact bytes out, decoded header/body in.

Used where the Python connectors cannot express a request (malformed packets, INDEX_BASE,
wrong SCHEMA_VERSION, unknown request types) and to read response headers.
"""

import base64
import hashlib
import socket
import struct

import msgpack

# request / response types
OK = 0x00
SELECT, INSERT, REPLACE, UPDATE, DELETE, CALL_16, AUTH, EVAL, UPSERT, CALL = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
PING = 0x40
CHUNK = 0x80
TYPE_ERROR = 0x8000

# header keys
K_TYPE, K_SYNC, K_SCHEMA_VERSION = 0x00, 0x01, 0x05
# body keys
K_SPACE_ID, K_INDEX_ID, K_LIMIT, K_OFFSET, K_ITERATOR, K_INDEX_BASE = 0x10, 0x11, 0x12, 0x13, 0x14, 0x15
K_KEY, K_TUPLE, K_FUNCTION_NAME, K_USER_NAME, K_EXPR, K_OPS = 0x20, 0x21, 0x22, 0x23, 0x27, 0x28
K_DATA, K_ERROR_24, K_ERROR = 0x30, 0x31, 0x52

LIMIT_ALL = 0xFFFFFFFF


class ConnectionClosed(Exception):
    pass


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def frame(payload: bytes) -> bytes:
    """Length prefix the way Tarantool sends it: 0xce + u32."""
    return b"\xce" + struct.pack(">I", len(payload)) + payload


def packet(header: dict, body=None) -> bytes:
    payload = pack(header)
    if body is not None:
        payload += body if isinstance(body, (bytes, bytearray)) else pack(body)
    return frame(payload)


def scramble(salt20: bytes, password: str) -> bytes:
    hash1 = hashlib.sha1(password.encode()).digest()
    hash2 = hashlib.sha1(hash1).digest()
    t = hashlib.sha1(salt20 + hash2).digest()
    return bytes(a ^ b for a, b in zip(hash1, t))


def _unpacker():
    return msgpack.Unpacker(raw=False, strict_map_key=False, unicode_errors="surrogateescape",
                            max_buffer_size=64 * 1024 * 1024)


def unpack_all(data: bytes):
    u = _unpacker()
    u.feed(data)
    return list(u)


class Undecodable:
    """Stands for a response part the Python msgpack module cannot decode (too deep)."""

    def __init__(self, why):
        self.why = why

    def __repr__(self):
        return f"<undecodable: {self.why}>"

    def get(self, key, default=None):
        return default


class RawConn:
    def __init__(self, host, port, timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.greeting = self._recv_exact(128)
        line1 = self.greeting[:64].decode(errors="replace")
        parts = line1.split()
        self.version = parts[1] if len(parts) > 1 else ""
        self.instance_uuid = parts[3] if len(parts) > 3 else ""
        self.salt = base64.b64decode(self.greeting[64:].strip())
        self.next_sync = 1
        self.last_schema_version = None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- low level ------------------------------------------------------------------------
    def _recv_exact(self, n):
        while len(self.buf) < n:
            try:
                chunk = self.sock.recv(max(65536, n - len(self.buf)))
            except ConnectionResetError as e:
                raise ConnectionClosed(f"connection reset: {e}") from e
            if not chunk:
                raise ConnectionClosed(f"connection closed by peer (wanted {n} bytes, have {len(self.buf)})")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send_bytes(self, data: bytes):
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise ConnectionClosed(f"send failed: {e}") from e

    def read_packet(self):
        """Read one response; returns (header, body, raw_payload)."""
        first = self._recv_exact(1)
        b = first[0]
        if b <= 0x7F:
            size = b
        elif b == 0xCC:
            size = self._recv_exact(1)[0]
        elif b == 0xCD:
            size = struct.unpack(">H", self._recv_exact(2))[0]
        elif b == 0xCE:
            size = struct.unpack(">I", self._recv_exact(4))[0]
        elif b == 0xCF:
            size = struct.unpack(">Q", self._recv_exact(8))[0]
        else:
            raise AssertionError(f"response length prefix is not a msgpack uint: 0x{b:02x}")
        payload = self._recv_exact(size)
        u = _unpacker()
        u.feed(payload)
        objs = []
        try:
            for obj in u:
                objs.append(obj)
        except Exception as e:  # e.g. a tuple nested deeper than Python's msgpack allows
            objs.append(Undecodable(f"{type(e).__name__}: {e}"))
        header = objs[0] if objs else None
        body = objs[1] if len(objs) > 1 else None
        assert len(objs) <= 2, f"response has {len(objs)} top-level msgpack objects"
        if isinstance(header, dict) and K_SCHEMA_VERSION in header:
            self.last_schema_version = header[K_SCHEMA_VERSION]
        return header, body, payload

    def is_closed(self, wait=1.0):
        """True if the peer closed the connection (EOF) within `wait` seconds."""
        old = self.sock.gettimeout()
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
            if not data:
                return True
            self.buf += data
            return False
        except socket.timeout:
            return False
        except (ConnectionResetError, OSError):
            return True
        finally:
            self.sock.settimeout(old)

    # -- requests -------------------------------------------------------------------------
    def request(self, rtype, body=None, sync=None, header_extra=None):
        if sync is None:
            sync = self.next_sync
            self.next_sync += 1
        header = {K_TYPE: rtype, K_SYNC: sync}
        if header_extra:
            header.update(header_extra)
        self.send_bytes(packet(header, body))
        h, b, _ = self.read_packet()
        return h, b

    def call(self, rtype, body=None, **kw):
        """Like request() but raises IprotoError on an error reply; returns body[DATA] or body."""
        h, b = self.request(rtype, body, **kw)
        code = h.get(K_TYPE, 0)
        if code & TYPE_ERROR:
            raise IprotoError(code & 0x7FFF, (b or {}).get(K_ERROR_24, ""), h, b)
        if isinstance(b, dict) and K_DATA in b:
            return b[K_DATA]
        return b

    def ping(self):
        return self.request(PING)

    def auth(self, user, password):
        body = {K_USER_NAME: user, K_TUPLE: ["chap-sha1", scramble(self.salt[:20], password)]}
        return self.call(AUTH, body)

    def select(self, space, key=(), index=0, iterator=0, offset=0, limit=LIMIT_ALL):
        return self.call(SELECT, {K_SPACE_ID: space, K_INDEX_ID: index, K_ITERATOR: iterator,
                                  K_OFFSET: offset, K_LIMIT: limit, K_KEY: list(key)})


class IprotoError(Exception):
    def __init__(self, code, message, header=None, body=None):
        super().__init__(f"error {code}: {message}")
        self.code = code
        self.message = message
        self.header = header
        self.body = body


def connect(server, user=None, password=None, timeout=5.0):
    c = RawConn(server.host, server.port, timeout=timeout)
    if user is not None:
        c.auth(user, password if password is not None else "")
    return c
