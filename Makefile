# spindle -- the only entry point for building and testing (see tests/README.md).
#
#   make build   cargo build --release
#   make run     build, then serve on 127.0.0.1:3301 with data in ./spindle-data
#   make deps    install what the integration tests need (idempotent): Tarantool 2.6
#                (Debian package: tarantool + tarantoolctl) and tests/requirements.txt
#   make test    deps + release build + lint + cargo tests + the Python integration suite
#   make lint    rustfmt --check + clippy -D warnings + no dependency circle among a crate's files
#   make bench   release build, then spindle vs Tarantool 2.6 side by side (tools/bench_matrix.py):
#                one table of ratios; BENCH_QUICK=1 for a smoke run, BENCH_ROUNDS=N,
#                BENCH_DURATION=S, BENCH_WARMUP=S, BENCH_KEYS=N, BENCH_IDLE=N, BENCH_TXN=0|1 to change it;
#                writes $(CARGO_TARGET_DIR or target)/bench/{table.md,results.json}.
#                BENCH_BASELINE_REV=<git rev> (or BENCH_BASELINE=<spindle binary>) also runs
#                that build of spindle as a third server and adds a "spindle vs baseline"
#                table (cells more than 3% worse are marked); the revision is built in a git
#                worktree under $(CARGO_TARGET_DIR or target)/bench-baseline, reused per commit
#   make test-integration         only the Python suite (against spindle and Tarantool)
#   make test-tarantool-python    tarantool-python 1.3.0's own test suite against spindle
#   make validate-tests           the Python suite against real Tarantool only
#                                 (DIFF_AGAINST=tarantool, TEST_SERVERS=tarantool)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

CARGO ?= cargo
PYTHON ?= python3
PYTEST_ARGS ?=
SPINDLE_LISTEN ?= 127.0.0.1:3301
SPINDLE_DATA ?= ./spindle-data
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PY_DEPS_OK := import tarantool, asynctnt, msgpack, pytest, pytest_timeout, prometheus_client; \
	assert tarantool.__version__ == "1.3.0", tarantool.__version__; \
	assert asynctnt.__version__ == "2.4.0", asynctnt.__version__

BENCH_QUICK ?=
BENCH_ROUNDS ?=
BENCH_DURATION ?=
BENCH_WARMUP ?=
BENCH_KEYS ?=
BENCH_IDLE ?=
BENCH_HOSTILE ?=
BENCH_TXN ?=
BENCH_BASELINE ?=
BENCH_BASELINE_REV ?=
BENCH_ARGS ?=

.PHONY: build run deps deps-tarantool deps-python test test-rust test-integration test-tarantool-python validate-tests lint fmt bench

build:
	$(CARGO) build --release

run: build
	./target/release/spindle serve --listen $(SPINDLE_LISTEN) --data-dir $(SPINDLE_DATA)

deps: deps-tarantool deps-python

deps-tarantool:
	@if command -v tarantool >/dev/null && command -v tarantoolctl >/dev/null; then \
		echo "deps: $$(tarantool --version | head -1) already installed"; \
	else \
		echo "deps: installing Tarantool 2.6 (Debian packages tarantool, tarantool-common)"; \
		$(SUDO) apt-get update -q; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q tarantool tarantool-common; \
	fi
	@tarantool --version | head -1 | grep -q '^Tarantool 2\.6\.' || \
		{ echo "deps: need Tarantool 2.6.x, found: $$(tarantool --version | head -1)"; exit 1; }

deps-python:
	@if $(PYTHON) -c '$(PY_DEPS_OK)' 2>/dev/null; then \
		echo "deps: Python test dependencies already installed"; \
	else \
		echo "deps: installing tests/requirements.txt"; \
		if ! $(PYTHON) -m pip --version >/dev/null 2>&1; then \
			$(SUDO) apt-get update -q; \
			$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-pip; \
		fi; \
		PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
			$(PYTHON) -m pip install -q --root-user-action=ignore -r tests/requirements.txt; \
		$(PYTHON) -c '$(PY_DEPS_OK)'; \
	fi

test: deps build lint test-rust test-integration test-tarantool-python

test-rust:
	@if command -v cargo-nextest >/dev/null; then \
		$(CARGO) nextest run --workspace --release --no-tests=pass; \
	else \
		$(CARGO) test --workspace --release; \
	fi

test-integration:
	$(PYTHON) -m pytest -q tests $(PYTEST_ARGS)

# tarantool-python 1.3.0's own test suite against spindle (tests/tarantool_python/run_suite.py);
# TPY_ARGS=--oracle runs it against Tarantool 2.6 instead.
TPY_ARGS ?=
test-tarantool-python:
	$(PYTHON) tests/tarantool_python/run_suite.py $(TPY_ARGS)

validate-tests: deps
	DIFF_AGAINST=tarantool TEST_SERVERS=tarantool $(PYTHON) -m pytest -q tests \
		-m "not spindle_only" $(PYTEST_ARGS)

# BENCH_BASELINE_REV: `git worktree add --detach` of that commit in <target>/bench-baseline/src,
# built with CARGO_TARGET_DIR=<target>/bench-baseline/target (the main build is left alone);
# <target>/bench-baseline/built-commit names the commit whose spindle is in there, so the same
# commit is not built twice and another one only rebuilds what changed.
bench: deps-tarantool
	$(CARGO) build --release -p spindle -p spindle-bench
	@baseline='$(BENCH_BASELINE)'; label="$$baseline"; rev='$(BENCH_BASELINE_REV)'; \
	if [ -n "$$rev" ]; then \
		if [ -n "$$baseline" ]; then echo "bench: set BENCH_BASELINE or BENCH_BASELINE_REV, not both"; exit 2; fi; \
		commit=$$(git rev-parse --verify --quiet "$$rev^{commit}") || \
			{ echo "bench: BENCH_BASELINE_REV=$$rev is not a commit"; exit 2; }; \
		tdir="$${CARGO_TARGET_DIR:-target}"; mkdir -p "$$tdir/bench-baseline"; \
		base=$$(cd "$$tdir/bench-baseline" && pwd -P); src="$$base/src"; \
		baseline="$$base/target/release/spindle"; label="$$rev ($${commit:0:10})"; \
		if [ -x "$$baseline" ] && [ "$$(cat "$$base/built-commit" 2>/dev/null)" = "$$commit" ]; then \
			echo "bench: baseline $$label already built: $$baseline"; \
		else \
			echo "bench: building baseline $$label in $$src"; \
			rm -f "$$base/built-commit"; \
			if [ "$$(git -C "$$src" rev-parse --path-format=absolute --git-common-dir 2>/dev/null)" \
					= "$$(git rev-parse --path-format=absolute --git-common-dir)" ] \
					&& [ "$$(git -C "$$src" rev-parse --show-toplevel)" = "$$src" ]; then \
				git -C "$$src" checkout -q --force --detach "$$commit"; \
				git -C "$$src" clean -q -fdx; \
			else \
				rm -rf "$$src"; \
				git worktree add -q -f --detach "$$src" "$$commit"; \
			fi; \
			(cd "$$src" && CARGO_TARGET_DIR="$$base/target" $(CARGO) build --release -p spindle); \
			echo "$$commit" > "$$base/built-commit"; \
		fi; \
	fi; \
	set -x; \
	BENCH_QUICK='$(BENCH_QUICK)' BENCH_ROUNDS='$(BENCH_ROUNDS)' BENCH_DURATION='$(BENCH_DURATION)' \
	BENCH_WARMUP='$(BENCH_WARMUP)' BENCH_KEYS='$(BENCH_KEYS)' BENCH_IDLE='$(BENCH_IDLE)' BENCH_HOSTILE='$(BENCH_HOSTILE)' \
	BENCH_TXN='$(BENCH_TXN)' \
	BENCH_BASELINE="$$baseline" BENCH_BASELINE_LABEL="$$label" \
		$(PYTHON) tools/bench_matrix.py --target-dir "$${CARGO_TARGET_DIR:-target}" $(BENCH_ARGS)

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(PYTHON) tools/module_cycles.py

fmt:
	$(CARGO) fmt --all
