"""django-tenants' own API on tenancy's backend: ``schema_context``, ``tenant_context``,
``connection.set_tenant``, its middleware, with and without ``atomic()``; each query runs
as the tenant's role with the tenant's search_path, set for its transaction only, so the
server connection holds nothing afterwards (directly and through a transaction-mode
PgBouncer with one server connection). What cannot be made safe is refused in one line."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context, tenant_context
from psycopg import sql

from employer_portal.portal.models import JobPosting
from tenancy.context import TenantContextError, TenantRoleMissing, tenant_role
from tenancy.models import Tenant
from tenancy.services.tenants import create_tenant
from tests.conftest import add_posting, connect, query
from tests.load import default_database, host_of
from tests.test_pooler import start_pgbouncer

TENANTS = [("org_alpha1", "Alpha engineer"), ("org_beta2", "Beta secret role")]
A, B = "tenant_org_alpha1", "tenant_org_beta2"
STATE = (
    "SELECT current_user, session_user, current_setting('search_path'), "
    "current_setting('app.current_tenant', true), pg_backend_pid()"
)


@pytest.fixture
def two_tenants(public_ready: None) -> None:
    for org, title in TENANTS:
        create_tenant(org, org, actor="test")
        add_posting(f"tenant_{org}", title)


def titles() -> list[str]:
    return [p.title for p in JobPosting.objects.all()]


def state() -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(STATE)
        return cursor.fetchone()


def assert_session_clean(row: tuple) -> None:
    """Nothing of a tenant on the server connection: connecting user, default path."""
    default_path = query("SELECT reset_val FROM pg_settings WHERE name = 'search_path'")[0][0]
    current, session, path, tenant, _pid = row
    assert (current, path, tenant or "") == (session, default_path, "")


def test_schema_context_without_a_transaction_runs_each_query_as_the_tenant(two_tenants):
    with schema_context(A):
        assert titles() == ["Alpha engineer"]
        current, _session, path, tenant, _ = state()
        assert (current, path, tenant) == (tenant_role(A), f'"{A}", public', A)
    with schema_context(B):
        assert titles() == ["Beta secret role"]
    assert_session_clean(state())


def kinds(captured: CaptureQueriesContext) -> list[str]:
    def kind(text: str) -> str:
        if text.startswith("SELECT set_config('role'"):
            return "context"
        return text if text in ("BEGIN", "COMMIT") else "statement"

    return [kind(q["sql"]) for q in captured.captured_queries]


def test_the_context_is_logged_as_a_query_of_its_own_once_per_transaction(two_tenants):
    """As django-tenants' SET search_path is: projects' assertNumQueries keep their counts."""
    with CaptureQueriesContext(connection) as outside, schema_context(A):
        titles(), titles()
    with CaptureQueriesContext(connection) as inside, schema_context(A), transaction.atomic():
        titles(), titles()
    # Outside atomic() each statement is a transaction of its own, with its own context.
    assert kinds(outside) == ["context", "statement"] * 2
    assert kinds(inside) == ["BEGIN", "context", "statement", "statement", "COMMIT"]
    first, second = outside.captured_queries[:2]
    assert tenant_role(A) in first["sql"]
    assert second["sql"].startswith('SELECT "job_postings"')  # the statement alone


def test_tenant_context_and_set_tenant_switch_inside_one_transaction(two_tenants):
    alpha, beta = Tenant.objects.get(schema_name=A), Tenant.objects.get(schema_name=B)
    with transaction.atomic():
        with tenant_context(alpha):
            assert titles() == ["Alpha engineer"]
        connection.set_tenant(beta)
        assert titles() == ["Beta secret role"]
        assert state()[0] == tenant_role(B)
        connection.set_schema_to_public()
        assert_session_clean(state())  # back on public inside the same transaction
    assert_session_clean(state())


def test_a_rolled_back_savepoint_that_switched_tenant_is_sent_again(two_tenants):
    with schema_context(A), transaction.atomic():
        assert titles() == ["Alpha engineer"]
        with pytest.raises(DatabaseError), transaction.atomic(), schema_context(B):
            assert titles() == ["Beta secret role"]
            JobPosting.objects.raw("SELECT 1/0 AS id")[0]  # noqa: B018
        # ROLLBACK TO SAVEPOINT undid B's context on the server; A is sent again.
        assert titles() == ["Alpha engineer"] and state()[3] == A


def test_a_write_outside_atomic_commits_in_its_own_transaction(two_tenants):
    with schema_context(A):
        JobPosting.objects.filter(title="Alpha engineer").update(title="Alpha renamed")
    assert query(
        sql.SQL("SELECT title FROM {}.job_postings").format(sql.Identifier(A))
    ) == [("Alpha renamed",)]
    assert query(
        sql.SQL("SELECT title FROM {}.job_postings").format(sql.Identifier(B))
    ) == [("Beta secret role",)]


def test_django_tenants_middleware_serves_each_tenant(two_tenants, settings):
    settings.MIDDLEWARE = [
        "django_tenants.middleware.main.TenantMainMiddleware",
        *[m for m in settings.MIDDLEWARE if m != "tenancy.middleware.TenantMiddleware"],
    ]
    client = Client()
    page = client.get("/", HTTP_HOST=host_of("org_beta2"))
    assert page.status_code == 200 and b"Beta secret role" in page.content
    assert b"Alpha engineer" not in page.content
    connection.set_schema_to_public()
    assert_session_clean(state())


def test_through_a_transaction_pooler_nothing_is_left_between_tenants(two_tenants):
    for port in start_pgbouncer("transaction"):
        with default_database("127.0.0.1", port):
            seen = []
            for _ in range(20):
                for schema, title in ((A, "Alpha engineer"), (B, "Beta secret role")):
                    with schema_context(schema):
                        assert titles() == [title]
                    seen.append(state())
            # One server connection served every query, and none kept a tenant's state.
            assert len({row[4] for row in seen}) == 1
            for row in seen:
                assert_session_clean(row)


def test_session_level_search_path_and_role_changes_are_refused(two_tenants):
    for statement in ("SET search_path TO tenant_org_beta2", "set role postgres", "RESET ALL"):
        with pytest.raises(TenantContextError, match="session-level"), connection.cursor() as c:
            c.execute(statement)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL search_path TO public")  # transaction-scoped: allowed
    assert_session_clean(state())


def test_a_server_side_cursor_outside_a_transaction_runs_as_the_tenant(two_tenants, settings):
    with schema_context(A):
        # Without a pooler, DECLARE ... WITH HOLD runs in a transaction with the context.
        assert [p.title for p in JobPosting.objects.iterator(chunk_size=10)] == ["Alpha engineer"]
        with transaction.atomic():
            assert [p.title for p in JobPosting.objects.iterator(chunk_size=10)] == [
                "Alpha engineer"
            ]
        connection.settings_dict["POOLER"] = "transaction"
        try:
            with pytest.raises(TenantContextError, match="server-side cursor"):
                list(JobPosting.objects.iterator(chunk_size=10))
            with transaction.atomic():  # one transaction: fine through any pooler
                assert len(list(JobPosting.objects.iterator(chunk_size=10))) == 1
        finally:
            connection.settings_dict["POOLER"] = "none"
    assert_session_clean(state())


def test_a_schema_without_a_role_names_the_fix(two_tenants):
    with connect() as conn:
        conn.execute("CREATE SCHEMA stock_built")
    try:
        with schema_context("stock_built"), pytest.raises(TenantRoleMissing, match="tenancy_adopt"):
            titles()
        assert_session_clean(state())
    finally:
        with connect() as conn:
            conn.execute("DROP SCHEMA stock_built")
