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
# A clean stop on Ctrl-C and a faster start (no job-runner processes).
UI_ENV := MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false

.DEFAULT_GOAL := help
.PHONY: help setup sweep test ui clean lock bench

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

setup: $(STAMP) ## Create .venv and install the pinned dependencies

sweep: $(STAMP) ## Run a named sweep from sweeps/ (SWEEP=default; extra Hydra overrides in ARGS="...")
	$(BIN)/python -m sweeplab sweep=$(SWEEP) $(ARGS)

test: $(STAMP) ## Run the whole test suite
	$(BIN)/python -m pytest $(ARGS)

BENCH_STAMP := $(VENV)/.bench-$(LOCK_HASH)
# Every benchmark under bench/ (memory.py and others join when they exist).
BENCH_SCRIPTS := $(filter-out bench/common.py,$(sort $(wildcard bench/*.py)))

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[test,bench]'
	@rm -f $(VENV)/.bench-*
	@touch $@

bench: $(BENCH_STAMP) ## Run the benchmarks under bench/ (side by side, ratios; extra flags in ARGS="...")
	@for script in $(BENCH_SCRIPTS); do \
	  $(BIN)/python $$script $(ARGS) || exit 1; \
	done

ui: $(STAMP) ## Browse the local MLflow store at http://127.0.0.1:5000
	@mkdir -p $(STORE)
	$(UI_ENV) $(BIN)/mlflow ui --backend-store-uri sqlite:///$(STORE)/mlflow.db --host $(HOST) --port $(PORT) --workers 2

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
