"""Migration runs: plan, refuse on drift, execute public then tenants, record and audit.

This is the one place a run is orchestrated; ``migrate_tenants``, ``migrate_schemas``,
the admin's background job and the tests all call ``migrate``/``rollback`` here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from tenancy import conf
from tenancy.engine import audit, db, ledger, rules
from tenancy.engine.errors import EXIT_DRIFT, EXIT_FAILED, EXIT_OK, EXIT_PENDING, TenancyError
from tenancy.engine.executor import Event, Executor, SchemaResult
from tenancy.engine.names import PUBLIC_SCHEMA, validate_schema_name
from tenancy.engine.plan import Plan, build_plan, plan_schema
from tenancy.engine.source import PUBLIC, TENANT, discover

INFRASTRUCTURE_LOCK = "tenancy:django-public"
JOBS_MARGIN = 5  # connections a run leaves free for the application and other sessions


class RunError(TenancyError):
    """A run that cannot start: bad arguments, no infrastructure, an unreadable file."""


class Interrupted(KeyboardInterrupt):
    """A signal stopped the run: the schema in progress was rolled back. A KeyboardInterrupt,
    so that psycopg cancels the statement in progress and leaves the connection usable."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def require_session(what: str) -> None:
    """Refuse, before anything changes, work that needs a session-level lock when the
    engine's connection goes through a transaction-mode pooler (it would lose the lock):
    as configured, or found by asking the server (a proxied connection not declared a
    session-mode pooler is taken for one that may not keep sessions)."""
    if conf.engine_through_transaction_pooler():
        raise RunError(
            f"{what} needs a session-level advisory lock, and the database connection goes "
            "through a transaction-mode pooler (EMPLOYER_PORTAL_DB_POOLER=transaction), which "
            "would silently lose it between transactions. Nothing was changed. Set "
            "EMPLOYER_PORTAL_DIRECT_DB_URL to a direct connection to the database (see "
            "docs/deployment.md)."
        )
    if conf.setting("ENGINE_POOLER") == "session":
        return
    with db.pooled(conf.conninfo()) as conn:
        if db.proxied(conn):
            raise RunError(
                f"{what} needs a session-level advisory lock, and the engine's database "
                "connection answers through a pooler or proxy (its backend pid is not the "
                "server's) that is not declared to keep sessions: a transaction-mode pooler "
                "would silently lose the lock. Nothing was changed. Set "
                "EMPLOYER_PORTAL_DIRECT_DB_URL to a direct connection to the database, or "
                "EMPLOYER_PORTAL_DB_POOLER=session for a pooler in session mode (see "
                "docs/deployment.md)."
            )


@dataclass
class RunReport:
    kind: str
    plan: Plan | None
    run_id: int | None = None
    results: list[SchemaResult] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    exit_code: int = EXIT_OK
    dry_run: bool = False
    django_migrations: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # lint warnings of pending files
    problems: list[str] = field(default_factory=list)  # what a dry run or --check found broken
    notes: list[str] = field(default_factory=list)  # e.g. --jobs capped

    @property
    def failed(self) -> list[SchemaResult]:
        return [r for r in self.results if r.failed]

    def to_dict(self) -> dict[str, Any]:
        plan = self.plan
        return {
            "kind": self.kind,
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "exit_code": self.exit_code,
            "refused": self.refused,
            "warnings": self.warnings,
            "problems": self.problems,
            "notes": self.notes,
            "django_migrations_pending": self.django_migrations,
            "plan": [
                {
                    "schema": s.schema,
                    "scope": s.scope,
                    "applied": s.applied_count,
                    "pending": [
                        {"version": m.version, "name": m.name, "transactional": m.transactional}
                        for m in s.pending
                    ],
                    "drift": [
                        {
                            "version": d.migration.version,
                            "name": d.migration.name,
                            "recorded_checksum": d.recorded_checksum,
                            "file_checksum": d.migration.checksum,
                        }
                        for d in s.drift
                    ],
                    "missing_files": [a.name for a in s.missing],
                    "out_of_order": [m.name for m in s.out_of_order],
                    "schema_exists": s.schema_exists,
                }
                for s in (plan.schemas if plan else [])
            ],
            "results": [
                {
                    "schema": r.schema,
                    "status": r.status,
                    "versions": r.versions,
                    "error": r.error,
                    "duration_ms": r.duration_ms,
                    "invalid_indexes": r.invalid_indexes,
                    "notes": r.notes,
                }
                for r in self.results
            ],
            "summary": {
                "schemas": len(plan.schemas) if plan else 0,
                "pending_migrations": plan.pending_count if plan else 0,
                "schemas_with_pending": len(plan.with_pending) if plan else 0,
                "succeeded": sum(r.status == "succeeded" for r in self.results),
                "failed": len(self.failed),
            },
        }


# -- infrastructure ----------------------------------------------------------------------
def infrastructure_ready(conn: psycopg.Connection) -> bool:
    row = conn.execute(
        "SELECT to_regclass('public.tenant_migrations') IS NOT NULL "
        "AND to_regclass('public.tenant_registry') IS NOT NULL"
    ).fetchone()
    return bool(row and row[0])


def require_infrastructure(conn: psycopg.Connection) -> None:
    if not infrastructure_ready(conn):
        raise RunError(
            "The public schema has no tenancy tables yet: run "
            "`manage.py migrate_tenants --public` first."
        )


def pending_django_migrations() -> list[str]:
    """Django migrations of the public schema not yet applied (the infrastructure)."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    connection.set_schema_to_public()
    executor = MigrationExecutor(connection)
    targets = executor.loader.graph.leaf_nodes()
    pending = [f"{m.app_label}.{m.name}" for m, _ in executor.migration_plan(targets)]
    if not pending and not connection.in_atomic_block:
        # The engine works on its own connections: a run holds jobs + 1, not one more idle.
        connection.close()
    return pending


def ensure_infrastructure(verbosity: int = 0) -> list[str]:
    """Apply the public schema's Django migrations (the seed's 'creates infrastructure')."""
    if not pending_django_migrations():
        return []
    from django.core.management import call_command

    # Two runs on an empty database must not both create the tables: queue on a lock.
    require_session("Creating the public schema's tables")
    with _connect() as conn:
        if not db.wait_lock(conn, INFRASTRUCTURE_LOCK, float(conf.setting("SCHEMA_LOCK_WAIT_S"))):
            raise RunError("Another process kept the infrastructure lock; try again.")
        try:
            pending = pending_django_migrations()
            if pending:
                call_command(
                    "migrate_schemas",
                    shared=True,
                    interactive=False,
                    verbosity=verbosity,
                    sql_migrations=False,
                )
        finally:
            db.unlock(conn, INFRASTRUCTURE_LOCK)
    return pending


# -- plans -------------------------------------------------------------------------------
@contextmanager
def connect_ready() -> Iterator[psycopg.Connection]:
    """A pooled connection to a database whose tenancy tables exist (else RunError)."""
    with db.pooled(conf.conninfo()) as conn:
        require_infrastructure(conn)
        yield conn


def _connect() -> AbstractContextManager[psycopg.Connection]:
    """The coordinator's connection (pooled: a run started right after another operation
    reuses its connection, so a run holds at most jobs + 1)."""
    return db.pooled(conf.conninfo())


def _scope(public: bool, tenants: bool, only: list[str] | None) -> tuple[bool, bool, list | None]:
    if only:
        only = [validate_schema_name(s) for s in only]
        public = public or PUBLIC_SCHEMA in only
        tenants = tenants or any(s != PUBLIC_SCHEMA for s in only)
    return public, tenants, only


def make_plan(*, public: bool = True, tenants: bool = True, only: list[str] | None = None) -> Plan:
    public, tenants, only = _scope(public, tenants, only)
    with connect_ready() as conn:
        plan = build_plan(conn, conf.migrations_dir(), public=public, tenants=tenants, only=only)
    _check_only(plan, only)
    return plan


def _check_only(plan: Plan, only: list[str] | None) -> None:
    if only:
        known = {s.schema for s in plan.schemas}
        unknown = [s for s in only if s not in known]
        if unknown:
            raise RunError(
                f"Not a registered tenant schema: {', '.join(unknown)}. "
                "`manage.py tenant_list` shows the registered ones."
            )


def refusals(plan: Plan, *, allow_missing: bool, allow_out_of_order: bool) -> list[str]:
    """Why the ledger and the files disagree; a run that finds any applies nothing."""
    reasons: list[str] = []
    drift: dict[str, list[str]] = {}
    for s in plan.schemas:
        for d in s.drift:
            drift.setdefault(f"{d.migration.scope}/{d.migration.name}", []).append(s.schema)
    for name, schemas in drift.items():
        reasons.append(
            f"drift: {name} changed after it was applied (checksum differs) in "
            f"{_names(schemas)}; restore the file, or accept it with "
            f"`migrate_tenants --accept-checksum {name.split('/')[1].split('_')[0]}`"
        )
    if not allow_missing:
        missing: dict[str, list[str]] = {}
        for s in plan.schemas:
            for a in s.missing:
                missing.setdefault(f"{s.scope}/{a.name}", []).append(s.schema)
        for name, schemas in missing.items():
            reasons.append(
                f"missing file: {name} is recorded as applied in {_names(schemas)} but is not on "
                "disk (pass --allow-missing to go on)"
            )
    if not allow_out_of_order:
        late: dict[str, list[str]] = {}
        for s in plan.schemas:
            for m in s.out_of_order:
                late.setdefault(f"{s.scope}/{m.name}", []).append(s.schema)
        for name, schemas in late.items():
            reasons.append(
                f"out of order: {name} is numbered below migrations already applied in "
                f"{_names(schemas)} (renumber it, or pass --allow-out-of-order)"
            )
    return reasons


def fleet_problems(conn: psycopg.Connection, plan: Plan) -> list[str]:
    """What a CI gate must not pass although nothing is pending: registered tenants whose
    schema is gone, and schemas whose last attempt failed and is still undone. (Drift,
    missing and out-of-order files are refusals, reported before this.)"""
    latest = ledger.latest_attempts(conn)
    problems = [
        f"missing schema: {s.schema} is registered but its schema does not exist "
        f"(`manage.py tenant_recreate {s.schema}` rebuilds it)"
        for s in plan.schemas
        if not s.schema_exists
    ]
    for s in plan.schemas:
        status, error, _ = latest.get(s.schema, (None, None, None))
        if s.schema_exists and ledger.failed_last(status, bool(s.pending), s.schema_exists):
            problems.append(f"failed: the last attempt on {s.schema} failed: {error}")
    return problems


def fit_jobs(conn: psycopg.Connection, jobs: int) -> tuple[int, str | None]:
    """``jobs`` capped by the connections the server has free (with a margin for others):
    more workers than that fail with 'too many clients'."""
    row = conn.execute(
        "SELECT current_setting('max_connections')::int "
        "- current_setting('superuser_reserved_connections')::int "
        "- (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
    ).fetchone()
    free = int(row[0]) if row else jobs
    cap = max(1, free - JOBS_MARGIN)
    if jobs <= cap:
        return jobs, None
    return cap, (
        f"--jobs {jobs} capped to {cap}: the server has {free} connection(s) free "
        f"(max_connections minus those in use), and {JOBS_MARGIN} are left for others"
    )


def check_files(plan: Plan) -> tuple[list[str], list[str]]:
    """(refusals, lint warnings) of the plan's pending files. A refusal (transaction
    control, session state, a tenant file reaching outside its schema) stops the whole run
    before anything runs; warnings are printed. Every problem is listed at once."""
    pending = {(m.scope, m.version): m for s in plan.schemas for m in s.pending}
    if not pending:
        return [], []
    ordered = sorted(pending.values(), key=lambda m: (m.scope, m.number))
    refused = [str(p) for m in ordered for p in rules.refusals(m)]
    if refused:
        return refused, []
    scopes = {m.scope for m in ordered}
    # All files of those scopes give the rules their context (which tables exist already).
    context = [m for scope in sorted(scopes) for m in plan.migrations.get(scope, [])]
    applied = {str(m.path) for m in context} - {str(m.path) for m in ordered}
    try:
        problems = rules.lint(context, conf.lint_severities())
    except rules.LintConfigError as exc:
        raise RunError(f"TENANCY['LINT']: {exc}") from exc
    return [], [str(p) for p in problems if p.path not in applied]


def _names(schemas: list[str], limit: int = 5) -> str:
    shown = ", ".join(schemas[:limit])
    return shown + (f" and {len(schemas) - limit} more" if len(schemas) > limit else "")


# -- runs --------------------------------------------------------------------------------
class _Recorder:
    """Keeps the run's row current while it runs (for the admin and `migrate_status`)."""

    def __init__(self, conn: psycopg.Connection, run_id: int, total: int):
        self.conn, self.run_id, self.total = conn, run_id, total
        self.done = self.failed = 0
        self._last = 0.0

    def on_result(self, result: SchemaResult) -> None:
        self.done += 1
        self.failed += result.failed
        now = time.monotonic()
        if now - self._last >= 0.5 or self.done == self.total:
            self._last = now
            self.flush()

    def flush(self) -> None:
        self.conn.execute(
            "UPDATE public.tenant_migration_runs SET done_schemas = %s, failed_schemas = %s, "
            "heartbeat_at = now() WHERE id = %s",
            [self.done, self.failed, self.run_id],
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
        """,
        [DEAD_AFTER_S],
    )
    return cur.rowcount


def close_dead_runs_now() -> int:
    """``close_dead_runs`` on a connection of its own (status pages, a starting worker)."""
    with _connect() as conn:
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
def _interruptible(run_id: int) -> Iterator[None]:
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
    with _connect() as conn, conn.transaction():
        closed = conn.execute(
            "UPDATE public.tenant_migration_runs SET status = 'failed', error = %s, "
            "finished_at = now() WHERE id = %s AND status IN ('queued', 'running')",
            [error, run_id],
        ).rowcount
        if closed:
            details = {"run_id": run_id, "outcome": "failed", "error": error}
            audit.write(conn, "migrate.run", actor=actor, details=details)


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
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO public.tenant_migration_run_results "
                "(run_id, tenant_schema, status, versions, error, duration_ms) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                [
                    (run_id, r.schema, r.status, Jsonb(r.versions), r.error, r.duration_ms)
                    for r in touched
                ],
            )
        conn.execute(
            "UPDATE public.tenant_migration_runs SET status = %s, error = %s, finished_at = now(),"
            " done_schemas = %s, failed_schemas = %s WHERE id = %s",
            [status, error, len(results), sum(r.failed for r in results), run_id],
        )


@dataclass
class RunRequest:
    """What a migration run is asked to do; every entry point (commands, the admin's job,
    recovery verbs, tests) builds one and hands it to ``run``."""

    public: bool = True
    tenants: bool = True
    only: list[str] | None = None
    dry_run: bool = False
    check: bool = False
    jobs: int = 1
    fail_fast: bool = False
    fake: bool = False
    allow_missing: bool = False
    allow_out_of_order: bool = False
    up_to: int | None = None  # a baseline: only the files up to this version
    actor: str = "system"
    run_id: int | None = None  # a run queued by the admin, taken over
    on_event: Callable[[Event], None] | None = None
    on_plan: Callable[[Plan, int], None] | None = None  # the plan and the workers it gets

    @property
    def looking(self) -> bool:
        """A dry run or a check: report, change nothing."""
        return self.dry_run or self.check


def migrate(**request: Any) -> RunReport:
    """``run`` with the request's fields as keywords."""
    return run(RunRequest(**request))


def run(request: RunRequest) -> RunReport:
    """plan → refuse → (report, for a dry run) → execute → record."""
    request.public, request.tenants, request.only = _scope(
        request.public, request.tenants, request.only
    )
    kind = "fake" if request.fake else "migrate"
    report = RunReport(kind=kind, plan=None, dry_run=request.looking)
    report.django_migrations = _infrastructure(request)
    if report.django_migrations == ALL_PENDING:
        return _looked_fresh(request, report)
    with connect_ready() as conn:
        report.plan = _plan(conn, request)
        if _refused(conn, request, report):
            return report
        if request.looking:
            return _looked(conn, request, report)
        return _applied(conn, request, report)


ALL_PENDING = ["(all)"]  # the Django migrations of a database without the tenancy tables


def _infrastructure(request: RunRequest) -> list[str]:
    """The public schema's Django migrations: applied (a run), or listed (a dry run)."""
    if request.public and not request.looking:
        return ensure_infrastructure()
    if not request.looking:
        return []
    with _connect() as conn:
        ready = infrastructure_ready(conn)
    if not ready:
        return ALL_PENDING
    return pending_django_migrations() if request.public else []


def _looked_fresh(request: RunRequest, report: RunReport) -> RunReport:
    """A dry run on a database without the tenancy tables: everything public is pending
    (the infrastructure, then every public file) and there are no tenants yet."""
    directory = conf.migrations_dir()
    migrations = {PUBLIC: discover(directory, PUBLIC), TENANT: discover(directory, TENANT)}
    schemas = [plan_schema(PUBLIC_SCHEMA, PUBLIC, migrations[PUBLIC], {})] if request.public else []
    report.plan = Plan(migrations=migrations, schemas=schemas)
    rejected, report.warnings = check_files(report.plan)
    report.refused = rejected
    if rejected:
        report.exit_code = EXIT_FAILED
    elif request.check:
        report.exit_code = EXIT_PENDING
    return report


def _plan(conn: psycopg.Connection, request: RunRequest) -> Plan:
    plan = build_plan(
        conn,
        conf.migrations_dir(),
        public=request.public,
        tenants=request.tenants,
        only=request.only,
    )
    _check_only(plan, request.only)
    if request.up_to is not None:
        up_to = request.up_to
        plan.migrations = {
            k: [m for m in v if m.number <= up_to] for k, v in plan.migrations.items()
        }
        for s in plan.schemas:
            s.pending = [m for m in s.pending if m.number <= up_to]
    return plan


def _refused(conn: psycopg.Connection, request: RunRequest, report: RunReport) -> bool:
    """Files that break the refusal rules, drift, missing and out-of-order files stop the
    run before anything runs (and are recorded, unless this is a dry run)."""
    assert report.plan is not None
    rejected, report.warnings = check_files(report.plan)
    report.refused = rejected + refusals(
        report.plan,
        allow_missing=request.allow_missing,
        allow_out_of_order=request.allow_out_of_order,
    )
    if not report.refused:
        return False
    report.exit_code = EXIT_FAILED if rejected else EXIT_DRIFT
    if not request.looking:
        details = {"reasons": report.refused}
        audit.write(conn, "migrate.refused", actor=request.actor, details=details)
        if request.run_id is not None:
            start_run(conn, "migrate", request.actor, {}, 0, request.run_id)
            error = "\n".join(report.refused)
            finish_run(conn, request.run_id, [], status="refused", error=error)
    return True


def _looked(conn: psycopg.Connection, request: RunRequest, report: RunReport) -> RunReport:
    """A dry run or a check: what is pending, and what is broken."""
    assert report.plan is not None
    report.problems = fleet_problems(conn, report.plan)
    pending = report.plan.pending_count or (report.django_migrations and request.public)
    if report.problems:
        report.exit_code = EXIT_FAILED
    elif request.check and pending:
        report.exit_code = EXIT_PENDING
    return report


def _applied(conn: psycopg.Connection, request: RunRequest, report: RunReport) -> RunReport:
    plan = report.plan
    assert plan is not None
    todo = plan.with_pending
    missing_schema = [s for s in plan.schemas if not s.schema_exists]
    if not todo and not missing_schema and request.run_id is None:
        return report  # nothing to do: no run row, no audit row
    alone = sorted({f"{m.scope}/{m.name}" for s in todo for m in s.pending if not m.transactional})
    if alone and not request.fake:
        require_session(f"Non-transactional migration {', '.join(alone)}")
    report.run_id = start_run(
        conn,
        report.kind,
        request.actor,
        _recorded_options(request),
        len(todo) + len(missing_schema),
        request.run_id,
    )
    executor, handle = _executor(conn, request, report)
    for s in missing_schema:
        error = (
            f"schema {s.schema} does not exist although the tenant is registered; "
            "recreate it with `manage.py tenant_recreate`"
        )
        result = SchemaResult(s.schema, "failed", error=error)
        report.results.append(result)
        handle(Event("schema_finished", s.schema, result=result))
    with _interruptible(report.run_id), heartbeat(conn, report.run_id):
        stop_error = _execute(executor, plan, todo, report, fail_fast=request.fail_fast)
    _record(conn, request, report, stop_error)
    return report


def _recorded_options(request: RunRequest) -> dict[str, Any]:
    names = ("public", "tenants", "only", "jobs", "fail_fast", "fake")
    return {name: getattr(request, name) for name in names}


def _executor(
    conn: psycopg.Connection, request: RunRequest, report: RunReport
) -> tuple[Executor, Callable[[Event], None]]:
    """The engine for this run, its workers fitted to the server, its events kept on the
    run's row and passed on."""
    assert report.plan is not None and report.run_id is not None
    recorder = _Recorder(conn, report.run_id, len(report.plan.with_pending))

    def handle(event: Event) -> None:
        if event.kind == "schema_finished" and event.result is not None:
            recorder.on_result(event.result)
        if request.on_event:
            request.on_event(event)

    jobs, note = fit_jobs(conn, request.jobs)
    report.notes += [note] if note else []
    if request.on_plan:
        request.on_plan(report.plan, jobs)
    options = conf.engine_options(
        jobs=jobs,
        fail_fast=request.fail_fast,
        actor=request.actor,
        run_id=report.run_id,
        fake=request.fake,
    )
    return Executor(conf.conninfo(), options, handle), handle


def _record(
    conn: psycopg.Connection, request: RunRequest, report: RunReport, stop_error: str | None
) -> None:
    assert report.run_id is not None
    status = "failed" if report.failed else "succeeded"
    finish_run(conn, report.run_id, report.results, status=status, error=stop_error)
    audit.write(
        conn,
        "migrate.fake" if request.fake else "migrate.run",
        actor=request.actor,
        details={
            "run_id": report.run_id,
            "outcome": status,
            "applied": {r.schema: r.versions for r in report.results if r.versions},
            "failed": {r.schema: r.error for r in report.failed},
        },
    )
    report.exit_code = EXIT_FAILED if report.failed else EXIT_OK


def _execute(
    executor: Executor, plan: Plan, todo: list, report: RunReport, *, fail_fast: bool
) -> str | None:
    """Public first, then tenants (not at all when public failed). Returns why it stopped
    early, if it did."""
    for scope in (PUBLIC, TENANT):
        work = [
            (s.schema, plan.migrations[scope], s.pending)
            for s in todo
            if s.scope == scope and s.schema_exists
        ]
        if not work:
            continue
        if fail_fast and report.failed:
            return None
        results = executor.migrate(work)
        report.results.extend(results)
        if scope == PUBLIC and any(r.failed for r in results):
            return "public schema failed; tenant migrations were not attempted"
    return None


def _rollback_refusals(targets: list[tuple[str, list[tuple]]]) -> list[str]:
    """The refusal rules on the rollback SQL the ledger recorded (a DOWN section is run as
    recorded when the file was applied, so it is checked here, not only in the file)."""
    seen: dict[tuple[str, str, str], list[str]] = {}
    for schema, rows in targets:
        scope = PUBLIC if schema == PUBLIC_SCHEMA else TENANT
        for _, name, down in rows:
            if down and down.strip():
                seen.setdefault((scope, name, down), [])
    refused: list[str] = []
    for scope, name, down in seen:
        label = f"{scope}/{name} (DOWN, as recorded in the ledger)"
        refused += [str(p) for p in rules.rollback_refusals(label, down, scope)]
    return refused


def rollback(
    version: str,
    *,
    public: bool = False,
    tenants: bool = True,
    only: list[str] | None = None,
    dry_run: bool = False,
    jobs: int = 1,
    actor: str = "system",
    on_event: Callable[[Event], None] | None = None,
) -> RunReport:
    """Undo every migration numbered ``version`` or above, newest first, on the schemas
    whose ledger shows them; each schema in its own transaction."""
    if not version.isdigit():
        raise RunError(f"--rollback takes a migration number such as 004, not {version!r}.")
    public, tenants, only = _scope(public, tenants, only)
    report = RunReport(kind="rollback", plan=None, dry_run=dry_run)
    with connect_ready() as conn:
        plan = build_plan(conn, conf.migrations_dir(), public=public, tenants=tenants, only=only)
        _check_only(plan, only)
        report.plan = plan
        found = ledger.rollback_rows_by_schema(conn, [s.schema for s in plan.schemas], int(version))
        targets = [(s.schema, found[s.schema]) for s in plan.schemas if s.schema in found]
        report.refused = _rollback_refusals(targets)
        if report.refused:
            report.exit_code = EXIT_FAILED
            return report
        if dry_run:
            for schema, rows in targets:
                missing = [n for _, n, down in rows if not (down and down.strip())]
                report.results.append(
                    SchemaResult(
                        schema,
                        "failed" if missing else "planned",
                        versions=[v for v, _, _ in rows],
                        error=("no rollback SQL recorded for " + ", ".join(missing))
                        if missing
                        else None,
                    )
                )
                if on_event:
                    for _, name, down in rows:
                        on_event(Event("sql", schema, sql=down or "", message=name))
            report.exit_code = EXIT_FAILED if report.failed else EXIT_OK
            return report
        if not targets:
            return report  # nothing recorded at or above the version: no run row, no audit
        require_session("A rollback")
        report.run_id = start_run(
            conn, "rollback", actor, {"version": version, "only": only}, len(targets)
        )
        jobs, note = fit_jobs(conn, jobs)
        report.notes += [note] if note else []
        executor = Executor(conf.conninfo(), conf.engine_options(jobs=jobs, actor=actor), on_event)
        with _interruptible(report.run_id), heartbeat(conn, report.run_id):
            report.results = executor.rollback((schema, int(version)) for schema, _ in targets)
        status = "failed" if report.failed else "succeeded"
        finish_run(conn, report.run_id, report.results, status=status)
        audit.write(
            conn,
            "migrate.rollback",
            actor=actor,
            details={
                "run_id": report.run_id,
                "version": version,
                "outcome": status,
                "rolled_back": {r.schema: r.versions for r in report.results if r.versions},
                "failed": {r.schema: r.error for r in report.failed},
            },
        )
        report.exit_code = EXIT_FAILED if report.failed else EXIT_OK
        return report
