"""Fixtures: every test runs on real PostgreSQL (the embedded server, or DATABASE_URL).

The engine opens its own psycopg connections, so tests use committed data
(``transactional_db``) and a cleanup that puts the test database back as it was:
tenant schemas and roles dropped (roles belong to the whole server), tenancy tables
emptied, and whatever public SQL migrations added to ``public`` removed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from psycopg import sql

from tenancy import conf
from tenancy.engine.db import close_idle
from tenancy.engine.names import app_role, owner_group_role, owner_role_prefix, role_prefix
from tests.settings_sql_only import PROJECT_TENANT_APPS, SUITE_TENANT_APPS

ROOT = Path(__file__).resolve().parent.parent
SEED_DIR = Path(__file__).resolve().parent / "seed_files"
# The suite's own migrations (a snapshot of the shipped ones): files a user adds to
# migrations_sql/ never change what a test sees.
TEST_MIGRATIONS = Path(__file__).resolve().parent / "migrations_sql"
TENANCY_TABLES = [
    "tenant_migration_run_results",
    "tenant_migration_runs",
    "tenant_domains",
    "tenant_registry",
    "tenant_migrations",
    "audit_logs",
    "system_configurations",
    "tenant_pool",
    "tenant_rollouts",
]
# The project's settings keep a warm pool of 5 (employer_portal/settings.py); the suite runs
# with none unless the environment sets TENANCY_POOL_SIZE, in process (_test_migrations)
# and in every child command (they inherit this environment): tests that need a pool set it.
SUITE_POOL_SIZE = os.environ.setdefault("TENANCY_POOL_SIZE", "0")


def connect() -> psycopg.Connection:
    return psycopg.connect(**conf.conninfo(), autocommit=True)


def _public_objects(conn: psycopg.Connection) -> set[tuple[str, str]]:
    rows = conn.execute(
        """
        SELECT 'rel', c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'p', 'S')
        UNION ALL
        SELECT 'func', p.oid::regprocedure::text FROM pg_proc p
          JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
        """
    ).fetchall()
    return {(kind, name) for kind, name in rows}


@pytest.fixture(scope="session")
def public_baseline(django_db_setup: None, django_db_blocker: Any) -> set[tuple[str, str]]:
    with django_db_blocker.unblock(), connect() as conn:
        return _public_objects(conn)


def reset_database(baseline: set[tuple[str, str]]) -> None:
    with connect() as conn:
        db = conn.info.dbname
        for (schema,) in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname NOT IN ('public', "
            "'information_schema') AND nspname NOT LIKE 'pg\\_%'"
        ).fetchall():
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        for kind, name in sorted(_public_objects(conn) - baseline, reverse=True):
            if kind == "rel":
                kind_row = conn.execute(
                    "SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)",
                    [f'public."{name}"'],
                ).fetchone()
                if kind_row is None:
                    continue
                verb = {"v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE"}.get(
                    kind_row[0], "TABLE"
                )
                conn.execute(
                    sql.SQL("DROP {} IF EXISTS {} CASCADE").format(
                        sql.SQL(verb), sql.Identifier("public", name)
                    )
                )
            else:
                conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {} CASCADE").format(sql.SQL(name)))
        conn.execute(
            sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in TENANCY_TABLES)
            )
        )
        drop_roles(conn, db)


def drop_roles(conn: psycopg.Connection, database: str) -> None:
    """Roles are server-wide: drop every role this test database's tenants created."""
    prefixes = [
        p.replace("_", "\\_") + "%" for p in (role_prefix(database), owner_role_prefix(database))
    ]
    rows = conn.execute(
        "SELECT rolname FROM pg_roles WHERE rolname LIKE ANY(%s) OR rolname = ANY(%s)",
        [prefixes, [app_role(database), owner_group_role(database)]],
    ).fetchall()
    for (role,) in rows:
        conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture(scope="session", autouse=True)
def _drop_roles_at_end(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    yield
    # Pooled engine connections would keep the test database from being dropped.
    close_idle()
    with django_db_blocker.unblock(), connect() as conn:
        drop_roles(conn, conn.info.dbname)


@pytest.fixture
def pg(transactional_db: None, public_baseline: set, settings: Any) -> Iterator[None]:
    """A clean test database, reset after the test."""
    reset_database(public_baseline)
    yield
    reset_database(public_baseline)


@pytest.fixture(autouse=True)
def _test_migrations(settings: Any) -> None:
    settings.TENANCY = {
        **settings.TENANCY,
        "MIGRATIONS_DIR": TEST_MIGRATIONS,
        "POOL_SIZE": int(SUITE_POOL_SIZE),
    }
    # The suite's own tenant apps too (tests/settings_sql_only.py): none with migrations.
    settings.TENANT_APPS = SUITE_TENANT_APPS


@pytest.fixture
def project_tenant_apps(settings: Any) -> None:
    """The project's tenant apps (the example Django tenant app among them)."""
    settings.TENANT_APPS = PROJECT_TENANT_APPS


@pytest.fixture
def sql_dir(tmp_path: Path, settings: Any) -> Path:
    """A private copy of the suite's migrations that the test may add files to."""
    target = tmp_path / "migrations_sql"
    shutil.copytree(TEST_MIGRATIONS, target)
    settings.TENANCY = {**settings.TENANCY, "MIGRATIONS_DIR": target}
    return target


@pytest.fixture
def superuser(pg: None) -> Any:
    """An admin superuser (the admin tests' client logs in as it)."""
    from django.contrib.auth.models import User

    return User.objects.create_superuser("root", "root@example.com", "pw-for-tests-only")


@pytest.fixture
def public_ready(pg: None) -> None:
    """Public SQL migrations applied."""
    call_command("migrate_tenants", "--public", verbosity=0)


def fail_after_step(monkeypatch: Any, module: Any, attribute: str, index: int) -> str:
    """Make step ``index`` of ``module.attribute`` (a list of named steps) do its work and
    then raise, as a failure injected right after it; returns the step's name."""
    steps = list(getattr(module, attribute))
    name, real = steps[index]

    def step_then_fail(ctx: Any) -> None:
        real(ctx)  # the step does its work, then the operation fails: all must be undone
        raise RuntimeError("injected failure")

    steps[index] = (name, step_then_fail)
    monkeypatch.setattr(module, attribute, steps)  # the services read the global each call
    return name


def query(text: str, params: list | None = None) -> list[tuple]:
    with connect() as conn:
        return conn.execute(text, params).fetchall()


def tables_in(schema: str) -> set[str]:
    return {r[0] for r in query("SELECT tablename FROM pg_tables WHERE schemaname = %s", [schema])}


def ledger_versions(schema: str) -> list[str]:
    return [
        r[0]
        for r in query(
            "SELECT migration_version FROM public.tenant_migrations WHERE tenant_schema = %s "
            "ORDER BY migration_version",
            [schema],
        )
    ]


def run_command(*args: str) -> tuple[int, str, str]:
    """call_command with the exit code a shell would see, and the captured output."""
    from io import StringIO

    from django.core.management.base import CommandError

    out, err = StringIO(), StringIO()
    try:
        call_command(*args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    except CommandError as exc:
        err.write(str(exc))
        code = exc.returncode
    return code, out.getvalue(), err.getvalue()


def subprocess_env(
    migrations_dir: Path | None = None, *, tenant_apps: bool = False
) -> dict[str, str]:
    """Environment for `python manage.py …` in a child process, on the test database, with
    the suite's tenant apps (``tenant_apps``: the project's)."""
    info = conf.conninfo()
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = (
        "employer_portal.settings" if tenant_apps else "tests.settings_sql_only"
    )
    host = info.get("host", "")
    if host.startswith("/"):
        url = f"postgresql://{info.get('user', 'postgres')}@/{info['dbname']}?host={host}"
    else:
        url = (
            f"postgresql://{info.get('user', 'postgres')}@{host or '127.0.0.1'}:"
            f"{info.get('port', 5432)}/{info['dbname']}"
        )
    env["EMPLOYER_PORTAL_DB_URL"] = url
    env.pop("DATABASE_URL", None)
    env["TENANCY_MIGRATIONS_DIR"] = str(migrations_dir or TEST_MIGRATIONS)
    return env


def manage(
    *args: str, migrations_dir: Path | None = None, tenant_apps: bool = False, **kwargs: Any
) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=subprocess_env(migrations_dir, tenant_apps=tenant_apps),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.fixture
def fresh_database(pg: None) -> Iterator[str]:
    """An empty database beside the test database: no tenancy tables."""
    name = f"{connect().info.dbname}_fresh"
    with connect() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield name
    close_idle()
    # Roles are the server's: those the test's commands made for this database go with it.
    with psycopg.connect(**{**conf.conninfo(), "dbname": name}, autocommit=True) as conn:
        drop_roles(conn, name)
    with connect() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def fresh_url(name: str) -> str:
    """The subprocess database URL of the database ``name`` on the test server."""
    return subprocess_env()["EMPLOYER_PORTAL_DB_URL"].replace(
        f"/{connect().info.dbname}", f"/{name}"
    )


def add_posting(schema: str, title: str) -> None:
    """An organization and one open job posting titled ``title`` in ``schema``."""
    with connect() as conn:
        conn.execute(
            sql.SQL(
                "WITH o AS (INSERT INTO {}.organizations (auth0_org_id, name) "
                "VALUES (%s, 'x') RETURNING id) "
                "INSERT INTO {}.job_postings (organization_id, title, status) "
                "SELECT id, %s, 'open' FROM o"
            ).format(sql.Identifier(schema), sql.Identifier(schema)),
            [title + "-org", title],
        )
