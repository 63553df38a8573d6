"""The fleet seen per migration (the admin's Migrations page, as Flyway's ``info`` is for
one database): every public and tenant step (SQL files and the tenant apps' Django
migrations) with how many schemas have it applied, pending, failed on it, drifted from it
or have it out of order; and for a drifted file, what changed since it was applied (the
ledger's ``applied_sql`` against the file)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from tenancy.engine.errors import RunError
from tenancy.engine.source import PUBLIC, TENANT, Migration, version_key, version_of
from tenancy.services import steps
from tenancy.services.infrastructure import connect_ready
from tenancy.services.reports import SchemaState

CATEGORIES = ("applied", "pending", "failed", "drifted", "out_of_order")


@dataclass
class StepRow:
    scope: str
    version: str
    name: str
    is_sql_file: bool
    # schema names per category (applied, pending, failed, drifted, out_of_order)
    schemas: dict[str, list[str]] = field(default_factory=lambda: {c: [] for c in CATEGORIES})
    gone: bool = False  # applied somewhere, but no longer on disk

    def count(self, category: str) -> int:
        return len(self.schemas[category])


def step_rows(states: list[SchemaState]) -> list[StepRow]:
    """One row per step, public first, then the tenant steps in their order; after them
    the applied versions whose file is gone."""
    migrations = steps.migrations()
    rows: list[StepRow] = []
    for scope in (PUBLIC, TENANT):
        in_scope = [s for s in states if s.scope == scope and s.schema_exists]
        rows += [_row(m, scope, in_scope) for m in migrations[scope]]
        rows += _gone(scope, in_scope)
    return rows


def _row(m: Migration, scope: str, states: list[SchemaState]) -> StepRow:
    row = StepRow(scope, m.version, m.name, m.is_sql_file)
    for s in states:
        if m.name not in s.steps:
            continue  # a step of another tenant type
        if m.name in s.pending:
            row.schemas["pending"].append(s.schema)
            if s.failed and _failed_on(s) == m.name:
                row.schemas["failed"].append(s.schema)
        else:
            row.schemas["applied"].append(s.schema)
        if m.name in s.drift:
            row.schemas["drifted"].append(s.schema)
        if m.name in s.out_of_order:
            row.schemas["out_of_order"].append(s.schema)
    return row


def _failed_on(s: SchemaState) -> str | None:
    """The step a failed schema's latest attempt failed on: the one its error names (the
    engine's errors start with the step's name), else its first pending step."""
    for name in s.pending:
        if s.last_error and name in s.last_error:
            return name
    return s.pending[0] if s.pending else None


def _gone(scope: str, states: list[SchemaState]) -> list[StepRow]:
    found: dict[str, StepRow] = {}
    for s in states:
        for name in s.missing:
            is_sql_file = name.endswith(".sql")
            row = found.setdefault(name, StepRow(scope, version_of(name), name, is_sql_file))
            row.gone = True
            row.schemas["applied"].append(s.schema)
    return [found[name] for name in sorted(found)]


@dataclass
class RecordedText:
    text: str | None  # None: the row kept no text (applied before tenancy 0015)
    schemas: list[str]
    diff: list[str]  # unified diff lines, recorded → current


def drift_diff(
    scope: str, version: str, schemas: list[str]
) -> tuple[Migration, list[RecordedText]]:
    """The current file and, per distinct recorded UP text among ``schemas`` (drifted from
    it), a unified diff from that text to the file's."""
    migration = _find(scope, version)
    with connect_ready() as conn:
        rows = conn.execute(
            "SELECT applied_sql, array_agg(tenant_schema ORDER BY tenant_schema) "
            "FROM public.tenant_migrations WHERE migration_version = %s "
            "AND tenant_schema = ANY(%s) GROUP BY 1 ORDER BY 2",
            [migration.version, schemas],
        ).fetchall()
    return migration, [
        RecordedText(text, list(names), _diff(text, migration) if text is not None else [])
        for text, names in rows
    ]


def _find(scope: str, version: str) -> Migration:
    for m in steps.migrations()[scope]:
        if version_key(m.version) == version_key(version):
            return m
    raise RunError(f"No {scope} migration {version!r}: see the Migrations page for the list.")


def _diff(recorded: str, migration: Migration) -> list[str]:
    return list(
        difflib.unified_diff(
            recorded.splitlines(),
            migration.up_sql.splitlines(),
            fromfile=f"{migration.name} (as applied)",
            tofile=f"{migration.name} (now)",
            lineterm="",
        )
    )
