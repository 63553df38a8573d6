"""The executor: applies (or rolls back) per schema, under that schema's advisory lock.

Rules it keeps:
- one transaction per schema for its pending transactional files: a failure leaves that
  schema as it was, and never one transaction across schemas (lock slots run out);
- the ledger is re-read under the lock, so two runs never apply a (schema, version) twice;
- a file that cannot run in a transaction runs alone, statement by statement;
- DDL waits at most ``lock_timeout`` for a table lock, then the schema is retried: a
  short wait, retried often, so that readers queued behind the DDL's lock request wait
  at most ``lock_timeout`` at a time;
- a concurrent index an interrupted run built (or left INVALID) is recognised (or
  rebuilt) when its file runs again;
- ``jobs`` workers, each with its own connection.
"""

from __future__ import annotations

import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg import errors, sql
from psycopg_pool import ConnectionPool

from tenancy.engine import db, ledger, ownership, rules, statements
from tenancy.engine.errors import Interrupted
from tenancy.engine.names import (
    PUBLIC_SCHEMA,
    app_role,
    owner_group_role,
    owner_role_for_schema,
    role_for_schema,
)
from tenancy.engine.plan import plan_schema
from tenancy.engine.source import Migration, Ran, RunnerError


@dataclass
class Options:
    jobs: int = 1
    fail_fast: bool = False
    # Start no further schema once more than this many have failed (a rollout's threshold;
    # None: no limit). fail_fast is the same with 0.
    max_failures: int | None = None
    lock_timeout_ms: int = 500
    lock_retries: int = 10
    schema_lock_wait_s: float = 600.0
    actor: str = "system"
    run_id: int | None = None
    fake: bool = False
    # The connections go through a transaction-mode pooler: no session-level locks.
    transaction_pooler: bool = False
    # Called once per schema that has pending files, before any of them runs: see
    # ``BeforeSchema``. None: nothing is called.
    before_schema: BeforeSchema | None = None


# (the worker's connection, in the schema's first transaction under its lock; the schema;
# its pending files) -> a note for the schema's result, or None. An exception fails the
# schema with its message, before anything changed (migrate_tenants --backup-dir).
BeforeSchema = Callable[[psycopg.Connection, str, list[Migration]], "str | None"]


NEEDS_SESSION = (
    "needs a session-level advisory lock, which a transaction-mode pooler would lose "
    "between transactions; refused, nothing changed"
)


@dataclass
class SchemaResult:
    schema: str
    status: str  # succeeded | failed | skipped | interrupted (cut off by a signal, rolled back)
    versions: list[str] = field(default_factory=list)
    error: str | None = None
    duration_ms: int = 0
    invalid_indexes: list[str] = field(default_factory=list)
    # What the run found and dealt with on its way, e.g. an index an interrupted run built.
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status == "failed"


@dataclass
class Event:
    kind: str  # schema_started | sql | migration_applied | schema_finished | retry | notice
    schema: str
    result: SchemaResult | None = None
    migration: Migration | None = None
    sql: str | None = None
    message: str | None = None


EventHandler = Callable[[Event], None]
_T = TypeVar("_T")


class MigrationError(Exception):
    def __init__(self, migration: Migration | None, message: str):
        prefix = f"{migration.name}: " if migration else ""
        super().__init__(prefix + message)
        self.migration = migration


@dataclass
class _Item:
    schema: str
    payload: Any
    busy_since: float | None = None
    not_before: float = 0.0
    delay: float = 0.02


@dataclass
class _SchemaState:
    """One schema's migration in progress, across its transactions and lock retries."""

    ids: dict[str, str]  # the placeholders' values
    status: str = "succeeded"
    error: str | None = None
    versions: list[str] = field(default_factory=list)  # committed so far
    started: bool = False  # schema_started was emitted
    session_locked: bool = False  # the connection holds the schema's session-level lock
    prepared: bool = False  # Options.before_schema was called (once, not on lock retries)
    notes: list[str] = field(default_factory=list)


# A per-schema task: (connection, schema, payload) -> its result, or None when another run
# holds the schema's lock (then it is tried again later).
_Task = Callable[[psycopg.Connection, str, Any], "SchemaResult | None"]


def placeholders(schema: str, database: str) -> dict[str, str]:
    values = {
        "schema": schema,
        "app_role": app_role(database),
        "owner_group": owner_group_role(database),
    }
    if schema != PUBLIC_SCHEMA:
        values["tenant_role"] = role_for_schema(schema, database)
    return values


KEPT_WAIT_S = 30.0  # how long a worker waits for a kept connection (PoolTimeout after)


@contextmanager
def kept_workers(conninfo: db.ConnInfo, jobs: int) -> Iterator[ConnectionPool]:
    """Worker connections kept open across several runs in a row (a staged rollout's
    stages), so that each run does not open and warm up new ones. A connection carries no
    tenant state between schemas (each schema's context is its transaction's), so between
    runs neither; the pool hands out only a connection that answers, and takes back only
    a healthy one outside a transaction."""
    pool = ConnectionPool(
        kwargs={**dict(conninfo), "autocommit": True},
        min_size=0,
        max_size=max(1, jobs),
        open=True,
        check=ConnectionPool.check_connection,
        name="tenancy-workers",
    )
    try:
        yield pool
    finally:
        pool.close()


class Executor:
    """Runs a per-schema task over many schemas with ``jobs`` workers."""

    def __init__(
        self,
        conninfo: db.ConnInfo,
        options: Options,
        on_event: EventHandler | None,
        *,
        kept: ConnectionPool | None = None,
    ):
        self.conninfo = conninfo
        # Worker connections kept between runs (``kept_workers``), else opened per run.
        self._kept = kept
        self.options = options
        self.on_event = on_event or (lambda event: None)
        self._queue: deque[_Item] = deque()
        self._queue_lock = threading.Lock()
        self._emit_lock = threading.Lock()
        self._alone = threading.Lock()  # non-transactional files run one at a time
        self._stop = threading.Event()
        self._interrupted = False  # a signal cut the run short (see _run)
        self._conns: set[psycopg.Connection] = set()  # the workers' (cancelled on interrupt)
        # Schemas in a step outside a transaction (a signal does not roll it back) → file.
        self._outside: dict[str, str] = {}
        self.results: list[SchemaResult] = []
        self._failures = 0  # failed schemas of the current _run (the threshold reads it)

    # -- public verbs -------------------------------------------------------------------
    def migrate(
        self, work: Iterable[tuple[str, list[Migration], list[Migration]]]
    ) -> list[SchemaResult]:
        """``work``: (schema, the scope's migrations, the plan's pending ones). What is
        pending is decided again under the schema's lock."""
        return self._run(
            ((schema, migrations) for schema, migrations, _planned in work), self._migrate_schema
        )

    def rollback(self, work: Iterable[tuple[str, int | list[str]]]) -> list[SchemaResult]:
        """``work``: (schema, version): undo every migration at or above SQL ``version``;
        or (schema, [versions]): undo those steps, in that order (Django steps)."""
        return self._run(work, self._rollback_task)

    # -- worker pool --------------------------------------------------------------------
    def _run(self, work: Iterable[tuple[str, Any]], task: _Task) -> list[SchemaResult]:
        """Run ``task`` on every schema of ``work`` with ``jobs`` workers."""
        self._queue = deque(_Item(schema, payload) for schema, payload in work)
        self.results = []
        self._failures = 0
        self._stop.clear()
        self._interrupted = False
        workers = max(1, min(self.options.jobs, len(self._queue)))
        if workers == 1:
            try:
                self._worker(task)
            except Interrupted as stop:
                stop.outside_transaction = self._outside_now()
                raise
            return self.results
        with ThreadPoolExecutor(workers, thread_name_prefix="tenancy-worker") as pool:
            futures = [pool.submit(self._worker, task) for _ in range(workers)]
            try:
                for future in futures:
                    future.result()
            except BaseException as exc:
                # Interrupted (a signal): no new schema starts, and the statements in
                # progress are cancelled, so their schemas roll back now; those end as
                # interrupted, not failed (their files did nothing wrong).
                self._interrupted = True
                if isinstance(exc, Interrupted):
                    exc.outside_transaction = self._outside_now()
                self._stop.set()
                self._cancel_all()
                raise
        return self.results

    def _outside_now(self) -> list[str]:
        with self._queue_lock:
            return [f"{schema}: {name}" for schema, name in sorted(self._outside.items())]

    def _cancel_all(self) -> None:
        with self._queue_lock:
            conns = list(self._conns)
        for conn in conns:
            # A connection that is gone has lost its transaction anyway.
            with suppress(psycopg.Error, OSError):
                conn.cancel_safe(timeout=2.0)

    def _next(self) -> tuple[_Item | None, float]:
        """(item ready now, 0) or (None, seconds to wait) or (None, -1) when done."""
        with self._queue_lock:
            if self._stop.is_set() or not self._queue:
                return None, -1
            now = time.monotonic()
            for _ in range(len(self._queue)):
                item = self._queue.popleft()
                if item.not_before <= now:
                    return item, 0
                self._queue.append(item)
            return None, max(0.005, min(i.not_before for i in self._queue) - now)

    def _requeue(self, item: _Item) -> None:
        with self._queue_lock:
            self._queue.append(item)

    def _finish(self, result: SchemaResult) -> None:
        with self._queue_lock:
            outside = self._outside.pop(result.schema, None)
        if result.failed and self._interrupted:
            result.status = "interrupted"
            if outside:
                result.error = (
                    f"interrupted during {outside}, outside a transaction: not rolled back, "
                    f"the re-run adopts what it built ({result.error})"
                )
            else:
                result.error = f"interrupted, rolled back ({result.error})"
        with self._emit_lock:
            self.results.append(result)
            self._failures += result.failed
            self.on_event(Event("schema_finished", result.schema, result=result))
        if result.failed and self._over_threshold():
            self._stop.set()

    def _over_threshold(self) -> bool:
        limit = 0 if self.options.fail_fast else self.options.max_failures
        return limit is not None and self._failures > limit

    def emit(self, event: Event) -> None:
        with self._emit_lock:
            self.on_event(event)

    def _connect(self) -> psycopg.Connection:
        """A worker's connection, without psycopg's automatic prepared statements: the
        engine sends few statements twice with parameters (the ledger read is sent as a
        literal), and psycopg throws its prepared statements away (``DEALLOCATE ALL``, a
        round trip) after every result whose status is ALTER or DROP, which migrations
        return all the time."""
        if self._kept is not None:
            conn = self._kept.getconn(timeout=KEPT_WAIT_S)
        else:
            conn = db.connect(self.conninfo)
        conn.prepare_threshold = None
        if (defaults := self._session_defaults(conn)) is not None:
            conn.execute(defaults)
        with self._queue_lock:
            self._conns.add(conn)
        return conn

    def _release(self, conn: psycopg.Connection) -> None:
        """A worker is done with its connection: closed, or back to the kept ones (the pool
        keeps only a healthy one, outside any transaction)."""
        with self._queue_lock:
            self._conns.discard(conn)
        if self._kept is not None:
            self._kept.putconn(conn)
        elif not conn.closed:
            conn.close()

    def _session_defaults(self, conn: psycopg.Connection) -> sql.Composable | None:
        """The session settings of a worker's connection, set when it opens and again after
        a file outside a transaction (whose ``RESET ALL`` clears them)."""
        if db.citus(conn) and not self.options.transaction_pooler:
            # The connection works as one tenant owner after another, and Citus would keep
            # a worker connection open for each of them: 1,000 tenants, 1,000 connections
            # on a worker. A direct connection is the engine's own, so the setting may stay
            # for its session; through a transaction pooler it would outlive the run on a
            # server connection others share, so it is not set there (the pooler's few
            # server connections bound what they cache).
            return sql.SQL("SET citus.max_cached_conns_per_worker TO 0")
        return None

    def _worker(self, task: _Task) -> None:
        conn: psycopg.Connection | None = None
        try:
            while True:
                item, wait = self._next()
                if item is None:
                    if wait < 0:
                        return
                    time.sleep(wait)
                    continue
                try:
                    if conn is None or conn.closed or conn.broken:
                        self._drop(conn)
                        conn = self._connect()
                    self._attempt(conn, item, task)
                except psycopg.OperationalError as exc:
                    self._finish(SchemaResult(item.schema, "failed", error=f"connection: {exc}"))
                    conn = self._drop(conn)
                except Exception as exc:  # a bug or an unforeseen error: that schema fails,
                    # the run goes on, and the connection (state unknown) is replaced.
                    self._finish(
                        SchemaResult(item.schema, "failed", error=f"{type(exc).__name__}: {exc}")
                    )
                    conn = self._drop(conn)
        finally:
            if conn is not None:
                self._release(conn)

    def _drop(self, conn: psycopg.Connection | None) -> None:
        """A connection whose state is unknown is closed (never kept); the worker opens
        another for its next schema (so the caller's is None from here)."""
        if conn is not None:
            conn.close()
            self._release(conn)

    def _attempt(self, conn: psycopg.Connection, item: _Item, task: _Task) -> None:
        started = time.monotonic()
        try:
            result = task(conn, item.schema, item.payload)
        except BaseException:
            _rollback(conn)  # nothing of a failed attempt stays open on the connection
            raise
        if result is None:  # another run holds the schema
            self._busy(item)
            return
        result.duration_ms = _ms_since(started)
        self._finish(result)

    def _busy(self, item: _Item) -> None:
        """The schema is locked by another run: come back to it later, not in a blocking
        wait, and give up after ``schema_lock_wait_s``."""
        now = time.monotonic()
        item.busy_since = item.busy_since or now
        if now - item.busy_since >= self.options.schema_lock_wait_s:
            self._finish(
                SchemaResult(
                    item.schema,
                    "failed",
                    error=f"another run held the lock on {item.schema} for "
                    f"{self.options.schema_lock_wait_s:g}s",
                )
            )
            return
        item.not_before = now + item.delay
        item.delay = min(item.delay * 2, 1.0)
        self._requeue(item)

    def _with_lock_retries(
        self, conn: psycopg.Connection, schema: str, action: Callable[[], _T]
    ) -> _T:
        """``action()``; when a lock is not granted within ``lock_timeout``, whatever the
        action's transaction holds is rolled back (readers queued behind it go on) and it
        is tried again after a jittered, capped backoff, ``lock_retries`` times at most;
        then MigrationError. The one lock-retry loop of the executor."""
        attempt = 0
        while True:
            try:
                return action()
            except errors.LockNotAvailable as exc:
                _rollback(conn)
                attempt += 1
                if attempt > self.options.lock_retries:
                    raise MigrationError(None, self._lock_timeout_message(attempt, exc)) from exc
                self.emit(Event("retry", schema, message=f"lock_timeout, retry {attempt}"))
                time.sleep(retry_delay(attempt))

    def _lock_timeout_message(self, attempts: int, exc: BaseException) -> str:
        return (
            f"gave up after {attempts} attempts: a table lock was not granted within "
            f"lock_timeout ({self.options.lock_timeout_ms} ms): {_error_text(exc)}"
        )

    # -- tasks: a SchemaResult, or None when another run holds the schema ---------------
    def _migrate_schema(
        self, conn: psycopg.Connection, schema: str, migrations: list[Migration]
    ) -> SchemaResult | None:
        """The one apply path. The first transaction takes the schema's transaction-level
        lock and reads the ledger in the round trip of its ``BEGIN`` (three round trips for
        a schema with one file: that, the file, its ledger row with the ``COMMIT``). When
        what is pending needs more than that transaction (a file that cannot run in one),
        the session-level lock is taken too before it ends, and held until the last
        segment is done."""
        result = SchemaResult(schema, "succeeded")
        state = _SchemaState(ids=placeholders(schema, conn.info.dbname))
        try:
            rest = self._with_lock_retries(
                conn, schema, lambda: self._first_transaction(conn, schema, migrations, state)
            )
            if rest is None:
                return None
            result.status, result.error = state.status, state.error
            result.notes += state.notes
            for segment in rest:
                if segment[0].transactional:
                    self._with_lock_retries(
                        conn,
                        schema,
                        lambda seg=segment: self._transaction(conn, schema, seg, state, begin=True),
                    )
                else:
                    with self._alone:
                        self._apply_alone(conn, schema, segment[0], state.ids, result)
                state.versions.extend(m.version for m in segment)
        except MigrationError as exc:
            _rollback(conn)
            result.status = "failed"
            result.error = str(exc)
            # What was committed before the failing segment stays recorded.
        finally:
            if state.session_locked and not conn.closed and not conn.broken:
                _rollback(conn)
                db.unlock(conn, schema)
        result.versions = state.versions
        return result

    def _first_transaction(
        self,
        conn: psycopg.Connection,
        schema: str,
        migrations: list[Migration],
        state: _SchemaState,
    ) -> list[list[Migration]] | None:
        """``BEGIN``, the schema's transaction-level lock, the session settings and the
        ledger read, in one round trip; then what is pending, decided under the lock, and
        its first segment when it is transactional. Returns the segments left, or None
        when the lock is not free."""
        begin = db.begin_locked(conn, schema, self.options.lock_timeout_ms)
        cur = conn.execute(sql.SQL("{}; {}").format(begin, ledger.applied_statement(schema)))
        cur.nextset()  # the lock's row
        row = cur.fetchone()
        if not (row and row[0]):
            _rollback(conn)
            return None
        cur.nextset()  # the ledger's rows: a statement of its own, after the lock
        pending = plan_schema(schema, "", migrations, ledger.applied_from(cur.fetchall(), schema))
        if not pending.pending:
            _rollback(conn)
            state.status = "skipped"
            return []
        if not self._before_schema(conn, schema, pending.pending, state):
            return []
        segments = [pending.pending] if self.options.fake else _segments(pending.pending)
        if not segments[0][0].transactional or len(segments) > 1:
            if self.options.transaction_pooler:
                _rollback(conn)
                state.status, state.error = "failed", NEEDS_SESSION
                return []
            if not state.session_locked:
                # Granted at once: this session holds the same lock at transaction level.
                # A session-level lock survives the transaction (even its rollback).
                state.session_locked = db.try_lock(conn, schema)
                assert state.session_locked
        if not state.started:
            state.started = True
            self.emit(Event("schema_started", schema))
        if not segments[0][0].transactional and not self.options.fake:
            conn.execute("COMMIT")
            return segments
        self._transaction(conn, schema, segments[0], state, begin=False)
        state.versions.extend(m.version for m in segments[0])
        return segments[1:]

    def _before_schema(
        self,
        conn: psycopg.Connection,
        schema: str,
        pending: list[Migration],
        state: _SchemaState,
    ) -> bool:
        """``Options.before_schema``, once per schema, under its lock and before anything
        changes; False (the schema failed, its transaction rolled back) when it raised."""
        hook = self.options.before_schema
        if hook is None or state.prepared:
            return True
        try:
            note = hook(conn, schema, pending)
        except Exception as exc:
            _rollback(conn)
            state.status, state.error = "failed", str(exc) or type(exc).__name__
            return False
        state.prepared = True
        state.notes += [note] if note else []
        return True

    def _transaction(
        self,
        conn: psycopg.Connection,
        schema: str,
        migrations: list[Migration],
        state: _SchemaState,
        *,
        begin: bool,
    ) -> None:
        """Transactional files, their ledger rows and the ``COMMIT``; with ``begin``, in a
        transaction of their own (``BEGIN`` with the session settings), else in the open
        one."""
        if begin:
            settings = db.engine_settings(self.options.lock_timeout_ms)
            conn.execute(sql.SQL("BEGIN; {}").format(settings))
        if self.options.fake:
            record_in_transaction(
                conn,
                schema,
                migrations,
                actor=self.options.actor,
                run_id=self.options.run_id,
                commit=True,
            )
            return
        apply_in_transaction(
            conn,
            schema,
            migrations,
            state.ids,
            lock_timeout_ms=self.options.lock_timeout_ms,
            actor=self.options.actor,
            run_id=self.options.run_id,
            on_sql=lambda m, text: self.emit(Event("sql", schema, migration=m, sql=text)),
            commit=True,
        )

    def _rollback_task(
        self, conn: psycopg.Connection, schema: str, from_version: int | list[str]
    ) -> SchemaResult | None:
        """A rollback holds the schema's session-level lock throughout: its DOWNs may run
        outside a transaction."""
        if self.options.transaction_pooler:
            return SchemaResult(schema, "failed", error=NEEDS_SESSION)
        if not db.try_lock(conn, schema):
            return None
        try:
            self.emit(Event("schema_started", schema))
            return self._rollback_schema(conn, schema, from_version)
        finally:
            if not conn.closed and not conn.broken:
                db.unlock(conn, schema)

    def _apply_alone(
        self,
        conn: psycopg.Connection,
        schema: str,
        migration: Migration,
        ids: dict,
        result: SchemaResult,
    ) -> None:
        """A non-transactional file (or Django step): its statements one by one, then its
        ledger row. A run cut off between the two is finished by the next (see
        ``_index_built``)."""
        started = time.monotonic()
        parts: list[str] = []
        with self._queue_lock:
            self._outside[schema] = migration.name
        try:
            if migration.runner is None:
                text = _render(migration, ids)
                self.emit(Event("sql", schema, migration=migration, sql=text))
                parts = statements.split(text)
                self._run_alone(conn, schema, parts, result)
                down = migration.down_sql
            else:
                ran = self._run_alone_runner(conn, schema, migration, parts, result)
                self.emit(Event("sql", schema, migration=migration, sql=ran.sql))
                down = ran.rollback_sql
            ledger.record(
                conn,
                schema,
                migration,
                elapsed_ms=_ms_since(started),
                actor=self.options.actor,
                run_id=self.options.run_id,
                down_sql=down,
            )
            with self._queue_lock:
                self._outside.pop(schema, None)  # done and recorded
        except statements.StatementError as exc:
            raise MigrationError(migration, str(exc)) from exc
        except (psycopg.Error, MigrationError, RunnerError) as exc:
            text = _error_text(exc) if isinstance(exc, psycopg.Error) else str(exc)
            note = self._left_invalid(conn, schema, parts, result)
            raise MigrationError(migration, text + note) from exc

    def _run_alone_runner(
        self,
        conn: psycopg.Connection,
        schema: str,
        migration: Migration,
        parts: list[str],
        result: SchemaResult,
    ) -> Ran:
        """A runner's step outside a transaction: each statement it makes runs as a file's
        would (``_alone_statement``: lock retries, the concurrent index resume); ``parts``
        collects them for the error message."""
        assert migration.runner is not None

        def execute(text: str) -> None:
            for statement in statements.split(text):
                parts.append(statement)
                try:
                    self._alone_retried(conn, schema, len(parts), parts, result)
                except MigrationError as exc:
                    raise RunnerError(str(exc)) from exc

        with self._alone_session(conn, schema):  # the context is the session's here
            return migration.runner.run(conn, schema, execute, lambda: None)

    @contextmanager
    def _alone_session(self, conn: psycopg.Connection, schema: str) -> Iterator[None]:
        """search_path, lock_timeout and the owner's role for the session (there is no
        transaction to scope them to), reset afterwards unless the connection is gone."""
        owner = tenant_owner(schema, conn.info.dbname)
        try:
            conn.execute(db.lock_timeout_statement(self.options.lock_timeout_ms))
            if owner:
                conn.execute(_as_owner(conn, owner, local=False))
            conn.execute(db.tenant_search_path(schema, local=False))
            yield
        finally:
            if not conn.closed and not conn.broken:
                # RESET ALL: a file run outside a transaction may SET what it needs; its
                # temporary objects go before the login user is back (see _leave_file).
                parts = [sql.SQL("DISCARD TEMP")]
                parts += [_back_to_login(conn, local=False)] if owner else []
                parts += [sql.SQL("RESET ROLE; RESET ALL")]
                if (defaults := self._session_defaults(conn)) is not None:
                    parts.append(defaults)
                conn.execute(sql.SQL("; ").join(parts))

    def _run_alone(
        self, conn: psycopg.Connection, schema: str, parts: list[str], result: SchemaResult
    ) -> None:
        """``parts`` one at a time in autocommit as the schema's owner, each under lock
        retries. The schema's session-level advisory lock is held by ``_attempt``.
        MigrationError names the statement that failed."""
        with self._alone_session(conn, schema):
            for index in range(1, len(parts) + 1):
                self._alone_retried(conn, schema, index, parts, result)

    def _alone_retried(
        self,
        conn: psycopg.Connection,
        schema: str,
        index: int,
        parts: list[str],
        result: SchemaResult,
    ) -> None:
        """Statement ``index`` (1-based) of ``parts`` alone, under lock retries;
        MigrationError names it."""
        statement = parts[index - 1]
        try:
            self._with_lock_retries(
                conn, schema, lambda: self._alone_statement(conn, schema, statement, result)
            )
        except (psycopg.Error, MigrationError) as exc:
            text = _error_text(exc) if isinstance(exc, psycopg.Error) else str(exc)
            raise MigrationError(None, _statement_label(index, parts) + text) from exc

    def _alone_statement(
        self, conn: psycopg.Connection, schema: str, statement: str, result: SchemaResult
    ) -> None:
        # A concurrent index build waits for every older transaction in the database, and
        # such waits hold up no reader: it gets the whole patience in one wait, instead of
        # failing after lock_timeout and throwing away a build that was nearly done.
        timeout = self.options.lock_timeout_ms
        if statements.readers_pass_while_waiting(statement):
            timeout *= self.options.lock_retries + 1
        conn.execute(db.lock_timeout_statement(timeout))
        target = statements.concurrent_index(statement)
        if target is not None and self._index_built(conn, schema, target, result):
            return
        conn.execute(statement)

    def _index_built(
        self,
        conn: psycopg.Connection,
        schema: str,
        target: statements.IndexTarget,
        result: SchemaResult,
    ) -> bool:
        """Whether a ``CREATE INDEX CONCURRENTLY`` is done already. A run killed during the
        build leaves the server finishing it with no ledger row written (VALID: taken as
        built), or a cut-off build leaves it INVALID (dropped here, then built again);
        either way the plain re-run would fail with "already exists"."""
        state = db.index_state(conn, target.table, target.name)
        if state is None or not state.on_table:
            return False  # absent; or on another table, a clash PostgreSQL reports itself
        if state.valid:
            self._note(
                schema,
                result,
                f"index {state.name} exists already and is VALID (an earlier run built it "
                "and was cut off before recording it): taken as built",
            )
            return True
        self._note(
            schema,
            result,
            f"index {state.name} was left INVALID by an earlier attempt: dropped, building "
            "it again",
        )
        conn.execute(state.drop_statement())
        return False

    def _note(self, schema: str, result: SchemaResult, message: str) -> None:
        result.notes.append(message)
        self.emit(Event("notice", schema, message=message))

    def _left_invalid(
        self, conn: psycopg.Connection, schema: str, parts: list[str], result: SchemaResult
    ) -> str:
        """The indexes a failure left INVALID in the schema, for the error message, and
        what a re-run will do about each."""
        invalid = result.invalid_indexes = self._invalid_indexes(conn, schema)
        if not invalid:
            return ""
        resumable = {t.name for t in map(_concurrent_index, parts) if t is not None}
        again = [name for name in invalid if name in resumable]
        by_hand = [name for name in invalid if name not in resumable]
        advice = [f"a re-run builds {', '.join(again)} again"] if again else []
        advice += [f"drop {', '.join(by_hand)} before re-running"] if by_hand else []
        return f" (left INVALID: {', '.join(invalid)}; {'; '.join(advice)})"

    def _invalid_indexes(self, conn: psycopg.Connection, schema: str) -> list[str]:
        """Asked on a fresh connection when the run's own is gone (its backend was
        terminated mid-build, which is exactly when an index is left INVALID)."""
        try:
            if not conn.closed and not conn.broken:
                return db.invalid_indexes(conn, schema)
            with db.connect(self.conninfo) as fresh:
                return db.invalid_indexes(fresh, schema)
        except psycopg.Error:
            return []

    def _rollback_schema(
        self, conn: psycopg.Connection, schema: str, target: int | list[str]
    ) -> SchemaResult:
        started = time.monotonic()
        result = SchemaResult(schema, "succeeded")
        if isinstance(target, int):
            rows = ledger.rollback_rows(conn, schema, target)
        else:
            rows = ledger.rows_of_versions(conn, [schema], target).get(schema, [])
        if not rows:
            result.status = "skipped"
            return result
        missing = [name for _, name, down in rows if not (down and down.strip())]
        if missing:
            result.status = "failed"
            result.error = "no rollback SQL recorded for " + ", ".join(missing)
            return result
        try:
            for batch in _undo_batches(rows, placeholders(schema, conn.info.dbname)):
                if batch[0].alone:
                    with self._alone:
                        self._undo_alone(conn, schema, batch[0], result)
                else:
                    self._with_lock_retries(
                        conn, schema, lambda b=batch: self._undo_transaction(conn, schema, b)
                    )
                result.versions.extend(undo.version for undo in batch)
        except MigrationError as exc:
            result.status = "failed"
            result.error = str(exc)
            # What was undone before the failing batch stays undone.
        result.duration_ms = _ms_since(started)
        return result

    def _undo_transaction(self, conn: psycopg.Connection, schema: str, batch: list[_Undo]) -> None:
        owner = tenant_owner(schema, conn.info.dbname)
        with conn.transaction():
            db.configure(conn, self.options.lock_timeout_ms)
            for undo in batch:
                self.emit(Event("sql", schema, sql=undo.text, message=undo.name))
                try:
                    run_file(conn, schema, undo.text, owner)
                except FileFailed as exc:
                    raise MigrationError(None, f"{undo.name} (DOWN): {exc}") from exc
                conn.execute(_leave_file(conn, schema, owner))
                ledger.delete(conn, schema, [undo.version])
            conn.execute(seal(conn, schema, owner))

    def _undo_alone(
        self, conn: psycopg.Connection, schema: str, undo: _Undo, result: SchemaResult
    ) -> None:
        """A DOWN that cannot run in a transaction (``DROP INDEX CONCURRENTLY``): run alone
        like an UP of its kind, then its ledger row deleted."""
        self.emit(Event("sql", schema, sql=undo.text, message=undo.name))
        with self._queue_lock:
            self._outside[schema] = f"{undo.name} (DOWN)"
        try:
            self._run_alone(conn, schema, statements.split(undo.text), result)
            ledger.delete(conn, schema, [undo.version])
            with self._queue_lock:
                self._outside.pop(schema, None)
        except (psycopg.Error, statements.StatementError, MigrationError) as exc:
            text = _error_text(exc) if isinstance(exc, psycopg.Error) else str(exc)
            raise MigrationError(None, f"{undo.name} (DOWN): {text}") from exc


@dataclass(frozen=True)
class _Undo:
    version: str
    name: str
    text: str  # the DOWN SQL, rendered
    alone: bool  # cannot run in a transaction


def _undo_batches(rows: list[tuple], ids: dict[str, str]) -> list[list[_Undo]]:
    """The ledger rows to undo (newest first) as batches: consecutive transactional DOWNs
    share a transaction, a non-transactional one is alone. Every DOWN is rendered and
    classified before anything is undone, so a broken one changes nothing."""
    batches: list[list[_Undo]] = []
    for version, name, down in rows:
        try:
            text = statements.render(down, ids)
            alone = statements.non_transactional_reason(text) is not None
        except statements.StatementError as exc:
            raise MigrationError(None, f"{name} (DOWN): {exc}") from exc
        undo = _Undo(version, name, text, alone)
        if not alone and batches and not batches[-1][0].alone:
            batches[-1].append(undo)
        else:
            batches.append([undo])
    return batches


def _concurrent_index(statement: str) -> statements.IndexTarget | None:
    try:
        return statements.concurrent_index(statement)
    except statements.StatementError:
        return None


RETRY_BASE_S = 0.2
RETRY_CAP_S = 3.0


def retry_delay(attempt: int) -> float:
    """The pause before retry ``attempt`` (1, 2, …): doubling from RETRY_BASE_S up to
    RETRY_CAP_S, then a random point in its upper half. Random, so that runs and workers
    that gave up on one table together do not all queue on it again at the same moment;
    never below half, so that the total patience stays predictable (with the defaults,
    11 waits of 500 ms and 10 pauses: 16–26 s)."""
    ceiling = min(RETRY_CAP_S, RETRY_BASE_S * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _rollback(conn: psycopg.Connection) -> None:
    if conn.closed or conn.broken:
        return
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.execute("ROLLBACK")


class FileFailed(Exception):
    """A migration's SQL failed; the message names the statement and PostgreSQL's error."""


SAVEPOINT = "tenancy_migration"


def tenant_owner(schema: str, database: str) -> str | None:
    """The role a schema's migrations run as: its owner role; None for ``public`` (public
    files run as the connecting user)."""
    return None if schema == PUBLIC_SCHEMA else owner_role_for_schema(schema, database)


# Connections whose login user is a superuser (a pooled connection keeps its login user).
_SUPERUSER: weakref.WeakKeyDictionary[psycopg.Connection, bool] = weakref.WeakKeyDictionary()


def _as_owner(conn: psycopg.Connection, owner: str, *, local: bool = True) -> sql.Composed:
    """The statement that makes ``owner`` run what follows. With a superuser login it
    becomes the *session* user too: PostgreSQL then allows SET ROLE, RESET ROLE and function
    SET role clauses only among the owner's own roles, so a file cannot switch back to the
    login user that way (only a session authorization change could, which the refusal rules
    refuse wherever the parser sees one). Other logins can switch the role only."""
    superuser = _SUPERUSER.get(conn)
    if superuser is None:
        superuser = _SUPERUSER[conn] = conn.info.parameter_status("is_superuser") == "on"
    scope = sql.SQL("LOCAL" if local else "SESSION")
    if superuser:
        return sql.SQL("SET {} SESSION AUTHORIZATION {}").format(scope, sql.Literal(owner))
    return sql.SQL("SELECT set_config('role', {}, {})").format(
        sql.Literal(owner), sql.Literal(local)
    )


def _back_to_login(conn: psycopg.Connection, *, local: bool = True) -> sql.Composed:
    """Undo ``_as_owner``: the login user again (the ledger is not the owner's to write)."""
    if _SUPERUSER.get(conn):
        return sql.SQL("SET {} SESSION AUTHORIZATION DEFAULT").format(
            sql.SQL("LOCAL" if local else "SESSION")
        )
    return sql.SQL("SELECT set_config('role', 'none', {})").format(sql.Literal(local))


def run_file(conn: psycopg.Connection, schema: str, text: str, owner: str | None) -> None:
    """Run a migration's SQL in the open transaction, under ``owner`` when given and with
    the schema's search_path (both end at ``_leave_file``, or with the transaction), in one
    round trip. A savepoint before it lets a failure be replayed statement by statement to
    name the culprit."""
    enter = _enter_file(conn, schema, owner)
    try:
        if db.citus(conn):
            # Citus sends a DDL statement's query text on to the workers, so a file sent
            # whole would reach them as one multi-statement prepared query, which fails.
            conn.execute(sql.SQL("; ").join(enter))
            for statement in statements.split(text):
                conn.execute(statement)
        else:
            conn.execute(sql.SQL("; ").join([*enter, sql.SQL(text)]))
    except errors.LockNotAvailable:
        raise
    except psycopg.Error as exc:
        raise FileFailed(_locate_failure(conn, schema, text, owner, exc)) from exc


def _tenant_context(
    conn: psycopg.Connection, schema: str, owner: str | None
) -> list[sql.Composable]:
    """Become the tenant (its owner role, its search_path) for what follows."""
    parts: list[sql.Composable] = [_as_owner(conn, owner)] if owner else []
    if schema != PUBLIC_SCHEMA:
        parts.append(db.tenant_search_path(schema))
    return parts


def _enter_file(conn: psycopg.Connection, schema: str, owner: str | None) -> list[sql.Composable]:
    savepoint = sql.SQL("SAVEPOINT {}").format(sql.Identifier(SAVEPOINT))
    return [savepoint, *_tenant_context(conn, schema, owner)]


def _leave_file(conn: psycopg.Connection, schema: str, owner: str | None) -> sql.Composed:
    """Release the file's savepoint and be the engine again: the login user, the engine's
    search_path (no tenant schema in it), and none of the temporary objects the file made
    (a temporary table outlives the transaction on the connection, where it would stand in
    for a table of the same name in the engine's later queries). Deferred triggers stay
    queued: nothing fires them until ``seal``, which runs them as the owner."""
    parts: list[sql.Composable] = []
    if schema != PUBLIC_SCHEMA:
        parts.append(sql.SQL("DISCARD TEMP"))
    parts.append(sql.SQL("RELEASE SAVEPOINT {}").format(sql.Identifier(SAVEPOINT)))
    if owner:
        parts.append(_back_to_login(conn))
    parts.append(db.engine_search_path())
    return sql.SQL("; ").join(parts)


def seal(conn: psycopg.Connection, schema: str, owner: str | None) -> sql.Composed:
    """The last statement before the COMMIT of a transaction that ran a tenant's files: be
    the tenant's owner again and fire what the files deferred now (deferred constraint
    triggers), so that it runs with the owner's rights and search_path, not the engine's;
    the transaction then stays the owner's, so anything deferred again while those fire
    (a trigger may defer its own writes), or anything COMMIT itself runs, is the owner's
    too. The role and search_path are transaction-local: COMMIT ends them. Nothing but
    COMMIT (or ROLLBACK) may follow. For public (no owner) it is a plain statement.

    First, as the login user, the session's own ``search_path`` and role are reset: a
    file's plain ``SET`` (not ``LOCAL``) would otherwise become the session's value at
    COMMIT, on the engine's pooled connection or, through a transaction pooler, on a
    server connection others share, and a tenant schema in that path puts the tenant's
    operators in the engine's next queries. Reset inside the transaction, it holds
    wherever a pooler routes the COMMIT. Last, once the deferred triggers have fired, the
    cursors the files (or those triggers) declared WITH HOLD, which would stay open over
    the tenant's rows, and the channels they listen on are closed."""
    resets = [sql.SQL("RESET search_path"), sql.SQL("RESET ROLE")]
    fire = sql.SQL("SET CONSTRAINTS ALL IMMEDIATE")
    after = [sql.SQL("CLOSE ALL"), sql.SQL("UNLISTEN *")]
    runs_as = _owner_at_commit(conn, owner)
    if runs_as is None:
        return sql.SQL("; ").join([*resets, fire, *after])
    return sql.SQL("; ").join(
        [*resets, *_tenant_context(conn, schema, runs_as), fire, *after, sql.SQL("DISCARD TEMP")]
    )


def _owner_at_commit(conn: psycopg.Connection, owner: str | None) -> str | None:
    """Whom ``seal`` makes the transaction's: the owner; None for public (its files run as
    the login user) and on Citus, where a schema is built as the login user
    (apply_to_new_schema; docs/scale-out.md)."""
    return None if db.citus(conn) else owner


def fire_deferred(conn: psycopg.Connection, schema: str, owner: str | None) -> None:
    """``seal`` in the middle of a transaction that goes on with the engine's own work (a
    creation registers the tenant after its files): what the files deferred fires now, as
    the owner, then the engine is back. The caller still ends with ``seal``."""
    back = [_back_to_login(conn)] if _owner_at_commit(conn, owner) else []
    conn.execute(sql.SQL("; ").join([seal(conn, schema, owner), *back, db.engine_search_path()]))


def _locate_failure(
    conn: psycopg.Connection, schema: str, text: str, owner: str | None, exc: psycopg.Error
) -> str:
    """Replay the file from its savepoint one statement at a time, inside the transaction
    that is about to be rolled back anyway, to say which statement failed."""
    if conn.broken:
        return _error_text(exc)
    try:
        conn.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(sql.Identifier(SAVEPOINT)))
        context = _tenant_context(conn, schema, owner)
        if context:
            conn.execute(sql.SQL("; ").join(context))
        parts = statements.split(text)
        for index, statement in enumerate(parts, 1):
            try:
                conn.execute(sql.SQL(statement))
            except psycopg.Error as replayed:
                label = _statement_label(index, parts)
                hint = rules.grant_hint(statement, replayed.sqlstate, str(replayed))
                return label + _error_text(replayed) + hint
    except (psycopg.Error, statements.StatementError):
        pass
    return _error_text(exc)


def _statement_label(index: int, parts: list[str]) -> str:
    first = " ".join(parts[index - 1].split())
    excerpt = first if len(first) <= 80 else first[:77] + "..."
    return f"statement {index} of {len(parts)} ({excerpt}): "


def _execute_migration(
    conn: psycopg.Connection, schema: str, migration: Migration, text: str, owner: str | None
) -> None:
    try:
        run_file(conn, schema, text, owner)
    except FileFailed as exc:
        raise MigrationError(migration, str(exc)) from exc


# How a statement is changed before it runs (None: as it is): a schema being created
# builds concurrent indexes plainly (``_in_transaction``).
Rewrite = Callable[[Migration, str], str] | None


def _apply_step(
    conn: psycopg.Connection,
    schema: str,
    m: Migration,
    owner: str | None,
    ids: dict[str, str],
    *,
    rewrite: Rewrite,
    on_sql: Callable[[Migration, str], None] | None,
) -> str | None:
    """Run one step in the open transaction as ``owner``; returns the SQL that undoes it
    (the ledger's rollback_sql). The file or runner is left entered: ``_leave_file`` next."""
    if m.runner is None:
        text = _render(m, ids)
        if rewrite is not None and not m.transactional:
            text = ";\n".join(rewrite(m, s) for s in statements.split(text))
        if on_sql:
            on_sql(m, text)
        _execute_migration(conn, schema, m, text, owner)
        return m.down_sql

    def prepared(text: str) -> str:
        if rewrite is None:
            return text
        return ";\n".join(rewrite(m, s) for s in statements.split(text))

    ran = _execute_runner(conn, schema, m, owner, prepared)
    if on_sql:
        on_sql(m, ran.sql)
    return ran.rollback_sql


def _execute_runner(
    conn: psycopg.Connection,
    schema: str,
    m: Migration,
    owner: str | None,
    prepared: Callable[[str], str],
) -> Ran:
    """A runner's step in the open transaction, entered like a file (savepoint, owner,
    the schema's search_path: sent with its first SQL, or at ``enter`` when the runner
    needs the connection first); its errors name the step."""
    entering = [sql.SQL("; ").join(_enter_file(conn, schema, owner)).as_string(conn)]

    def enter() -> None:
        if entering:
            conn.execute(entering.pop())

    def execute_first(text: str) -> None:
        text = prepared(text)
        conn.execute(f"{entering.pop()};\n{text}" if entering else text)

    assert m.runner is not None
    try:
        return m.runner.run(conn, schema, execute_first, enter)
    except errors.LockNotAvailable:
        raise
    except psycopg.Error as exc:
        raise MigrationError(m, _error_text(exc)) from exc
    except (RunnerError, statements.StatementError) as exc:
        raise MigrationError(m, str(exc)) from exc


def _segments(pending: list[Migration]) -> list[list[Migration]]:
    """Consecutive transactional files form one segment; a non-transactional one is alone."""
    segments: list[list[Migration]] = []
    for m in pending:
        if m.transactional and segments and segments[-1][0].transactional:
            segments[-1].append(m)
        else:
            segments.append([m])
    return segments


def _render(migration: Migration, ids: dict) -> str:
    try:
        return statements.render(migration.up_sql, ids)
    except statements.StatementError as exc:
        raise MigrationError(migration, str(exc)) from exc


def _error_text(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    sqlstate = getattr(diag, "sqlstate", None) if diag else None
    return f"{text} [SQLSTATE {sqlstate}]" if sqlstate else text


def apply_in_transaction(
    conn: psycopg.Connection,
    schema: str,
    migrations: list[Migration],
    ids: dict[str, str],
    *,
    lock_timeout_ms: int,
    actor: str,
    run_id: int | None,
    on_sql: Callable[[Migration, str], None] | None = None,
    commit: bool = False,
) -> None:
    """Apply ``migrations`` to ``schema`` in the caller's open transaction, whose
    search_path and lock_timeout are the engine's already (``db.begin_locked``,
    ``db.engine_settings``), and record them in the ledger; with ``commit``, the last
    ledger row travels with ``seal`` and the ``COMMIT``. ``on_sql`` sees each file's SQL
    before it runs. A schema built in the same transaction uses ``apply_to_new_schema``."""

    owner = tenant_owner(schema, conn.info.dbname)
    _run_and_record(
        conn,
        schema,
        migrations,
        lambda m: _apply_step(conn, schema, m, owner, ids, rewrite=None, on_sql=on_sql),
        owner,
        lock_timeout_ms=lock_timeout_ms,
        record=_Recording(actor, run_id),
        then=_COMMIT if commit else None,
    )


def apply_to_new_schema(
    conn: psycopg.Connection,
    schema: str,
    migrations: list[Migration],
    ids: dict[str, str],
    *,
    lock_timeout_ms: int,
    actor: str,
) -> None:
    """Build a schema created in the caller's open transaction (a new tenant, tenant_verify's
    reference): set the engine's search_path and lock_timeout, apply every file and record
    it, then fire what the files deferred (``fire_deferred``). Every table is empty, so the
    statements that cannot run in a transaction are built non-concurrently instead. The
    caller ends the transaction with ``seal`` before it commits (or rolls back)."""
    db.configure(conn, lock_timeout_ms)
    owner = tenant_owner(schema, conn.info.dbname)
    # Citus reaches a worker as the current user, over a connection outside this
    # transaction, which cannot see the schema created in it: there the files run as the
    # login user, and the owner role takes the schema over before the commit.
    adopt = bool(owner) and db.citus(conn)
    runs_as = None if adopt else owner
    _run_and_record(
        conn,
        schema,
        migrations,
        lambda m: _apply_step(conn, schema, m, runs_as, ids, rewrite=_in_transaction, on_sql=None),
        runs_as,
        lock_timeout_ms=lock_timeout_ms,
        record=_Recording(actor, None),
        then=None,
    )
    fire_deferred(conn, schema, owner)
    if adopt and owner:
        web_role = role_for_schema(schema, conn.info.dbname)
        for statement in [
            *ownership.adopt_statements(conn, schema, owner),
            *ownership.existing_objects_grants(schema, web_role),
        ]:
            conn.execute(statement)


def record_in_transaction(
    conn: psycopg.Connection,
    schema: str,
    migrations: list[Migration],
    *,
    actor: str,
    run_id: int | None,
    commit: bool = False,
) -> None:
    """``--fake``: the ledger rows of ``migrations``, their SQL not run, in the caller's open
    transaction; with ``commit``, the last row travels with the ``COMMIT``. A Django step
    is recorded in the schema's own ``django_migrations`` too, as the owner."""
    owner = tenant_owner(schema, conn.info.dbname)
    for index, m in enumerate(migrations):
        if m.runner is not None:
            run_file(conn, schema, m.runner.record_sql(), owner)
            conn.execute(_leave_file(conn, schema, owner))
        row = ledger.record_statement(schema, m, elapsed_ms=0, actor=actor, run_id=run_id)
        last = index + 1 == len(migrations)
        end = sql.SQL("{}; {}; COMMIT").format(row, seal(conn, schema, owner))
        conn.execute(end if commit and last else row)


@dataclass(frozen=True)
class _Recording:
    """Who and which run the ledger rows name."""

    actor: str
    run_id: int | None


_COMMIT = sql.SQL("COMMIT")


def _run_and_record(
    conn: psycopg.Connection,
    schema: str,
    migrations: list[Migration],
    run_one: Callable[[Migration], str | None],
    owner: str | None,
    *,
    lock_timeout_ms: int,
    record: _Recording,
    then: sql.Composable | None,
) -> None:
    """Each step run by ``run_one`` (as ``owner``; it returns the SQL that undoes the step),
    then its ledger row, written by the engine with its own settings (``_leave_file``),
    which shares its round trip with what follows it: the lock_timeout again before the
    next step (a file may change it), ``seal`` and ``then`` after the last when ``then``
    is given."""
    for index, m in enumerate(migrations):
        started = time.monotonic()
        down = run_one(m)
        row = ledger.record_statement(
            schema,
            m,
            elapsed_ms=_ms_since(started),
            actor=record.actor,
            run_id=record.run_id,
            down_sql=down,
        )
        after: list[sql.Composable] = []
        if index + 1 < len(migrations):
            after = [db.engine_settings(lock_timeout_ms)]
        elif then is not None:
            after = [seal(conn, schema, owner), then]
        try:
            conn.execute(sql.SQL("; ").join([_leave_file(conn, schema, owner), row, *after]))
        except errors.LockNotAvailable:
            raise
        except psycopg.Error as exc:
            # The file ran; what it deferred failed when fired (or the ledger row did).
            raise MigrationError(m, f"at the end of its transaction: {_error_text(exc)}") from exc


def _in_transaction(migration: Migration, statement: str) -> str:
    reason = statements.non_transactional_reason(statement)
    if reason is None:
        return statement
    if "CONCURRENTLY" in reason:
        return statements.without_concurrently(statement)
    if reason == "VACUUM":
        return "SELECT 1"  # nothing to vacuum in a schema created a moment ago
    raise MigrationError(migration, f"{reason} cannot run while creating a tenant")
