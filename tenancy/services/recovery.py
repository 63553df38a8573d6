"""Recovery verbs: accept drift, baseline, reset the ledger of one tenant. Each audited."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass

from tenancy import conf
from tenancy.engine import audit, db, ledger
from tenancy.engine.names import validate_schema_name
from tenancy.engine.plan import build_plan
from tenancy.engine.source import PUBLIC, TENANT, discover
from tenancy.services import runs


class RecoveryError(Exception):
    pass


@dataclass(frozen=True)
class Accepted:
    name: str
    rows: int


def default_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid{os.getuid()}"


def accept_checksum(
    version: str, *, public: bool = False, only: list[str] | None = None, actor: str
) -> Accepted:
    """Record the current checksum of an applied file whose content changed (drift)."""
    if not version.isdigit():
        raise RecoveryError(f"--accept-checksum takes a migration number, not {version!r}.")
    scope = PUBLIC if public else TENANT
    matches = [m for m in discover(conf.migrations_dir(), scope) if m.number == int(version)]
    if not matches:
        raise RecoveryError(f"No {scope} migration numbered {version} on disk.")
    migration = matches[0]
    with db.connect(conf.conninfo()) as conn, conn.transaction():
        plan = build_plan(conn, conf.migrations_dir(), public=public, tenants=not public, only=only)
        schemas = [
            s.schema
            for s in plan.schemas
            if s.scope == scope and any(d.migration.number == migration.number for d in s.drift)
        ]
        if not schemas:
            raise RecoveryError(f"{migration.name} shows no drift: nothing to accept.")
        rows = ledger.accept_checksum(conn, migration, schemas)
        audit.write(
            conn,
            "migrate.accept_checksum",
            actor=actor,
            details={
                "migration": f"{scope}/{migration.name}",
                "checksum": migration.checksum,
                "schemas": schemas,
            },
        )
    return Accepted(migration.name, rows)


def reset_tracking(schema: str, *, actor: str) -> int:
    """The seed's 'Reset Migration Tracking': forget every ledger row of one schema."""
    validate_schema_name(schema)
    with db.connect(conf.conninfo()) as conn, conn.transaction():
        deleted = ledger.delete(conn, schema)
        audit.write(
            conn,
            "migrate.reset_tracking",
            actor=actor,
            tenant_schema=schema,
            details={"deleted_rows": deleted},
        )
    return deleted


def baseline(
    version: str, *, public: bool, tenants: bool, only: list[str] | None, actor: str
) -> runs.RunReport:
    """Record migrations up to ``version`` as applied without running them."""
    if not version.isdigit():
        raise RecoveryError(f"--baseline takes a migration number, not {version!r}.")
    return runs.migrate(
        public=public,
        tenants=tenants,
        only=only,
        fake=True,
        up_to=int(version),
        actor=actor,
        allow_out_of_order=True,
    )
