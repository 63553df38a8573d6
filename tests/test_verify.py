"""tenant_verify: each tenant's catalog against a reference built from its migration files
(in a transaction rolled back), on real PostgreSQL. The objects tampered with come from a
file the tests add, so the shipped migration set may change freely."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from tenancy.engine import catalog
from tenancy.engine.names import (
    app_role,
    owner_group_role,
    owner_role_prefix,
    role_for_schema,
    role_prefix,
)
from tenancy.engine.source import TENANT, discover
from tenancy.services import verify as verify_service
from tenancy.services.tenants import create_tenant
from tenancy.services.verify import VerifyError, verify
from tests.conftest import connect, query, run_command

# Objects whose normalization matters: a sequence in a default, an enum, a domain, a row-level
# security policy and a function whose texts name the schema, a trigger, checks, an index, a
# grant of its own to the tenant's web role.
PROBE_SQL = """-- Migration: {name}
-- Description: objects for tenant_verify's tests

-- UP: Apply migration
CREATE TYPE verify_mood AS ENUM ('calm', 'busy');
CREATE DOMAIN verify_score AS INTEGER CHECK (VALUE >= 0);
CREATE TABLE verify_probe (
    id BIGSERIAL PRIMARY KEY,
    label TEXT NOT NULL DEFAULT '',
    score verify_score CHECK (score < 100),
    mood verify_mood NOT NULL DEFAULT 'calm',
    updated_at TIMESTAMPTZ
);
CREATE INDEX idx_verify_probe_label ON verify_probe (label);
CREATE FUNCTION verify_probe_touch() RETURNS trigger LANGUAGE plpgsql
    SET search_path = {{{{schema}}}} AS $$
BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
CREATE TRIGGER trg_verify_probe_touch BEFORE UPDATE ON verify_probe
    FOR EACH ROW EXECUTE FUNCTION verify_probe_touch();
ALTER TABLE verify_probe ENABLE ROW LEVEL SECURITY;
CREATE POLICY verify_probe_own ON verify_probe TO {{{{tenant_role}}}}
    USING (label <> '{{{{schema}}}}');
GRANT TRIGGER ON verify_probe TO {{{{tenant_role}}}};

-- DOWN: Rollback migration
/*
DROP TABLE IF EXISTS verify_probe;
DROP FUNCTION IF EXISTS verify_probe_touch();
DROP TYPE IF EXISTS verify_mood;
DROP DOMAIN IF EXISTS verify_score;
*/
"""

LATER_SQL = """-- Migration: {name}
-- Description: a later file, applied to some tenants only

-- UP: Apply migration
CREATE TABLE verify_later (id UUID PRIMARY KEY DEFAULT gen_random_uuid(), note TEXT);
"""


def add_tenant_file(sql_dir: Path, slug: str, template: str) -> str:
    """Write the next tenant file; returns its name."""
    last = max((m.number for m in discover(sql_dir, TENANT)), default=0)
    name = f"{last + 1:03d}_{slug}.sql"
    (sql_dir / TENANT / name).write_text(template.format(name=name))
    return name


@pytest.fixture
def probe(public_ready: None, sql_dir: Path) -> Path:
    add_tenant_file(sql_dir, "verify_probe", PROBE_SQL)
    return sql_dir


def make_tenants(*org_ids: str) -> list[str]:
    return [create_tenant(org_id, actor="test").schema for org_id in org_ids]


def execute(statement: sql.Composable | str) -> None:
    with connect() as conn:
        conn.execute(statement)


def web_role(schema: str) -> str:
    with connect() as conn:
        return role_for_schema(schema, conn.info.dbname)


def server_state() -> dict[str, Any]:
    """What a verification could leave behind: schemas, this database's roles (roles are
    server-wide: other databases' come and go meanwhile), ledger and audit rows."""
    with connect() as conn:
        database = conn.info.dbname
    prefixes = [
        p.replace("_", "\\_") + "%" for p in (role_prefix(database), owner_role_prefix(database))
    ]
    return {
        "schemas": sorted(query("SELECT nspname FROM pg_namespace")),
        "roles": sorted(
            query(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE ANY(%s) OR rolname = ANY(%s)",
                [prefixes, [app_role(database), owner_group_role(database)]],
            )
        ),
        "ledger": sorted(query("SELECT tenant_schema, migration_version FROM tenant_migrations")),
        "audit": query("SELECT count(*) FROM audit_logs"),
    }


def verify_command(*args: str) -> tuple[int, str, str]:
    return run_command("tenant_verify", "--no-color", *args)


# -- healthy tenants ---------------------------------------------------------------------
@pytest.fixture
def described(monkeypatch: Any) -> list[str]:
    """The schemas catalog.describe is asked for (the slow path)."""
    names: list[str] = []
    real_describe = catalog.describe

    def spy(conn: Any, schemas: list[str], *args: Any) -> Any:
        names.extend(schemas)
        return real_describe(conn, schemas, *args)

    monkeypatch.setattr(catalog, "describe", spy)
    return names


def test_fresh_tenants_match(probe: Path, described: list[str]) -> None:
    schemas = make_tenants("org_va1", "org_vb1", "org_vc1")
    before = server_state()
    code, out, err = verify_command()
    assert code == 0, out + err
    for schema in schemas:
        assert f"{schema}: ok" in out
    assert "3 tenant(s): 3 ok, 0 with differences" in out
    assert server_state() == before  # no scratch schema, role or ledger row remains
    # The fast path: healthy tenants match the reference's fingerprint, only it is described.
    assert len(described) == 1 and described[0].startswith("tenancy_verify_")


def test_healthy_tenants_describe_identically(probe: Path) -> None:
    """Normalization: schema names and the tenant's own roles never make a difference."""
    a, b = make_tenants("org_na1", "org_nb1")
    with connect() as conn:
        prints = catalog.fingerprints(conn, [a, b])
        lines = catalog.describe(conn, [a, b])
    assert prints[a] == prints[b]
    assert lines[a] == lines[b]
    assert not any(a in f"{key} {value}" for key, value in lines[a].items())
    assert lines[a][("owner", "table verify_probe")] == "owner"
    assert ("grant", "table verify_probe web INSERT") in lines[a]
    assert ("grant", "table verify_probe web TRIGGER") in lines[a]
    assert lines[a][("column", "verify_probe.id")].startswith("bigint not null default nextval(")
    assert lines[a][("constraint", "verify_score.verify_score_check")] == "CHECK ((VALUE >= 0))"
    assert lines[a][("column", "verify_probe.score")] == "verify_score"  # no schema prefix
    assert "{{schema}}" in lines[a][("policy", "verify_probe.verify_probe_own")]
    assert "to web" in lines[a][("policy", "verify_probe.verify_probe_own")]


def test_no_tenants(public_ready: None) -> None:
    code, out, _ = verify_command()
    assert code == 0 and "No tenants registered yet" in out


# -- drift by hand -------------------------------------------------------------------------
def test_hand_changes_are_named_and_other_tenants_stay_ok(probe: Path) -> None:
    ok_a, bad, ok_b = make_tenants("org_ta1", "org_tb1", "org_tc1")
    table = sql.Identifier(bad, "verify_probe")
    execute(sql.SQL("ALTER TABLE {} ADD COLUMN priority SMALLINT").format(table))
    execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(bad, "idx_verify_probe_label")))
    execute(sql.SQL("REVOKE INSERT ON {} FROM {}").format(table, sql.Identifier(web_role(bad))))
    before = server_state()
    code, out, err = verify_command()
    assert code == 1, out + err
    assert f"{ok_a}: ok" in out and f"{ok_b}: ok" in out
    assert f"{bad}: 3 difference(s)" in out
    assert "    unexpected: column verify_probe.priority smallint" in out
    assert (
        "    missing: index idx_verify_probe_label CREATE INDEX idx_verify_probe_label ON " in out
    )
    assert "    grant: web lost INSERT on table verify_probe" in out
    assert "3 tenant(s): 2 ok, 1 with differences" in out
    assert server_state() == before


def test_one_change_in_many_tenants_is_described_once(probe: Path, described: list[str]) -> None:
    schemas = make_tenants("org_sa1", "org_sb1", "org_sc1")
    for schema in schemas:
        execute(sql.SQL("ALTER TABLE {} ADD COLUMN hotfix BOOLEAN").format(
            sql.Identifier(schema, "verify_probe")
        ))  # fmt: skip
    report = verify()
    assert [t.differences for t in report.tenants] == [
        ["unexpected: column verify_probe.hotfix boolean"]
    ] * 3
    assert len([s for s in described if s.startswith("tenant_")]) == 1


def test_many_tenants_split_over_connections(
    probe: Path, described: list[str], monkeypatch: Any
) -> None:
    """Past OWN_CONNECTIONS_FROM, fingerprints run on connections of their own, in shares."""
    monkeypatch.setattr(verify_service, "OWN_CONNECTIONS_FROM", 2)
    schemas = make_tenants("org_pa1", "org_pb1", "org_pc1")
    execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(schemas[1], "idx_verify_probe_label")))
    calls: list[list[str]] = []
    real = catalog.fingerprints

    def spy(conn: Any, names: list[str], *args: Any) -> Any:
        calls.append(sorted(names))
        return real(conn, names, *args)

    monkeypatch.setattr(catalog, "fingerprints", spy)
    code, out, _ = verify_command("--jobs", "2")
    assert code == 1
    assert f"{schemas[0]}: ok" in out and f"{schemas[2]}: ok" in out
    assert f"{schemas[1]}: 1 difference(s)" in out
    tenant_calls = [c for c in calls if not c[0].startswith("tenancy_verify_")]
    assert sorted(tenant_calls) == [sorted(schemas[0::2]), [schemas[1]]]
    assert verify_command("--jobs", "0")[0] == 1


def test_owner_and_policy_changes(probe: Path) -> None:
    (schema,) = make_tenants("org_ow1")
    table = sql.Identifier(schema, "verify_probe")
    execute(sql.SQL("ALTER TABLE {} OWNER TO CURRENT_USER").format(table))
    execute(sql.SQL("ALTER TABLE {} DISABLE ROW LEVEL SECURITY").format(table))
    report = verify()
    lines = report.tenants[0].differences
    user = query("SELECT current_user")[0][0]
    assert f"owner: table verify_probe is owned by {user}, expected owner" in lines
    assert "changed: table verify_probe: (plain), expected row security" in lines


def test_tenant_filter_and_json(probe: Path) -> None:
    good, bad = make_tenants("org_ja1", "org_jb1")
    execute(sql.SQL("DROP TABLE {} CASCADE").format(sql.Identifier(bad, "verify_probe")))
    code, out, _ = verify_command("--tenant", bad, "--format", "json")
    assert code == 1
    payload = json.loads(out)
    assert [t["schema"] for t in payload["tenants"]] == [bad]
    (tenant,) = payload["tenants"]
    assert tenant["ok"] is False and tenant["behind"] == 0
    assert "missing: table verify_probe row security" in tenant["differences"]
    assert payload["summary"]["tenants"] == 1 and payload["summary"]["differing"] == 1
    code, out, _ = verify_command("--tenant", good, "--format", "json")
    assert code == 0
    assert json.loads(out)["tenants"] == [
        {
            "schema": good,
            "ok": True,
            "differences": [],
            "behind": 0,
            "behind_files": [],
            "ahead": [],
        }
    ]


def test_missing_schema_is_a_difference(probe: Path) -> None:
    gone, kept = make_tenants("org_ma1", "org_mb1")
    execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(gone)))
    code, out, _ = verify_command()
    assert code == 1
    assert f"{gone}: 1 difference(s)" in out
    assert f"missing: schema {gone} (registered, but it does not exist)" in out
    assert f"{kept}: ok" in out


# -- tenants behind the files --------------------------------------------------------------
def test_behind_tenant_is_compared_with_its_own_files(probe: Path) -> None:
    current, behind, behind_drifted = make_tenants("org_ba1", "org_bb1", "org_bc1")
    later = add_tenant_file(probe, "verify_later", LATER_SQL)
    code, _, err = run_command("migrate_tenants", "--tenant", current)
    assert code == 0, err
    # Behind, and the later file's table created by hand: that is drift, not progress.
    execute(
        sql.SQL("CREATE TABLE {} (id UUID PRIMARY KEY)").format(
            sql.Identifier(behind_drifted, "verify_later")
        )
    )
    before = server_state()
    code, out, err = verify_command()
    assert code == 1, out + err
    assert f"{current}: ok\n" in out
    assert f"{behind}: ok (1 migration(s) behind)" in out
    assert f"{behind_drifted}: " in out and "unexpected: table verify_later" in out
    assert server_state() == before
    report = {t.schema: t for t in verify().tenants}
    assert report[behind].behind == [later] and report[behind].ok
    assert report[current].behind == []
    assert verify().references == 2  # one per distinct applied set


def test_tenants_behind_on_different_files(probe: Path) -> None:
    """Applied sets that are not prefixes of one another: one reference each."""
    first, second = make_tenants("org_da1", "org_db1")
    later_y = add_tenant_file(probe, "verify_later_y", LATER_SQL.replace("verify_later", "vy"))
    y_version = int(later_y[:3])
    y_path = probe / TENANT / later_y
    y_path.rename(probe / TENANT / f"{y_version + 1:03d}{later_y[3:]}")  # leave a gap
    y_path = probe / TENANT / f"{y_version + 1:03d}{later_y[3:]}"
    assert run_command("migrate_tenants", "--tenant", second)[0] == 0
    y_text = y_path.read_text()
    y_path.unlink()
    add_tenant_file(probe, "verify_later_x", LATER_SQL.replace("verify_later", "vx"))
    assert run_command("migrate_tenants", "--tenant", first)[0] == 0
    y_path.write_text(y_text)
    report = verify()
    assert report.ok and report.references == 2
    assert [len(t.behind) for t in report.tenants] == [1, 1]


def test_tenant_ahead_of_the_files(probe: Path) -> None:
    (schema,) = make_tenants("org_ah1")
    probe_file = max((probe / TENANT).glob("*_verify_probe.sql"))
    probe_file.unlink()  # applied, then its file disappeared
    result = verify().tenants[0]
    version = probe_file.name.split("_")[0]
    assert result.ahead == [version]
    assert f"ledger: version {version} is applied but no file has that version" in (
        result.differences
    )
    assert "unexpected: table verify_probe row security" in result.differences


# -- arguments and failures ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("bad;name", "Invalid schema name"),
        ("Bad-Name", "Not a registered tenant schema: Bad-Name"),
        ("public", "'public' is the shared schema"),
        ("tenant_org_nobody", "Not a registered tenant schema: tenant_org_nobody"),
    ],
)
def test_bad_tenant_argument(probe: Path, argument: str, message: str) -> None:
    make_tenants("org_arg1")
    code, out, err = verify_command("--tenant", argument)
    assert code == 1
    assert message in err and "Traceback" not in err + out


def test_failed_reference_build_leaves_nothing(probe: Path, monkeypatch: Any) -> None:
    make_tenants("org_fa1")
    real = verify_service.apply_to_new_schema

    def apply_then_fail(*args: Any, **kwargs: Any) -> None:
        real(*args, **kwargs)  # the scratch schema is built, then the build fails
        raise RuntimeError("injected failure")

    monkeypatch.setattr(verify_service, "apply_to_new_schema", apply_then_fail)
    before = server_state()
    with pytest.raises(VerifyError, match="reference schema could not be built"):
        verify()
    assert server_state() == before
    code, _, err = verify_command()
    assert code == 1 and "injected failure" in err


def test_differences_render_readably() -> None:
    expected = {
        ("column", "t.a"): "integer",
        ("grant", "table t web INSERT"): "",
        ("owner", "table t"): "owner",
        ("index", "idx"): "CREATE INDEX idx ON t USING btree (a)",
    }
    actual = {
        ("column", "t.a"): "bigint",
        ("grant", "table t web DELETE"): "",
        ("owner", "table t"): "postgres",
        ("column", "t.b"): "text",
    }
    assert catalog.differences(expected, actual) == [
        "missing: index idx CREATE INDEX idx ON t USING btree (a)",
        "changed: column t.a: bigint, expected integer",
        "unexpected: column t.b text",
        "owner: table t is owned by postgres, expected owner",
        "grant: web gained DELETE on table t",
        "grant: web lost INSERT on table t",
    ]


# -- the admin's tenant page -----------------------------------------------------------------
def test_admin_tenant_page_shows_the_verification(probe: Path) -> None:
    from django.contrib.auth.models import User
    from django.test import Client

    from tenancy.models import Tenant

    (schema,) = make_tenants("org_ad1")
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw-test"))
    page = f"/admin/tenancy/tenant/{Tenant.objects.get(schema_name=schema).pk}/change/"
    html = client.get(page).content.decode()
    block = html[html.index('id="catalog-verify"') : html.index('id="pending-files"')]
    assert "Catalog matches the migration files" in block
    execute(sql.SQL("ALTER TABLE {} ADD COLUMN extra TEXT").format(
        sql.Identifier(schema, "verify_probe")
    ))  # fmt: skip
    html = client.get(page).content.decode()
    block = html[html.index('id="catalog-verify"') : html.index('id="pending-files"')]
    assert "1 difference(s)" in block and "unexpected: column verify_probe.extra text" in block
