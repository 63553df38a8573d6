"""Tenant creation, hardened: all or nothing at every step, hostile ids refused before any
SQL, limits, and an audit row with its actor."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

from tenancy.engine.names import InvalidName, role_for_schema, validate_org_id
from tenancy.services import tenants
from tenancy.services.tenants import CREATION_STEPS, TenantError, create_tenant
from tests.conftest import (
    ROOT,
    connect,
    fail_after_step,
    fresh_url,
    query,
    run_command,
    subprocess_env,
    tables_in,
)


def snapshot() -> dict:
    """Everything a creation could leave behind, in this test database and on the server."""
    with connect() as conn:
        db = conn.info.dbname
        prefix = role_for_schema("", db)

        def rows(text: str, params: list | None = None) -> list:
            return sorted(map(tuple, conn.execute(text, params).fetchall()), key=repr)

        return {
            "schemas": rows("SELECT nspname FROM pg_namespace"),
            "roles": rows(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE %s",
                [prefix.replace("_", "\\_") + "%"],
            ),
            "registry": rows("SELECT auth0_org_id, schema_name, status FROM tenant_registry"),
            "domains": rows("SELECT domain FROM tenant_domains"),
            "ledger": rows("SELECT tenant_schema, migration_version FROM tenant_migrations"),
            "audit": rows("SELECT tenant_schema, action FROM audit_logs"),
            "runs": rows("SELECT id FROM tenant_migration_runs"),
        }


@pytest.fixture
def ready(public_ready: None) -> None:
    create_tenant("org_acme1", "Acme", actor="test")


# -- one transaction, whatever step fails -------------------------------------------------
@pytest.mark.parametrize("index", range(len(CREATION_STEPS)), ids=[n for n, _ in CREATION_STEPS])
def test_failure_at_any_step_leaves_nothing_behind(ready, monkeypatch, index):
    name = fail_after_step(monkeypatch, tenants, "CREATION_STEPS", index)
    before = snapshot()
    with pytest.raises(TenantError) as info:
        create_tenant("org_victim2", "Victim", actor="test")
    assert f"failed at step '{name}'" in str(info.value)
    assert "Nothing was created" in str(info.value)
    assert snapshot() == before
    # And a creation afterwards is not hindered by leftovers.
    monkeypatch.undo()
    create_tenant("org_victim2", "Victim", actor="test")
    assert "job_postings" in tables_in("tenant_org_victim2")


def test_creation_steps_are_the_documented_ones():
    assert [n for n, _ in CREATION_STEPS] == [
        "check registry",
        "check limits",
        "create role",
        "create schema",
        "apply migrations",
        "register",
        "add domain",
        "audit",
        "commit as owner",
    ]


# -- hostile ids --------------------------------------------------------------------------
HOSTILE = [
    ("", "required"),
    ("   ", "Invalid Auth0 organization id"),
    (" org_acme", "Invalid"),
    ("org_acme ", "Invalid"),
    ("org_acme\n", "Invalid"),
    ("org_", "Invalid"),
    ("ORG_acme", "Invalid"),
    ("org_a'b", "Invalid"),
    ('org_a"b', "Invalid"),
    ("org_a;b", "Invalid"),
    ("org_x'; DROP SCHEMA public CASCADE; --", "Invalid"),
    ('org_x"; DROP ROLE postgres; --', "Invalid"),
    ("org_x) OR (1=1", "Invalid"),
    ("org_a-b", "Invalid"),
    ("org_a__b", "Invalid"),
    ("org__ab", "Invalid"),
    ("org_ab_", "Invalid"),
    ("org_a.b", "Invalid"),
    ("org_a\x00b", "Invalid"),
    ("org_ünïcode", "Invalid"),
    ("org_\uff11\uff12\uff13", "Invalid"),  # fullwidth digits: \d would accept them
    ("org_acme\u200b", "Invalid"),  # zero-width space
    ("org_аcme", "Invalid"),  # Cyrillic 'а', looks like Latin
    ("pg_catalog", "Invalid"),
    ("pg_org_x", "Invalid"),
    ("public", "Invalid"),
    ("information_schema", "Invalid"),
    ("tenant_org_acme", "Invalid"),
    ("org_" + "a" * 53, "too long"),  # schema tenant_org_aaa… is 64 bytes
    ("org_" + "a" * 500, "too long"),
]


@pytest.mark.parametrize("org_id,message", HOSTILE, ids=[repr(h[0])[:40] for h in HOSTILE])
def test_hostile_ids_are_refused_before_any_sql(ready, org_id, message):
    before = snapshot()
    with pytest.raises(InvalidName, match=message):
        create_tenant(org_id, "Hostile", actor="test")
    assert snapshot() == before


def test_hostile_id_through_the_command_is_a_clear_error_and_exit_1(ready):
    before = snapshot()
    code, out, err = run_command("tenant_create", "org_x'; DROP TABLE tenant_registry; --")
    assert code == 1
    assert "expected 'org_' followed by letters and digits, optionally in words" in err
    assert snapshot() == before


def test_non_text_id_is_refused(ready):
    with pytest.raises(InvalidName, match="required"):
        create_tenant(None, "x", actor="test")  # type: ignore[arg-type]


def test_longest_id_that_fits_creates_and_its_role_name_fits(ready):
    org_id = "org_" + "b" * 52  # schema: 63 bytes, PostgreSQL's limit
    assert validate_org_id(org_id) == org_id
    created = create_tenant(org_id, actor="test")
    assert len(created.schema.encode()) == 63
    assert len(created.role.encode()) <= 63
    assert query("SELECT 1 FROM pg_roles WHERE rolname = %s", [created.role]) == [(1,)]
    assert query("SELECT 1 FROM pg_namespace WHERE nspname = %s", [created.schema]) == [(1,)]


def test_case_twin_is_refused(ready):
    before = snapshot()
    with pytest.raises(TenantError, match="differs only in letter case from the registered"):
        create_tenant("org_Acme1", actor="test")
    with pytest.raises(TenantError, match="already exists"):
        create_tenant("org_acme1", actor="test")
    assert snapshot() == before


def test_unregistered_schema_in_the_way_is_refused(ready):
    with connect() as conn:
        conn.execute("CREATE SCHEMA tenant_org_squatter")
    before = snapshot()
    with pytest.raises(TenantError, match="already exists but no tenant is registered"):
        create_tenant("org_squatter", actor="test")
    assert snapshot() == before


@pytest.mark.parametrize(
    "name,message",
    [("x" * 256, "at most 255"), ("Evil\x00Corp", "control characters"), ("A\nB", "control")],
)
def test_bad_organization_names_are_refused(ready, name, message):
    before = snapshot()
    with pytest.raises(InvalidName, match=message):
        create_tenant("org_named1", name, actor="test")
    assert snapshot() == before


def test_names_are_data_not_sql(ready):
    name = "Bobby'); DROP TABLE tenant_registry; -- Ünïcødé 株式会社"
    create_tenant("org_bobby1", name, actor="test")
    assert query(
        "SELECT organization_name FROM tenant_registry WHERE auth0_org_id = 'org_bobby1'"
    ) == [(name,)]


# -- limits -------------------------------------------------------------------------------
def test_tenant_limit(ready, settings):
    settings.TENANCY = {**settings.TENANCY, "MAX_TENANTS": 2}
    create_tenant("org_second2", actor="test")
    before = snapshot()
    with pytest.raises(TenantError, match=r"Tenant limit reached: TENANCY\[.MAX_TENANTS.\] is 2"):
        create_tenant("org_third3", actor="test")
    assert snapshot() == before
    code, _, err = run_command("tenant_create", "org_third3")
    assert code == 1 and "Tenant limit reached" in err


def test_creations_per_hour_limit(ready, settings):
    settings.TENANCY = {**settings.TENANCY, "MAX_CREATIONS_PER_HOUR": 2}
    create_tenant("org_second2", actor="test")
    before = snapshot()
    with pytest.raises(
        TenantError, match=r"Too many tenants created in the last hour: .* = 2, is reached"
    ):
        create_tenant("org_third3", actor="test")
    assert snapshot() == before
    # Creations older than an hour no longer count.
    with connect() as conn:
        conn.execute(
            "UPDATE audit_logs SET created_at = now() - interval '2 hours' "
            "WHERE action = 'tenant.create'"
        )
    create_tenant("org_third3", actor="test")


def test_the_limit_message_names_its_setting_and_when_creation_reopens(ready, settings):
    """Reopens an hour after the oldest of the last `limit` creations, however many more
    the last hour holds (a lowered limit, an override)."""
    create_tenant("org_second2", actor="test")
    create_tenant("org_third3", actor="test")
    with connect() as conn:
        for org_id, minutes in (("org_acme1", 50), ("org_second2", 40), ("org_third3", 30)):
            conn.execute(
                "UPDATE audit_logs SET created_at = now() - make_interval(mins => %s) "
                "WHERE action = 'tenant.create' AND details->>'auth0_org_id' = %s",
                [minutes, org_id],
            )
    settings.TENANCY = {**settings.TENANCY, "MAX_CREATIONS_PER_HOUR": 2}
    [(reopens,)] = query(
        "SELECT to_char((created_at + interval '1 hour') AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD HH24:MI:SS') FROM audit_logs WHERE details->>'auth0_org_id' = 'org_second2'"
    )
    with pytest.raises(tenants.CreationLimitReached) as info:
        create_tenant("org_fourth4", actor="test")
    message = str(info.value)
    assert 'TENANCY["MAX_CREATIONS_PER_HOUR"] = 2, is reached' in message
    assert f"Creation reopens at {reopens} UTC (in 20 min)" in message
    assert "the environment variable TENANCY_MAX_CREATIONS_PER_HOUR" in message
    assert "Try again later" not in message
    assert info.value.limit == 2 and info.value.reopens_at is not None
    code, _, err = run_command("tenant_create", "org_fourth4")
    assert code == 1 and f"Creation reopens at {reopens} UTC" in err
    assert 'raise TENANCY["MAX_CREATIONS_PER_HOUR"]' in err and "Traceback" not in err
    quota = tenants.hourly_quota()
    assert (quota.limit, quota.used, quota.left) == (2, 2, 0) and quota.blocked is not None


def test_creation_is_audited_with_its_actor(public_ready):
    code, _, err = run_command("tenant_create", "org_audited1", "--actor", "alice@example.com")
    assert code == 0, err
    rows = query(
        "SELECT actor, details->>'auth0_org_id', details->'migrations' FROM audit_logs "
        "WHERE action = 'tenant.create' AND tenant_schema = 'tenant_org_audited1'"
    )
    assert rows == [("alice@example.com", "org_audited1", ["001", "002", "003"])]


def test_concurrent_creations_respect_the_limit_and_case_twins(ready, settings):
    """Creations queue on one advisory lock, so checks made by one see the others' rows."""
    from concurrent.futures import ThreadPoolExecutor

    settings.TENANCY = {**settings.TENANCY, "MAX_TENANTS": 4}

    def attempt(org_id: str) -> str:
        try:
            return create_tenant(org_id, actor="test").schema
        except TenantError as exc:
            return f"refused: {exc}"

    # Case twins and plain ids, all at once: 3 places left under the limit of 4.
    ids = ["org_Twin7", "org_twin7", "org_TWIN7", "org_solo8", "org_solo9", "org_solo10"]
    with ThreadPoolExecutor(max_workers=len(ids)) as pool:
        outcomes = list(pool.map(attempt, ids))
    created = [o for o in outcomes if not o.startswith("refused")]
    assert len(created) == 3
    assert sum(o.startswith("tenant_org_twin7") for o in created) <= 1
    assert query("SELECT count(*) FROM public.tenant_registry") == [(4,)]
    assert query("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenant\\_%%'") == [(4,)]


def test_the_guides_ci_org_id_with_underscores_is_accepted(ready):
    created = create_tenant("org_test_1795599878", actor="test")
    assert created.schema == "tenant_org_test_1795599878"
    assert created.domain == "org-test-1795599878.localhost"
    with pytest.raises(TenantError, match="differs only in letter case"):
        create_tenant("org_Test_1795599878", actor="test")
    with pytest.raises(InvalidName, match="too long"):
        create_tenant("org_" + "_".join(["abcdefghij"] * 6), actor="test")


def _manage_on(database: str, *args: str) -> subprocess.CompletedProcess:
    env = subprocess_env()
    env["EMPLOYER_PORTAL_DB_URL"] = fresh_url(database)
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _tables_of(database: str) -> list[tuple]:
    with connect() as conn:
        conn_url = conn.info.get_parameters()
    with psycopg.connect(**{**conn_url, "dbname": database}, autocommit=True) as conn:
        return conn.execute(
            "SELECT to_regclass('public.tenant_registry'), to_regclass('public.audit_logs')"
        ).fetchall()


def test_a_first_creation_on_a_fresh_database_sets_up_public_first(fresh_database):
    bad = _manage_on(fresh_database, "tenant_create", "org bad!")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert _tables_of(fresh_database) == [(None, None)]  # a bad id changed nothing
    made = _manage_on(fresh_database, "tenant_create", "org_test_1795599878")
    assert made.returncode == 0, made.stderr
    assert "Set up the public schema first" in made.stdout
    listed = _manage_on(fresh_database, "tenant_list")
    assert "tenant_org_test_1795599878" in listed.stdout
    again = _manage_on(fresh_database, "tenant_create", "org_test_2")
    assert again.returncode == 0 and "Set up the public schema" not in again.stdout
