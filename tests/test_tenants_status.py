"""tenant_status: each tenant's migration state, size and activity, in constant queries."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg import sql

from tenancy.services import lifecycle
from tenancy.services.tenants import create_tenant
from tests.conftest import connect, run_command


@pytest.fixture
def three(public_ready: None, sql_dir) -> None:
    for org in ("org_acme1", "org_beta2", "org_gamma3"):
        create_tenant(org, org.upper(), actor="t")
    with connect() as conn:
        conn.execute(
            "INSERT INTO tenant_org_beta2.organizations (auth0_org_id, name, settings) "
            "SELECT 'o' || g, 'x', jsonb_build_object('pad', repeat(md5(g::text), 16)) "
            "FROM generate_series(1, 2000) g"
        )
    return sql_dir


def test_table_shows_every_tenant_state(three):
    (three / "tenant" / "004_notes.sql").write_text("CREATE TABLE notes (id int);\n")
    lifecycle.suspend("org_gamma3", actor="t")
    code, out, err = run_command("tenant_status")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["SCHEMA", "STATUS", "APPLIED"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == {"tenant_org_acme1", "tenant_org_beta2", "tenant_org_gamma3"}
    acme = rows["tenant_org_acme1"]
    assert acme[1:4] == ["active", "3", "003_candidates_applications_interviews.sql"]
    assert acme[6:8] == ["1", "no"]  # one pending (004), not failed
    assert rows["tenant_org_gamma3"][1] == "suspended"
    assert rows["tenant_org_gamma3"][-1] == "2"  # activity: creation + suspension
    assert rows["tenant_org_beta2"][-2] == "MB"  # 2,000 rows of 512 bytes


def test_json_and_missing_schema_and_check(three):
    with connect() as conn:
        conn.execute("DROP SCHEMA tenant_org_acme1 CASCADE")
    code, out, _ = run_command("tenant_status", "--format", "json", "--public")
    states = {s["schema"]: s for s in json.loads(out)}
    assert set(states) == {"public", "tenant_org_acme1", "tenant_org_beta2", "tenant_org_gamma3"}
    assert states["tenant_org_acme1"]["schema_exists"] is False
    beta = states["tenant_org_beta2"]
    assert beta["applied"] == 3 and beta["pending"] == [] and beta["failed"] is False
    assert beta["size_bytes"] > 1_000_000 and beta["auth0_org_id"] == "org_beta2"
    assert beta["last_migration"] == "003_candidates_applications_interviews.sql"
    assert beta["last_applied_at"] is not None and beta["activity_count"] == 1
    assert run_command("tenant_status")[0] == 0
    code, out, err = run_command("tenant_status", "--check")
    assert code == 1 and "MISSING" in out and "missing" in err


def test_one_tenant_only(three):
    code, out, _ = run_command("tenant_status", "--tenant", "tenant_org_beta2", "--format", "json")
    assert [s["schema"] for s in json.loads(out)] == ["tenant_org_beta2"]
    code, _, err = run_command("tenant_status", "--tenant", "tenant_x;y")
    assert code == 1 and "Invalid schema name" in err


def test_query_count_does_not_grow_with_tenants(public_ready, monkeypatch):
    """The statements tenant_status sends are the same number for 2 tenants and for 12."""
    count = {"n": 0}
    real = psycopg.Cursor.execute

    def counting(self, *args, **kwargs):
        count["n"] += 1
        return real(self, *args, **kwargs)

    def statements_for_status() -> int:
        monkeypatch.setattr(psycopg.Cursor, "execute", counting)
        count["n"] = 0
        code, out, err = run_command("tenant_status", "--format", "json")
        monkeypatch.undo()
        assert code == 0, err
        return count["n"], len(json.loads(out))

    for i in range(2):
        create_tenant(f"org_small{i}", actor="t")
    few, shown = statements_for_status()
    assert shown == 2
    with connect() as conn:  # ten more tenants, registered with their ledger, in bulk
        for i in range(10):
            schema = f"tenant_org_bulk{i}"
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            conn.execute(
                "INSERT INTO tenant_registry (schema_name, organization_name, auth0_org_id) "
                "VALUES (%s, %s, %s)",
                [schema, f"Bulk {i}", f"org_bulk{i}"],
            )
            conn.execute(
                "INSERT INTO tenant_migrations (tenant_schema, migration_version, "
                "migration_name) VALUES (%s, '001', '001_organizations_users.sql')",
                [schema],
            )
    many, shown = statements_for_status()
    assert shown == 12
    assert many == few


def test_unknown_tenant_is_an_error(three):
    code, _, err = run_command("tenant_status", "--tenant", "tenant_org_nobody")
    assert code == 1 and "Not a registered tenant schema: tenant_org_nobody" in err
