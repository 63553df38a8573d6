"""migrate_tenants' verbs are honest: one at a time, --dry-run changes nothing whatever
the verb, --check exits 2 when the verb would change something, and the CI gate
(--check, --dry-run, tenant_status --check) fails on a broken fleet."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tenancy import conf
from tenancy.engine.names import owner_role_prefix, role_prefix
from tenancy.services import runs
from tenancy.services.tenants import create_tenant
from tests.conftest import (
    ROOT,
    TEST_MIGRATIONS,
    connect,
    fresh_url,
    ledger_versions,
    manage,
    query,
    run_command,
    subprocess_env,
    tables_in,
)

A, B = "tenant_org_verba1", "tenant_org_verbb2"
EXTRA = (
    "-- UP: Apply migration\nCREATE TABLE extra (id int);\n-- DOWN: Rollback\nDROP TABLE extra;\n"
)


@pytest.fixture
def fleet(public_ready: None, sql_dir: Path) -> Path:
    create_tenant("org_verba1")
    create_tenant("org_verbb2")
    return sql_dir


def next_version(sql_dir: Path) -> str:
    return f"{max(int(p.name[:3]) for p in (sql_dir / 'tenant').glob('*.sql')) + 1:03d}"


def add_file(sql_dir: Path, text: str = EXTRA) -> str:
    version = next_version(sql_dir)
    (sql_dir / "tenant" / f"{version}_extra.sql").write_text(text)
    return version


def our_roles() -> list:
    """This database's tenant roles (roles are server-wide: other databases' come and go)."""
    database = connect().info.dbname
    prefixes = [
        p.replace("_", "\\_") + "%" for p in (role_prefix(database), owner_role_prefix(database))
    ]
    return query("SELECT rolname FROM pg_roles WHERE rolname LIKE ANY(%s) ORDER BY 1", [prefixes])


def state() -> tuple:
    """Everything a verb could change: ledger, registry, roles, audit, runs, schemas."""
    return (
        query(
            "SELECT tenant_schema, migration_version, checksum FROM tenant_migrations ORDER BY 1, 2"
        ),
        query("SELECT schema_name, status FROM tenant_registry ORDER BY 1"),
        our_roles(),
        query("SELECT count(*) FROM audit_logs"),
        query("SELECT count(*) FROM tenant_migration_runs"),
        query("SELECT nspname FROM pg_namespace ORDER BY 1"),
        query("SELECT count(*) FROM pg_tables WHERE tablename = 'extra'"),
    )


def drifted(sql_dir: Path) -> str:
    """Apply an extra file, then edit it: drift."""
    version = add_file(sql_dir)
    assert run_command("migrate_tenants")[0] == 0
    path = next((sql_dir / "tenant").glob(f"{version}_*.sql"))
    path.write_text(EXTRA.replace("(id int)", "(id bigint)"))
    return version


def verb_cases(sql_dir: Path) -> list[tuple[str, ...]]:
    last = max(p.name[:3] for p in (sql_dir / "tenant").glob("*.sql"))
    return [
        ("--reset-tracking", "--tenant", A, "--noinput"),
        ("--baseline", add_file(sql_dir), "--tenant", A),
        ("--fake",),
        ("--rollback", last),
        ("--create-tenant", "org_dry1"),
    ]


def test_every_verb_under_dry_run_changes_nothing(fleet):
    for args in verb_cases(fleet):
        before = state()
        code, out, err = run_command("migrate_tenants", *args, "--dry-run")
        assert code == 0, (args, err)
        assert "Would" in out or "would" in out or "pending" in out.lower(), (args, out)
        assert state() == before, args
        code, _, err = run_command("migrate_tenants", *args, "--check")
        assert code == runs.EXIT_PENDING, (args, err)
        assert state() == before, args


def test_accept_checksum_under_dry_run_changes_nothing(fleet):
    last = max(p.name[:3] for p in (fleet / "tenant").glob("*.sql"))
    # Nothing drifted: nothing to accept, and nothing for the CI gate to report.
    for flag in ("--dry-run", "--check"):
        code, out, err = run_command("migrate_tenants", "--accept-checksum", last, flag)
        assert code == 0 and "Nothing to accept" in out, err
    version = drifted(fleet)
    before = state()
    code, out, _ = run_command("migrate_tenants", "--accept-checksum", version, "--dry-run")
    assert code == 0 and "Would accept" in out and "2 schema(s)" in out
    assert state() == before
    code, out, _ = run_command("migrate_tenants", "--accept-checksum", version, "--check")
    assert code == runs.EXIT_PENDING and "Would accept" in out
    assert state() == before
    assert run_command("migrate_tenants", "--accept-checksum", version)[0] == 0
    assert state() != before


@pytest.mark.parametrize(
    "args",
    [
        ("--rollback", "002", "--baseline", "003", "--fake", "--dry-run"),
        ("--fake", "--reset-tracking", "--tenant", A),
        ("--create-tenant", "org_x1", "--rollback", "003"),
        ("--create-tenant", ""),
        ("--rollback", " "),
        ("--baseline", ""),
        ("--tenant", ""),
        ("--name", "Acme"),
        ("--create-tenant", "org_x1", "--tenant", A),
        ("--rollback", "003", "--allow-missing"),
        ("--rollback", "003", "--fail-fast"),
        ("--baseline", "003", "--allow-out-of-order"),
        ("--reset-tracking", "--tenant", "tenant_org_nobody", "--noinput"),
    ],
)
def test_conflicting_or_empty_arguments_are_usage_errors(fleet, args):
    before = state()
    code, out, err = run_command("migrate_tenants", *args)
    assert code == 1, (out, err)
    assert "Traceback" not in err and err.strip()
    assert state() == before


# -- the CI gate ------------------------------------------------------------------------
def test_check_and_dry_run_fail_on_a_missing_schema(fleet):
    with connect() as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(B)))
    for flag in ("--check", "--dry-run"):
        code, _, err = run_command("migrate_tenants", flag)
        assert code == 1 and f"missing schema: {B}" in err, err
    code, out, _ = run_command("migrate_tenants", "--check", "--format", "json")
    assert code == 1 and any(B in p for p in json.loads(out)["problems"])
    assert run_command("tenant_status", "--check")[0] == 1


def test_check_fails_on_an_applied_file_missing_from_disk(fleet):
    version = add_file(fleet)
    assert run_command("migrate_tenants")[0] == 0
    next((fleet / "tenant").glob(f"{version}_*.sql")).unlink()
    code, _, err = run_command("migrate_tenants", "--check")
    assert code == runs.EXIT_DRIFT and "missing file" in err
    code, _, err = run_command("tenant_status", "--check")
    assert code == 1 and "missing" in err.lower()


def test_check_fails_while_a_schemas_last_attempt_failed(fleet):
    add_file(fleet, "-- UP\nCREATE TABLE extra (id int);\nSELECT 1/0;\n")
    assert run_command("migrate_tenants")[0] == 1
    # Pending work and a failure: the failure wins (1, not 2).
    code, _, err = run_command("migrate_tenants", "--check")
    assert code == 1 and f"failed: the last attempt on {A} failed" in err


def test_a_run_with_nothing_to_do_records_no_run(fleet):
    before = state()
    code, out, _ = run_command("migrate_tenants")
    assert code == 0 and "No pending migrations" in out
    code, out, _ = run_command("migrate_tenants", "--rollback", "099")
    assert code == 0 and "Nothing to roll back" in out
    assert state() == before  # no run row, no audit row


def test_tenant_status_check_fails_on_an_out_of_order_file(fleet):
    low = next_version(fleet)
    high = f"{int(low) + 1:03d}"
    (fleet / "tenant" / f"{high}_extra.sql").write_text(EXTRA)
    assert run_command("migrate_tenants")[0] == 0
    (fleet / "tenant" / f"{low}_late.sql").write_text(EXTRA.replace("extra", "late"))
    code, _, err = run_command("tenant_status", "--check")
    assert code == 1 and "out-of-order file" in err and f"{low}_late.sql" in err
    assert run_command("migrate_tenants", "--check")[0] == runs.EXIT_DRIFT


def test_jobs_are_capped_by_the_free_connections(fleet):
    with connect() as conn:
        jobs, note = runs.fit_jobs(conn, 1000)
        free = conn.execute(
            "SELECT current_setting('max_connections')::int "
            "- current_setting('superuser_reserved_connections')::int"
        ).fetchone()[0]
    assert jobs < free and note and "capped" in note
    add_file(fleet)
    code, out, err = run_command("migrate_tenants", "--jobs", "1000", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["summary"]["failed"] == 0 and report["summary"]["succeeded"] == 2


def test_a_starting_worker_closes_runs_whose_process_died(fleet):
    """A run left 'running' by a worker that died behind a pooler (no backend to check):
    its heartbeat went stale, and the next worker to start marks it interrupted."""
    with connect() as conn:
        run_id = conn.execute(
            "INSERT INTO tenant_migration_runs (kind, actor, status, heartbeat_at) "
            "VALUES ('migrate', 'worker', 'running', now() - interval '5 minutes') RETURNING id"
        ).fetchone()[0]
        alive = conn.execute(
            "INSERT INTO tenant_migration_runs (kind, actor, status, heartbeat_at) "
            "VALUES ('migrate', 'worker', 'running', now()) RETURNING id"
        ).fetchone()[0]
    code, out, err = run_command("db_worker", "--batch", "--no-startup-delay")
    assert code == 0, err
    assert "Marked 1 run(s)" in out
    assert dict(query("SELECT id, status FROM tenant_migration_runs WHERE actor = 'worker'")) == {
        run_id: "interrupted",
        alive: "running",
    }


SLOW = "-- UP\nCREATE TABLE slow (id int);\nSELECT pg_sleep(0.3);\n"


@pytest.mark.parametrize(("sig", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_run_cleanly_and_a_rerun_finishes(public_ready, sql_dir, sig, exit_code):
    schemas = [create_tenant(f"org_sig{i}").schema for i in range(8)]
    version = add_file(sql_dir, SLOW)
    proc = manage("migrate_tenants", "--tenants", migrations_dir=sql_dir)
    deadline = time.monotonic() + 60
    while not any(version in ledger_versions(s) for s in schemas):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == exit_code, (out, err)
    assert "Traceback" not in err and "Interrupted" in err, err
    done = [s for s in schemas if version in ledger_versions(s)]
    assert 1 <= len(done) < len(schemas), (out, err)
    for schema in schemas:  # wholly migrated or wholly not
        assert ("slow" in tables_in(schema)) == (schema in done)
    assert query(
        "SELECT status, done_schemas FROM tenant_migration_runs ORDER BY id DESC LIMIT 1"
    ) == [("interrupted", len(done))], (out, err)
    rerun = manage("migrate_tenants", "--tenants", migrations_dir=sql_dir)
    assert rerun.wait(timeout=120) == 0, rerun.communicate()
    assert all(version in ledger_versions(s) for s in schemas)


def test_schemas_cut_off_by_a_signal_with_jobs_are_interrupted_not_failed(public_ready, sql_dir):
    schemas = [create_tenant(f"org_cut{i}").schema for i in range(6)]
    version = add_file(sql_dir, SLOW)
    proc = manage("migrate_tenants", "--tenants", "--jobs", "2", migrations_dir=sql_dir)
    deadline = time.monotonic() + 60
    while not any(version in ledger_versions(s) for s in schemas):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "FAILED" not in out + err  # the files did nothing wrong
    rows = query("SELECT status, error FROM tenant_migration_run_results")
    assert all(status in ("succeeded", "interrupted") for status, _ in rows), rows
    assert all("rolled back" in error for status, error in rows if status == "interrupted")
    for schema in schemas:  # wholly migrated or wholly not
        assert ("slow" in tables_in(schema)) == (version in ledger_versions(schema))


ALONE = (
    "-- transactional: false\n-- UP\nSELECT pg_sleep(30);\n"
    "CREATE INDEX CONCURRENTLY idx_sig_title ON job_postings (title);\n"
)


def test_a_signal_in_a_step_outside_a_transaction_says_it_was_not_rolled_back(
    public_ready, sql_dir
):
    schema = create_tenant("org_alone1").schema
    version = add_file(sql_dir, ALONE)
    proc = manage("migrate_tenants", "--tenants", migrations_dir=sql_dir)
    deadline = time.monotonic() + 60
    while not query("SELECT 1 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'"):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err
    assert f"{schema}: {version}_extra.sql was in a step that runs outside a transaction" in err
    assert "so it was not rolled back" in err, err
    assert "the schema in progress was rolled back (its transaction)" not in err
    # The pending file may change (it has no ledger row): the re-run need not sleep.
    (sql_dir / "tenant" / f"{version}_extra.sql").write_text(ALONE.replace("30", "0"))
    rerun = manage("migrate_tenants", "--tenants", migrations_dir=sql_dir)
    assert rerun.wait(timeout=120) == 0, rerun.communicate()
    assert version in ledger_versions(schema)


def test_a_dry_run_on_a_fresh_database_reports_everything_public_pending(fresh_database):
    """The migration guide's Testing Pipeline starts with a dry run on a new database."""
    env = {**subprocess_env(), "EMPLOYER_PORTAL_DB_URL": fresh_url(fresh_database)}

    def migrate(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(ROOT / "manage.py"), "migrate_tenants", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    dry = migrate("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "Django migrations pending in public: all" in dry.stdout
    public_files = sorted(p.name for p in (TEST_MIGRATIONS / "public").glob("*.sql"))
    assert all(name in dry.stdout for name in public_files)
    assert migrate("--check").returncode == runs.EXIT_PENDING
    with psycopg.connect(**{**conf.conninfo(), "dbname": fresh_database}) as conn:
        assert conn.execute("SELECT to_regclass('public.tenant_registry')").fetchone() == (None,)
