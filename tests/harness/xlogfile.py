"""Read and damage Tarantool 2.6 `.xlog`/`.snap` files at the block level (spec §2).

Used by the crash, snapshot and recovery-error tests to find block boundaries (so a test can cut
a file inside its last block or flip a byte inside one block's payload), to read the rows of
plain (uncompressed) blocks, and to list a data dir's files in signature order.

Layout: a text header ending with an empty line, then blocks of a 19-byte fixed header
(magic d5 ba 0b ab plain / d5 ba 0b ba zstd, MP uint LEN, MP uint CRC32P, MP uint CRC32C,
a fixstr padding up to 19 bytes) followed by LEN payload bytes, then the EOF marker d5 10 ad ed
when the file was closed normally.
"""

import glob
import os
import re

import msgpack

MAGIC_PLAIN = b"\xd5\xba\x0b\xab"
MAGIC_ZSTD = b"\xd5\xba\x0b\xba"
EOF_MARKER = b"\xd5\x10\xad\xed"
FIXHEADER_LEN = 19

# header keys of an xrow
H_TYPE, H_REPLICA_ID, H_LSN, H_TIMESTAMP = 0x00, 0x02, 0x03, 0x04
# body keys
B_SPACE_ID, B_KEY, B_TUPLE = 0x10, 0x20, 0x21


def _crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def crc32c_tarantool(data: bytes) -> int:
    """Tarantool's block checksum: CRC32C (Castagnoli, reflected), initial 0, no final XOR."""
    crc = 0
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


class XlogFormatError(Exception):
    pass


def _read_uint(buf, pos):
    b = buf[pos]
    if b <= 0x7F:
        return b, pos + 1
    widths = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
    if b not in widths:
        raise XlogFormatError(f"fixed header: expected a MessagePack uint at {pos}, got 0x{b:02x}")
    n = widths[b]
    return int.from_bytes(buf[pos + 1:pos + 1 + n], "big"), pos + 1 + n


class Block:
    def __init__(self, offset, payload_offset, payload_len, compressed, crc):
        self.offset = offset                  # file offset of the magic
        self.payload_offset = payload_offset  # file offset of the first payload byte
        self.payload_len = payload_len
        self.compressed = compressed
        self.crc = crc
        self.rows = None                      # [(header, body)] for plain blocks

    @property
    def end(self):
        return self.payload_offset + self.payload_len

    def __repr__(self):
        kind = "zstd" if self.compressed else "plain"
        n = "?" if self.rows is None else len(self.rows)
        return f"<block @{self.offset} {kind} len={self.payload_len} rows={n}>"


class XlogFile:
    """A parsed file. `blocks` are the complete blocks; after them the file has either the EOF
    marker at `eof_offset` (and possibly `data_after_eof` bytes), an incomplete block starting at
    `torn_offset`, bytes that are no block at `garbage_offset`, or nothing."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.data = f.read()
        self.size = len(self.data)
        end = self.data.find(b"\n\n")
        if end < 0:
            raise XlogFormatError(f"{path}: no end of the text header")
        self.header_end = end + 2
        lines = self.data[:end].decode(errors="replace").split("\n")
        self.filetype = lines[0]
        self.version = lines[1] if len(lines) > 1 else ""
        self.meta = {}
        for ln in lines[2:]:
            if ":" in ln:
                k, v = ln.split(":", 1)
                self.meta[k.strip()] = v.strip()
        self.blocks = []
        self.eof_offset = None
        self.data_after_eof = 0
        self.torn_offset = None
        self.garbage_offset = None
        self._parse_blocks()

    def _parse_blocks(self):
        d, pos = self.data, self.header_end
        while pos < self.size:
            head = d[pos:pos + 4]
            if head == EOF_MARKER:
                self.eof_offset = pos
                self.data_after_eof = self.size - pos - 4
                return
            if head in (MAGIC_PLAIN, MAGIC_ZSTD):
                if pos + FIXHEADER_LEN > self.size:
                    self.torn_offset = pos
                    return
                length, p = _read_uint(d, pos + 4)
                _crc_prev, p = _read_uint(d, p)
                crc, p = _read_uint(d, p)
                payload_offset = pos + FIXHEADER_LEN
                if payload_offset + length > self.size:
                    self.torn_offset = pos
                    return
                blk = Block(pos, payload_offset, length, head == MAGIC_ZSTD, crc)
                if not blk.compressed:
                    blk.rows = _decode_rows(d[payload_offset:payload_offset + length])
                self.blocks.append(blk)
                pos = blk.end
                continue
            if len(head) < 4 and (MAGIC_PLAIN.startswith(head) or EOF_MARKER.startswith(head)):
                self.torn_offset = pos
                return
            self.garbage_offset = pos
            return

    # -- convenience ---------------------------------------------------------------------
    @property
    def signature(self):
        return signature_of(self.path)

    @property
    def closed(self):
        """Ends exactly with the EOF marker."""
        return self.eof_offset is not None and self.data_after_eof == 0

    def rows(self):
        """(header, body) of every row of every plain block; None if any block is compressed."""
        out = []
        for b in self.blocks:
            if b.rows is None:
                return None
            out.extend(b.rows)
        return out

    def payload(self, block):
        return self.data[block.payload_offset:block.end]

    def crc_ok(self, block):
        return crc32c_tarantool(self.payload(block)) == block.crc

    def describe(self):
        tail = ("EOF marker" if self.closed else
                f"EOF marker + {self.data_after_eof} bytes" if self.eof_offset is not None else
                f"torn block at {self.torn_offset}" if self.torn_offset is not None else
                f"garbage at {self.garbage_offset}" if self.garbage_offset is not None else "no EOF marker")
        return (f"{os.path.basename(self.path)}: {self.size} bytes, header {self.header_end}, "
                f"{len(self.blocks)} blocks, ends with {tail}")


def _decode_rows(payload):
    u = msgpack.Unpacker(raw=False, strict_map_key=False, unicode_errors="surrogateescape")
    u.feed(payload)
    objs = list(u)
    rows, i = [], 0
    while i < len(objs):
        header = objs[i]
        body = None
        # A DML row is a header map followed by a body map; a body never carries lsn/timestamp.
        if (i + 1 < len(objs) and isinstance(objs[i + 1], dict)
                and H_LSN not in objs[i + 1] and H_TIMESTAMP not in objs[i + 1]):
            body = objs[i + 1]
            i += 1
        rows.append((header, body))
        i += 1
    return rows


def parse(path) -> XlogFile:
    return XlogFile(path)


_NAME_RE = re.compile(r"^(\d+)\.(xlog|snap)$")


def signature_of(path):
    m = _NAME_RE.match(os.path.basename(path))
    if not m:
        raise ValueError(f"not a data file name: {path}")
    return int(m.group(1))


def files(data_dir, ext):
    """`*.xlog` or `*.snap` of a dir in signature order (ext without the dot)."""
    found = [p for p in glob.glob(os.path.join(data_dir, f"*.{ext}")) if _NAME_RE.match(os.path.basename(p))]
    return sorted(found, key=signature_of)


def inprogress_files(data_dir):
    return sorted(glob.glob(os.path.join(data_dir, "*.inprogress")))


def listing(data_dir):
    """`name size` of every file in the dir, for failure messages."""
    out = []
    for name in sorted(os.listdir(data_dir)):
        try:
            out.append(f"{name} {os.path.getsize(os.path.join(data_dir, name))}")
        except OSError:
            out.append(f"{name} ?")
    return ", ".join(out)


def keys_written(xf, space_id):
    """Primary keys (field 0) of INSERT/REPLACE rows for `space_id` in the plain blocks of `xf`,
    as a list of (block index, key)."""
    out = []
    for bi, b in enumerate(xf.blocks):
        for header, body in b.rows or []:
            if isinstance(body, dict) and body.get(B_SPACE_ID) == space_id and header.get(H_TYPE) in (2, 3):
                t = body.get(B_TUPLE)
                if isinstance(t, list) and t:
                    out.append((bi, t[0]))
    return out


# -- damage ----------------------------------------------------------------------------
def truncate(path, new_size):
    with open(path, "r+b") as f:
        f.truncate(new_size)


def flip_byte(path, offset, xor=0x01):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        assert len(b) == 1, f"{path}: no byte at offset {offset}"
        f.seek(offset)
        f.write(bytes([b[0] ^ xor]))


def append(path, data: bytes):
    with open(path, "ab") as f:
        f.write(data)
