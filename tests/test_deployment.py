"""The seed guide's 'Step-by-Step Deployment', steps 1 to 4, through our commands."""

from __future__ import annotations

from django.core.management import call_command
from psycopg import sql

from tenancy.engine.names import role_for_schema
from tests.conftest import (
    TENANCY_TABLES,
    connect,
    ledger_versions,
    manage,
    query,
    run_command,
    tables_in,
)

TENANT_TABLES = {
    "organizations",
    "users",
    "departments",
    "job_postings",
    "candidates",
    "applications",
    "interviews",
}


def _drop_infrastructure() -> None:
    """An empty database: no tenancy tables, nothing in django_migrations for tenancy."""
    with connect() as conn:
        conn.execute("DROP VIEW IF EXISTS public.tenant_migration_summary")
        for table in TENANCY_TABLES:
            conn.execute(
                sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier("public", table))
            )
        conn.execute("DELETE FROM django_migrations WHERE app = 'tenancy'")


def test_step_1_public_creates_infrastructure_on_an_empty_database(pg):
    _drop_infrastructure()
    code, out, err = run_command("tenant_list")
    assert code == 1 and "migrate_tenants --public" in err

    code, out, err = run_command("migrate_tenants", "--public")
    assert code == 0, err
    assert {"tenant_registry", "tenant_migrations", "audit_logs", "system_configurations"} <= (
        tables_in("public")
    )
    assert ledger_versions("public") == ["001", "002"]
    code, out, _ = run_command("tenant_list")
    assert code == 0 and out.strip() == "No tenants registered yet"


def test_steps_2_to_4_create_list_migrate_dry_run(pg):
    assert run_command("migrate_tenants", "--public")[0] == 0
    code, out, err = run_command(
        "tenant_create", "org_ayHu5XNaTNHMasO5", "--name", "Baltu Technologies"
    )
    assert code == 0, err

    code, out, _ = run_command("tenant_list")
    assert out.splitlines() == [
        "1. Baltu Technologies",
        "   Schema: tenant_org_ayhu5xnatnhmaso5",
        "   Auth0 Org ID: org_ayHu5XNaTNHMasO5",
        "   Status: active",
    ]

    code, out, _ = run_command("migrate_tenants", "--tenants")
    assert code == 0
    code, out, _ = run_command("migrate_tenants", "--dry-run")
    assert code == 0 and "No pending migrations" in out

    # Step 4: a new tenant gets schema, every migration, registry row and a role.
    code, out, err = run_command("tenant_create", "org_newcompany456")
    assert code == 0, err
    schema = "tenant_org_newcompany456"
    assert TENANT_TABLES <= tables_in(schema)
    assert not (TENANT_TABLES & tables_in("public"))
    assert ledger_versions(schema) == ["001", "002", "003"]
    assert query(
        "SELECT auth0_org_id, status FROM public.tenant_registry WHERE schema_name = %s", [schema]
    ) == [("org_newcompany456", "active")]
    with connect() as conn:  # this database's web role (another test database has its own)
        web = role_for_schema(schema, conn.info.dbname)
    role = query("SELECT rolname FROM pg_roles WHERE rolname = %s", [web])
    assert len(role) == 1
    # The schema and its tables belong to the tenant's owner role, not to the web role.
    owner = query("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = %s", [schema])
    assert owner[0][0].startswith("to") and owner[0][0].endswith(schema)
    assert query("SELECT has_schema_privilege(%s, %s, 'USAGE')", [role[0][0], schema]) == [(True,)]
    assert query(
        "SELECT has_table_privilege(%s, %s, 'SELECT')", [role[0][0], f"{schema}.job_postings"]
    ) == [(True,)]
    code, out, _ = run_command("migrate_tenants", "--dry-run")
    assert "No pending migrations" in out


def test_dry_run_lists_pending_then_nothing(pg, sql_dir):
    call_command("migrate_tenants", "--public", verbosity=0)
    call_command("tenant_create", "org_acme1", verbosity=0)
    call_command("tenant_create", "org_acme2", verbosity=0)
    (sql_dir / "tenant" / "004_add_notes.sql").write_text(
        "-- Description: notes\nCREATE TABLE notes (id serial primary key, body text);\n"
    )
    code, out, _ = run_command("migrate_tenants", "--dry-run")
    assert code == 0
    assert "tenant_org_acme1: 1 pending" in out and "tenant_org_acme2: 1 pending" in out
    assert "004_add_notes.sql" in out
    assert "notes" not in tables_in("tenant_org_acme1")  # a dry run applies nothing

    code, out, _ = run_command(
        "migrate_tenants", "--dry-run", "--tenant", "tenant_org_acme1", "--verbose"
    )
    assert "CREATE TABLE notes" in out and "acme2" not in out

    code, _, _ = run_command("migrate_tenants", "--check")
    assert code == 2

    code, out, err = run_command("migrate_tenants")
    assert code == 0, err
    assert "notes" in tables_in("tenant_org_acme1") and "notes" in tables_in("tenant_org_acme2")
    code, out, _ = run_command("migrate_tenants", "--dry-run")
    assert "No pending migrations" in out
    assert run_command("migrate_tenants", "--check")[0] == 0


def test_migrate_schemas_also_applies_sql_migrations(pg, sql_dir):
    call_command("migrate_tenants", "--public", verbosity=0)
    call_command("tenant_create", "org_one", verbosity=0)
    (sql_dir / "tenant" / "004_tags.sql").write_text("CREATE TABLE tags (name text);\n")
    (sql_dir / "public" / "090_flags.sql").write_text("CREATE TABLE public.flags (k text);\n")
    code, out, err = run_command("migrate_schemas", "--noinput")
    assert code == 0, err
    assert "tags" in tables_in("tenant_org_one")
    assert "flags" in tables_in("public")
    # Django's migrations were not replayed in the tenant schema.
    assert "django_migrations" not in tables_in("tenant_org_one")


def test_two_public_runs_on_an_empty_database_both_succeed(pg):
    _drop_infrastructure()
    procs = [manage("migrate_tenants", "--public") for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert ledger_versions("public")[0] == "001"
    assert query(
        "SELECT count(*) FROM django_migrations WHERE app = 'tenancy' AND name = '0001_initial'"
    ) == [(1,)]
