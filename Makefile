# The two commands: `make run` (a working portal) and `make test` (the suite).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install lint bench clean-db e2e-deps

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) manage.py migrate_tenants --public
	$(PY) manage.py migrate_tenants
	$(PY) manage.py bootstrap_demo
	$(PY) manage.py runserver $(HOST):$(PORT)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) bench/bench_migrations.py $(BENCH_ARGS)

# Stops the embedded PostgreSQL and deletes its data folder.
clean-db:
	-$(VENV)/lib/*/site-packages/pgserver/pginstall/bin/pg_ctl -D .pgdata stop -m fast
	rm -rf .pgdata
