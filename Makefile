# churnwise: every target creates (or reuses) the virtual environment in .venv first.
# Pass Hydra overrides with ARGS, e.g.  make train ARGS="debug=default data.generator.seed=7"

.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
ARGS ?=
PACKAGES := pipeline churnwise analytics decisions models features
# Tests run on two workers, a test file per worker at a time (its module fixtures built once); override with
# PYTEST_WORKERS= for one process, e.g. to use pdb.
PYTEST_WORKERS ?= -n 2 --dist loadfile

.PHONY: help setup lock data validate features train tune promote score readout report test test-fast browser postgres bench bench-score bench-quality bench-clv bench-decisions lint format ui clean clean-data

help: ## List the targets and what they do
	@echo "churnwise: make <target> [ARGS='hydra overrides']"
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-13s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check uv
	@echo "Installing churnwise and its pinned dependencies into $(VENV) (uv)..."
	@# Bytecode compiled once here: with PYTHONDONTWRITEBYTECODE set (as on CI), every stage would otherwise
	@# compile mlflow, pandas, ... from source at each start (about 4 s of a 5 s start).
	@$(UV) pip install --quiet --compile-bytecode --python $(PY) -r requirements.lock -e '.[dev]'
	@touch $@

setup: $(STAMP) ## Create or update the virtual environment in .venv (Python 3.11, uv, pinned lock)

lock: ## Re-resolve requirements.lock from pyproject.toml (run after changing dependencies)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check uv
	$(UV) pip compile pyproject.toml --extra dev --python-version 3.11 --quiet -o requirements.lock

data: $(STAMP) ## Generate the demo data set (always regenerates; same seed, same files)
	$(PY) -m pipeline.generate $(ARGS)

validate: $(STAMP) ## Check the configured input tables against the data contract
	$(PY) -m pipeline.validate $(ARGS)

features: $(STAMP) ## Build the point-in-time feature table and labels (Parquet + manifest)
	$(PY) -m pipeline.features $(ARGS)

train: $(STAMP) ## Make demo data if none, validate, build features, train and track the run in MLflow
	$(PY) -m pipeline.train $(ARGS)

tune: $(STAMP) ## Optuna search over the model's parameters (nested MLflow runs), then train the best
	$(PY) -m pipeline.tune $(ARGS)

promote: $(STAMP) ## Compare challenger and champion on the latest test slice; move the champion alias if better
	$(PY) -m pipeline.promote $(ARGS)

score: $(STAMP) ## Score active customers with the champion; value, ladder, reasons, actions within budget (outputs/scores)
	$(PY) -m pipeline.score $(ARGS)

readout: $(STAMP) ## Did the last campaigns work? Treated vs control per action of past scoring runs whose horizon has passed
	$(PY) -m pipeline.readout $(ARGS)

report: $(STAMP) ## Retention report: rates, lifetime, survival, defection reasons, the plan (outputs/report/report.html)
	$(PY) -m pipeline.report $(ARGS)

test: $(STAMP) browser postgres ## Run the whole test suite (unit, data, model, end-to-end; slow ones included)
	@$(PY) -m compileall -q -j 0 $(PACKAGES)
	$(PY) -m pytest $(PYTEST_WORKERS) $(ARGS)

test-fast: $(STAMP) ## Run the tests not marked slow
	$(PY) -m pytest $(PYTEST_WORKERS) -m "not slow" $(ARGS)

browser: ## Install Debian's chromium for the browser test (apt, as root or with sudo; nothing if present)
	@test -x /usr/bin/chromium || { SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

postgres: ## Install Debian's PostgreSQL server for the database tests (apt, as root or with sudo; nothing if present)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; }

bench: $(STAMP) ## Run the benchmarks in bench/ and write their results to bench/results/
	$(PY) bench/generate_memory.py $(ARGS)

bench-score: $(STAMP) ## Batch-scoring benchmark: customers/s with and without reasons, peak memory (20k, 1M)
	$(PY) bench/score_bench.py $(ARGS)

bench-quality: $(STAMP) ## Model quality on four demo shapes vs the true probabilities and plain baselines (2-4 min on 2 cores)
	$(PY) bench/quality.py $(ARGS)

bench-clv: $(STAMP) ## Lifetime value: the project's CLV vs BG/NBD + Gamma-Gamma on next year's real spend (retail demo)
	$(PY) bench/clv.py $(ARGS)

bench-decisions: $(STAMP) ## The plan's true value vs the oracle, risk-only and random on the 20k demo's truth (~8 min)
	$(PY) bench/decisions.py $(ARGS)

lint: $(STAMP) ## Check style with ruff
	$(VENV)/bin/ruff check $(PACKAGES) tests bench
	$(VENV)/bin/ruff format --check $(PACKAGES) tests bench

format: $(STAMP) ## Format and auto-fix with ruff
	$(VENV)/bin/ruff format $(PACKAGES) tests bench
	$(VENV)/bin/ruff check --fix $(PACKAGES) tests bench

ui: $(STAMP) ## Start the MLflow UI on the project's tracking store at 127.0.0.1
	$(PY) -m pipeline.ui $(ARGS)

clean: ## Remove caches and Hydra run folders (keeps data, MLflow store and .venv)
	rm -rf outputs multirun .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +

clean-data: $(STAMP) ## Remove the data churnwise generated (never your files under data/) and the local MLflow store
	$(PY) -m pipeline.clean $(ARGS)
