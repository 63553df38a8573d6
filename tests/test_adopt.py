"""tenancy_adopt: a database built by stock django-tenants becomes tenancy's own; and
tenancy_drop_roles: the roles of a database that is gone.

The stock fleet is built as django-tenants' ``migrate_schemas`` builds it (its
``migration_executors.base.run_migrations``): ``CREATE SCHEMA`` as the connecting user,
Django's recorder makes the schema's ``django_migrations`` with only that schema in the
search_path, then Django's own ``MigrationExecutor`` migrates every app with the schema
and public in the path, django-tenants' router letting only the tenant apps' operations
run there (the example app ``candidate_notes``: a table with a foreign key to
``public.auth_user``, and a RunPython). Django's connection for it is a plain PostgreSQL
backend over the test's psycopg connection (``django_steps.bound``): the project's own
backend would take the tenant's role, which a stock fleet does not have.

The tenants are rows of the host tenant model: here ``tenancy.Tenant`` (so their registry
rows exist, written through the ORM as django-tenants writes them), and, for the path
where the model is not the registry, a tenant model made for the test
(``tenancy.AdoptTestCustomer``, table ``adopt_test_customers``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from tenancy.engine import db, ownership
from tenancy.engine.names import app_role, owner_group_role, owner_role_for_schema, role_for_schema
from tenancy.services import adoption, django_steps, steps
from tests.conftest import ROOT, connect, drop_roles, query, run_command, subprocess_env

FIRST, SECOND = "acme", "globex"
NOTES = "candidate_notes_candidatenote"
DJANGO_STEPS = ["candidate_notes.0001_initial", "candidate_notes.0002_summary"]
SQL_FILES = ["001", "002", "003"]


def stock_schema(schema: str, *, sql_files: list[Path] | None = None) -> None:
    """A tenant schema as stock django-tenants builds it (see the module's docstring);
    ``sql_files``: tenant SQL files run in it by hand too, as the connecting user."""
    from django.db.migrations.executor import MigrationExecutor
    from django.db.migrations.recorder import MigrationRecorder

    name = sql.Identifier(schema)
    with connect() as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(name))
        with conn.transaction(), django_steps.bound(conn, schema) as wrapper:
            conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(name))
            MigrationRecorder(wrapper).ensure_schema()
            conn.execute(sql.SQL("SET LOCAL search_path TO {}, public").format(name))
            executor = MigrationExecutor(wrapper)
            executor.migrate(executor.loader.graph.leaf_nodes())
            for path in sql_files or []:
                conn.execute(path.read_text())
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (candidate_id, body, summary, created_at) "
                    "VALUES (gen_random_uuid(), 'kept', 'kept', now())"
                ).format(sql.Identifier(schema, NOTES))
            )


def host_tenant(schema: str) -> None:
    """A row of the tenant model (tenancy.Tenant here), saved as django-tenants saves it."""
    from tenancy.models import Tenant

    Tenant.objects.create(
        schema_name=schema, organization_name=schema.title(), auth0_org_id=f"org_{schema}"
    )


@pytest.fixture
def fleet(public_ready: None, project_tenant_apps: None, sql_dir: Path) -> list[str]:
    for schema in (FIRST, SECOND):
        stock_schema(schema)
        host_tenant(schema)
    return [FIRST, SECOND]


def snapshot(schemas: list[str]) -> dict[str, Any]:
    """Everything adoption may change: owners and ACLs in the schemas, the database's
    tenancy roles and their memberships, the ledger, the registry, the audit log, the
    shape of each django_migrations."""
    database = connect().info.dbname
    with connect() as conn:
        return {
            "catalog": query(
                "SELECT n.nspname, n.nspowner::regrole::text, n.nspacl::text, c.relname, "
                "c.relowner::regrole::text, c.relacl::text FROM pg_namespace n "
                "LEFT JOIN pg_class c ON c.relnamespace = n.oid "
                "WHERE n.nspname = ANY(%s) ORDER BY 1, 4",
                [schemas],
            ),
            "columns": query(
                "SELECT table_schema, table_name, column_name, data_type, is_identity "
                "FROM information_schema.columns WHERE table_schema = ANY(%s) ORDER BY 1, 2, 3",
                [schemas],
            ),
            "roles": (roles := ownership.database_roles(conn, database)),
            # Roles are the server's: only the memberships of this database's.
            "members": query(
                "SELECT r.rolname, m.rolname FROM pg_auth_members a "
                "JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member "
                "WHERE r.rolname = ANY(%s) OR m.rolname = ANY(%s) ORDER BY 1, 2",
                [roles, roles],
            ),
            "ledger": query("SELECT * FROM public.tenant_migrations ORDER BY id"),
            "registry": query("SELECT * FROM public.tenant_registry ORDER BY id"),
            "audit": query("SELECT * FROM public.audit_logs ORDER BY id"),
        }


def owners(schema: str) -> set[str]:
    rows = query(
        "SELECT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname = %s "
        "UNION SELECT pg_get_userbyid(c.relowner)::text FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s",
        [schema, schema],
    )
    return {r[0] for r in rows}


def ledger_rows(schema: str) -> dict[str, tuple]:
    rows = query(
        "SELECT migration_version, checksum, applied_by, rollback_sql "
        "FROM public.tenant_migrations WHERE tenant_schema = %s",
        [schema],
    )
    return {r[0]: r[1:] for r in rows}


def roles_of(schema: str) -> list[str]:
    database = connect().info.dbname
    wanted = [owner_role_for_schema(schema, database), role_for_schema(schema, database)]
    return [r[0] for r in query("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [wanted])]


def adopt_json(*args: str) -> tuple[int, dict[str, Any], str]:
    code, out, err = run_command("tenancy_adopt", "--json", "--actor", "test", *args)
    return code, json.loads(out), err


def by_schema(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["schema"]: s for s in report["schemas"]}


# -- dry run, adoption, re-run -----------------------------------------------------------
def test_a_dry_run_says_what_it_would_do_and_changes_nothing(fleet):
    before = snapshot(fleet)
    code, out, err = run_command("tenancy_adopt", "--dry-run", "-v", "2")
    assert code == 0, err
    assert snapshot(fleet) == before
    database = connect().info.dbname
    for schema in fleet:
        assert f"{schema}: would adopt" in out
        assert owner_role_for_schema(schema, database) in out
        assert f"ALTER TABLE {schema}.{NOTES} OWNER TO" in out
    assert "candidate_notes.0001_initial, candidate_notes.0002_summary" in out
    assert "pending for migrate_tenants: 001_organizations_users.sql" in out
    assert "Dry run: 2 schema(s) would be adopted, 0 already adopted, 0 cannot be." in out

    code, report, err = adopt_json("--dry-run")
    assert code == 0, err
    assert report["summary"]["would_adopt"] == 2
    first = by_schema(report)[FIRST]
    assert first["ledger_rows"] == DJANGO_STEPS
    assert first["django_migrations_reshaped"] is True
    assert first["registered"] is None  # tenancy.Tenant: its row is the registry's
    assert snapshot(fleet) == before


def test_adoption_makes_the_fleet_ours_and_a_rerun_changes_nothing(fleet):
    code, report, err = adopt_json()
    assert code == 0, (report, err)
    assert report["summary"] == {**report["summary"], "adopted": 2, "failed": 0, "differing": 0}
    database = connect().info.dbname
    checksums = {m.version: m.checksum for m in steps.tenant_steps()}
    for schema in fleet:
        owner, web = owner_role_for_schema(schema, database), role_for_schema(schema, database)
        assert sorted(roles_of(schema)) == sorted([owner, web])
        assert owners(schema) == {owner}
        table = f"{schema}.{NOTES}"
        assert query(
            "SELECT has_table_privilege(%s, %s, 'INSERT'), has_schema_privilege(%s, %s, 'CREATE'),"
            " has_schema_privilege(%s, %s, 'USAGE')",
            [web, table, web, schema, web, schema],
        ) == [(True, False, True)]
        # As the engine records a step applied with --fake: its file's checksum, no rollback.
        assert ledger_rows(schema) == {v: (checksums[v], "test", None) for v in DJANGO_STEPS}
        assert query(f"SELECT body FROM {schema}.{NOTES}") == [("kept",)]  # noqa: S608
        assert query(
            "SELECT data_type, is_identity FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'django_migrations' AND column_name = 'id'",
            [schema],
        ) == [("integer", "YES")]
        assert by_schema(report)[schema]["pending"] == [
            "001_organizations_users.sql",
            "002_job_postings.sql",
            "003_candidates_applications_interviews.sql",
        ]
    audit = query(
        "SELECT tenant_schema, actor, details->'ledger_rows' FROM public.audit_logs "
        "WHERE action = 'tenant.adopt' ORDER BY id"
    )
    assert audit == [(FIRST, "test", DJANGO_STEPS), (SECOND, "test", DJANGO_STEPS)]
    code, out, err = run_command("tenant_verify")
    assert code == 0, out + err

    after = snapshot(fleet)
    code, out, err = run_command("tenancy_adopt")
    assert code == 0, err
    assert f"{FIRST}: already adopted" in out and f"{SECOND}: already adopted" in out
    assert "0 adopted, 2 already adopted, 0 failed" in out
    assert snapshot(fleet) == after


def test_baseline_records_the_sql_files_a_stock_schema_already_has(
    public_ready, project_tenant_apps, sql_dir
):
    files = sorted((sql_dir / "tenant").glob("*.sql"))
    stock_schema(FIRST, sql_files=files)  # the same SQL, run by hand in the stock fleet
    host_tenant(FIRST)
    code, report, err = adopt_json("--baseline", "003")
    assert code == 0, (report, err)
    assert by_schema(report)[FIRST]["pending"] == []
    assert sorted(ledger_rows(FIRST)) == sorted([*SQL_FILES, *DJANGO_STEPS])
    assert owners(FIRST) == {owner_role_for_schema(FIRST, connect().info.dbname)}
    code, out, err = run_command("tenant_verify")
    assert code == 0, out + err


def test_a_schema_name_that_needs_quoting(public_ready, project_tenant_apps, sql_dir):
    schema = "Acme-Co"  # django-tenants accepts it: every identifier must be quoted
    stock_schema(schema)
    host_tenant(schema)
    code, report, err = adopt_json()
    assert code == 0, (report, err)
    assert by_schema(report)[schema]["django_migrations_reshaped"] is True
    assert owners(schema) == {owner_role_for_schema(schema, connect().info.dbname)}
    assert sorted(ledger_rows(schema)) == DJANGO_STEPS


def test_only_the_schemas_named_are_adopted(fleet):
    code, report, err = adopt_json("--schema", SECOND)
    assert code == 0, err
    assert [s["schema"] for s in report["schemas"]] == [SECOND]
    assert roles_of(FIRST) == [] and ledger_rows(FIRST) == {}


def test_bad_arguments_change_nothing(fleet):
    before = snapshot(fleet)
    for args, message in [
        (["--schema", "nowhere"], "Not a tenant schema of tenancy.Tenant: nowhere"),
        (["--schema", "bad;name"], "Invalid schema name"),
        (["--baseline", "999"], "No tenant SQL migration numbered 999"),
        (["--baseline", "x"], "--baseline takes a tenant migration number"),
    ]:
        code, out, err = run_command("tenancy_adopt", *args)
        assert code == 1 and message in err, (args, out, err)
    assert snapshot(fleet) == before


def test_a_schema_that_cannot_be_adopted_fails_alone(fleet):
    database = connect().info.dbname
    stale = role_for_schema(FIRST, database)
    with connect() as conn:  # a role left behind by a dropped database of the same name
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(stale)))
    code, out, err = run_command("tenancy_adopt")
    assert code == 1
    assert f"{FIRST}: FAILED: Role {stale} already exists" in err
    assert f"{SECOND}: adopted" in out
    assert owners(FIRST) == {query("SELECT current_user")[0][0]}
    assert ledger_rows(FIRST) == {}


def test_tenants_tenancy_created_are_already_ours(fleet):
    from tenancy.services.tenants import create_tenant

    native = create_tenant("org_native", "Native").schema  # registered: a tenant model row
    before, ledger_before = snapshot([native]), ledger_rows(native)
    code, report, err = adopt_json()
    assert code == 0, (report, err)
    assert by_schema(report)[native]["status"] == "already adopted"
    assert by_schema(report)[FIRST]["status"] == "adopted"
    assert snapshot([native])["catalog"] == before["catalog"]
    assert ledger_rows(native) == ledger_before
    assert query(
        "SELECT count(*) FROM public.audit_logs WHERE tenant_schema = %s AND action = %s",
        [native, adoption.ACTION],
    ) == [(0,)]


def test_a_schema_whose_table_is_in_use_waits_no_longer_than_the_lock_timeout(fleet, settings):
    settings.TENANCY = {**settings.TENANCY, "LOCK_TIMEOUT_MS": 200}
    before = snapshot([FIRST])
    with connect() as app:  # the application reading a note, its transaction open
        app.execute("BEGIN")
        app.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(FIRST, NOTES)))
        code, out, err = run_command("tenancy_adopt")
        app.execute("ROLLBACK")
    assert code == 1
    assert f"{FIRST}: FAILED: A table of {FIRST} is in use" in err
    assert f"{SECOND}: adopted" in out
    after = snapshot([FIRST])
    assert after["catalog"] == before["catalog"] and after["columns"] == before["columns"]
    assert roles_of(FIRST) == [] and ledger_rows(FIRST) == {}
    code, out, err = run_command("tenancy_adopt")
    assert code == 0 and f"{FIRST}: adopted" in out, out + err


# -- resumable ---------------------------------------------------------------------------
def _lock_held_idle(schema: str) -> bool:
    """Some session holds the schema's advisory lock and waits inside its transaction."""
    return bool(
        query(
            "SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.classid = %s::oid "
            "AND l.objid = hashtext(%s)::oid AND a.state = 'idle in transaction'",
            [db.LOCK_NAMESPACE, schema],
        )
    )


def _wait(condition: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def paused_run(fleet: list[str], sql_dir: Path) -> Iterator[subprocess.Popen]:
    """``manage.py tenancy_adopt`` in a child process, held inside SECOND's transaction
    with its changes made."""
    env = subprocess_env(sql_dir, tenant_apps=True)
    env[adoption.PAUSE_ENV] = f"{SECOND}:120"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "tenancy_adopt"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_a_run_killed_in_the_middle_is_finished_by_the_next(paused_run, signum):
    _wait(lambda: _lock_held_idle(SECOND), "the run to pause in the second schema")
    database = connect().info.dbname
    assert owners(FIRST) == {owner_role_for_schema(FIRST, database)}  # committed already
    paused_run.send_signal(signum)  # SIGKILL: no clean-up at all
    _, err = paused_run.communicate(timeout=60)
    if signum == signal.SIGTERM:
        assert paused_run.returncode == 128 + signum
        assert "the schema in progress was rolled back" in err and "Traceback" not in err
    _wait(lambda: not _lock_held_idle(SECOND), "the server to roll the transaction back")
    assert roles_of(SECOND) == [] and ledger_rows(SECOND) == {}
    assert owners(SECOND) == {query("SELECT current_user")[0][0]}
    assert query("SELECT count(*) FROM public.audit_logs WHERE tenant_schema = %s", [SECOND]) == [
        (0,)
    ]

    code, report, err = adopt_json()
    assert code == 0, (report, err)
    assert {s["schema"]: s["status"] for s in report["schemas"]} == {
        FIRST: "already adopted",
        SECOND: "adopted",
    }
    assert owners(SECOND) == {owner_role_for_schema(SECOND, database)}
    assert sorted(ledger_rows(SECOND)) == DJANGO_STEPS


# -- afterwards, the engine migrates them --------------------------------------------------
def test_a_migration_run_applies_a_new_tenant_file_to_the_adopted_schemas(fleet, sql_dir):
    code, _, err = run_command("tenancy_adopt")
    assert code == 0, err
    (sql_dir / "tenant" / "004_tags.sql").write_text(
        "CREATE TABLE tags (id serial PRIMARY KEY, label text NOT NULL UNIQUE);\n"
    )
    code, out, err = run_command("migrate_tenants")
    assert code == 0, out + err
    database = connect().info.dbname
    for schema in fleet:
        assert sorted(ledger_rows(schema)) == [*SQL_FILES, "004", *DJANGO_STEPS]
        assert owners(schema) == {owner_role_for_schema(schema, database)}
        assert query("SELECT to_regclass(%s) IS NOT NULL", [f"{schema}.tags"]) == [(True,)]
    code, out, err = run_command("tenant_verify")
    assert code == 0, out + err


# -- a tenant model that is not the registry -----------------------------------------------
@pytest.fixture
def host_model(pg: None, settings: Any) -> Iterator[Any]:
    """A project's own tenant model (django-tenants' TenantMixin), its table in public,
    registered for this test only."""
    from django.apps import apps
    from django.db import connection, models
    from django_tenants.models import TenantMixin

    class AdoptTestCustomer(TenantMixin):
        name = models.CharField(max_length=100)
        auto_create_schema = False

        class Meta:
            app_label = "tenancy"
            db_table = "adopt_test_customers"

        def __str__(self) -> str:
            return self.name

    try:
        with connection.schema_editor() as editor:
            editor.create_model(AdoptTestCustomer)
        settings.TENANT_MODEL = "tenancy.AdoptTestCustomer"
        yield AdoptTestCustomer
    finally:
        # Before pg's reset, which drops what public gained by name (the identity sequence
        # would come before its table).
        with connect() as conn:
            conn.execute("DROP TABLE IF EXISTS public.adopt_test_customers")
        apps.all_models["tenancy"].pop("adopttestcustomer", None)
        apps.clear_cache()


def test_a_host_tenant_model_gets_registry_rows(
    public_ready, project_tenant_apps, sql_dir, host_model
):
    stock_schema(FIRST)
    host_model.objects.create(schema_name=FIRST, name="Acme Corp")
    code, report, err = adopt_json()
    assert code == 0, (report, err)
    assert by_schema(report)[FIRST]["registered"] == "Acme Corp"
    assert query(
        "SELECT schema_name, organization_name, auth0_org_id, status FROM public.tenant_registry"
    ) == [(FIRST, "Acme Corp", FIRST, "active")]
    code, out, err = run_command("tenant_verify")
    assert code == 0, out + err
    code, out, err = run_command("tenancy_adopt")
    assert code == 0 and f"{FIRST}: already adopted" in out, out + err


# -- tenancy_drop_roles ---------------------------------------------------------------------
GONE = "adopt_test_gone_db"


@pytest.fixture
def gone_roles(pg: None) -> Iterator[list[str]]:
    """The roles tenant creation makes for two tenants of a database GONE that does not
    exist (dropped without its roles)."""
    with connect() as conn:
        drop_roles(conn, GONE)  # left by an interrupted session
        shared = [app_role(GONE), owner_group_role(GONE)]
        for schema in ("tenant_org_a", "tenant_org_b"):
            statements = ownership.tenant_roles_statements(
                role_for_schema(schema, GONE),
                owner_role_for_schema(schema, GONE),
                GONE,
                create_shared=shared,
                superuser=ownership.is_superuser(conn),
            )
            conn.execute(sql.SQL("; ").join(statements))
            shared = []  # made with the first tenant's
        roles = ownership.database_roles(conn, GONE)
    try:
        yield roles
    finally:
        with connect() as conn:
            drop_roles(conn, GONE)


def test_drop_roles_of_a_gone_database(gone_roles):
    assert len(gone_roles) == 6
    code, out, err = run_command("tenancy_drop_roles", "--database", GONE, "--dry-run")
    assert code == 0, err
    assert "Would drop 6 role(s)" in out and all(r in out for r in gone_roles)
    with connect() as conn:
        assert ownership.database_roles(conn, GONE) == gone_roles
    code, out, err = run_command("tenancy_drop_roles", "--database", GONE)
    assert code == 0, err
    assert "Dropped 6 role(s)" in out
    with connect() as conn:
        assert ownership.database_roles(conn, GONE) == []
    code, out, err = run_command("tenancy_drop_roles", "--database", GONE)
    assert code == 0 and "No tenancy roles of database" in out


def test_drop_roles_refuses_a_database_that_exists(fleet):
    run_command("tenancy_adopt")
    database = connect().info.dbname
    with connect() as conn:
        roles = ownership.database_roles(conn, database)
    assert roles
    code, out, err = run_command("tenancy_drop_roles", "--database", database)
    assert code == 1 and f"Database {database} still exists" in err
    with connect() as conn:
        assert ownership.database_roles(conn, database) == roles


def test_drop_roles_refuses_while_a_role_holds_something(gone_roles):
    role = gone_roles[0]
    with connect() as conn:
        conn.execute(
            sql.SQL("GRANT SELECT ON public.tenant_registry TO {}").format(sql.Identifier(role))
        )
    code, out, err = run_command("tenancy_drop_roles", "--database", GONE)
    assert code == 1 and "Nothing was dropped" in err, out + err
    with connect() as conn:
        assert ownership.database_roles(conn, GONE) == gone_roles
        conn.execute(
            sql.SQL("REVOKE SELECT ON public.tenant_registry FROM {}").format(sql.Identifier(role))
        )
