"""Connections the engine controls, and advisory locks.

Locks are session-level and taken with ``pg_try_advisory_lock`` in a polling loop, never
with a blocking ``pg_advisory_lock``: a session blocked inside that call holds a snapshot,
and ``CREATE INDEX CONCURRENTLY`` in another session waits for it, while it waits for the
index: a deadlock. A lock dies with its connection, so a killed run frees its schemas.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql

# First key of every advisory lock this project takes; the second is hashtext(name).
LOCK_NAMESPACE = 0x54454E  # "TEN"
CREATE_LOCK_NAME = "tenancy:create"

ConnInfo = Mapping[str, Any]


def connect(conninfo: ConnInfo, *, autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(**dict(conninfo), autocommit=autocommit)


def try_lock(conn: psycopg.Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT pg_try_advisory_lock(%s, hashtext(%s))", [LOCK_NAMESPACE, name]
    ).fetchone()
    return bool(row and row[0])


def unlock(conn: psycopg.Connection, name: str) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", [LOCK_NAMESPACE, name])


def wait_lock(conn: psycopg.Connection, name: str, timeout_s: float) -> bool:
    """Try-lock with exponential backoff until ``timeout_s``; True when held."""
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while True:
        if try_lock(conn, name):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 1.0)


def xact_lock(conn: psycopg.Connection, name: str) -> None:
    """A transaction-level lock (released at COMMIT/ROLLBACK), for short critical sections."""
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [LOCK_NAMESPACE, name])


def search_path(schema: str, *, local: bool = True) -> sql.Composed:
    """``SET [LOCAL] search_path TO <schema>, public`` (just public for public)."""
    verb = sql.SQL("SET LOCAL" if local else "SET")
    if schema == "public":
        return sql.SQL("{} search_path TO public").format(verb)
    return sql.SQL("{} search_path TO {}, public").format(verb, sql.Identifier(schema))


def _search_path_value(conn: psycopg.Connection, schema: str) -> str:
    if schema == "public":
        return "public"
    return f"{sql.Identifier(schema).as_string(conn)}, public"


def settings_statement(
    conn: psycopg.Connection, schema: str, lock_timeout_ms: int, *, local: bool = True
) -> sql.Composed:
    """``search_path`` (the schema, then public) and ``lock_timeout`` as one statement."""
    return sql.SQL(
        "SELECT set_config('search_path', {}, {}), set_config('lock_timeout', {}, {})"
    ).format(
        sql.Literal(_search_path_value(conn, schema)),
        sql.Literal(local),
        sql.Literal(f"{lock_timeout_ms}ms"),
        sql.Literal(local),
    )


def configure(
    conn: psycopg.Connection, schema: str, lock_timeout_ms: int, *, local: bool = True
) -> None:
    conn.execute(settings_statement(conn, schema, lock_timeout_ms, local=local))


def begin_locked(conn: psycopg.Connection, schema: str, lock_timeout_ms: int) -> sql.Composed:
    """``BEGIN`` and, in the same round trip, the schema's transaction-level lock (freed by
    COMMIT or ROLLBACK) with the session settings. Its second result is the lock's."""
    return sql.SQL(
        "BEGIN; SELECT pg_try_advisory_xact_lock({}, hashtext({})), "
        "set_config('search_path', {}, true), set_config('lock_timeout', {}, true)"
    ).format(
        sql.Literal(LOCK_NAMESPACE),
        sql.Literal(schema),
        sql.Literal(_search_path_value(conn, schema)),
        sql.Literal(f"{lock_timeout_ms}ms"),
    )


def schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    row = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]).fetchone()
    return row is not None


def invalid_indexes(conn: psycopg.Connection, schema: str) -> list[str]:
    """Indexes left INVALID in ``schema`` (a failed CREATE INDEX CONCURRENTLY leaves one)."""
    rows = conn.execute(
        """
        SELECT c.relname FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s AND NOT i.indisvalid ORDER BY 1
        """,
        [schema],
    ).fetchall()
    return [r[0] for r in rows]
