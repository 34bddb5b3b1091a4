#!/usr/bin/env python3
"""Replication throughput and lag: a spindle master under spindle-bench replace load with one
spindle replica following it.

Measures (printed as one JSON line):
  master_ops_s       replace ops/s the bench got from the master (with the replica attached)
  lag_ms             how long a marker row written under load takes to appear on the replica
                     (median, p90, max over markers written every 100 ms)
  catch_up_s         time for the replica to reach the master's contents after the load stops
  replay_rows_s      rows/s a replica applies when it starts far behind: it is stopped, the
                     master takes --behind more rows, and the replica is started again

Usage: tools/repl_bench.py [--bin target/release] [--seconds 10] [--behind 1000000]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import tarantool

PW = "bench-pw"


def spawn(binary, port, data, *extra):
    log = open(os.path.join(data, "log.txt"), "ab")
    proc = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data,
                             "--admin-password", PW, *extra], stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while True:
        try:
            return proc, tarantool.connect("127.0.0.1", port, user="admin", password=PW)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def has_key(conn, key):
    return bool(conn.select(512, [key]).data)


def count(conn):
    return conn.call("box.space.test:len")[0]


def wait_same(master, replica, timeout=600):
    """Waits (polling the cheap row count) until the replica has as many rows as the master,
    then compares the full contents once (untimed by the caller's clock if it reads the
    time before calling `compare`)."""
    deadline = time.monotonic() + timeout
    want = count(master)
    while count(replica) != want:
        if time.monotonic() > deadline:
            raise SystemExit(f"replica did not converge: {count(replica)} of {want} rows")
        time.sleep(0.01)
    return want


def compare(master, replica):
    a = master.select(512, [], limit=2**31 - 1).data
    b = replica.select(512, [], limit=2**31 - 1).data
    if a != b:
        raise SystemExit("replica contents differ from the master's")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--behind", type=int, default=1_000_000)
    ap.add_argument("--port", type=int, default=4700)
    args = ap.parse_args()
    spindle = os.path.join(args.bin, "spindle")
    bench = os.path.join(args.bin, "spindle-bench")
    root = tempfile.mkdtemp(prefix="repl-bench-")
    mdir, rdir = os.path.join(root, "m"), os.path.join(root, "r")
    os.makedirs(mdir)
    os.makedirs(rdir)
    mport, rport = args.port, args.port + 1
    upstream = f"admin:{PW}@127.0.0.1:{mport}"
    mproc, m = spawn(spindle, mport, mdir)
    rproc, r = spawn(spindle, rport, rdir, "--replication", upstream, "--read-only")
    result = {}
    try:
        m.insert("_space", [512, 1, "test", "memtx", 0, {}, []])
        m.insert("_index", [512, 0, "primary", "tree", {"unique": True}, [[0, "unsigned"]]])
        while True:  # the replica has the space and its index
            try:
                r.select(512, [0])
                break
            except tarantool.DatabaseError:
                time.sleep(0.01)
        load = subprocess.Popen(
            [bench, "--addr", f"127.0.0.1:{mport}", "--password", PW, "--workload", "replace",
             "--space", "test", "--keys", "100000", "--connections", "16", "--depth", "16",
             "--duration", str(args.seconds), "--progress", "0", "--json"],
            stdout=subprocess.PIPE, text=True)
        lags, marker = [], 10**9
        end = time.monotonic() + args.seconds - 0.5
        while time.monotonic() < end:
            marker += 1
            t0 = time.monotonic()
            m.replace(512, [marker, "marker"])
            while not has_key(r, marker):
                time.sleep(0.0005)
            lags.append((time.monotonic() - t0) * 1000)
            time.sleep(0.1)
        out, _ = load.communicate()
        t0 = time.monotonic()
        wait_same(m, r)
        result["catch_up_s"] = round(time.monotonic() - t0, 3)
        compare(m, r)
        report = json.loads(out)["total"]
        result["master_ops_s"] = round(report["throughput_rps"])
        result["master_p99_us"] = report["latency_us"]["p99"]
        lags.sort()
        result["lag_ms"] = {"median": round(statistics.median(lags), 1),
                            "p90": round(lags[int(len(lags) * 0.9)], 1),
                            "max": round(lags[-1], 1), "markers": len(lags)}

        # Far behind: stop the replica, write --behind rows, start it, time the catch-up.
        rproc.terminate()
        rproc.wait()
        subprocess.run(
            [bench, "--addr", f"127.0.0.1:{mport}", "--password", PW, "--workload", "insert",
             "--space", "test", "--keys", str(args.behind), "--insert-start", str(2 * 10**9),
             "--connections", "16", "--depth", "64", "--requests", str(args.behind),
             "--progress", "0"], check=True, stdout=subprocess.DEVNULL)
        t0 = time.monotonic()
        rproc, r = spawn(spindle, rport, rdir, "--replication", upstream, "--read-only")
        rows = wait_same(m, r)
        took = time.monotonic() - t0
        compare(m, r)
        result["replay"] = {"rows_behind": args.behind, "seconds": round(took, 2),
                            "rows_s": round(args.behind / took), "total_rows": rows}
        shutil.rmtree(root, ignore_errors=True)
    finally:
        for p in (mproc, rproc):
            p.terminate()
            p.wait()
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
