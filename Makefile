# airgate: `make demo` and `make test` set up everything they need from nothing.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed-stamp

export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRGATE_HOME ?= $(CURDIR)/.airgate
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
# LocalExecutor pre-forks PARALLELISM workers: keep a 2-core machine responsive.
export AIRFLOW__CORE__PARALLELISM := 4
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS := admin:admin,trainer:op,approver:op,viewer:viewer
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE := $(AIRFLOW_HOME)/passwords.json
export AIRFLOW__API__BASE_URL ?= http://localhost:8080
export PATH := $(BIN):$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export GIT_PYTHON_REFRESH := quiet

.PHONY: help venv chromium init demo test up bench lint clean

help:
	@echo "make demo   - set up and run the whole lifecycle headless (SQLite, local folders)"
	@echo "make test   - set up and run every test (SQLite and PostgreSQL at 127.0.0.1:5432)"
	@echo "make up     - serve Airflow with the governance plugin at http://localhost:8080"
	@echo "make bench  - run the benchmarks, writing bench/results.json (BENCH_ARGS=\"--only api\" for one)"
	@echo "make lint   - ruff and mypy"

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements-dev.txt -c constraints.txt
	$(BIN)/pip install -q --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

# Debian's chromium for the browser tests (tests/browser); apt-get installs it only when /usr/bin/chromium is missing.
# `make demo` needs no browser, so only `make test` depends on this. Playwright itself comes with requirements-dev.txt.
chromium:
	@bash scripts/ensure_chromium.sh

# Airflow's metadata DB and the settings the DAGs need (connections, pools, variables). Idempotent.
init: venv
	@mkdir -p $(AIRFLOW_HOME) $(AIRGATE_HOME)
	@$(BIN)/python scripts/users.py
	@$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/db-migrate.log 2>&1 || (tail -50 $(AIRFLOW_HOME)/db-migrate.log; exit 1)
	@$(BIN)/python scripts/load_settings.py airflow_settings.yaml 2>/dev/null | tail -1

demo: init
	@$(BIN)/python scripts/demo.py || (echo "--- last lines of $(AIRGATE_HOME)/demo.log"; tail -40 $(AIRGATE_HOME)/demo.log; exit 1)

test: venv chromium
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

up: init
	@$(BIN)/python scripts/users.py --print
	$(BIN)/airflow standalone

bench: init
	$(BIN)/python bench/run.py $(BENCH_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf .airflow .airgate .pytest_cache .mypy_cache .ruff_cache
