"""Isolation in the database itself: a role per tenant, and row-level security on shared
rows (public.audit_logs) that isolates, unlike the seed's ``USING (true)``.

Every check runs on a connection of its own that switches role exactly as the middleware
does, so what is proven here is PostgreSQL's refusal, not the application's good manners.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.types.json import Jsonb

from tenancy.engine.names import app_role, role_for_schema
from tenancy.services.tenants import create_tenant
from tests.conftest import connect, query

A, B = "tenant_org_alpha1", "tenant_org_beta2"


@pytest.fixture
def two_tenants(public_ready: None) -> None:
    create_tenant("org_alpha1", "Alpha", actor="test")
    create_tenant("org_beta2", "Beta", actor="test")
    with connect() as conn:
        for schema, title in ((A, "Alpha engineer"), (B, "Beta secret role")):
            conn.execute(
                sql.SQL(
                    "WITH o AS (INSERT INTO {}.organizations (auth0_org_id, name) "
                    "VALUES ('x', 'x') RETURNING id) "
                    "INSERT INTO {}.job_postings (organization_id, title) SELECT id, %s FROM o"
                ).format(sql.Identifier(schema), sql.Identifier(schema)),
                [title],
            )
            conn.execute(
                "INSERT INTO public.audit_logs (tenant_schema, action, actor) "
                "VALUES (%s, 'portal.login', 'someone')",
                [schema],
            )
        # A row about no tenant at all (a migration run): never visible to a tenant.
        conn.execute("INSERT INTO public.audit_logs (action) VALUES ('migrate.run')")


@contextmanager
def as_role(role: str | None, tenant: str | None) -> Iterator[psycopg.Connection]:
    """A connection under ``role`` (None: the connecting user) with app.current_tenant set
    to ``tenant`` (None: unset), as tenancy.middleware sets them."""
    with connect() as conn:
        if tenant is not None:
            conn.execute("SELECT set_config('app.current_tenant', %s, false)", [tenant])
        if role is not None:
            conn.execute("SELECT set_config('role', %s, false)", [role])
        yield conn


def tenant_role(schema: str) -> str:
    with connect() as conn:
        return role_for_schema(schema, conn.info.dbname)


def the_app_role() -> str:
    with connect() as conn:
        return app_role(conn.info.dbname)


def audit_schemas(conn: psycopg.Connection) -> list:
    return sorted(
        (r[0] or "", r[1]) for r in conn.execute("SELECT tenant_schema, action FROM audit_logs")
    )


# -- roles --------------------------------------------------------------------------------
def test_tenant_role_reads_its_schema_and_is_refused_another_even_by_name(two_tenants):
    with as_role(tenant_role(A), A) as conn:
        conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(A)))
        assert conn.execute("SELECT title FROM job_postings").fetchall() == [("Alpha engineer",)]
        with pytest.raises(errors.InsufficientPrivilege, match="permission denied for schema"):
            conn.execute("SELECT title FROM tenant_org_beta2.job_postings")


def test_tenant_role_cannot_escape_by_setting_search_path_or_creating_objects(two_tenants):
    with as_role(tenant_role(A), A) as conn:
        conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(B)))
        # B's schema is on the path but not usable: its tables are simply not found.
        with pytest.raises(errors.UndefinedTable):
            conn.execute("SELECT title FROM job_postings")
    with as_role(tenant_role(A), A) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE tenant_org_alpha1.sneaky (x int)")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE public.sneaky (x int)")
    assert "sneaky" not in {r[0] for r in query("SELECT relname FROM pg_class")}


def test_roles_neither_own_nor_bypass_and_cannot_log_in(two_tenants):
    roles = [tenant_role(A), tenant_role(B), the_app_role()]
    rows = query(
        "SELECT rolname, rolcanlogin, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb "
        "FROM pg_roles WHERE rolname = ANY(%s) ORDER BY rolname",
        [roles],
    )
    assert sorted(r[0] for r in rows) == sorted(roles)
    assert all(r[1:] == (False, False, False, False, False) for r in rows)
    owned = query(
        "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
        "WHERE r.rolname = ANY(%s)",
        [roles],
    )
    assert owned == [(0,)]
    # The tenant roles are members of the app role (shared grants), not the reverse.
    members = query(
        "SELECT m.rolname, r.rolname FROM pg_auth_members am "
        "JOIN pg_roles r ON r.oid = am.roleid JOIN pg_roles m ON m.oid = am.member "
        "WHERE r.rolname = ANY(%s) OR m.rolname = ANY(%s)",
        [roles, roles],
    )
    assert sorted(members) == sorted((tenant_role(s), the_app_role()) for s in (A, B))


# -- row-level security on audit_logs -------------------------------------------------------
def test_audit_logs_rls_is_enabled_forced_and_not_using_true(two_tenants):
    assert query(
        "SELECT relrowsecurity, relforcerowsecurity FROM pg_class "
        "WHERE oid = 'public.audit_logs'::regclass"
    ) == [(True, True)]
    policies = dict(
        query(
            "SELECT policyname, qual FROM pg_policies "
            "WHERE schemaname = 'public' AND tablename = 'audit_logs'"
        )
    )
    assert "app.current_tenant" in policies["audit_logs_tenant_isolation"]
    assert policies["audit_logs_tenant_isolation"].strip() != "true"


def test_tenant_sees_only_its_own_audit_rows(two_tenants):
    with as_role(tenant_role(A), A) as conn:
        assert audit_schemas(conn) == [(A, "portal.login"), (A, "tenant.create")]
        # Even asked for by name, B's rows do not exist for A.
        named = "SELECT count(*) FROM audit_logs WHERE tenant_schema = %s"
        assert conn.execute(named, [B]).fetchone() == (0,)
    with as_role(tenant_role(B), B) as conn:
        assert audit_schemas(conn) == [(B, "portal.login"), (B, "tenant.create")]


def test_nothing_visible_without_a_current_tenant(two_tenants):
    with as_role(the_app_role(), None) as conn:
        assert audit_schemas(conn) == []
    with as_role(the_app_role(), "") as conn:
        assert audit_schemas(conn) == []
    with as_role(tenant_role(A), None) as conn:
        assert audit_schemas(conn) == []
    # The app role alone sees nothing even with a tenant named: it may use no tenant schema.
    with as_role(the_app_role(), A) as conn:
        assert audit_schemas(conn) == []


def test_forging_the_current_tenant_setting_reveals_nothing(two_tenants):
    # Tenant A's role sets app.current_tenant to B (any role can set a custom setting): the
    # policy also requires the role to be allowed into B's schema, so nothing shows.
    with as_role(tenant_role(A), B) as conn:
        assert audit_schemas(conn) == []
        conn.execute("SELECT set_config('app.current_tenant', %s, false)", [B])
        assert audit_schemas(conn) == []


def test_forged_inserts_are_rejected(two_tenants):
    with as_role(tenant_role(A), A) as conn:
        for forged in (B, None, "public"):
            with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
                conn.execute(
                    "INSERT INTO audit_logs (tenant_schema, action, details) "
                    "VALUES (%s, 'forged', %s)",
                    [forged, Jsonb({})],
                )
        # Its own rows it may write, and only append: no rewriting history.
        conn.execute("INSERT INTO audit_logs (tenant_schema, action) VALUES (%s, 'ok')", [A])
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("UPDATE audit_logs SET action = 'x'")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("DELETE FROM audit_logs")
    insert = "INSERT INTO audit_logs (tenant_schema, action) VALUES (%s, 'f')"

    def rls():
        return pytest.raises(errors.InsufficientPrivilege, match="row-level security")

    with as_role(tenant_role(A), B) as conn, rls():  # with the setting forged too
        conn.execute(insert, [B])
    with as_role(the_app_role(), A) as conn, rls():
        conn.execute(insert, [A])
    forged = "SELECT count(*) FROM public.audit_logs WHERE action IN ('forged', 'f')"
    assert query(forged) == [(0,)]
    assert query("SELECT tenant_schema FROM public.audit_logs WHERE action = 'ok'") == [(A,)]


def test_the_engine_still_sees_and_writes_every_row(two_tenants):
    # The connecting user (the engine: superuser in dev and CI, owner of the table) is not
    # limited: reports and the rate limit count every tenant's rows.
    with as_role(None, None) as conn:
        # two tenant.create, two portal.login, migrate.run of --public and the one above,
        # and the public schema's own row of the --public run (migrate.run.schema)
        assert len(audit_schemas(conn)) == 7
        conn.execute("INSERT INTO audit_logs (tenant_schema, action) VALUES (%s, 'engine')", [B])
    create_tenant("org_gamma3", actor="test")  # writes its audit row under FORCE RLS
    creations = "SELECT count(*) FROM public.audit_logs WHERE action = 'tenant.create'"
    assert query(creations) == [(3,)]


def test_public_migration_002_is_idempotent_over_an_existing_app_role(two_tenants):
    # The app role exists (tenants were created); running 002 again, as a rollback and
    # re-apply would, keeps one policy set and the grants.
    from django.core.management import call_command

    with connect() as conn:
        conn.execute("DELETE FROM public.tenant_migrations WHERE tenant_schema = 'public'")
    call_command("migrate_tenants", "--public", verbosity=0)
    assert query(
        "SELECT count(*) FROM pg_policies WHERE tablename = 'audit_logs' AND schemaname = 'public'"
    ) == [(2,)]
    with as_role(tenant_role(A), A) as conn:
        assert (A, "portal.login") in audit_schemas(conn)


# -- the seed's recovery SQL ----------------------------------------------------------------
def test_seed_create_tenant_schema_runs_verbatim_and_points_to_the_command(public_ready):
    statement = "SELECT public.create_tenant_schema('org_ayHu5XNaTNHMasO5', 'Baltu Technologies');"
    with connect() as conn, pytest.raises(errors.FeatureNotSupported) as info:
        conn.execute(statement)
    assert "not registered" in str(info.value)
    assert info.value.diag.message_hint == (
        "Run: python manage.py tenant_create org_ayHu5XNaTNHMasO5 --name 'Baltu Technologies'"
    )
    create_tenant("org_ayHu5XNaTNHMasO5", "Baltu Technologies", actor="test")
    with connect() as conn, pytest.raises(errors.FeatureNotSupported) as info:
        conn.execute(statement)
    assert "tenant_org_ayhu5xnatnhmaso5" in str(info.value)
    assert info.value.diag.message_hint == (
        "Run: python manage.py tenant_recreate org_ayHu5XNaTNHMasO5"
    )
    with connect() as conn, pytest.raises(errors.InvalidParameterValue):
        conn.execute("SELECT public.create_tenant_schema('x''; DROP TABLE y; --', 'n')")
