"""The run tables (``tenant_migration_runs``, ``tenant_migration_run_results``): the one
module that writes them. A run is queued (the admin), started, kept current while it runs
(progress and a heartbeat), and finished or marked interrupted; whoever looks next closes
the runs whose process died. The ORM reads these tables; nothing else writes them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from tenancy import conf
from tenancy.engine import audit, db
from tenancy.engine.errors import Interrupted
from tenancy.engine.executor import SchemaResult
from tenancy.services import alerts
from tenancy.services.infrastructure import connect, infrastructure_ready


class Recorder:
    """Keeps the run's row and its per-schema results current while it runs (for the
    admin's live run page, and so that an interrupted run's failures are on record), at
    most every half second."""

    def __init__(self, conn: psycopg.Connection, run_id: int, total: int):
        self.conn, self.run_id, self.total = conn, run_id, total
        self.done = self.failed = 0
        self._last = 0.0
        self._unsaved: list[SchemaResult] = []

    def on_result(self, result: SchemaResult) -> None:
        self.done += 1
        self.failed += result.failed
        if result.status != "skipped":
            self._unsaved.append(result)
        now = time.monotonic()
        if now - self._last >= 0.5 or self.done == self.total:
            self._last = now
            self.flush()

    def flush(self) -> None:
        unsaved, self._unsaved = self._unsaved, []
        with self.conn.transaction():
            _save_results(self.conn, self.run_id, unsaved)
            self.conn.execute(
                "UPDATE public.tenant_migration_runs SET done_schemas = %s, "
                "failed_schemas = %s, heartbeat_at = now() WHERE id = %s",
                [self.done, self.failed, self.run_id],
            )


def _save_results(conn: psycopg.Connection, run_id: int, results: list[SchemaResult]) -> None:
    """The per-schema rows of ``results`` not saved yet (a schema has one row per run)."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO public.tenant_migration_run_results "
            "(run_id, tenant_schema, status, versions, error, duration_ms) "
            "SELECT %s, %s, %s, %s, %s, %s WHERE NOT EXISTS (SELECT 1 FROM "
            "public.tenant_migration_run_results WHERE run_id = %s AND tenant_schema = %s)",
            [
                (run_id, r.schema, r.status, Jsonb(r.versions), r.error, r.duration_ms)
                + (run_id, r.schema)
                for r in results
            ],
        )


HEARTBEAT_S = 10.0  # a running run touches its row this often


DEAD_AFTER_S = 60  # ... and is taken for dead when it has not for this long


def close_dead_runs(conn: psycopg.Connection) -> int:
    """Mark 'interrupted' the runs whose process is gone: its backend has left (a direct
    connection tells at once) or its heartbeat stopped. Their schemas were rolled back by
    the server; the count of schemas done is read from the ledger rows they wrote."""
    cur = conn.execute(
        """
        UPDATE public.tenant_migration_runs r
           SET status = 'interrupted', finished_at = now(),
               error = 'the process running it stopped before it finished',
               done_schemas = (SELECT count(DISTINCT tenant_schema)
                                 FROM public.tenant_migrations WHERE run_id = r.id),
               failed_schemas = (SELECT count(*) FROM public.tenant_migration_run_results
                                  WHERE run_id = r.id AND status = 'failed')
         WHERE status = 'running'
           AND (coalesce(heartbeat_at, started_at) < now() - make_interval(secs => %s)
                OR (backend_pid IS NOT NULL
                    AND backend_pid NOT IN (SELECT pid FROM pg_stat_activity)))
        RETURNING id
        """,
        [DEAD_AFTER_S],
    )
    closed = [row[0] for row in cur.fetchall()]
    alerts.runs_closed(conn, closed)
    return len(closed)


def close_dead_runs_now() -> int:
    """``close_dead_runs`` on a connection of its own (status pages, a starting worker)."""
    with connect() as conn:
        if not infrastructure_ready(conn):
            return 0
        return close_dead_runs(conn)


@contextmanager
def heartbeat(conn: psycopg.Connection, run_id: int) -> Iterator[None]:
    """Touch the run's row every HEARTBEAT_S while the block runs (psycopg connections are
    thread-safe: the recorder shares this one)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                conn.execute(
                    "UPDATE public.tenant_migration_runs SET heartbeat_at = now() WHERE id = %s",
                    [run_id],
                )
            except psycopg.Error:
                return  # the coordinator's connection is gone: so is the run

    thread = threading.Thread(target=beat, name=f"run-{run_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextmanager
def interruptible(run_id: int) -> Iterator[None]:
    """A run stopped by a signal (or any BaseException) is recorded as interrupted, on a
    connection of its own: the coordinator's may have been cut mid-statement."""
    try:
        yield
    except BaseException as exc:
        reason = f"signal {exc.signum}" if isinstance(exc, Interrupted) else type(exc).__name__
        with db.connect(conf.conninfo()) as conn:
            interrupt_run(conn, run_id, f"interrupted by {reason}; a re-run finishes it")
        raise


def interrupt_run(conn: psycopg.Connection, run_id: int, error: str) -> None:
    """Counts from what is on record: the ledger rows the run wrote (schemas done) and its
    recorded failures; schemas cut off by the interruption were rolled back, not failed."""
    conn.execute(
        "UPDATE public.tenant_migration_runs r SET status = 'interrupted', finished_at = now(), "
        "error = %s, done_schemas = (SELECT count(DISTINCT tenant_schema) "
        "FROM public.tenant_migrations WHERE run_id = r.id), failed_schemas = (SELECT count(*) "
        "FROM public.tenant_migration_run_results WHERE run_id = r.id AND status = 'failed') "
        "WHERE id = %s",
        [error, run_id],
    )
    alerts.runs_closed(conn, [run_id])


def queue_run(
    *, actor: str, options: dict[str, Any], total: int, enqueue: Callable[[int], str]
) -> int:
    """Record a queued run and hand it to the worker (``enqueue(run_id)`` returns the job
    id) in one transaction of Django's connection, where the job queue lives: the worker
    never picks up a job whose run row it cannot see."""
    from django.db import connection, transaction

    with transaction.atomic():
        connection.ensure_connection()
        conn = connection.connection
        row = conn.execute(
            "INSERT INTO public.tenant_migration_runs (kind, actor, status, options, "
            "total_schemas) VALUES ('migrate', %s, 'queued', %s, %s) RETURNING id",
            [actor, Jsonb(options), total],
        ).fetchone()
        run_id = int(row[0])
        job_id = enqueue(run_id)
        conn.execute(
            "UPDATE public.tenant_migration_runs SET options = options || %s WHERE id = %s",
            [Jsonb({"job_id": job_id}), run_id],
        )
        audit.write(
            conn,
            "migrate.queued",
            actor=actor,
            details={**options, "run_id": run_id, "job_id": job_id},
        )
    return run_id


def fail_queued_run(run_id: int, actor: str, error: str) -> None:
    """Close a run that could not start (no infrastructure, a tenant dropped since it was
    queued, an unreadable file), and say so in the audit log."""
    with connect() as conn:
        with conn.transaction():
            closed = conn.execute(
                "UPDATE public.tenant_migration_runs SET status = 'failed', error = %s, "
                "finished_at = now() WHERE id = %s AND status IN ('queued', 'running')",
                [error, run_id],
            ).rowcount
            if closed:
                details = {"run_id": run_id, "outcome": "failed", "error": error}
                audit.write(conn, "migrate.run", actor=actor, details=details)
        alerts.runs_closed(conn, [run_id] if closed else [])


def start_run(
    conn: psycopg.Connection,
    kind: str,
    actor: str,
    options: dict[str, Any],
    total: int,
    run_id: int | None = None,
) -> int:
    close_dead_runs(conn)
    # Through a transaction pooler the backend is anyone's: only the heartbeat tells.
    pid = sql.SQL("NULL" if conf.engine_through_transaction_pooler() else "pg_backend_pid()")
    if run_id is not None:
        conn.execute(
            sql.SQL(
                "UPDATE public.tenant_migration_runs SET status = 'running', started_at = now(), "
                "heartbeat_at = now(), total_schemas = %s, backend_pid = {} WHERE id = %s"
            ).format(pid),
            [total, run_id],
        )
        return run_id
    row = conn.execute(
        sql.SQL(
            "INSERT INTO public.tenant_migration_runs (kind, actor, options, total_schemas, "
            "backend_pid, heartbeat_at) VALUES (%s, %s, %s, %s, {}, now()) RETURNING id"
        ).format(pid),
        [kind, actor, Jsonb(options), total],
    ).fetchone()
    assert row is not None
    return int(row[0])


def finish_run(
    conn: psycopg.Connection,
    run_id: int,
    results: list[SchemaResult],
    *,
    status: str,
    error: str | None = None,
) -> None:
    touched = [r for r in results if r.status != "skipped"]
    with conn.transaction():
        _save_results(conn, run_id, touched)
        conn.execute(
            "UPDATE public.tenant_migration_runs SET status = %s, error = %s, finished_at = now(),"
            " done_schemas = %s, failed_schemas = %s WHERE id = %s",
            [status, error, len(results), sum(r.failed for r in results), run_id],
        )
    alerts.runs_closed(conn, [run_id])  # committed: whoever the alert reaches sees it
