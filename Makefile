# airgate: `make demo` and `make test` set up everything they need from nothing.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed-stamp

export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRGATE_HOME ?= $(CURDIR)/.airgate
# airgate's own settings, read by every Airflow component (tasks, callbacks, the plugin) from its environment.
# Override them for PostgreSQL and an object store, e.g. AIRGATE_WAREHOUSE_URL=postgresql+psycopg://... and
# AIRGATE_STORAGE_URL=s3://bucket/airgate (README, "Deploying").
export AIRGATE_WAREHOUSE_URL ?= sqlite:///$(AIRGATE_HOME)/warehouse.db
export AIRGATE_MLFLOW_URI ?= sqlite:///$(AIRGATE_HOME)/mlflow.db
export AIRGATE_MLFLOW_ARTIFACTS ?= $(AIRGATE_HOME)/mlartifacts
# The audit chain's HMAC key (AIRGATE_AUDIT_KEY), the same in every component and kept outside the warehouse. Unless
# given, one random key is made once into $(AIRGATE_HOME)/audit.key (mode 600) and reused by every later make run.
ifeq ($(strip $(AIRGATE_AUDIT_KEY)),)
export AIRGATE_AUDIT_KEY := $(shell mkdir -p "$(AIRGATE_HOME)" && f="$(AIRGATE_HOME)/audit.key" && \
	{ test -s "$$f" || (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$$f"); } && cat "$$f")
endif
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
	@echo "make lint   - ruff (format and lint), mypy, the layer contracts"

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements-dev.txt -c constraints.txt
	$(BIN)/pip install -q --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

# Debian's chromium for the browser tests (tests/e2e/browser); apt-get installs it only when /usr/bin/chromium is missing.
# `make demo` needs no browser, so only `make test` depends on this. Playwright itself comes with requirements-dev.txt.
chromium:
	@bash scripts/ensure_chromium.sh

# Deploy steps, idempotent: Airflow's metadata DB, the airgate warehouse's schema (once per release, never from a
# task), and the pools and variables the DAGs need.
init: venv
	@mkdir -p $(AIRFLOW_HOME) $(AIRGATE_HOME)
	@$(BIN)/python scripts/users.py
	@$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/db-migrate.log 2>&1 || (tail -50 $(AIRFLOW_HOME)/db-migrate.log; exit 1)
	@$(BIN)/python -m airgate.cli migrate
	@$(BIN)/python scripts/load_settings.py airflow_settings.yaml 2>/dev/null | tail -1

demo: init
	@$(BIN)/python scripts/demo.py || (echo "--- last lines of $(AIRGATE_HOME)/demo.log"; tail -40 $(AIRGATE_HOME)/demo.log; exit 1)

# Two pytest workers (pytest-xdist): most tests wait on subprocesses and databases, so two keep both cores busy.
# --dist loadfile keeps each file on one worker: the two tests that start a whole Airflow (tests/e2e/test_scheduler.py,
# collected first) run one after the other while the other worker takes the rest.
PYTEST_WORKERS ?= 2
test: venv chromium
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# EXECUTOR=local (default): `airflow standalone`, SQLite, local folders. EXECUTOR=celery: the scale-out shape on this
# machine: scheduler, dag-processor, triggerer, api-server and a Celery worker as processes, Redis as broker,
# PostgreSQL for Airflow's metadata, the warehouse and MLflow, files under one object-store base (databases created
# when missing; override any of the URLs below).
EXECUTOR ?= local
ifeq ($(EXECUTOR),celery)
PG ?= postgresql+psycopg://postgres@127.0.0.1:5432
export AIRGATE_AIRFLOW_DB_URL ?= $(PG)/airgate_airflow
export AIRGATE_WAREHOUSE_URL := $(PG)/airgate_warehouse
export AIRGATE_MLFLOW_URI := $(PG)/airgate_mlflow
export AIRGATE_STORAGE_URL ?= file://$(AIRGATE_HOME)/objstore
export AIRGATE_MLFLOW_ARTIFACTS := $(AIRGATE_STORAGE_URL)/mlartifacts
export AIRGATE_CELERY_BROKER_URL ?= redis://127.0.0.1:6379/0
endif

up: venv
ifeq ($(EXECUTOR),celery)
	@mkdir -p $(AIRFLOW_HOME) $(AIRGATE_HOME)
	@$(BIN)/python scripts/users.py --print
	$(BIN)/python -m airgate.dev.devstack --executor CeleryExecutor --port 8080
else
	@$(MAKE) --no-print-directory init
	@$(BIN)/python scripts/users.py --print
	$(BIN)/airflow standalone
endif

bench: init
	$(BIN)/python bench/run.py $(BENCH_ARGS)

lint: venv
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf .airflow .airgate .pytest_cache .mypy_cache .ruff_cache
