"""Queries on ``public.tenant_migrations``, the one ledger for every schema, and on the
registry the engine reads. Each function is one query, whatever the number of schemas."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from tenancy.engine.source import Migration


@dataclass(frozen=True)
class Applied:
    version: str
    name: str
    checksum: str | None
    applied_at: datetime | None
    has_rollback: bool


@dataclass(frozen=True)
class RegisteredTenant:
    schema: str
    org_id: str
    name: str
    status: str
    schema_exists: bool
    tenant_type: str | None = None  # multi-type tenants: the type whose steps it gets


_APPLIED_COLUMNS = """
    tenant_schema, migration_version, migration_name, checksum, applied_at,
    (rollback_sql IS NOT NULL AND btrim(rollback_sql) <> '')
"""


def _rows_to_map(rows: list[tuple]) -> dict[str, dict[str, Applied]]:
    result: dict[str, dict[str, Applied]] = {}
    for schema, version, name, checksum, applied_at, has_rollback in rows:
        result.setdefault(schema, {})[version] = Applied(
            version, name, checksum, applied_at, has_rollback
        )
    return result


def applied_all(
    conn: psycopg.Connection, schemas: Collection[str] | None = None
) -> dict[str, dict[str, Applied]]:
    """Every schema's rows, or only those of ``schemas`` (read through the ledger's unique
    index: a run of a few schemas does not read the whole fleet's ledger)."""
    where = sql.SQL("WHERE tenant_schema = ANY(%s)") if schemas is not None else sql.SQL("")
    query = sql.SQL("SELECT {} FROM public.tenant_migrations {}").format(
        sql.SQL(_APPLIED_COLUMNS), where
    )
    rows = conn.execute(query, [list(schemas)] if schemas is not None else None).fetchall()
    return _rows_to_map(rows)


def applied_for(conn: psycopg.Connection, schema: str) -> dict[str, Applied]:
    """One schema's rows. Under a lock, read them in a statement of their own, after the
    one that took the lock: a statement's snapshot is taken when it starts, so rows a
    previous holder committed just before releasing the lock would be invisible to a
    statement that read and locked at once."""
    return applied_from(conn.execute(applied_statement(schema)).fetchall(), schema)


def applied_statement(schema: str) -> sql.Composed:
    """``applied_for``'s query, the schema as a literal, so that it can follow the statement
    that takes the lock in the same round trip: each statement of a multi-statement query
    takes its own snapshot when it starts (READ COMMITTED), so it still reads after the
    lock. Read its rows with ``applied_from``."""
    return sql.SQL(
        f"SELECT {_APPLIED_COLUMNS} FROM public.tenant_migrations WHERE tenant_schema = {{}}"
    ).format(sql.Literal(schema))


def applied_from(rows: list[tuple], schema: str) -> dict[str, Applied]:
    """The rows of ``applied_statement`` as ``applied_for`` returns them."""
    return _rows_to_map(rows).get(schema, {})


def record_statement(
    schema: str,
    migration: Migration,
    *,
    elapsed_ms: int | None,
    actor: str,
    run_id: int | None,
    down_sql: str | None = None,
) -> sql.Composed:
    """The upsert of an applied migration's ledger row, values as quoted literals, so that
    it can share a round trip with the statement after it (``COMMIT``). ``down_sql``: the
    rollback SQL a step made as it ran (a Django step's), else the file's DOWN part."""
    values = [
        schema,
        migration.version,
        migration.name,
        migration.checksum,
        down_sql if down_sql is not None else migration.down_sql,
        elapsed_ms,
        actor,
        run_id,
        # The text the checksum stands for, for a later drift's diff (SQL files only: a
        # Django step's text is its Python migration, compiled as it runs).
        migration.up_sql if migration.is_sql_file else None,
    ]
    return sql.SQL(_RECORD).format(sql.SQL(", ").join(sql.Literal(v) for v in values))


# A file may write its own row, as the seed's 003 does; the upsert then fills in what the
# file could not know (checksum, timing, run) instead of failing on the unique key.
_RECORD = """
    INSERT INTO public.tenant_migrations AS tm (
        tenant_schema, migration_version, migration_name, checksum, rollback_sql,
        execution_time_ms, applied_by, run_id, applied_sql)
    VALUES ({})
    ON CONFLICT (tenant_schema, migration_version) DO UPDATE SET
        migration_name = EXCLUDED.migration_name,
        checksum = EXCLUDED.checksum,
        rollback_sql = COALESCE(EXCLUDED.rollback_sql, tm.rollback_sql),
        execution_time_ms = EXCLUDED.execution_time_ms,
        applied_by = EXCLUDED.applied_by,
        run_id = EXCLUDED.run_id,
        applied_sql = EXCLUDED.applied_sql
"""


def record(
    conn: psycopg.Connection,
    schema: str,
    migration: Migration,
    *,
    elapsed_ms: int | None,
    actor: str,
    run_id: int | None,
    down_sql: str | None = None,
) -> None:
    """Write (or complete) the ledger row of an applied migration."""
    conn.execute(
        record_statement(
            schema, migration, elapsed_ms=elapsed_ms, actor=actor, run_id=run_id, down_sql=down_sql
        )
    )


def accept_checksum(conn: psycopg.Connection, migration: Migration, schemas: list[str]) -> int:
    cur = conn.execute(
        """
        UPDATE public.tenant_migrations
        SET checksum = %s, rollback_sql = COALESCE(%s, rollback_sql), applied_sql = %s
        WHERE migration_version = %s AND tenant_schema = ANY(%s) AND checksum IS DISTINCT FROM %s
        """,
        [
            migration.checksum,
            migration.down_sql,
            migration.up_sql if migration.is_sql_file else None,
            migration.version,
            schemas,
            migration.checksum,
        ],
    )
    return cur.rowcount


_ROLLBACK_ROWS = """
    SELECT tenant_schema, migration_version, migration_name, rollback_sql
    FROM public.tenant_migrations
    WHERE tenant_schema = ANY(%s) AND migration_version ~ '^[0-9]+$'
      AND migration_version::bigint >= %s
    ORDER BY tenant_schema, migration_version::bigint DESC
"""


def rollback_rows_by_schema(
    conn: psycopg.Connection, schemas: list[str], from_version: int
) -> dict[str, list[tuple]]:
    """For each schema, (version, name, rollback_sql) of its rows at or above
    ``from_version``, newest first (the order a rollback runs them in). One query."""
    found: dict[str, list[tuple]] = {}
    for schema, *row in conn.execute(_ROLLBACK_ROWS, [schemas, from_version]).fetchall():
        found.setdefault(schema, []).append(tuple(row))
    return found


def rollback_rows(conn: psycopg.Connection, schema: str, from_version: int) -> list[tuple]:
    return rollback_rows_by_schema(conn, [schema], from_version).get(schema, [])


def rows_of_versions(
    conn: psycopg.Connection, schemas: list[str], versions: list[str]
) -> dict[str, list[tuple]]:
    """For each schema, (version, name, rollback_sql) of its rows among ``versions``, in the
    order ``versions`` gives (a rollback's: newest first). One query."""
    rows = conn.execute(
        "SELECT tenant_schema, migration_version, migration_name, rollback_sql "
        "FROM public.tenant_migrations "
        "WHERE tenant_schema = ANY(%s) AND migration_version = ANY(%s)",
        [schemas, versions],
    ).fetchall()
    position = {v: i for i, v in enumerate(versions)}
    found: dict[str, list[tuple]] = {}
    for schema, *row in sorted(rows, key=lambda r: (r[0], position[r[1]])):
        found.setdefault(schema, []).append(tuple(row))
    return found


def delete(conn: psycopg.Connection, schema: str, versions: list[str] | None = None) -> int:
    if versions is None:
        cur = conn.execute(
            "DELETE FROM public.tenant_migrations WHERE tenant_schema = %s", [schema]
        )
    else:
        cur = conn.execute(
            "DELETE FROM public.tenant_migrations "
            "WHERE tenant_schema = %s AND migration_version = ANY(%s)",
            [schema, versions],
        )
    return cur.rowcount


_REGISTERED = """
    SELECT tr.schema_name, tr.auth0_org_id, tr.organization_name, tr.status,
           (n.oid IS NOT NULL), tr.tenant_type
    FROM public.tenant_registry tr
    LEFT JOIN pg_namespace n ON n.nspname = tr.schema_name
    WHERE tr.schema_name <> 'public' {}
    ORDER BY tr.created_at, tr.id
"""


def registered_tenants(
    conn: psycopg.Connection, schemas: Collection[str] | None = None
) -> list[RegisteredTenant]:
    """The registered tenants in registry order; only those of ``schemas`` when given."""
    only = sql.SQL("AND tr.schema_name = ANY(%s)") if schemas is not None else sql.SQL("")
    rows = conn.execute(
        sql.SQL(_REGISTERED).format(only), [list(schemas)] if schemas is not None else None
    ).fetchall()
    return [RegisteredTenant(*row) for row in rows]


def latest_attempts(conn: psycopg.Connection) -> dict[str, tuple[str, str | None, Any]]:
    """Each schema's latest recorded attempt: (status, error, finished_at)."""
    rows = conn.execute(
        """
        SELECT DISTINCT ON (tenant_schema) tenant_schema, status, error, finished_at
        FROM public.tenant_migration_run_results
        ORDER BY tenant_schema, finished_at DESC, id DESC
        """
    ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def failed_last(status: str | None, pending: bool, schema_exists: bool) -> bool:
    """A schema is 'failed' while its latest attempt failed and that work is still undone
    (pending migrations, or its schema missing): a later success clears it."""
    return status == "failed" and (pending or not schema_exists)
