"""The plan: ledger + files → what each schema needs, in a constant number of queries.

For every schema in scope: pending files, drift (an applied file whose content changed),
files in the ledger but gone from disk, and new files numbered below what is applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import psycopg

from tenancy.engine import ledger
from tenancy.engine.errors import RunError
from tenancy.engine.source import PUBLIC, TENANT, Migration, version_key


@dataclass(frozen=True)
class Drift:
    migration: Migration
    recorded_checksum: str


@dataclass
class SchemaPlan:
    schema: str
    scope: str
    pending: list[Migration] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)
    missing: list[ledger.Applied] = field(default_factory=list)
    out_of_order: list[Migration] = field(default_factory=list)
    applied_count: int = 0
    last_applied: ledger.Applied | None = None
    schema_exists: bool = True
    # The schema's own steps, in order (with multi-type tenants, those of its type).
    steps: list[Migration] = field(default_factory=list)
    tenant_type: str | None = None

    @property
    def blocked(self) -> bool:
        return bool(self.drift or self.missing or self.out_of_order or not self.schema_exists)


@dataclass
class Plan:
    migrations: dict[str, list[Migration]]
    schemas: list[SchemaPlan]

    @property
    def pending_count(self) -> int:
        return sum(len(s.pending) for s in self.schemas)

    @property
    def with_pending(self) -> list[SchemaPlan]:
        return [s for s in self.schemas if s.pending]

    @property
    def drifted(self) -> list[SchemaPlan]:
        return [s for s in self.schemas if s.drift]

    @property
    def blocked(self) -> list[SchemaPlan]:
        return [s for s in self.schemas if s.blocked]

    def order_tenants(self, first: list[str]) -> None:
        """Put the tenant schemas named in ``first`` first, in that order (the rest keep
        their registry order after them); public stays where it is."""
        rank = {schema: i for i, schema in enumerate(first)}
        last = len(rank)
        public = [s for s in self.schemas if s.scope == PUBLIC]
        tenants = [s for s in self.schemas if s.scope != PUBLIC]
        tenants.sort(key=lambda s: rank.get(s.schema, last))  # stable: ties keep their order
        self.schemas = public + tenants

    def for_scope(self, scope: str) -> list[SchemaPlan]:
        return [s for s in self.schemas if s.scope == scope]


def plan_schema(
    schema: str,
    scope: str,
    migrations: list[Migration],
    applied: dict[str, ledger.Applied],
    *,
    schema_exists: bool = True,
) -> SchemaPlan:
    """One schema's plan from its ledger rows; the pure core that every caller shares."""
    by_number = {version_key(v): a for v, a in applied.items()}
    numbers = {m.key for m in migrations}
    plan = SchemaPlan(schema=schema, scope=scope, schema_exists=schema_exists, steps=migrations)
    plan.applied_count = len(applied)
    if applied:
        plan.last_applied = max(
            applied.values(), key=lambda a: (a.applied_at is not None, a.applied_at, a.version)
        )
    highest_applied = max((k for k in by_number if isinstance(k, int)), default=-1)
    for m in migrations:
        row = by_number.get(m.key)
        if row is None:
            plan.pending.append(m)
            # SQL files are ordered by number; Django steps by their dependencies.
            if m.is_sql_file and m.number < highest_applied:
                plan.out_of_order.append(m)
        elif row.checksum is not None and row.checksum != m.checksum:
            plan.drift.append(Drift(m, row.checksum))
    plan.missing = [
        a for k, a in sorted(by_number.items(), key=lambda kv: str(kv[0])) if k not in numbers
    ]
    return plan


def build_plan(
    conn: psycopg.Connection,
    migrations: dict[str, list[Migration]],
    *,
    public: bool = True,
    tenants: bool = True,
    only: list[str] | None = None,
    typed: Mapping[str | None, list[Migration]] | None = None,
) -> Plan:
    """The plan for public and/or every registered tenant (or just ``only``), from each
    scope's steps in order (``migrations``: SQL files, and a tenant app's Django migrations).
    ``typed``: with multi-type tenants, each type's steps (None: a tenant without a type);
    a tenant schema then gets those of its own type.

    Two queries in all: the registry and the ledger, each read for ``only``'s schemas
    alone when it is given (a rollout's stage, a run of one tenant)."""
    wanted = set(only) if only is not None else None
    applied = ledger.applied_all(conn, wanted)
    schemas: list[SchemaPlan] = []
    if public and (wanted is None or PUBLIC in wanted):
        schemas.append(plan_schema(PUBLIC, PUBLIC, migrations[PUBLIC], applied.get(PUBLIC, {})))
    if tenants:
        for tenant in ledger.registered_tenants(conn, wanted):
            planned = plan_schema(
                tenant.schema,
                TENANT,
                steps_of(tenant, migrations[TENANT], typed),
                applied.get(tenant.schema, {}),
                schema_exists=tenant.schema_exists,
            )
            planned.tenant_type = tenant.tenant_type
            schemas.append(planned)
    return Plan(migrations=migrations, schemas=schemas)


def steps_of(
    tenant: ledger.RegisteredTenant,
    fleet: list[Migration],
    typed: Mapping[str | None, list[Migration]] | None,
) -> list[Migration]:
    """A tenant's own steps: with ``typed`` (multi-type tenants) its type's, else
    ``fleet``. A type the settings no longer name is an error, not a guess."""
    if typed is None:
        return fleet
    found = typed.get(tenant.tenant_type)
    if found is None:
        raise RunError(
            f"Tenant {tenant.schema} has type {tenant.tenant_type!r}, which TENANT_TYPES does "
            "not name: restore the type in the settings, or give the tenant one it names."
        )
    return found
