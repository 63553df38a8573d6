"""Django migrations of tenant apps run through the engine: one plan with the SQL files,
compiled once and replayed in every schema, RunPython per schema, each schema's
``django_migrations`` kept true, the ways back, and only tenant apps in tenant schemas.

The suite's tenant app is the example one, ``employer_portal.candidate_notes`` (0001: the
table, with a foreign key to ``auth_user``; 0002: a column and a RunPython that fills it).
Tests that need tenants from before the app existed create them with ``TENANT_APPS``
without it; tests that need other migrations point ``MIGRATION_MODULES`` at a package of
their own."""

from __future__ import annotations

import itertools
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings

from tenancy.engine.names import owner_group_role, owner_role_for_schema
from tenancy.engine.source import TENANT, Migration
from tenancy.services import django_steps, pool, runs, steps, tenants
from tenancy.services.tenants import create_tenant
from tests.conftest import (
    ROOT,
    connect,
    ledger_versions,
    manage,
    query,
    run_command,
    tables_in,
)
from tests.settings_sql_only import SUITE_TENANT_APPS

APP = "candidate_notes"
TABLE = "candidate_notes_candidatenote"
STEPS = [f"{APP}.0001_initial", f"{APP}.0002_summary"]
REAL_MIGRATIONS = ROOT / "employer_portal" / "candidate_notes" / "migrations"
WITHOUT_THE_APP = SUITE_TENANT_APPS


def columns(schema: str, table: str = TABLE) -> list[str]:
    return [
        r[0]
        for r in query(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            [schema, table],
        )
    ]


def django_records(schema: str) -> list[tuple[str, str]]:
    if "django_migrations" not in tables_in(schema):
        return []
    return query(f'SELECT app, name FROM "{schema}".django_migrations ORDER BY id')  # noqa: S608


def before_the_app(settings: Any, *orgs: str) -> list[str]:
    """Tenants created while the tenant app was not in TENANT_APPS."""
    saved = django_settings.TENANT_APPS
    settings.TENANT_APPS = WITHOUT_THE_APP
    try:
        return [create_tenant(org).schema for org in orgs]
    finally:
        settings.TENANT_APPS = saved


_PACKAGES = itertools.count()


@pytest.fixture
def migrations_package(tmp_path: Path, settings: Any) -> Iterator[Any]:
    """``make(files)``: the app's migrations become a package of ``files`` (name → text,
    or name → a real migration's file name to copy), for this test only."""
    made: list[str] = []

    def make(files: dict[str, str]) -> None:
        # A name never used before in this process: Django's migration graph is read once
        # per MIGRATION_MODULES (django_steps._loader).
        name = f"notes_migrations_{next(_PACKAGES)}"
        package = tmp_path / name
        package.mkdir()
        (package / "__init__.py").write_text("")
        for file, text in files.items():
            if "\n" not in text:  # the name of a real migration file
                shutil.copy(REAL_MIGRATIONS / text, package / file)
            else:
                (package / file).write_text(text)
        made.append(name)
        settings.MIGRATION_MODULES = {APP: name}

    sys.path.insert(0, str(tmp_path))
    yield make
    sys.path.remove(str(tmp_path))
    for name in made:
        for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[module]


@pytest.fixture(autouse=True)
def _fresh_compiles(project_tenant_apps: None) -> None:
    """The project's tenant apps, and compiles that start afresh."""
    django_steps._cache.clear()
    django_steps._introspects.clear()


# -- 1, 5: one plan; only tenant apps in tenant schemas ------------------------------------
def test_a_new_tenant_gets_the_tenant_apps_tables_and_their_records(public_ready, sql_dir):
    schema = create_tenant("org_djnew1").schema
    assert TABLE in tables_in(schema)
    database = connect().info.dbname
    assert query(
        "SELECT relowner::regrole::text FROM pg_class WHERE oid = to_regclass(%s)",
        [f"{schema}.{TABLE}"],
    ) == [(owner_role_for_schema(schema, database),)]
    assert django_records(schema) == [(APP, "0001_initial"), (APP, "0002_summary")]
    assert ledger_versions(schema)[-2:] == STEPS
    rollback = query(
        "SELECT migration_version, rollback_sql FROM tenant_migrations "
        "WHERE tenant_schema = %s AND migration_version = ANY(%s) ORDER BY 1",
        [schema, STEPS],
    )
    assert 'DROP TABLE "candidate_notes_candidatenote"' in rollback[0][1]
    assert "DELETE FROM django_migrations" in rollback[1][1]
    # A tenant app's table is never in public, a shared app's never in a tenant schema.
    assert TABLE not in tables_in("public")
    assert not tables_in(schema) & {"auth_user", "django_session", "django_admin_log"}


def test_foreign_keys_to_shared_tables_get_their_grant(public_ready, sql_dir):
    create_tenant("org_djfk1")
    group = owner_group_role(connect().info.dbname)
    assert query("SELECT has_table_privilege(%s, 'public.auth_user', 'REFERENCES')", [group]) == [
        (True,)
    ]


# -- 1: every verb sees the Django steps -----------------------------------------------------
def test_pending_django_steps_are_seen_and_applied_by_one_run(public_ready, sql_dir, settings):
    schemas = before_the_app(settings, "org_djold1", "org_djold2", "org_djold3")
    assert all(TABLE not in tables_in(s) for s in schemas)
    code, out, _ = run_command("migrate_tenants", "--dry-run")
    assert code == 0 and f"{APP}.0001_initial" in out and f"{APP}.0002_summary" in out
    code, _, _ = run_command("migrate_tenants", "--check")
    assert code == 2
    code, out, _ = run_command("tenant_status", "--format", "json")
    assert code == 0
    assert all(TABLE not in tables_in(s) for s in schemas)  # looking changed nothing
    code, out, err = run_command("migrate_tenants", "--tenants")
    assert code == 0, err
    for schema in schemas:
        assert TABLE in tables_in(schema)
        assert ledger_versions(schema)[-2:] == STEPS
        assert django_records(schema) == [(APP, "0001_initial"), (APP, "0002_summary")]
    code, _, _ = run_command("migrate_tenants", "--check")
    assert code == 0


def test_each_step_is_compiled_once_for_every_schema(public_ready, sql_dir, settings, monkeypatch):
    schemas = before_the_app(settings, *(f"org_djonce{i}" for i in range(4)))
    compiled: list[tuple[str, str]] = []
    real = django_steps._compile_forwards

    def counting(wrapper: Any, app_label: str, name: str) -> Any:
        compiled.append((app_label, name))
        return real(wrapper, app_label, name)

    monkeypatch.setattr(django_steps, "_compile_forwards", counting)
    report = runs.migrate(public=False, tenants=True, jobs=2, actor="test")
    assert report.exit_code == 0, [r.error for r in report.failed]
    assert sorted(compiled) == [(APP, "0001_initial"), (APP, "0002_summary")]
    assert all(TABLE in tables_in(s) for s in schemas)


# -- 3: RunPython per schema, on that schema's rows -------------------------------------------
def test_a_data_migration_runs_in_each_schema_on_its_own_rows(
    public_ready, sql_dir, migrations_package
):
    migrations_package({"0001_initial.py": "0001_initial.py"})
    first, second = (create_tenant(o).schema for o in ("org_djdata1", "org_djdata2"))
    assert "summary" not in columns(first)
    with connect() as conn:
        for schema, body in ((first, "Strong Python\nmore"), (second, "Other tenant")):
            conn.execute(
                f'INSERT INTO "{schema}".{TABLE} (candidate_id, body, created_at) '  # noqa: S608
                "VALUES (gen_random_uuid(), %s, now())",
                [body],
            )
    migrations_package({"0001_initial.py": "0001_initial.py", "0002_summary.py": "0002_summary.py"})
    report = runs.migrate(public=False, tenants=True, actor="test")
    assert report.exit_code == 0, [r.error for r in report.failed]
    assert query(f'SELECT summary FROM "{first}".{TABLE}') == [("Strong Python",)]  # noqa: S608
    assert query(f'SELECT summary FROM "{second}".{TABLE}') == [("Other tenant",)]  # noqa: S608


def test_what_the_sandbox_refuses_names_the_migration_and_operation(
    public_ready, sql_dir, migrations_package
):
    victim = create_tenant("org_djvictim").schema
    migrations_package(
        {
            "0001_initial.py": "0001_initial.py",
            "0002_summary.py": "0002_summary.py",
            "0003_evil.py": (
                "from django.db import migrations\n\n\n"
                "class Migration(migrations.Migration):\n"
                f"    dependencies = [('{APP}', '0002_summary')]\n"
                f"    operations = [migrations.RunSQL('DROP SCHEMA {victim} CASCADE')]\n"
            ),
        }
    )
    report = runs.migrate(public=False, tenants=True, actor="test")
    assert report.exit_code == 1
    error = report.failed[0].error
    assert f"{APP}.0003_evil" in error and "Raw SQL operation" in error
    assert "refused by the rules for tenant code" in error
    assert "job_postings" in tables_in(victim)


# -- 8: the ways back ---------------------------------------------------------------------------
def test_migrate_schemas_to_0001_removes_the_field_everywhere_and_back(public_ready, sql_dir):
    schemas = [create_tenant(o).schema for o in ("org_djback1", "org_djback2")]
    code, out, err = run_command("migrate_schemas", APP, "0001")
    assert code == 0, err
    for schema in schemas:
        assert "summary" not in columns(schema)
        assert django_records(schema) == [(APP, "0001_initial")]
        assert f"{APP}.0002_summary" not in ledger_versions(schema)
    code, out, err = run_command("migrate_schemas", "--check")
    assert code == 2
    code, out, err = run_command("migrate_schemas")
    assert code == 0, err
    for schema in schemas:
        assert "summary" in columns(schema)
        assert django_records(schema)[-1] == (APP, "0002_summary")


def test_rollback_to_zero_and_fake_agree_with_django_records(public_ready, sql_dir):
    schema = create_tenant("org_djzero1").schema
    report = runs.rollback(f"{APP}.zero", tenants=True, actor="test")
    assert report.exit_code == 0, [r.error for r in report.failed]
    assert TABLE not in tables_in(schema) and django_records(schema) == []
    report = runs.migrate(public=False, tenants=True, fake=True, actor="test")
    assert report.exit_code == 0
    assert TABLE not in tables_in(schema)  # faked: recorded, not run
    assert django_records(schema) == [(APP, "0001_initial"), (APP, "0002_summary")]
    assert ledger_versions(schema)[-2:] == STEPS


# -- creation paths ------------------------------------------------------------------------------
def test_a_pool_schema_gets_the_django_tables(public_ready, sql_dir, settings, monkeypatch):
    settings.TENANCY = {**settings.TENANCY, "POOL_SIZE": 1}
    monkeypatch.setattr(tenants, "REFILL_TASK", "tests.test_pool.no_refill")
    built = pool.fill(1, actor="test").built
    assert len(built) == 1 and TABLE in tables_in(built[0])
    created = create_tenant("org_djpool1")
    assert created.path == tenants.POOL
    assert TABLE in tables_in(created.schema)
    assert django_records(created.schema) == [(APP, "0001_initial"), (APP, "0002_summary")]


# -- a kill -9 in the middle ----------------------------------------------------------------------
def test_a_killed_django_run_is_finished_by_a_rerun(public_ready, sql_dir, settings):
    schemas = before_the_app(settings, *(f"org_djkill{i}" for i in range(8)))
    (sql_dir / "tenant" / "050_after_notes.sql").write_text(
        f"-- Depends: {APP}.0002_summary\n-- UP\nCREATE TABLE after_notes (id int);\n"
        "SELECT pg_sleep(0.3);\n"
    )
    proc = manage("migrate_tenants", "--tenants", migrations_dir=sql_dir, tenant_apps=True)
    deadline = time.monotonic() + 60
    while not any("050" in ledger_versions(s) for s in schemas):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    for schema in schemas:  # each schema wholly migrated, or not at all
        done = "050" in ledger_versions(schema)
        assert (TABLE in tables_in(schema)) == done
        assert bool(django_records(schema)) == done
    assert not all("050" in ledger_versions(s) for s in schemas)
    rerun = manage("migrate_tenants", "--tenants", migrations_dir=sql_dir, tenant_apps=True)
    assert rerun.wait(timeout=120) == 0, rerun.communicate()
    assert all(TABLE in tables_in(s) and "050" in ledger_versions(s) for s in schemas)


# -- 6: one order -------------------------------------------------------------------------------
def _file(version: str, depends: tuple[str, ...] = ()) -> Migration:
    name = f"{version}_x.sql"
    return Migration(
        TENANT, version, name, "", Path(name), "SELECT 1;", None, version, True, depends=depends
    )


def _django(name: str, depends: tuple[str, ...] = ()) -> Migration:
    return Migration(
        TENANT, name, name, "", Path(name), "", None, name, True,
        runner=django_steps.DjangoRunner(*name.split("."), "c"), depends=depends,
    )  # fmt: skip


def test_steps_are_ordered_by_their_dependencies():
    files = [_file("001"), _file("002", ("notes.0001",)), _file("003")]
    django = [_django("notes.0001_a"), _django("notes.0002_b", ("notes.0001_a", "003"))]
    order = [m.name for m in steps.ordered(files, django)]
    assert order == ["001_x.sql", "notes.0001_a", "002_x.sql", "003_x.sql", "notes.0002_b"]


def test_a_cycle_or_a_missing_dependency_is_refused():
    with pytest.raises(steps.OrderError, match="cycle"):
        steps.ordered([_file("001", ("notes.0001",))], [_django("notes.0001_a", ("001",))])
    with pytest.raises(steps.OrderError, match="depends on notes.0009"):
        steps.ordered([_file("001", ("notes.0009",))], [_django("notes.0001_a")])


# -- 7: a SQL file's foreign key to a public table nobody granted ----------------------------
REFERENCES_CONFIG = (
    "-- UP\nCREATE TABLE tenant_settings (id serial PRIMARY KEY,\n"
    "  config_id bigint REFERENCES public.system_configurations(id));\n"
)


def test_an_ungranted_public_reference_is_refused_before_any_schema(public_ready, sql_dir):
    schemas = [create_tenant(o).schema for o in ("org_djref1", "org_djref2")]
    (sql_dir / "tenant" / "050_settings.sql").write_text(REFERENCES_CONFIG)
    for args in (("--dry-run",), ()):
        code, out, err = run_command("migrate_tenants", *args)
        assert code == 1, (out, err)
        assert "050_settings.sql:2: a foreign key to public.system_configurations" in err
        assert "GRANT REFERENCES ON public.system_configurations TO {{owner_group}}" in err
    assert all("tenant_settings" not in tables_in(s) for s in schemas)
    code, out, _ = run_command("lint_migrations", "--format", "json")
    assert "shared-reference-grant" in out
    # With the grant in a public file (pending in the same run), the run goes through.
    (sql_dir / "public" / "050_grant.sql").write_text(
        "GRANT REFERENCES ON public.system_configurations TO {{owner_group}};\n"
    )
    code, out, err = run_command("migrate_tenants")
    assert code == 0, err
    assert all("tenant_settings" in tables_in(s) for s in schemas)


def test_a_creation_that_fails_on_a_reference_names_the_grant(public_ready, sql_dir):
    (sql_dir / "tenant" / "050_settings.sql").write_text(REFERENCES_CONFIG)
    code, out, err = run_command("tenant_create", "org_djref3")
    assert code == 1
    assert "GRANT REFERENCES ON public.system_configurations TO {{owner_group}}" in err
    assert query("SELECT count(*) FROM tenant_registry") == [(0,)]


# -- 3: a non-atomic migration runs outside a transaction ------------------------------------
CONCURRENT_INDEX = f"""from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("{APP}", "0002_summary")]
    operations = [
        AddIndexConcurrently(
            "candidatenote", models.Index(fields=["summary"], name="note_summary_idx")
        ),
    ]
"""


def test_a_non_atomic_migration_builds_its_index_concurrently_in_each_schema(
    public_ready, sql_dir, migrations_package
):
    migrations_package({"0001_initial.py": "0001_initial.py", "0002_summary.py": "0002_summary.py"})
    schemas = [create_tenant(o).schema for o in ("org_djcic1", "org_djcic2")]
    migrations_package(
        {
            "0001_initial.py": "0001_initial.py",
            "0002_summary.py": "0002_summary.py",
            "0003_index.py": CONCURRENT_INDEX,
        }
    )
    plan = steps.tenant_steps()
    assert [m.transactional for m in plan if m.version == f"{APP}.0003_index"] == [False]
    events: list[str] = []
    report = runs.migrate(
        public=False,
        tenants=True,
        actor="test",
        on_event=lambda e: events.append(e.sql or "") if e.kind == "sql" else None,
    )
    assert report.exit_code == 0, [r.error for r in report.failed]
    assert any("CREATE INDEX CONCURRENTLY" in text for text in events)
    for schema in schemas:
        assert query(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)",
            [f"{schema}.note_summary_idx"],
        ) == [(True,)]
        assert django_records(schema)[-1] == (APP, "0003_index")
    # A new tenant gets it too, built plainly in the creation's one transaction.
    created = create_tenant("org_djcic3").schema
    assert query("SELECT to_regclass(%s) IS NOT NULL", [f"{created}.note_summary_idx"]) == [(True,)]


def test_tenant_command_showmigrations_agrees_with_the_engine(public_ready, sql_dir):
    schema = create_tenant("org_djshow1").schema
    report = runs.rollback(f"{APP}.0001", tenants=True, actor="test")
    assert report.exit_code == 0

    def shown() -> str:
        proc = manage(
            "tenant_command", "showmigrations", APP, "-s", schema,
            migrations_dir=sql_dir, tenant_apps=True,
        )  # fmt: skip
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        return out

    assert "[X] 0001_initial" in shown() and "[ ] 0002_summary" in shown()
    assert runs.migrate(public=False, tenants=True, actor="test").exit_code == 0
    assert "[X] 0002_summary" in shown()


# -- 2: SQL that depends on the schema's state is compiled per catalog state ----------------
DROP_INDEX = f"""from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("{APP}", "0002_summary")]
    operations = [
        migrations.AlterField(
            model_name="candidatenote",
            name="candidate_id",
            field=models.UUIDField(db_index=False),
        ),
    ]
"""


def test_sql_that_depends_on_the_catalog_is_compiled_per_state(
    public_ready, sql_dir, migrations_package, monkeypatch
):
    """Dropping an index, Django asks the catalog for its name: schemas in one state share
    one compile, a schema whose index was renamed by hand gets its own."""
    two = {"0001_initial.py": "0001_initial.py", "0002_summary.py": "0002_summary.py"}
    migrations_package(two)
    same = [create_tenant(o).schema for o in ("org_djfp1", "org_djfp2")]
    other = create_tenant("org_djfp3").schema
    with connect() as conn:
        index = conn.execute(
            "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass "
            "AND NOT indisprimary AND indkey::text = (SELECT attnum::text FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attname = 'candidate_id')",
            [f"{other}.{TABLE}", f"{other}.{TABLE}"],
        ).fetchone()[0]
        conn.execute(f"ALTER INDEX {index} RENAME TO renamed_by_hand")  # noqa: S608
    migrations_package({**two, "0003_drop_index.py": DROP_INDEX})
    compiled: list[str] = []
    real = django_steps._compile_forwards

    def counting(wrapper: Any, app_label: str, name: str) -> Any:
        compiled.append(name)
        return real(wrapper, app_label, name)

    monkeypatch.setattr(django_steps, "_compile_forwards", counting)
    report = runs.migrate(public=False, tenants=True, only=[*same, other], actor="test")
    assert report.exit_code == 0, [r.error for r in report.failed]
    assert compiled == ["0003_drop_index", "0003_drop_index"]  # one per catalog state
    for schema in [*same, other]:
        assert query(
            "SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass AND NOT indisprimary "
            "AND indkey::text = (SELECT attnum::text FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attname = 'candidate_id')",
            [f"{schema}.{TABLE}", f"{schema}.{TABLE}"],
        ) == [(0,)]


# -- contenttypes and auth as tenant apps (django-tenants' own test settings) ----------------
CONTRIB_TENANT_APPS = [
    *SUITE_TENANT_APPS,
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "employer_portal.candidate_notes",
]
CONTRIB_TABLES = {
    "django_content_type",
    "auth_permission",
    "auth_group",
    "auth_group_permissions",
    "auth_user",
    "auth_user_groups",
    "auth_user_user_permissions",
    TABLE,
}


def contrib_migrations() -> list[tuple[str, str]]:
    """Every migration of the contrib tenant apps and the example app, as Django reads
    them from disk (not as the engine plans them)."""
    from django.db.migrations.loader import MigrationLoader

    wanted = {"contenttypes", "auth", APP}
    return sorted(k for k in MigrationLoader(None).graph.nodes if k[0] in wanted)


def post_migrate_rows(schema: str) -> tuple[set[tuple], set[tuple]]:
    """The schema's content types and permissions, by natural key (ids differ per schema)."""
    types = set(query(f'SELECT app_label, model FROM "{schema}".django_content_type'))  # noqa: S608
    perms = set(
        query(
            f"SELECT t.app_label, t.model, p.codename, p.name "  # noqa: S608
            f'FROM "{schema}".auth_permission p '
            f'JOIN "{schema}".django_content_type t ON t.id = p.content_type_id'
        )
    )
    return types, perms


def assert_contrib_tenant(schema: str) -> None:
    assert CONTRIB_TABLES <= tables_in(schema)
    expected = contrib_migrations()
    assert ("contenttypes", "0002_remove_content_type_name") in expected
    assert ("auth", "0012_alter_user_first_name_max_length") in expected
    assert sorted(django_records(schema)) == expected
    assert {f"{a}.{n}" for a, n in expected} <= set(ledger_versions(schema))
    # contenttypes 0002 ran whole: the legacy column is gone.
    assert "name" not in columns(schema, "django_content_type")
    # The example app's foreign key is to the tenant's own auth_user now.
    assert query(
        "SELECT confrelid::regclass::text FROM pg_constraint WHERE conrelid = %s::regclass "
        "AND contype = 'f'",
        [f"{schema}.{TABLE}"],
    ) == [(f"{schema}.auth_user",)]


def test_contenttypes_and_auth_as_tenant_apps_build_tenants(
    public_ready, sql_dir, settings, monkeypatch
):
    """contenttypes.0002_remove_content_type_name (42 characters) is a step name the
    ledger must hold; the first tenant compiles every step, the second replays them."""
    settings.TENANT_APPS = CONTRIB_TENANT_APPS
    compiled: list[tuple[str, str]] = []
    real = django_steps._compile_forwards

    def counting(wrapper: Any, app_label: str, name: str) -> Any:
        compiled.append((app_label, name))
        return real(wrapper, app_label, name)

    monkeypatch.setattr(django_steps, "_compile_forwards", counting)
    first = create_tenant("org_djct1").schema
    assert_contrib_tenant(first)
    assert sorted(compiled) == contrib_migrations()  # each step compiled once ...
    second = create_tenant("org_djct2").schema
    assert_contrib_tenant(second)
    assert sorted(compiled) == contrib_migrations()  # ... and only replayed for the second
    code, out, err = run_command("migrate_tenants", "--dry-run")
    assert code == 0, err
    assert "No pending migrations" in out
    code, _, _ = run_command("migrate_tenants", "--check")
    assert code == 0


def test_contrib_tenant_apps_get_the_rows_a_django_migrate_makes(public_ready, sql_dir, settings):
    """What Django's post_migrate makes (content types, permissions) is made in the
    tenant's own tables: the same rows ``migrate`` made in public, for the same models."""
    settings.TENANT_APPS = CONTRIB_TENANT_APPS
    public_types, public_perms = post_migrate_rows("public")
    for org in ("org_djpm1", "org_djpm2"):
        schema = create_tenant(org).schema
        types, perms = post_migrate_rows(schema)
        assert (APP, "candidatenote") in types and ("auth", "user") in types
        assert (APP, "candidatenote", "view_candidatenote", "Can view candidate note") in perms
        assert types == public_types
        assert perms == public_perms
    # No row of the public tables was touched.
    assert post_migrate_rows("public") == (public_types, public_perms)


def test_contrib_tenant_apps_added_later_are_migrated_with_their_rows(
    public_ready, sql_dir, settings
):
    """Tenants from before contenttypes and auth were tenant apps: one run with two
    workers applies their steps, and each schema gets its own rows."""
    schemas = before_the_app(settings, *(f"org_djlate{i}" for i in range(3)))
    settings.TENANT_APPS = CONTRIB_TENANT_APPS
    public = post_migrate_rows("public")
    report = runs.migrate(public=False, tenants=True, jobs=2, actor="test")
    assert report.exit_code == 0, [r.error for r in report.failed]
    for schema in schemas:
        assert_contrib_tenant(schema)
        assert post_migrate_rows(schema) == public
    code, _, _ = run_command("migrate_tenants", "--check")
    assert code == 0


def test_without_contrib_tenant_apps_no_post_migrate_work_is_done():
    """The project's own tenant apps make no content types: a step does no more than it
    did (no state rendered, no query)."""
    assert not django_steps.post_migrate_wanted()


# -- recovery verbs with Django steps in the plan -------------------------------------------------
def test_accept_checksum_of_a_sql_file_beside_django_steps(public_ready, sql_dir):
    """The tenant steps hold Django migrations (no number): accepting an edited SQL file
    finds it by its number among them, and a Django step by its name."""
    schema = create_tenant("org_djacc1").schema
    path = sql_dir / "tenant" / "002_job_postings.sql"
    path.write_text(path.read_text() + "\n-- edited after it was applied\n")
    code, out, err = run_command("migrate_tenants", "--check")
    assert code == 3, (out, err)
    code, out, err = run_command("migrate_tenants", "--accept-checksum", "002")
    assert code == 0, (out, err)
    assert "Traceback" not in err
    code, out, err = run_command("migrate_tenants", "--check")
    assert code == 0, (out, err)
    query(
        "UPDATE tenant_migrations SET checksum = 'edited' WHERE tenant_schema = %s "
        "AND migration_version = %s RETURNING 1",
        [schema, STEPS[0]],
    )
    code, out, err = run_command("migrate_tenants", "--accept-checksum", STEPS[0])
    assert code == 0, (out, err)
    code, out, err = run_command("migrate_tenants", "--check")
    assert code == 0, (out, err)
