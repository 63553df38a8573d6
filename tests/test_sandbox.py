"""A tenant migration can change only its own tenant.

Two layers, each tested on its own: PostgreSQL refuses (the files run under the tenant's
owner role, which owns its schema and nothing else: tested through the engine's executor,
below the refusal rules), and the run refuses before anything runs (pglast rules: tested
through ``migrate_tenants``). Afterwards every other schema, ``public`` and the ledger are
as they were."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg import sql

from tenancy import conf
from tenancy.engine.executor import Executor
from tenancy.engine.names import owner_role_for_schema, role_for_schema
from tenancy.engine.source import TENANT, discover
from tenancy.services import lifecycle
from tenancy.services.ownership import adopt_all
from tenancy.services.tenants import create_tenant
from tests.conftest import connect, ledger_versions, query, run_command, tables_in

VICTIM, OTHER = "tenant_org_victim", "tenant_org_other1"


@pytest.fixture
def tenants(public_ready: None, sql_dir: Path) -> list[str]:
    return [create_tenant(org).schema for org in ("org_victim", "org_other1", "org_third3")]


def catalog_snapshot() -> set[tuple]:
    """Every relation and column outside the system schemas, and every ledger row."""
    relations = query(
        "SELECT n.nspname, c.relname, c.relkind, a.attname, format_type(a.atttypid, a.atttypmod) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
        "WHERE n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> 'information_schema'"
    )
    ledger = query("SELECT tenant_schema, migration_version, checksum FROM tenant_migrations")
    return set(relations) | {("ledger", *row) for row in ledger}


def add(sql_dir: Path, name: str, up: str) -> Path:
    path = sql_dir / "tenant" / name
    path.write_text(f"-- UP: Apply migration\n{up}\n-- DOWN: Rollback migration\nSELECT 1;\n")
    return path


def run_engine(sql_dir: Path, schemas: list[str]) -> list:
    """The executor alone, below the run's refusal rules: what PostgreSQL itself allows."""
    migrations = discover(sql_dir, TENANT)
    executor = Executor(conf.conninfo(), conf.engine_options(), None)
    return executor.migrate((s, migrations, [migrations[-1]]) for s in schemas)


# -- PostgreSQL refuses ------------------------------------------------------------------
DENIED = {
    "drop_other_schema": f"DROP SCHEMA IF EXISTS {VICTIM} CASCADE; CREATE TABLE t (id int);",
    "search_path_public": "SET search_path TO public; CREATE TABLE t (id int);",
    "create_in_public": "CREATE TABLE public.x (id int);",
    "write_public": "INSERT INTO public.system_configurations (config_key, config_value) "
    "VALUES ('k', '\"v\"');",
    "read_other_tenant": f"CREATE TABLE t AS SELECT * FROM {VICTIM}.job_postings;",
}


@pytest.mark.parametrize("case", DENIED, ids=list(DENIED))
def test_the_database_refuses_a_tenant_file_outside_its_schema(tenants, sql_dir, case):
    add(sql_dir, "050_hostile.sql", DENIED[case])
    before = catalog_snapshot()
    results = run_engine(sql_dir, [OTHER])
    assert [r.status for r in results] == ["failed"]
    error = results[0].error
    # The file, the statement, and PostgreSQL's refusal (insufficient privilege).
    assert error.startswith("050_hostile.sql: statement ") and "[SQLSTATE 42501]" in error
    assert catalog_snapshot() == before
    assert "job_postings" in tables_in(VICTIM)


def test_a_legitimate_tenant_file_applies_under_the_owner_role(tenants, sql_dir):
    add(
        sql_dir,
        "050_tags.sql",
        "CREATE TABLE job_tags (id serial PRIMARY KEY, "
        "job_posting_id uuid NOT NULL REFERENCES job_postings(id), tag text NOT NULL);\n"
        "CREATE INDEX idx_job_tags_tag ON job_tags (tag);\n"
        "ALTER TABLE job_postings ADD COLUMN priority smallint;",
    )
    code, _, err = run_command("migrate_tenants")
    assert code == 0, err
    for schema in tenants:
        database = connect().info.dbname
        owner, web = owner_role_for_schema(schema, database), role_for_schema(schema, database)
        assert query(
            "SELECT relowner::regrole::text FROM pg_class WHERE oid = to_regclass(%s)",
            [f"{schema}.job_tags"],
        ) == [(owner,)]
        # The web role reads and writes the new table through the owner's default privileges.
        assert query(
            "SELECT has_table_privilege(%s, %s, 'INSERT'), has_sequence_privilege(%s, %s, 'USAGE')",
            [web, f"{schema}.job_tags", web, f"{schema}.job_tags_id_seq"],
        ) == [(True, True)]
        assert ledger_versions(schema)[-1] == "050"


def test_a_tenant_built_before_owner_roles_is_adopted(tenants, sql_dir):
    database = connect().info.dbname
    owner = owner_role_for_schema(OTHER, database)
    with connect() as conn:  # the state of a deployment from before owner roles
        conn.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(sql.Identifier(owner)))
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(owner)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(owner)))
    with connect() as conn, conn.transaction():
        assert adopt_all(conn) == [OTHER]
    assert query(
        "SELECT DISTINCT relowner::regrole::text FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s",
        [OTHER],
    ) == [(owner,)]
    assert query(
        "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = %s", [OTHER]
    ) == [(owner,)]
    with connect() as conn, conn.transaction():
        assert adopt_all(conn) == []  # idempotent
    add(sql_dir, "050_hostile.sql", DENIED["drop_other_schema"])
    assert [r.status for r in run_engine(sql_dir, [OTHER])] == ["failed"]
    assert "job_postings" in tables_in(VICTIM)


def test_drop_and_recreate_keep_roles_and_owners_consistent(tenants, sql_dir):
    database = connect().info.dbname
    owner = owner_role_for_schema(VICTIM, database)
    lifecycle.recreate_tenant("org_victim", actor="test")
    assert query(
        "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = %s", [VICTIM]
    ) == [(owner,)]
    lifecycle.drop_tenant("org_victim", actor="test")
    assert query("SELECT 1 FROM pg_roles WHERE rolname = %s", [owner]) == []
