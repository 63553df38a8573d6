"""The engine in production conditions: failures, drift, locks, timeouts, rollback, CI."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest
from django.db import connection as django_connection
from psycopg import sql

from tenancy.engine.db import close_idle
from tenancy.engine.names import role_for_schema
from tenancy.services import reports, runs
from tenancy.services.tenants import create_tenant
from tests.conftest import connect, ledger_versions, manage, query, run_command, tables_in


def make_tenants(n: int, prefix: str = "t") -> list[str]:
    return [create_tenant(f"org_{prefix}{i:03d}").schema for i in range(n)]


def add(sql_dir: Path, name: str, text: str, scope: str = "tenant") -> Path:
    path = sql_dir / scope / name
    path.write_text(text)
    return path


POISONABLE = """-- Description: invoices, refused where an organization is named 'poison'
-- UP
CREATE TABLE invoices (id serial PRIMARY KEY, amount numeric NOT NULL);
ALTER TABLE job_postings ADD COLUMN invoice_note text;
DO $$ BEGIN
  IF EXISTS (SELECT 1 FROM organizations WHERE name = 'poison') THEN
    RAISE EXCEPTION 'poisoned tenant %', current_schema();
  END IF;
END $$;
-- DOWN
/*
ALTER TABLE job_postings DROP COLUMN invoice_note;
DROP TABLE invoices;
*/
"""


def poison(schema: str) -> None:
    with connect() as conn:
        conn.execute(
            f'INSERT INTO "{schema}".organizations (auth0_org_id, name) '
            "VALUES ('org_poison', 'poison')"
        )


def cure(schema: str) -> None:
    with connect() as conn:
        conn.execute(f'DELETE FROM "{schema}".organizations WHERE name = %s', ["poison"])


def columns(schema: str, table: str) -> set[str]:
    return {
        r[0]
        for r in query(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s",
            [schema, table],
        )
    }


@pytest.fixture
def tenants5(public_ready, sql_dir):
    return make_tenants(5)


def test_failure_in_one_tenant_leaves_it_unchanged_and_the_others_migrated(tenants5, sql_dir):
    add(sql_dir, "004_invoices.sql", POISONABLE)
    bad = tenants5[2]
    poison(bad)
    code, out, err = run_command("migrate_tenants", "--tenants")
    assert code == 1
    assert f"{bad}: FAILED" in out
    # The error names the file and the statement that failed, then PostgreSQL's message.
    assert f"{bad}: 004_invoices.sql: statement 3 of 3 (DO $$ BEGIN" in err
    assert f"poisoned tenant {bad}" in err
    # The failed schema is exactly as it was: no table, no column, no ledger row.
    assert "invoices" not in tables_in(bad)
    assert "invoice_note" not in columns(bad, "job_postings")
    assert ledger_versions(bad) == ["001", "002", "003"]
    for schema in tenants5[:2] + tenants5[3:]:
        assert "invoices" in tables_in(schema) and ledger_versions(schema)[-1] == "004"
    # The failure is recorded where status and the admin read it.
    state = {s.schema: s for s in reports.schema_states()}
    assert state[bad].failed and "poisoned tenant" in state[bad].last_error
    assert not state[tenants5[0]].failed
    # A re-run after the data is fixed does exactly the unfinished work.
    cure(bad)
    report = runs.migrate(tenants=True, public=False)
    assert report.exit_code == 0
    assert [(r.schema, r.versions) for r in report.results] == [(bad, ["004"])]
    assert not {s.schema: s for s in reports.schema_states()}[bad].failed
    audit = query(
        "SELECT details->>'outcome' FROM public.audit_logs WHERE action = 'migrate.run' ORDER BY id"
    )
    assert audit[-2:] == [("failed",), ("succeeded",)]


def test_tenant_migration_order_decides_the_order_of_the_schemas(tenants5, sql_dir, settings):
    """django-tenants' TENANT_MIGRATION_ORDER: order_by() fields of the tenant model."""
    add(sql_dir, "004_notes.sql", "-- UP\nCREATE TABLE notes (id int);\n-- DOWN\nDROP TABLE notes;")
    assert [s.schema for s in runs.make_plan(public=False).schemas] == tenants5  # registry's
    settings.TENANT_MIGRATION_ORDER = ["-schema_name"]
    newest_name_first = sorted(tenants5, reverse=True)
    assert [s.schema for s in runs.make_plan(public=False).schemas] == newest_name_first
    report = runs.migrate(tenants=True, public=False, jobs=1)
    assert report.exit_code == 0
    applied = query(
        "SELECT tenant_schema FROM public.tenant_migrations WHERE migration_version = '004' "
        "ORDER BY id"
    )
    assert [r[0] for r in applied] == newest_name_first


def test_fail_fast_stops_at_the_first_failure(tenants5, sql_dir):
    add(sql_dir, "004_invoices.sql", POISONABLE)
    poison(tenants5[1])
    code, _, err = run_command("migrate_tenants", "--tenants", "--fail-fast")
    assert code == 1
    assert ledger_versions(tenants5[0])[-1] == "004"
    for schema in tenants5[1:]:
        assert ledger_versions(schema)[-1] == "003", schema


def test_edited_applied_file_is_drift_exit_3_and_nothing_applied(tenants5, sql_dir):
    first = add(sql_dir, "004_notes.sql", "CREATE TABLE notes (id int);\n")
    assert run_command("migrate_tenants")[0] == 0
    first.write_text("CREATE TABLE notes (id bigint);\n")
    add(sql_dir, "005_more.sql", "CREATE TABLE more_notes (id int);\n")
    code, out, err = run_command("migrate_tenants")
    assert code == 3
    assert "drift: tenant/004_notes.sql" in err and tenants5[0] in err
    assert all("more_notes" not in tables_in(s) for s in tenants5)
    assert run_command("migrate_tenants", "--dry-run")[0] == 3

    code, out, err = run_command("migrate_tenants", "--accept-checksum", "004")
    assert code == 0 and "5 schema(s)" in out
    assert (
        query(
            "SELECT details->'schemas' FROM public.audit_logs "
            "WHERE action = 'migrate.accept_checksum'"
        )[0][0]
        == tenants5
    )
    assert run_command("migrate_tenants")[0] == 0
    assert all("more_notes" in tables_in(s) for s in tenants5)


def test_missing_file_and_out_of_order_file_are_refused_unless_asked(tenants5, sql_dir):
    gone = add(sql_dir, "004_notes.sql", "CREATE TABLE notes (id int);\n")
    add(sql_dir, "006_tags.sql", "CREATE TABLE tags (id int);\n")
    assert run_command("migrate_tenants")[0] == 0
    gone.unlink()
    add(sql_dir, "005_late.sql", "CREATE TABLE late (id int);\n")
    code, _, err = run_command("migrate_tenants")
    assert code == 3
    assert "missing file: tenant/004_notes.sql" in err
    assert "out of order: tenant/005_late.sql" in err
    assert "late" not in tables_in(tenants5[0])
    code, _, err = run_command("migrate_tenants", "--allow-missing", "--allow-out-of-order")
    assert code == 0, err
    assert "late" in tables_in(tenants5[0])


COUNTED = """-- Description: a data migration that must run once per schema
CREATE TABLE IF NOT EXISTS counted (id int);
INSERT INTO counted VALUES (1);
SELECT pg_sleep(0.01);
"""


def test_two_runs_started_together_apply_each_schema_version_exactly_once(public_ready, sql_dir):
    schemas = make_tenants(50)
    add(sql_dir, "004_counted.sql", COUNTED)
    procs = [
        manage("migrate_tenants", "--tenants", "--jobs", "2", migrations_dir=sql_dir)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    counted = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {}, count(*) FROM {}.counted").format(sql.Literal(s), sql.Identifier(s))
        for s in schemas
    )
    assert dict(query(counted)) == {s: 1 for s in schemas}
    assert query(
        "SELECT count(*) FROM public.tenant_migrations WHERE migration_version = '004'"
    ) == [(50,)]


def test_killed_run_leaves_no_half_migrated_schema_and_a_rerun_finishes(public_ready, sql_dir):
    schemas = make_tenants(30)
    add(
        sql_dir,
        "004_slow.sql",
        "CREATE TABLE slow_a (id int);\nSELECT pg_sleep(0.1);\nCREATE TABLE slow_b (id int);\n",
    )
    proc = manage("migrate_tenants", "--tenants", migrations_dir=sql_dir)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = query(
            "SELECT count(*) FROM public.tenant_migrations WHERE migration_version = '004'"
        )[0][0]
        if done >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert 5 <= done < 30
    for schema in schemas:  # each schema wholly migrated or wholly not
        tables = tables_in(schema) & {"slow_a", "slow_b"}
        recorded = "004" in ledger_versions(schema)
        assert tables in (set(), {"slow_a", "slow_b"}) and bool(tables) == recorded, schema
    # Whoever looks next (here tenant_status) closes the dead run, with exact counts.
    assert run_command("tenant_status")[0] == 0
    recorded = sum("004" in ledger_versions(s) for s in schemas)
    assert query(
        "SELECT status, done_schemas FROM public.tenant_migration_runs ORDER BY id DESC LIMIT 1"
    ) == [("interrupted", recorded)]
    rerun = manage("migrate_tenants", "--tenants", migrations_dir=sql_dir)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert all(ledger_versions(s)[-1] == "004" for s in schemas)
    assert query(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())"
    ) == [(0,)]
    # The killed run's record says so; the re-run's says it succeeded.
    assert query(
        "SELECT status FROM public.tenant_migration_runs WHERE kind = 'migrate' "
        "ORDER BY id DESC LIMIT 2"
    ) == [("succeeded",), ("interrupted",)]


CONCURRENT_INDEX = """-- Description: an index built without blocking writes
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_job_postings_title ON job_postings (title);
"""


def test_concurrent_index_applies_everywhere_while_another_run_waits(public_ready, sql_dir):
    schemas = make_tenants(8)
    add(sql_dir, "004_index.sql", CONCURRENT_INDEX)
    procs = [manage("migrate_tenants", "--tenants", migrations_dir=sql_dir) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    valid = query("""SELECT n.nspname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                     JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE c.relname = 'idx_job_postings_title' AND i.indisvalid""")
    assert sorted(r[0] for r in valid) == sorted(schemas)
    # A tenant created afterwards gets the index too, built inside its creation transaction.
    new = create_tenant("org_later").schema
    assert query(
        "SELECT count(*) FROM pg_indexes WHERE schemaname = %s "
        "AND indexname = 'idx_job_postings_title'",
        [new],
    ) == [(1,)]


def test_reader_holding_a_lock_makes_ddl_give_up_then_succeed(public_ready, sql_dir, settings):
    settings.TENANCY = {**settings.TENANCY, "LOCK_TIMEOUT_MS": 200, "LOCK_RETRIES": 1}
    schema = make_tenants(2)[0]
    add(sql_dir, "004_col.sql", "ALTER TABLE job_postings ADD COLUMN bonus numeric;\n")
    reader = connect()
    reader.autocommit = False
    reader.execute(f'SELECT count(*) FROM "{schema}".job_postings')  # holds ACCESS SHARE
    try:
        started = time.monotonic()
        report = runs.migrate(public=False)
        elapsed = time.monotonic() - started
    finally:
        reader.rollback()
        reader.close()
    assert report.exit_code == 1
    failed = {r.schema: r.error for r in report.failed}
    assert list(failed) == [schema] and "lock_timeout" in failed[schema]
    assert elapsed < 5  # gave up instead of queueing every query behind it
    assert "bonus" not in columns(schema, "job_postings")
    assert runs.migrate(public=False).exit_code == 0
    assert "bonus" in columns(schema, "job_postings")


def test_retry_succeeds_when_the_reader_goes_away(public_ready, sql_dir, settings):
    settings.TENANCY = {**settings.TENANCY, "LOCK_TIMEOUT_MS": 300, "LOCK_RETRIES": 5}
    schema = make_tenants(1)[0]
    add(sql_dir, "004_col.sql", "ALTER TABLE job_postings ADD COLUMN bonus numeric;\n")
    reader = connect()
    reader.autocommit = False
    reader.execute(f'SELECT count(*) FROM "{schema}".job_postings')
    timer = threading.Timer(0.5, reader.rollback)
    timer.start()
    try:
        report = runs.migrate(public=False)
    finally:
        timer.join()
        reader.close()
    assert report.exit_code == 0, report.failed
    assert "bonus" in columns(schema, "job_postings")


def test_rollback_undoes_exactly_what_was_applied(tenants5, sql_dir):
    add(sql_dir, "004_invoices.sql", POISONABLE.replace("IF EXISTS", "IF FALSE AND EXISTS"))
    applied_to = tenants5[:3]
    for schema in applied_to:
        assert run_command("migrate_tenants", "--tenant", schema)[0] == 0
    code, out, _ = run_command("migrate_tenants", "--rollback", "004", "--dry-run")
    assert code == 0 and "DROP TABLE invoices" in out
    assert all("invoices" in tables_in(s) for s in applied_to)
    code, out, err = run_command("migrate_tenants", "--rollback", "004")
    assert code == 0, err
    for schema in tenants5:
        assert "invoices" not in tables_in(schema)
        assert "invoice_note" not in columns(schema, "job_postings")
        assert ledger_versions(schema) == ["001", "002", "003"]
        assert "job_postings" in tables_in(schema)  # nothing else undone
    rolled = query(
        "SELECT details->'rolled_back' FROM public.audit_logs WHERE action = 'migrate.rollback'"
    )[0][0]
    assert rolled == {s: ["004"] for s in applied_to}


def test_rollback_refuses_where_no_rollback_sql_was_recorded(tenants5, sql_dir):
    add(sql_dir, "004_norollback.sql", "CREATE TABLE keep_me (id int);\n")
    assert run_command("migrate_tenants")[0] == 0
    code, _, err = run_command("migrate_tenants", "--rollback", "004", "--tenant", tenants5[0])
    assert code == 1 and "no rollback SQL recorded for 004_norollback.sql" in err
    assert "keep_me" in tables_in(tenants5[0]) and ledger_versions(tenants5[0])[-1] == "004"


def test_fake_and_baseline_record_without_running(public_ready, sql_dir):
    schema = make_tenants(1)[0]
    add(sql_dir, "004_a.sql", "CREATE TABLE fa (id int);\n")
    add(sql_dir, "005_b.sql", "CREATE TABLE fb (id int);\n")
    code, out, err = run_command("migrate_tenants", "--baseline", "004", "--tenants")
    assert code == 0, err
    assert ledger_versions(schema)[-1] == "004" and "fa" not in tables_in(schema)
    assert run_command("migrate_tenants", "--fake", "--tenants")[0] == 0
    assert ledger_versions(schema)[-1] == "005" and "fb" not in tables_in(schema)
    assert query("SELECT count(*) FROM public.audit_logs WHERE action = 'migrate.fake'") == [(2,)]


def test_reset_tracking_needs_one_tenant_and_is_audited(tenants5):
    code, _, err = run_command("migrate_tenants", "--reset-tracking", "--noinput")
    assert code == 1 and "exactly one --tenant" in err
    code, out, _ = run_command(
        "migrate_tenants", "--reset-tracking", "--tenant", tenants5[0], "--noinput"
    )
    assert code == 0 and "Deleted 3 ledger row(s)" in out
    assert ledger_versions(tenants5[0]) == [] and ledger_versions(tenants5[1]) != []
    assert query(
        "SELECT actor LIKE 'cli:%%', details->>'deleted_rows' FROM public.audit_logs "
        "WHERE action = 'migrate.reset_tracking'"
    ) == [(True, "3")]


def test_json_output_for_ci(tenants5, sql_dir):
    add(sql_dir, "004_notes.sql", "CREATE TABLE notes (id int);\n")
    code, out, _ = run_command("migrate_tenants", "--check", "--format", "json")
    assert code == 2
    doc = json.loads(out)
    assert doc["summary"]["pending_migrations"] == 5
    assert {p["schema"] for p in doc["plan"] if p["pending"]} == set(tenants5)
    code, out, _ = run_command("migrate_tenants", "--format", "json", "--jobs", "3")
    doc = json.loads(out)
    assert code == 0 and doc["summary"]["succeeded"] == 5
    assert {r["schema"]: r["versions"] for r in doc["results"]} == {s: ["004"] for s in tenants5}


def test_parallel_workers_migrate_every_schema_and_name_it_in_plain_output(public_ready, sql_dir):
    schemas = make_tenants(12)
    add(sql_dir, "004_notes.sql", "CREATE TABLE notes (id int);\n")
    code, out, err = run_command("migrate_tenants", "--tenants", "--jobs", "3")
    assert code == 0, err
    for schema in schemas:
        assert f"{schema}: succeeded (004)" in out
        assert "notes" in tables_in(schema)


def test_unknown_tenant_and_bad_schema_name_are_clear_errors(public_ready):
    code, _, err = run_command("migrate_tenants", "--tenant", "tenant_org_nobody")
    assert code == 1 and "Not a registered tenant schema: tenant_org_nobody" in err
    code, _, err = run_command("migrate_tenants", "--tenant", 'x"; DROP TABLE users; --')
    assert code == 1 and "Invalid schema name" in err


def test_placeholders_reach_sql_as_quoted_identifiers(public_ready, sql_dir):
    schema = make_tenants(1)[0]
    add(
        sql_dir,
        "004_grant.sql",
        "CREATE TABLE {{schema}}.reports (id int);\n"
        "GRANT SELECT ON {{schema}}.reports TO {{tenant_role}};\n",
    )
    code, out, err = run_command("migrate_tenants", "--tenants", "--verbose")
    assert code == 0, err
    with connect() as conn:  # this database's role: another test database has its own
        role = role_for_schema(schema, conn.info.dbname)
    assert f'CREATE TABLE "{schema}".reports' in out
    assert query("SELECT has_table_privilege(%s, %s, 'SELECT')", [role, f"{schema}.reports"]) == [
        (True,)
    ]


def test_public_failure_stops_before_tenants(tenants5, sql_dir):
    add(sql_dir, "090_broken.sql", "SELECT 1/0;\n", scope="public")
    add(sql_dir, "004_notes.sql", "CREATE TABLE notes (id int);\n")
    code, _, err = run_command("migrate_tenants")
    assert (
        code == 1
        and "public: 090_broken.sql: statement 1 of 1 (SELECT 1/0): division by zero" in err
    )
    assert all("notes" not in tables_in(s) for s in tenants5)


def test_failed_concurrent_index_is_reported_as_left_invalid(public_ready, sql_dir):
    schema = make_tenants(1)[0]
    with connect() as conn:
        conn.execute(
            f'INSERT INTO "{schema}".organizations (auth0_org_id, name) '
            "VALUES ('org_a', 'Same'), ('org_b', 'Same')"
        )
    add(
        sql_dir,
        "004_unique_name.sql",
        "CREATE UNIQUE INDEX CONCURRENTLY idx_org_name ON organizations (name);\n",
    )
    report = runs.migrate(public=False)
    assert report.exit_code == 1
    result = report.failed[0]
    assert result.invalid_indexes == ["idx_org_name"]
    assert "left INVALID: idx_org_name" in result.error
    assert ledger_versions(schema)[-1] == "003"


def test_workers_never_open_more_than_jobs_plus_one_connections(public_ready, sql_dir):
    make_tenants(12)
    add(sql_dir, "004_slowish.sql", "CREATE TABLE s (id int);\nSELECT pg_sleep(0.05);\n")
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        with connect() as conn:
            while not stop.is_set():
                n = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                ).fetchone()[0]
                peak = max(peak, n)
                time.sleep(0.01)

    # Every other connection of this process closed: what the sampler sees is the run's.
    close_idle()
    django_connection.close()
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        report = runs.migrate(jobs=3)  # public too: Django's migration check included
    finally:
        stop.set()
        sampler.join()
    assert report.exit_code == 0 and len(report.results) == 12
    assert 3 <= peak <= 4  # 3 workers + the coordinator


def test_progress_bar_on_a_terminal(tenants5, sql_dir):
    from io import StringIO

    from django.core.management.base import OutputWrapper
    from django.core.management.color import no_style

    from tenancy.management.output import Progress

    add(sql_dir, "004_notes.sql", "CREATE TABLE notes (id int);\n")
    buffer = StringIO()
    progress = Progress(
        OutputWrapper(buffer), no_style(), total=5, verbosity=1, show_sql=False, tty=True
    )
    assert runs.migrate(public=False, on_event=progress).exit_code == 0
    text = buffer.getvalue()
    assert "[" + "#" * 30 + "] 5/5  failed 0" in text and "ETA" in text
    assert "\r" in text  # redrawn in place, not one line per schema


def test_bad_arguments_exit_1_not_the_pending_code(public_ready):
    proc = manage("migrate_tenants", "--check", "--jobs", "0")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "--jobs/-j: must be 1 or more, not 0" in err


def test_an_unexpected_error_fails_that_schema_and_the_run_goes_on(tenants5, sql_dir, monkeypatch):
    from tenancy.engine import executor

    add(sql_dir, "004_notes.sql", "CREATE TABLE notes (id int);\n")
    real = executor.apply_in_transaction
    broken = tenants5[1]

    def flaky(conn, schema, *args, **kwargs):
        if schema == broken:
            raise RuntimeError("boom")
        return real(conn, schema, *args, **kwargs)

    monkeypatch.setattr(executor, "apply_in_transaction", flaky)
    report = runs.migrate(public=False, jobs=2)
    assert report.exit_code == 1
    assert [(r.schema, r.error) for r in report.failed] == [(broken, "RuntimeError: boom")]
    assert ledger_versions(broken)[-1] == "003" and "notes" not in tables_in(broken)
    assert all("notes" in tables_in(s) for s in tenants5 if s != broken)
    assert query("SELECT status FROM public.tenant_migration_runs ORDER BY id DESC LIMIT 1") == [
        ("failed",)
    ]


def test_a_run_records_each_schema_as_it_goes_and_once(public_ready):
    """The admin's live page and an interrupted run's counts read these rows."""
    from tenancy.engine.executor import SchemaResult
    from tenancy.services import run_records

    with connect() as conn:
        run_id = run_records.start_run(conn, "migrate", "test", {}, 2)
        recorder = run_records.Recorder(conn, run_id, 2)
        failed = SchemaResult("tenant_org_a1", "failed", error="boom")
        recorder.on_result(failed)  # the first is saved at once
        rows = (
            "SELECT tenant_schema, status, error FROM tenant_migration_run_results "
            "WHERE run_id = %s"
        )
        assert query(rows, [run_id]) == [("tenant_org_a1", "failed", "boom")]
        done = SchemaResult("tenant_org_b1", "succeeded", ["001"])
        recorder.on_result(done)  # the last is saved at once too
        run_records.finish_run(conn, run_id, [failed, done], status="failed")
    assert sorted(query(rows, [run_id])) == [
        ("tenant_org_a1", "failed", "boom"),
        ("tenant_org_b1", "succeeded", None),
    ]


def test_public_files_may_grant_to_the_owner_group_on_a_fresh_database(pg, sql_dir):
    """The owner group (and the app role) exist before public files run, though no tenant
    has made them yet: a shared table tenants point to is granted to it."""
    (sql_dir / "public" / "003_job_categories.sql").write_text(
        "-- UP\nCREATE TABLE public.job_categories (id int PRIMARY KEY);\n"
        "GRANT SELECT, REFERENCES ON public.job_categories TO {{owner_group}};\n"
        "-- DOWN\nDROP TABLE public.job_categories;\n"
    )
    code, out, err = run_command("migrate_tenants", "--public")
    assert code == 0, out + err
    from tenancy.engine.names import owner_group_role

    with connect() as conn:
        group = owner_group_role(conn.info.dbname)
    granted = query(
        "SELECT has_table_privilege(%s, 'public.job_categories', 'REFERENCES')", [group]
    )
    assert granted == [(True,)]
