"""Tenant lifecycle: create (one transaction: schema, migrations, ledger, role, registry,
domain, audit), and the registry reads that commands and the admin share."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from tenancy import conf
from tenancy.engine import audit, db, ledger, ownership, rules
from tenancy.engine.errors import TenancyError
from tenancy.engine.executor import apply_to_new_schema, placeholders
from tenancy.engine.names import (
    app_role,
    domain_for_org,
    owner_group_role,
    owner_role_for_schema,
    role_for_schema,
    schema_for_org,
    validate_org_id,
    validate_org_name,
)
from tenancy.engine.source import TENANT, Migration, discover
from tenancy.services.infrastructure import connect_ready


class TenantError(TenancyError):
    """A tenant operation refused or failed; the message says why, for the user."""


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


@dataclass(frozen=True)
class Facts:
    """What a creation checks, read in one query after the creation lock is held."""

    registered: list[tuple[str, str]]  # (auth0_org_id, schema_name) rows in the way
    schema_exists: bool
    existing_roles: list[str]  # of the tenant's roles and the shared ones
    superuser: bool
    tenants: int  # counted up to TENANCY["MAX_TENANTS"]
    recent_creations: int  # counted up to TENANCY["MAX_CREATIONS_PER_HOUR"]


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
            LIMIT %(max_per_hour)s) AS c)
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
        raise TenantError(
            f"Too many tenants created in the last hour: the limit, "
            f"TENANCY['MAX_CREATIONS_PER_HOUR'] = {max_per_hour}, is reached (creations are "
            "counted up to it). Try again later."
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
    ctx.conn.execute(sql.SQL("; ").join(statements))  # one round trip


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


def _register(ctx: CreationContext) -> None:
    row = ctx.conn.execute(
        "INSERT INTO public.tenant_registry (schema_name, organization_name, auth0_org_id) "
        "VALUES (%s, %s, %s) RETURNING id",
        [ctx.schema, ctx.name, ctx.org_id],
    ).fetchone()
    assert row is not None
    ctx.tenant_id = int(row[0])


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
        },
    )


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
]


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


def tenant_migrations() -> list[Migration]:
    """Every tenant file, refused as a whole if any breaks the refusal rules (a new tenant
    gets all of them, in one transaction)."""
    migrations = discover(conf.migrations_dir(), TENANT)
    refused = [str(p) for m in migrations for p in rules.refusals(m)]
    if refused:
        raise TenantError(
            "Tenant migrations are refused, so no tenant can be built from them:\n  "
            + "\n  ".join(refused)
        )
    return migrations


def _context(
    conn: psycopg.Connection, org_id: str, name: str | None, actor: str
) -> CreationContext:
    """Validated names and the checked tenant files of a creation (InvalidName or
    TenantError before any SQL)."""
    validate_org_id(org_id)
    schema = schema_for_org(org_id)
    return CreationContext(
        conn=conn,
        org_id=org_id,
        name=validate_org_name(name, org_id),
        schema=schema,
        role=role_for_schema(schema, conn.info.dbname),
        owner=owner_role_for_schema(schema, conn.info.dbname),
        domain=domain_for_org(org_id, conf.setting("DOMAIN_SUFFIX")),
        actor=actor,
        migrations=tenant_migrations(),
    )


def create_tenant(org_id: str, name: str | None = None, *, actor: str = "system") -> CreatedTenant:
    """Create a tenant, all or nothing. Raises ``InvalidName`` (bad id: no SQL ran) or
    ``TenantError`` (refused or failed: nothing was left behind)."""
    started = time.monotonic()
    validate_org_id(org_id)
    validate_org_name(name, org_id)
    with connect_ready() as conn:
        ctx = _context(conn, org_id, name, actor)
        # Creations queue on one lock, so limits and case twins are checked without races.
        lock = ("lock", lambda c: db.xact_lock(c.conn, db.CREATE_LOCK_NAME))
        run_steps(conn, [lock, *CREATION_STEPS], ctx, f"Creating tenant {org_id}", "created")
    return _created(ctx, int((time.monotonic() - started) * 1000))


def check_creation(org_id: str, name: str | None = None) -> CreatedTenant:
    """What ``create_tenant`` would create, checked as it checks (names, tenant files,
    registry, case twins, limits), changing nothing: a dry run."""
    validate_org_id(org_id)
    validate_org_name(name, org_id)
    with connect_ready() as conn:
        ctx = _context(conn, org_id, name, actor="")
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
    )


def list_tenants() -> list[ledger.RegisteredTenant]:
    with connect_ready() as conn:
        return ledger.registered_tenants(conn)
