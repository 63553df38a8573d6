"""Backups: tenant_backup, tenant_restore and migrate_tenants --backup-dir, on the real
server with its own pg_dump; a tenant backed up, dropped and restored comes back whole."""

from __future__ import annotations

import hashlib
import json
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from tenancy.engine.names import owner_role_for_schema, role_for_schema
from tenancy.services import backups
from tenancy.services.tenants import create_tenant
from tests.conftest import (
    ROOT,
    connect,
    fail_after_step,
    ledger_versions,
    query,
    run_command,
    tables_in,
)

ORG, SCHEMA = "org_backup1", "tenant_org_backup1"
OTHER_ORG, OTHER = "org_backup2", "tenant_org_backup2"

# One row in every table of a tenant (the suite's tenant files), children after parents.
FILL = """
WITH o AS (INSERT INTO organizations (auth0_org_id, name, settings)
           VALUES (%(org)s, 'Backup Org', '{"plan": "pro"}') RETURNING id),
     u AS (INSERT INTO users (organization_id, auth0_user_id, email, full_name)
           SELECT id, 'auth0|1', 'a@example.com', 'Ann Example' FROM o RETURNING id),
     d AS (INSERT INTO departments (organization_id, name) SELECT id, 'Engineering' FROM o
           RETURNING id),
     j AS (INSERT INTO job_postings (organization_id, department_id, created_by, title,
                                     salary_min, salary_max, status)
           SELECT o.id, d.id, u.id, 'Engineer ünïcode ''quoted''', 100.50, 200, 'open'
           FROM o, d, u RETURNING id),
     c AS (INSERT INTO candidates (email, full_name) VALUES ('c@example.com', 'Cat')
           RETURNING id),
     a AS (INSERT INTO applications (job_posting_id, candidate_id, cover_letter)
           SELECT j.id, c.id, E'line one\\nline two\\ttab \\\\ backslash' FROM j, c
           RETURNING id)
INSERT INTO interviews (application_id, interviewer_id, scheduled_at, notes)
SELECT a.id, u.id, '2030-01-02 03:04:05+00', NULL FROM a, u
"""


def fill(schema: str, org: str) -> None:
    with connect() as conn, conn.transaction():
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        conn.execute(FILL, {"org": org})


def contents(schema: str) -> dict[str, list[tuple]]:
    """Every row of every table of ``schema``, as text, in a stable order."""
    out: dict[str, list[tuple]] = {}
    with connect() as conn:
        for table in sorted(tables_in(schema)):
            rows = conn.execute(
                sql.SQL("SELECT t::text FROM {} t ORDER BY 1").format(sql.Identifier(schema, table))
            ).fetchall()
            out[table] = rows
    return out


def public_rows(schema: str) -> dict[str, Any]:
    """The tenant's rows in public, as JSON (ids included)."""
    return {
        "registry": query(
            "SELECT to_jsonb(r) FROM tenant_registry r WHERE schema_name = %s", [schema]
        ),
        "domains": query(
            "SELECT to_jsonb(d) - 'tenant_id' FROM tenant_domains d JOIN tenant_registry r "
            "ON r.id = d.tenant_id WHERE r.schema_name = %s ORDER BY d.id",
            [schema],
        ),
        "ledger": query(
            "SELECT to_jsonb(m) FROM tenant_migrations m WHERE tenant_schema = %s "
            "ORDER BY migration_version",
            [schema],
        ),
    }


def roles_of(schema: str) -> tuple[str, str]:
    with connect() as conn:
        database = conn.info.dbname
    return role_for_schema(schema, database), owner_role_for_schema(schema, database)


def role_exists(role: str) -> bool:
    return bool(query("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]))


def schema_exists(schema: str) -> bool:
    return bool(query("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]))


def one_set(root: Path) -> Path:
    sets = [p for p in root.iterdir() if p.is_dir()]
    assert len(sets) == 1, sets
    return sets[0]


@pytest.fixture
def tenant(public_ready: None) -> None:
    create_tenant(ORG, "Backup One", actor="test")
    fill(SCHEMA, ORG)


# -- backup, drop, restore -------------------------------------------------------------
def test_a_tenant_backed_up_dropped_and_restored_comes_back_whole(tenant, tmp_path):
    before, rows_before = contents(SCHEMA), public_rows(SCHEMA)
    assert before and all(before.values()), "every table has rows"

    code, out, err = run_command("tenant_backup", "--tenant", ORG, "--output", str(tmp_path))
    assert (code, err) == (0, ""), out
    assert f"[1/1] {SCHEMA}: 7 table(s)" in out and "Backed up 1 of 1 tenant(s)" in out
    backup_set = one_set(tmp_path)
    assert {p.name for p in backup_set.iterdir()} == {
        f"{SCHEMA}.dump",
        f"{SCHEMA}.json",
        "manifest.json",
    }
    manifest = json.loads((backup_set / "manifest.json").read_text())
    assert manifest["summary"]["succeeded"] == 1 and manifest["finished_at"]
    entry = manifest["entries"][0]
    assert entry["org_id"] == ORG and entry["dump_bytes"] > 0 and entry["tables"] == 7

    code, _, err = run_command("tenant_drop", ORG, "--noinput")
    assert code == 0, err
    web, owner = roles_of(SCHEMA)
    assert not schema_exists(SCHEMA) and not role_exists(web) and not role_exists(owner)
    assert public_rows(SCHEMA) == {"registry": [], "domains": [], "ledger": []}

    code, out, err = run_command("tenant_restore", str(backup_set))
    assert (code, err) == (0, ""), out
    assert f"Restored tenant {ORG}" in out

    assert contents(SCHEMA) == before
    assert public_rows(SCHEMA) == rows_before
    # Owned by the tenant's owner role, as a new tenant's objects are.
    owners = query(
        "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = %s", [SCHEMA]
    ) + query("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = %s", [SCHEMA])
    assert {o for (o,) in owners} == {owner}
    assert query(
        "SELECT actor, details->>'auth0_org_id' FROM audit_logs WHERE action = 'tenant.restore'"
    ) == [(query("SELECT actor FROM audit_logs WHERE action = 'tenant.drop'")[0][0], ORG)]

    # Its web role works: it reads and writes its rows in a tenant transaction.
    with connect() as conn, conn.transaction():
        conn.execute("SELECT set_config('app.current_tenant', %s, true)", [SCHEMA])
        conn.execute("SELECT set_config('role', %s, true)", [web])
        conn.execute(sql.SQL("SET LOCAL search_path TO {}, public").format(sql.Identifier(SCHEMA)))
        assert conn.execute("SELECT title FROM job_postings").fetchall() == [
            ("Engineer ünïcode 'quoted'",)
        ]
        conn.execute("INSERT INTO candidates (email, full_name) VALUES ('n@example.com', 'New')")
        assert conn.execute(
            "SELECT tenant_schema FROM audit_logs WHERE action = 'tenant.restore'"
        ).fetchall() == [(SCHEMA,)]

    code, out, err = run_command("tenant_verify")
    assert code == 0, out + err
    assert f"{SCHEMA}: ok" in out


def test_restore_refuses_an_existing_tenant_and_replace_puts_the_backup_back(tenant, tmp_path):
    before = contents(SCHEMA)
    assert run_command("tenant_backup", "--all", "--output", str(tmp_path))[0] == 0
    dump = next(one_set(tmp_path).glob("*.dump"))
    with connect() as conn:
        conn.execute(sql.SQL("DELETE FROM {}.interviews").format(sql.Identifier(SCHEMA)))

    code, _, err = run_command("tenant_restore", str(dump))
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert f"Tenant {ORG} exists" in err and "--replace" in err

    code, out, err = run_command("tenant_restore", str(dump), "--replace", "--noinput")
    assert (code, err) == (0, ""), out
    assert f"Replaced tenant {ORG}" in out
    assert contents(SCHEMA) == before
    actions = [a for (a,) in query("SELECT action FROM audit_logs ORDER BY id")]
    assert actions[-2:] == ["tenant.drop", "tenant.restore"]
    assert run_command("tenant_verify")[0] == 0


@pytest.mark.parametrize("step", [-1, 4])  # after the audit row; after the objects
def test_a_failed_restore_leaves_nothing(tenant, tmp_path, monkeypatch, step):
    assert run_command("tenant_backup", "--tenant", SCHEMA, "--output", str(tmp_path))[0] == 0
    assert run_command("tenant_drop", ORG, "--noinput")[0] == 0
    audit_before = query("SELECT count(*) FROM audit_logs")
    name = fail_after_step(monkeypatch, backups, "RESTORE_STEPS", step)

    code, _, err = run_command("tenant_restore", str(one_set(tmp_path)), "--tenant", ORG)
    assert code == 1 and f"failed at step '{name}'" in err and "Nothing was restored" in err
    assert len(err.strip().splitlines()) == 1
    web, owner = roles_of(SCHEMA)
    assert not schema_exists(SCHEMA) and not role_exists(web) and not role_exists(owner)
    assert public_rows(SCHEMA) == {"registry": [], "domains": [], "ledger": []}
    assert query("SELECT count(*) FROM audit_logs") == audit_before


def test_a_failed_replace_keeps_the_tenant_it_would_have_replaced(tenant, tmp_path, monkeypatch):
    assert run_command("tenant_backup", "--tenant", ORG, "--output", str(tmp_path))[0] == 0
    with connect() as conn:
        conn.execute(sql.SQL("DELETE FROM {}.interviews").format(sql.Identifier(SCHEMA)))
    now = contents(SCHEMA)
    fail_after_step(monkeypatch, backups, "RESTORE_STEPS", -1)
    code, _, err = run_command("tenant_restore", str(one_set(tmp_path)), "--replace", "--noinput")
    assert code == 1 and "Nothing was restored" in err
    assert contents(SCHEMA) == now and ledger_versions(SCHEMA) == ["001", "002", "003"]


def test_backup_json_and_several_tenants_in_one_set(tenant, tmp_path):
    create_tenant(OTHER_ORG, "Backup Two", actor="test")
    code, out, err = run_command(
        "tenant_backup", "--all", "--output", str(tmp_path), "--format", "json"
    )
    assert (code, err) == (0, "")
    manifest = json.loads(out)
    assert [e["schema"] for e in manifest["entries"]] == [SCHEMA, OTHER]
    assert manifest["summary"] == {**manifest["summary"], "schemas": 2, "failed": 0}
    meta = json.loads((one_set(tmp_path) / f"{OTHER}.json").read_text())
    assert meta["org_id"] == OTHER_ORG and [r["migration_version"] for r in meta["ledger"]] == [
        "001",
        "002",
        "003",
    ]
    assert meta["registry"]["organization_name"] == "Backup Two" and meta["roles"]["owner"]
    assert query("SELECT count(*) FROM audit_logs WHERE action = 'tenant.backup'") == [(2,)]
    # A set of several tenants: the one to restore must be named.
    code, _, err = run_command("tenant_restore", str(one_set(tmp_path)))
    assert code == 1 and "--tenant" in err and OTHER in err


# -- bad input: one line, exit 1, nothing written ----------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tenant_backup", "--tenant", "org_nobody1"], "No tenant org_nobody1 is registered"),
        (["tenant_backup", "--tenant", "org_bad-id"], "Invalid Auth0 organization id"),
        (["tenant_backup", "--tenant", ORG, "--all"], "cannot be combined"),
        (["tenant_backup"], "--all"),
        (["tenant_restore", "/nonexistent/backup.dump"], "No backup at /nonexistent"),
    ],
)
def test_bad_input_is_one_line(tenant, tmp_path, args, message):
    code, out, err = (
        run_command(*args, "--output", str(tmp_path))
        if args[0] == ("tenant_backup")
        else run_command(*args)
    )
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err + out
    assert not list(tmp_path.iterdir())


def test_a_damaged_dump_is_refused_before_anything_changes(tenant, tmp_path):
    assert run_command("tenant_backup", "--tenant", ORG, "--output", str(tmp_path))[0] == 0
    assert run_command("tenant_drop", ORG, "--noinput")[0] == 0
    dump = next(one_set(tmp_path).glob("*.dump"))
    dump.write_bytes(dump.read_bytes()[:-10] + b"0123456789")
    code, _, err = run_command("tenant_restore", str(dump))
    assert code == 1 and "does not match its checksum" in err
    assert not schema_exists(SCHEMA)


def forge(meta: Path, old: bytes, new: bytes, *, structure_from_dump: bool) -> None:
    """Rewrite one entry of a dump's table of contents (kept uncompressed in a custom-format
    archive) to ``new``, padded to the same length so the archive stays readable, and the
    SHA-256 in the JSON with it: what anyone who can write to the backups can do."""
    dump = meta.with_suffix(".dump")
    data = dump.read_bytes()
    found = re.search(old, data)
    assert found, old
    original = found.group(0)
    assert len(new) <= len(original), (new, original)
    first, newline, rest = new.partition(b"\n")  # padded where a statement ends
    padded = first.ljust(len(original) - len(newline + rest)) + newline + rest
    dump.write_bytes(data.replace(original, padded, 1))
    description = json.loads(meta.read_text())
    description["sha256"] = hashlib.sha256(dump.read_bytes()).hexdigest()
    if structure_from_dump:  # a ledger the files do not match: the dump's definitions run
        description["ledger"][0]["checksum"] = "0" * 64
    meta.write_text(json.dumps(description))


ESCAPE = b"RESET SESSION AUTHORIZATION; CREATE TABLE public.pwned (who text);"


@pytest.mark.parametrize(
    ("structure_from_dump", "old", "new"),
    [
        (  # a row-only restore: a line before a COPY, the COPY without its column list
            False,
            rb"COPY tenant_org_backup1\.candidates \([^)]*\) FROM stdin;\n",
            ESCAPE + b"\nCOPY tenant_org_backup1.candidates FROM stdin;\n",
        ),
        (  # the dump's definitions replayed: an index's definition
            True,
            rb"CREATE INDEX idx_applications_job_stage ON tenant_org_backup1\.applications [^;]*;",
            ESCAPE,
        ),
    ],
    ids=["rows", "definitions"],
)
def test_a_forged_dump_cannot_leave_the_owner_role(tenant, tmp_path, structure_from_dump, old, new):
    """The script runs as the owner role, which a superuser login makes a session
    authorization: a forged archive whose checksum was rewritten too must not end it."""
    assert run_command("tenant_backup", "--tenant", ORG, "--output", str(tmp_path))[0] == 0
    assert run_command("tenant_drop", ORG, "--noinput")[0] == 0
    meta = next(one_set(tmp_path).glob(f"{SCHEMA}.json"))
    forge(meta, old, new, structure_from_dump=structure_from_dump)
    try:
        code, out, err = run_command("tenant_restore", str(meta))
        assert code == 1, out + err
        assert "refused" in err and len(err.strip().splitlines()) == 1, err
        assert not query("SELECT to_regclass('public.pwned')")[0][0]
        assert not schema_exists(SCHEMA) and not role_exists(roles_of(SCHEMA)[1])
    finally:
        with connect() as conn:
            conn.execute("DROP TABLE IF EXISTS public.pwned")


def test_a_dump_of_another_tenant_renamed_is_refused(tenant, tmp_path):
    create_tenant(OTHER_ORG, "Backup Two", actor="test")
    assert run_command("tenant_backup", "--all", "--output", str(tmp_path))[0] == 0
    backup_set = one_set(tmp_path)
    assert run_command("tenant_drop", ORG, "--noinput")[0] == 0
    # The other tenant's dump under this tenant's name, its checksum rewritten.
    (backup_set / f"{SCHEMA}.dump").write_bytes((backup_set / f"{OTHER}.dump").read_bytes())
    meta = json.loads((backup_set / f"{SCHEMA}.json").read_text())
    meta["sha256"] = hashlib.sha256((backup_set / f"{SCHEMA}.dump").read_bytes()).hexdigest()
    (backup_set / f"{SCHEMA}.json").write_text(json.dumps(meta))
    code, _, err = run_command("tenant_restore", str(backup_set), "--tenant", ORG)
    assert code == 1 and f"holds schema(s) {OTHER}, not {SCHEMA}" in err, err
    assert not schema_exists(SCHEMA)


def test_the_default_output_directory_is_not_committed():
    from tenancy.management.commands.tenant_backup import default_output

    probe = default_output().relative_to(ROOT) / "tenant-backup-x" / "manifest.json"
    result = subprocess.run(
        ["git", "check-ignore", "-q", str(probe)], cwd=ROOT, capture_output=True, check=False
    )
    assert result.returncode == 0, f"{probe} is not ignored by git"


def test_backup_files_are_readable_by_their_owner_only(tenant, tmp_path):
    assert run_command("tenant_backup", "--tenant", ORG, "--output", str(tmp_path))[0] == 0
    backup_set = one_set(tmp_path)
    assert stat.S_IMODE(backup_set.stat().st_mode) == 0o700
    for path in backup_set.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def fake_bin(directory: Path, major: int, *, fails: bool) -> Path:
    """pg_dump and pg_restore that claim ``major`` and fail when they are asked to work."""
    directory.mkdir()
    for name in ("pg_dump", "pg_restore"):
        path = directory / name
        work = "echo 'simulated failure' >&2; exit 1" if fails else "exit 0"
        path.write_text(
            "#!/bin/sh\n"
            f'if [ "$1" = "--version" ]; then echo "{name} (PostgreSQL) {major}.0"; exit 0; fi\n'
            f"{work}\n"
        )
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return directory


def server_major() -> int:
    return int(query("SELECT current_setting('server_version_num')::int / 10000")[0][0])


def test_no_pg_dump_of_the_servers_version_is_one_line(tenant, tmp_path, settings):
    fake = fake_bin(tmp_path / "bin", server_major() - 1, fails=False)
    settings.TENANCY = {**settings.TENANCY, "PG_BIN_DIR": str(fake)}
    code, _, err = run_command("tenant_backup", "--all", "--output", str(tmp_path / "out"))
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert f"No pg_dump/pg_restore of PostgreSQL {server_major()}" in err
    assert not (tmp_path / "out").exists()


def test_a_failing_pg_dump_fails_that_tenant_and_leaves_no_dump(tenant, tmp_path, settings):
    fake = fake_bin(tmp_path / "bin", server_major(), fails=True)
    settings.TENANCY = {**settings.TENANCY, "PG_BIN_DIR": str(fake)}
    code, _, err = run_command("tenant_backup", "--all", "--output", str(tmp_path / "out"))
    assert code == 1 and f"{SCHEMA}: FAILED" in err and "simulated failure" in err
    backup_set = one_set(tmp_path / "out")
    assert [p.name for p in backup_set.iterdir()] == ["manifest.json"]
    manifest = json.loads((backup_set / "manifest.json").read_text())
    assert manifest["entries"][0]["status"] == "failed"


# -- migrate_tenants --backup-dir -------------------------------------------------------
NEW_TENANT_FILE = """-- Migration: 004_backup_probe.sql
-- UP: Apply migration
CREATE TABLE backup_probe (id integer PRIMARY KEY);
-- DOWN: Rollback migration
DROP TABLE backup_probe;
"""
NEW_PUBLIC_FILE = """-- Migration: 003_backup_probe.sql
-- UP: Apply migration
CREATE TABLE public.backup_public_probe (id integer PRIMARY KEY);
-- DOWN: Rollback migration
DROP TABLE public.backup_public_probe;
"""
UP_TO_DATE_ORG, UP_TO_DATE = "org_backup3", "tenant_org_backup3"


@pytest.fixture
def fleet_with_pending(tenant, sql_dir: Path) -> Path:
    """Two tenants with 004 pending, and one created after it (nothing pending)."""
    create_tenant(OTHER_ORG, "Backup Two", actor="test")
    (sql_dir / "tenant" / "004_backup_probe.sql").write_text(NEW_TENANT_FILE)
    create_tenant(UP_TO_DATE_ORG, "Up to date", actor="test")
    return sql_dir


def test_backup_dir_backs_up_each_schema_with_pending_work_before_it_runs(
    fleet_with_pending, tmp_path
):
    (fleet_with_pending / "public" / "003_backup_probe.sql").write_text(NEW_PUBLIC_FILE)
    root = tmp_path / "out"
    code, out, err = run_command(
        "migrate_tenants", "--backup-dir", str(root), "--jobs", "2", "--format", "json"
    )
    assert code == 0, err
    report = json.loads(out)
    assert {r["schema"] for r in report["results"]} == {"public", SCHEMA, OTHER}
    backup_set = one_set(root)
    assert backup_set.name.startswith(f"run-{report['run_id']}-")
    dumps = sorted(p.name for p in backup_set.glob("*.dump"))
    assert dumps == ["public.dump", f"{SCHEMA}.dump", f"{OTHER}.dump"]  # not UP_TO_DATE
    for r in report["results"]:
        assert any(n.startswith("backup: ") for n in r["notes"]), r
    # Each backup is the schema as it was right before its files ran.
    meta = json.loads((backup_set / f"{SCHEMA}.json").read_text())
    assert [r["migration_version"] for r in meta["ledger"]] == ["001", "002", "003"]
    assert ledger_versions(SCHEMA) == ["001", "002", "003", "004"]
    manifest = json.loads((backup_set / "manifest.json").read_text())
    assert manifest["run_id"] == report["run_id"] and manifest["summary"]["succeeded"] == 3

    # A run with nothing pending takes no backup.
    code, _, _ = run_command("migrate_tenants", "--backup-dir", str(root))
    assert code == 0 and len(list(root.iterdir())) == 1


def assert_unmigrated() -> None:
    for schema in (SCHEMA, OTHER):
        assert ledger_versions(schema) == ["001", "002", "003"]
        assert "backup_probe" not in tables_in(schema)


def test_an_unwritable_backup_dir_fails_each_schema_before_anything_changes(
    fleet_with_pending, tmp_path
):
    in_the_way = tmp_path / "file"
    in_the_way.write_text("not a directory")
    code, out, err = run_command("migrate_tenants", "--tenants", "--backup-dir", str(in_the_way))
    assert code == 1, out
    assert f"{SCHEMA}: cannot create a backup directory in {in_the_way}" in err
    assert "Traceback" not in err
    assert_unmigrated()


def test_a_failing_pg_dump_fails_the_schema_before_anything_changes(
    fleet_with_pending, tmp_path, settings
):
    fake = fake_bin(tmp_path / "bin", server_major(), fails=True)
    settings.TENANCY = {**settings.TENANCY, "PG_BIN_DIR": str(fake)}
    code, out, err = run_command(
        "migrate_tenants", "--tenant", ORG, "--backup-dir", str(tmp_path / "out")
    )
    assert code == 1, out
    assert f"{SCHEMA}: backup of {SCHEMA} failed: pg_dump exited 1: simulated failure" in err
    assert_unmigrated()
    result = query(
        "SELECT status, error FROM tenant_migration_run_results WHERE tenant_schema = %s",
        [SCHEMA],
    )
    assert result[0][0] == "failed" and "simulated failure" in result[0][1]
    assert not list(one_set(tmp_path / "out").glob("*.dump"))


def test_no_matching_pg_dump_refuses_the_run_before_anything_changes(
    fleet_with_pending, tmp_path, settings
):
    settings.TENANCY = {**settings.TENANCY, "PG_BIN_DIR": str(tmp_path / "nothing")}
    runs_before = query("SELECT count(*) FROM tenant_migration_runs")
    code, _, err = run_command("migrate_tenants", "--backup-dir", str(tmp_path / "out"))
    assert code == 1 and "No pg_dump/pg_restore" in err and len(err.strip().splitlines()) == 1
    assert_unmigrated()
    assert query("SELECT count(*) FROM tenant_migration_runs") == runs_before


@pytest.mark.parametrize(
    "extra",
    [["--dry-run"], ["--check"], ["--fake"], ["--baseline", "004"], ["--rollback", "003"]],
)
def test_backup_dir_is_refused_where_it_makes_no_sense(fleet_with_pending, tmp_path, extra):
    root = tmp_path / "out"
    code, out, err = run_command("migrate_tenants", "--backup-dir", str(root), *extra)
    assert code == 1 and "--backup-dir" in err, out + err
    assert not root.exists()
    assert_unmigrated()


def test_a_runs_backup_restores_the_schema_as_it_was_before_the_run(fleet_with_pending, tmp_path):
    before = contents(SCHEMA)
    root = tmp_path / "out"
    code, out, _ = run_command("migrate_tenants", "--tenant", ORG, "--backup-dir", str(root))
    assert code == 0 and f"{SCHEMA}: backup: {one_set(root)}/{SCHEMA}.dump (" in out
    assert "backup_probe" in tables_in(SCHEMA)
    assert run_command("tenant_drop", ORG, "--noinput")[0] == 0

    code, out, err = run_command(
        "tenant_restore", str(one_set(root)), "--tenant", ORG, "--format", "json"
    )
    assert (code, err) == (0, ""), out
    assert json.loads(out)["structure"] == "files"
    assert contents(SCHEMA) == before and ledger_versions(SCHEMA) == ["001", "002", "003"]
    code, out, _ = run_command("tenant_verify", "--tenant", SCHEMA)
    assert code == 0 and "1 migration(s) behind" in out
    assert run_command("migrate_tenants", "--tenant", ORG)[0] == 0
    assert "backup_probe" in tables_in(SCHEMA)


def test_without_the_files_it_was_built_from_the_dumps_own_definitions_are_used(
    tenant, sql_dir, tmp_path
):
    before = contents(SCHEMA)
    assert run_command("tenant_backup", "--tenant", ORG, "--output", str(tmp_path / "out"))[0] == 0
    assert run_command("tenant_drop", ORG, "--noinput")[0] == 0
    edited = sql_dir / "tenant" / "003_candidates_applications_interviews.sql"
    edited.write_text(edited.read_text() + "\n-- edited after the backup\n")

    code, out, err = run_command(
        "tenant_restore", str(one_set(tmp_path / "out")), "--format", "json"
    )
    assert (code, err) == (0, ""), out
    assert json.loads(out)["structure"] == "dump"
    assert contents(SCHEMA) == before
    web, owner = roles_of(SCHEMA)
    assert query("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = %s", [SCHEMA]) == [
        (owner,)
    ]
    with connect() as conn, conn.transaction():
        conn.execute("SELECT set_config('role', %s, true)", [web])
        assert conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(SCHEMA, "interviews"))
        ).fetchone() == (1,)


def test_kept_ids_move_their_sequences_past_them(tenant, tmp_path):
    assert run_command("tenant_backup", "--tenant", ORG, "--output", str(tmp_path))[0] == 0
    assert run_command("tenant_drop", ORG, "--noinput")[0] == 0
    with connect() as conn:  # as in a database whose sequences never drew the dropped ids
        for table in ("tenant_registry", "tenant_domains", "tenant_migrations"):
            conn.execute(
                sql.SQL(
                    "SELECT setval(pg_get_serial_sequence(%s, 'id'), "
                    "coalesce((SELECT max(id) FROM {}), 0) + 1, false)"
                ).format(sql.Identifier("public", table)),
                [f"public.{table}"],
            )
    assert run_command("tenant_restore", str(one_set(tmp_path)))[0] == 0
    create_tenant(OTHER_ORG, "Backup Two", actor="test")  # no id collides
    assert len(query("SELECT id FROM tenant_registry")) == 2
