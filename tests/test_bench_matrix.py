"""The pure parts of tools/bench_matrix.py (`make bench`): medians, ratios, goals, RSS parsing
and sampling, the per-second latency scan, the hostile-neighbours summary, the comparison with a
baseline build (--baseline) and the markdown tables. No server is started here; the script
itself is exercised by `make bench BENCH_QUICK=1`."""

import importlib.util
import os
import threading

import pytest

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                     "tools", "bench_matrix.py")
_spec = importlib.util.spec_from_file_location("bench_matrix", _PATH)
bm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bm)


def test_median_ignores_missing_values():
    assert bm.median([3, 1, 2]) == 2
    assert bm.median([4, 1]) == 2.5
    assert bm.median([None, 5, None]) == 5
    assert bm.median([]) is None
    assert bm.median([None]) is None


def test_ratio():
    assert bm.ratio(3, 2) == 1.5
    assert bm.ratio(None, 2) is None
    assert bm.ratio(2, None) is None
    assert bm.ratio(2, 0) is None


def test_formatting():
    assert bm.fmt_rate(1_512_923) == "1.51M"
    assert bm.fmt_rate(28_340) == "28.3k"
    assert bm.fmt_rate(950) == "950"
    assert bm.fmt_rate(None) == "FAILED"
    assert bm.fmt_us(141.4) == "141 µs"
    assert bm.fmt_us(37_104.2) == "37.1 ms"
    assert bm.fmt_us(None) == "—"
    assert bm.fmt_ratio(1.004) == "1.00"
    assert bm.fmt_ratio(None) == "—"
    assert bm.fmt_bytes(512) == "512 B"
    assert bm.fmt_bytes(20 * 1024) == "20.0 KiB"
    assert bm.fmt_bytes(3 * 2**20) == "3.0 MiB"
    assert bm.shape(4, 64) == "4×64"


def test_goals():
    assert bm.goal_of("replace", 50, 1, "fsync") == 3.0
    assert bm.goal_of("replace", 4, 64, "fsync") == 1.0
    assert bm.goal_of("ping", 1, 1, "write") == 1.0
    assert bm.goal_mark(1.0, 1.0) == "≥ 1 met"
    assert bm.goal_mark(2.9, 3.0) == "≥ 3 NOT met"
    assert bm.goal_mark(None, 1.0) == "FAILED"
    assert bm.max_goal_mark(37_000.0, 100_000.0) == "< 100.0 ms met"
    assert bm.max_goal_mark(100_000.0, 100_000.0) == "< 100.0 ms NOT met"
    assert bm.max_goal_mark(None, 100_000.0) == "FAILED"


def test_vmrss_and_per_item():
    status = "Name:\tspindle\nVmPeak:\t  999 kB\nVmRSS:\t  170180 kB\nRssAnon:\t 1 kB\n"
    assert bm.parse_vmrss(status) == 170180 * 1024
    assert bm.parse_vmrss("Name: x\n") is None
    assert bm.per_item(1000, 3000, 100) == 20
    assert bm.per_item(None, 3000, 100) is None
    assert bm.per_item(1000, 3000, 0) is None


def test_summarize_run_and_worst_latency():
    report = {"total": {"throughput_rps": 1000.0, "errors": 0,
                        "latency_us": {"p50": 50.0, "p99": 90.0, "max": 700.0}},
              "idle_lost": 0, "hostile_sent": 600_000, "hostile_lost": 2,
              "per_second": [{"t": 1, "ok": 10, "max_us": 300.0},
                             {"t": 2, "ok": 10, "max_us": 200.0},
                             {"t": 3, "ok": 10, "max_us": 9000.0},
                             {"t": 4, "ok": 0, "max_us": 99999.0}]}
    s = bm.summarize_run(report)
    assert (s["rps"], s["p50_us"], s["p99_us"], s["errors"], s["idle_lost"]) == \
        (1000.0, 50.0, 90.0, 0, 0)
    assert (s["max_us"], s["hostile_sent"], s["hostile_lost"]) == (700.0, 600_000, 2)
    assert bm.summarize_run({})["hostile_sent"] is None
    # Seconds without a reply do not count; `through_s` keeps only the first seconds.
    assert bm.worst_latency(report["per_second"]) == 9000.0
    assert bm.worst_latency(report["per_second"], through_s=2) == 300.0
    assert bm.worst_latency([]) is None


def test_cell_summary_takes_medians_and_a_failed_round_fails_the_cell():
    runs = [{"rps": 100.0, "p50_us": 10.0, "failed": False},
            {"rps": 300.0, "p50_us": 30.0, "failed": False}]
    assert bm.cell_summary(runs) == {"rps": 200.0, "p50_us": 20.0, "failed": False}
    failed = runs + [{"rps": None, "failed": True}]
    assert bm.cell_summary(failed) == {"rps": None, "p50_us": None, "failed": True}
    assert bm.cell_summary([])["failed"]


def _row(workload, conns, depth, mode, s_rps, t_rps, s_p50=10.0, t_p50=20.0, idle=0):
    return {"workload": workload, "conns": conns, "depth": depth, "wal_mode": mode, "idle": idle,
            "goal": bm.goal_of(workload, conns, depth, mode),
            "spindle": {"rps": s_rps, "p50_us": s_p50},
            "tarantool": {"rps": t_rps, "p50_us": t_p50}}


def test_throughput_table():
    rows = [_row("ping", 1, 1, "write", 30_000.0, 24_000.0),
            _row("replace", 50, 1, "fsync", 60_000.0, 30_000.0),
            _row("select", 4, 64, "write", None, 500_000.0, s_p50=None),
            _row("ping", 50, 1, "write", 90_000.0, 100_000.0, idle=10000)]
    lines = bm.throughput_table(rows).splitlines()
    assert lines[0].startswith("| workload | conns×depth | wal_mode | spindle rps | Tarantool rps "
                               "| ratio |")
    assert len(lines) == 2 + len(rows)
    assert lines[2] == ("| ping | 1×1 | write | 30.0k | 24.0k | 1.25 | ≥ 1 met | 10 µs | 20 µs "
                        "| 0.50 |")
    assert "| replace | 50×1 | fsync | 60.0k | 30.0k | 2.00 | ≥ 3 NOT met |" in lines[3]
    assert "| select | 4×64 | write | FAILED | 500.0k | — | FAILED | — |" in lines[4]
    assert lines[5].startswith("| ping +10000 idle | 50×1 |")


def test_idle_table_shows_what_each_server_kept():
    base = _row("ping", 4, 64, "write", 1_000_000.0, 2_000_000.0)
    idle = _row("ping", 4, 64, "write", 900_000.0, 500_000.0, idle=10000)
    lines = bm.idle_table([(base, idle)], 10000).splitlines()
    assert "(+10000 idle)" in lines[0]
    assert lines[2] == "| ping | 4×64 | 900.0k | 90% | 500.0k | 25% | 1.80 |"


def test_memory_and_snapshot_tables():
    side = {"rss_start": 5 * 2**20, "rss_loaded": 105 * 2**20, "per_tuple": 104.9,
            "rss_idle": 200 * 2**20, "per_connection": 16000.0}
    other = dict(side, per_tuple=209.8, per_connection=None)
    text = bm.memory_table({"spindle": side, "tarantool": other, "tuples": 1_000_000,
                            "idle": 10_000})
    assert "| resident bytes per tuple | 104.9 B | 209.8 B | 0.50 |" in text
    assert "| resident bytes per idle connection | 16,000 B | FAILED | — |" in text
    assert "RSS with 1,000,000 tuples" in text
    snap = {"shape": ["replace", 16, 16], "tuples": 1_000_000,
            "spindle": {"worst_us": 20_000.0, "before_us": 5_000.0, "rps": 1e5, "snapshot_s": 0.2},
            "tarantool": {"worst_us": 40_000.0, "before_us": 5_000.0, "rps": 2e5,
                          "snapshot_s": None}}
    text = bm.snapshot_table(snap)
    assert "| worst per-second max latency, snapshot running | 20.0 ms | 40.0 ms | 0.50 |" in text
    assert "| time to write the snapshot | 0.20 s | — | — |" in text


def _hostile_run(p50, p99, mx, peak, sent=3_000_000, lost=0, failed=False):
    return {"p50_us": p50, "p99_us": p99, "max_us": mx, "rss_peak": peak,
            "hostile_sent": sent, "hostile_lost": lost, "failed": failed}


def test_hostile_summary_medians_worst_max_and_peak_memory():
    runs = [_hostile_run(40.0, 90.0, 2_000.0, 150 * 2**20, sent=2_000_000),
            _hostile_run(60.0, 110.0, 9_000.0, 120 * 2**20, sent=3_000_000, lost=1),
            _hostile_run(50.0, 100.0, 1_000.0, 130 * 2**20, sent=2_500_000)]
    h = bm.hostile_summary(runs, 100 * 2**20)
    assert (h["p50_us"], h["p99_us"], h["max_us"]) == (50.0, 100.0, 9_000.0)
    assert (h["rss_before"], h["rss_peak"], h["rss_growth"]) == \
        (100 * 2**20, 150 * 2**20, 50 * 2**20)
    assert (h["hostile_sent"], h["hostile_lost"], h["failed"]) == (2_500_000, 1, False)
    # A failed round fails the latencies; the memory that was sampled still stands.
    failed = bm.hostile_summary(runs + [_hostile_run(None, None, None, 999, failed=True)],
                                100 * 2**20)
    assert failed["failed"] and failed["max_us"] is None and failed["p50_us"] is None
    assert failed["rss_peak"] == 150 * 2**20
    nothing = bm.hostile_summary([], None)
    assert nothing["failed"] and nothing["rss_peak"] is None and nothing["rss_growth"] is None


def test_hostile_table():
    spindle = bm.hostile_summary([_hostile_run(45.0, 80.0, 1_200.0, 180 * 2**20,
                                               sent=290_000)], 100 * 2**20)
    tarantool = bm.hostile_summary([_hostile_run(60.0, 20_000.0, 250_000.0, 2 * 2**30)],
                                   120 * 2**20)
    h = {"shape": ["ping", 1, 1], "connections": 1000, "depth": 3000, "goal_us": 100_000.0,
         "spindle": spindle, "tarantool": tarantool}
    lines = bm.hostile_table(h).splitlines()
    assert lines[0] == ("| ping 1×1 next to 1,000 × 3,000 unread SELECTs | spindle | Tarantool "
                        "| ratio |")
    assert "| PING p50 (median) | 45 µs | 60 µs | 0.75 |" in lines
    assert "| PING p99 (median) | 80 µs | 20.0 ms | 0.00 |" in lines
    assert "| PING max (worst round) | 1200 µs | 250.0 ms | 0.00 |" in lines
    assert "| goal: PING max | < 100.0 ms met | < 100.0 ms NOT met | |" in lines
    assert "| peak RSS during the cell | 180.0 MiB | 2048.0 MiB | 0.09 |" in lines
    assert "| RSS growth (peak − before) | 80.0 MiB | 1928.0 MiB | 0.04 |" in lines
    assert ("| hostile requests written (median) | 290,000 of 3,000,000 "
            "| 3,000,000 of 3,000,000 | |") in lines
    assert "| hostile connections closed by the server | 0 | 0 | |" in lines
    h["spindle"] = bm.hostile_summary([_hostile_run(None, None, None, None, sent=None,
                                                    lost=None, failed=True)], None)
    text = bm.hostile_table(h)
    assert "| PING max (worst round) | — | 250.0 ms | — |" in text
    assert "| goal: PING max | FAILED | < 100.0 ms NOT met | |" in text
    assert "| peak RSS during the cell | FAILED | 2048.0 MiB | — |" in text


def test_rss_sampler_keeps_the_peak_and_skips_gaps():
    readings = [100, None, 300, OSError("restarting"), 200]
    exhausted = threading.Event()

    def read():
        if not readings:
            exhausted.set()
            return None
        value = readings.pop(0)
        if isinstance(value, Exception):
            raise value
        return value

    sampler = bm.RssSampler(read, interval=0.001).start()
    assert exhausted.wait(30)
    assert sampler.stop() == 300
    assert sampler.samples == 3


def test_settings_from_environment(monkeypatch):
    for name in ("BENCH_QUICK", "BENCH_ROUNDS", "BENCH_DURATION", "BENCH_WARMUP", "BENCH_KEYS",
                 "BENCH_IDLE", "BENCH_HOSTILE", "BENCH_BASELINE", "BENCH_BASELINE_LABEL"):
        monkeypatch.delenv(name, raising=False)
    full = bm.parse_args(["--target-dir", "/t"])
    assert (full.rounds, full.duration, full.warmup, full.keys, full.idle, full.hostile) == \
        (3, 5.0, 1.0, 1_000_000, 10_000, 1000)
    assert full.spindle_bin == "/t/release/spindle" and full.out == "/t/bench"
    monkeypatch.setenv("BENCH_QUICK", "1")
    monkeypatch.setenv("BENCH_ROUNDS", "4")
    quick = bm.parse_args(["--target-dir", "/t"])
    assert (quick.rounds, quick.duration, quick.keys, quick.idle, quick.hostile) == \
        (4, 1.0, 100_000, 1000, 200)
    monkeypatch.setenv("BENCH_HOSTILE", "0")
    assert bm.parse_args(["--target-dir", "/t"]).hostile == 0
    assert bm.parse_args(["--target-dir", "/t", "--hostile", "50"]).hostile == 50
    monkeypatch.setenv("BENCH_QUICK", "0")
    assert not bm.parse_args(["--target-dir", "/t"]).quick
    with pytest.raises(SystemExit):
        bm.parse_args(["--rounds", "0"])
    with pytest.raises(SystemExit):
        bm.parse_args(["--hostile", "-1"])


# -- spindle against a baseline build (--baseline) -------------------------------------------

def test_baseline_compare_marks_more_than_three_percent_worse():
    # Throughput: higher is better; 0.97 itself is still within the rule.
    assert bm.baseline_compare(100.0, 100.0, True) == (1.0, "ok", False)
    assert bm.baseline_compare(97.0, 100.0, True) == (0.97, "ok", False)
    assert bm.baseline_compare(150.0, 100.0, True) == (1.5, "ok", False)
    r, mark, flagged = bm.baseline_compare(96.0, 100.0, True)
    assert (r, mark, flagged) == (0.96, "SLOWER by 4.0%", True)
    # Latency and memory: lower is better; 1.03 itself is still within the rule.
    assert bm.baseline_compare(103.0, 100.0, False) == (1.03, "ok", False)
    assert bm.baseline_compare(50.0, 100.0, False) == (0.5, "ok", False)
    assert bm.baseline_compare(112.0, 100.0, False)[1:] == ("WORSE by 12.0%", True)
    # spindle without a figure: the rule cannot be checked. Only the baseline without one
    # (say an old build that starved a client): spindle cannot have got worse than that.
    assert bm.baseline_compare(None, 100.0, True) == (None, "FAILED", True)
    assert bm.baseline_compare(None, None, True) == (None, "FAILED", True)
    assert bm.baseline_compare(100.0, None, False) == (None, "baseline FAILED", False)
    # No meaningful ratio against a baseline figure that is not positive (an RSS growth of 0).
    assert bm.baseline_compare(5.0, 0, False) == (None, "n/a", False)
    assert bm.baseline_compare(5.0, -10.0, False) == (None, "n/a", False)
    # Another tolerance.
    assert bm.baseline_compare(96.0, 100.0, True, tolerance=0.05)[1] == "ok"


def _with_baseline(row, b_rps):
    return dict(row, baseline={"rps": b_rps, "p50_us": 10.0})


def _baseline_results():
    side = {"rss_start": 5 * 2**20, "rss_loaded": 105 * 2**20, "per_tuple": 104.9,
            "rss_idle": 200 * 2**20, "per_connection": 16000.0}
    hostile = bm.hostile_summary([_hostile_run(45.0, 80.0, 1_200.0, 180 * 2**20)], 100 * 2**20)
    return {
        "tables": {
            "write": [_with_baseline(_row("ping", 1, 1, "write", 30_000.0, 24_000.0), 29_000.0),
                      _with_baseline(_row("select", 4, 64, "write", 900_000.0, 1e6), 1e6)],
            "idle": [_with_baseline(_row("select", 4, 64, "write", 800_000.0, 9e5, idle=1000),
                                    None),
                     _with_baseline(_row("ping", 1, 1, "write", None, 9e5, idle=1000), 1e6)],
            "fsync": [_with_baseline(_row("replace", 50, 1, "fsync", 60_000.0, 30_000.0),
                                     61_000.0)]},
        "memory": {"tuples": 100_000, "idle": 1000, "spindle": side, "tarantool": side,
                   "baseline": dict(side, per_tuple=100.0)},
        "snapshot": {"shape": ["replace", 16, 16], "tuples": 100_000,
                     "spindle": {"worst_us": 20_000.0}, "tarantool": {"worst_us": 1.0},
                     "baseline": {"worst_us": 21_000.0}},
        "hostile": {"shape": ["ping", 1, 1], "connections": 200, "depth": 3000,
                    "spindle": hostile, "tarantool": hostile,
                    "baseline": dict(hostile, p99_us=60.0, rss_growth=0)},
        "load": [{"server": n, "wal_mode": m, "seconds": 1.0,
                  "rps": 5e4 if (n, m) == ("spindle", "write") else 1e5}
                 for m in ("write", "fsync") for n in ("spindle", "tarantool", "baseline")],
    }


def test_baseline_rows_cover_every_section_in_order():
    rows = bm.baseline_rows(_baseline_results())
    cells = [r["cell"] for r in rows]
    assert cells[:5] == ["ping 1×1 write", "select 4×64 write", "replace 50×1 fsync",
                         "select 4×64 write +1,000 idle", "ping 1×1 write +1,000 idle"]
    assert cells[5] == "replace 16×16: worst latency while a snapshot is written"
    assert cells[6:11] == [f"ping 1×1 next to 200 hostile: {w}" for w in
                           ("PING p50", "PING p99", "PING max", "peak RSS", "RSS growth")]
    assert cells[11:16] == ["memory: RSS after start", "memory: RSS with 100,000 tuples",
                            "memory: resident bytes per tuple",
                            "memory: RSS with 1,000 idle connections",
                            "memory: resident bytes per idle connection"]
    assert cells[16:] == ["bulk load, write (one run each)", "bulk load, fsync (one run each)"]
    by = {r["cell"]: r for r in rows}
    assert by["ping 1×1 write"]["mark"] == "ok" and by["ping 1×1 write"]["higher_is_better"]
    assert by["select 4×64 write"]["mark"] == "SLOWER by 10.0%"
    assert by["select 4×64 write +1,000 idle"]["mark"] == "baseline FAILED"
    assert by["ping 1×1 write +1,000 idle"]["mark"] == "FAILED"
    assert by["replace 50×1 fsync"]["ratio"] == pytest.approx(60 / 61)
    assert by["replace 50×1 fsync"]["mark"] == "ok"  # 1.6% slower: within the rule
    snap = by["replace 16×16: worst latency while a snapshot is written"]
    assert (snap["higher_is_better"], snap["mark"]) == (False, "ok")
    assert by["ping 1×1 next to 200 hostile: PING p99"]["mark"] == "WORSE by 33.3%"
    assert by["ping 1×1 next to 200 hostile: RSS growth"]["mark"] == "n/a"
    assert by["memory: resident bytes per tuple"]["mark"] == "WORSE by 4.9%"
    assert by["memory: resident bytes per tuple"]["kind"] == "per"
    # One short run each: shown, not judged.
    load = by["bulk load, write (one run each)"]
    assert (load["ratio"], load["mark"], load["flagged"]) == \
        (0.5, "not judged: SLOWER by 50.0%", False)
    assert by["bulk load, fsync (one run each)"]["mark"] == "ok"
    assert [r["cell"] for r in rows if r["flagged"]] == [
        "select 4×64 write", "ping 1×1 write +1,000 idle",
        "ping 1×1 next to 200 hostile: PING p99", "memory: resident bytes per tuple"]


def test_baseline_rows_are_empty_without_a_baseline():
    results = {"tables": {"write": [_row("ping", 1, 1, "write", 1.0, 1.0)], "idle": [],
                          "fsync": []},
               "memory": {"tuples": 1, "idle": 1, "spindle": {}, "tarantool": {}},
               "snapshot": None, "hostile": None,
               "load": [{"server": "spindle", "wal_mode": "write", "rps": 1.0}]}
    assert bm.baseline_rows(results) == []
    assert bm.baseline_rows({}) == []


def test_baseline_table_and_verdict():
    rows = bm.baseline_rows(_baseline_results())
    lines = bm.baseline_table(rows).splitlines()
    assert lines[0] == ("| cell | better | spindle | baseline | spindle / baseline "
                        "| ≤ 3% worse |")
    assert lines[1] == "|---|---|---:|---:|---:|---|"
    assert len(lines) == 2 + len(rows)
    assert "| ping 1×1 write | higher | 30.0k | 29.0k | 1.034 | ok |" in lines
    assert "| select 4×64 write | higher | 900.0k | 1.00M | 0.900 | SLOWER by 10.0% |" in lines
    assert ("| select 4×64 write +1,000 idle | higher | 800.0k | FAILED | — "
            "| baseline FAILED |") in lines
    assert "| ping 1×1 write +1,000 idle | higher | FAILED | 1.00M | — | FAILED |" in lines
    assert ("| bulk load, write (one run each) | higher | 50.0k | 100.0k | 0.500 "
            "| not judged: SLOWER by 50.0% |") in lines
    assert ("| replace 16×16: worst latency while a snapshot is written | lower | 20.0 ms "
            "| 21.0 ms | 0.952 | ok |") in lines
    assert ("| ping 1×1 next to 200 hostile: PING p99 | lower | 80 µs | 60 µs | 1.333 "
            "| WORSE by 33.3% |") in lines
    assert ("| ping 1×1 next to 200 hostile: RSS growth | lower | 80.0 MiB | 0 B | — "
            "| n/a |") in lines
    assert ("| memory: resident bytes per tuple | lower | 104.9 B | 100.0 B | 1.049 "
            "| WORSE by 4.9% |") in lines
    assert ("| memory: resident bytes per idle connection | lower | 16,000.0 B | 16,000.0 B "
            "| 1.000 | ok |") in lines
    verdict = bm.baseline_verdict(rows)
    assert verdict.startswith(f"4 of {len(rows)} figures are more than 3% worse than the "
                              "baseline or failed: select 4×64 write (SLOWER by 10.0%); "
                              "ping 1×1 write +1,000 idle (FAILED); ")
    ok = [r for r in rows if not r["flagged"]]
    assert bm.baseline_verdict(ok) == \
        f"All {len(ok)} figures are within 3% of the baseline or better."
    assert bm.baseline_verdict([]) == "Nothing was compared with the baseline."


def _render_results(with_baseline):
    results = _baseline_results()
    if not with_baseline:
        for section in ("memory", "snapshot", "hostile"):
            results[section] = {k: v for k, v in results[section].items() if k != "baseline"}
        results["tables"] = {k: [{f: v for f, v in row.items() if f != "baseline"}
                                 for row in rows] for k, rows in results["tables"].items()}
        results["load"] = [e for e in results["load"] if e["server"] != "baseline"]
    results["hostile"].update(goal_us=100_000.0, sample_s=0.1)
    results["snapshot"]["spindle"].update(before_us=1.0, rps=1.0, snapshot_s=0.1)
    results["snapshot"]["tarantool"].update(before_us=1.0, rps=1.0, snapshot_s=0.1)
    results.update(machine={"date": "d", "cpus": 2, "cpu": "c", "memory": "1 GiB", "kernel": "k",
                            "tarantool": ["Tarantool 2.6.0"], "spindle_commit": "abc1234",
                            "loadavg_start": (0.5,), "loadavg_end": (0.5,)},
                   restarts=[], failures=[])
    if with_baseline:
        rows = bm.baseline_rows(results)
        results["baseline"] = {"binary": "/b/spindle", "label": "HEAD~1 (0123456789)",
                               "tolerance": bm.BASELINE_TOLERANCE, "rows": rows}
    return results


def test_render_adds_the_baseline_only_when_given(monkeypatch):
    for name in ("BENCH_BASELINE", "BENCH_BASELINE_LABEL", "BENCH_QUICK"):
        monkeypatch.delenv(name, raising=False)
    args = bm.parse_args(["--target-dir", "/t"])
    plain = bm.render(_render_results(False), args)
    assert "baseline" not in plain.lower()
    assert "round(s) A B per cell" in plain
    assert "| wal_mode | spindle | Tarantool |\n" in plain
    text = bm.render(_render_results(True), args)
    assert "round(s) A B C per cell" in text
    assert "Baseline: HEAD~1 (0123456789) (`/b/spindle`)" in text
    assert "| wal_mode | spindle | Tarantool | baseline |" in text
    assert "## spindle vs baseline" in text
    assert "| select 4×64 write | higher | 900.0k | 1.00M | 0.900 | SLOWER by 10.0% |" in text
    assert "4 of 18 figures are more than 3% worse than the baseline or failed" in text
    assert "smoke test, not a verdict" not in text  # 3 rounds
    args.rounds = 1
    assert "Only 1 round(s) of 5 s per cell" in bm.render(_render_results(True), args)
    assert "smoke test" not in bm.render(_render_results(False), args)
    # Everything of the run without a baseline is still there, unchanged.
    section = text.split("## spindle vs baseline")[0]
    for table in (bm.throughput_table(_render_results(True)["tables"]["write"]
                                      + _render_results(True)["tables"]["fsync"]),
                  bm.memory_table(_render_results(True)["memory"])):
        assert table in section and table in plain


def test_baseline_settings(monkeypatch, tmp_path):
    for name in ("BENCH_BASELINE", "BENCH_BASELINE_LABEL"):
        monkeypatch.delenv(name, raising=False)
    args = bm.parse_args(["--target-dir", "/t"])
    assert args.baseline is None and args.baseline_label is None
    monkeypatch.chdir(tmp_path)
    args = bm.parse_args(["--target-dir", "/t", "--baseline", "old/spindle"])
    assert args.baseline == str(tmp_path / "old" / "spindle")
    assert args.baseline_label == args.baseline
    monkeypatch.setenv("BENCH_BASELINE", "/b/spindle")
    monkeypatch.setenv("BENCH_BASELINE_LABEL", "HEAD~3 (891fbc9a57)")
    args = bm.parse_args(["--target-dir", "/t"])
    assert (args.baseline, args.baseline_label) == ("/b/spindle", "HEAD~3 (891fbc9a57)")
    # Empty, as the Makefile passes them when no baseline is asked for: none.
    monkeypatch.setenv("BENCH_BASELINE", "")
    monkeypatch.setenv("BENCH_BASELINE_LABEL", "")
    assert bm.parse_args(["--target-dir", "/t"]).baseline is None


def test_the_baseline_runs_third_with_spindles_command_line(monkeypatch, tmp_path):
    monkeypatch.delenv("BENCH_BASELINE_LABEL", raising=False)
    monkeypatch.setenv("BENCH_BASELINE", "/b/spindle")
    args = bm.parse_args(["--target-dir", "/t"])
    servers = bm.Matrix(args, str(tmp_path)).servers("write")
    assert [s.name for s in servers] == ["spindle", "tarantool", "baseline"]
    spindle, _, baseline = servers
    assert isinstance(baseline, bm.Spindle)  # snapshots by SIGUSR1, readiness by its log
    assert baseline.dir != spindle.dir and baseline.port != spindle.port
    assert baseline.command()[0] == "/b/spindle" and spindle.command()[0] == "/t/release/spindle"
    norm = (lambda s: [a.replace(s.addr, "ADDR").replace(s.dir, "DIR") for a in s.command()[1:]])
    assert norm(baseline) == norm(spindle)
    monkeypatch.setenv("BENCH_BASELINE", "")
    args = bm.parse_args(["--target-dir", "/t"])
    assert [s.name for s in bm.Matrix(args, str(tmp_path / "x")).servers("fsync")] == \
        ["spindle", "tarantool"]


def test_a_starved_pinging_client_fails_the_hostile_cell(monkeypatch, tmp_path):
    """No reply at all is not a latency of 0 µs (an old build, given as the baseline, starved
    the client outright in a smoke run and showed p50 = max = 0 µs)."""
    for name in ("BENCH_BASELINE", "BENCH_BASELINE_LABEL", "BENCH_QUICK"):
        monkeypatch.delenv(name, raising=False)
    args = bm.parse_args(["--target-dir", "/t", "--rounds", "1", "--hostile", "10"])
    matrix = bm.Matrix(args, str(tmp_path))
    monkeypatch.setattr(bm.time, "sleep", lambda _s: None)

    class FakeServer:
        def __init__(self, name):
            self.name = name

        def death(self):
            return None

        def rss(self):
            return 1000

    def run_on(srv, *_args, **_kwargs):
        rps = 0.0 if srv.name == "baseline" else 500.0
        lat = 0.0 if srv.name == "baseline" else 50.0
        return {"total": {"throughput_rps": rps, "errors": 0,
                          "latency_us": {"p50": lat, "p99": lat, "max": lat}}}, None

    monkeypatch.setattr(matrix, "run_on", run_on)
    matrix.hostile_neighbours([FakeServer("spindle"), FakeServer("baseline")])
    h = matrix.results["hostile"]
    assert h["spindle"]["max_us"] == 50.0 and not h["spindle"]["failed"]
    assert h["baseline"]["failed"] and h["baseline"]["max_us"] is None
    assert "got no reply" in h["runs"]["baseline"][0]["error"]
    assert len(matrix.failures) == 1 and "on baseline" in matrix.failures[0]


def test_abort_rate_of_a_counter_run():
    assert bm.abort_rate({"total": {"ok": 30, "errors": 70}}) == 0.7
    assert bm.abort_rate({"total": {"ok": 5}}) == 0.0
    assert bm.abort_rate({"total": {}}) is None
    assert bm.abort_rate(None) is None


def test_txn_table_compares_mvcc_on_and_off_and_rows_per_second():
    rows = [
        {"workload": "replace", "conns": 4, "depth": 16,
         "spindle": {"rps": 200e3}, "spindle-mvcc": {"rps": 100e3}, "tarantool": {"rps": 150e3}},
        {"workload": "txn", "conns": 4, "depth": 16, "spindle-mvcc": {"rps": 30e3}},
    ]
    text = bm.txn_table(rows, {"rps": 20e3, "p50_us": 300.0, "abort_rate": 0.25})
    assert "| replace 4×16 | 200.0k | 100.0k | 150.0k | 0.50 |" in text
    assert "| txn 4×16 txn/s | — | 30.0k | — | — |" in text
    assert "150.0k rows/s against 100.0k autocommit REPLACEs/s" in text
    assert "ratio 1.50" in text
    assert "20.0k commits/s, abort rate 25%" in text
    assert "abort rate" not in bm.txn_table(rows, None)


def test_stream_workloads_run_on_the_mvcc_spindle_only(tmp_path):
    srv = bm.SpindleMvcc(str(tmp_path), "write", "/bin/spindle")
    assert srv.name == "spindle-mvcc"
    assert srv.command()[-3:] == bm.MVCC_FLAGS
    assert set(bm.STREAM_WORKLOADS) <= {w for w, *_ in bm.TXN_CELLS + [bm.COUNTER_CELL]}


def test_the_transactions_section_has_servers_of_its_own(tmp_path):
    args = bm.parse_args(["--target-dir", str(tmp_path), "--quick"])
    m = bm.Matrix(args, str(tmp_path))
    first = {s.dir for s in m.servers("write")}
    again = m.txn_servers()
    assert [s.name for s in again] == ["spindle", "spindle-mvcc", "tarantool"]
    assert not first & {s.dir for s in again}
