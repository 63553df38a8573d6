"""The warm pool: schemas built ahead, claimed by creations race-free, kept migrated, and
indistinguishable from a tenant built directly; on real PostgreSQL. Every test works on its
own copy of the suite's migrations (``sql_dir``) plus the richer file below, so the shipped
migrations_sql/ set may change freely."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from tenancy.engine import catalog
from tenancy.engine import pool as pool_engine
from tenancy.engine.names import owner_role_prefix, role_prefix
from tenancy.engine.source import Migration
from tenancy.services import pool, tenants
from tenancy.services.tenants import CLAIM_STEPS, create_tenant
from tests.conftest import connect, fail_after_step, manage, query, run_command

# Objects a rename must carry along: sequences (serial, identity, a default naming one by
# regclass), an enum, a domain, a function with a trigger, a view, a policy for the web role,
# a grant of the tenant's own, an expression index, comments; and seed rows that move
# sequences on. No text names the schema or a tenant role ({{tenant_role}} only as a role).
RICH_SQL = """-- Migration: 004_pool_probe.sql
-- Description: objects a claimed schema must carry like a built one

-- UP: Apply migration
CREATE TYPE probe_mood AS ENUM ('calm', 'busy');
CREATE DOMAIN probe_score AS INTEGER CHECK (VALUE >= 0);
CREATE SEQUENCE probe_ticket_seq START 100 INCREMENT 5;
CREATE TABLE probe (
    id BIGSERIAL PRIMARY KEY,
    ref INTEGER GENERATED ALWAYS AS IDENTITY,
    ticket INTEGER NOT NULL DEFAULT nextval('probe_ticket_seq'),
    label TEXT NOT NULL DEFAULT '',
    score probe_score CHECK (score < 100),
    mood probe_mood NOT NULL DEFAULT 'calm',
    made_by TEXT NOT NULL DEFAULT current_user,
    updated_at TIMESTAMPTZ
);
ALTER SEQUENCE probe_ticket_seq OWNED BY probe.ticket;
CREATE INDEX idx_probe_label ON probe (lower(label)) WHERE label <> '';
CREATE FUNCTION probe_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
CREATE TRIGGER trg_probe_touch BEFORE UPDATE ON probe
    FOR EACH ROW EXECUTE FUNCTION probe_touch();
CREATE VIEW open_probe AS SELECT id, label FROM probe WHERE mood = 'busy';
ALTER TABLE probe ENABLE ROW LEVEL SECURITY;
CREATE POLICY probe_web ON probe TO {{tenant_role}} USING (score IS NULL OR score >= 0);
GRANT TRIGGER ON probe TO {{tenant_role}};
COMMENT ON TABLE probe IS 'a probe of the pool';
INSERT INTO probe (label, score) VALUES ('first', 1), ('second', 2);

-- DOWN: Rollback migration
/*
DROP VIEW IF EXISTS open_probe;
DROP TABLE IF EXISTS probe;
DROP FUNCTION IF EXISTS probe_touch();
DROP TYPE IF EXISTS probe_mood;
DROP DOMAIN IF EXISTS probe_score;
*/
"""

LATER_SQL = """-- Migration: 005_later.sql
-- UP: Apply migration
CREATE TABLE later_notes (id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL);
CREATE INDEX idx_later_notes_body ON later_notes (body);
"""


@pytest.fixture
def rich(sql_dir: Path, public_ready: None, settings: Any, monkeypatch: Any) -> Path:
    """The suite's files plus RICH_SQL, a pool of 2 and no refill enqueued (the tests fill
    explicitly; the refill task has a test of its own)."""
    (sql_dir / "tenant" / "004_pool_probe.sql").write_text(RICH_SQL)
    settings.TENANCY = {**settings.TENANCY, "POOL_SIZE": 2}
    monkeypatch.setattr(tenants, "REFILL_TASK", "tests.test_pool.no_refill")
    return sql_dir


def no_refill() -> None:
    """The refill hook, in tests that fill the pool themselves."""


def pool_rows() -> list[str]:
    return [r[0] for r in query("SELECT schema_name FROM tenant_pool ORDER BY id")]


def leftovers() -> dict[str, list]:
    """Everything under a pool name: schemas, roles, ledger rows, pool rows."""
    with connect() as conn:
        db = conn.info.dbname
        like = [
            p.replace("_", "\\_") + "tenancy\\_pool\\_%"
            for p in ("", role_prefix(db), owner_role_prefix(db))
        ]
        return {
            "schemas": query("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", like[:1]),
            "roles": query("SELECT rolname FROM pg_roles WHERE rolname LIKE ANY(%s)", [like[1:]]),
            "ledger": query(
                "SELECT DISTINCT tenant_schema FROM tenant_migrations WHERE tenant_schema LIKE %s",
                like[:1],
            ),
            "pool": query("SELECT schema_name FROM tenant_pool"),
        }


def nothing_left() -> dict[str, list]:
    return {"schemas": [], "roles": [], "ledger": [], "pool": []}


def audit_details(schema: str) -> dict:
    rows = query(
        "SELECT details FROM audit_logs WHERE action = 'tenant.create' AND tenant_schema = %s",
        [schema],
    )
    assert len(rows) == 1
    return rows[0][0]


# -- fill, show, invisible ---------------------------------------------------------------------
def test_fill_builds_migrated_entries_that_no_tenant_view_shows(rich: Path) -> None:
    report = pool.fill(actor="test")
    assert len(report.built) == 2 and report.off is None
    names = pool_rows()
    assert sorted(names) == sorted(report.built)
    for name in names:
        assert pool_engine.is_pool_schema(name)
        assert {"probe", "organizations", "interviews"} <= {
            r[0] for r in query("SELECT tablename FROM pg_tables WHERE schemaname = %s", [name])
        }
        versions = query(
            "SELECT migration_version FROM tenant_migrations WHERE tenant_schema = %s ORDER BY 1",
            [name],
        )
        assert [v[0] for v in versions] == ["001", "002", "003", "004"]
    # A second fill finds the pool full.
    assert pool.fill(actor="test").built == []
    # Not a tenant anywhere: registry, tenant_list, tenant_status, routing.
    assert query("SELECT count(*) FROM tenant_registry") == [(0,)]
    code, out, _ = run_command("tenant_list", "--format", "json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = run_command("tenant_status", "--format", "json")
    assert code == 0 and not any(n in out for n in names)
    code, out, _ = run_command("tenant_status")
    assert code == 0 and not any(n in out for n in names)
    assert "Pool: 2 ready of 2 (tenant_pool)" in out
    code, out, _ = run_command("tenant_pool")
    assert code == 0 and "2 ready of 2" in out and all(n in out for n in names)
    code, out, _ = run_command("tenant_pool", "--format", "json")
    shown = json.loads(out)
    assert shown["ready"] == 2 and {e["schema"] for e in shown["entries"]} == set(names)
    for name in names:
        host = name.replace("_", "-") + ".localhost"
        page = Client().get("/", HTTP_HOST=host)
        assert name not in page.content.decode()


def test_admin_tenant_list_does_not_show_pool_schemas(rich: Path) -> None:
    names = pool.fill(actor="test").built
    create_tenant("org_visible1", "Visible", actor="test")
    admin = User.objects.create_superuser("pooladmin", "p@example.com", "pw-Pool-123")
    client = Client()
    client.force_login(admin)
    url = reverse("admin:tenancy_tenant_changelist", urlconf="employer_portal.urls")
    page = client.get(url).content.decode()
    assert "tenant_org_visible1" in page
    assert not any(n in page for n in names + pool_rows())


# -- claim vs direct ---------------------------------------------------------------------------
def _sequence_values(schema: str) -> list[tuple]:
    with connect() as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'S' ORDER BY 1",
            [schema],
        ).fetchall()
        values = []
        for (name,) in rows:
            row = conn.execute(
                f'SELECT last_value, is_called FROM "{schema}"."{name}"'  # noqa: S608 (test)
            ).fetchone()
            owned = conn.execute(
                "SELECT d.refobjid::regclass::text, a.attname FROM pg_depend d "
                "JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
                "WHERE d.objid = to_regclass(%s) AND d.deptype IN ('a', 'i')",
                [f'"{schema}"."{name}"'],
            ).fetchone()
            owned_by = (owned[0].split(".")[-1], owned[1]) if owned else None
            values.append((name, *row, owned_by))
        return values


def _comments(schema: str) -> list[tuple]:
    return query(
        "SELECT c.relname, d.description FROM pg_description d "
        "JOIN pg_class c ON c.oid = d.objoid AND d.classoid = 'pg_class'::regclass "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s ORDER BY 1",
        [schema],
    )


def _role_shape(schema: str) -> list[tuple]:
    """The tenant roles' attributes and memberships, as tokens."""
    with connect() as conn:
        db = conn.info.dbname
        prefixes = (role_prefix(db), owner_role_prefix(db))
        rows = conn.execute(
            "SELECT r.rolname, r.rolcanlogin, r.rolinherit, r.rolsuper, r.rolcreaterole, "
            "r.rolbypassrls, ARRAY(SELECT g.rolname::text FROM pg_auth_members m "
            "JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid ORDER BY 1) "
            "FROM pg_roles r WHERE r.rolname = ANY(%s)",
            [[p + schema for p in prefixes]],
        ).fetchall()
    return sorted((r[0][:2], *r[1:]) for r in rows)


def _mentions(name: str) -> list[tuple]:
    """Where ``name`` is still written in the database's catalog and tenancy tables."""
    like = "%" + name.replace("_", "\\_") + "%"
    return query(
        """
        SELECT 'function', proname::text FROM pg_proc
         WHERE prosrc LIKE %(l)s OR array_to_string(proconfig, ' ') LIKE %(l)s
        UNION ALL SELECT 'default', adrelid::regclass::text FROM pg_attrdef
         WHERE pg_get_expr(adbin, adrelid) LIKE %(l)s
        UNION ALL SELECT 'policy', polname::text FROM pg_policy
         WHERE pg_get_expr(polqual, polrelid) LIKE %(l)s
        UNION ALL SELECT 'comment', description FROM pg_description WHERE description LIKE %(l)s
        UNION ALL SELECT 'view', c.relname::text FROM pg_class c
         WHERE c.relkind = 'v' AND pg_get_viewdef(c.oid) LIKE %(l)s
        UNION ALL SELECT 'namespace', nspname::text FROM pg_namespace WHERE nspname LIKE %(l)s
        UNION ALL SELECT 'role', rolname::text FROM pg_roles WHERE rolname LIKE %(l)s
        UNION ALL SELECT 'role setting', array_to_string(setconfig, ' ')
          FROM pg_db_role_setting WHERE array_to_string(setconfig, ' ') LIKE %(l)s
        UNION ALL SELECT 'ledger', tenant_schema FROM tenant_migrations
         WHERE tenant_schema LIKE %(l)s
        UNION ALL SELECT 'registry', schema_name FROM tenant_registry WHERE schema_name LIKE %(l)s
        """,
        {"l": like},
    )


def test_claimed_tenant_is_identical_to_a_direct_one(rich: Path) -> None:
    pool.fill(1, actor="test")
    (pool_name,) = pool_rows()
    claimed = create_tenant("org_claimed1", "Claimed", actor="test")
    direct = create_tenant("org_direct1", "Direct", actor="test")  # the pool is empty now
    assert (claimed.path, claimed.pool_schema) == ("pool", pool_name)
    assert direct.path == "direct" and "pool empty" in direct.pool_notes
    a, b = claimed.schema, direct.schema
    with connect() as conn:
        prints = catalog.fingerprints(conn, [a, b])
        described = catalog.describe(conn, [a, b])
    assert prints[a] == prints[b]
    assert catalog.differences(described[b], described[a]) == []
    assert len(described[a]) > 100  # the rich file's objects are in the comparison
    assert _sequence_values(a) == _sequence_values(b)
    assert ("probe_id_seq", 2, True, ("probe", "id")) in _sequence_values(a)
    assert _comments(a) == _comments(b) == [("probe", "a probe of the pool")]
    assert _role_shape(a) == _role_shape(b)
    assert query(f"SELECT label, ticket, made_by <> '' FROM {a}.probe ORDER BY id") == query(
        f"SELECT label, ticket, made_by <> '' FROM {b}.probe ORDER BY id"
    )
    # The pool's name is gone from the catalog, the roles and the ledger; only the audit
    # row of the creation says which entry it was.
    assert _mentions(pool_name) == []
    assert audit_details(a)["pool_schema"] == pool_name
    assert audit_details(a)["path"] == "pool" and audit_details(b)["path"] == "direct"
    assert leftovers() == nothing_left()
    # And tenant_verify, which builds its own reference, finds both ok.
    code, out, _ = run_command("tenant_verify")
    assert code == 0, out


def test_claimed_tenant_serves_its_host(rich: Path) -> None:
    pool.fill(1, actor="test")
    created = create_tenant("org_served1", "Served Co", actor="test")
    assert created.path == "pool"
    page = Client().get("/", HTTP_HOST="org-served1.localhost")
    assert page.status_code == 200 and "Served Co" in page.content.decode()


def test_command_output_and_json_name_the_path(rich: Path) -> None:
    pool.fill(1, actor="test")
    code, out, _ = run_command("tenant_create", "org_path1")
    assert code == 0 and "Path: claimed from the pool (tenancy_pool_" in out
    code, out, _ = run_command("tenant_create", "org_path2", "--format", "json")
    created = json.loads(out)
    assert code == 0 and created["path"] == "direct" and created["pool_notes"] == ["pool empty"]


def test_claim_keeps_validation_limits_and_case_twins(rich: Path, settings: Any) -> None:
    pool.fill(2, actor="test")
    create_tenant("org_Twin1", actor="test")
    with pytest.raises(tenants.TenantError, match="differs only in letter case"):
        create_tenant("org_twin1", actor="test")
    settings.TENANCY = {**settings.TENANCY, "MAX_TENANTS": 1}
    with pytest.raises(tenants.TenantError, match="Tenant limit reached"):
        create_tenant("org_other1", actor="test")
    assert len(pool_rows()) == 1  # the refused creations claimed nothing


@pytest.mark.parametrize("index", range(len(CLAIM_STEPS)))
def test_a_failed_claim_leaves_the_pool_entry_and_no_tenant(
    rich: Path, monkeypatch: Any, index: int
) -> None:
    pool.fill(1, actor="test")
    before = leftovers()
    step = fail_after_step(monkeypatch, tenants, "CLAIM_STEPS", index)
    with pytest.raises(tenants.TenantError, match=f"failed at step '{step}'"):
        create_tenant("org_failing1", actor="test")
    assert leftovers() == before
    assert query("SELECT count(*) FROM tenant_registry") == [(0,)]
    assert query("SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_org_failing1'") == [
        (0,)
    ]
    assert query("SELECT count(*) FROM audit_logs WHERE action = 'tenant.create'") == [(0,)]


# -- kept migrated -----------------------------------------------------------------------------
def test_a_pool_schema_behind_the_files_is_migrated_before_it_is_handed_out(rich: Path) -> None:
    pool.fill(1, actor="test")
    (rich / "tenant" / "005_later.sql").write_text(LATER_SQL)
    code, out, _ = run_command("tenant_pool")
    assert "1 pending (applied at claim)" in out
    claimed = create_tenant("org_behind1", actor="test")
    direct = create_tenant("org_behind2", actor="test")
    assert claimed.path == "pool"
    assert any("applied 005_later.sql first" in n for n in claimed.pool_notes)
    assert claimed.migrations_applied == ["001", "002", "003", "004", "005"]
    with connect() as conn:
        prints = catalog.fingerprints(conn, [claimed.schema, direct.schema])
    assert prints[claimed.schema] == prints[direct.schema]
    versions = query(
        "SELECT migration_version FROM tenant_migrations WHERE tenant_schema = %s ORDER BY 1",
        [claimed.schema],
    )
    assert [v[0] for v in versions] == ["001", "002", "003", "004", "005"]


def test_a_drifted_pool_schema_is_discarded_never_handed_out(rich: Path) -> None:
    pool.fill(1, actor="test")
    (pool_name,) = pool_rows()
    probe = rich / "tenant" / "004_pool_probe.sql"
    probe.write_text(probe.read_text().replace("START 100", "START 200"))
    created = create_tenant("org_drift1", actor="test")
    assert created.path == "direct"
    assert any(
        f"{pool_name} discarded: drift in 004_pool_probe.sql" in n for n in created.pool_notes
    )
    assert leftovers() == nothing_left()
    values = {name: last for name, last, *_ in _sequence_values(created.schema)}
    assert values["probe_ticket_seq"] == 205  # START 200 INCREMENT 5, two rows


def test_a_claim_sets_aside_an_entry_a_file_fails_on_and_the_creation_goes_on(
    rich: Path,
) -> None:
    """A pool entry whose pending file fails on it (here an object made by hand; or its
    ledger rows reset) never fails a creation: the entry goes back as broken, the next one
    is tried, then the direct build."""
    pool.fill(2, actor="test")
    bad, good = pool_rows()
    with connect() as conn:
        conn.execute(f"CREATE TABLE {bad}.later_notes (x int)")
    (rich / "tenant" / "005_later.sql").write_text(LATER_SQL)
    first = create_tenant("org_aside1", actor="test")
    assert (first.path, first.pool_schema) == ("pool", good)
    assert any(
        n.startswith(f"{bad} set aside as broken: 005_later.sql failed on it: ")
        and "already exists" in n
        for n in first.pool_notes
    )
    assert query("SELECT schema_name, state FROM tenant_pool") == [(bad, "broken")]
    second = create_tenant("org_aside2", actor="test")  # the broken entry is not taken
    assert second.path == "direct" and second.pool_notes == ["pool empty"]
    with connect() as conn:
        prints = catalog.fingerprints(conn, [first.schema, second.schema])
    assert prints[first.schema] == prints[second.schema]
    report = pool.fill(1, actor="test")
    assert report.swept == [bad] and len(report.built) == 1
    assert bad not in str(leftovers())


def test_a_claim_sets_aside_an_entry_whose_rename_fails(rich: Path) -> None:
    pool.fill(2, actor="test")
    bad, good = pool_rows()
    with connect() as conn:  # an operator "cleaning up" one pool role by hand
        web = pool_engine.pool_roles(bad, conn.info.dbname)[0]
        conn.execute(f'DROP OWNED BY "{web}"; DROP ROLE "{web}"')
    created = create_tenant("org_renamefail1", actor="test")
    assert (created.path, created.pool_schema) == ("pool", good)
    assert any(f"{bad} set aside as broken: its rename failed: " in n for n in created.pool_notes)
    assert query("SELECT schema_name, state FROM tenant_pool") == [(bad, "broken")]
    code, out, _ = run_command("tenant_pool", "--drain")
    assert code == 0 and leftovers() == nothing_left()


# -- files a rename cannot fix -----------------------------------------------------------------
def _migration(up_sql: str) -> Migration:
    return Migration("tenant", "009", "009_x.sql", "", Path("009_x.sql"), up_sql, None, "c", True)


@pytest.mark.parametrize(
    ("up_sql", "reason"),
    [
        ("CREATE TABLE t (a int); GRANT SELECT ON t TO {{tenant_role}};", None),
        ("CREATE TABLE {{schema}}.t (a text DEFAULT current_user);", None),
        ("CREATE POLICY p ON t TO {{tenant_role}} USING (true);", None),
        ("CREATE TABLE t (a text DEFAULT '{{schema}}');", "rendered into text"),
        ("COMMENT ON TABLE t IS 'in {{schema}}';", "rendered into text"),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = {{schema}} "
            "AS 'SELECT 1';",
            "rendered into text",
        ),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT count(*) FROM {{schema}}.t';",
            "rendered into text",
        ),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path FROM CURRENT "
            "AS 'SELECT 1';",
            "FROM CURRENT",
        ),
        ("INSERT INTO t (a) VALUES (current_schema);", "data computed"),
        ("INSERT INTO t (a) SELECT current_setting('search_path');", "data computed"),
        ("CREATE TABLE t2 AS SELECT current_user AS who;", "data computed"),
        ("DO $$ BEGIN PERFORM current_schema(); END $$;", "data computed"),
    ],
)
def test_unpoolable_reason(up_sql: str, reason: str | None) -> None:
    found = pool_engine.unpoolable_reason([_migration(up_sql)])
    if reason is None:
        assert found is None
    else:
        assert found is not None and reason in found and found.startswith("009_x.sql: ")


def test_files_a_rename_cannot_fix_are_not_pooled(rich: Path) -> None:
    pool.fill(1, actor="test")
    (rich / "tenant" / "005_named.sql").write_text(
        "-- UP\nCOMMENT ON TABLE probe IS 'lives in {{schema}}';\n"
    )
    report = pool.fill(2, actor="test")
    assert report.built == [] and "005_named.sql" in (report.off or "")
    created = create_tenant("org_named1", actor="test")
    assert created.path == "direct"
    assert any("cannot be pooled" in n for n in created.pool_notes)
    assert _comments(created.schema) == [("probe", 'lives in "tenant_org_named1"')]
    assert len(pool_rows()) == 1  # left for `--drain` (or a change of the files)


CAPTURED_SQL = (
    "-- UP\nCREATE FUNCTION probe_count() RETURNS bigint LANGUAGE sql "
    "SET search_path FROM CURRENT AS 'SELECT count(*) FROM probe';\n"
)


@pytest.fixture
def file_check_off(monkeypatch: Any) -> None:
    """The catalog checks behind the file check, seen alone: a function whose search_path
    is captured while the schema is built (the file check would refuse the file)."""
    monkeypatch.setattr(pool_engine, "unpoolable_reason", lambda migrations: None)


def test_a_pool_schema_that_would_keep_its_name_is_never_kept(
    rich: Path, file_check_off: None
) -> None:
    (rich / "tenant" / "005_captured.sql").write_text(CAPTURED_SQL)
    report = pool.fill(2, actor="test")
    assert report.built == [] and "keeps its own name as text in function probe_count" in (
        report.off or ""
    )
    assert leftovers() == nothing_left()  # the trial rename and the build rolled back
    created = create_tenant("org_captured1", actor="test")
    assert created.path == "direct" and "pool empty" in created.pool_notes


def test_a_claim_that_applies_files_looks_for_the_pool_name_again(
    rich: Path, file_check_off: None
) -> None:
    pool.fill(1, actor="test")
    (pool_name,) = pool_rows()
    (rich / "tenant" / "005_captured.sql").write_text(CAPTURED_SQL)
    created = create_tenant("org_traced1", actor="test")
    assert created.path == "direct"
    note = f"{pool_name} discarded: its pool name is still written in function probe_count"
    assert any(note in n for n in created.pool_notes)
    assert leftovers() == nothing_left()
    config = query("SELECT proconfig FROM pg_proc WHERE proname = 'probe_count'")
    assert config == [(['search_path="tenant_org_traced1", public'],)]


REFILLS: list[str] = []


def record_refill() -> None:
    """The refill hook, in tests that check a refill is asked for."""
    REFILLS.append("refill")


def test_migrate_tenants_discards_a_pool_schema_that_would_keep_its_name(
    rich: Path, file_check_off: None, monkeypatch: Any
) -> None:
    pool.fill(1, actor="test")
    (pool_name,) = pool_rows()
    (rich / "tenant" / "005_captured.sql").write_text(CAPTURED_SQL)
    monkeypatch.setattr(tenants, "REFILL_TASK", "tests.test_pool.record_refill")
    REFILLS.clear()
    code, _, err = run_command("migrate_tenants")
    assert code == 0 and f"Pool schema {pool_name}: discarded" in err
    assert leftovers() == nothing_left()
    assert REFILLS == ["refill"]  # the worker rebuilds what the run took out of the pool


def test_tenant_pool_fill_refuses_a_negative_count_and_is_honest_about_zero(
    rich: Path, settings: Any
) -> None:
    code, _, err = run_command("tenant_pool", "--fill", "-3")
    assert code != 0 and "N must be 0 or more, not -3" in err
    assert pool_rows() == []
    code, out, _ = run_command("tenant_pool", "--fill", "0")  # the pool's size is 2
    assert code == 0 and "TENANCY_POOL_SIZE is 0" not in out
    assert "Built 0 pool schema(s) for a pool of 0" in out
    code, out, _ = run_command("tenant_pool", "--fill")
    assert code == 0 and "Built 2 pool schema(s) for a pool of 2" in out
    settings.TENANCY = {**settings.TENANCY, "POOL_SIZE": 0}
    code, out, _ = run_command("tenant_pool", "--fill", "3")
    assert "TENANCY_POOL_SIZE is 0 (no pool): creations do not claim until it is set" in out
    assert "Built 1 pool schema(s) for a pool of 3" in out
    (fill_row,) = query(
        "SELECT details FROM audit_logs WHERE action = 'tenant_pool.fill' ORDER BY id DESC LIMIT 1"
    )
    assert fill_row[0]["elapsed_ms"] > 0  # the audit row holds the fill's time


# -- drain, refill, orphans --------------------------------------------------------------------
def test_drain_and_refill_leave_no_orphan_schemas_or_roles(rich: Path) -> None:
    pool.fill(3, actor="test")
    create_tenant("org_kept1", actor="test")
    assert len(pool_rows()) == 2
    code, out, _ = run_command("tenant_pool", "--drain")
    assert code == 0 and "Dropped 2 pool schema(s)" in out
    assert leftovers() == nothing_left()
    code, out, _ = run_command("tenant_pool", "--fill", "2")
    assert code == 0 and "Built 2 pool schema(s)" in out
    assert len(pool_rows()) == 2
    assert pool.drain(actor="test") and leftovers() == nothing_left()
    # The tenant made from a claimed entry is untouched.
    assert query("SELECT count(*) FROM pg_tables WHERE schemaname = 'tenant_org_kept1'") == [(8,)]


def test_fill_sweeps_entries_whose_row_is_gone(rich: Path) -> None:
    pool.fill(2, actor="test")
    orphan, kept = pool_rows()
    with connect() as conn:
        conn.execute("DELETE FROM tenant_pool WHERE schema_name = %s", [orphan])
    report = pool.fill(2, actor="test")
    assert report.swept == [orphan] and len(report.built) == 1
    assert orphan not in str(leftovers()) and kept in pool_rows()


def test_refill_task_fills_to_the_setting_and_is_queued_once(rich: Path, monkeypatch: Any) -> None:
    from django_tasks_db.models import DBTaskResult

    from tenancy import tasks

    monkeypatch.setattr(tenants, "REFILL_TASK", "tenancy.tasks.request_pool_refill")
    create_tenant("org_refill1", actor="test")  # pool empty: built directly, refill asked
    create_tenant("org_refill2", actor="test")
    queued = DBTaskResult.objects.filter(task_path="tenancy.tasks.refill_pool")
    assert queued.count() == 1 and leftovers()["pool"] == []  # no build in this process
    assert len(tasks.refill_pool.call()["built"]) == 2
    assert len(pool_rows()) == 2


# -- races and kills ---------------------------------------------------------------------------
def _pool_env(rich: Path) -> dict[str, str]:
    return {"TENANCY_POOL_SIZE": "2", "TENANCY_MIGRATIONS_DIR": str(rich)}


def _spawn(rich: Path, *args: str, extra: dict[str, str] | None = None) -> Any:
    env = {**_pool_env(rich), **(extra or {})}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # manage() copies os.environ
    try:
        return manage(*args, migrations_dir=rich)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_four_concurrent_creations_with_a_pool_of_two(rich: Path) -> None:
    pool.fill(2, actor="test")
    entries = set(pool_rows())
    procs = [_spawn(rich, "tenant_create", f"org_race{i}", "--format", "json") for i in range(4)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    paths = sorted(r["path"] for r in results)
    assert paths == ["direct", "direct", "pool", "pool"]
    claimed = [r["pool_schema"] for r in results if r["path"] == "pool"]
    assert set(claimed) == entries  # each entry handed out once
    assert query("SELECT count(*) FROM tenant_registry") == [(4,)]
    assert leftovers() == nothing_left()
    with connect() as conn:
        prints = catalog.fingerprints(conn, [r["schema"] for r in results])
    assert len({p.digest for p in prints.values()}) == 1


def _wait_in_claim(timeout: float = 60.0) -> None:
    """Until a creation's connection sits inside its claim transaction, its entry's row
    deleted (the test pause holds it there)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = query(
            "SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE a.state = 'idle in transaction' AND a.datname = current_database() "
            "AND l.locktype = 'relation' AND l.relation = 'tenant_pool'::regclass "
            "AND l.mode = 'RowExclusiveLock'"
        )
        if rows:
            return
        time.sleep(0.05)
    raise AssertionError("the claim never reached its pause")


def _wait_gone(timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = query(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state = 'idle in transaction' AND pid <> pg_backend_pid()"
        )
        if busy == [(0,)]:
            return
        time.sleep(0.05)
    raise AssertionError("the killed claim's transaction is still open")


@pytest.mark.parametrize("point", ["taken", "renamed"])
def test_a_killed_claim_leaves_the_entry_or_a_tenant_never_both_or_neither(
    rich: Path, point: str
) -> None:
    pool.fill(1, actor="test")
    (entry,) = pool_rows()
    before = leftovers()
    proc = _spawn(
        rich, "tenant_create", "org_killed1", extra={tenants.CLAIM_PAUSE_ENV: f"{point}:60"}
    )
    try:
        _wait_in_claim()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    _wait_gone()
    # Killed inside the transaction: the entry is intact, no trace of the tenant.
    assert leftovers() == before
    assert query("SELECT count(*) FROM tenant_registry") == [(0,)]
    assert query("SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_org_killed1'") == [(0,)]
    # And it is claimed whole afterwards.
    created = create_tenant("org_killed1", actor="test")
    assert created.path == "pool" and created.pool_schema == entry
    assert leftovers() == nothing_left()


def test_a_drain_during_a_claim_leaves_the_claimed_entry_to_the_claim(rich: Path) -> None:
    pool.fill(2, actor="test")
    proc = _spawn(
        rich,
        "tenant_create",
        "org_drained1",
        "--format",
        "json",
        extra={tenants.CLAIM_PAUSE_ENV: "renamed:4"},
    )
    try:
        _wait_in_claim()
        dropped = pool.drain(actor="test")  # while the claim holds its entry, renamed
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    created = json.loads(out)
    assert created["path"] == "pool" and created["pool_schema"] not in dropped
    assert len(dropped) == 1  # the other entry
    assert leftovers() == nothing_left()
    assert query("SELECT count(*) FROM pg_tables WHERE schemaname = 'tenant_org_drained1'") == [
        (8,)
    ]
    code, out, _ = run_command("tenant_verify")
    assert code == 0, out


# -- migrate_tenants ---------------------------------------------------------------------------
def test_migrate_tenants_migrates_pool_schemas_apart(rich: Path) -> None:
    pool.fill(2, actor="test")
    create_tenant("org_fleet1", actor="test")  # claims one
    (rich / "tenant" / "005_later.sql").write_text(LATER_SQL)
    (entry,) = pool_rows()
    code, out, _ = run_command("migrate_tenants", "--dry-run")
    assert code == 0 and f"Pool schema {entry}: pending (005_later.sql)" in out
    code, out, _ = run_command("migrate_tenants", "--check", "--format", "json")
    report = json.loads(out)
    assert report["pool"] == [
        {"schema": entry, "status": "pending", "versions": ["005_later.sql"], "error": None}
    ]
    assert all(p["schema"] != entry for p in report["plan"])  # not among the tenants
    code, out, err = run_command("migrate_tenants")
    assert code == 0, err
    assert "applied 1 migration(s) to 1 schema(s)" in out
    assert f"Pool schema {entry}: succeeded (005)" in out
    assert query("SELECT count(*) FROM tenant_migrations WHERE tenant_schema = %s", [entry]) == [
        (5,)
    ]
    assert query("SELECT count(*) FROM pg_tables WHERE schemaname = %s", [entry]) == [(9,)]
    # Nothing left to do: a second run says so and touches no pool schema.
    code, out, _ = run_command("migrate_tenants", "--format", "json")
    assert code == 0 and json.loads(out)["pool"] == []
    # The migrated entry is handed out as it is, identical to a tenant built now.
    claimed = create_tenant("org_fleet2", actor="test")
    direct = create_tenant("org_fleet3", actor="test")
    assert claimed.path == "pool" and not any("applied" in n for n in claimed.pool_notes)
    with connect() as conn:
        prints = catalog.fingerprints(conn, [claimed.schema, direct.schema, "tenant_org_fleet1"])
    assert len({p.digest for p in prints.values()}) == 1


def test_a_pool_schema_failing_a_file_is_marked_broken_and_dropped_by_the_next_fill(
    rich: Path, monkeypatch: Any
) -> None:
    pool.fill(1, actor="test")
    (entry,) = pool_rows()
    with connect() as conn:  # a hand-made object the next file collides with
        conn.execute(f"CREATE TABLE {entry}.later_notes (x int)")
    (rich / "tenant" / "005_later.sql").write_text(LATER_SQL)
    monkeypatch.setattr(tenants, "REFILL_TASK", "tests.test_pool.record_refill")
    REFILLS.clear()
    code, out, err = run_command("migrate_tenants")
    assert code == 0, err  # the pool does not fail the tenants' run
    assert f"Pool schema {entry}: failed" in err
    assert REFILLS == ["refill"]  # asked once, after the run
    assert query("SELECT state FROM tenant_pool") == [("broken",)]
    created = create_tenant("org_afterbroken1", actor="test")
    assert created.path == "direct" and "pool empty" in created.pool_notes
    # A later run leaves the broken entry alone and says nothing false about it ("skipped:
    # a claim or another run holds it"); tenant_pool says it is never claimed.
    REFILLS.clear()
    code, out, err = run_command("migrate_tenants")
    assert code == 0 and entry not in out + err
    assert REFILLS == []  # nothing taken out this time: no refill asked
    code, out, _ = run_command("tenant_pool")
    assert f"{entry}  broken" in out and "never claimed: the next fill or drain drops it" in out
    assert "pending (applied at claim)" not in out
    report = pool.fill(1, actor="test")
    assert entry in report.swept and len(report.built) == 1
    assert entry not in str(leftovers())


def test_reset_tracking_refuses_a_pool_schema(rich: Path) -> None:
    pool.fill(actor="test")
    entry = pool_rows()[0]
    before = query("SELECT count(*) FROM tenant_migrations WHERE tenant_schema = %s", [entry])
    code, _, err = run_command(
        "migrate_tenants", "--reset-tracking", "--tenant", entry, "--noinput"
    )
    assert code == 1 and "warm-pool schema" in err
    after = query("SELECT count(*) FROM tenant_migrations WHERE tenant_schema = %s", [entry])
    assert after == before and before[0][0] > 0
