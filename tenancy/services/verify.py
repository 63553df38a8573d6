"""Verify tenant schemas: does each tenant's catalog match what its migration files build?

The reference is built, not stored: in one transaction, a scratch schema with scratch roles
named as real ones (``tenancy_verify_<hex>``, ``names.py``) gets the tenant files applied
exactly as tenant creation applies them, is described (``engine/catalog.py``), and the
transaction is rolled back, so nothing remains (schema, roles, ledger rows). A tenant whose
ledger shows fewer files (behind) or versions without a file (ahead) is compared with a
reference built from the files it has applied: one reference per distinct applied set.

Tenants are compared by fingerprint (one query for all of them); only those that differ are
described in full (one more query) and diffed line by line.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from tenancy import conf
from tenancy.engine import catalog, db, ledger, ownership, rules
from tenancy.engine.errors import TenancyError
from tenancy.engine.executor import apply_to_new_schema, placeholders
from tenancy.engine.names import (
    app_role,
    owner_group_role,
    owner_role_for_schema,
    role_for_schema,
    validate_schema_name,
)
from tenancy.engine.plan import plan_schema, steps_of
from tenancy.engine.source import TENANT, Migration
from tenancy.services import steps
from tenancy.services.infrastructure import connect_ready

SCRATCH_PREFIX = "tenancy_verify_"
# From this many tenants on, the fingerprint query runs on connections of its own, split over
# ``jobs`` of them (the server works one query on one core: ~0.8 ms a schema at 10,000), and
# those are closed afterwards: the query fills the backend's catalog caches (~0.5 GB at
# 10,000 tenants), which a pooled connection would keep.
OWN_CONNECTIONS_FROM = 1000
DEFAULT_JOBS = 2

T = TypeVar("T")


class VerifyError(TenancyError):
    """Verification cannot run (bad or unknown schema names, a file that does not apply)."""


@dataclass
class TenantResult:
    schema: str
    differences: list[str] = field(default_factory=list)
    behind: list[str] = field(default_factory=list)  # files not applied (names)
    ahead: list[str] = field(default_factory=list)  # applied versions with no file

    @property
    def ok(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "ok": self.ok,
            "differences": self.differences,
            "behind": len(self.behind),
            "behind_files": self.behind,
            "ahead": self.ahead,
        }


@dataclass
class VerifyReport:
    tenants: list[TenantResult]
    references: int  # scratch schemas built (one per distinct applied set)
    elapsed_ms: int

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tenants)

    @property
    def differing(self) -> list[TenantResult]:
        return [t for t in self.tenants if not t.ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenants": [t.to_dict() for t in self.tenants],
            "summary": {
                "tenants": len(self.tenants),
                "ok": len(self.tenants) - len(self.differing),
                "differing": len(self.differing),
                "behind": sum(bool(t.behind) for t in self.tenants),
                "references_built": self.references,
                "elapsed_ms": self.elapsed_ms,
            },
        }


@dataclass(frozen=True)
class _Group:
    """Tenants sharing one set of applied versions, and the files that set stands for."""

    files: tuple[Migration, ...]  # the applied files, in version order: the reference
    behind: tuple[str, ...]
    ahead: tuple[str, ...]


def verify(schemas: list[str] | None = None, *, jobs: int = DEFAULT_JOBS) -> VerifyReport:
    """Compare every registered tenant (or ``schemas``) with its reference; ``jobs``:
    connections the fingerprints of many tenants are split over."""
    started = time.monotonic()
    typed = steps.typed()
    migrations = steps.tenant_steps()
    with connect_ready() as conn:
        registered = _registered(conn, schemas)
        present = [t.schema for t in registered if t.schema_exists]
        own = {t.schema: steps_of(t, migrations, typed) for t in registered}
        groups = _groups(conn, present, own)
        file_sets = sorted({g.files for g in groups.values()}, key=_versions)
        references = _references(conn, file_sets)
        results = _compare(conn, present, groups, references, max(1, jobs))
    for t in registered:
        if not t.schema_exists:
            results[t.schema] = TenantResult(t.schema, [_MISSING_SCHEMA.format(schema=t.schema)])
    return VerifyReport(
        tenants=[results[t.schema] for t in registered],
        references=len(references),
        elapsed_ms=int((time.monotonic() - started) * 1000),
    )


_MISSING_SCHEMA = "missing: schema {schema} (registered, but it does not exist)"


def _versions(files: tuple[Migration, ...]) -> tuple[int | str, ...]:
    return tuple(m.key for m in files)


def _registered(conn: psycopg.Connection, only: list[str] | None) -> list[ledger.RegisteredTenant]:
    """Every registered tenant in registry order, or those of ``only`` (validated; an
    unregistered name is an error)."""
    wanted = {validate_schema_name(s, allow_public=False) for s in only} if only else None
    registered = ledger.registered_tenants(conn)
    if wanted is None:
        return registered
    unknown = sorted(wanted - {t.schema for t in registered})
    if unknown:
        raise VerifyError(
            f"Not a registered tenant schema: {', '.join(unknown)}. "
            "`manage.py tenant_list` shows the registered ones."
        )
    return [t for t in registered if t.schema in wanted]


def _groups(
    conn: psycopg.Connection, schemas: list[str], own: dict[str, list[Migration]]
) -> dict[str, _Group]:
    """Each schema's group, planned once per distinct applied set and steps (its type's;
    usually one group)."""
    # One schema (the admin page): its rows only; otherwise the whole ledger in one query.
    if len(schemas) == 1:
        applied = {schemas[0]: ledger.applied_for(conn, schemas[0])}
    else:
        applied = ledger.applied_all(conn)
    by_set: dict[tuple[frozenset[str], int], _Group] = {}
    found: dict[str, _Group] = {}
    for schema in schemas:
        rows = applied.get(schema, {})
        migrations = own[schema]
        key = (frozenset(rows), id(migrations))
        if key not in by_set:
            plan = plan_schema(schema, TENANT, migrations, rows)
            pending = {m.version for m in plan.pending}
            by_set[key] = _Group(
                files=tuple(m for m in migrations if m.version not in pending),
                behind=tuple(m.name for m in plan.pending),
                ahead=tuple(a.version for a in plan.missing),
            )
        found[schema] = by_set[key]
    return found


@dataclass(frozen=True)
class _Reference:
    fingerprint: catalog.Fingerprint
    lines: catalog.Lines


def _references(
    conn: psycopg.Connection, file_sets: list[tuple[Migration, ...]]
) -> dict[tuple[Migration, ...], _Reference]:
    """Build one scratch schema per file set, fingerprint and describe them, roll
    everything back."""
    database = conn.info.dbname
    scratch = {files: SCRATCH_PREFIX + secrets.token_hex(6) for files in file_sets}
    if not scratch:
        return {}
    with conn.transaction(force_rollback=True):
        superuser = ownership.is_superuser(conn)
        shared = ownership.missing_roles(conn, [app_role(database), owner_group_role(database)])
        for files, schema in scratch.items():
            _build(conn, schema, list(files), shared, superuser)
            shared = []  # created with the first scratch schema
        prints = catalog.fingerprints(conn, list(scratch.values()))
        lines = catalog.describe(conn, list(scratch.values()))
    return {files: _Reference(prints[s], lines[s]) for files, s in scratch.items()}


def _build(
    conn: psycopg.Connection,
    schema: str,
    files: list[Migration],
    shared: list[str],
    superuser: bool,
) -> None:
    """What tenant creation does (services/tenants.py: create role, create schema, apply
    migrations), on a scratch schema, in the caller's transaction."""
    refused = [str(p) for m in files for p in rules.refusals(m)]
    if refused:  # never run a file the engine itself would refuse
        raise VerifyError(
            "The reference schema was not built: tenant files break the refusal rules:\n"
            + "\n".join(refused)
        )
    database = conn.info.dbname
    owner, web = owner_role_for_schema(schema, database), role_for_schema(schema, database)
    statements = ownership.tenant_roles_statements(
        web, owner, database, create_shared=shared, superuser=superuser
    )
    statements += ownership.create_schema_statements(schema, owner, web)
    conn.execute(sql.SQL("; ").join(statements))
    try:
        apply_to_new_schema(
            conn,
            schema,
            files,
            placeholders(schema, database),
            lock_timeout_ms=int(conf.setting("LOCK_TIMEOUT_MS")),
            actor="verify",
        )
    except Exception as exc:
        raise VerifyError(f"The reference schema could not be built: {exc}") from exc


def _compare(
    conn: psycopg.Connection,
    schemas: list[str],
    groups: dict[str, _Group],
    references: dict[tuple[Migration, ...], _Reference],
    jobs: int,
) -> dict[str, TenantResult]:
    prints = _fingerprints(conn, schemas, jobs)
    differing = [s for s in schemas if prints.get(s) != references[groups[s].files].fingerprint]
    found = _differences(conn, differing, prints, groups, references)
    results: dict[str, TenantResult] = {}
    for schema in schemas:
        group = groups[schema]
        result = TenantResult(schema, behind=list(group.behind), ahead=list(group.ahead))
        result.differences = [
            f"ledger: version {v} is applied but no file has that version" for v in group.ahead
        ]
        result.differences += found.get(schema, [])
        results[schema] = result
    return results


def _differences(
    conn: psycopg.Connection,
    schemas: list[str],
    prints: dict[str, catalog.Fingerprint],
    groups: dict[str, _Group],
    references: dict[tuple[Migration, ...], _Reference],
) -> dict[str, list[str]]:
    """Each differing schema's differences. Schemas with one fingerprint hold the same
    catalog, so one of them is described for all: a change made by hand in every tenant
    (or a file edited after it was applied) costs one description, not thousands."""
    same: dict[object, str] = {}  # fingerprint (or the schema, when it has none) → described
    for schema in schemas:
        same.setdefault(prints.get(schema) or schema, schema)
    shown = list(same.values())
    described = _on_own_connection(conn, shown, lambda c, part: catalog.describe(c, part))
    diffs: dict[tuple[str, tuple[Migration, ...]], list[str]] = {}
    found: dict[str, list[str]] = {}
    for schema in schemas:
        shown, files = same[prints.get(schema) or schema], groups[schema].files
        if (shown, files) not in diffs:
            diffs[shown, files] = catalog.differences(references[files].lines, described[shown])
        found[schema] = diffs[shown, files]
    return found


def _fingerprints(
    conn: psycopg.Connection, schemas: list[str], jobs: int
) -> dict[str, catalog.Fingerprint]:
    """One fingerprint query for all ``schemas`` (below OWN_CONNECTIONS_FROM, on ``conn``),
    or one per job over its share, at once."""
    if len(schemas) < OWN_CONNECTIONS_FROM:
        return catalog.fingerprints(conn, schemas) if schemas else {}
    shares = [schemas[i::jobs] for i in range(jobs)]
    info = conf.conninfo()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        parts = pool.map(lambda share: _own(info, share, catalog.fingerprints), shares)
        return {schema: fp for part in parts for schema, fp in part.items()}


def _on_own_connection(
    conn: psycopg.Connection,
    schemas: list[str],
    query: Callable[[psycopg.Connection, list[str]], dict[str, T]],
) -> dict[str, T]:
    """``query`` on ``conn``, or for many schemas on a connection closed afterwards."""
    if not schemas:
        return {}
    if len(schemas) < OWN_CONNECTIONS_FROM:
        return query(conn, schemas)
    return _own(conf.conninfo(), schemas, query)


def _own(
    info: db.ConnInfo,
    schemas: list[str],
    query: Callable[[psycopg.Connection, list[str]], dict[str, T]],
) -> dict[str, T]:
    with db.connect(info) as own:
        return query(own, schemas)
