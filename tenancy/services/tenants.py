"""Tenant lifecycle: create (one transaction: schema, migrations, ledger, role, registry,
domain, audit), and the registry reads that commands and the admin share.

With a warm pool (``TENANCY["POOL_SIZE"]`` > 0, ``services/pool.py``), a creation first
claims a pool schema in the same one transaction (``CLAIM_STEPS``): the schema and its roles
are renamed to the tenant's, then registered as a direct creation would; when no pool schema
is usable it builds the tenant directly in that transaction, and says which path it took.

A tenant's tags (``tenant_registry.tags``) are written with its registry row, on either
path, and changed later by ``set_tenant_tags`` (one transaction, audited as ``tenant.tags``).

The hourly creation limit (``TENANCY["MAX_CREATIONS_PER_HOUR"]``) refuses with
``CreationLimitReached``, whose message names the setting and when creation reopens;
``override_hourly_limit`` creates past it (the creation's audit row says so)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from django.utils.module_loading import import_string
from psycopg import sql

from tenancy import conf
from tenancy.engine import audit, db, ledger, ownership, rules
from tenancy.engine import pool as pool_engine
from tenancy.engine.errors import TenancyError
from tenancy.engine.executor import MigrationError, apply_to_new_schema, placeholders, seal
from tenancy.engine.names import (
    InvalidName,
    app_role,
    domain_for_org,
    owner_group_role,
    owner_role_for_schema,
    role_for_schema,
    schema_for_org,
    schema_prefix,
    validate_org_id,
    validate_org_name,
    validate_schema_name,
    validate_tags,
)
from tenancy.engine.plan import SchemaPlan, plan_schema
from tenancy.engine.source import TENANT, Migration
from tenancy.services import django_steps, steps, tenant_types
from tenancy.services import ownership as service_ownership
from tenancy.services.infrastructure import connect, connect_ready

logger = logging.getLogger(__name__)

DIRECT, POOL = "direct", "pool"
# The background job that refills the pool after a creation (tasks import the services,
# so the services name it instead of importing it: floors import only downwards).
REFILL_TASK = "tenancy.tasks.request_pool_refill"
# Tests hold a claim ("<point>:<seconds>") to kill its process inside the claim's transaction.
CLAIM_PAUSE_ENV = "TENANCY_TEST_CLAIM_PAUSE_S"


class TenantError(TenancyError):
    """A tenant operation refused or failed; the message says why, for the user."""


class CreationLimitReached(TenantError):
    """The hourly creation limit is reached: the message names the setting and when
    creation reopens (``reopens_at``, UTC; None when the limit is 0)."""

    def __init__(self, message: str, *, limit: int, reopens_at: datetime | None):
        super().__init__(message)
        self.limit, self.reopens_at = limit, reopens_at


HOURLY_LIMIT_SETTING = 'TENANCY["MAX_CREATIONS_PER_HOUR"]'
HOURLY_LIMIT_ENV = "TENANCY_MAX_CREATIONS_PER_HOUR"  # the example project's settings
HOURLY_OVERRIDE_ACTION = "tenant.hourly_limit_override"


@dataclass
class CreationContext:
    conn: psycopg.Connection
    org_id: str
    name: str
    schema: str
    role: str
    owner: str
    domain: str
    actor: str
    migrations: list[Migration]
    tenant_id: int | None = None
    applied: list[str] = field(default_factory=list)
    facts: Facts | None = None
    committed_roles: list[str] = field(default_factory=list)  # Citus: see create_roles
    path: str = DIRECT  # or POOL: a pool schema was claimed
    pool_schema: str | None = None  # the claimed pool schema's name
    pool_notes: list[str] = field(default_factory=list)  # why direct, what a claim did
    tags: list[str] = field(default_factory=list)  # validated, sorted, unique
    override_hourly_limit: bool = False  # asked for: create past TENANCY's hourly limit
    past_hourly_limit: bool = False  # and this creation did
    tenant_type: str | None = None  # multi-type tenants: its type (services/tenant_types)


@dataclass(frozen=True)
class Facts:
    """What a creation checks, read in one query after the creation lock is held."""

    registered: list[tuple[str, str]]  # (auth0_org_id, schema_name) rows in the way
    schema_exists: bool
    existing_roles: list[str]  # of the tenant's roles and the shared ones
    superuser: bool
    tenants: int  # counted up to TENANCY["MAX_TENANTS"]
    recent_creations: int  # counted up to TENANCY["MAX_CREATIONS_PER_HOUR"]
    pool_table: bool  # tenancy.0009 is applied


def _read_facts(ctx: CreationContext) -> Facts:
    row = ctx.conn.execute(
        """
        SELECT
          ARRAY(SELECT ARRAY[auth0_org_id, schema_name] FROM public.tenant_registry
                WHERE auth0_org_id = %(org)s OR schema_name = %(schema)s),
          EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %(schema)s),
          ARRAY(SELECT rolname::text FROM pg_roles WHERE rolname = ANY(%(roles)s)),
          (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
          -- Counted up to the limits only: all a check needs, whatever the table sizes.
          (SELECT count(*) FROM (SELECT 1 FROM public.tenant_registry
            LIMIT %(max_tenants)s) AS t),
          (SELECT count(*) FROM (SELECT 1 FROM public.audit_logs
            WHERE action = 'tenant.create' AND created_at > now() - interval '1 hour'
            LIMIT %(max_per_hour)s) AS c),
          to_regclass('public.tenant_pool') IS NOT NULL
        """,
        {
            "org": ctx.org_id,
            "schema": ctx.schema,
            "roles": _roles_of(ctx),
            "max_tenants": int(conf.setting("MAX_TENANTS")),
            "max_per_hour": int(conf.setting("MAX_CREATIONS_PER_HOUR")),
        },
    ).fetchone()
    assert row is not None
    registered, *rest = row
    return Facts([(r[0], r[1]) for r in registered], *rest)


@dataclass(frozen=True)
class CreatedTenant:
    org_id: str
    name: str
    schema: str
    role: str
    domain: str
    migrations_applied: list[str]
    elapsed_ms: int
    path: str = DIRECT  # POOL when a pool schema was claimed
    pool_schema: str | None = None
    pool_notes: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    past_hourly_limit: bool = False  # created past the hourly limit (override_hourly_limit)
    tenant_type: str | None = None  # multi-type tenants: its type


def _check_free(ctx: CreationContext) -> None:
    ctx.facts = facts = _read_facts(ctx)
    for org_id, schema in facts.registered:
        if org_id == ctx.org_id:
            raise TenantError(f"Tenant {ctx.org_id} already exists (schema {schema}).")
        raise TenantError(
            f"Organization id {ctx.org_id} differs only in letter case from the registered "
            f"{org_id}, whose schema is {schema}. Schema names are lower case, so the two "
            "cannot both have a schema: refused."
        )
    if facts.schema_exists:
        raise TenantError(
            f"Schema {ctx.schema} already exists but no tenant is registered for it; "
            "inspect it and drop it before creating this tenant."
        )


def _check_limits(ctx: CreationContext) -> None:
    facts = ctx.facts or _read_facts(ctx)
    max_tenants = int(conf.setting("MAX_TENANTS"))
    max_per_hour = int(conf.setting("MAX_CREATIONS_PER_HOUR"))
    if facts.tenants >= max_tenants:
        raise TenantError(
            f"Tenant limit reached: TENANCY['MAX_TENANTS'] is {max_tenants} and that many "
            "tenants exist."
        )
    if facts.recent_creations >= max_per_hour:
        if not ctx.override_hourly_limit:
            raise hourly_limit_error(ctx.conn, max_per_hour)
        ctx.past_hourly_limit = True


def hourly_limit_error(conn: psycopg.Connection, limit: int) -> CreationLimitReached:
    """The refusal of a creation at the hourly limit, naming the setting and when creation
    reopens: an hour after the oldest of the last ``limit`` creations."""
    fix = (
        f"To allow more, raise {HOURLY_LIMIT_SETTING} (the environment variable "
        f"{HOURLY_LIMIT_ENV} in the example project's settings)."
    )
    if limit <= 0:
        return CreationLimitReached(
            f"Tenant creation is off: {HOURLY_LIMIT_SETTING} is {limit}. {fix}",
            limit=limit,
            reopens_at=None,
        )
    reopens = _reopens_at(conn, limit)
    when = (
        f"Creation reopens at {reopens[0]:%Y-%m-%d %H:%M:%S} UTC ({_until(reopens[1])}), an "
        f"hour after the oldest of the last {limit} creation(s)."
        if reopens
        else "Creation reopens as soon as the oldest of them is an hour old."
    )
    return CreationLimitReached(
        f"Too many tenants created in the last hour: the limit, {HOURLY_LIMIT_SETTING} = "
        f"{limit}, is reached (creations are counted up to it). {when} {fix}",
        limit=limit,
        reopens_at=reopens[0] if reopens else None,
    )


def _reopens_at(conn: psycopg.Connection, limit: int) -> tuple[datetime, float] | None:
    """When the ``limit``-th newest creation of the last hour leaves the window (then fewer
    than ``limit`` are counted), in UTC, and the seconds until then by the server's clock;
    None if fewer are counted by now."""
    row = conn.execute(
        "SELECT created_at + interval '1 hour', "
        "extract(epoch FROM created_at + interval '1 hour' - clock_timestamp()) "
        "FROM public.audit_logs "
        "WHERE action = 'tenant.create' AND created_at > now() - interval '1 hour' "
        "ORDER BY created_at DESC OFFSET %s LIMIT 1",
        [limit - 1],
    ).fetchone()
    return (row[0].astimezone(UTC), float(row[1])) if row else None


def _until(seconds: float) -> str:
    """In N min (rounded up), or in under a minute."""
    if seconds < 60:
        return "in under a minute"
    return f"in {int(-(-seconds // 60))} min"


@dataclass(frozen=True)
class HourlyQuota:
    """Creations the hourly limit allows now: ``limit``, those of the last hour (counted up
    to it), and the refusal a creation would meet now (None: it would pass)."""

    limit: int
    used: int
    blocked: CreationLimitReached | None

    @property
    def left(self) -> int:
        return max(0, self.limit - self.used)


def hourly_quota() -> HourlyQuota:
    """The hourly limit's state, read now (the admin's Create tenant page, dry runs)."""
    limit = int(conf.setting("MAX_CREATIONS_PER_HOUR"))
    with connect_ready() as conn:
        row = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM public.audit_logs WHERE action = "
            "'tenant.create' AND created_at > now() - interval '1 hour' LIMIT %s) AS c",
            [max(limit, 0)],
        ).fetchone()
        used = int(row[0]) if row else 0
        blocked = hourly_limit_error(conn, limit) if used >= limit else None
    return HourlyQuota(limit, used, blocked)


def audit_hourly_override(actor: str, org_ids: list[str], *, source: str = "") -> None:
    """The audit row of creations made past the hourly limit on request: who, how many,
    which (each one's ``tenant.create`` row also says ``past_hourly_limit``)."""
    if not org_ids:
        return
    with connect_ready() as conn:
        audit.write(
            conn,
            HOURLY_OVERRIDE_ACTION,
            actor=actor,
            details={
                "setting": HOURLY_LIMIT_SETTING,
                "limit": int(conf.setting("MAX_CREATIONS_PER_HOUR")),
                "count": len(org_ids),
                "auth0_org_ids": org_ids,
                **({"source": source} if source else {}),
            },
        )


def _roles_of(ctx: CreationContext) -> list[str]:
    database = ctx.conn.info.dbname
    return [ctx.role, ctx.owner, app_role(database), owner_group_role(database)]


def create_roles(ctx: CreationContext) -> None:
    """The tenant's owner role (its migrations run as it) and web role (its requests)."""
    # Recreation calls this without the creation's facts (it has just dropped the roles).
    facts = ctx.facts or _read_facts(ctx)
    for role in (ctx.role, ctx.owner):
        if role in facts.existing_roles:
            raise TenantError(f"Role {role} already exists; drop it before creating {ctx.org_id}.")
    statements = ownership.tenant_roles_statements(
        ctx.role,
        ctx.owner,
        ctx.conn.info.dbname,
        create_shared=[r for r in _roles_of(ctx)[2:] if r not in facts.existing_roles],
        superuser=facts.superuser,
    )
    if db.citus(ctx.conn):
        _create_roles_committed(ctx, statements)
    else:
        ctx.conn.execute(sql.SQL("; ").join(statements))  # one round trip
    # Tenant apps' foreign keys to shared tables (auth_user) need the owner group's grant;
    # the shared tables tenants' requests may use (TENANT_SHARED_TABLES), the app role's.
    django_steps.grant_references(ctx.conn)
    service_ownership.grant_shared_tables(ctx.conn)


def _create_roles_committed(ctx: CreationContext, statements: list[sql.Composable]) -> None:
    """On Citus, the roles are committed before the schema is built: the coordinator reaches
    the workers as the tenant's roles, and a worker can only authenticate a committed role.
    ``ctx.committed_roles`` names them, so that a creation that fails drops them again."""
    roles = [ctx.role, ctx.owner]
    with connect() as other, other.transaction():
        for statement in [*statements, *ownership.citus_login_statements(roles)]:
            other.execute(statement)  # one by one: Citus forwards each to the workers
    ctx.committed_roles = roles


def drop_committed_roles(ctx: CreationContext) -> None:
    """Undo ``_create_roles_committed`` after a failed creation (nothing else is left: the
    schema and rows were in the rolled-back transaction)."""
    if not ctx.committed_roles:
        return
    with connect() as other:
        for role in ctx.committed_roles:
            other.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    ctx.committed_roles = []


def create_schema(ctx: CreationContext) -> None:
    statements = ownership.create_schema_statements(ctx.schema, ctx.owner, ctx.role)
    ctx.conn.execute(sql.SQL("; ").join(statements))


def apply_migrations(ctx: CreationContext) -> None:
    apply_to_new_schema(
        ctx.conn,
        ctx.schema,
        ctx.migrations,
        placeholders(ctx.schema, ctx.conn.info.dbname),
        lock_timeout_ms=int(conf.setting("LOCK_TIMEOUT_MS")),
        actor=ctx.actor,
    )
    ctx.applied = [m.version for m in ctx.migrations]


def register_row(
    conn: psycopg.Connection,
    *,
    schema: str,
    name: str,
    org_id: str,
    tags: list[str] | None = None,
    tenant_type: str | None = None,
) -> int:
    """The tenant's row in ``public.tenant_registry`` (tenancy's own state of a tenant; with
    a host project's ``TENANT_MODEL`` it sits beside the project's row, same schema name),
    in the caller's transaction: its id. ``tags``: validated ones (``validate_tags``);
    ``tenant_type``: a checked one (``tenant_types.checked``)."""
    row = conn.execute(
        "INSERT INTO public.tenant_registry (schema_name, organization_name, auth0_org_id, "
        "tags, tenant_type) VALUES (%s, %s, %s, %s::varchar[], %s) RETURNING id",
        [schema, name, org_id, tags or [], tenant_type],
    ).fetchone()
    assert row is not None
    return int(row[0])


def _register(ctx: CreationContext) -> None:
    ctx.tenant_id = register_row(
        ctx.conn,
        schema=ctx.schema,
        name=ctx.name,
        org_id=ctx.org_id,
        tags=ctx.tags,
        tenant_type=ctx.tenant_type,
    )


def _add_domain(ctx: CreationContext) -> None:
    ctx.conn.execute(
        "INSERT INTO public.tenant_domains (domain, tenant_id, is_primary) VALUES (%s, %s, true)",
        [ctx.domain, ctx.tenant_id],
    )


def _audit(ctx: CreationContext) -> None:
    audit.write(
        ctx.conn,
        "tenant.create",
        actor=ctx.actor,
        tenant_schema=ctx.schema,
        details={
            "auth0_org_id": ctx.org_id,
            "organization_name": ctx.name,
            "role": ctx.role,
            "owner_role": ctx.owner,
            "domain": ctx.domain,
            "migrations": ctx.applied,
            "path": ctx.path,
            **({"pool_schema": ctx.pool_schema} if ctx.pool_schema else {}),
            **({"pool_notes": ctx.pool_notes} if ctx.pool_notes else {}),
            **({"tags": ctx.tags} if ctx.tags else {}),
            **({"past_hourly_limit": True} if ctx.past_hourly_limit else {}),
        },
    )


# -- the claim of a pool schema ------------------------------------------------------------
def _claim(ctx: CreationContext) -> None:
    """Take a usable pool schema and make it this tenant's (renamed schema, roles and
    ledger rows), or leave ``ctx.path`` direct with a note: the build steps then run. An
    entry that fails on the way (a file that does not apply to it, a rename refused) is set
    aside as broken and the next one is tried: a pool entry never fails a creation."""
    facts = ctx.facts or _read_facts(ctx)
    if not facts.pool_table:
        ctx.pool_notes.append("no pool table (run migrate_tenants --public)")
        return
    if any(role in facts.existing_roles for role in (ctx.role, ctx.owner)):
        return  # create_roles refuses with its own message
    passed: list[str] = []
    while (taken := _take_usable(ctx, passed)) is not None:
        pool, caught_up = taken
        _pause_for_tests("taken")
        outcome = _rename(ctx, pool, look=caught_up)
        if outcome == _RENAMED:
            ctx.path, ctx.pool_schema = POOL, pool
            ctx.applied = [m.version for m in ctx.migrations]
            _pause_for_tests("renamed")
            return
        if outcome == _TRACES:
            # Every entry is built alike, so the tenant is built directly (the next
            # steps) rather than trying the others.
            return
    ctx.pool_notes.append("pool empty")


def _take_usable(ctx: CreationContext, passed: list[str]) -> tuple[str, bool] | None:
    """The next pool schema, its row deleted, brought up to the files (and whether files
    were applied to it just now); entries a migration run holds are passed over, drifted
    ones are discarded (never handed out)."""
    untyped = tenant_types.takes_untyped(ctx.tenant_type)
    while taken := pool_engine.take(ctx.conn, passed, ctx.tenant_type, untyped=untyped):
        pool, locked = taken
        passed.append(pool)
        if not locked:
            ctx.pool_notes.append(f"{pool} passed over: a migration run holds it")
            continue
        plan = plan_schema(
            pool,
            TENANT,
            ctx.migrations,
            ledger.applied_for(ctx.conn, pool),
            schema_exists=_exists(ctx.conn, pool),
        )
        if plan.blocked:
            ctx.pool_notes.append(f"{pool} discarded: {_why_blocked(plan)}")
            pool_engine.discard(ctx.conn, pool)
            continue
        names = ", ".join(m.name for m in plan.pending)
        if plan.pending:
            try:
                with ctx.conn.transaction():  # a savepoint: a failure leaves the entry as it was
                    apply_to_new_schema(
                        ctx.conn,
                        pool,
                        plan.pending,
                        placeholders(pool, ctx.conn.info.dbname),
                        lock_timeout_ms=int(conf.setting("LOCK_TIMEOUT_MS")),
                        actor=ctx.actor,
                    )
            except (psycopg.Error, MigrationError) as exc:
                _set_aside(ctx, pool, f"{names} failed on it: {_first_line(exc)}")
                continue
            ctx.pool_notes.append(f"{pool} was behind: applied {names} first")
        return pool, bool(plan.pending)
    return None


def _set_aside(ctx: CreationContext, pool: str, why: str) -> None:
    """Put an entry that failed a claim back as ``broken`` (in the caller's transaction,
    whose claim deleted its row): never claimed, dropped by the next fill or drain."""
    pool_engine.record(ctx.conn, pool, state="broken", tenant_type=ctx.tenant_type)
    ctx.pool_notes.append(f"{pool} set aside as broken: {why}")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _exists(conn: psycopg.Connection, schema: str) -> bool:
    row = conn.execute("SELECT to_regnamespace(quote_ident(%s)) IS NOT NULL", [schema]).fetchone()
    return bool(row and row[0])


def _why_blocked(plan: SchemaPlan) -> str:
    if not plan.schema_exists:
        return "its schema is missing"
    if plan.drift:
        return "drift in " + ", ".join(d.migration.name for d in plan.drift)
    if plan.missing:
        return "applied files no longer on disk: " + ", ".join(a.name for a in plan.missing)
    return "files numbered below applied ones: " + ", ".join(m.name for m in plan.out_of_order)


_CLAIM_SAVEPOINT = sql.Identifier("tenancy_claim")


_RENAMED, _TRACES, _FAILED = "renamed", "traces", "failed"


def _rename(ctx: CreationContext, pool: str, *, look: bool) -> str:
    """Rename the pool schema, its roles and ledger rows to the tenant's, in a savepoint
    sent with them (no extra round trip): ``_RENAMED``. A rename refused (a role of the
    entry dropped by hand, say) rolls back to it and sets the entry aside: ``_FAILED``.
    ``look``: files were applied to it just now, after the trial rename of its build
    (``pool.fill``), so look again: if the catalog still holds a pool name as text, undo
    the renames and discard the entry: ``_TRACES``."""
    database = ctx.conn.info.dbname
    renames = pool_engine.rename_statements(pool, ctx.schema, database)
    savepoint = sql.SQL("SAVEPOINT {}").format(_CLAIM_SAVEPOINT)
    try:
        ctx.conn.execute(sql.SQL("; ").join([savepoint, *renames]))  # one round trip
    except psycopg.Error as exc:
        ctx.conn.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(_CLAIM_SAVEPOINT))
        _set_aside(ctx, pool, f"its rename failed: {_first_line(exc)}")
        return _FAILED
    if not look:
        return _RENAMED
    found = pool_engine.traces(
        ctx.conn, ctx.schema, [pool, *pool_engine.pool_roles(pool, database)]
    )
    if not found:
        ctx.conn.execute(sql.SQL("RELEASE SAVEPOINT {}").format(_CLAIM_SAVEPOINT))
        return _RENAMED
    ctx.conn.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(_CLAIM_SAVEPOINT))
    pool_engine.discard(ctx.conn, pool)
    ctx.pool_notes.append(
        f"{pool} discarded: its pool name is still written in {', '.join(sorted(set(found)))}"
    )
    return _TRACES


def _pause_for_tests(point: str) -> None:
    """Hold the claim's transaction open at ``point`` ("taken": the entry's row deleted;
    "renamed": schema and roles renamed, before the registry row) when the environment says
    ``<point>:<seconds>``, so that a test can kill the process right there. Unset in every
    real deployment."""
    wanted, _, seconds = os.environ.get(CLAIM_PAUSE_ENV, "").partition(":")
    if wanted == point and seconds:
        time.sleep(float(seconds))


def commit_as_owner(ctx: CreationContext) -> None:
    """The last step of every transaction that built a tenant schema: the transaction
    becomes the tenant owner's before it commits, so that whatever the tenant's files
    left to fire at COMMIT runs with the owner's rights, never the engine's (``seal``)."""
    ctx.conn.execute(seal(ctx.conn, ctx.schema, ctx.owner))


def _unless_claimed(step: Callable[[CreationContext], None]) -> Callable[[CreationContext], None]:
    def build(ctx: CreationContext) -> None:
        if ctx.path != POOL:
            step(ctx)

    return build


# The steps of a creation, in order, all inside one transaction. Named so that a failure
# says where it happened (and so tests can inject one at each step).
CREATION_STEPS: list[tuple[str, Callable[[CreationContext], None]]] = [
    ("check registry", _check_free),
    ("check limits", _check_limits),
    ("create role", create_roles),
    ("create schema", create_schema),
    ("apply migrations", apply_migrations),
    ("register", _register),
    ("add domain", _add_domain),
    ("audit", _audit),
    ("commit as owner", commit_as_owner),
]


# A creation with the pool on: a claimed schema replaces the build steps.
CLAIM_STEPS: list[tuple[str, Callable[[CreationContext], None]]] = [
    ("check registry", _check_free),
    ("check limits", _check_limits),
    ("claim pool schema", _claim),
    ("create role", _unless_claimed(create_roles)),
    ("create schema", _unless_claimed(create_schema)),
    ("apply migrations", _unless_claimed(apply_migrations)),
    ("register", _register),
    ("add domain", _add_domain),
    ("audit", _audit),
    ("commit as owner", commit_as_owner),
]


# -- a tenant saved through the project's tenant model (django-tenants' save()) ------------
# django-tenants' TenantMixin.save() inserts the row, runs CREATE SCHEMA (both committed),
# then calls migrate_schemas for the schema, which builds it here: roles, ownership, every
# tenant step, ledger, registry row and audit in one transaction. A failure rolls all of it
# back, and save() itself then drops the empty schema and deletes the row.
def _check_saved(ctx: CreationContext) -> None:
    ctx.facts = facts = _read_facts(ctx)
    if not facts.schema_exists:
        raise TenantError(
            f"Schema {ctx.schema} does not exist (to tenancy's connection): a tenant saved "
            "inside transaction.atomic() is not committed yet. Save it outside a transaction "
            "(TenantTestCase does), or create it with `manage.py tenant_create`."
        )
    if facts.registered:
        raise TenantError(f"Schema {ctx.schema} is already a registered tenant.")
    _drop_leftover_roles(ctx)
    row = ctx.conn.execute(
        "SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = %s",
        [ctx.schema],
    ).fetchone()
    if row and row[0]:
        raise TenantError(
            f"Schema {ctx.schema} already holds {row[0]} relation(s): it was built without "
            "tenancy. Run `manage.py tenancy_adopt --schema " + ctx.schema + "` instead."
        )


def _drop_leftover_roles(ctx: CreationContext) -> None:
    """Roles of an earlier tenant of this schema name (its row and schema deleted behind
    tenancy's back, e.g. by a test's table flush): named after this schema in this
    database, they are tenancy's own, and they own nothing but grants now."""
    leftover = [r for r in (ctx.role, ctx.owner) if r in ctx.facts.existing_roles]
    for role in leftover:
        ctx.conn.execute(sql.SQL("DROP OWNED BY {0}; DROP ROLE {0}").format(sql.Identifier(role)))
    if leftover:
        ctx.facts = _read_facts(ctx)


def _take_schema(ctx: CreationContext) -> None:
    """The schema django-tenants just created (empty, the connecting user's) becomes the
    owner role's, with the web role's grants, as ``create_schema`` makes them."""
    statements = [
        sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(
            sql.Identifier(ctx.schema), sql.Identifier(ctx.owner)
        ),
        *ownership.schema_grants(ctx.schema, ctx.owner, ctx.role),
    ]
    ctx.conn.execute(sql.SQL("; ").join(statements))


SAVED_STEPS: list[tuple[str, Callable[[CreationContext], None]]] = [
    ("check schema", _check_saved),
    ("check limits", _check_limits),
    ("create role", create_roles),
    ("take schema", _take_schema),
    ("apply migrations", apply_migrations),
    ("register", _register),
    ("audit", _audit),
    ("commit as owner", commit_as_owner),
]


def build_saved_tenant(
    schema: str, name: str, *, actor: str, tenant_type: str | None = None
) -> CreatedTenant:
    """Build the schema of a tenant just saved through the project's tenant model (its
    registry row takes the schema name as its org id), with the steps of its type. All or
    nothing."""
    started = time.monotonic()
    validate_schema_name(schema, allow_public=False)
    with connect_ready() as conn:
        # The project's domain model holds its domains: no domain of tenancy's.
        name = validate_org_name(name, schema)
        ctx = _new_context(conn, schema, name, schema, "", actor, tenant_type)
        lock = ("lock", lambda c: db.xact_lock(c.conn, db.CREATE_LOCK_NAME))
        try:
            run_steps(conn, [lock, *SAVED_STEPS], ctx, f"Building tenant {schema}", "built")
        except BaseException:
            drop_committed_roles(ctx)
            raise
    return _created(ctx, int((time.monotonic() - started) * 1000))


def pool_size() -> int:
    """``TENANCY["POOL_SIZE"]``: pool schemas kept ready (0: no pool)."""
    try:
        return max(0, int(conf.setting("POOL_SIZE")))
    except KeyError:
        return 0


def pool_off_reason(migrations: list[Migration]) -> str | None:
    """Why creations do not use the pool now (None: they do)."""
    if pool_size() == 0:
        return "pool off (TENANCY_POOL_SIZE is 0)"
    reason = pool_engine.unpoolable_reason(migrations)
    return f"tenant files cannot be pooled: {reason}" if reason else None


def citus_pool_reason(conn: psycopg.Connection) -> str | None:
    """Why the pool is off on this database regardless of its size: on Citus a claim's role
    renames would not reach the worker nodes, where the tenant's roles must exist."""
    if db.citus(conn):
        return "pool off on Citus (worker nodes do not receive the claim's role renames)"
    return None


def request_refill() -> None:
    """Ask the background worker to refill the pool (never built in this process: a web
    request must not pay for it). A failure to enqueue is logged, not raised: the tenant
    exists, and the next creation or `tenant_pool --fill` refills."""
    try:
        import_string(REFILL_TASK)()
    except Exception:  # noqa: BLE001 (the creation has succeeded whatever this does)
        logger.warning("Could not enqueue the pool refill", exc_info=True)


def run_steps(
    conn: psycopg.Connection,
    steps: list[tuple[str, Callable[[Any], None]]],
    ctx: Any,
    what: str,
    outcome: str,
) -> None:
    """Run named steps in one transaction; a failure names its step and says that nothing
    was ``outcome`` (the transaction was rolled back). TenantError passes through as is."""
    step = ""
    try:
        with conn.transaction():
            for step, action in steps:  # noqa: B007 (named in the error)
                action(ctx)
    except TenantError:
        raise
    except Exception as exc:
        raise TenantError(
            f"{what} failed at step '{step}': {exc}. "
            f"Nothing was {outcome} (the transaction was rolled back)."
        ) from exc


def tenant_migrations(tenant_type: str | None = None) -> list[Migration]:
    """Every tenant step (of ``tenant_type``'s, with multi-type tenants), refused as a whole
    if any file breaks the refusal rules (a new tenant gets all of them, in one
    transaction)."""
    return _buildable(steps.tenant_steps(tenant_type))


def typed_tenant_migrations() -> dict[str | None, list[Migration]]:
    """``tenant_migrations`` of every tenant type (``steps.typed``: None is an untyped
    tenant's); without multi-type tenants one entry, None."""
    typed = steps.typed() or {None: steps.tenant_steps()}
    return {kind: _buildable(migrations) for kind, migrations in typed.items()}


def _buildable(migrations: list[Migration]) -> list[Migration]:
    refused = [str(p) for m in migrations for p in rules.refusals(m)]
    if refused:
        raise TenantError(
            "Tenant migrations are refused, so no tenant can be built from them:\n  "
            + "\n  ".join(refused)
        )
    return migrations


def _context(
    conn: psycopg.Connection,
    org_id: str,
    name: str | None,
    actor: str,
    tenant_type: str | None = None,
) -> CreationContext:
    """Validated names and the checked tenant files of a creation (InvalidName or
    TenantError before any SQL)."""
    validate_org_id(org_id)
    domain = domain_for_org(org_id, conf.setting("DOMAIN_SUFFIX"))
    name = validate_org_name(name, org_id)
    schema = schema_for_org(org_id)
    return _new_context(conn, org_id, name, schema, domain, actor, tenant_type)


def _new_context(
    conn: psycopg.Connection,
    org_id: str,
    name: str,
    schema: str,
    domain: str,
    actor: str,
    tenant_type: str | None = None,
) -> CreationContext:
    """A creation's context: the schema's role names, its type and its checked steps."""
    tenant_type = tenant_types.checked(tenant_type)
    return CreationContext(
        conn=conn,
        org_id=org_id,
        name=name,
        schema=schema,
        role=role_for_schema(schema, conn.info.dbname),
        owner=owner_role_for_schema(schema, conn.info.dbname),
        domain=domain,
        actor=actor,
        migrations=tenant_migrations(tenant_type),
        tenant_type=tenant_type,
    )


def uses_own_model() -> bool:
    """True when TENANT_MODEL is tenancy's registry itself (the example project); False
    with a project's own tenant model, whose rows tenancy's registry only sits beside."""
    from django_tenants.utils import get_tenant_model

    return bool(get_tenant_model()._meta.db_table == "tenant_registry")


def _refuse_with_project_model() -> None:
    if not uses_own_model():
        raise TenantError(
            "This project has its own TENANT_MODEL: create tenants through it "
            "(Tenant(schema_name=...).save(), or django-tenants' `manage.py create_tenant`); "
            "tenancy builds each schema when the model saves it."
        )


def create_tenant(
    org_id: str,
    name: str | None = None,
    *,
    actor: str = "system",
    tags: Iterable[str] = (),
    override_hourly_limit: bool = False,
    tenant_type: str | None = None,
) -> CreatedTenant:
    """Create a tenant, all or nothing, with ``tags`` on its registry row and the steps of
    ``tenant_type`` (multi-type tenants; None: the first type). Raises
    ``InvalidName`` (bad id or tag: no SQL ran) or ``TenantError`` (refused or failed:
    nothing was left behind; ``CreationLimitReached`` at the hourly limit, unless
    ``override_hourly_limit``: the creation's audit row then says ``past_hourly_limit``)."""
    _refuse_with_project_model()
    started = time.monotonic()
    validate_org_id(org_id)
    validate_org_name(name, org_id)
    checked_tags = validate_tags(tags)
    with connect_ready() as conn:
        ctx = _context(conn, org_id, name, actor, tenant_type)
        ctx.tags = checked_tags
        ctx.override_hourly_limit = override_hourly_limit
        off = citus_pool_reason(conn) or pool_off_reason(ctx.migrations)
        steps = CREATION_STEPS if off else CLAIM_STEPS
        if off and pool_size():
            ctx.pool_notes.append(off)
        # Creations queue on one lock, so limits and case twins are checked without races.
        lock = ("lock", lambda c: db.xact_lock(c.conn, db.CREATE_LOCK_NAME))
        try:
            run_steps(conn, [lock, *steps], ctx, f"Creating tenant {org_id}", "created")
        except BaseException:
            drop_committed_roles(ctx)
            raise
    created = _created(ctx, int((time.monotonic() - started) * 1000))
    if not off:
        request_refill()
    return created


def check_creation(
    org_id: str,
    name: str | None = None,
    *,
    override_hourly_limit: bool = False,
    tenant_type: str | None = None,
) -> CreatedTenant:
    """What ``create_tenant`` would create, checked as it checks (names, tenant files,
    registry, case twins, limits), changing nothing: a dry run."""
    validate_org_id(org_id)
    validate_org_name(name, org_id)
    with connect_ready() as conn:
        ctx = _context(conn, org_id, name, "", tenant_type)
        ctx.override_hourly_limit = override_hourly_limit
        with conn.transaction():
            _check_free(ctx)
            _check_limits(ctx)
    ctx.applied = [m.version for m in ctx.migrations]
    return _created(ctx, 0)


def _created(ctx: CreationContext, elapsed_ms: int) -> CreatedTenant:
    return CreatedTenant(
        org_id=ctx.org_id,
        name=ctx.name,
        schema=ctx.schema,
        role=ctx.role,
        domain=ctx.domain,
        migrations_applied=ctx.applied,
        elapsed_ms=elapsed_ms,
        path=ctx.path,
        pool_schema=ctx.pool_schema,
        pool_notes=list(ctx.pool_notes),
        tags=list(ctx.tags),
        past_hourly_limit=ctx.past_hourly_limit,
        tenant_type=ctx.tenant_type,
    )


# -- the registry: lookups, listing, tags ---------------------------------------------------
def tenant_key(ident: str) -> tuple[str, str]:
    """(column, value) of a tenant named by its organization id or by its schema name
    (with no schema prefix, a host project's tenant's org id is its schema name)."""
    prefix = schema_prefix()
    if isinstance(ident, str) and prefix and ident.startswith(prefix):
        return "schema_name", validate_schema_name(ident, allow_public=False)
    try:
        return "auth0_org_id", validate_org_id(ident)
    except InvalidName:
        if prefix:
            raise
        return "schema_name", validate_schema_name(ident, allow_public=False)


def unknown_tenant(value: str) -> TenantError:
    return TenantError(
        f"No tenant {value} is registered (`manage.py tenant_list` shows the registered ones)."
    )


@dataclass(frozen=True)
class ListedTenant:
    schema: str
    org_id: str
    name: str
    status: str
    schema_exists: bool
    tags: list[str]
    tenant_type: str | None = None  # multi-type tenants (None without them)


def list_tenants(tags: Iterable[str] = ()) -> list[ListedTenant]:
    """The registered tenants in creation order; with ``tags``, those having every one."""
    wanted = validate_tags(tags)
    with connect_ready() as conn:
        rows = conn.execute(
            """
            SELECT tr.schema_name, tr.auth0_org_id, tr.organization_name, tr.status,
                   (n.oid IS NOT NULL), tr.tags, tr.tenant_type
            FROM public.tenant_registry tr
            LEFT JOIN pg_namespace n ON n.nspname = tr.schema_name
            WHERE tr.schema_name <> 'public' AND tr.tags @> %s::varchar[]
            ORDER BY tr.created_at, tr.id
            """,
            [wanted],
        ).fetchall()
    return [
        ListedTenant(*row[:5], tags=list(row[5]), tenant_type=tenant_types.registered(row[6]))
        for row in rows
    ]


@dataclass(frozen=True)
class TagChange:
    schema: str
    org_id: str
    name: str
    before: list[str]
    tags: list[str]  # after the change

    @property
    def changed(self) -> bool:
        return self.before != self.tags


def set_tenant_tags(
    ident: str,
    *,
    add: Iterable[str] = (),
    remove: Iterable[str] = (),
    replace: Iterable[str] | None = None,
    actor: str,
) -> TagChange:
    """Add and remove tags, or ``replace`` them all, on the tenant named by org id or
    schema: one transaction on its locked registry row, audited as ``tenant.tags`` (before,
    after). Tags are kept sorted and unique; a change that changes nothing writes nothing.
    Raises ``InvalidName`` (a bad tag or name: nothing read) or ``TenantError``."""
    added, removed = validate_tags(add), validate_tags(remove)
    replaced = None if replace is None else validate_tags(replace)
    _check_tag_request(added, removed, replaced)
    column, value = tenant_key(ident)
    with connect_ready() as conn, conn.transaction():
        row = conn.execute(
            sql.SQL(
                "SELECT id, schema_name, auth0_org_id, organization_name, tags "
                "FROM public.tenant_registry WHERE {} = %s FOR UPDATE"
            ).format(sql.Identifier(column)),
            [value],
        ).fetchone()
        if row is None:
            raise unknown_tenant(value)
        tenant_id, schema, org_id, name, before = row[0], row[1], row[2], row[3], list(row[4])
        after = replaced if replaced is not None else sorted({*before, *added} - {*removed})
        change = TagChange(schema, org_id, name, before, after)
        if change.changed:
            _write_tags(conn, tenant_id, change, actor)
    return change


def _check_tag_request(added: list[str], removed: list[str], replaced: list[str] | None) -> None:
    if replaced is not None and (added or removed):
        raise TenantError("Either replace the tags or add and remove some, not both.")
    both = sorted(set(added) & set(removed))
    if both:
        raise TenantError(f"Tag(s) {', '.join(both)} both added and removed: refused.")


def _write_tags(conn: psycopg.Connection, tenant_id: int, change: TagChange, actor: str) -> None:
    conn.execute(
        "UPDATE public.tenant_registry SET tags = %s::varchar[], updated_at = now() WHERE id = %s",
        [change.tags, tenant_id],
    )
    audit.write(
        conn,
        "tenant.tags",
        actor=actor,
        tenant_schema=change.schema,
        details={
            "auth0_org_id": change.org_id,
            "before": change.before,
            "after": change.tags,
            "added": sorted(set(change.tags) - set(change.before)),
            "removed": sorted(set(change.before) - set(change.tags)),
        },
    )
