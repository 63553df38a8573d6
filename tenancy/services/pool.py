"""The warm pool: tenant schemas built ahead of signup, so that a creation renames one
instead of running every tenant migration (claims: ``tenants.CLAIM_STEPS``).

A pool schema is built exactly as a tenant is (``tenants.create_roles``, ``create_schema``,
``apply_migrations``: owner and web roles, grants, every tenant file under the owner role,
ledger rows) under a pool name (``tenancy_pool_<hex>``, ``engine/pool.py``), in one
transaction that also writes its ``tenant_pool`` row. It is no tenant: not in
``tenant_registry``, so routing, ``tenant_list`` and the admin's tenant list never see it.

``fill`` builds entries up to a size, one transaction each, under a transaction-level lock
that makes concurrent fills (the worker's refills after each claim) count, not overshoot;
``drain`` drops entries; both sweep what no entry owns any more (a schema, role or ledger
rows under a pool name without a pool row).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from tenancy import conf
from tenancy.engine import audit, db, ledger
from tenancy.engine import pool as pool_engine
from tenancy.engine.executor import MigrationError, apply_to_new_schema, placeholders, seal
from tenancy.engine.names import owner_role_for_schema, owner_role_prefix, role_prefix
from tenancy.engine.plan import plan_schema
from tenancy.engine.source import TENANT, Migration
from tenancy.services import tenant_types
from tenancy.services.infrastructure import connect_ready
from tenancy.services.tenants import (
    CreationContext,
    TenantError,
    apply_migrations,
    citus_pool_reason,
    commit_as_owner,
    create_roles,
    create_schema,
    pool_off_reason,
    pool_size,
    request_refill,
    run_steps,
    typed_tenant_migrations,
)

FILL_LOCK = "tenancy:pool-fill"


class PoolError(TenantError):
    """The pool cannot be used as asked (no pool table, files that cannot be pooled)."""


@dataclass(frozen=True)
class PoolEntry:
    schema: str
    state: str
    created_at: datetime
    schema_exists: bool
    applied: int
    pending: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    tenant_type: str | None = None  # multi-type tenants: the type it was built as

    @property
    def usable(self) -> bool:
        """A claim takes it (a pending file is applied first; drift or a missing file or
        schema discard it)."""
        return self.state == "ready" and self.schema_exists and not (self.drift or self.missing)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "state": self.state,
            "created_at": self.created_at.isoformat(),
            "schema_exists": self.schema_exists,
            "applied": self.applied,
            "pending": self.pending,
            "drift": self.drift,
            "missing_files": self.missing,
            "usable": self.usable,
            "tenant_type": self.tenant_type,
        }


@dataclass(frozen=True)
class PoolStatus:
    size: int  # TENANCY["POOL_SIZE"]
    entries: list[PoolEntry]
    off: str | None  # why creations do not claim (None: they do)

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "ready": sum(e.usable for e in self.entries),
            "off": self.off,
            "entries": [e.to_dict() for e in self.entries],
        }


@dataclass
class FillReport:
    target: int
    built: list[str] = field(default_factory=list)
    build_ms: list[int] = field(default_factory=list)  # each entry's build, in order
    swept: list[str] = field(default_factory=list)  # broken or orphaned pool names dropped
    elapsed_ms: int = 0
    off: str | None = None  # nothing built: why

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "built": self.built,
            "build_ms": self.build_ms,
            "swept": self.swept,
            "elapsed_ms": self.elapsed_ms,
            "off": self.off,
        }


# -- reading ----------------------------------------------------------------------------------
def status() -> PoolStatus:
    """The pool's entries with their migration state (three queries, whatever the size)."""
    typed = typed_tenant_migrations()
    with connect_ready() as conn:
        _require_table(conn)
        entries = _entries(conn, typed)
        off = citus_pool_reason(conn) or _first_reason(pool_off_reason, typed)
    return PoolStatus(pool_size(), entries, off)


def _first_reason(
    reason: Callable[[list[Migration]], str | None], typed: dict[str | None, list[Migration]]
) -> str | None:
    """The first type's ``reason`` not to pool (a reason for one type stops them all)."""
    return next(filter(None, (reason(m) for m in typed.values())), None)


def _entries(conn: psycopg.Connection, typed: dict[str | None, list[Migration]]) -> list[PoolEntry]:
    rows = conn.execute(
        "SELECT p.schema_name, p.state, p.created_at, n.oid IS NOT NULL, p.tenant_type "
        "FROM public.tenant_pool p LEFT JOIN pg_namespace n ON n.nspname = p.schema_name "
        "ORDER BY p.id"
    ).fetchall()
    applied = ledger.applied_all(conn)
    entries = []
    for schema, state, created_at, exists, kind in rows:
        migrations = typed.get(kind)
        if migrations is None:  # a type the settings no longer name: never claimed
            entries.append(
                PoolEntry(schema, state, created_at, bool(exists), 0, tenant_type=kind,
                          missing=[f"tenant type {kind!r} is not in TENANT_TYPES"])
            )  # fmt: skip
            continue
        plan = plan_schema(schema, TENANT, migrations, applied.get(schema, {}))
        entries.append(
            PoolEntry(
                schema=schema,
                state=state,
                created_at=created_at,
                schema_exists=bool(exists),
                applied=plan.applied_count,
                pending=[m.name for m in plan.pending],
                drift=[d.migration.name for d in plan.drift],
                # a pending file numbered below applied ones: a claim discards it too
                missing=[a.name for a in plan.missing] + [m.name for m in plan.out_of_order],
                tenant_type=kind,
            )
        )
    return entries


def pool_schemas(conn: psycopg.Connection) -> list[tuple[str, str | None]]:
    """Every ready pool schema with its type (for ``migrate_tenants``), oldest first.
    Broken entries are not migrated: never claimed, the next fill or drain drops them."""
    if not _table_exists(conn):
        return []
    rows = conn.execute(
        "SELECT p.schema_name, p.tenant_type FROM public.tenant_pool p "
        "JOIN pg_namespace n ON n.nspname = p.schema_name WHERE p.state = 'ready' "
        "ORDER BY p.id"
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def _table_exists(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass('public.tenant_pool') IS NOT NULL").fetchone()
    return bool(row and row[0])


def _require_table(conn: psycopg.Connection) -> None:
    if not _table_exists(conn):
        raise PoolError(
            "The pool table public.tenant_pool does not exist yet: run "
            "`manage.py migrate_tenants --public` first."
        )


# -- fill -------------------------------------------------------------------------------------
class _Full(TenantError):
    """The pool holds its target already (found under the fill lock)."""


def fill(target: int | None = None, *, actor: str) -> FillReport:
    """Build pool schemas until ``target`` (default ``TENANCY["POOL_SIZE"]``) are ready,
    after dropping broken and orphaned ones. Each build is one transaction: a failure or a
    kill leaves no schema, role or row of it."""
    started = time.monotonic()
    report = FillReport(target=pool_size() if target is None else max(0, target))
    typed = typed_tenant_migrations()
    report.off = _first_reason(_unpoolable, typed)
    # With multi-type tenants, ``target`` entries of each type.
    kinds = tenant_types.names() or [None]
    with connect_ready() as conn:
        _require_table(conn)
        report.off = citus_pool_reason(conn) or report.off
        report.swept = sweep(conn) + _discard_blocked(conn, typed)
        for kind in kinds:
            _fill_type(conn, report, typed[kind], kind, actor)
        report.elapsed_ms = _ms_since(started)
        if report.built or report.swept:
            audit.write(conn, "tenant_pool.fill", actor=actor, details=report.to_dict())
    return report


def _fill_type(
    conn: psycopg.Connection,
    report: FillReport,
    migrations: list[Migration],
    kind: str | None,
    actor: str,
) -> None:
    while not report.off:
        try:
            schema, took = _build_one(conn, migrations, report.target, actor, kind)
        except KeepsItsName as exc:  # rolled back: nothing of it remains
            report.off = str(exc)
            return
        if schema is None:
            return
        report.built.append(schema)
        report.build_ms.append(took)


def _discard_blocked(
    conn: psycopg.Connection, typed: dict[str | None, list[Migration]]
) -> list[str]:
    """Drop ready entries a claim would discard (drift, files gone, files out of order, the
    schema gone, a type no longer named), each in its own transaction, unless a claim or a
    run holds it."""
    dropped = []
    for entry in _entries(conn, typed):
        if entry.state != "ready" or entry.usable:
            continue
        with conn.transaction():
            held = conn.execute(
                "SELECT 1 FROM public.tenant_pool WHERE schema_name = %s FOR UPDATE SKIP LOCKED",
                [entry.schema],
            ).fetchone()
            if held and db.try_xact_lock(conn, entry.schema):
                pool_engine.discard(conn, entry.schema)
                dropped.append(entry.schema)
    return dropped


def _unpoolable(migrations: list[Migration]) -> str | None:
    reason = pool_engine.unpoolable_reason(migrations)
    return f"tenant files cannot be pooled: {reason}" if reason else None


def _build_one(
    conn: psycopg.Connection,
    migrations: list[Migration],
    target: int,
    actor: str,
    tenant_type: str | None = None,
) -> tuple[str | None, int]:
    """One pool schema of ``tenant_type``, unless ``target`` usable entries of it exist
    (counted under the fill lock, so that concurrent fills stop at the target together)."""
    started = time.monotonic()
    schema = pool_engine.new_pool_schema()
    web, owner = pool_engine.pool_roles(schema, conn.info.dbname)
    ctx = CreationContext(
        conn=conn,
        org_id="",
        name="",
        schema=schema,
        role=web,
        owner=owner,
        domain="",
        actor=actor,
        migrations=migrations,
        tenant_type=tenant_type,
    )
    untyped = tenant_types.takes_untyped(tenant_type)

    def check_room(c: CreationContext) -> None:
        db.xact_lock(c.conn, FILL_LOCK)
        if pool_engine.count_ready(c.conn, tenant_type, untyped=untyped) >= target:
            raise _Full("full")

    steps = [
        ("count", check_room),
        ("create role", create_roles),
        ("create schema", create_schema),
        ("apply migrations", apply_migrations),
        ("check a rename", _check_rename),
        ("record", lambda c: pool_engine.record(c.conn, c.schema, tenant_type=c.tenant_type)),
        ("commit as owner", commit_as_owner),
    ]
    try:
        run_steps(conn, steps, ctx, f"Building pool schema {schema}", "built")
    except _Full:
        return None, 0
    return schema, _ms_since(started)


class KeepsItsName(PoolError):
    """A pool schema whose catalog would keep its pool name through a rename."""


def _check_rename(ctx: CreationContext) -> None:
    found = pool_engine.rename_traces(ctx.conn, ctx.schema)
    if found:
        raise KeepsItsName(
            "tenant files cannot be pooled: a schema built from them keeps its own name as "
            f"text in {', '.join(sorted(set(found)))}, which a rename cannot change"
        )


# -- kept migrated -----------------------------------------------------------------------------
@dataclass(frozen=True)
class PoolResult:
    """What a migration run did to one pool schema (shown apart from the tenants)."""

    schema: str
    status: str  # succeeded | failed | discarded | skipped | pending (a dry run)
    versions: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "status": self.status,
            "versions": self.versions,
            "error": self.error,
        }


def migrate_entries(*, actor: str, dry_run: bool = False) -> list[PoolResult]:
    """Bring every ready pool schema up to the files, each in one transaction holding its
    pool row (a claim skips it meanwhile; one a claim holds is skipped here) and its
    advisory lock. Drifted entries are dropped, never migrated; a failed one is marked
    broken (claims never take it; the next fill drops it). When either happened, a refill
    is asked of the worker, as after a claim. ``dry_run``: what is pending."""
    typed = typed_tenant_migrations()
    results: list[PoolResult] = []
    with connect_ready() as conn:
        if not _table_exists(conn):
            return []
        if dry_run:
            return [
                PoolResult(e.schema, "pending", e.pending)
                for e in _entries(conn, typed)
                if e.usable and e.pending
            ]
        for schema, kind in pool_schemas(conn):
            migrations = typed.get(kind)
            if migrations is None:  # its type is gone: the next fill drops it
                continue
            result = _migrate_entry(conn, schema, migrations, actor)
            if result is not None:
                results.append(result)
    if pool_size() and any(r.status in ("failed", "discarded") for r in results):
        request_refill()  # the worker rebuilds what this run took out of the pool
    return results


def _migrate_entry(
    conn: psycopg.Connection, schema: str, migrations: list[Migration], actor: str
) -> PoolResult | None:
    """One entry; None when there was nothing to do."""
    try:
        with conn.transaction():
            held = conn.execute(
                "SELECT 1 FROM public.tenant_pool WHERE schema_name = %s AND state = 'ready' "
                "FOR UPDATE SKIP LOCKED",
                [schema],
            ).fetchone()
            if not held or not db.try_xact_lock(conn, schema):
                return PoolResult(schema, "skipped", error="a claim or another run holds it")
            plan = plan_schema(schema, TENANT, migrations, ledger.applied_for(conn, schema))
            if plan.blocked:
                pool_engine.discard(conn, schema)
                return PoolResult(schema, "discarded", error="drift or missing files")
            if not plan.pending:
                return None
            apply_to_new_schema(
                conn,
                schema,
                plan.pending,
                placeholders(schema, conn.info.dbname),
                lock_timeout_ms=int(conf.setting("LOCK_TIMEOUT_MS")),
                actor=actor,
            )
            found = pool_engine.rename_traces(conn, schema)
            if found:
                pool_engine.discard(conn, schema)
                where = ", ".join(sorted(set(found)))
                return PoolResult(schema, "discarded", error=f"would keep its name in {where}")
            conn.execute(seal(conn, schema, owner_role_for_schema(schema, conn.info.dbname)))
            return PoolResult(schema, "succeeded", [m.version for m in plan.pending])
    except (psycopg.Error, MigrationError) as exc:
        conn.execute(
            "UPDATE public.tenant_pool SET state = 'broken' WHERE schema_name = %s", [schema]
        )
        return PoolResult(schema, "failed", error=str(exc).strip().splitlines()[0])


# -- drain and sweep --------------------------------------------------------------------------
def drain(count: int | None = None, *, actor: str) -> list[str]:
    """Drop ``count`` entries (default all), oldest first, each with its schema, roles and
    ledger rows in a transaction of its own; entries a claim or a run holds are left."""
    dropped: list[str] = []
    with connect_ready() as conn:
        _require_table(conn)
        while count is None or len(dropped) < count:
            with conn.transaction():
                taken = _take_any(conn, dropped)
                if taken is None:
                    break
                pool_engine.discard(conn, taken)
            dropped.append(taken)
        swept = sweep(conn)
        if dropped or swept:
            audit.write(
                conn,
                "tenant_pool.drain",
                actor=actor,
                details={"dropped": dropped, "swept": swept},
            )
    return dropped + swept


def _take_any(conn: psycopg.Connection, skip: list[str]) -> str | None:
    """An entry of any state that no transaction holds and no run migrates (its row locked
    and its advisory lock taken until the caller's transaction ends)."""
    row = conn.execute(
        """
        SELECT schema_name FROM public.tenant_pool
         WHERE schema_name <> ALL(%(skip)s)
           AND pg_try_advisory_xact_lock(%(ns)s, hashtext(schema_name))
         ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
        """,
        {"skip": skip, "ns": db.LOCK_NAMESPACE},
    ).fetchone()
    return str(row[0]) if row else None


# Pool names with no pool row: a schema, a role (by the roles' prefixes) or ledger rows.
# Read in one statement, so one snapshot: a build not yet committed is invisible whole, a
# claim not yet committed still shows its row.
_ORPHANS = """
SELECT n.nspname::text FROM pg_namespace n
 WHERE n.nspname LIKE %(schemas)s
UNION
SELECT substr(r.rolname, length(%(web)s) + 1) FROM pg_roles r WHERE r.rolname LIKE %(web_like)s
UNION
SELECT substr(r.rolname, length(%(owner)s) + 1) FROM pg_roles r
 WHERE r.rolname LIKE %(owner_like)s
UNION
SELECT tenant_schema FROM public.tenant_migrations WHERE tenant_schema LIKE %(schemas)s
EXCEPT
SELECT schema_name FROM public.tenant_pool WHERE state = 'ready'
"""


def sweep(conn: psycopg.Connection) -> list[str]:
    """Drop what belongs to no ready entry: broken entries, and schemas, roles and ledger
    rows under pool names whose entry is gone. Each in its own transaction."""
    database = conn.info.dbname
    like = _like(pool_engine.POOL_PREFIX)
    params = {
        "schemas": like,
        "web": role_prefix(database),
        "web_like": _like(role_prefix(database) + pool_engine.POOL_PREFIX),
        "owner": owner_role_prefix(database),
        "owner_like": _like(owner_role_prefix(database) + pool_engine.POOL_PREFIX),
    }
    swept = []
    for (name,) in conn.execute(_ORPHANS, params).fetchall():
        with conn.transaction():
            # A claim holds a broken entry's row no more than a ready one's; a run migrating
            # this name holds its advisory lock: leave it to the next sweep.
            if not db.try_xact_lock(conn, name):
                continue
            if conn.execute(
                "SELECT 1 FROM public.tenant_pool WHERE schema_name = %s AND state = 'ready' "
                "FOR UPDATE SKIP LOCKED",
                [name],
            ).fetchone():
                continue  # became ready since (a build committed): not an orphan
            pool_engine.discard(conn, name)
        swept.append(name)
    return swept


def _like(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


__all__ = [
    "FillReport",
    "PoolEntry",
    "PoolError",
    "PoolResult",
    "PoolStatus",
    "drain",
    "fill",
    "migrate_entries",
    "pool_schemas",
    "status",
    "sweep",
]
