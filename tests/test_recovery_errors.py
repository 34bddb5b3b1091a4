"""Recovery from damaged data files (spec §8.3): what starts, what refuses, what is recovered.

Each test writes rows one request at a time (so every row is its own WAL block), stops the
server with SIGTERM, damages a file at the block level (harness/xlogfile.py) and starts again:

(a) torn tail of the LAST xlog (EOF marker removed and the file cut inside its last block, or
    inside that block's fixed header, or inside the EOF marker): the server starts, spindle logs
    `torn tail`, every row before the cut is there and the cut row is not; the server then keeps
    writing, and a further restart recovers everything (the torn file must not turn into
    "damage in the middle" once newer rows exist);
(b) a byte flipped inside an early block's payload (CRC mismatch), or that block's magic
    destroyed, with many valid blocks after it: the server refuses to start (exit code != 0,
    spindle: stderr names the file and the offset); with force recovery it starts, says what it
    skipped, and the rows before and after the damaged block are there -- the damaged row never
    appears with a changed value;
(c) the newest `.snap` without its EOF marker: refuses (spindle: stderr names the file), also
    with force recovery (Tarantool panics in both cases);
(d) garbage after the EOF marker of a closed, non-last xlog: refuses naming the file; with force
    recovery it starts and the rows are there.

Every test runs against spindle and Tarantool 2.6 (TEST_SERVERS) with the same damage and the
same expected outcome, so start-vs-refuse is compared between the two; the log/stderr wording
checks are spindle's contract only.
"""

import os
import re
import signal

import pytest

from harness import iproto as ip
from harness import servers
from harness import xlogfile as xf
from harness.durability import (admin, create_space, log_mark, log_since, select_all,
                                server_kwargs, set_force_recovery, tail)
from harness.startup import attempt_start

SPACE = 540
N_ROWS = 60
DAMAGED_KEY = 20


def value_of(key, pad):
    return "row-%05d-" % key + "abcdefgh" * pad


def populate(srv, n=N_ROWS, pad=1, start=0):
    """Insert rows [key, value] one request at a time; returns {key: tuple}."""
    model = {}
    with admin(srv) as c:
        if start == 0:
            create_space(c, SPACE, "damaged")
        for k in range(start, start + n):
            t = [k, value_of(k, pad)]
            assert c.call(ip.INSERT, {ip.K_SPACE_ID: SPACE, ip.K_TUPLE: t}) == [t]
            model[k] = t
    return model


def stop_clean(srv):
    rc = srv.stop(signal.SIGTERM)
    assert rc == 0, f"{srv.kind} exited {rc} on SIGTERM\n{tail(srv.log_text())}"


def start_or_fail(srv, why):
    try:
        srv.start()
    except servers.ServerStartError as e:
        pytest.fail(f"{srv.kind} refused to start, but {why}:\n{e}", pytrace=False)


def rows_by_key(c):
    return {t[0]: t for t in select_all(c, SPACE)}


def xlogs_with_rows(data_dir):
    return [f for f in (xf.parse(p) for p in xf.files(data_dir, "xlog")) if f.blocks]


def block_of_key(data_dir, key):
    """(parsed xlog, block index) of the block that inserted `key` into SPACE."""
    for f in xlogs_with_rows(data_dir):
        for bi, k in xf.keys_written(f, SPACE):
            if k == key:
                return f, bi
    raise AssertionError(f"no plain xlog block inserts key {key} into space {SPACE}: "
                         f"{[f.describe() for f in xlogs_with_rows(data_dir)]}")


def assert_names_offset(text, path, offsets, what):
    name = os.path.basename(path)
    lines = [ln for ln in text.splitlines() if name in ln]
    assert lines, f"{what}: no line names the file {name}:\n{tail(text)}"
    numbers = {int(n) for ln in lines for n in re.findall(r"\d+", ln.replace(name, ""))}
    assert numbers & set(offsets), (f"{what}: the lines naming {name} give none of the offsets {sorted(offsets)} "
                                    f"(block start or damaged byte):\n" + "\n".join(lines[-5:]))


# -- (a) torn tail ---------------------------------------------------------------------------
@pytest.mark.parametrize("cut", ["payload", "fixheader", "eof_marker"])
def test_torn_tail_of_last_xlog(server_factory, server_kind, cut):
    srv = server_factory(server_kind)()
    model = populate(srv)
    stop_clean(srv)
    # A clean shutdown may leave an empty xlog after the data (Tarantool does); a crash leaves the
    # file with the rows last, so remove empty trailing files to get that picture.
    paths = xf.files(srv.data_dir, "xlog")
    while paths and not xf.parse(paths[-1]).blocks:
        os.unlink(paths.pop())
    assert paths, f"no xlog with rows in {srv.data_dir}: {xf.listing(srv.data_dir)}"
    f = xf.parse(paths[-1])
    assert f.closed, f"after SIGTERM the last xlog should end with the EOF marker: {f.describe()}"
    last = f.blocks[-1]
    torn_keys = {k for bi, k in xf.keys_written(f, SPACE) if bi == len(f.blocks) - 1}
    if cut == "payload":
        assert torn_keys == {N_ROWS - 1}, f"the last block should hold the last insert only: {torn_keys}"
        new_size = last.payload_offset + last.payload_len // 2
    elif cut == "fixheader":
        new_size = last.offset + 10
    else:
        torn_keys = set()
        new_size = f.eof_offset + 2      # "d5 10" of "d5 10 ad ed"
    xf.truncate(f.path, new_size)
    expected = {k: t for k, t in model.items() if k not in torn_keys}

    mark = log_mark(srv)
    start_or_fail(srv, f"a torn tail of the last xlog ({cut}: {os.path.basename(f.path)} cut to {new_size} "
                       f"bytes) must be cut off with a `torn tail` log line")
    if server_kind == "spindle" and cut != "eof_marker":
        log = log_since(srv, mark)
        assert "torn tail" in log, f"spindle started but logged no `torn tail` line:\n{tail(log)}"
    with admin(srv) as c:
        got = rows_by_key(c)
        assert got == expected, (f"after recovering a torn tail ({cut}): missing "
                                 f"{sorted(set(expected) - set(got))[:10]}, unexpected "
                                 f"{sorted(set(got) - set(expected))[:10]}, changed "
                                 f"{[k for k in expected if k in got and got[k] != expected[k]][:10]}")
    # keep writing after the torn tail; the next start must recover all of it
    expected.update(populate(srv, n=10, start=1000))
    stop_clean(srv)
    start_or_fail(srv, "the previous start recovered a torn tail and wrote new rows after it; "
                       "those files must recover cleanly")
    with admin(srv) as c:
        got = rows_by_key(c)
        assert got == expected, (f"second restart after a torn tail: missing {sorted(set(expected) - set(got))[:10]}, "
                                 f"unexpected {sorted(set(got) - set(expected))[:10]}")


# -- (b) damage in the middle of an xlog -----------------------------------------------------
@pytest.mark.parametrize("damage", ["payload_byte", "magic"])
def test_corrupt_block_in_the_middle(server_factory, server_kind, damage):
    srv = server_factory(server_kind)()
    model = populate(srv)
    stop_clean(srv)
    f, bi = block_of_key(srv.data_dir, DAMAGED_KEY)
    blk = f.blocks[bi]
    after = [k for b, k in xf.keys_written(f, SPACE) if b > bi]
    assert len(after) >= 10, f"want many valid blocks after the damaged one; {f.describe()}"
    assert f.crc_ok(blk), f"block {blk} of {f.describe()} fails the CRC before any damage (parser bug?)"
    if damage == "payload_byte":
        at = f.payload(blk).find(("row-%05d-" % DAMAGED_KEY).encode())
        assert at >= 0
        offset = blk.payload_offset + at + 10       # inside "abcdefgh": still valid UTF-8/msgpack
    else:
        offset = blk.offset + 1                     # d5 ba 0b ab -> d5 bb 0b ab
    xf.flip_byte(f.path, offset)
    name = os.path.basename(f.path)

    a = attempt_start(srv, label="corrupt")
    assert not a.started and a.returncode not in (0, None), (
        f"{server_kind} must refuse to start on a damaged block in the middle of {name} "
        f"({damage} at offset {offset}, block at {blk.offset}, {len(after)} valid blocks after it); it "
        + a.describe())
    if server_kind == "spindle":
        assert_names_offset(a.stderr, f.path, {blk.offset, offset},
                            "spindle's refusal on stderr must name the damaged file and the offset")

    set_force_recovery(srv)
    mark = log_mark(srv)
    start_or_fail(srv, f"with force recovery a damaged block ({damage}) in the middle of {name} is skipped")
    if server_kind == "spindle":
        assert_names_offset(log_since(srv, mark), f.path, {blk.offset, offset},
                            "with --force-recovery spindle must log what it skipped (file and offset)")
    with admin(srv) as c:
        got = rows_by_key(c)
    before = [k for k in model if k < DAMAGED_KEY]
    missing = [k for k in before + after if got.get(k) != model[k]]
    assert not missing, (f"force recovery: rows before/after the damaged block are missing or changed: "
                         f"{missing[:10]} (e.g. {[(k, got.get(k)) for k in missing[:3]]})")
    assert DAMAGED_KEY not in got or got[DAMAGED_KEY] == model[DAMAGED_KEY], (
        f"force recovery applied the damaged row with a changed value: {got[DAMAGED_KEY]!r} "
        f"(written: {model[DAMAGED_KEY]!r}) -- the block checksum was not checked")
    unexpected = set(got) - set(model)
    assert not unexpected, f"force recovery produced rows never written: {sorted(unexpected)[:10]}"
    print(f"\n[recovery] {server_kind}: {damage} damage at {name}:{offset}: refused without force; "
          f"with force {len(got)}/{len(model)} rows, damaged row {'kept' if DAMAGED_KEY in got else 'skipped'}")


# -- (c) snapshot without its EOF marker -----------------------------------------------------
def test_snap_without_eof_marker(server_factory, server_kind):
    srv = server_factory(server_kind)()
    populate(srv, n=10)
    stop_clean(srv)
    snap = xf.files(srv.data_dir, "snap")[-1]
    with open(snap, "rb") as fh:
        assert fh.read()[-4:] == xf.EOF_MARKER, f"{snap} does not end with the EOF marker d5 10 ad ed"
    xf.truncate(snap, os.path.getsize(snap) - 4)
    for force in (False, True):
        set_force_recovery(srv, force)
        a = attempt_start(srv, label="snap-noeof")
        assert not a.started and a.returncode not in (0, None), (
            f"{server_kind} must refuse to start when the newest snapshot "
            f"{os.path.basename(snap)} has no EOF marker (force recovery {force}); it " + a.describe())
        if server_kind == "spindle":
            assert os.path.basename(snap) in a.stderr, (
                f"spindle's refusal must name the snapshot {os.path.basename(snap)} on stderr:\n{tail(a.stderr)}")


# -- (d) data after the EOF marker of a closed xlog ------------------------------------------
def test_garbage_after_eof_marker(server_factory, server_kind):
    srv = server_factory(server_kind)(**server_kwargs(server_kind, wal_max_size=4096))
    model = populate(srv, pad=20)
    stop_clean(srv)
    files = xlogs_with_rows(srv.data_dir)
    all_xlogs = xf.files(srv.data_dir, "xlog")
    closed = [f for f in files if f.closed and f.path != all_xlogs[-1]]
    assert closed, (f"want a closed xlog that is not the last one (--wal-max-size 4096 should rotate): "
                    f"{xf.listing(srv.data_dir)}")
    target = closed[0]
    xf.append(target.path, b"garbage after the eof marker\n")
    name = os.path.basename(target.path)

    a = attempt_start(srv, label="garbage")
    assert not a.started and a.returncode not in (0, None), (
        f"{server_kind} must refuse to start on data after the EOF marker of {name}; it " + a.describe())
    if server_kind == "spindle":
        assert name in a.stderr, f"spindle's refusal must name {name} on stderr:\n{tail(a.stderr)}"

    set_force_recovery(srv)
    start_or_fail(srv, f"with force recovery the bytes after the EOF marker of {name} are skipped")
    with admin(srv) as c:
        got = rows_by_key(c)
    assert got == model, (f"force recovery after garbage behind an EOF marker: missing "
                          f"{sorted(set(model) - set(got))[:10]}, unexpected {sorted(set(got) - set(model))[:10]}")
