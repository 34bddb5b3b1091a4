#!/usr/bin/env python3
"""`make bench`: spindle and Tarantool 2.6 side by side, one table of ratios spindle/Tarantool.

Both servers run with equivalent settings (same wal_mode, one network thread each, automatic
checkpoints off, a fresh data dir per server per wal_mode) and hold the same data set: --keys
rows {unsigned, 25-byte string} in a space with a TREE primary key, loaded by `spindle-bench -w
load`. Each cell of the matrix runs `spindle-bench` against one server, then the other, and
again (A B A B ... for --rounds rounds); the table shows medians. Python 3 stdlib only.

With --baseline BIN (another spindle binary, say the build of the commit before a change; `make
bench BENCH_BASELINE_REV=<rev>` builds one) every cell also runs against a third server,
"baseline": the same spindle command line with BIN, its own fresh data dir, third in each round
(spindle, Tarantool, baseline, spindle, ...). An extra table "spindle vs baseline" then gives
spindle/baseline per cell, per latency and memory figure, and marks every one that is more
than 3% worse for spindle (throughput below 0.97 of the baseline's; latency or memory above
1.03 of it). Without --baseline nothing of this runs and the output is as before.

Measured, in this order:
  wal_mode=write  resident memory per tuple (VmRSS before and after loading --keys rows),
                  resident memory per idle connection (VmRSS with --idle connections held open),
                  {ping, select, replace} x {1x1, 50x1, 4x64}, YCSB A/B/C,
                  CALL (a Lua function doing one replace) and EVAL `return ...` at 50x1, 4x64,
                  ping/select/replace at 50x1 and 4x64 next to --idle idle connections,
                  the worst client latency while a snapshot of the data is written
                  (spindle: SIGUSR1, Tarantool: box.snapshot() as EVAL),
                  "hostile neighbours": PING p50/p99/max of one client (1x1) while --hostile
                  guest connections each pipeline 3000 SELECTs on _vspace and never read a
                  reply, with the server's peak VmRSS (sampled every 100 ms) during the cell;
  wal_mode=fsync  replace at 50x1 and 4x64.

Output: the table on stdout, as markdown in <out>/table.md and every figure (with each run's
raw numbers) in <out>/results.json; <out> is <target-dir>/bench. Servers started here are
always killed at the end, also on failure or Ctrl-C. The exit status is non-zero if any run
failed (a failed run shows as FAILED in the table; nothing is skipped silently).

    python3 tools/bench_matrix.py [--quick] [--rounds N] [--duration S] [--keys N] [--idle N]
                                  [--hostile N] [--baseline BIN [--baseline-label TEXT]]
"""
import argparse
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSWORD = "bench-pw"
SPACE = "bench"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0

# (workload, connections, depth, extra driver args); the matrix of issue 4.
WRITE_CELLS = [
    ("ping", 1, 1, []), ("select", 1, 1, []), ("replace", 1, 1, []),
    ("ping", 50, 1, []), ("select", 50, 1, []), ("replace", 50, 1, []),
    ("ping", 4, 64, []), ("select", 4, 64, []), ("replace", 4, 64, []),
    ("ycsb-a", 50, 1, ["--distribution", "zipfian"]),
    ("ycsb-b", 50, 1, ["--distribution", "zipfian"]),
    ("ycsb-c", 50, 1, ["--distribution", "zipfian"]),
    # Issue 15, stored procedures: CALL of a Lua function doing one REPLACE, EVAL `return ...`.
    ("call", 50, 1, []), ("call", 4, 64, []), ("eval", 50, 1, []), ("eval", 4, 64, []),
]
# Workloads a baseline build from before Lua cannot run: its failures there are not failures.
LUA_WORKLOADS = ("call", "eval")
IDLE_CELLS = [
    ("ping", 50, 1, []), ("select", 50, 1, []), ("replace", 50, 1, []),
    ("ping", 4, 64, []), ("select", 4, 64, []), ("replace", 4, 64, []),
]
FSYNC_CELLS = [("replace", 50, 1, []), ("replace", 4, 64, [])]
# Goals of issue 4 (ratios spindle/Tarantool of throughput).
GOAL_DEFAULT = 1.0
GOALS = {("replace", 50, 1, "fsync"): 3.0}
SNAPSHOT_SHAPE = ("replace", 16, 16)
LOAD_SHAPE = (16, 64)
# Issue 13, clients that never read: one well-behaved client pings next to --hostile guest
# connections, each pipelining HOSTILE_DEPTH SELECTs on _vspace without reading a reply.
HOSTILE_SHAPE = ("ping", 1, 1)
HOSTILE_DEPTH = 3000
HOSTILE_MAX_GOAL_US = 100_000.0  # the well-behaved client's worst PING: under 100 ms
RSS_SAMPLE_S = 0.1
# Issue 16, interactive transactions, on a spindle announcing 2.11 with MVCC on (MVCC_FLAGS):
# a stream transaction of TXN_REPLACES replaces against as many autocommit ones, a
# read-modify-write counter (COUNTER_KEYS rows, retried after conflicts), and what turning
# MVCC on costs plain requests. Tarantool 2.6 has neither streams nor MVCC: its autocommit
# cells are there for scale.
ER_TRANSACTION_CONFLICT = 97
MVCC_FLAGS = ["--compat-version", "2.11.0", "--memtx-use-mvcc-engine"]
TXN_REPLACES = 5
TXN_CELLS = [("replace", 4, 16, []), ("txn", 4, 16, []), ("select", 4, 64, []),
             ("replace", 4, 64, [])]
COUNTER_CELL = ("counter", 4, 8, [])
COUNTER_KEYS = 10
STREAM_WORKLOADS = ("txn", "counter")
# spindle against a baseline build: a figure more than this much worse is marked.
BASELINE_TOLERANCE = 0.03


# -- pure helpers (tests/test_bench_matrix.py) -----------------------------------------------

def median(values):
    """Median of the numbers in `values` that are not None; None if there are none."""
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def ratio(a, b):
    """a / b, or None if either is missing or b is 0."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_rate(rps):
    if rps is None:
        return "FAILED"
    if rps >= 1e6:
        return f"{rps / 1e6:.2f}M"
    if rps >= 1e3:
        return f"{rps / 1e3:.1f}k"
    return f"{rps:.0f}"


def fmt_us(us):
    if us is None:
        return "—"
    if us >= 10_000:
        return f"{us / 1000:.1f} ms"
    return f"{us:.0f} µs"


def fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}"


def fmt_bytes(n):
    if n is None:
        return "FAILED"
    if abs(n) >= 2**20:
        return f"{n / 2**20:.1f} MiB"
    if abs(n) >= 10 * 2**10:
        return f"{n / 2**10:.1f} KiB"
    return f"{n:.0f} B"


def shape(conns, depth):
    return f"{conns}×{depth}"


def goal_of(workload, conns, depth, wal_mode):
    return GOALS.get((workload, conns, depth, wal_mode), GOAL_DEFAULT)


def goal_mark(r, goal):
    if r is None:
        return "FAILED"
    return f"≥ {goal:g} {'met' if r >= goal else 'NOT met'}"


def max_goal_mark(us, limit_us):
    """A worst latency against its upper bound, marked like the throughput goals."""
    if us is None:
        return "FAILED"
    return f"< {fmt_us(limit_us)} {'met' if us < limit_us else 'NOT met'}"


def parse_vmrss(status_text):
    """Bytes of `VmRSS:` in the text of /proc/PID/status, or None."""
    m = re.search(r"^VmRSS:\s+(\d+)\s+kB", status_text, re.M)
    return int(m.group(1)) * 1024 if m else None


def per_item(before, after, count):
    """(after - before) / count, None if anything is missing."""
    if before is None or after is None or not count:
        return None
    return (after - before) / count


def summarize_run(report):
    """Throughput, p50 and errors of one `spindle-bench --json` report."""
    total = report.get("total", {})
    return {"rps": total.get("throughput_rps"),
            "p50_us": total.get("latency_us", {}).get("p50"),
            "p99_us": total.get("latency_us", {}).get("p99"),
            "errors": total.get("errors", 0),
            "max_us": total.get("latency_us", {}).get("max"),
            "idle_lost": report.get("idle_lost"),
            "hostile_sent": report.get("hostile_sent"),
            "hostile_lost": report.get("hostile_lost")}


def worst_latency(per_second, through_s=None):
    """Worst per-second `max_us` of the driver's `per_second` rows that had replies; only of
    the first `through_s` seconds if given (row `t` is the end of its second: 1 = the first)."""
    rows = [r for r in per_second if r.get("ok", 0) > 0
            and (through_s is None or r.get("t", 0) <= through_s)]
    return max((r["max_us"] for r in rows), default=None)


def cell_summary(runs):
    """Medians over the rounds of one server's runs of one cell; a failed run makes it None."""
    failed = any(r is None or r.get("failed") for r in runs) or not runs
    if failed:
        return {"rps": None, "p50_us": None, "failed": True}
    return {"rps": median(r["rps"] for r in runs), "p50_us": median(r["p50_us"] for r in runs),
            "failed": False}


def abort_rate(report):
    """Share of a `counter` run's transactions ended by a conflict; None without a report."""
    if not report:
        return None
    total = report.get("total", {})
    done = (total.get("ok") or 0) + (total.get("errors") or 0)
    return (total.get("errors") or 0) / done if done else None


def txn_table(rows, counter):
    """Markdown for the transactions section. rows: the TXN_CELLS rows (per server
    {rps, p50_us}); counter: {rps, p50_us, abort_rate} of spindle-mvcc or None."""
    names = [("spindle", "spindle, MVCC off"), ("spindle-mvcc", "spindle, MVCC on"),
             ("tarantool", "Tarantool 2.6")]
    out = ["| cell | " + " | ".join(label for _, label in names) + " | MVCC on / off |",
           "|---|" + "---:|" * (len(names) + 1)]
    by = {(r["workload"], r["conns"], r["depth"]): r for r in rows}
    for r in rows:
        cells = [fmt_rate(r.get(n, {}).get("rps")) if n in r else "—" for n, _ in names]
        on_off = ratio(r.get("spindle-mvcc", {}).get("rps"), r.get("spindle", {}).get("rps"))
        unit = " txn/s" if r["workload"] == "txn" else ""
        out.append(f"| {r['workload']} {shape(r['conns'], r['depth'])}{unit} | "
                   + " | ".join(cells) + f" | {fmt_ratio(on_off)} |")
    txn, auto = by.get(("txn", 4, 16)), by.get(("replace", 4, 16))
    lines = ["\n".join(out), ""]
    if txn and auto:
        rows_s = (txn.get("spindle-mvcc", {}).get("rps") or 0) * TXN_REPLACES or None
        lines.append(f"A stream transaction of {TXN_REPLACES} REPLACEs writes "
                     f"{fmt_rate(rows_s)} rows/s against {fmt_rate(auto.get('spindle-mvcc', {}).get('rps'))} "
                     f"autocommit REPLACEs/s on the same server: ratio "
                     f"{fmt_ratio(ratio(rows_s, auto.get('spindle-mvcc', {}).get('rps')))}.")
    if counter:
        rate = counter.get("abort_rate")
        lines.append(f"Read-modify-write counter ({COUNTER_CELL[1]}×{COUNTER_CELL[2]} clients over "
                     f"{COUNTER_KEYS} counters, retried after a conflict): "
                     f"{fmt_rate(counter.get('rps'))} commits/s, abort rate "
                     f"{'—' if rate is None else f'{rate * 100:.0f}%'}, p50 "
                     f"{fmt_us(counter.get('p50_us'))}.")
    return "\n".join(lines)


def hostile_summary(runs, rss_before):
    """One server's hostile-neighbours cell over its rounds: PING p50 and p99 are medians, the
    max and the peak RSS the worst round's (the goal is on the worst); the RSS growth is the
    peak against `rss_before`, the RSS right before the cell's first run. A failed round makes
    the latencies None; RSS figures stand as long as some round sampled any."""
    failed = not runs or any(r.get("failed") or r.get("max_us") is None for r in runs)
    peaks = [r.get("rss_peak") for r in runs if r.get("rss_peak") is not None]
    peak = max(peaks) if peaks else None
    sent = [r.get("hostile_sent") for r in runs if r.get("hostile_sent") is not None]
    lost = [r.get("hostile_lost") for r in runs if r.get("hostile_lost") is not None]
    return {"p50_us": None if failed else median(r.get("p50_us") for r in runs),
            "p99_us": None if failed else median(r.get("p99_us") for r in runs),
            "max_us": None if failed else max(r.get("max_us") for r in runs),
            "rss_before": rss_before, "rss_peak": peak,
            "rss_growth": None if peak is None or rss_before is None else peak - rss_before,
            "hostile_sent": int(median(sent)) if sent else None,
            "hostile_lost": max(lost) if lost else None,
            "failed": failed}


def hostile_table(h):
    """Markdown for the hostile-neighbours cell. h: {connections, depth, goal_us, spindle: {...},
    tarantool: {...}} with hostile_summary's fields per server."""
    s, t = h["spindle"], h["tarantool"]
    w, c, d = h["shape"]
    out = [f"| {w} {shape(c, d)} next to {h['connections']:,} × {h['depth']:,} unread SELECTs "
           f"| spindle | Tarantool | ratio |", "|---|---:|---:|---:|"]
    for label, key in (("PING p50 (median)", "p50_us"), ("PING p99 (median)", "p99_us"),
                       ("PING max (worst round)", "max_us")):
        out.append(f"| {label} | {fmt_us(s.get(key))} | {fmt_us(t.get(key))} "
                   f"| {fmt_ratio(ratio(s.get(key), t.get(key)))} |")
    out.append(f"| goal: PING max | {max_goal_mark(s.get('max_us'), h['goal_us'])} "
               f"| {max_goal_mark(t.get('max_us'), h['goal_us'])} | |")
    for label, key in (("RSS before the cell", "rss_before"),
                       ("peak RSS during the cell", "rss_peak"),
                       ("RSS growth (peak − before)", "rss_growth")):
        out.append(f"| {label} | {fmt_bytes(s.get(key))} | {fmt_bytes(t.get(key))} "
                   f"| {fmt_ratio(ratio(s.get(key), t.get(key)))} |")
    total = h["connections"] * h["depth"]
    count = (lambda v: "—" if v is None else f"{v:,} of {total:,}")
    out.append(f"| hostile requests written (median) | {count(s.get('hostile_sent'))} "
               f"| {count(t.get('hostile_sent'))} | |")
    closed = (lambda v: "—" if v is None else f"{v:,}")
    out.append(f"| hostile connections closed by the server | {closed(s.get('hostile_lost'))} "
               f"| {closed(t.get('hostile_lost'))} | |")
    return "\n".join(out)


class RssSampler:
    """Calls `read()` (bytes of resident memory; None or OSError when there is none to read,
    say while the process is being restarted) every `interval` s in a thread until stop();
    keeps the peak and the number of samples taken."""

    def __init__(self, read, interval=RSS_SAMPLE_S):
        self.read = read
        self.interval = interval
        self.peak = None
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        try:
            rss = self.read()
        except OSError:
            return
        if rss is not None:
            self.samples += 1
            self.peak = rss if self.peak is None else max(self.peak, rss)

    def _run(self):
        self._sample()
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        """Stops sampling, takes one last sample; returns the peak."""
        self._stop.set()
        self._thread.join()
        self._sample()
        return self.peak


def throughput_table(rows):
    """Markdown for the main table. rows: dicts with workload, conns, depth, wal_mode,
    spindle/tarantool ({rps, p50_us}), idle (int) and goal."""
    out = ["| workload | conns×depth | wal_mode | spindle rps | Tarantool rps | ratio | goal "
           "| spindle p50 | Tarantool p50 | p50 ratio |",
           "|---|---|---|---:|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        s, t = r["spindle"], r["tarantool"]
        thr = ratio(s["rps"], t["rps"])
        lat = ratio(s["p50_us"], t["p50_us"])
        name = r["workload"] + (f" +{r['idle']} idle" if r.get("idle") else "")
        out.append(f"| {name} | {shape(r['conns'], r['depth'])} | {r['wal_mode']} "
                   f"| {fmt_rate(s['rps'])} | {fmt_rate(t['rps'])} | {fmt_ratio(thr)} "
                   f"| {goal_mark(thr, r['goal'])} | {fmt_us(s['p50_us'])} "
                   f"| {fmt_us(t['p50_us'])} | {fmt_ratio(lat)} |")
    return "\n".join(out)


def idle_table(pairs, idle):
    """Markdown: throughput with `idle` idle connections against without, per server.
    pairs: list of (base_row, idle_row) as in throughput_table."""
    out = [f"| workload | conns×depth | spindle rps (+{idle} idle) | of spindle without "
           f"| Tarantool rps (+{idle} idle) | of Tarantool without | ratio |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for base, with_idle in pairs:
        s, t = with_idle["spindle"], with_idle["tarantool"]
        keep_s = ratio(s["rps"], base["spindle"]["rps"])
        keep_t = ratio(t["rps"], base["tarantool"]["rps"])
        pct = (lambda x: "—" if x is None else f"{100 * x:.0f}%")
        out.append(f"| {base['workload']} | {shape(base['conns'], base['depth'])} "
                   f"| {fmt_rate(s['rps'])} | {pct(keep_s)} | {fmt_rate(t['rps'])} "
                   f"| {pct(keep_t)} | {fmt_ratio(ratio(s['rps'], t['rps']))} |")
    return "\n".join(out)


def memory_table(mem):
    """Markdown for resident memory. mem: {spindle: {...}, tarantool: {...}, tuples, idle}."""
    s, t = mem["spindle"], mem["tarantool"]
    rows = [
        (f"RSS after start", "rss_start", fmt_bytes),
        (f"RSS with {mem['tuples']:,} tuples", "rss_loaded", fmt_bytes),
        ("resident bytes per tuple", "per_tuple", lambda v: "FAILED" if v is None else f"{v:.1f} B"),
        (f"RSS with {mem['idle']:,} idle connections", "rss_idle", fmt_bytes),
        ("resident bytes per idle connection", "per_connection",
         lambda v: "FAILED" if v is None else f"{v:,.0f} B"),
    ]
    out = ["| memory | spindle | Tarantool | ratio |", "|---|---:|---:|---:|"]
    for label, key, fmt in rows:
        out.append(f"| {label} | {fmt(s.get(key))} | {fmt(t.get(key))} "
                   f"| {fmt_ratio(ratio(s.get(key), t.get(key)))} |")
    return "\n".join(out)


def snapshot_table(snap):
    s, t = snap["spindle"], snap["tarantool"]
    w, c, d = snap["shape"]
    out = [f"| {w} {shape(c, d)} on {snap['tuples']:,} tuples | spindle | Tarantool | ratio |",
           "|---|---:|---:|---:|"]
    for label, key in (("worst per-second max latency, snapshot running", "worst_us"),
                       ("worst per-second max latency before the snapshot", "before_us"),
                       ("throughput over the run", "rps")):
        fmt = fmt_rate if key == "rps" else fmt_us
        out.append(f"| {label} | {fmt(s.get(key))} | {fmt(t.get(key))} "
                   f"| {fmt_ratio(ratio(s.get(key), t.get(key)))} |")
    took = (lambda v: "—" if v is None else f"{v:.2f} s")
    out.append(f"| time to write the snapshot | {took(s.get('snapshot_s'))} "
               f"| {took(t.get('snapshot_s'))} | {fmt_ratio(ratio(s.get('snapshot_s'), t.get('snapshot_s')))} |")
    return "\n".join(out)


def baseline_compare(spindle, baseline, higher_is_better, tolerance=BASELINE_TOLERANCE):
    """spindle's figure against the baseline's: (spindle/baseline or None, mark, flagged).

    The mark is "ok"; "SLOWER by x%" when higher is better (throughput) and the ratio is below
    1 - tolerance; "WORSE by x%" when lower is better (latency, memory) and it is above
    1 + tolerance; "FAILED" when spindle has no figure (the rule cannot be checked); "baseline
    FAILED" when only the baseline has none (spindle cannot have got worse than that); "n/a"
    when the baseline's figure is not positive, so that no ratio means anything. `flagged` is
    True for SLOWER, WORSE and FAILED."""
    if spindle is None:
        return None, "FAILED", True
    if baseline is None:
        return None, "baseline FAILED", False
    if baseline <= 0:
        return None, "n/a", False
    r = spindle / baseline
    if higher_is_better and r < 1 - tolerance:
        return r, f"SLOWER by {(1 - r) * 100:.1f}%", True
    if not higher_is_better and r > 1 + tolerance:
        return r, f"WORSE by {(r - 1) * 100:.1f}%", True
    return r, "ok", False


def cell_name(row):
    """"ping 50×1 write +1,000 idle": one throughput cell of the matrix."""
    return (f"{row['workload']} {shape(row['conns'], row['depth'])} {row['wal_mode']}"
            + (f" +{row['idle']:,} idle" if row.get("idle") else ""))


def baseline_rows(results, tolerance=BASELINE_TOLERANCE):
    """Every figure of `results` (as Matrix.run leaves them) that spindle and the baseline
    both have a slot for, compared by baseline_compare: the throughput cells (write, fsync,
    then next to idle connections), the snapshot's worst latency, the hostile-neighbours PING
    latencies and peak memory, the resident-memory rows and the bulk loads. Each row: {cell,
    kind (rps, us, bytes or per: how to format it), higher_is_better, spindle, baseline,
    ratio, mark, flagged}. Nothing for sections that ran without a baseline. The bulk loads
    are one short run each, not alternated: shown, never flagged ("not judged: ...")."""
    rows = []

    def add(cell, kind, higher, s, b, judged=True):
        r, mark, flagged = baseline_compare(s, b, higher, tolerance)
        if not judged and mark != "ok":
            mark, flagged = f"not judged: {mark}", False
        rows.append({"cell": cell, "kind": kind, "higher_is_better": higher, "spindle": s,
                     "baseline": b, "ratio": r, "mark": mark, "flagged": flagged})

    t = results.get("tables") or {}
    for row in (t.get("write") or []) + (t.get("fsync") or []) + (t.get("idle") or []):
        if "baseline" in row:
            add(cell_name(row), "rps", True, row["spindle"].get("rps"),
                row["baseline"].get("rps"))
    snap = results.get("snapshot")
    if snap and "baseline" in snap:
        w, c, d = snap["shape"]
        add(f"{w} {shape(c, d)}: worst latency while a snapshot is written", "us", False,
            snap["spindle"].get("worst_us"), snap["baseline"].get("worst_us"))
    h = results.get("hostile")
    if h and "baseline" in h:
        w, c, d = h["shape"]
        what = f"{w} {shape(c, d)} next to {h['connections']:,} hostile"
        for label, key, kind in (("PING p50", "p50_us", "us"), ("PING p99", "p99_us", "us"),
                                 ("PING max", "max_us", "us"), ("peak RSS", "rss_peak", "bytes"),
                                 ("RSS growth", "rss_growth", "bytes")):
            add(f"{what}: {label}", kind, False, h["spindle"].get(key), h["baseline"].get(key))
    mem = results.get("memory")
    if mem and "baseline" in mem:
        for label, key, kind in (("RSS after start", "rss_start", "bytes"),
                                 (f"RSS with {mem['tuples']:,} tuples", "rss_loaded", "bytes"),
                                 ("resident bytes per tuple", "per_tuple", "per"),
                                 (f"RSS with {mem['idle']:,} idle connections", "rss_idle",
                                  "bytes"),
                                 ("resident bytes per idle connection", "per_connection",
                                  "per")):
            add(f"memory: {label}", kind, False, mem["spindle"].get(key),
                mem["baseline"].get(key))
    load = results.get("load") or []
    for mode in ("write", "fsync"):
        by = {e["server"]: e for e in load if e["wal_mode"] == mode}
        if "baseline" in by:
            add(f"bulk load, {mode} (one run each)", "rps", True,
                (by.get("spindle") or {}).get("rps"), by["baseline"].get("rps"), judged=False)
    return rows


def _fmt_kind(kind, v):
    if kind == "rps":
        return fmt_rate(v)
    if v is None:
        return "FAILED"
    if kind == "us":
        return fmt_us(v)
    if kind == "per":
        return f"{v:,.1f} B"
    return fmt_bytes(v)


def baseline_table(rows, tolerance=BASELINE_TOLERANCE):
    """Markdown for the rows of baseline_rows."""
    pct = f"{tolerance * 100:g}%"
    out = [f"| cell | better | spindle | baseline | spindle / baseline | ≤ {pct} worse |",
           "|---|---|---:|---:|---:|---|"]
    for r in rows:
        rat = "—" if r["ratio"] is None else f"{r['ratio']:.3f}"
        out.append(f"| {r['cell']} | {'higher' if r['higher_is_better'] else 'lower'} "
                   f"| {_fmt_kind(r['kind'], r['spindle'])} "
                   f"| {_fmt_kind(r['kind'], r['baseline'])} | {rat} | {r['mark']} |")
    return "\n".join(out)


def baseline_verdict(rows, tolerance=BASELINE_TOLERANCE):
    """One sentence: how many figures are more than `tolerance` worse than the baseline's (or
    failed), and which."""
    pct = f"{tolerance * 100:g}%"
    bad = [r for r in rows if r["flagged"]]
    if not rows:
        return "Nothing was compared with the baseline."
    if not bad:
        return f"All {len(rows)} figures are within {pct} of the baseline or better."
    return (f"{len(bad)} of {len(rows)} figures are more than {pct} worse than the baseline "
            f"or failed: " + "; ".join(f"{r['cell']} ({r['mark']})" for r in bad) + ".")


# -- processes --------------------------------------------------------------------------------

_children = []  # every Popen started here, killed at the end whatever happens


def _kill_all():
    for proc in _children:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                try:
                    proc.kill()
                except ProcessLookupError:
                    pass
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass


def _on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(cmd, log_path, cwd=None):
    log = open(log_path, "ab")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=cwd,
                            start_new_session=True)
    log.close()
    _children.append(proc)
    return proc


def greeting_ok(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(2)
            got = b""
            while len(got) < 128:
                chunk = s.recv(128 - len(got))
                if not chunk:
                    return False
                got += chunk
            return got.startswith(b"Tarantool ")
    except OSError:
        return False


def strip_ansi(text):
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


class Server:
    name = "?"

    def __init__(self, workdir, wal_mode):
        self.dir = os.path.join(workdir, f"{self.name}-{wal_mode}")
        os.makedirs(self.dir)
        self.wal_mode = wal_mode
        self.port = free_port()
        self.log_path = os.path.join(self.dir, "log")
        self.proc = None

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return strip_ansi(f.read())
        except FileNotFoundError:
            return ""

    def start(self):
        self.proc = spawn(self.command(), self.log_path, cwd=self.dir)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; log:\n"
                                   + self.log_text()[-3000:])
            if greeting_ok(self.port) and self.ready():
                return self
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start within {START_TIMEOUT} s; log:\n"
                           + self.log_text()[-3000:])

    def ready(self):
        return True

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            raise RuntimeError(f"{self.name} did not stop within {STOP_TIMEOUT} s of SIGTERM")

    def rss(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return parse_vmrss(f.read())

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def death(self):
        """None while running; else how it ended, with the tail of its log."""
        if self.alive() or self.proc is None:
            return None
        rc = self.proc.returncode
        how = f"killed by signal {-rc}" if rc < 0 else f"exit code {rc}"
        tail = "\n".join(self.log_text().splitlines()[-15:])
        return f"{self.name} is dead ({how}); its log ends:\n{tail}"


class Spindle(Server):
    name = "spindle"

    def __init__(self, workdir, wal_mode, binary):
        super().__init__(workdir, wal_mode)
        self.binary = binary

    def command(self):
        return [self.binary, "serve", "--listen", self.addr,
                "--data-dir", os.path.join(self.dir, "data"), "--wal-mode", self.wal_mode,
                "--iproto-threads", "1", "--admin-password", PASSWORD, "--log-level", "info",
                "--checkpoint-interval", "0"]

    def ready(self):
        return f"listening on {self.addr}" in self.log_text()

    def checkpoints(self):
        """(count, seconds of the last) of `checkpoint complete` lines in the log."""
        found = re.findall(r"checkpoint complete: .*?\(\d+ rows in ([0-9.]+) s\)", self.log_text())
        return len(found), (float(found[-1]) if found else None)


class SpindleMvcc(Spindle):
    """The same spindle, announcing 2.11 (streams) with the MVCC engine on."""
    name = "spindle-mvcc"

    def command(self):
        return super().command() + MVCC_FLAGS


class Baseline(Spindle):
    """The same spindle command line with another binary (--baseline)."""
    name = "baseline"


TARANTOOL_LUA = """\
-- generated by tools/bench_matrix.py
box.cfg{{
    work_dir = {work_dir!r},
    wal_mode = {wal_mode!r},
    memtx_memory = {memtx_memory},
    checkpoint_interval = 0,
    log_level = 5,
}}
box.schema.user.passwd('admin', {password!r})
box.cfg{{ listen = {listen!r} }}
"""


class Tarantool(Server):
    name = "tarantool"

    def __init__(self, workdir, wal_mode, binary, memtx_memory):
        super().__init__(workdir, wal_mode)
        self.binary = binary
        self.script = os.path.join(self.dir, "instance.lua")
        os.makedirs(os.path.join(self.dir, "data"))
        with open(self.script, "w") as f:
            f.write(TARANTOOL_LUA.format(work_dir=os.path.join(self.dir, "data"),
                                         wal_mode=wal_mode, memtx_memory=memtx_memory,
                                         password=PASSWORD, listen=self.addr))

    def command(self):
        return [self.binary, self.script]


# -- the driver -------------------------------------------------------------------------------

class Driver:
    def __init__(self, binary, workdir, keys, warmup, duration, verbose):
        self.binary = binary
        self.workdir = workdir
        self.keys = keys
        self.warmup = warmup
        self.duration = duration
        self.verbose = verbose
        self.count = 0

    def run(self, server, workload, conns, depth, extra=(), duration=None, warmup=None,
            seed=None, timeout_extra=180, keys=None, space=SPACE, aborts_ok=False):
        """One `spindle-bench --json` run; returns (report or None, error text or None).
        `aborts_ok`: transactions ended by a conflict (97) are counted, not failures."""
        self.count += 1
        args = [self.binary, "--addr", server.addr, "--user", "admin", "--password", PASSWORD,
                "--space", space, "-w", workload, "-c", str(conns), "-d", str(depth),
                "-k", str(self.keys if keys is None else keys), "--json", "-q"]
        if workload != "load":
            d = self.duration if duration is None else duration
            w = self.warmup if warmup is None else warmup
            args += ["--duration", str(d), "--warmup", str(w)]
            timeout = d + w + timeout_extra
        else:
            timeout = 1800
        if seed is not None:
            args += ["--seed", str(seed)]
        args += list(extra)
        if self.verbose:
            print("  $ " + " ".join(shlex.quote(a) for a in args), file=sys.stderr)
        env = dict(os.environ)
        env.pop("SPINDLE_BENCH_PASSWORD", None)
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                text=True)
        _children.append(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            return None, f"spindle-bench timed out after {timeout} s: {err[-2000:]}"
        finally:
            if proc.poll() is None:  # interrupted: the driver goes with us
                proc.kill()
                proc.wait()
            _children.remove(proc)
        if proc.returncode != 0:
            return None, f"spindle-bench exited with {proc.returncode}: {err.strip()[-2000:]}"
        try:
            report = json.loads(out)
        except json.JSONDecodeError as e:
            return None, f"spindle-bench printed no JSON ({e}): {out[-500:]} {err[-500:]}"
        if aborts_ok and all(e.get("code") == ER_TRANSACTION_CONFLICT
                             for e in report.get("errors", [])):
            return report, None
        if report.get("total", {}).get("errors"):
            first = report.get("errors", [{}])[0] if report.get("errors") else {}
            return report, (f"{report['total']['errors']} failed requests, e.g. "
                            f"{first.get('what')}: {first.get('message')}")
        return report, None


# -- the matrix -------------------------------------------------------------------------------

class Matrix:
    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.driver = Driver(args.bench_bin, workdir, args.keys, args.warmup, args.duration,
                             args.verbose)
        self.failures = []
        self.dead = set()
        self.results = {"cells": [], "memory": None, "snapshot": None, "hostile": None,
                        "load": [], "restarts": []}

    def log(self, msg):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    def servers(self, wal_mode):
        """The servers of a wal_mode in the order each round runs them: spindle, Tarantool and,
        with --baseline, the baseline spindle third."""
        out = [Spindle(self.workdir, wal_mode, self.args.spindle_bin),
               Tarantool(self.workdir, wal_mode, self.args.tarantool_bin, self.args.memtx_memory)]
        if self.args.baseline:
            out.append(Baseline(self.workdir, wal_mode, self.args.baseline))
        return out

    def annotate(self, srv, err):
        """`err` (or "ok"), plus how `srv` died if it did; a dead server is reported once."""
        dead = srv.death()
        if dead is None:
            return err
        if srv.name in self.dead:
            return f"{err or 'ran'}; {srv.name} is dead (see above)"
        self.dead.add(srv.name)
        return f"{err or 'ran'}; {dead}"

    def revive(self, srv, what):
        """Restarts `srv` on its port and data dir if something killed it (the machine is
        shared: other people's clean-ups kill servers by name). Its WAL brings the data set
        back. Every restart is recorded and shown with the table."""
        dead = srv.death()
        if dead is None:
            return
        self.log(f"RESTART before {what}: {dead}")
        self.results["restarts"].append({"server": srv.name, "wal_mode": srv.wal_mode,
                                         "before": what, "death": dead})
        self.dead.discard(srv.name)
        srv.start()

    def run_on(self, srv, what, *args, **kwargs):
        """A driver run on `srv`, restarting it first if it is dead; a run that fails because
        the server died under it is run once more on a restarted server."""
        for attempt in (1, 2):
            self.revive(srv, what)
            report, err = self.driver.run(srv, *args, **kwargs)
            if err is not None and not srv.alive() and attempt == 1:
                self.log(f"{what} on {srv.name}: the server died during the run ({err}); "
                         "running it again")
                continue
            break
        if err is not None or not srv.alive():
            err = self.annotate(srv, err)
        return report, err

    def fail(self, what, error):
        self.failures.append(f"{what}: {error}")
        self.log(f"FAILED {what}: {error}")

    def load(self, servers):
        for srv in servers:
            self.log(f"{srv.name} ({srv.wal_mode}): loading {self.args.keys:,} tuples")
            report, err = self.driver.run(srv, "load", *LOAD_SHAPE, extra=["--fresh"])
            if err is not None or not srv.alive():
                err = self.annotate(srv, err)
            entry = {"server": srv.name, "wal_mode": srv.wal_mode, "tuples": self.args.keys,
                     "seconds": report.get("elapsed_s") if report else None,
                     "rps": summarize_run(report)["rps"] if report else None, "error": err}
            self.results["load"].append(entry)
            if err:
                self.fail(f"load on {srv.name}", err)
                raise RuntimeError(f"could not load the data set into {srv.name}: {err}")

    def measure_memory(self, servers, rss_start):
        mem = {"tuples": self.args.keys, "idle": self.args.idle}
        for srv in servers:
            m = {"rss_start": rss_start[srv.name], "rss_loaded": srv.rss()}
            m["per_tuple"] = per_item(m["rss_start"], m["rss_loaded"], self.args.keys)
            # Idle connections: RSS right before, and read by the driver while they are open.
            rss_file = os.path.join(self.workdir, f"rss-{srv.name}.txt")
            m["rss_before_idle"] = srv.rss()
            cmd = f"cat /proc/{srv.proc.pid}/status > {shlex.quote(rss_file)}"
            self.log(f"{srv.name}: RSS with {self.args.idle:,} idle connections")
            if not srv.alive():
                report, err = None, "the server is not running"
            else:
                report, err = self.driver.run(srv, "ping", 1, 1, duration=3, warmup=0,
                                              extra=["--idle-connections", str(self.args.idle),
                                                     "--at", "2", "--at-cmd", cmd])
            if err is None and report.get("idle_lost"):
                err = f"the server closed {report['idle_lost']} idle connections"
            if err is None:
                try:
                    with open(rss_file) as f:
                        m["rss_idle"] = parse_vmrss(f.read())
                except OSError as e:
                    err = f"no RSS reading while the connections were open: {e}"
            if err is not None or not srv.alive():
                err = self.annotate(srv, err)
            if err:
                self.fail(f"idle-connection memory on {srv.name}", err)
            m["per_connection"] = per_item(m["rss_before_idle"], m.get("rss_idle"), self.args.idle)
            m["error"] = err
            mem[srv.name] = m
        self.results["memory"] = mem

    def run_cells(self, servers, cells, wal_mode, idle=0):
        rows = []
        for workload, conns, depth, extra in cells:
            runs = {s.name: [] for s in servers}
            label = f"{workload} {shape(conns, depth)} {wal_mode}" + (f" +{idle} idle" if idle else "")
            for rnd in range(self.args.rounds):
                seed = 1000 + rnd
                for srv in servers:
                    args = list(extra) + (["--idle-connections", str(idle)] if idle else [])
                    report, err = self.run_on(srv, label, workload, conns, depth, extra=args,
                                              seed=seed)
                    if err is None and idle and report.get("idle_lost"):
                        err = f"the server closed {report['idle_lost']} idle connections"
                    run = summarize_run(report) if report else {}
                    run["failed"] = err is not None
                    run["error"] = err
                    runs[srv.name].append(run)
                    if err and not (srv.name == "baseline" and workload in LUA_WORKLOADS):
                        self.fail(f"{label} on {srv.name} (round {rnd + 1})", err)
            row = {"workload": workload, "conns": conns, "depth": depth, "wal_mode": wal_mode,
                   "idle": idle, "extra": list(extra), "goal": goal_of(workload, conns, depth, wal_mode),
                   "runs": runs}
            for srv in servers:
                row[srv.name] = cell_summary(runs[srv.name])
            r = ratio(row["spindle"]["rps"], row["tarantool"]["rps"])
            msg = (f"{label}: spindle {fmt_rate(row['spindle']['rps'])}, tarantool "
                   f"{fmt_rate(row['tarantool']['rps'])}, ratio {fmt_ratio(r)}")
            if "baseline" in row:
                rb = ratio(row["spindle"]["rps"], row["baseline"]["rps"])
                msg += (f"; baseline {fmt_rate(row['baseline']['rps'])}, spindle/baseline "
                        f"{fmt_ratio(rb)}")
            self.log(msg)
            rows.append(row)
            self.results["cells"].append(row)
        return rows

    def txn_servers(self):
        """The transactions section's servers, fresh, in a directory of their own (the
        write section's servers have the same names)."""
        workdir = os.path.join(self.workdir, "transactions")
        os.makedirs(workdir, exist_ok=True)
        return [Spindle(workdir, "write", self.args.spindle_bin),
                SpindleMvcc(workdir, "write", self.args.spindle_bin),
                Tarantool(workdir, "write", self.args.tarantool_bin, self.args.memtx_memory)]

    def transactions(self):
        """Issue 16's cells: streams and MVCC, with spindle MVCC off and Tarantool for scale.
        A failure here is reported with the rest, never loses the earlier sections."""
        try:
            self.transaction_cells()
        except Exception as e:  # noqa: BLE001 - any failure is reported, not raised
            self.fail("interactive transactions", f"{type(e).__name__}: {e}")

    def transaction_cells(self):
        servers = self.txn_servers()
        try:
            for srv in servers:
                srv.start()
            self.load(servers)
            rows = []
            for workload, conns, depth, extra in TXN_CELLS:
                label = f"{workload} {shape(conns, depth)} transactions"
                runs = {s.name: [] for s in servers}
                for rnd in range(self.args.rounds):
                    for srv in servers:
                        if workload in STREAM_WORKLOADS and srv.name != "spindle-mvcc":
                            continue
                        report, err = self.run_on(srv, label, workload, conns, depth,
                                                  extra=extra, seed=1000 + rnd)
                        run = summarize_run(report) if report else {}
                        run["failed"], run["error"] = err is not None, err
                        runs[srv.name].append(run)
                        if err:
                            self.fail(f"{label} on {srv.name} (round {rnd + 1})", err)
                row = {"workload": workload, "conns": conns, "depth": depth, "runs": runs}
                for srv in servers:
                    if runs[srv.name]:
                        row[srv.name] = cell_summary(runs[srv.name])
                self.log(f"{label}: " + ", ".join(
                    f"{n} {fmt_rate(row[n]['rps'])}" for n in runs if n in row))
                rows.append(row)
            counter = self.counter_cell(servers[1])
            for srv in servers:
                srv.stop()
        finally:
            _kill_all()
        self.results["transactions"] = {"rows": rows, "counter": counter}

    def counter_cell(self, srv):
        workload, conns, depth, extra = COUNTER_CELL
        label = f"{workload} {shape(conns, depth)} over {COUNTER_KEYS} keys"
        runs, rates = [], []
        for rnd in range(self.args.rounds):
            report, err = self.run_on(srv, label, workload, conns, depth, extra=extra,
                                      seed=1000 + rnd, keys=COUNTER_KEYS,
                                      space="bench_counter", aborts_ok=True)
            run = summarize_run(report) if report else {}
            run["failed"], run["error"] = err is not None, err
            runs.append(run)
            rates.append(abort_rate(report))
            if err:
                self.fail(f"{label} on {srv.name} (round {rnd + 1})", err)
        cell = cell_summary(runs)
        cell["abort_rate"] = median(rates)
        self.log(f"{label}: {fmt_rate(cell['rps'])} commits/s, abort rate {cell['abort_rate']}")
        return cell

    def snapshot_latency(self, servers):
        workload, conns, depth = SNAPSHOT_SHAPE
        at = self.args.snapshot_at
        dur = self.args.snapshot_duration
        snap = {"shape": list(SNAPSHOT_SHAPE), "tuples": self.args.keys, "at_s": at,
                "duration_s": dur, "runs": {s.name: [] for s in servers}}
        for rnd in range(self.args.rounds):
            for srv in servers:
                self.revive(srv, "snapshot latency")
                if isinstance(srv, Spindle):
                    before, _ = srv.checkpoints()
                    extra = ["--at", str(at), "--at-cmd", f"kill -USR1 {srv.proc.pid}"]
                else:
                    extra = ["--at", str(at), "--at-eval", "box.snapshot()"]
                self.log(f"{srv.name}: snapshot under {workload} {shape(conns, depth)} "
                         f"(round {rnd + 1})")
                report, err = self.driver.run(srv, workload, conns, depth, extra=extra,
                                              duration=dur, seed=2000 + rnd)
                run = {"error": err}
                if report:
                    run.update(summarize_run(report))
                    run["worst_us"] = worst_latency(report.get("per_second", []))
                    run["before_us"] = worst_latency(report.get("per_second", []),
                                                     through_s=int(at))
                    if report.get("at_error"):
                        err = err or f"the snapshot failed: {report['at_error']}"
                    run["snapshot_s"] = report.get("at_took_s")
                if isinstance(srv, Spindle) and err is None:
                    # SIGUSR1 returns at once; the checkpoint must have completed in the run.
                    deadline = time.monotonic() + 60
                    while srv.checkpoints()[0] <= before and time.monotonic() < deadline:
                        time.sleep(0.1)
                    count, took = srv.checkpoints()
                    if count <= before:
                        err = "spindle logged no completed checkpoint"
                    run["snapshot_s"] = took
                if err is not None or not srv.alive():
                    err = self.annotate(srv, err)
                run["error"] = err
                run["failed"] = err is not None
                snap["runs"][srv.name].append(run)
                if err:
                    self.fail(f"snapshot latency on {srv.name} (round {rnd + 1})", err)
        for srv in servers:
            runs = snap["runs"][srv.name]
            ok = [r for r in runs if not r["failed"]]
            snap[srv.name] = {k: (median(r.get(k) for r in ok) if ok and len(ok) == len(runs) else None)
                              for k in ("worst_us", "before_us", "rps", "snapshot_s")}
        self.results["snapshot"] = snap

    def hostile_neighbours(self, servers):
        """PING latency of one client next to --hostile clients that never read, and each
        server's peak resident memory meanwhile; A B per round like the other cells."""
        workload, conns, depth = HOSTILE_SHAPE
        n = self.args.hostile
        label = f"{workload} {shape(conns, depth)} next to {n} hostile connections"
        cell = {"shape": list(HOSTILE_SHAPE), "connections": n, "depth": HOSTILE_DEPTH,
                "goal_us": HOSTILE_MAX_GOAL_US, "sample_s": RSS_SAMPLE_S,
                "runs": {s.name: [] for s in servers}}
        rss_before = {}
        extra = ["--hostile-connections", str(n), "--hostile-depth", str(HOSTILE_DEPTH)]
        for rnd in range(self.args.rounds):
            for srv in servers:
                self.revive(srv, label)
                if srv.name not in rss_before:
                    rss_before[srv.name] = srv.rss()
                self.log(f"{srv.name}: {label} (round {rnd + 1})")
                before = srv.rss()
                sampler = RssSampler(srv.rss).start()
                try:
                    report, err = self.run_on(srv, label, workload, conns, depth, extra=extra,
                                              seed=3000 + rnd)
                finally:
                    peak = sampler.stop()
                run = summarize_run(report) if report else {}
                if err is None and not run.get("rps"):
                    # Not a latency of 0: the pinging client was starved outright.
                    err = (f"the pinging client got no reply in the {self.args.duration:g} s "
                           f"measured (starved by the hostile connections)")
                run.update({"rss_before": before, "rss_peak": peak, "rss_samples": sampler.samples,
                            "failed": err is not None, "error": err})
                cell["runs"][srv.name].append(run)
                if err:
                    self.fail(f"{label} on {srv.name} (round {rnd + 1})", err)
                else:
                    self.log(f"{srv.name}: PING p50 {fmt_us(run['p50_us'])}, p99 "
                             f"{fmt_us(run['p99_us'])}, max {fmt_us(run['max_us'])}; peak RSS "
                             f"{fmt_bytes(peak)}; {run.get('hostile_sent')} hostile requests "
                             f"written, {run.get('hostile_lost')} connections closed")
                # Let the server drop what the closed connections left behind.
                time.sleep(0.5)
        for srv in servers:
            cell[srv.name] = hostile_summary(cell["runs"][srv.name], rss_before.get(srv.name))
        self.results["hostile"] = cell

    def run(self):
        a = self.args
        rows_write, rows_idle, rows_fsync = [], [], []
        # wal_mode=write: memory, the matrix, idle connections, snapshot latency, hostile
        # neighbours.
        servers = self.servers("write")
        try:
            rss_start = {}
            for srv in servers:
                srv.start()
                time.sleep(0.5)
                rss_start[srv.name] = srv.rss()
            self.load(servers)
            time.sleep(0.5)
            self.measure_memory(servers, rss_start)
            rows_write = self.run_cells(servers, WRITE_CELLS, "write")
            if a.idle:
                rows_idle = self.run_cells(servers, IDLE_CELLS, "write", idle=a.idle)
            self.snapshot_latency(servers)
            if a.hostile:
                self.hostile_neighbours(servers)
            for srv in servers:
                srv.stop()
        finally:
            _kill_all()
        # wal_mode=fsync: replace on a fresh copy of the data set.
        servers = self.servers("fsync")
        try:
            for srv in servers:
                srv.start()
            self.load(servers)
            rows_fsync = self.run_cells(servers, FSYNC_CELLS, "fsync")
            for srv in servers:
                srv.stop()
        finally:
            _kill_all()
        if a.transactions:
            self.transactions()
        self.results["tables"] = {"write": rows_write, "idle": rows_idle, "fsync": rows_fsync}
        return rows_write, rows_idle, rows_fsync


def machine_info(args):
    def sh(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10,
                                  cwd=ROOT).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "host": platform.node(),
            "kernel": platform.release(), "cpu": cpu, "cpus": os.cpu_count(), "memory": mem,
            "loadavg_start": os.getloadavg(),
            "tarantool": sh([args.tarantool_bin, "--version"]).splitlines()[0:1],
            "spindle_commit": sh(["git", "rev-parse", "--short", "HEAD"]),
            "rustc": sh(["rustc", "--version"])}


def render(results, args):
    m = results["machine"]
    bl = results.get("baseline")
    lines = [f"# spindle / Tarantool 2.6 — `make bench`", "",
             f"Date {m['date']}; {m['cpus']} CPUs ({m['cpu']}), {m['memory']} RAM, Linux "
             f"{m['kernel']}; {' '.join(m['tarantool'])}; spindle {m['spindle_commit']}; "
             f"load average at start {m['loadavg_start'][0]:.2f}, at end "
             f"{m['loadavg_end'][0]:.2f}.",
             f"{args.keys:,} tuples {{unsigned, 25-byte string}}, TREE primary key; "
             f"{args.rounds} round(s) {'A B C' if bl else 'A B'} per cell, medians; "
             f"{args.warmup} s warm-up + "
             f"{args.duration} s per run; one iproto thread each; ratios are spindle / Tarantool "
             f"(throughput: higher is better for spindle; p50: lower is better)."]
    if bl:
        lines.append(f"Baseline: {bl['label']} (`{bl['binary']}`), the same spindle command "
                     f"line, third in every round (spindle, Tarantool, baseline); see "
                     f"\"spindle vs baseline\" below.")
    lines.append("")
    t = results["tables"]
    lines += ["## Throughput and 1-in-flight latency", "",
              throughput_table(t["write"] + t["fsync"]), ""]
    if t["idle"]:
        base = {(r["workload"], r["conns"], r["depth"]): r for r in t["write"]}
        pairs = [(base[(r["workload"], r["conns"], r["depth"])], r) for r in t["idle"]]
        lines += [f"## Next to {args.idle:,} idle connections", "", idle_table(pairs, args.idle), ""]
    if results.get("transactions"):
        tr = results["transactions"]
        lines += ["## Interactive transactions (streams, MVCC)", "",
                  "spindle MVCC off: the plain server; MVCC on: the same binary with "
                  f"`{' '.join(MVCC_FLAGS)}`; Tarantool 2.6 has no streams or MVCC (its "
                  "autocommit cells are for scale). `txn`: BEGIN, "
                  f"{TXN_REPLACES} REPLACEs and COMMIT sent together in each stream.", "",
                  txn_table(tr["rows"], tr.get("counter")), ""]
    if results.get("memory"):
        lines += ["## Resident memory (VmRSS)", "", memory_table(results["memory"]), ""]
    if results.get("snapshot"):
        lines += ["## Client latency while a snapshot is written", "",
                  f"The snapshot starts {args.snapshot_at} s into a {args.snapshot_duration} s run "
                  f"(spindle: SIGUSR1, Tarantool: EVAL box.snapshot()); latencies are the "
                  f"worst per-second maxima the driver saw.", "",
                  snapshot_table(results["snapshot"]), ""]
    if results.get("hostile"):
        h = results["hostile"]
        lines += ["## Hostile neighbours: PING next to clients that never read", "",
                  f"One authenticated connection pings (1 in flight) while {h['connections']:,} "
                  f"guest connections each pipeline {h['depth']:,} SELECTs on `_vspace` (~30 B "
                  f"each, ~1.7 KB replies) and never read a reply. Goal: the worst PING under "
                  f"{fmt_us(h['goal_us'])}. VmRSS sampled every {h['sample_s'] * 1000:.0f} ms "
                  f"from /proc/PID/status while each run went on.", "",
                  hostile_table(h), ""]
    load = results.get("load") or []
    if load:
        names = ["spindle", "tarantool"] + (["baseline"] if bl else [])
        lines += ["## Bulk load (one run each, not alternated)", "",
                  "| wal_mode | spindle | Tarantool |" + (" baseline |" if bl else ""),
                  "|---|---:|---:|" + ("---:|" if bl else "")]
        for mode in ("write", "fsync"):
            by = {e["server"]: e for e in load if e["wal_mode"] == mode}
            if by:
                cell = (lambda e: "FAILED" if not e or e.get("seconds") is None
                        else f"{e['seconds']:.2f} s ({fmt_rate(e['rps'])}/s)")
                lines.append(f"| {mode} | " + " | ".join(cell(by.get(n)) for n in names) + " |")
        lines.append("")
    if bl:
        pct = f"{bl['tolerance'] * 100:g}%"
        lines += ["## spindle vs baseline", "",
                  f"spindle {m['spindle_commit']} (this tree) against the baseline "
                  f"{bl['label']}, run side by side in the same rounds. Ratios are spindle / "
                  f"baseline of the same medians as above; a figure more than {pct} worse for "
                  f"spindle is marked: throughput (higher is better) below "
                  f"{1 - bl['tolerance']:.2f}, latency and memory (lower is better) above "
                  f"{1 + bl['tolerance']:.2f}.", "",
                  baseline_table(bl["rows"], bl["tolerance"]), "",
                  baseline_verdict(bl["rows"], bl["tolerance"]), ""]
        if args.rounds < 3:
            lines += [f"Only {args.rounds} round(s) of {args.duration:g} s per cell: the medians "
                      f"are single short runs, far noisier than {pct}. Take these marks as a "
                      f"smoke test, not a verdict; judge a change on a full run (3 rounds or "
                      f"more, BENCH_QUICK unset).", ""]
    if results.get("restarts"):
        lines += ["## Servers restarted (killed from outside during the run)", ""]
        lines += ["- " + f"{r['server']} ({r['wal_mode']}) before {r['before']}: "
                  + r["death"].split(";")[0] for r in results["restarts"]]
        lines += ["", "(their log tails are in results.json)", ""]
    if results["failures"]:
        lines += ["## Failed runs", ""]
        lines += ["- " + f.replace("\n", "\n      ") for f in results["failures"]] + [""]
    return "\n".join(lines)


def env_default(name, cast, default):
    raw = os.environ.get(name, "")
    return cast(raw) if raw.strip() else default


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target-dir", default=os.environ.get("CARGO_TARGET_DIR") or
                    os.path.join(ROOT, "target"),
                    help="cargo target dir with release/spindle and release/spindle-bench "
                         "($CARGO_TARGET_DIR, else target/)")
    ap.add_argument("--out", help="where results.json and table.md go [<target-dir>/bench]")
    ap.add_argument("--quick", action="store_true",
                    default=os.environ.get("BENCH_QUICK", "").strip().lower()
                    not in ("", "0", "no", "false"),
                    help="smoke run: 1 round, 1 s runs, 100k tuples, 1000 idle connections, "
                         "200 hostile ones ($BENCH_QUICK)")
    ap.add_argument("--rounds", type=int, help="A B rounds per cell [3; $BENCH_ROUNDS]")
    ap.add_argument("--duration", type=float, help="measured seconds per run [5; $BENCH_DURATION]")
    ap.add_argument("--warmup", type=float, help="warm-up seconds per run [1; $BENCH_WARMUP]")
    ap.add_argument("--keys", type=int, help="tuples in the data set [1000000; $BENCH_KEYS]")
    ap.add_argument("--idle", type=int, help="idle connections [10000; $BENCH_IDLE]; 0: no idle cells")
    ap.add_argument("--transactions", type=int,
                    help="1: the interactive-transaction cells (streams, MVCC) [1; "
                         "$BENCH_TXN]; 0: none")
    ap.add_argument("--hostile", type=int,
                    help="connections that never read, next to the 1x1 PING of the "
                         "hostile-neighbours cell [1000; $BENCH_HOSTILE]; 0: no such cell")
    ap.add_argument("--baseline", metavar="BIN", default=os.environ.get("BENCH_BASELINE") or None,
                    help="another spindle binary (say the build before a change) to run as a "
                         "third server in every cell, with a spindle-vs-baseline table "
                         "($BENCH_BASELINE; `make bench BENCH_BASELINE_REV=<rev>` builds one)")
    ap.add_argument("--baseline-label", metavar="TEXT",
                    default=os.environ.get("BENCH_BASELINE_LABEL") or None,
                    help="what to call the baseline in the report [its path; "
                         "$BENCH_BASELINE_LABEL]")
    ap.add_argument("--memtx-memory", type=int, default=2 * 2**30, help="Tarantool memtx_memory")
    ap.add_argument("--verbose", "-v", action="store_true", help="print every driver command")
    args = ap.parse_args(argv)
    quick = args.quick
    if args.rounds is None:
        args.rounds = env_default("BENCH_ROUNDS", int, 1 if quick else 3)
    if args.duration is None:
        args.duration = env_default("BENCH_DURATION", float, 1.0 if quick else 5.0)
    if args.warmup is None:
        args.warmup = env_default("BENCH_WARMUP", float, 0.5 if quick else 1.0)
    if args.keys is None:
        args.keys = env_default("BENCH_KEYS", int, 100_000 if quick else 1_000_000)
    if args.idle is None:
        args.idle = env_default("BENCH_IDLE", int, 1000 if quick else 10_000)
    if args.transactions is None:
        args.transactions = env_default("BENCH_TXN", int, 1)
    if args.hostile is None:
        args.hostile = env_default("BENCH_HOSTILE", int, 200 if quick else 1000)
    if (args.rounds < 1 or args.duration <= 0 or args.keys < 1 or args.idle < 0
            or args.hostile < 0):
        ap.error("--rounds, --duration and --keys must be positive, --idle and --hostile not "
                 "negative")
    args.snapshot_at = 1.0 if quick else 3.0
    args.snapshot_duration = 3.0 if quick else 8.0
    # Servers run in their own data directories: every path must be absolute.
    args.target_dir = os.path.abspath(args.target_dir)
    args.out = args.out or os.path.join(args.target_dir, "bench")
    args.spindle_bin = os.path.join(args.target_dir, "release", "spindle")
    args.bench_bin = os.path.join(args.target_dir, "release", "spindle-bench")
    args.tarantool_bin = shutil.which("tarantool") or "tarantool"
    if args.baseline:
        args.baseline = os.path.abspath(args.baseline)
        args.baseline_label = args.baseline_label or args.baseline
    else:
        args.baseline, args.baseline_label = None, None
    return args


def main(argv=None):
    args = parse_args(argv)
    for path in (args.spindle_bin, args.bench_bin):
        if not os.access(path, os.X_OK):
            sys.exit(f"bench_matrix: {path} is missing: run `cargo build --release -p spindle "
                     f"-p spindle-bench` (or `make bench`)")
    if args.baseline and not os.access(args.baseline, os.X_OK):
        sys.exit(f"bench_matrix: the baseline {args.baseline} is not an executable")
    if shutil.which(args.tarantool_bin) is None:
        sys.exit("bench_matrix: `tarantool` (2.6) is not installed: run `make deps`")
    os.makedirs(args.out, exist_ok=True)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    workdir = tempfile.mkdtemp(prefix="spindle-bench-matrix-")
    started = time.monotonic()
    results = {"machine": machine_info(args),
               "settings": {k: v for k, v in vars(args).items()}}
    matrix = Matrix(args, workdir)
    try:
        matrix.run()
    except KeyboardInterrupt:
        print("bench_matrix: interrupted; servers killed", file=sys.stderr)
        return 130
    except RuntimeError as e:
        matrix.fail("matrix", str(e))
    finally:
        _kill_all()
        if args.verbose or matrix.failures:
            print(f"bench_matrix: server dirs and logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results.update(matrix.results)
    results.setdefault("tables", {"write": [], "idle": [], "fsync": []})
    results["failures"] = matrix.failures
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["elapsed_s"] = time.monotonic() - started
    if args.baseline:
        rows = baseline_rows(results)
        results["baseline"] = {"binary": args.baseline, "label": args.baseline_label,
                               "tolerance": BASELINE_TOLERANCE, "rows": rows,
                               "flagged": sum(1 for r in rows if r["flagged"]),
                               "verdict": baseline_verdict(rows)}
    table = render(results, args)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2, default=str)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table + "\n")
    print(table)
    print(f"\n(took {results['elapsed_s'] / 60:.1f} min; written to {args.out}/table.md and "
          f"results.json)", file=sys.stderr)
    if results.get("baseline"):
        print(f"bench_matrix: spindle vs baseline: {results['baseline']['verdict']}",
              file=sys.stderr)
    if matrix.failures:
        print(f"bench_matrix: {len(matrix.failures)} run(s) FAILED", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
