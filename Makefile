# spindle -- the only entry point for building and testing (see tests/README.md).
#
#   make build   cargo build --release
#   make run     build, then serve on 127.0.0.1:3301 with data in ./spindle-data
#   make deps    install what the integration tests need (idempotent): Tarantool 2.6
#                (Debian package: tarantool + tarantoolctl) and tests/requirements.txt
#   make test    deps + release build + cargo tests + the Python integration suite
#   make lint    rustfmt --check + clippy -D warnings
#   make bench   release build, then spindle vs Tarantool 2.6 side by side (tools/bench_matrix.py):
#                one table of ratios; BENCH_QUICK=1 for a smoke run, BENCH_ROUNDS=N,
#                BENCH_DURATION=S, BENCH_WARMUP=S, BENCH_KEYS=N, BENCH_IDLE=N to change it;
#                writes $(CARGO_TARGET_DIR or target)/bench/{table.md,results.json}
#   make test-integration         only the Python suite (against spindle and Tarantool)
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
PY_DEPS_OK := import tarantool, asynctnt, msgpack, pytest, pytest_timeout; \
	assert tarantool.__version__ == "1.3.0", tarantool.__version__; \
	assert asynctnt.__version__ == "2.4.0", asynctnt.__version__

BENCH_QUICK ?=
BENCH_ROUNDS ?=
BENCH_DURATION ?=
BENCH_WARMUP ?=
BENCH_KEYS ?=
BENCH_IDLE ?=
BENCH_ARGS ?=

.PHONY: build run deps deps-tarantool deps-python test test-rust test-integration validate-tests lint fmt bench

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

test: deps build test-rust test-integration

test-rust:
	@if command -v cargo-nextest >/dev/null; then \
		$(CARGO) nextest run --workspace --release --no-tests=pass; \
	else \
		$(CARGO) test --workspace --release; \
	fi

test-integration:
	$(PYTHON) -m pytest -q tests $(PYTEST_ARGS)

validate-tests: deps
	DIFF_AGAINST=tarantool TEST_SERVERS=tarantool $(PYTHON) -m pytest -q tests \
		-m "not spindle_only" $(PYTEST_ARGS)

bench: deps-tarantool
	$(CARGO) build --release -p spindle -p spindle-bench
	BENCH_QUICK='$(BENCH_QUICK)' BENCH_ROUNDS='$(BENCH_ROUNDS)' BENCH_DURATION='$(BENCH_DURATION)' \
	BENCH_WARMUP='$(BENCH_WARMUP)' BENCH_KEYS='$(BENCH_KEYS)' BENCH_IDLE='$(BENCH_IDLE)' BENCH_HOSTILE='$(BENCH_HOSTILE)' \
		$(PYTHON) tools/bench_matrix.py --target-dir "$${CARGO_TARGET_DIR:-target}" $(BENCH_ARGS)

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
