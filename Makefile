# Every target sets itself up: the first run creates .venv and installs the
# pinned dependencies; the install is redone only when the lock file changes.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK_HASH := $(shell cat requirements.lock pyproject.toml | sha1sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(LOCK_HASH)
SWEEP ?= default
ARGS ?=
HOST ?= 127.0.0.1
PORT ?= 5000
STORE := $(CURDIR)/mlruns

.DEFAULT_GOAL := help
.PHONY: help setup sweep check test lint browser ui server tensorboard clean lock bench

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

setup: $(STAMP) ## Create .venv and install the pinned dependencies

sweep: $(STAMP) ## Run a named sweep from sweeps/ (SWEEP=default; extra Hydra overrides in ARGS="...")
	$(BIN)/sweeplab search sweep=$(SWEEP) $(ARGS)

# Tests run in parallel processes (pytest-xdist): many wait on processes, leases and servers. TEST_WORKERS=0: one.
TEST_WORKERS ?= 3
# The tests that neither train a model nor start a process (tests/conftest.py marks those), and one tiny search.
CHECK_TESTS := smoke or not (trains or processes)

check: $(STAMP) ## Run the fast tests and the tests of one tiny search (under 3 minutes on 2 cores)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) -m "$(CHECK_TESTS)" $(ARGS)

test: $(STAMP) browser ## Run the whole test suite
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(ARGS)

lint: $(STAMP) ## Lint and check the formatting of the whole tree (ruff; fix with ARGS=--fix and `ruff format`)
	$(BIN)/ruff check $(ARGS) .
	$(BIN)/ruff format --check .

# tests/test_ui.py drives Debian's Chromium (Playwright's own browser download fails offline);
# without it that test is skipped, so a failed install only warns.
CHROMIUM := /usr/bin/chromium
browser: ## Install Chromium for the browser test (apt-get, as root) when it is missing
	@if [ ! -x $(CHROMIUM) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } >/dev/null \
	    || echo "warning: apt-get install chromium failed; the browser test will be skipped" >&2; \
	fi

BENCH_STAMP := $(VENV)/.bench-$(LOCK_HASH)
# Every benchmark under bench/; each rewrites its own dated section of BENCH_REPORT.
BENCH_SCRIPTS := $(filter-out bench/common.py,$(sort $(wildcard bench/*.py)))
BENCH_REPORT ?= docs/benchmarks.md

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[test,bench]'
	@rm -f $(VENV)/.bench-*
	@touch $@

bench: $(BENCH_STAMP) ## Run the benchmarks under bench/ and write their figures to docs/benchmarks.md (flags in ARGS="...")
	@for script in $(BENCH_SCRIPTS); do \
	  $(BIN)/python $$script --report $(BENCH_REPORT) $(ARGS) || exit 1; \
	done

# MLFLOW_TRACKING_URI, when set, picks the store: a SQLite one is served, a server has its own UI.
ui: $(STAMP) ## Browse MLFLOW_TRACKING_URI, else the store under mlruns/, at http://127.0.0.1:5000
	$(BIN)/sweeplab ui --host $(HOST) --port $(PORT)

# The team's tracking server: PostgreSQL behind it (created and migrated when missing), artifacts
# proxied to ARTIFACTS. A HOST other than loopback needs SWEEPLAB_ADMIN_PASSWORD (or _FILE): basic auth,
# its login store in SERVER_STATE (mode 0700, never served). TLS_CERT and TLS_KEY (PEM files): https only.
DB_URI ?= postgresql+psycopg://postgres@127.0.0.1:5432/sweeplab
ARTIFACTS ?= $(STORE)/server-artifacts
SERVER_STATE ?= $(STORE)/server-state
TLS_CERT ?=
TLS_KEY ?=
# Passed by environment, so that a password in DB_URI never shows in a command line.
export DB_URI ARTIFACTS SERVER_STATE TLS_CERT TLS_KEY
server: $(STAMP) ## MLflow tracking server on PostgreSQL (DB_URI, ARTIFACTS, HOST, PORT, TLS_CERT/TLS_KEY); Ctrl-C stops it
	$(BIN)/sweeplab server --host $(HOST) --port $(PORT)

# Trial logs of searches run with trainer.tensorboard=true: <state_dir>/<experiment>/<search>/tensorboard/<trial>
# (TB_LOGS empty: the default state_dir).
TB_LOGS ?=
TB_PORT ?= 6006
tensorboard: $(STAMP) ## Serve the per-trial TensorBoard logs (trainer.tensorboard=true) at http://127.0.0.1:6006
	$(BIN)/sweeplab tensorboard $(if $(TB_LOGS),--logdir $(TB_LOGS)) --host $(HOST) --port $(TB_PORT)

lock: ## Re-resolve the dependencies and rewrite requirements.lock
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q '.[test]'
	{ echo "# Pinned versions of every package a fresh install gets (pip install -c requirements.lock)."; \
	  echo "# Regenerate with: make lock"; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^sweeplab'; } > requirements.lock
	rm -rf .lock-venv

clean: ## Remove the virtualenv, tuner state and Hydra outputs (keeps mlruns/)
	rm -rf $(VENV) .sweeplab outputs multirun .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
