"""Migration runs: plan, refuse, look (a dry run) or execute public then tenants, record
and audit.

This is the one place a run is orchestrated; ``migrate_tenants``, ``migrate_schemas``,
the admin's background job and the tests all call ``migrate``/``rollback`` here. The run
tables are written by ``run_records``; the infrastructure and connections come from
``infrastructure``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from tenancy import conf
from tenancy.engine import audit, citus, db, ledger, ownership, rules
from tenancy.engine.errors import (
    EXIT_DRIFT,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PENDING,
    Interrupted,
    RunError,
    TenancyError,
)
from tenancy.engine.executor import Event, Executor, SchemaResult
from tenancy.engine.names import (
    PUBLIC_SCHEMA,
    app_role,
    owner_group_role,
    validate_schema_name,
)
from tenancy.engine.plan import Plan, build_plan, plan_schema
from tenancy.engine.source import PUBLIC, TENANT, Migration, version_of
from tenancy.services import admin_links, alerts, backups, django_steps, schema_order, steps
from tenancy.services import ownership as service_ownership
from tenancy.services import pool as pool_service
from tenancy.services.infrastructure import (
    connect,
    connect_ready,
    ensure_infrastructure,
    infrastructure_ready,
    pending_django_migrations,
    require_session,
)
from tenancy.services.run_records import (
    Recorder,
    finish_run,
    heartbeat,
    interruptible,
    start_run,
)

__all__ = ["Interrupted", "RunError", "RunReport", "RunRequest", "migrate", "rollback", "run"]

JOBS_MARGIN = 5  # connections a run leaves free for the application and other sessions


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
    # The warm pool's schemas, migrated after the tenants, shown apart (services/pool.py).
    pool: list[pool_service.PoolResult] = field(default_factory=list)

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
            "pool": [r.to_dict() for r in self.pool],
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


# -- plans -------------------------------------------------------------------------------


def _scope(public: bool, tenants: bool, only: list[str] | None) -> tuple[bool, bool, list | None]:
    if only:
        only = [validate_schema_name(s) for s in only]
        public = public or PUBLIC_SCHEMA in only
        tenants = tenants or any(s != PUBLIC_SCHEMA for s in only)
    return public, tenants, only


def make_plan(*, public: bool = True, tenants: bool = True, only: list[str] | None = None) -> Plan:
    public, tenants, only = _scope(public, tenants, only)
    with connect_ready() as conn:
        plan = steps.plan(conn, public=public, tenants=tenants, only=only)
    _check_only(plan, only)
    return schema_order.apply_configured_order(plan)


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
    """Why the ledger and the files disagree; a run that finds any applies nothing. Each
    reason names the command that resolves it and the step's page in the admin."""
    drift: dict[tuple[str, str, str], list[str]] = {}
    missing: dict[tuple[str, str, str], list[str]] = {}
    late: dict[tuple[str, str, str], list[str]] = {}
    for s in plan.schemas:
        for d in s.drift:
            m = d.migration
            drift.setdefault((m.scope, m.name, m.version), []).append(s.schema)
        for a in s.missing if not allow_missing else ():
            missing.setdefault((s.scope, a.name, version_of(a.name)), []).append(s.schema)
        for m in s.out_of_order if not allow_out_of_order else ():
            late.setdefault((s.scope, m.name, m.version), []).append(s.schema)
    return [
        *(
            f"drift: {scope}/{name} changed after it was applied (checksum differs) in "
            f"{names(schemas)}; restore the file, or accept it with `migrate_tenants "
            f"--accept-checksum {version}{' --public' if scope == PUBLIC else ''}`"
            + _page(scope, version)
            for (scope, name, version), schemas in drift.items()
        ),
        *(
            f"missing file: {scope}/{name} is recorded as applied in {names(schemas)} but "
            "is not on disk (restore it, or pass --allow-missing to go on)" + _page(scope, version)
            for (scope, name, version), schemas in missing.items()
        ),
        *(
            f"out of order: {scope}/{name} is numbered below migrations already applied in "
            f"{names(schemas)} (renumber it, or pass --allow-out-of-order)" + _page(scope, version)
            for (scope, name, version), schemas in late.items()
        ),
    ]


def _page(scope: str, version: str) -> str:
    return admin_links.on_page(admin_links.step_page(scope, version))


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


def check_files(
    plan: Plan, severities: Mapping[str, str], refusing: Collection[str] = ()
) -> tuple[list[str], list[str]]:
    """(refusals, lint warnings) of the plan's pending files, linted with ``severities``
    (``lint_severities``). A refusal (transaction control, session state, a tenant file
    reaching outside its schema, and an error of a lint rule in ``refusing``) stops the
    whole run before anything runs; warnings are printed. Every problem is listed at once."""
    # SQL files only: a Django step's SQL is checked by the same rules as it is compiled.
    pending = {(m.scope, m.version): m for s in plan.schemas for m in s.pending if m.is_sql_file}
    if not pending:
        return [], []
    ordered = sorted(pending.values(), key=lambda m: (m.scope, m.number))
    refused = [str(p) for m in ordered for p in rules.refusals(m)]
    if refused:
        return refused, []
    scopes = {m.scope for m in ordered}
    # All files of those scopes give the rules their context (which tables exist already).
    context = [
        m for scope in sorted(scopes) for m in plan.migrations.get(scope, []) if m.is_sql_file
    ]
    applied = {str(m.path) for m in context} - {str(m.path) for m in ordered}
    try:
        problems = rules.lint(context, severities)
    except rules.LintConfigError as exc:
        raise RunError(f"TENANCY['LINT']: {exc}") from exc
    found = [p for p in problems if p.path not in applied]
    refused = [p for p in found if p.rule in refusing and p.severity == rules.ERROR]
    return [str(p) for p in refused], [str(p) for p in found if p not in refused]


def lint_severities(conn: psycopg.Connection | None) -> dict[str, str]:
    """The settings' lint severities, with the Citus rules on when the database is a Citus
    cluster."""
    severities = conf.lint_severities()
    return rules.for_citus(severities) if conn is not None and db.citus(conn) else severities


def names(schemas: list[str], limit: int = 5) -> str:
    """Schema names for a message: the first ``limit``, then how many more."""
    shown = ", ".join(schemas[:limit])
    return shown + (f" and {len(schemas) - limit} more" if len(schemas) > limit else "")


# -- runs --------------------------------------------------------------------------------


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
    max_failures: int | None = None  # start no schema once more have failed (a rollout)
    fake: bool = False
    allow_missing: bool = False
    allow_out_of_order: bool = False
    up_to: int | None = None  # a baseline: only the files up to this version
    actor: str = "system"
    run_id: int | None = None  # a run queued by the admin, taken over
    on_event: Callable[[Event], None] | None = None
    on_plan: Callable[[Plan, int], None] | None = None  # the plan and the workers it gets
    backup_dir: str | None = None  # back up each schema before its files run (backups.py)
    # Worker connections kept across runs (executor.kept_workers: a rollout's stages).
    workers: ConnectionPool | None = None

    @property
    def looking(self) -> bool:
        """A dry run or a check: report, change nothing."""
        return self.dry_run or self.check


def migrate(**request: Any) -> RunReport:
    """``run`` with the request's fields as keywords."""
    return run(RunRequest(**request))


def set_up_public_if_missing(actor: str) -> RunReport | None:
    """On a database without the tenancy tables, what `migrate_tenants --public` does (the
    tables, then every public file), so that a first `tenant_create` on a fresh database
    works as the migration guide's testing pipeline runs it. None when the tables exist."""
    with connect() as conn:
        if infrastructure_ready(conn):
            return None
    return run(RunRequest(public=True, tenants=False, actor=actor))


def run(request: RunRequest) -> RunReport:
    """plan → refuse → (report, for a dry run) → execute → record."""
    request.public, request.tenants, request.only = _scope(
        request.public, request.tenants, request.only
    )
    kind = "fake" if request.fake else "migrate"
    if request.backup_dir is not None:
        _check_backup(request)
    report = RunReport(kind=kind, plan=None, dry_run=request.looking)
    report.django_migrations = _infrastructure(request)
    if report.django_migrations == ALL_PENDING:
        return _looked_fresh(request, report)
    with connect_ready() as conn:
        report.plan = _plan(conn, request)
        if _refused(conn, request, report):
            return report
        report = (_looked if request.looking else _applied)(conn, request, report)
    return _with_pool(request, report)


def _with_pool(request: RunRequest, report: RunReport) -> RunReport:
    """After every tenant, the pool's schemas (a run of all tenants only, not a fake): a
    pool schema is kept at the tenants' files, so a claim rarely has a file to apply. Their
    outcome is reported apart and does not change the exit code: a failed one is marked
    broken and never handed out."""
    if request.tenants and request.only is None and not request.fake and request.up_to is None:
        try:
            report.pool = pool_service.migrate_entries(actor=request.actor, dry_run=request.looking)
        except TenancyError as exc:  # e.g. an applied file the refusal rules now refuse
            report.notes.append(f"pool schemas not migrated: {exc}")
    return report


ALL_PENDING = ["(all)"]  # the Django migrations of a database without the tenancy tables


def _infrastructure(request: RunRequest) -> list[str]:
    """The public schema's Django migrations: applied (a run), or listed (a dry run)."""
    if request.public and not request.looking:
        return ensure_infrastructure()
    if not request.looking:
        return []
    with connect() as conn:
        ready = infrastructure_ready(conn)
    if not ready:
        return ALL_PENDING
    return pending_django_migrations() if request.public else []


def _looked_fresh(request: RunRequest, report: RunReport) -> RunReport:
    """A dry run on a database without the tenancy tables: everything public is pending
    (the infrastructure, then every public file) and there are no tenants yet."""
    migrations = steps.migrations()
    schemas = [plan_schema(PUBLIC_SCHEMA, PUBLIC, migrations[PUBLIC], {})] if request.public else []
    report.plan = Plan(migrations=migrations, schemas=schemas)
    rejected, report.warnings = check_files(report.plan, lint_severities(None))
    report.refused = rejected
    if rejected:
        report.exit_code = EXIT_FAILED
    elif request.check:
        report.exit_code = EXIT_PENDING
    return report


def _plan(conn: psycopg.Connection, request: RunRequest) -> Plan:
    plan = steps.plan(conn, public=request.public, tenants=request.tenants, only=request.only)
    _check_only(plan, request.only)
    schema_order.apply_configured_order(plan)
    if request.up_to is not None:
        up_to = request.up_to
        plan.migrations = {k: _up_to(v, up_to) for k, v in plan.migrations.items()}
        for s in plan.schemas:
            s.steps = _up_to(s.steps, up_to)
            kept = set(s.steps)
            s.pending = [m for m in s.pending if m in kept]
    return plan


def ungranted_references(conn: psycopg.Connection, plan: Plan) -> list[str]:
    """Pending tenant files with a foreign key to a public table the tenant owner roles may
    not reference: each would fail in every schema with "permission denied" (and break
    every warm-pool entry), so the run refuses before any schema, naming the grant.
    Grants that a pending public file, or the tenant apps' own step, will make count."""
    pending = {m for s in plan.for_scope(TENANT) for m in s.pending if m.is_sql_file}
    if not pending:
        return []
    paths = {str(m.path) for m in pending}
    wanted = rules.shared_references([m for m in plan.migrations[TENANT] if m.is_sql_file])
    wanted = {t: [p for p in places if p[0] in paths] for t, places in wanted.items()}
    wanted = {t: places for t, places in wanted.items() if places}
    public_pending = [m for s in plan.for_scope(PUBLIC) for m in s.pending]
    coming = rules.granted_references(public_pending) | set(django_steps.shared_references())
    tables = sorted(t for t in wanted if t not in coming)
    if not tables:
        return []
    ungranted = ownership.not_referenceable(conn, tables, owner_group_role(conn.info.dbname))
    return [
        f"{path}:{line}: a foreign key to public.{table}, which tenant owner roles may not "
        f"reference; add a public migration with GRANT REFERENCES ON public.{table} TO "
        "{{owner_group}} (nothing was run)"
        for table in ungranted
        for path, line in wanted[table]
    ]


def _up_to(ordered: list[Migration], up_to: int) -> list[Migration]:
    """The steps up to SQL version ``up_to``: everything before the first SQL file above it
    (a Django step between two kept files is kept)."""
    kept: list[Migration] = []
    for m in ordered:
        if m.is_sql_file and m.number > up_to:
            break
        kept.append(m)
    return kept


def _refused(conn: psycopg.Connection, request: RunRequest, report: RunReport) -> bool:
    """Files that break the refusal rules, drift, missing and out-of-order files stop the
    run before anything runs (and are recorded, unless this is a dry run)."""
    assert report.plan is not None
    # On Citus what Citus refuses would fail in every tenant: refused here, before any.
    refusing = rules.CITUS_RULES if db.citus(conn) else ()
    rejected, report.warnings = check_files(report.plan, lint_severities(conn), refusing)
    rejected += ungranted_references(conn, report.plan)
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
        else:  # no run row to record it on: finish_run's alert has nothing to read
            alerts.unrecorded_refusal(
                actor=request.actor, reasons=report.refused, options=_recorded_options(request)
            )
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
    with interruptible(report.run_id), heartbeat(conn, report.run_id):
        nodes = citus.tenant_nodes(conn)  # empty off Citus
        stop_error = _execute(
            conn, executor, plan, todo, report, nodes, fail_fast=request.fail_fast
        )
    _record(conn, request, report, stop_error)
    return report


def _check_backup(request: RunRequest) -> None:
    """--backup-dir, before anything changes: only where files run, and only with a
    pg_dump of the server's version at hand."""
    if request.looking or request.fake:
        raise RunError(
            "--backup-dir backs up schemas right before their files run: a dry run, a check "
            "or --fake runs none; leave it out."
        )
    backups.check_backup_dir(request.backup_dir or "")


def _recorded_options(request: RunRequest) -> dict[str, Any]:
    names = ("public", "tenants", "only", "jobs", "fail_fast", "max_failures", "fake", "backup_dir")
    return {name: getattr(request, name) for name in names}


def _executor(
    conn: psycopg.Connection, request: RunRequest, report: RunReport
) -> tuple[Executor, Callable[[Event], None]]:
    """The engine for this run, its workers fitted to the server, its events kept on the
    run's row and passed on."""
    assert report.plan is not None and report.run_id is not None
    recorder = Recorder(conn, report.run_id, len(report.plan.with_pending))

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
        max_failures=request.max_failures,
        actor=request.actor,
        run_id=report.run_id,
        fake=request.fake,
        before_schema=backups.before_schema(
            request.backup_dir, run_id=report.run_id, actor=request.actor
        )
        if request.backup_dir
        else None,
    )
    return Executor(conf.conninfo(), options, handle, kept=request.workers), handle


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
    _audit_schemas(conn, "migrate.fake" if request.fake else "migrate.run", request.actor, report)
    report.exit_code = EXIT_FAILED if report.failed else EXIT_OK


def _audit_schemas(conn: psycopg.Connection, action: str, actor: str, report: RunReport) -> None:
    """A row per schema the run touched (``<action>.schema``, with tenant_schema set): a
    tenant's page and a search by schema show its own part of each run."""
    rows = [
        (
            r.schema,
            {"run_id": report.run_id, "outcome": r.status, "versions": r.versions}
            | ({"error": r.error} if r.error else {}),
        )
        for r in report.results
        if r.status != "skipped"
    ]
    audit.write_per_schema(conn, f"{action}.schema", actor=actor, rows=rows)


def _execute(
    conn: psycopg.Connection,
    executor: Executor,
    plan: Plan,
    todo: list,
    report: RunReport,
    nodes: dict[str, str],
    *,
    fail_fast: bool,
) -> str | None:
    """Public first, then tenants (not at all when public failed), taking the Citus worker
    nodes in turn (``nodes``: schema → node). Returns why it stopped early, if it did."""
    for scope in (PUBLIC, TENANT):
        work = [
            (s.schema, s.steps, s.pending) for s in todo if s.scope == scope and s.schema_exists
        ]
        work = citus.spread_over_nodes(work, lambda item: nodes.get(item[0]))
        if scope == TENANT and (stop := _replicate_shared_tables(conn, report)):
            return stop
        if not work:
            continue
        if scope == PUBLIC:
            _ensure_shared_roles(conn)
        if fail_fast and report.failed:
            return None
        if scope == TENANT and any(not m.is_sql_file for m in plan.migrations[TENANT]):
            _grant_references(conn, executor.options.actor)
        results = executor.migrate(work)
        report.results.extend(results)
        if scope == PUBLIC and any(r.failed for r in results):
            return "public schema failed; tenant migrations were not attempted"
    return None


def _ensure_shared_roles(conn: psycopg.Connection) -> None:
    """The app role and the owner group, before public files run: they may grant to them
    ({{app_role}}, {{owner_group}}), and on a fresh database no tenant has made them yet.
    Roles belong to the server, so a concurrent run may make one first: that is fine."""
    database = conn.info.dbname
    missing = ownership.missing_roles(conn, [app_role(database), owner_group_role(database)])
    for statement in ownership.shared_roles_statements(database, missing):
        with suppress(psycopg.errors.DuplicateObject):
            conn.execute(statement)


def _grant_references(conn: psycopg.Connection, actor: str) -> None:
    """The public step of tenant apps' foreign keys to shared tables: the owner group may
    reference those tables (``django_steps.grant_references``), audited when it changes."""
    _ensure_shared_roles(conn)
    service_ownership.grant_shared_tables(conn)  # TENANT_SHARED_TABLES (none by default)
    granted = django_steps.grant_references(conn)
    if granted:
        audit.write(conn, "tenant_apps.grant_references", actor=actor, details={"tables": granted})


def _replicate_shared_tables(conn: psycopg.Connection, report: RunReport) -> str | None:
    """On Citus, before any tenant file: shared tables that tenant tables may reference
    become reference tables (see ``citus.replicate_shared_tables``). Why the run stops, if
    that fails."""
    try:
        made = citus.replicate_shared_tables(conn, owner_group_role(conn.info.dbname))
    except psycopg.Error as exc:
        return f"making shared tables Citus reference tables failed: {exc}"
    report.notes += [f"{table}: now a Citus reference table (on every node)" for table in made]
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
    whose ledger shows them; or, for ``app.name`` (a tenant app's Django migration), that
    app's steps after it (``app.zero``: all of them), as Django's ``migrate APP NAME``
    would. Each schema in its own transaction. The same steps as a run: plan → refuse →
    look (a dry run) or undo → record."""
    migrations = steps.migrations()
    undo = _django_undo(version, migrations[TENANT]) if not version.isdigit() else None
    public, tenants, only = _scope(public, tenants, only)
    report = RunReport(kind="rollback", plan=None, dry_run=dry_run)
    with connect_ready() as conn:
        target: int | list[str] = int(version) if undo is None else undo
        targets = _rollback_plan(conn, report, target, migrations, public, tenants, only)
        report.refused = _rollback_refusals(targets)
        if report.refused:
            report.exit_code = EXIT_FAILED
            return report
        if dry_run:
            return _rollback_looked(report, targets, on_event)
        if not targets:
            return report  # nothing recorded at or above the version: no run row, no audit
        require_session("A rollback")
        report.run_id = start_run(
            conn, "rollback", actor, {"version": version, "only": only}, len(targets)
        )
        jobs, note = fit_jobs(conn, jobs)
        report.notes += [note] if note else []
        executor = Executor(conf.conninfo(), conf.engine_options(jobs=jobs, actor=actor), on_event)
        with interruptible(report.run_id), heartbeat(conn, report.run_id):
            report.results = executor.rollback(
                (schema, int(version) if undo is None else [r[0] for r in rows])
                for schema, rows in targets
            )
        _record_rollback(conn, report, version, actor)
        return report


_Targets = list[tuple[str, list[tuple]]]  # (schema, its ledger rows to undo, newest first)


def _django_undo(target: str, tenant_steps: list[Migration]) -> list[str]:
    """The Django steps that ``app.name`` (or ``app.zero``) undoes, newest first."""
    app, _, name = target.partition(".")
    ordered = [m for m in tenant_steps if not m.is_sql_file]
    of_app = [m for m in ordered if m.version.split(".", 1)[0] == app]
    if not app or not name or not of_app:
        raise RunError(
            f"--rollback takes a migration number such as 004, or a tenant app's Django "
            f"migration as APP.NAME (or APP.zero), not {target!r}."
        )
    if name == "zero":
        return [m.version for m in reversed(of_app)]
    matches = [i for i, m in enumerate(of_app) if m.version.split(".", 1)[1].startswith(name)]
    if len(matches) != 1:
        raise RunError(f"{target}: no single migration of {app} is named like that.")
    return [m.version for m in reversed(of_app[matches[0] + 1 :])]


def _rollback_plan(
    conn: psycopg.Connection,
    report: RunReport,
    version: int | list[str],
    migrations: dict[str, list[Migration]],
    public: bool,
    tenants: bool,
    only: list[str] | None,
) -> _Targets:
    typed = steps.typed()
    plan = build_plan(conn, migrations, public=public, tenants=tenants, only=only, typed=typed)
    _check_only(plan, only)
    report.plan = plan
    schemas = [s.schema for s in plan.schemas]
    if isinstance(version, int):
        found = ledger.rollback_rows_by_schema(conn, schemas, version)
    else:
        found = ledger.rows_of_versions(conn, schemas, version) if version else {}
    return [(s.schema, found[s.schema]) for s in plan.schemas if s.schema in found]


def _rollback_looked(
    report: RunReport, targets: _Targets, on_event: Callable[[Event], None] | None
) -> RunReport:
    """A dry run: what each schema would undo, and where no rollback SQL was recorded."""
    for schema, rows in targets:
        missing = [n for _, n, down in rows if not (down and down.strip())]
        error = f"no rollback SQL recorded for {', '.join(missing)}" if missing else None
        versions = [v for v, _, _ in rows]
        report.results.append(
            SchemaResult(schema, "failed" if missing else "planned", versions, error=error)
        )
        if on_event:
            for _, name, down in rows:
                on_event(Event("sql", schema, sql=down or "", message=name))
    report.exit_code = EXIT_FAILED if report.failed else EXIT_OK
    return report


def _record_rollback(conn: psycopg.Connection, report: RunReport, version: str, actor: str) -> None:
    assert report.run_id is not None
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
    _audit_schemas(conn, "migrate.rollback", actor, report)
    report.exit_code = EXIT_FAILED if report.failed else EXIT_OK
