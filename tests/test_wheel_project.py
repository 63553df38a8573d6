"""The wheel in a django-tenants project of its own, as docs/adopting.md installs it.

The checkout's wheel is built and installed with its dependencies into a new venv, next to
a minimal project (tests/wheel_project/: its own tenant model ``customers.Client`` with
``auto_create_schema`` and ``customers.Domain``, a tenant app ``notes`` with a view, django-
tenants' ``TenantMainMiddleware``, and a ``TenantTestCase``). Everything then runs from that
venv on a fresh database of the suite's server: ``makemigrations``, ``migrate_schemas
--shared``, two tenants saved through the project's model (built by tenancy: owner role,
ledger), a third built by stock django-tenants and adopted (``tenancy_adopt --dry-run``
changes nothing, ``tenancy_adopt`` makes it tenancy's), the view served by ``runserver``
through a real PgBouncer in transaction mode with one server connection, each response
showing its own tenant's note only, and the project's own tests (``manage.py test``).
Each step's exit code is checked and its effect read from the catalog with psycopg.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tenancy import conf
from tenancy.engine.names import (
    app_role,
    owner_group_role,
    owner_role_for_schema,
    owner_role_prefix,
    role_for_schema,
    role_prefix,
)
from tests import pgbouncer
from tests.conftest import ROOT, connect, drop_roles, fresh_url

TEMPLATE = Path(__file__).resolve().parent / "wheel_project"
TENANTS = ["alpha", "beta"]  # saved through the project's model on tenancy
STOCK = "stock1"  # saved by stock django-tenants, then adopted
CLONED = "cloned1"  # would be cloned from a template: refused
STEP = "notes.0001_initial"
NOTES = "notes_note"
STOCK_SETTINGS = "wheelsite.settings_stock"
REQUESTS = 60
CLIENTS = 4


def note_of(schema: str) -> str:
    return f"note of {schema}"


# -- the wheel, the venv, the project ------------------------------------------------------
def shown(done: subprocess.CompletedProcess[str]) -> str:
    """What a failed command said, for the assertion message."""
    command = " ".join(str(a) for a in done.args)
    return (
        f"`{command}` exited {done.returncode}\n--- stdout ---\n{done.stdout}"
        f"\n--- stderr ---\n{done.stderr}"
    )


def run(args: list[Any], *, ok: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("timeout", 300)
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, stdin=subprocess.DEVNULL, **kwargs
    )
    if ok:
        assert done.returncode == 0, shown(done)
    return done


def build_wheel(folder: Path) -> Path:
    """As tests/test_packaging.py's ``wheel`` fixture builds it: from a copy of what the
    build reads, so that the checkout gets no build/ or *.egg-info."""
    source = folder / "source"
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "tenancy", source / "tenancy", ignore=shutil.ignore_patterns("__pycache__")
    )
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", folder, source])
    (wheel,) = folder.glob("django_tenancy_migrations-*.whl")
    return wheel


def clean_env() -> dict[str, str]:
    """The environment without this suite's project, database and interpreter settings."""
    dropped = ("DJANGO_", "EMPLOYER_PORTAL_", "TENANCY_", "WHEELSITE_")
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(dropped)
        and k not in {"DATABASE_URL", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}
    }


def make_venv(folder: Path, wheel: Path) -> Path:
    """A new venv with the wheel and its dependencies from the registry (pip's cache makes
    a second run quick); returns its python."""
    run([sys.executable, "-m", "venv", folder])
    python = folder / "bin" / "python"
    run([python, "-m", "pip", "install", "-q", wheel], env=clean_env(), timeout=600)
    return python


@dataclass
class Site:
    """The project in its folder, run by the venv's python on the database at ``url``."""

    folder: Path
    python: Path
    url: str

    def env(self, settings: str = "wheelsite.settings", **extra: str) -> dict[str, str]:
        env = clean_env()
        env["PATH"] = f"{self.python.parent}{os.pathsep}{env.get('PATH', '')}"
        env.update(DJANGO_SETTINGS_MODULE=settings, WHEELSITE_DB_URL=self.url, **extra)
        return env

    def manage(
        self, *args: str, settings: str = "wheelsite.settings", ok: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run(
            [self.python, "manage.py", *args], ok=ok, cwd=self.folder, env=self.env(settings)
        )

    def shell(self, code: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.manage("shell", "--no-imports", "-c", code, **kwargs)


def make_project(folder: Path, python: Path, url: str) -> Site:
    shutil.copytree(TEMPLATE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    for kind in ("public", "tenant"):  # tenancy's SQL migrations: none in this project
        (folder / "migrations_sql" / kind).mkdir(parents=True)
    return Site(folder, python, url)


# -- what the database holds ---------------------------------------------------------------
@contextmanager
def database(name: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(**{**conf.conninfo(), "dbname": name}, autocommit=True) as conn:
        yield conn


def rows(name: str, text: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with database(name) as conn:
        return conn.execute(text, params).fetchall()


def owners(name: str, schema: str) -> set[str]:
    """The owners of the schema and of every relation in it."""
    return {
        r[0]
        for r in rows(
            name,
            "SELECT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname = %s "
            "UNION SELECT pg_get_userbyid(c.relowner)::text FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s",
            [schema, schema],
        )
    }


def table_owner(name: str, schema: str, table: str) -> str | None:
    found = rows(
        name,
        "SELECT tableowner::text FROM pg_tables WHERE schemaname = %s AND tablename = %s",
        [schema, table],
    )
    return found[0][0] if found else None


def ledger(name: str) -> set[tuple[str, str]]:
    return set(rows(name, "SELECT tenant_schema, migration_version FROM public.tenant_migrations"))


def registered(name: str) -> set[str]:
    return {r[0] for r in rows(name, "SELECT schema_name FROM public.tenant_registry")}


def roles_of_database(database_name: str) -> list[str]:
    """The tenancy roles whose names carry ``database_name``'s hash (roles are the server's)."""
    prefixes = [
        p.replace("_", "\\_") + "%"
        for p in (role_prefix(database_name), owner_role_prefix(database_name))
    ]
    shared = [app_role(database_name), owner_group_role(database_name)]
    with connect() as conn:
        found = conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE ANY(%s) OR rolname = ANY(%s) "
            "ORDER BY 1",
            [prefixes, shared],
        ).fetchall()
    return [r[0] for r in found]


def snapshot(name: str) -> dict[str, Any]:
    """What adoption changes: owners and ACLs, roles, ledger, registry, audit log."""
    return {
        "catalog": rows(
            name,
            "SELECT n.nspname, n.nspowner::regrole::text, n.nspacl::text, c.relname, "
            "c.relowner::regrole::text, c.relacl::text FROM pg_namespace n "
            "LEFT JOIN pg_class c ON c.relnamespace = n.oid "
            "WHERE n.nspname = ANY(%s) ORDER BY 1, 4",
            [[*TENANTS, STOCK]],
        ),
        "roles": roles_of_database(name),
        "ledger": rows(name, "SELECT * FROM public.tenant_migrations ORDER BY id"),
        "registry": rows(name, "SELECT * FROM public.tenant_registry ORDER BY id"),
        "audit": rows(name, "SELECT * FROM public.audit_logs ORDER BY id"),
    }


# -- the shell scripts the project runs ----------------------------------------------------
CREATE_TENANTS = f"""
from customers.models import Client, Domain
for schema in {TENANTS!r}:
    client = Client(schema_name=schema, name=schema.title())
    client.save()
    Domain.objects.create(domain=f"{{schema}}.localhost", tenant=client, is_primary=True)
"""

ADD_NOTES = f"""
from django_tenants.utils import schema_context
from notes.models import Note
for schema in {TENANTS!r}:
    with schema_context(schema):
        Note.objects.create(text=f"note of {{schema}}")
"""

# A tenant django-tenants would clone from a template schema: refused before its row.
CLONE_FROM_TEMPLATE = f"""
from django.test.utils import override_settings
from customers.models import Client
from tenancy.services.tenants import TenantError
with override_settings(TENANT_BASE_SCHEMA={TENANTS[0]!r}, TENANT_CREATION_FAKES_MIGRATIONS=True):
    try:
        Client(schema_name={CLONED!r}, name="Cloned").save()
    except TenantError as exc:
        print("refused:", exc)
"""

# Under stock django-tenants (wheelsite.settings_stock): its own save() and migrate_schemas.
CREATE_STOCK_TENANT = f"""
from django_tenants.utils import schema_context
from customers.models import Client, Domain
from notes.models import Note
client = Client(schema_name={STOCK!r}, name="Stock one")
client.save()
Domain.objects.create(domain="{STOCK}.localhost", tenant=client, is_primary=True)
with schema_context({STOCK!r}):
    Note.objects.create(text="note of {STOCK}")
"""

# One request through Django's test client, and what became of it, as JSON.
REQUEST = """
import json
from django.test import Client
response = Client(raise_request_exception=False).get("/notes/", HTTP_HOST="{host}")
error = response.exc_info[1] if response.exc_info else None
print(json.dumps({{"status": response.status_code,
                  "error": f"{{type(error).__name__}}: {{error}}" if error else None}}))
"""


# -- serving through PgBouncer -------------------------------------------------------------
@contextmanager
def runserver(site: Site, pooler_url: str, log: Path) -> Iterator[int]:
    """``manage.py runserver`` with the site's connection through ``pooler_url``."""
    port = pgbouncer.free_port()
    with log.open("w") as out:
        process = subprocess.Popen(
            [site.python, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=site.folder, env=site.env(WHEELSITE_POOLER_URL=pooler_url),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    pytest.fail(f"runserver exited {process.returncode}:\n{log.read_text()}")
                try:
                    get(port, TENANTS[0])
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail(f"runserver did not answer within 60 s:\n{log.read_text()}")
                    time.sleep(0.2)
            yield port
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def get(port: int, schema: str) -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/notes/", headers={"Host": f"{schema}.localhost"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")[:2000]


def serve_alternating(port: int, schemas: list[str]) -> list[tuple[str, int, str]]:
    """REQUESTS requests from CLIENTS threads at once, the tenants taking turns."""
    order = [schemas[i % len(schemas)] for i in range(REQUESTS)]
    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(lambda s: get(port, s), order))
    return [(s, status, body) for s, (status, body) in zip(order, answers, strict=True)]


# -- the test ------------------------------------------------------------------------------
TEARDOWN_GAP = (
    "tenancy: the project's `manage.py test` exits 1 after its tests pass. Django's test "
    "runner cannot drop the test database: tenancy's engine pool (tenancy/engine/db.py, "
    "application_name 'tenancy', idle after COMMIT) still holds a connection to it. "
    "tenancy.engine.db.close_idle() before the runner's teardown_databases makes it exit 0."
)


def drop_database(name: str) -> None:
    with connect() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def project_test_database(fresh_database: str) -> Iterator[str]:
    """The name of the test database the project's `manage.py test` makes; dropped, with
    its roles, whatever the test run left."""
    name = f"test_{fresh_database}"
    yield name
    drop_database(name)
    with connect() as conn:
        drop_roles(conn, name)


@pytest.mark.once
def test_a_django_tenants_project_runs_on_the_installed_wheel(
    fresh_database: str, project_test_database: str, tmp_path: Path
) -> None:
    db = fresh_database
    user = conf.conninfo().get("user") or "postgres"

    # 1-3. The wheel, a venv with it, the project beside it.
    wheel = build_wheel(tmp_path / "dist")
    python = make_venv(tmp_path / "venv", wheel)
    site = make_project(tmp_path / "project", python, fresh_url(db))
    where = site.shell("import tenancy; print(tenancy.__file__)").stdout.strip()
    assert Path(where).is_relative_to(tmp_path / "venv"), f"tenancy imported from {where}"

    site.manage("makemigrations", "customers", "notes")
    for app in ("customers", "notes"):
        assert (site.folder / app / "migrations" / "0001_initial.py").is_file()
    site.manage("check")

    # 4. Public tables, then two tenants saved through the project's own model.
    site.manage("migrate_schemas", "--shared")
    public = {r[0] for r in rows(db, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"customers_client", "customers_domain", "tenant_migrations", "tenant_registry"} <= (
        public
    )
    assert NOTES not in public

    site.shell(CREATE_TENANTS)
    assert rows(db, "SELECT schema_name FROM customers_client ORDER BY 1") == [
        (s,) for s in TENANTS
    ]
    for schema in TENANTS:
        owner, web = owner_role_for_schema(schema, db), role_for_schema(schema, db)
        assert table_owner(db, schema, NOTES) == owner, f"{schema}.{NOTES}"
        assert owners(db, schema) == {owner}
        other = next(s for s in TENANTS if s != schema)
        assert rows(
            db,
            "SELECT has_table_privilege(%s, %s, 'SELECT'), has_table_privilege(%s, %s, 'SELECT')",
            [web, f"{schema}.{NOTES}", web, f"{other}.{NOTES}"],
        ) == [(True, False)], f"{web} must read its own notes only"
    assert {(s, STEP) for s in TENANTS} <= ledger(db)
    assert set(TENANTS) <= registered(db)
    site.shell(ADD_NOTES)
    for schema in TENANTS:
        assert rows(db, f'SELECT text FROM "{schema}".{NOTES}') == [(note_of(schema),)]

    # A template clone (TENANT_BASE_SCHEMA) is refused before anything is written.
    before = snapshot(db)
    cloned = site.shell(CLONE_FROM_TEMPLATE)
    assert "refused:" in cloned.stdout and "clone_schema()" in cloned.stdout, shown(cloned)
    assert snapshot(db) == before, "a refused clone changed the database"
    assert not rows(db, "SELECT 1 FROM pg_namespace WHERE nspname = %s", [CLONED])
    assert not rows(db, "SELECT 1 FROM customers_client WHERE schema_name = %s", [CLONED])

    # 5. A tenant built by stock django-tenants, then adopted.
    site.shell(CREATE_STOCK_TENANT, settings=STOCK_SETTINGS)
    assert owners(db, STOCK) == {user}, "stock django-tenants builds as the connecting user"
    assert rows(db, f'SELECT text FROM "{STOCK}".{NOTES}') == [(note_of(STOCK),)]
    assert STOCK not in {s for s, _ in ledger(db)} | registered(db)
    before_adoption = json.loads(
        site.shell(REQUEST.format(host=f"{STOCK}.localhost")).stdout.strip().splitlines()[-1]
    )
    assert before_adoption["status"] == 500 and "tenancy_adopt" in (
        before_adoption["error"] or ""
    ), f"a schema tenancy did not build is refused, naming tenancy_adopt: {before_adoption}"

    before = snapshot(db)
    dry = site.manage("tenancy_adopt", "--dry-run")
    assert f"{STOCK}: would adopt" in dry.stdout, shown(dry)
    assert snapshot(db) == before, "tenancy_adopt --dry-run changed the database"

    site.manage("tenancy_adopt")
    owner = owner_role_for_schema(STOCK, db)
    assert owners(db, STOCK) == {owner}
    assert (STOCK, STEP) in ledger(db)
    assert STOCK in registered(db)
    assert {(s, STEP) for s in TENANTS} <= ledger(db)  # the others untouched
    again = site.manage("tenancy_adopt")
    assert "already adopted" in again.stdout, shown(again)

    # The view for each tenant, through PgBouncer in transaction mode with one server
    # connection that every client shares, the tenants taking turns.
    schemas = [*TENANTS, STOCK]
    if not pgbouncer.available():
        pytest.fail("pgbouncer is not installed: `make test` installs it (apt-get)")
    with pgbouncer.pgbouncer(conf.conninfo(), mode="transaction", pool_size=1) as bouncer:
        pooler_url = f"postgresql://{user}@127.0.0.1:{bouncer}/{db}"
        log = tmp_path / "runserver.log"
        with runserver(site, pooler_url, log) as port:
            answers = serve_alternating(port, schemas)
    wrong = [
        (schema, status, body)
        for schema, status, body in answers
        if status != 200 or json.loads(body) != {"schema": schema, "notes": [note_of(schema)]}
    ]
    assert not wrong, f"{len(wrong)} of {len(answers)} wrong: {wrong[:3]}\n{log.read_text()}"
    assert {s for s, _, _ in answers} == set(schemas)

    # 6. The project's own tests (TenantTestCase, TenantClient) on their own test database.
    tested = site.manage("test", "--noinput", "-v", "2", ok=False)
    assert "Ran 1 test" in tested.stderr and "\nOK" in tested.stderr, shown(tested)
    # Known gap (see TEARDOWN_GAP): the tests pass, then Django cannot drop the test database.
    teardown_gap = tested.returncode != 0 and "is being accessed by other users" in tested.stderr
    if teardown_gap:
        drop_database(project_test_database)  # so that tenancy_drop_roles can run below
    else:
        assert tested.returncode == 0, shown(tested)
    assert not rows(db, "SELECT 1 FROM pg_database WHERE datname = %s", [project_test_database])
    dropped = site.manage("tenancy_drop_roles", "--database", project_test_database)
    assert "Dropped" in dropped.stdout, shown(dropped)
    assert roles_of_database(project_test_database) == [], shown(dropped)
    if teardown_gap:
        ran = tested.stderr[tested.stderr.index("Ran 1 test") :].splitlines()
        detail = "\n".join([*ran[:5], "...", *tested.stderr.strip().splitlines()[-2:]])
        pytest.fail(f"{TEARDOWN_GAP}\n`manage.py test` exited {tested.returncode}:\n{detail}")
