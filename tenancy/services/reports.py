"""Reports: each tenant's migration state, size and activity, in a constant number of
queries whatever the number of tenants. The admin, `tenant_status` and the tests share it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from tenancy.engine import citus, ledger
from tenancy.services import steps
from tenancy.services.infrastructure import connect_ready


def human_size(size: int) -> str:
    """A byte count as people read it: 812 bytes, 24.0 kB, 3.5 MB, 1.2 GB."""
    value = float(size)
    for unit in ("kB", "MB", "GB"):
        if value < 1024 and unit == "kB":
            return f"{size} bytes"
        value /= 1024
        if value < 1024 or unit == "GB":
            return f"{value:.1f} {unit}"
    return f"{size} bytes"  # pragma: no cover (the loop returns)


@dataclass
class SchemaState:
    schema: str
    scope: str
    org_id: str | None
    name: str | None
    status: str | None
    schema_exists: bool
    applied: int
    pending: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # applied files no longer on disk
    # pending files numbered below an applied one (a run refuses them)
    out_of_order: list[str] = field(default_factory=list)
    last_migration: str | None = None
    last_applied_at: datetime | None = None
    failed: bool = False
    last_error: str | None = None
    last_run_at: datetime | None = None
    size_bytes: int | None = None
    activity_count: int = 0
    node: str | None = None  # on Citus: the worker node (host:port) the schema lives on
    tenant_type: str | None = None  # multi-type tenants: its type (None: the first type)
    steps: list[str] = field(default_factory=list)  # its own steps (its type's), in order

    def to_dict(self) -> dict:
        return {
            "schema": self.schema,
            "scope": self.scope,
            "auth0_org_id": self.org_id,
            "organization_name": self.name,
            "status": self.status,
            "schema_exists": self.schema_exists,
            "applied": self.applied,
            "pending": self.pending,
            "drift": self.drift,
            "missing_files": self.missing,
            "out_of_order": self.out_of_order,
            "last_migration": self.last_migration,
            "last_applied_at": self.last_applied_at.isoformat() if self.last_applied_at else None,
            "failed": self.failed,
            "last_error": self.last_error,
            "size_bytes": self.size_bytes,
            "activity_count": self.activity_count,
            "node": self.node,
            "tenant_type": self.tenant_type,
        }


def schema_states(
    *, include_public: bool = True, only: list[str] | None = None, sizes: bool = False
) -> list[SchemaState]:
    """One row per schema. A schema is 'failed' when its latest attempt failed and the
    migration it failed on is still pending (a later success clears it)."""
    with connect_ready() as conn:
        plan = steps.plan(conn, public=include_public, only=only)
        registry = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT schema_name, auth0_org_id, organization_name, status "
                "FROM public.tenant_registry"
            ).fetchall()
        }
        latest = ledger.latest_attempts(conn)
        activity = dict(
            conn.execute(
                "SELECT tenant_schema, count(*) FROM public.audit_logs "
                "WHERE tenant_schema IS NOT NULL GROUP BY tenant_schema"
            ).fetchall()
        )
        nodes = citus.tenant_nodes(conn)
        size_of: dict[str, int] = {}
        if sizes:
            size_of = dict(
                conn.execute(
                    """
                    SELECT n.nspname, sum(pg_total_relation_size(c.oid))::bigint
                    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE c.relkind IN ('r', 'p', 'm')
                      AND (n.nspname = 'public' OR n.nspname LIKE 'tenant\\_%%')
                    GROUP BY n.nspname
                    """
                ).fetchall()
            )
    states: list[SchemaState] = []
    for s in plan.schemas:
        org_id, name, status = registry.get(s.schema, (None, None, None))
        last_status, last_error, last_at = latest.get(s.schema, (None, None, None))
        failed = ledger.failed_last(last_status, bool(s.pending), s.schema_exists)
        states.append(
            SchemaState(
                schema=s.schema,
                scope=s.scope,
                org_id=org_id,
                name=name,
                status=status,
                schema_exists=s.schema_exists,
                applied=s.applied_count,
                pending=[m.name for m in s.pending],
                drift=[d.migration.name for d in s.drift],
                missing=[a.name for a in s.missing],
                out_of_order=[m.name for m in s.out_of_order],
                last_migration=s.last_applied.name if s.last_applied else None,
                last_applied_at=s.last_applied.applied_at if s.last_applied else None,
                failed=failed,
                last_error=last_error if failed else None,
                last_run_at=last_at,
                size_bytes=size_of.get(s.schema) if sizes else None,
                activity_count=int(activity.get(s.schema, 0)),
                node=nodes.get(s.schema),
                tenant_type=s.tenant_type,
                steps=[m.name for m in s.steps],
            )
        )
    return states
