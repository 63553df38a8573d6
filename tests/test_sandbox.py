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
    """Every schema, relation, column, function, owner and grant outside the system
    schemas, and every ledger row."""
    relations = query(
        "SELECT n.nspname, c.relname, c.relkind, a.attname, format_type(a.atttypid, a.atttypmod) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
        "WHERE n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> 'information_schema'"
    )
    others = query(
        "SELECT 'schema', nspname, nspowner::regrole::text, nspacl::text FROM pg_namespace "
        "UNION ALL SELECT 'function', p.oid::regprocedure::text, proowner::regrole::text, "
        "proacl::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> 'information_schema' "
        "UNION ALL SELECT 'acl', c.oid::regclass::text, relowner::regrole::text, relacl::text "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> 'information_schema'"
    )
    ledger = query("SELECT tenant_schema, migration_version, checksum FROM tenant_migrations")
    return set(relations) | set(others) | {("ledger", *row) for row in ledger}


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
    # A file cannot switch back to the login user: with a superuser login the owner is the
    # session user too, so RESET ROLE, SET ROLE NONE and a function's SET role clause stay
    # the owner (the refusal rules stop these before a run; here PostgreSQL does).
    "reset_role": f"RESET ROLE; DROP SCHEMA {VICTIM} CASCADE;",
    "set_config_role": f"SELECT set_config('role', 'none', true); DROP SCHEMA {VICTIM} CASCADE;",
    "function_set_role": "CREATE FUNCTION pwn() RETURNS void LANGUAGE sql SET role = 'none' "
    f"AS $$ DROP SCHEMA {VICTIM} CASCADE $$; SELECT pwn();",
    "do_set_role": f"DO $$ BEGIN SET ROLE NONE; DROP SCHEMA {VICTIM} CASCADE; END $$;",
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


# -- refused before anything runs --------------------------------------------------------
REFUSED = {
    "drop_other_schema": (DENIED["drop_other_schema"], "foreign-schema"),
    "search_path_public": (DENIED["search_path_public"], "session-state"),
    "create_in_public": (DENIED["create_in_public"], "writes-public"),
    "write_public": (DENIED["write_public"], "writes-public"),
    "begin_commit": ("BEGIN; CREATE TABLE t (id int); COMMIT;", "transaction-control"),
    "commit_midway": ("CREATE TABLE t (id int); COMMIT; SELECT 1/0;", "transaction-control"),
    "aborted": ("BEGIN; CREATE TABLE t (id int); SELECT 1/0; COMMIT;", "transaction-control"),
    "reset_role": ("RESET ROLE; CREATE TABLE t (id int);", "session-state"),
    "drop_owned": ("DROP OWNED BY CURRENT_USER;", "privileges"),
    "function_set_role": (DENIED["function_set_role"], "session-state"),
    "do_body_drop": (
        f"DO $$ BEGIN DROP SCHEMA IF EXISTS {VICTIM} CASCADE; END $$;",
        "foreign-schema",
    ),
    "do_body_escape": ("DO $$ BEGIN SET /**/ ROLE NONE; END $$;", "session-state"),
    "do_dynamic": ("DO $$ BEGIN EXECUTE 'RESET ROLE'; END $$;", "unreadable-body"),
    "grant_to_all": ("GRANT USAGE ON SCHEMA {{schema}} TO {{app_role}};", "privileges"),
    "session_setting": ("SET default_transaction_read_only = on;", "session-state"),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_a_hostile_tenant_file_is_refused_before_anything_runs(tenants, sql_dir, case):
    text, rule = REFUSED[case]
    add(sql_dir, "050_hostile.sql", text)
    add(sql_dir, "049_harmless.sql", "CREATE TABLE harmless (id int);")
    before = catalog_snapshot()
    runs_before = query("SELECT count(*) FROM tenant_migration_runs")
    for args in (("migrate_tenants",), ("migrate_tenants", "--dry-run")):
        code, _, err = run_command(*args)
        assert code == 1, err
        assert "050_hostile.sql:" in err and f"[{rule}]" in err
        assert "Nothing was applied" in err or "--dry-run" in args
    assert catalog_snapshot() == before  # not even the harmless file ran anywhere
    assert query("SELECT count(*) FROM tenant_migration_runs") == runs_before


def test_every_problem_is_listed_at_once(tenants, sql_dir):
    add(sql_dir, "050_one.sql", "BEGIN; CREATE TABLE a (id int);")
    add(sql_dir, "051_two.sql", "CREATE TABLE public.b (id int);\nSET ROLE postgres;")
    code, _, err = run_command("migrate_tenants")
    assert code == 1
    assert "050_one.sql:2: error [transaction-control]" in err
    assert "051_two.sql:2: error [writes-public]" in err
    assert "051_two.sql:3: error [session-state]" in err


def test_creation_is_refused_while_a_hostile_file_exists_and_works_after(tenants, sql_dir):
    hostile = add(sql_dir, "050_hostile.sql", "BEGIN; CREATE TABLE t (id int); COMMIT;")
    code, _, err = run_command("tenant_create", "org_new5")
    assert code == 1 and "050_hostile.sql" in err and "[transaction-control]" in err
    assert query("SELECT 1 FROM pg_namespace WHERE nspname = 'tenant_org_new5'") == []
    code, _, err = run_command("tenant_recreate", "org_victim", "--noinput")
    assert code == 1 and "050_hostile.sql" in err
    assert "job_postings" in tables_in(VICTIM)
    hostile.unlink()
    assert run_command("tenant_create", "org_new5")[0] == 0
    assert run_command("tenant_recreate", "org_victim", "--noinput")[0] == 0
    assert "job_postings" in tables_in("tenant_org_new5") and "job_postings" in tables_in(VICTIM)


def test_a_rollback_whose_recorded_down_breaks_the_rules_is_refused(tenants, sql_dir):
    path = sql_dir / "tenant" / "050_fine_up.sql"
    path.write_text("-- UP\nCREATE TABLE fine (id int);\n-- DOWN\nDROP TABLE fine;\n")
    assert run_command("migrate_tenants")[0] == 0
    with connect() as conn:  # rollback runs the DOWN the ledger recorded, not the file's
        conn.execute(
            "UPDATE tenant_migrations SET rollback_sql = %s WHERE migration_version = '050'",
            [f"RESET ROLE;\nDROP SCHEMA {VICTIM} CASCADE;\n"],
        )
    before = catalog_snapshot()
    for extra in ((), ("--dry-run",)):
        code, _, err = run_command(
            "migrate_tenants", "--rollback", "050", "--tenant", OTHER, *extra
        )
        assert code == 1, err
        assert "050_fine_up.sql (DOWN, as recorded in the ledger)" in err
        assert "[session-state]" in err and "[foreign-schema]" in err
    assert catalog_snapshot() == before
    assert "job_postings" in tables_in(VICTIM)
