#!/usr/bin/env python3
"""Runs tarantool-python 1.3.0's own test suite (from its source package, downloaded at test
time and never kept in our tree) against spindle, or against real Tarantool with --oracle.

Its harness starts `tarantool` from PATH with its test/suites/box.lua, polls the admin
console and sets every test up through it; bin/tarantool puts spindle there. The suite's
DB-API module imports `dbapi20` from a git URL this machine cannot reach: dbapi20.py here
stands in for it. Prints the summary and every failing test; exits non-zero when a test fails
that is not listed in expected_failures.txt (each line: test id, then `#` and why).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
VERSION = "1.3.0"


def target_dir():
    return os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))


def fetch_suite():
    """The unpacked source package, downloaded once into the target directory."""
    cache = os.path.join(target_dir(), "tarantool-python-suite")
    root = os.path.join(cache, f"tarantool-{VERSION}")
    if os.path.isdir(os.path.join(root, "test", "suites")):
        return root
    os.makedirs(cache, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:",
                    "--no-deps", f"tarantool=={VERSION}", "-d", cache], check=True)
    with tarfile.open(os.path.join(cache, f"tarantool-{VERSION}.tar.gz")) as tar:
        tar.extractall(cache, filter="data")
    return root


def expected_failures():
    path = os.path.join(HERE, "expected_failures.txt")
    out = {}
    if os.path.exists(path):
        for line in open(path):
            line = line.strip()
            if line and not line.startswith("#"):
                test, _, why = line.partition("#")
                out[test.strip()] = why.strip()
    return out


def run(oracle, pattern):
    root = fetch_suite()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([HERE, root])
    if oracle:
        if shutil.which("tarantool") is None:
            sys.exit("tarantool is not installed (run `make deps`)")
    else:
        spindle = os.environ.get("SPINDLE_BIN", os.path.join(target_dir(), "release", "spindle"))
        if not os.path.exists(spindle):
            sys.exit(f"{spindle} is not built (run `make build`)")
        env["SPINDLE_BIN"] = os.path.abspath(spindle)
        env["PATH"] = os.path.join(HERE, "bin") + os.pathsep + env["PATH"]
    # What the package's `setup.py test` does: discover test/suites, run it verbosely.
    script = ("import sys, unittest\n"
              "loader = unittest.TestLoader()\n"
              f"loader.testNamePatterns = {[f'*{pattern}*'] if pattern else None!r}\n"
              "suite = loader.discover('test', pattern='suites')\n"
              "result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)\n")
    args = [sys.executable, "-c", script]
    proc = subprocess.run(args, cwd=root, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=1500)
    return proc.stdout


def results(output):
    """test id -> ok / skipped / FAIL / ERROR, from unittest's -v lines (`name (id) ... ok`,
    the outcome possibly on a later line after the test's own output) and its error reports."""
    out = {}
    for m in re.finditer(r"^\w+ \(([\w.]+)\)(?:[^\n]*\n)*?[^\n]*?\.\.\. (ok|skipped|FAIL|ERROR)",
                         output, re.M):
        out.setdefault(m.group(1), m.group(2))
    for m in re.finditer(r"^(FAIL|ERROR): \w+ \(([\w.]+)\)", output, re.M):
        out[m.group(2)] = m.group(1)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--oracle", action="store_true", help="run against real Tarantool")
    ap.add_argument("-k", dest="pattern", help="only tests matching this unittest pattern")
    ap.add_argument("--log", help="write the suite's whole output here")
    opts = ap.parse_args()
    output = run(opts.oracle, opts.pattern)
    if opts.log:
        with open(opts.log, "w") as f:
            f.write(output)
    got = results(output)
    summary = [line for line in output.splitlines() if re.match(r"^(Ran \d+|OK|FAILED)", line)]
    counts = {k: sum(1 for v in got.values() if v == k) for k in ("ok", "skipped", "FAIL", "ERROR")}
    print("\n".join(summary))
    print(f"passed {counts['ok']}, skipped {counts['skipped']}, "
          f"failed {counts['FAIL']}, errors {counts['ERROR']}")
    expected = {} if opts.oracle else expected_failures()
    bad = sorted(t for t, r in got.items() if r in ("FAIL", "ERROR") and t not in expected)
    for t in sorted(t for t, r in got.items() if r in ("FAIL", "ERROR") and t in expected):
        print(f"expected failure: {t}  # {expected[t]}")
    for t in bad:
        print(f"UNEXPECTED {got[t]}: {t}")
    if not got:
        print(output[-4000:])
        return 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
