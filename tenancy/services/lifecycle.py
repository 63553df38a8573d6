"""Tenant lifecycle after creation: suspend, archive, reactivate, drop, recreate, cleanup.

Each verb runs in one transaction on its own connection, under the creation lock (so it
never races a creation, another lifecycle verb or, through the schema's advisory lock, a
migration run of that schema), and leaves an ``audit_logs`` row naming its actor. Like a
creation, drop and recreate are lists of named steps, so a failure says where it happened
and tests can inject one at each step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg import sql

from tenancy import conf
from tenancy.engine import audit, db
from tenancy.engine.names import domain_for_org, owner_role_for_schema, role_for_schema
from tenancy.engine.ownership import missing_roles
from tenancy.services.infrastructure import connect_ready
from tenancy.services.tenants import (
    CreationContext,
    TenantError,
    apply_migrations,
    commit_as_owner,
    create_roles,
    create_schema,
    run_steps,
    tenant_key,
    tenant_migrations,
    unknown_tenant,
)

STATUSES = ("active", "suspended", "archived")
# The statuses a tenant may be cleaned up from: an active tenant is never "inactive".
INACTIVE_STATUSES = ("suspended", "archived")


@dataclass(frozen=True)
class TenantRecord:
    id: int
    org_id: str
    name: str
    schema: str
    status: str
    updated_at: datetime
    domains: tuple[str, ...]
    schema_exists: bool
    tenant_type: str | None = None  # multi-type tenants (services/tenant_types)


@dataclass(frozen=True)
class StatusChange:
    tenant: TenantRecord
    old: str
    new: str

    @property
    def changed(self) -> bool:
        return self.old != self.new


@dataclass
class LifecycleContext:
    conn: psycopg.Connection
    tenant: TenantRecord
    role: str
    actor: str
    reason: str | None = None
    only_statuses: tuple[str, ...] | None = None
    details: dict = field(default_factory=dict)

    @property
    def owner(self) -> str:
        return owner_role_for_schema(self.tenant.schema, self.conn.info.dbname)

    @property
    def keep_roles(self) -> bool:
        """A recreate on Citus keeps the tenant's roles when both exist: the schema it
        builds is reached on the workers as them, and a worker only knows committed roles
        (a role dropped and made again in this transaction is neither)."""
        return db.citus(self.conn) and not missing_roles(self.conn, [self.role, self.owner])


@dataclass(frozen=True)
class Dropped:
    tenant: TenantRecord
    role: str
    ledger_rows: int
    elapsed_ms: int


@dataclass(frozen=True)
class Recreated:
    tenant: TenantRecord
    role: str
    domain: str
    migrations_applied: list[str]
    elapsed_ms: int


@dataclass(frozen=True)
class InactiveTenant:
    tenant: TenantRecord
    last_activity: datetime | None


# -- lookup ------------------------------------------------------------------------------
_SELECT = """
    SELECT tr.id, tr.auth0_org_id, tr.organization_name, tr.schema_name, tr.status,
           tr.updated_at,
           coalesce(array_agg(d.domain ORDER BY d.is_primary DESC, d.domain)
                    FILTER (WHERE d.id IS NOT NULL), ARRAY[]::varchar[]),
           EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = tr.schema_name),
           tr.tenant_type
    FROM public.tenant_registry tr
    LEFT JOIN public.tenant_domains d ON d.tenant_id = tr.id
    WHERE {where}
    GROUP BY tr.id
"""


def _record(row: tuple) -> TenantRecord:
    return TenantRecord(
        id=int(row[0]),
        org_id=row[1],
        name=row[2],
        schema=row[3],
        status=row[4],
        updated_at=row[5],
        domains=tuple(row[6]),
        schema_exists=bool(row[7]),
        tenant_type=row[8],
    )


def _fetch(conn: psycopg.Connection, ident: str, *, lock: bool) -> TenantRecord:
    column, value = tenant_key(ident)
    if lock:  # the registry row stays locked until the verb's transaction ends
        conn.execute(
            sql.SQL("SELECT 1 FROM public.tenant_registry WHERE {} = %s FOR UPDATE").format(
                sql.Identifier(column)
            ),
            [value],
        )
    query = sql.SQL(_SELECT.format(where="tr.{} = %s")).format(sql.Identifier(column))
    row = conn.execute(query, [value]).fetchone()
    if row is None:
        raise unknown_tenant(value)
    return _record(row)


def get_tenant(ident: str) -> TenantRecord:
    """A registered tenant by Auth0 org id (``org_…``) or schema name (``tenant_org_…``)."""
    with connect_ready() as conn:
        return _fetch(conn, ident, lock=False)


def _lock_schema(conn: psycopg.Connection, schema: str) -> None:
    """Take the creation lock, then the schema's advisory lock (the one a migration run
    holds while it migrates the schema), for this transaction only; refuse if busy."""
    db.xact_lock(conn, db.CREATE_LOCK_NAME)
    if not db.try_xact_lock(conn, schema):
        raise TenantError(
            f"A migration run is working on {schema} right now; try again when it has finished."
        )


# -- status ------------------------------------------------------------------------------
def set_status(ident: str, status: str, *, actor: str, reason: str | None = None) -> StatusChange:
    """Move a tenant to ``status``. Routing serves active tenants only (tenancy.middleware),
    so suspending or archiving takes its domain offline at once; its schema stays intact.
    Setting the status it already has changes nothing and writes no audit row."""
    if status not in STATUSES:
        raise TenantError(f"Unknown status {status!r}; expected one of {', '.join(STATUSES)}.")
    with connect_ready() as conn, conn.transaction():
        tenant = _fetch(conn, ident, lock=True)
        if tenant.status == status:
            return StatusChange(tenant, tenant.status, status)
        conn.execute(
            "UPDATE public.tenant_registry SET status = %s, updated_at = now() WHERE id = %s",
            [status, tenant.id],
        )
        audit.write(
            conn,
            f"tenant.{_verb(status)}",
            actor=actor,
            tenant_schema=tenant.schema,
            details={
                "auth0_org_id": tenant.org_id,
                "from": tenant.status,
                "to": status,
                "reason": reason,
            },
        )
        return StatusChange(_fetch(conn, ident, lock=False), tenant.status, status)


def _verb(status: str) -> str:
    return {"active": "reactivate", "suspended": "suspend", "archived": "archive"}[status]


def suspend(ident: str, *, actor: str, reason: str | None = None) -> StatusChange:
    return set_status(ident, "suspended", actor=actor, reason=reason)


def archive(ident: str, *, actor: str, reason: str | None = None) -> StatusChange:
    return set_status(ident, "archived", actor=actor, reason=reason)


def reactivate(ident: str, *, actor: str, reason: str | None = None) -> StatusChange:
    return set_status(ident, "active", actor=actor, reason=reason)


# -- steps shared by drop and recreate ---------------------------------------------------
def _step_lock(ctx: LifecycleContext) -> None:
    _lock_schema(ctx.conn, ctx.tenant.schema)


def _step_check(ctx: LifecycleContext) -> None:
    """Re-read the registry row, locked: what the verb acts on is what is there now."""
    ctx.tenant = _fetch(ctx.conn, ctx.tenant.schema, lock=True)
    if ctx.only_statuses is not None and ctx.tenant.status not in ctx.only_statuses:
        raise TenantError(f"Tenant {ctx.tenant.org_id} is {ctx.tenant.status} now: left alone.")


def _step_drop_schema(ctx: LifecycleContext) -> None:
    tables = ctx.conn.execute(
        "SELECT count(*) FROM pg_tables WHERE schemaname = %s", [ctx.tenant.schema]
    ).fetchone()
    ctx.details["tables_dropped"] = int(tables[0]) if tables else 0
    ctx.conn.execute(
        sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(ctx.tenant.schema))
    )


def _step_drop_role(ctx: LifecycleContext) -> None:
    """The web role and the owner role (the schema, their only property, is gone)."""
    for name in (ctx.role, ctx.owner):
        if ctx.conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone():
            role = sql.Identifier(name)
            # Grants (shared tables, default privileges) go first; DROP ROLE refuses else.
            ctx.conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
            ctx.conn.execute(sql.SQL("DROP ROLE {}").format(role))
            ctx.details.setdefault("roles_dropped", []).append(name)


def _step_delete_ledger(ctx: LifecycleContext) -> None:
    cur = ctx.conn.execute(
        "DELETE FROM public.tenant_migrations WHERE tenant_schema = %s", [ctx.tenant.schema]
    )
    ctx.details["ledger_rows_deleted"] = cur.rowcount


# -- drop --------------------------------------------------------------------------------
def _step_delete_domains(ctx: LifecycleContext) -> None:
    ctx.conn.execute("DELETE FROM public.tenant_domains WHERE tenant_id = %s", [ctx.tenant.id])


def _step_unregister(ctx: LifecycleContext) -> None:
    ctx.conn.execute("DELETE FROM public.tenant_registry WHERE id = %s", [ctx.tenant.id])


def _step_audit_drop(ctx: LifecycleContext) -> None:
    audit.write(
        ctx.conn,
        "tenant.drop",
        actor=ctx.actor,
        tenant_schema=ctx.tenant.schema,
        details={
            "auth0_org_id": ctx.tenant.org_id,
            "organization_name": ctx.tenant.name,
            "status": ctx.tenant.status,
            "domains": list(ctx.tenant.domains),
            "reason": ctx.reason,
            **ctx.details,
        },
    )


DROP_STEPS: list[tuple[str, Callable[[LifecycleContext], None]]] = [
    ("lock", _step_lock),
    ("check registry", _step_check),
    ("drop schema", _step_drop_schema),
    ("drop role", _step_drop_role),
    ("delete ledger rows", _step_delete_ledger),
    ("delete domains", _step_delete_domains),
    ("unregister", _step_unregister),
    ("audit", _step_audit_drop),
]


def drop_tenant(
    ident: str,
    *,
    actor: str,
    expected_schema: str | None = None,
    reason: str | None = None,
    only_statuses: tuple[str, ...] | None = None,
) -> Dropped:
    """Drop a tenant for good: its schema (and data), role, ledger rows, domains and
    registry row, in one transaction, audited. ``expected_schema`` is the confirmation the
    operator typed: the drop is refused unless it names this tenant's schema.
    ``only_statuses``: refuse unless the tenant still has one of these statuses once locked
    (cleanup: a tenant reactivated meanwhile is kept)."""
    started = time.monotonic()
    with connect_ready() as conn:
        tenant = _fetch(conn, ident, lock=False)
        if expected_schema is not None and expected_schema != tenant.schema:
            raise TenantError(
                f"Confirmation {expected_schema!r} does not match the schema {tenant.schema}: "
                "nothing was dropped."
            )
        ctx = LifecycleContext(
            conn, tenant, role_for_schema(tenant.schema, conn.info.dbname), actor, reason
        )

        ctx.only_statuses = only_statuses
        run_steps(conn, DROP_STEPS, ctx, f"Drop of tenant {tenant.org_id}", "changed")
    return Dropped(
        ctx.tenant,
        ctx.role,
        int(ctx.details.get("ledger_rows_deleted", 0)),
        int((time.monotonic() - started) * 1000),
    )


# -- recreate ----------------------------------------------------------------------------
def _creation(ctx: LifecycleContext) -> CreationContext:
    """The creation steps' view of this tenant, kept across steps in ``details``."""
    if "creation" not in ctx.details:
        ctx.details["creation"] = CreationContext(
            conn=ctx.conn,
            org_id=ctx.tenant.org_id,
            name=ctx.tenant.name,
            schema=ctx.tenant.schema,
            role=ctx.role,
            owner=ctx.owner,
            domain=domain_for_org(ctx.tenant.org_id, conf.setting("DOMAIN_SUFFIX")),
            actor=ctx.actor,
            migrations=tenant_migrations(ctx.tenant.tenant_type),
            tenant_id=ctx.tenant.id,
            tenant_type=ctx.tenant.tenant_type,
        )
    return ctx.details["creation"]


def _step_drop_role_unless_kept(ctx: LifecycleContext) -> None:
    if not ctx.keep_roles:
        _step_drop_role(ctx)


def _step_create_role(ctx: LifecycleContext) -> None:
    if ctx.keep_roles:
        ctx.details["roles_kept"] = [ctx.role, ctx.owner]
        return
    create_roles(_creation(ctx))


def _step_keep_domain(ctx: LifecycleContext) -> None:
    """The tenant keeps its domains; one that lost its primary domain gets it back."""
    creation = _creation(ctx)
    if not ctx.tenant.domains:
        ctx.conn.execute(
            "INSERT INTO public.tenant_domains (domain, tenant_id, is_primary) "
            "VALUES (%s, %s, true)",
            [creation.domain, ctx.tenant.id],
        )


def _step_touch_registry(ctx: LifecycleContext) -> None:
    ctx.conn.execute(
        "UPDATE public.tenant_registry SET updated_at = now() WHERE id = %s", [ctx.tenant.id]
    )


def _step_audit_recreate(ctx: LifecycleContext) -> None:
    creation = _creation(ctx)
    details = {k: v for k, v in ctx.details.items() if k != "creation"}
    audit.write(
        ctx.conn,
        "tenant.recreate",
        actor=ctx.actor,
        tenant_schema=ctx.tenant.schema,
        details={
            "auth0_org_id": ctx.tenant.org_id,
            "organization_name": ctx.tenant.name,
            "schema_existed": ctx.tenant.schema_exists,
            "migrations": creation.applied,
            "reason": ctx.reason,
            **details,
        },
    )


RECREATE_STEPS: list[tuple[str, Callable[[LifecycleContext], None]]] = [
    ("lock", _step_lock),
    ("check registry", _step_check),
    ("drop schema", _step_drop_schema),
    ("drop role", _step_drop_role_unless_kept),
    ("delete ledger rows", _step_delete_ledger),
    ("create role", _step_create_role),
    ("create schema", lambda ctx: create_schema(_creation(ctx))),
    ("apply migrations", lambda ctx: apply_migrations(_creation(ctx))),
    ("keep domain", _step_keep_domain),
    ("touch registry", _step_touch_registry),
    ("audit", _step_audit_recreate),
    ("commit as owner", lambda ctx: commit_as_owner(_creation(ctx))),
]


def recreate_tenant(ident: str, *, actor: str, reason: str | None = None) -> Recreated:
    """The seed's "Recreate Tenant": drop the tenant's schema (its data is lost), role and
    ledger rows, and build them again from every tenant migration on disk, in one
    transaction. The registry row (id, name, org id, status, created_at) and the domains stay:
    the tenant keeps its identity and its address. Tenant limits do not apply: no tenant
    is added."""
    started = time.monotonic()
    with connect_ready() as conn:
        tenant = _fetch(conn, ident, lock=False)
        ctx = LifecycleContext(
            conn, tenant, role_for_schema(tenant.schema, conn.info.dbname), actor, reason
        )
        run_steps(conn, RECREATE_STEPS, ctx, f"Recreate of tenant {tenant.org_id}", "changed")
        after = _fetch(conn, ident, lock=False)
    creation = ctx.details["creation"]
    return Recreated(
        after,
        ctx.role,
        after.domains[0] if after.domains else creation.domain,
        creation.applied,
        int((time.monotonic() - started) * 1000),
    )


# -- cleanup -----------------------------------------------------------------------------
def inactive_tenants(days: int, *, statuses: tuple[str, ...] = INACTIVE_STATUSES) -> list:
    """Tenants inactive for ``days`` days: status suspended or archived, unchanged for that
    long (registry ``updated_at``), and no ``audit_logs`` row about their schema in that
    time (no migration, status change or tenant activity). One query for any number."""
    if days < 1:
        raise TenantError("--days must be at least 1.")
    bad = [s for s in statuses if s not in INACTIVE_STATUSES]
    if bad or not statuses:
        raise TenantError(
            f"Only {' or '.join(INACTIVE_STATUSES)} tenants can be cleaned up, not "
            f"{', '.join(bad) or 'none'}."
        )
    with connect_ready() as conn:
        rows = conn.execute(
            sql.SQL(
                _SELECT.format(
                    where="tr.status = ANY(%(statuses)s) "
                    "AND tr.updated_at < now() - make_interval(days => %(days)s) "
                    "AND NOT EXISTS (SELECT 1 FROM public.audit_logs al "
                    "WHERE al.tenant_schema = tr.schema_name "
                    "AND al.created_at >= now() - make_interval(days => %(days)s))"
                )
                + " ORDER BY tr.updated_at, tr.id"
            ),
            {"statuses": list(statuses), "days": days},
        ).fetchall()
        tenants = [_record(r) for r in rows]
        last = dict(
            conn.execute(
                "SELECT tenant_schema, max(created_at) FROM public.audit_logs "
                "WHERE tenant_schema = ANY(%s) GROUP BY tenant_schema",
                [[t.schema for t in tenants]],
            ).fetchall()
        )
    return [InactiveTenant(t, last.get(t.schema)) for t in tenants]


@dataclass
class CleanupReport:
    candidates: list[InactiveTenant]
    dropped: list[Dropped] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False


def cleanup(
    days: int,
    *,
    actor: str,
    dry_run: bool = False,
    statuses: tuple[str, ...] = INACTIVE_STATUSES,
) -> CleanupReport:
    """Drop every tenant inactive for ``days`` days (see ``inactive_tenants``), each in its
    own transaction: one that fails (busy, …) is reported and the others go on."""
    report = CleanupReport(inactive_tenants(days, statuses=statuses), dry_run=dry_run)
    if dry_run:
        return report
    for item in report.candidates:
        try:
            report.dropped.append(
                drop_tenant(
                    item.tenant.schema,
                    actor=actor,
                    reason=f"cleanup: {item.tenant.status} and inactive for {days} days",
                    only_statuses=statuses,
                )
            )
        except TenantError as exc:
            report.errors[item.tenant.schema] = str(exc)
    return report
