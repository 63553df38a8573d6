"""Tenant isolation behind a real PgBouncer (transaction and session mode, one server
connection for every client) and behind Django's own connection pool: every response shows
its own tenant's rows, a failed request leaves nothing on the server connection, the admin
works through the pooler, and the engine refuses session-level locks through it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from psycopg import sql

from employer_portal.portal.models import JobPosting
from tenancy import conf
from tenancy.context import tenant_transaction
from tenancy.models import Tenant
from tenancy.services.tenants import create_tenant
from tests import pgbouncer, pooler_urls
from tests.conftest import ROOT, add_posting, ledger_versions, query, subprocess_env
from tests.load import default_database, host_of, serve_pages

TENANTS = [("org_alpha1", "Alpha engineer"), ("org_beta2", "Beta secret role")]
A, B = "tenant_org_alpha1", "tenant_org_beta2"


@pytest.fixture
def two_tenants(public_ready: None) -> None:
    for org, title in TENANTS:
        create_tenant(org, org, actor="test")
        add_posting(f"tenant_{org}", title)


def start_pgbouncer(mode: str, reset_query: str | None = None) -> Iterator[int]:
    if not pgbouncer.available():
        pytest.fail("pgbouncer is not installed: `make test` installs it (apt-get)")
    with pgbouncer.pgbouncer(
        conf.conninfo(), mode=mode, pool_size=1, reset_query=reset_query
    ) as port:
        yield port


@pytest.fixture
def bouncer() -> Iterator[int]:
    """PgBouncer in transaction mode, default_pool_size = 1."""
    yield from start_pgbouncer("transaction")


@pytest.fixture
def through_bouncer(bouncer: int) -> Iterator[int]:
    """Django's default connection goes through the transaction-mode PgBouncer."""
    global SERVER_URL
    SERVER_URL = subprocess_env()["EMPLOYER_PORTAL_DB_URL"]  # before it points at the pooler
    with default_database("127.0.0.1", bouncer):
        yield bouncer


SERVER_URL = ""  # the test database's own URL, for commands given a direct URL


# -- every response shows its own tenant's rows ------------------------------------------
def assert_all_own_rows(figures: dict) -> None:
    assert figures["requests"] >= 500
    assert (figures["ok"], figures["wrong"], figures["errors"]) == (
        figures["requests"],
        0,
        0,
    ), figures["samples"]


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_pgbouncer_serves_each_tenant_its_own_rows(two_tenants, mode):
    # Session mode without PgBouncer's DISCARD ALL: whatever a client left on the one server
    # connection, the client after it would inherit.
    for port in start_pgbouncer(mode, reset_query="" if mode == "session" else None):
        with default_database("127.0.0.1", port):
            figures = serve_pages(TENANTS, clients=4, total=500, close_each=False)
    assert_all_own_rows(figures)


def test_django_pool_serves_each_tenant_its_own_rows(two_tenants):
    info = conf.conninfo()
    with default_database(
        info.get("host", ""), info.get("port", ""), pool={"min_size": 1, "max_size": 2}
    ):
        figures = serve_pages(TENANTS, clients=4, total=500, close_each=True)
    assert_all_own_rows(figures)


# -- a failed request leaves nothing behind ----------------------------------------------
@pytest.fixture
def probe_urls(settings) -> None:
    settings.ROOT_URLCONF = "tests.pooler_urls"
    settings.PUBLIC_SCHEMA_URLCONF = "tests.pooler_urls"
    pooler_urls.SEEN.clear()


def test_a_failed_request_leaves_nothing_on_its_server_connection(
    two_tenants, through_bouncer, probe_urls
):
    assert_a_failed_request_leaves_nothing(close_between=False)


def test_a_failed_request_leaves_nothing_on_its_pooled_connection(two_tenants, probe_urls):
    """Django's pool with one connection: the request after a failed one gets it back."""
    info = conf.conninfo()
    with default_database(
        info.get("host", ""), info.get("port", ""), pool={"min_size": 1, "max_size": 1}
    ):
        assert_a_failed_request_leaves_nothing(close_between=True)


def assert_a_failed_request_leaves_nothing(*, close_between: bool) -> None:
    client = Client(raise_request_exception=False)
    response = client.get("/fail/", HTTP_HOST=host_of("org_alpha1"))
    assert response.status_code == 500
    seen = pooler_urls.SEEN
    assert seen["tenant"] == A and seen["current_user"] != seen["session_user"]
    assert seen["search_path"] == f'"{A}", public'

    if close_between:
        connection.close()  # back to Django's pool, as at the end of a real request
    # The next request (public side) lands on the same server connection: pool size 1.
    after = client.get("/state/", HTTP_HOST="localhost").json()
    default_path = query("SELECT reset_val FROM pg_settings WHERE name = 'search_path'")[0][0]
    assert after["pid"] == seen["pid"]
    assert after["current_user"] == after["session_user"] == seen["session_user"]
    assert after["search_path"] == default_path
    assert after["tenant"] in (None, "")
    # The failed request's write was rolled back with its context.
    assert query(
        sql.SQL("SELECT count(*) FROM {}.job_postings WHERE title LIKE 'written by%%'").format(
            sql.Identifier(A)
        )
    ) == [(0,)]


def test_a_rolled_back_savepoint_keeps_the_tenant_context(two_tenants):
    from django.db import DatabaseError, transaction

    tenant = Tenant.objects.get(schema_name=A)
    with tenant_transaction(tenant):
        with pytest.raises(DatabaseError), transaction.atomic():
            JobPosting.objects.raw("SELECT 1/0 AS id")[0]  # noqa: B018
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('app.current_tenant'), current_user")
            tenant_setting, user = cursor.fetchone()
    assert tenant_setting == A and user == conf_role(A)


def conf_role(schema: str) -> str:
    from tenancy.context import tenant_role

    return tenant_role(schema)


# -- the admin and a tenant page through the pooler --------------------------------------
def test_admin_and_tenant_page_work_through_the_pooler(two_tenants, through_bouncer):
    admin = User.objects.create_superuser("ops", "ops@example.com", "pw-for-tests-only")
    client = Client()
    client.force_login(admin)
    listing = client.get("/admin/tenancy/tenant/", HTTP_HOST="localhost")
    assert listing.status_code == 200
    assert b"org_alpha1" in listing.content and b"org_beta2" in listing.content
    page = client.get("/", HTTP_HOST=host_of("org_beta2"))
    assert page.status_code == 200 and b"Beta secret role" in page.content
    assert b"Alpha engineer" not in page.content


# -- the engine: direct URL, and refusal through the pooler -----------------------------
CONCURRENT_INDEX = """-- Migration: {name}
-- UP: Apply migration
CREATE INDEX CONCURRENTLY idx_job_postings_title ON job_postings (title);
-- DOWN: Rollback migration
DROP INDEX IF EXISTS idx_job_postings_title;
"""


def add_concurrent_index_file(sql_dir: Path) -> None:
    versions = sorted(int(p.name[:3]) for p in (sql_dir / "tenant").glob("*.sql"))
    name = f"{versions[-1] + 1:03d}_title_index"
    (sql_dir / "tenant" / f"{name}.sql").write_text(CONCURRENT_INDEX.format(name=name))


def pooled_env(port: int, sql_dir: Path, *, direct: bool) -> dict[str, str]:
    """A command's environment with the app's URL through the pooler on ``port`` and, with
    ``direct``, the direct URL to the server (as production sets them)."""
    env = subprocess_env(sql_dir)
    direct_url = SERVER_URL or env["EMPLOYER_PORTAL_DB_URL"]
    dbname = conf.conninfo()["dbname"]
    env["EMPLOYER_PORTAL_DB_URL"] = f"postgresql://postgres@127.0.0.1:{port}/{dbname}"
    env["EMPLOYER_PORTAL_DB_POOLER"] = "transaction"
    if direct:
        env["EMPLOYER_PORTAL_DIRECT_DB_URL"] = direct_url
    return env


def run_manage(env: dict[str, str], *args: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr


def index_exists(schema: str) -> bool:
    return bool(query("SELECT to_regclass(%s)", [f"{schema}.idx_job_postings_title"])[0][0])


def test_engine_refuses_session_locks_through_a_transaction_pooler(two_tenants, sql_dir, bouncer):
    add_concurrent_index_file(sql_dir)
    before = ledger_versions(A), ledger_versions(B)
    runs_before = query("SELECT count(*) FROM tenant_migration_runs")
    code, output = run_manage(pooled_env(bouncer, sql_dir, direct=False), "migrate_tenants")
    assert code == 1, output
    assert "transaction-mode pooler" in output and "EMPLOYER_PORTAL_DIRECT_DB_URL" in output
    assert "Traceback" not in output
    assert (ledger_versions(A), ledger_versions(B)) == before
    assert not index_exists(A) and not index_exists(B)
    assert query("SELECT count(*) FROM tenant_migration_runs") == runs_before
    code, output = run_manage(
        pooled_env(bouncer, sql_dir, direct=False), "migrate_tenants", "--rollback", "003"
    )
    assert code == 1 and "transaction-mode pooler" in output, output
    assert (ledger_versions(A), ledger_versions(B)) == before
    # Nobody said there is a pooler: the engine finds it (the server's pid is not the one
    # the connection announced) and refuses all the same.
    undeclared = pooled_env(bouncer, sql_dir, direct=False)
    del undeclared["EMPLOYER_PORTAL_DB_POOLER"]
    code, output = run_manage(undeclared, "migrate_tenants")
    assert code == 1, output
    assert "answers through a pooler or proxy" in output and "Traceback" not in output
    assert (ledger_versions(A), ledger_versions(B)) == before
    assert not index_exists(A) and not index_exists(B)
    assert query("SELECT count(*) FROM tenant_migration_runs") == runs_before


def test_a_migration_through_the_direct_url_works_while_the_app_uses_the_pooler(
    two_tenants, sql_dir, through_bouncer
):
    add_concurrent_index_file(sql_dir)
    env = pooled_env(through_bouncer, sql_dir, direct=True)
    # A file that needs a session: through the pooler it would be refused (the test above).
    migration = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "migrate_tenants"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # Meanwhile the app, through the pooler, serves its pages.
    figures = serve_pages(TENANTS, clients=2, total=40, close_each=False)
    output, _ = migration.communicate(timeout=120)
    assert migration.returncode == 0, output
    assert figures["ok"] == 40, figures["samples"]
    assert index_exists(A) and index_exists(B)
    assert ledger_versions(A)[-1] == ledger_versions(B)[-1] == sorted(ledger_versions(A))[-1]


def test_creation_and_transactional_runs_work_through_the_pooler(
    two_tenants, through_bouncer, settings, sql_dir
):
    """The admin's Create tenant runs in the web process: through a transaction pooler
    (no direct URL), creation and all-transactional runs need no session."""
    settings.TENANCY = {**settings.TENANCY, "ENGINE_POOLER": "transaction"}
    assert conf.conninfo()["port"] == str(through_bouncer)
    create_tenant("org_gamma3", "Gamma", actor="test")
    (sql_dir / "tenant" / "099_notes.sql").write_text(
        "-- UP: Apply migration\nCREATE TABLE notes (id int);\n"
        "-- DOWN: Rollback migration\nDROP TABLE notes;\n"
    )
    from tenancy.services import runs

    report = runs.migrate(public=False, actor="test")
    assert report.exit_code == 0, [r.error for r in report.failed]
    for schema in (A, B, "tenant_org_gamma3"):
        assert query("SELECT to_regclass(%s)", [f"{schema}.notes"])[0][0] is not None
