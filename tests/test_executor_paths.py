"""The executor's one apply path: a schema's lock and ledger read in the BEGIN round trip,
a session-level lock only when a file must run outside a transaction (held from inside the
first transaction to the last segment), the ledger re-read under the lock, --fake, a
transaction-mode pooler, and a schema another run holds."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest

from tenancy import conf
from tenancy.engine import db
from tenancy.engine.executor import NEEDS_SESSION, Event, Executor
from tenancy.engine.source import TENANT, discover
from tenancy.services.tenants import create_tenant
from tests.conftest import connect, ledger_versions, query, tables_in


@pytest.fixture
def tenants(public_ready: None, sql_dir: Path) -> list[str]:
    return [create_tenant(org).schema for org in ("org_exec1", "org_exec2")]


def add(sql_dir: Path, name: str, up: str) -> None:
    path = sql_dir / "tenant" / name
    path.write_text(f"-- UP: Apply migration\n{up}\n-- DOWN: Rollback migration\nSELECT 1;\n")


def add_three(sql_dir: Path) -> list[str]:
    """A transactional file, one that cannot run in a transaction, a transactional one."""
    base = max(m.number for m in discover(sql_dir, TENANT))
    names = [f"{base + i:03d}" for i in (1, 2, 3)]
    add(sql_dir, f"{names[0]}_notes.sql", "CREATE TABLE notes (id int, body text);")
    add(sql_dir, f"{names[1]}_idx.sql", "CREATE INDEX CONCURRENTLY idx_notes_body ON notes (body);")
    add(sql_dir, f"{names[2]}_more.sql", "ALTER TABLE notes ADD COLUMN extra int;")
    return names


def drop_after(sql_dir: Path, version: str) -> None:
    for path in (sql_dir / "tenant").glob("*.sql"):
        if path.name[:3] > version:
            path.unlink()


def run(sql_dir: Path, schemas: list[str], on_event=None, **options) -> list:
    migrations = discover(sql_dir, TENANT)
    executor = Executor(conf.conninfo(), conf.engine_options(**options), on_event)
    return executor.migrate((s, migrations, migrations) for s in schemas)


def lock_free(schema: str) -> bool:
    """Whether another session could take the schema's lock now."""
    with connect() as conn:
        free = db.try_lock(conn, schema)
        if free:
            db.unlock(conn, schema)
        return free


def test_mixed_files_hold_the_session_lock_between_transactions(tenants, sql_dir):
    names = add_three(sql_dir)
    seen: list[tuple[str, str | None, bool]] = []

    def on_event(event: Event) -> None:
        if event.kind == "sql" and event.migration is not None:
            # Between the first transaction's COMMIT and the file run alone, and before
            # the last transaction: no other run can take the schema.
            seen.append((event.schema, event.migration.version, lock_free(event.schema)))

    results = run(sql_dir, tenants, on_event)
    assert [(r.status, r.versions) for r in results] == [("succeeded", names)] * 2
    assert seen and not any(free for *_, free in seen)
    for schema in tenants:
        assert ledger_versions(schema)[-3:] == names
        assert lock_free(schema)  # released at the end
    indexes = "SELECT count(*) FROM pg_indexes WHERE indexname = %s AND schemaname = ANY(%s)"
    assert query(indexes, ["idx_notes_body", tenants]) == [(2,)]


def test_the_ledger_is_read_again_under_the_lock(tenants, sql_dir):
    names = add_three(sql_dir)[:1]
    drop_after(sql_dir, names[0])  # only the transactional one
    first, second = tenants
    # Another run applied it to the first schema after the plan was made.
    migrations = discover(sql_dir, TENANT)
    Executor(conf.conninfo(), conf.engine_options(), None).migrate(
        [(first, migrations, migrations)]
    )
    results = {r.schema: r for r in run(sql_dir, tenants)}
    assert results[first].status == "skipped" and results[first].versions == []
    assert results[second].status == "succeeded" and results[second].versions == names


def test_fake_records_every_file_without_running_it(tenants, sql_dir):
    names = add_three(sql_dir)
    results = run(sql_dir, tenants, fake=True, transaction_pooler=True)
    assert [(r.status, r.versions) for r in results] == [("succeeded", names)] * 2
    for schema in tenants:
        assert ledger_versions(schema)[-3:] == names
        assert "notes" not in tables_in(schema)


def test_a_transaction_pooler_refuses_files_run_alone(tenants, sql_dir):
    names = add_three(sql_dir)
    results = run(sql_dir, tenants, transaction_pooler=True)
    assert [(r.status, r.error) for r in results] == [("failed", NEEDS_SESSION)] * 2
    for schema in tenants:
        assert names[0] not in ledger_versions(schema) and "notes" not in tables_in(schema)
    drop_after(sql_dir, names[0])
    results = run(sql_dir, tenants, transaction_pooler=True)
    assert [(r.status, r.versions) for r in results] == [("succeeded", names[:1])] * 2


@pytest.mark.parametrize("level", ["session", "transaction"])
def test_a_schema_another_run_holds_waits_for_it(tenants, sql_dir, level):
    names = add_three(sql_dir)
    if level == "transaction":
        # An open transaction elsewhere makes CREATE INDEX CONCURRENTLY wait for it: keep
        # only the transactional file.
        drop_after(sql_dir, names[0])
        names = names[:1]
    held, other = tenants
    holder = connect()
    if level == "transaction":
        holder.execute("BEGIN")
        holder.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [db.LOCK_NAMESPACE, held])
    else:
        db.try_lock(holder, held)
    try:
        results = {r.schema: r for r in run(sql_dir, tenants, schema_lock_wait_s=0.3)}
        assert results[held].status == "failed" and "held the lock" in (results[held].error or "")
        assert names[0] not in ledger_versions(held)
        assert results[other].versions == names
        timer = threading.Timer(0.3, holder.close)
        timer.start()
        results = {r.schema: r for r in run(sql_dir, [held], schema_lock_wait_s=30)}
        timer.join()
        assert results[held].versions == names
    finally:
        holder.close()


def test_worker_connections_prepare_nothing(tenants, sql_dir):
    executor = Executor(conf.conninfo(), conf.engine_options(), None)
    conn = executor._connect()
    try:
        assert conn.prepare_threshold is None
        assert isinstance(conn, psycopg.Connection) and conn.autocommit
    finally:
        conn.close()
