#!/usr/bin/env python3
"""A stand-in for `spindle serve` built on real Tarantool 2.6 -- for validating the test suite.

It accepts spindle's CLI contract (serve --listen --data-dir --wal-mode --admin-password
--log-level --net-msg-max --iproto-threads, env SPINDLE_ADMIN_PASSWORD), logs
`listening on HOST:PORT` to stderr once it accepts connections and exits 0 on SIGTERM/SIGINT,
by exec-ing Tarantool with a generated script.  It cannot report `wal stats:` (Tarantool does
not expose its fsync count), so the group-commit test fails against it by design.

    SPINDLE_BIN=tests/harness/fake_spindle.py python3 -m pytest -q tests

This is a tool for checking the harness, never a substitute for the real server.
"""

import argparse
import os
import shutil
import sys
import tempfile


def main():
    p = argparse.ArgumentParser(prog="spindle")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--listen", default="127.0.0.1:3301")
    s.add_argument("--data-dir", default="./spindle-data")
    s.add_argument("--wal-mode", default="write", choices=["none", "write", "fsync"])
    s.add_argument("--admin-password", default=os.environ.get("SPINDLE_ADMIN_PASSWORD", ""))
    s.add_argument("--log-level", default="info")
    s.add_argument("--net-msg-max", type=int, default=None)
    s.add_argument("--iproto-threads", type=int, default=None)
    a = p.parse_args()
    tarantool = shutil.which("tarantool")
    if tarantool is None:
        sys.exit("fake_spindle: tarantool not installed")
    os.makedirs(a.data_dir, exist_ok=True)
    extra = f"net_msg_max = {a.net_msg_max}," if a.net_msg_max else ""
    lua = f"""
os.remove(arg[0])  -- the generated script deletes itself once loaded
box.cfg{{ work_dir = {a.data_dir!r}, wal_mode = {a.wal_mode!r}, log_level = 5, {extra} }}
box.schema.user.passwd('admin', {a.admin_password!r})
box.cfg{{ listen = {a.listen!r} }}
io.stderr:write('fake-spindle (tarantool) listening on {a.listen}\\n')
"""
    fd, path = tempfile.mkstemp(prefix="fake-spindle-", suffix=".lua")
    with os.fdopen(fd, "w") as f:
        f.write(lua)
    os.execv(tarantool, [tarantool, path])


if __name__ == "__main__":
    main()
