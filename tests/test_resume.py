"""Non-transactional files finish on a re-run: a concurrent index an interrupted run built
is recognised, one it left INVALID is rebuilt; non-transactional DOWNs roll back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tenancy.engine import statements
from tenancy.services import runs
from tenancy.services.tenants import create_tenant
from tests.conftest import connect, ledger_versions, manage, query, run_command

BIG_TABLE = """-- Description: a big narrow table
CREATE TABLE big_table (id int NOT NULL);
"""
# md5() makes each row's key cost something: ~2 s to build on a million rows.
BIG_INDEX = """-- Description: an index that takes a while to build
CREATE INDEX CONCURRENTLY idx_big ON big_table (md5(id::text));
-- DOWN
/* DROP INDEX CONCURRENTLY IF EXISTS idx_big; */
"""
ROWS = 1_000_000
ALL_VERSIONS = ["001", "002", "003", "004", "005"]

# The backend building idx_big, once its catalog entry exists (INVALID until it is done).
BUILDING = """
SELECT p.pid FROM pg_stat_progress_create_index p JOIN pg_class c ON c.oid = p.index_relid
WHERE p.datname = current_database() AND c.relname = 'idx_big'
  AND p.phase LIKE 'building index%%'
"""


def add(sql_dir: Path, name: str, text: str) -> None:
    (sql_dir / "tenant" / name).write_text(text)


def wait_for(probe: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"not seen within {timeout} s")


def building_pid() -> int | None:
    rows = query(BUILDING)
    return rows[0][0] if rows else None


def index_validity(schema: str, name: str) -> list[bool]:
    return [
        r[0]
        for r in query(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
            "AND c.relname = %s",
            [schema, name],
        )
    ]


@pytest.fixture
def big_tenant(public_ready: None, sql_dir: Path) -> str:
    """One tenant with big_table (created by a migration, so owned by the tenant's owner
    role) filled with a million rows, and the index file pending."""
    schema = create_tenant("org_big").schema
    add(sql_dir, "004_big_table.sql", BIG_TABLE)
    assert run_command("migrate_tenants", "--tenants")[0] == 0
    with connect() as conn:
        conn.execute(
            f'INSERT INTO "{schema}".big_table SELECT generate_series(1, {ROWS}); '
            f'ANALYZE "{schema}".big_table'
        )
    add(sql_dir, "005_idx_big.sql", BIG_INDEX)
    return schema


def test_a_run_killed_during_a_concurrent_index_build_is_finished_by_a_rerun(
    big_tenant: str, sql_dir: Path
) -> None:
    proc = manage("migrate_tenants", "--tenants", migrations_dir=sql_dir)
    try:
        wait_for(building_pid)
    finally:
        proc.kill()  # SIGKILL: no ledger row, while the server goes on building
        proc.communicate(timeout=30)
    assert ledger_versions(big_tenant)[-1] == "004"
    rerun = manage("migrate_tenants", "--tenants", migrations_dir=sql_dir)
    out, err = rerun.communicate(timeout=120)
    # Without the catalog check: 'relation "idx_big" already exists'.
    assert rerun.returncode == 0, out + err
    assert ledger_versions(big_tenant) == ALL_VERSIONS
    assert index_validity(big_tenant, "idx_big") == [True]
    # The orphaned backend finishes the build (it learns of the dead client only when it
    # answers), so the re-run normally finds it VALID; cut short, it would be INVALID.
    assert (
        f"{big_tenant}: index idx_big exists already and is VALID" in out
        or f"{big_tenant}: index idx_big was left INVALID by an earlier attempt" in out
    ), out


def test_a_terminated_build_names_the_invalid_index_and_a_rerun_rebuilds_it(
    big_tenant: str, sql_dir: Path
) -> None:
    def terminate() -> None:
        pid = wait_for(building_pid)
        query("SELECT pg_terminate_backend(%s)", [pid])

    terminator = threading.Thread(target=terminate)
    terminator.start()
    try:
        code, out, err = run_command("migrate_tenants", "--tenants")
    finally:
        terminator.join()
    assert code == 1
    # Named although the run's own connection died with its backend: asked on a fresh one.
    assert "terminating connection due to administrator command" in err, err
    assert "left INVALID: idx_big; a re-run builds idx_big again" in err, err
    assert index_validity(big_tenant, "idx_big") == [False]
    assert ledger_versions(big_tenant)[-1] == "004"

    rerun = manage("migrate_tenants", "--tenants", migrations_dir=sql_dir)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, out + err
    assert f"{big_tenant}: index idx_big was left INVALID by an earlier attempt" in out, out
    assert ledger_versions(big_tenant) == ALL_VERSIONS
    assert index_validity(big_tenant, "idx_big") == [True]


def test_a_build_cut_by_lock_timeout_is_rebuilt_even_with_if_not_exists(
    public_ready: None, sql_dir: Path, settings: Any
) -> None:
    """A concurrent build waits for every writer of its table; cut off by lock_timeout,
    it leaves an INVALID index, which IF NOT EXISTS would then silently keep."""
    settings.TENANCY = {**settings.TENANCY, "LOCK_TIMEOUT_MS": 200, "LOCK_RETRIES": 2}
    schema = create_tenant("org_writer").schema
    add(
        sql_dir,
        "004_title_index.sql",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_title ON job_postings (title);\n",
    )
    writer = connect()
    writer.autocommit = False
    writer.execute(  # an open write: ROW EXCLUSIVE on job_postings until it ends
        f'INSERT INTO "{schema}".job_postings (title) SELECT %s WHERE false', ["x"]
    )
    # Patience for a concurrent build: 200 ms x 3 = 600 ms, then a retry; the writer ends
    # after 1 s, while the retry's DROP INDEX CONCURRENTLY waits for it.
    timer = threading.Timer(1.0, writer.rollback)
    timer.start()
    events: list[Any] = []
    try:
        report = runs.migrate(public=False, on_event=events.append)
    finally:
        timer.join()
        writer.close()
    assert report.exit_code == 0, report.failed
    assert index_validity(schema, "idx_title") == [True]
    assert ledger_versions(schema)[-1] == "004"
    assert [e.message for e in events if e.kind == "retry"][:1] == ["lock_timeout, retry 1"]
    assert report.results[0].notes == [
        "index idx_title was left INVALID by an earlier attempt: dropped, building it again"
    ]


def test_rollback_runs_a_concurrent_down_outside_a_transaction(
    public_ready: None, sql_dir: Path
) -> None:
    schema = create_tenant("org_down").schema
    add(
        sql_dir,
        "004_title_index.sql",
        "CREATE INDEX CONCURRENTLY idx_title ON job_postings (title);\n"
        "-- DOWN\n/* DROP INDEX CONCURRENTLY IF EXISTS idx_title; */\n",
    )
    add(
        sql_dir,
        "005_bonus.sql",
        "ALTER TABLE job_postings ADD COLUMN bonus numeric;\n"
        "-- DOWN\n/* ALTER TABLE job_postings DROP COLUMN bonus; */\n",
    )
    assert run_command("migrate_tenants", "--tenants")[0] == 0
    assert index_validity(schema, "idx_title") == [True]
    # Newest first: 005 in a transaction, then 004's DOWN alone, statement by statement.
    code, out, err = run_command("migrate_tenants", "--rollback", "004")
    # Without it: "DROP INDEX CONCURRENTLY cannot run inside a transaction block".
    assert code == 0, err
    assert index_validity(schema, "idx_title") == []
    assert ledger_versions(schema) == ["001", "002", "003"]
    assert not query(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = %s "
        "AND table_name = 'job_postings' AND column_name = 'bonus'",
        [schema],
    )
    # The owner role is the session's only while the DOWN runs: nothing is left over.
    assert run_command("migrate_tenants", "--tenants")[0] == 0
    assert index_validity(schema, "idx_title") == [True]


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("CREATE INDEX CONCURRENTLY idx_a ON t (a)", statements.IndexTarget("idx_a", '"t"')),
        (
            'CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "Idx" ON "S".t (a)',
            statements.IndexTarget("Idx", '"S"."t"'),
        ),
        ("CREATE INDEX CONCURRENTLY ON t (a)", None),  # unnamed: not resumable
        ("CREATE INDEX idx_a ON t (a)", None),  # in a transaction: nothing to resume
        ("DROP INDEX CONCURRENTLY idx_a", None),
    ],
)
def test_concurrent_index_target(statement: str, expected: Any) -> None:
    assert statements.concurrent_index(statement) == expected
