"""Recovery verbs: accept drift, baseline, reset the ledger of one tenant. Each audited."""

from __future__ import annotations

from dataclasses import dataclass

from tenancy import conf
from tenancy.engine import audit, db, ledger
from tenancy.engine import pool as pool_engine
from tenancy.engine.errors import TenancyError
from tenancy.engine.names import PUBLIC_SCHEMA, validate_schema_name
from tenancy.engine.source import PUBLIC, TENANT, Migration, version_key
from tenancy.services import runs, steps
from tenancy.services.infrastructure import connect_ready


class RecoveryError(TenancyError):
    pass


@dataclass(frozen=True)
class Accepted:
    name: str
    rows: int


def drifted(
    version: str, *, public: bool = False, only: list[str] | None = None
) -> tuple[Migration, list[str]]:
    """The applied step ``version`` (a SQL file's number, or a tenant app's migration as
    ``app.name``) whose content changed, and the schemas whose ledger holds its old
    checksum (none when nothing drifted)."""
    wanted = version.strip()
    if not wanted:
        raise RecoveryError("--accept-checksum takes a migration number (or APP.NAME).")
    scope = PUBLIC if public else TENANT
    key = version_key(wanted)
    matches = [m for m in steps.migrations()[scope] if m.key == key]
    if not matches:
        raise RecoveryError(f"No {scope} migration {wanted} on disk.")
    migration = matches[0]
    with connect_ready() as conn:
        plan = steps.plan(conn, public=public, tenants=not public, only=only)
    schemas = [
        s.schema
        for s in plan.schemas
        if s.scope == scope and any(d.migration.key == key for d in s.drift)
    ]
    return migration, schemas


def accept_checksum(
    version: str, *, public: bool = False, only: list[str] | None = None, actor: str
) -> Accepted:
    """Record the current checksum of an applied file whose content changed (drift)."""
    migration, schemas = drifted(version, public=public, only=only)
    if not schemas:
        raise RecoveryError(f"{migration.name} shows no drift: nothing to accept.")
    with db.connect(conf.conninfo()) as conn, conn.transaction():
        rows = ledger.accept_checksum(conn, migration, schemas)
        audit.write(
            conn,
            "migrate.accept_checksum",
            actor=actor,
            details={
                "migration": f"{migration.scope}/{migration.name}",
                "checksum": migration.checksum,
                "schemas": schemas,
            },
        )
        details = {
            "migration": f"{migration.scope}/{migration.name}",
            "checksum": migration.checksum,
        }
        rows_per_schema = [(schema, details) for schema in schemas]
        audit.write_per_schema(
            conn, "migrate.accept_checksum.schema", actor=actor, rows=rows_per_schema
        )
    return Accepted(migration.name, rows)


def tracked_rows(schema: str) -> int:
    """How many ledger rows ``reset_tracking`` would delete."""
    validate_schema_name(schema)
    with connect_ready() as conn:
        return len(ledger.applied_for(conn, schema))


def reset_tracking(schema: str, *, actor: str) -> int:
    """The seed's 'Reset Migration Tracking': forget every ledger row of one schema."""
    validate_schema_name(schema)
    if pool_engine.is_pool_schema(schema):
        raise RecoveryError(
            f"{schema} is a warm-pool schema, not a tenant: its ledger is the pool's. "
            "`manage.py tenant_pool --drain` drops pool schemas; the next fill rebuilds them."
        )
    with db.connect(conf.conninfo()) as conn, conn.transaction():
        deleted = ledger.delete(conn, schema)
        registered = conn.execute(
            "SELECT 1 FROM public.tenant_registry WHERE schema_name = %s", [schema]
        ).fetchone()
        if not deleted and not registered and schema != PUBLIC_SCHEMA:
            raise RecoveryError(
                f"{schema} is not a registered tenant schema and has no ledger rows: "
                "nothing to reset."
            )
        audit.write(
            conn,
            "migrate.reset_tracking",
            actor=actor,
            tenant_schema=schema,
            details={"deleted_rows": deleted},
        )
    return deleted


def baseline(
    version: str,
    *,
    public: bool,
    tenants: bool,
    only: list[str] | None,
    actor: str,
    dry_run: bool = False,
) -> runs.RunReport:
    """Record migrations up to ``version`` as applied without running them (``dry_run``:
    only plan it)."""
    if not version.strip().isdigit():
        raise RecoveryError(f"--baseline takes a migration number, not {version!r}.")
    return runs.migrate(
        public=public,
        tenants=tenants,
        only=only,
        fake=True,
        up_to=int(version),
        actor=actor,
        allow_out_of_order=True,
        dry_run=dry_run,
    )
