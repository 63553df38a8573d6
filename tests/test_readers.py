"""Readers first: while a migration's DDL waits for a table lock behind a long transaction,
the readers that arrive after it queue behind its request. With the default short
``lock_timeout`` and jittered retries, none of them waits much longer than lock_timeout."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tenancy import conf
from tenancy.engine.executor import RETRY_BASE_S, RETRY_CAP_S, retry_delay
from tenancy.services.tenants import create_tenant
from tests.conftest import connect, manage, query

# The README's bound: a reader waits at most lock_timeout (500 ms by default), plus 300 ms
# for the reader's own query and scheduling on a busy machine.
READER_BOUND_S = 0.5 + 0.3
BLOCKED_S = 2.5  # how long the long transaction keeps the migration waiting

WAITING_DDL = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND wait_event_type = 'Lock' AND query LIKE '%%ADD COLUMN bonus%%'
"""


class Reader(threading.Thread):
    """Runs a short SELECT on the table over and over, timing each."""

    def __init__(self, table: str):
        super().__init__(daemon=True)
        self.table = table
        self.waits: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with connect() as conn:
            conn.execute("SET lock_timeout = '30s'")  # never hang the suite
            while not self.stop.is_set():
                started = time.monotonic()
                conn.execute(f"SELECT count(*) FROM {self.table}")
                self.waits.append(time.monotonic() - started)
                time.sleep(0.02)


def wait_until_ddl_waits(timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while query(WAITING_DDL)[0][0] == 0:
        assert time.monotonic() < deadline, "the migration never waited for the lock"
        time.sleep(0.02)


def test_readers_wait_at_most_lock_timeout_while_ddl_waits_behind_a_long_transaction(
    public_ready: None, sql_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The migration runs with the defaults, whatever this shell exports.
    monkeypatch.delenv("TENANCY_LOCK_TIMEOUT_MS", raising=False)
    monkeypatch.delenv("TENANCY_LOCK_RETRIES", raising=False)
    schema = create_tenant("org_readers").schema
    table = f'"{schema}".job_postings'
    (sql_dir / "tenant" / "004_bonus.sql").write_text(
        "ALTER TABLE job_postings ADD COLUMN bonus numeric;\n"
    )
    blocker = connect()
    blocker.autocommit = False
    blocker.execute(f"SELECT count(*) FROM {table}")  # a reader that stays: ACCESS SHARE
    reader = Reader(table)
    proc = manage("migrate_tenants", "--tenants", migrations_dir=sql_dir)
    try:
        wait_until_ddl_waits()
        reader.start()
        time.sleep(BLOCKED_S)
    finally:
        blocker.rollback()
        blocker.close()
    out, err = proc.communicate(timeout=120)
    reader.stop.set()
    reader.join(timeout=30)
    longest = max(reader.waits)
    measured = f"{len(reader.waits)} reads, longest {longest * 1000:.0f} ms"
    assert proc.returncode == 0, out + err
    assert "lock_timeout, retry" in out, out  # it completed on a retry
    assert longest < READER_BOUND_S, measured
    # The reader did queue behind the migration's request: the bound was exercised.
    assert longest > 0.1, measured
    assert query(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = %s "
        "AND table_name = 'job_postings' AND column_name = 'bonus'",
        [schema],
    ) == [(1,)]


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 10, 30])
def test_retry_delay_is_jittered_and_capped(attempt: int) -> None:
    ceiling = min(RETRY_CAP_S, RETRY_BASE_S * 2 ** (attempt - 1))
    delays = {retry_delay(attempt) for _ in range(50)}
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(delays) > 1  # random: retries of several runs do not line up


def test_default_patience_stays_near_the_old_one() -> None:
    """Old default: 4 waits of 5 s and pauses of 0.25, 0.5, 1 s, ~22 s in all."""
    retries = conf.setting("LOCK_RETRIES")
    waits = (retries + 1) * conf.setting("LOCK_TIMEOUT_MS") / 1000
    ceilings = [min(RETRY_CAP_S, RETRY_BASE_S * 2 ** (a - 1)) for a in range(1, retries + 1)]
    assert 12 <= waits + sum(ceilings) / 2 and waits + sum(ceilings) <= 30
