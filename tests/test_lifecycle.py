"""Lifecycle: suspend, archive, reactivate, drop, recreate, cleanup; each audited with its
actor, drop and recreate all or nothing at every step."""

from __future__ import annotations

import builtins
import json

import pytest
from psycopg import sql

from tenancy.engine.names import role_for_schema
from tenancy.services import lifecycle
from tenancy.services.lifecycle import DROP_STEPS, RECREATE_STEPS
from tenancy.services.tenants import TenantError, create_tenant
from tests.conftest import connect, fail_after_step, ledger_versions, query, run_command, tables_in
from tests.test_tenants_creation import snapshot

ACME, OTHER = "tenant_org_acme1", "tenant_org_other2"


@pytest.fixture
def tenants_ready(public_ready: None) -> None:
    create_tenant("org_acme1", "Acme", actor="test")
    create_tenant("org_other2", "Other", actor="test")
    with connect() as conn:
        for schema in (ACME, OTHER):
            conn.execute(
                sql.SQL("INSERT INTO {}.organizations (auth0_org_id, name) VALUES ('x', 'x')")
                .format(sql.Identifier(schema))
            )  # fmt: skip


def role_of(schema: str) -> str:
    with connect() as conn:
        return role_for_schema(schema, conn.info.dbname)


def status_of(org_id: str) -> str:
    return query("SELECT status FROM tenant_registry WHERE auth0_org_id = %s", [org_id])[0][0]


def audit_rows(action: str) -> list[tuple]:
    return query(
        "SELECT tenant_schema, actor, details FROM audit_logs WHERE action = %s ORDER BY id",
        [action],
    )


def other_tenant_intact() -> None:
    assert "job_postings" in tables_in(OTHER)
    assert query(f"SELECT count(*) FROM {OTHER}.organizations") == [(1,)]
    assert ledger_versions(OTHER) == ["001", "002", "003"]
    assert query("SELECT 1 FROM pg_roles WHERE rolname = %s", [role_of(OTHER)]) == [(1,)]
    assert status_of("org_other2") == "active"


# -- status -------------------------------------------------------------------------------
def test_suspend_archive_reactivate_are_audited_with_actor_and_reason(tenants_ready):
    code, out, err = run_command(
        "tenant_suspend", "org_acme1", "--actor", "ops@x", "--reason", "unpaid"
    )
    assert code == 0, err
    assert "active -> suspended" in out and status_of("org_acme1") == "suspended"
    code, out, _ = run_command("tenant_archive", ACME, "--actor", "ops@x")  # by schema name
    assert code == 0 and status_of("org_acme1") == "archived"
    code, out, _ = run_command("tenant_reactivate", "org_acme1", "--actor", "boss@x")
    assert code == 0 and status_of("org_acme1") == "active"
    rows = [
        (r[0], r[1], r[2]["from"], r[2]["to"], r[2]["reason"])
        for action in ("tenant.suspend", "tenant.archive", "tenant.reactivate")
        for r in audit_rows(action)
    ]
    assert rows == [
        (ACME, "ops@x", "active", "suspended", "unpaid"),
        (ACME, "ops@x", "suspended", "archived", None),
        (ACME, "boss@x", "archived", "active", None),
    ]
    other_tenant_intact()


def test_same_status_again_is_a_no_op_without_audit(tenants_ready):
    lifecycle.suspend("org_acme1", actor="t")
    code, out, _ = run_command("tenant_suspend", "org_acme1")
    assert code == 0 and "already suspended" in out
    assert len(audit_rows("tenant.suspend")) == 1


@pytest.mark.parametrize(
    "ident,message",
    [
        ("org_missing9", "No tenant org_missing9 is registered"),
        ("tenant_org_missing9", "No tenant tenant_org_missing9 is registered"),
        ("org_x'; DROP TABLE tenant_registry; --", "Invalid Auth0 organization id"),
        ("tenant_x;y", "Invalid schema name"),
        ("public", "Invalid Auth0 organization id"),
    ],
)
def test_unknown_or_hostile_tenant_is_a_clear_error(tenants_ready, ident, message):
    before = snapshot()
    for command in ("tenant_suspend", "tenant_archive", "tenant_reactivate"):
        code, _, err = run_command(command, ident)
        assert code == 1 and message in err
    code, _, err = run_command("tenant_drop", ident, "--noinput")
    assert code == 1 and message in err
    code, _, err = run_command("tenant_recreate", ident, "--noinput")
    assert code == 1 and message in err
    assert snapshot() == before


# -- drop ---------------------------------------------------------------------------------
def test_drop_removes_everything_of_the_tenant_and_nothing_else(tenants_ready):
    role = role_of(ACME)
    code, out, err = run_command("tenant_drop", "org_acme1", "--noinput", "--actor", "ops@x")
    assert code == 0, err
    assert "Dropped tenant Acme" in out
    assert query("SELECT 1 FROM pg_namespace WHERE nspname = %s", [ACME]) == []
    assert query("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]) == []
    assert ledger_versions(ACME) == []
    assert query("SELECT 1 FROM tenant_registry WHERE schema_name = %s", [ACME]) == []
    assert query("SELECT domain FROM tenant_domains") == [("org-other2.localhost",)]
    [(schema, actor, details)] = audit_rows("tenant.drop")
    assert (schema, actor, details["auth0_org_id"]) == (ACME, "ops@x", "org_acme1")
    assert details["ledger_rows_deleted"] == 3 and details["roles_dropped"][0] == role
    other_tenant_intact()
    # The org id is free again.
    create_tenant("org_acme1", actor="test")


def test_drop_asks_for_the_schema_name(tenants_ready, monkeypatch):
    answers = iter(["org_acme1", ACME])
    monkeypatch.setattr(builtins, "input", lambda prompt="": next(answers))
    code, out, err = run_command("tenant_drop", "org_acme1")
    assert code == 1 and "Drop cancelled" in err
    assert ACME in {r[0] for r in query("SELECT schema_name FROM tenant_registry")}
    code, out, err = run_command("tenant_drop", "org_acme1")
    assert code == 0, err
    assert query("SELECT 1 FROM tenant_registry WHERE schema_name = %s", [ACME]) == []


def test_drop_with_no_terminal_and_no_noinput_is_cancelled(tenants_ready, monkeypatch):
    def eof(prompt: str = "") -> str:
        raise EOFError

    monkeypatch.setattr(builtins, "input", eof)
    code, _, err = run_command("tenant_drop", "org_acme1")
    assert code == 1 and "cancelled" in err
    assert "job_postings" in tables_in(ACME)


def test_drop_confirmation_must_match_in_the_service_too(tenants_ready):
    before = snapshot()
    with pytest.raises(TenantError, match="does not match"):
        lifecycle.drop_tenant("org_acme1", actor="t", expected_schema=OTHER)
    assert snapshot() == before


@pytest.mark.parametrize("index", range(len(DROP_STEPS)), ids=[n for n, _ in DROP_STEPS])
def test_drop_failure_at_any_step_changes_nothing(tenants_ready, monkeypatch, index):
    name = fail_after_step(monkeypatch, lifecycle, "DROP_STEPS", index)
    before = snapshot()
    with pytest.raises(TenantError, match=f"failed at step '{name}'.*Nothing was changed"):
        lifecycle.drop_tenant("org_acme1", actor="t")
    assert snapshot() == before
    assert query(f"SELECT count(*) FROM {ACME}.organizations") == [(1,)]  # data intact


def test_drop_waits_for_no_one_while_a_migration_holds_the_schema(tenants_ready):
    from tenancy.engine import db

    with connect() as holder:
        assert db.try_lock(holder, ACME)  # what a migration run holds on the schema
        before = snapshot()
        with pytest.raises(TenantError, match="A migration run is working on"):
            lifecycle.drop_tenant("org_acme1", actor="t")
        assert snapshot() == before


# -- recreate -----------------------------------------------------------------------------
def test_recreate_rebuilds_a_broken_schema_and_keeps_the_identity(tenants_ready):
    identity = query(
        "SELECT id, organization_name, auth0_org_id, status, created_at FROM tenant_registry "
        "WHERE schema_name = %s",
        [ACME],
    )
    lifecycle.suspend("org_acme1", actor="t")
    with connect() as conn:  # corruption: a table gone, a ledger row gone
        conn.execute(f"DROP TABLE {ACME}.interviews")
        conn.execute(
            "DELETE FROM tenant_migrations WHERE tenant_schema = %s AND migration_version = '003'",
            [ACME],
        )
    code, out, err = run_command("tenant_recreate", "org_acme1", "--noinput", "--actor", "ops@x")
    assert code == 0, err
    assert "Recreated tenant Acme" in out and "Migrations applied: 3" in out
    assert {"interviews", "job_postings", "organizations"} <= tables_in(ACME)
    assert ledger_versions(ACME) == ["001", "002", "003"]
    assert query(f"SELECT count(*) FROM {ACME}.organizations") == [(0,)]  # rebuilt empty
    after = query(
        "SELECT id, organization_name, auth0_org_id, 'active', created_at FROM tenant_registry "
        "WHERE schema_name = %s",
        [ACME],
    )
    assert after == identity
    assert status_of("org_acme1") == "suspended"  # recreate is not reactivation
    assert query(
        "SELECT domain FROM tenant_domains d JOIN tenant_registry r ON r.id = d.tenant_id "
        "WHERE r.schema_name = %s",
        [ACME],
    ) == [("org-acme1.localhost",)]
    role = role_of(ACME)
    assert query("SELECT has_table_privilege(%s, %s, 'SELECT')", [role, f"{ACME}.interviews"]) == [
        (True,)
    ]
    [(schema, actor, details)] = audit_rows("tenant.recreate")
    assert (schema, actor, details["migrations"]) == (ACME, "ops@x", ["001", "002", "003"])
    other_tenant_intact()


def test_recreate_a_missing_schema_and_a_lost_domain(tenants_ready):
    with connect() as conn:
        conn.execute(f"DROP SCHEMA {ACME} CASCADE")
        conn.execute("DELETE FROM tenant_domains WHERE domain = 'org-acme1.localhost'")
    code, out, _ = run_command("tenant_list")
    assert "Schema missing!" in out
    done = lifecycle.recreate_tenant("org_acme1", actor="t")
    assert done.domain == "org-acme1.localhost"
    assert "job_postings" in tables_in(ACME)
    assert "Schema missing!" not in run_command("tenant_list")[1]


@pytest.mark.parametrize("index", range(len(RECREATE_STEPS)), ids=[n for n, _ in RECREATE_STEPS])
def test_recreate_failure_at_any_step_changes_nothing(tenants_ready, monkeypatch, index):
    name = fail_after_step(monkeypatch, lifecycle, "RECREATE_STEPS", index)
    before = snapshot()
    with pytest.raises(TenantError, match=f"failed at step '{name}'"):
        lifecycle.recreate_tenant("org_acme1", actor="t")
    assert snapshot() == before
    assert query(f"SELECT count(*) FROM {ACME}.organizations") == [(1,)]  # data intact


def test_recreate_is_not_limited_by_tenant_limits(tenants_ready, settings):
    settings.TENANCY = {**settings.TENANCY, "MAX_TENANTS": 1, "MAX_CREATIONS_PER_HOUR": 1}
    assert lifecycle.recreate_tenant("org_acme1", actor="t").migrations_applied == [
        "001",
        "002",
        "003",
    ]


def test_recreate_asks_for_confirmation(tenants_ready, monkeypatch):
    monkeypatch.setattr(builtins, "input", lambda prompt="": "no")
    code, _, err = run_command("tenant_recreate", "org_acme1")
    assert code == 1 and "Recreate cancelled" in err
    assert query(f"SELECT count(*) FROM {ACME}.organizations") == [(1,)]


# -- cleanup ------------------------------------------------------------------------------
def age(schema: str, days: int, *, audit: bool = True) -> None:
    """Pretend the tenant's status and (optionally) its audit rows are ``days`` days old."""
    with connect() as conn:
        conn.execute(
            "UPDATE tenant_registry SET updated_at = now() - make_interval(days => %s) "
            "WHERE schema_name = %s",
            [days, schema],
        )
        if audit:
            conn.execute(
                "UPDATE audit_logs SET created_at = now() - make_interval(days => %s) "
                "WHERE tenant_schema = %s",
                [days, schema],
            )


def test_cleanup_drops_only_tenants_inactive_for_n_days(tenants_ready):
    create_tenant("org_recent3", actor="t")
    create_tenant("org_busy4", actor="t")
    create_tenant("org_live5", actor="t")
    for org in ("org_acme1", "org_recent3", "org_busy4"):
        lifecycle.archive(org, actor="t")
    lifecycle.suspend("org_other2", actor="t")
    age(ACME, 40)  # archived 40 days ago, nothing since: inactive
    age(OTHER, 40)  # suspended 40 days ago, nothing since: inactive
    age("tenant_org_recent3", 10)  # archived 10 days ago: not yet
    age("tenant_org_busy4", 40, audit=False)  # archived long ago, but audit activity today
    age("tenant_org_live5", 400)  # active: never, however old

    code, out, err = run_command("tenant_cleanup", "--days", "30", "--dry-run")
    assert code == 0, err
    assert "Would drop 2 tenant(s) (dry run)" in out
    assert ACME in out and OTHER in out and "recent3" not in out and "busy4" not in out
    assert "live5" not in out
    assert "job_postings" in tables_in(ACME)  # a dry run drops nothing

    code, out, _ = run_command(
        "tenant_cleanup", "--days", "30", "--dry-run", "--status", "archived", "--format", "json"
    )
    payload = json.loads(out)
    assert [c["schema"] for c in payload["candidates"]] == [ACME]
    assert payload["dropped"] == [] and payload["dry_run"] is True

    code, out, err = run_command("tenant_cleanup", "--days", "30", "--noinput", "--actor", "cron")
    assert code == 0, err
    remaining = {r[0] for r in query("SELECT schema_name FROM tenant_registry")}
    assert remaining == {"tenant_org_recent3", "tenant_org_busy4", "tenant_org_live5"}
    drops = audit_rows("tenant.drop")
    assert sorted(r[0] for r in drops) == [ACME, OTHER]
    assert all(r[1] == "cron" and r[2]["reason"].startswith("cleanup") for r in drops)

    code, out, _ = run_command("tenant_cleanup", "--days", "30", "--noinput")
    assert code == 0 and "No tenant has been inactive for 30 days." in out


def test_cleanup_asks_before_dropping(tenants_ready, monkeypatch):
    lifecycle.archive("org_acme1", actor="t")
    age(ACME, 40)
    monkeypatch.setattr(builtins, "input", lambda prompt="": "no")
    code, _, err = run_command("tenant_cleanup", "--days", "30")
    assert code == 1 and "Cleanup cancelled" in err
    assert "job_postings" in tables_in(ACME)


def test_cleanup_leaves_a_tenant_reactivated_meanwhile(tenants_ready):
    lifecycle.archive("org_acme1", actor="t")
    age(ACME, 40)
    # Reactivated after the cleanup listed it, before its drop: the drop re-reads the status
    # under the lock and leaves the tenant alone.
    with connect() as conn:
        conn.execute("UPDATE tenant_registry SET status = 'active' WHERE schema_name = %s", [ACME])
    with pytest.raises(TenantError, match="is active now: left alone"):
        lifecycle.drop_tenant(ACME, actor="t", only_statuses=lifecycle.INACTIVE_STATUSES)
    assert "job_postings" in tables_in(ACME)


def test_cleanup_refuses_nonsense_days(tenants_ready):
    code, _, err = run_command("tenant_cleanup", "--days", "0", "--dry-run")
    assert code == 1 and "at least 1" in err
