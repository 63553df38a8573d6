"""Connections the engine controls, and advisory locks.

Locks are session-level and taken with ``pg_try_advisory_lock`` in a polling loop, never
with a blocking ``pg_advisory_lock``: a session blocked inside that call holds a snapshot,
and ``CREATE INDEX CONCURRENTLY`` in another session waits for it, while it waits for the
index: a deadlock. A lock dies with its connection, so a killed run frees its schemas.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

# First key of every advisory lock this project takes; the second is hashtext(name).
LOCK_NAMESPACE = 0x54454E  # "TEN"
CREATE_LOCK_NAME = "tenancy:create"

ConnInfo = Mapping[str, Any]


def connect(conninfo: ConnInfo, *, autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(**dict(conninfo), autocommit=autocommit)


# Pools of connections for short operations (a tenant creation, a status page, a run's
# coordinator), one per set of connection parameters: opening a connection costs ~2 ms,
# more than the work of several statements. None is kept open when idle for long.
POOL_MAX = 10
POOL_IDLE_S = 30.0
_pools: dict[tuple, ConnectionPool] = {}
_pools_lock = threading.Lock()


def _pool(conninfo: ConnInfo) -> ConnectionPool:
    key = tuple(sorted((k, str(v)) for k, v in conninfo.items()))
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = ConnectionPool(
                kwargs={**dict(conninfo), "autocommit": True},
                min_size=0,
                max_size=POOL_MAX,
                max_idle=POOL_IDLE_S,
                open=True,
                name="tenancy",
            )
            _pools[key] = pool
    return pool


@contextmanager
def pooled(conninfo: ConnInfo) -> Iterator[psycopg.Connection]:
    """An autocommit connection from the pool (psycopg_pool). A block that fails closes
    its connection instead of returning it, so no session state of a failed operation can
    reach the next user; the pool rolls back one returned inside a transaction."""
    pool = _pool(conninfo)
    if not pool.get_stats().get("pool_size"):
        # An empty pool would retry a failing server until its timeout and then hide the
        # reason: connect once directly, so a bad address fails at once with its own error.
        connect(conninfo).close()
    conn = pool.getconn()
    try:
        yield conn
    except BaseException:
        conn.close()
        raise
    finally:
        pool.putconn(conn)


def close_idle() -> None:
    """Close every pool and its connections (before dropping a database, at exit)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()


atexit.register(close_idle)


def proxied(conn: psycopg.Connection) -> bool:
    """True when a pooler or proxy (PgBouncer) answers for the server: the backend pid it
    announced at connection (BackendKeyData) is not the server's own."""
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    return bool(row) and int(row[0]) != conn.info.backend_pid


# Connections to a Citus coordinator (a pooled connection keeps its server).
_CITUS: weakref.WeakKeyDictionary[psycopg.Connection, bool] = weakref.WeakKeyDictionary()


def citus(conn: psycopg.Connection) -> bool:
    """True when the database is a Citus cluster (the ``citus`` extension is installed):
    tenant schemas are then distributed schemas on worker nodes, and the engine sends
    migration statements one at a time (see docs/scale-out.md). Read once per connection."""
    known = _CITUS.get(conn)
    if known is None:
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')"
        ).fetchone()
        known = _CITUS[conn] = bool(row and row[0])
    return known


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


def try_xact_lock(conn: psycopg.Connection, name: str) -> bool:
    """A transaction-level lock if free now; the same lock a run holds on a schema."""
    row = conn.execute(
        "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))", [LOCK_NAMESPACE, name]
    ).fetchone()
    return bool(row and row[0])


def xact_lock(conn: psycopg.Connection, name: str) -> None:
    """A transaction-level lock (released at COMMIT/ROLLBACK), for short critical sections."""
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [LOCK_NAMESPACE, name])


def search_path(schema: str, *, local: bool = True) -> sql.Composed:
    """``SET [LOCAL] search_path TO <schema>, public`` (just public for public)."""
    verb = sql.SQL("SET LOCAL" if local else "SET")
    if schema == "public":
        return sql.SQL("{} search_path TO public").format(verb)
    return sql.SQL("{} search_path TO {}, public").format(verb, sql.Identifier(schema))


def search_path_value(schema: str) -> str:
    """The value of ``search_path`` for ``schema``: the schema, then public."""
    if schema == "public":
        return "public"
    return f"{sql.Identifier(schema).as_string()}, public"


# The engine's own search_path, whenever it is not running a tenant's file: never a tenant
# schema (an operator or function a tenant defines there would be resolved in the engine's
# queries, with its authority: a tenant ``=`` for (varchar, varchar) beats pg_catalog's
# (text, text) for a varchar column whatever the order), and the session's temporary schema
# named last, so that a temporary table cannot stand in for a catalog or public table (left
# out of the path, pg_temp is searched first for relations, even before pg_catalog).
ENGINE_SEARCH_PATH = "public, pg_temp"


def engine_settings(lock_timeout_ms: int, *, local: bool = True) -> sql.Composed:
    """The engine's ``search_path`` and ``lock_timeout`` as one statement."""
    return sql.SQL(
        "SELECT set_config('search_path', {}, {}), set_config('lock_timeout', {}, {})"
    ).format(
        sql.Literal(ENGINE_SEARCH_PATH),
        sql.Literal(local),
        sql.Literal(f"{lock_timeout_ms}ms"),
        sql.Literal(local),
    )


def engine_search_path() -> sql.Composed:
    """Back to the engine's ``search_path`` for the rest of the transaction."""
    return sql.SQL("SELECT set_config('search_path', {}, true)").format(
        sql.Literal(ENGINE_SEARCH_PATH)
    )


def tenant_search_path(schema: str, *, local: bool = True) -> sql.Composed:
    """The schema's own ``search_path`` (the schema, then public), for its files only."""
    return sql.SQL("SELECT set_config('search_path', {}, {})").format(
        sql.Literal(search_path_value(schema)), sql.Literal(local)
    )


def configure(conn: psycopg.Connection, lock_timeout_ms: int) -> None:
    """The engine's settings for the rest of the open transaction."""
    conn.execute(engine_settings(lock_timeout_ms))


def lock_timeout_statement(lock_timeout_ms: int) -> sql.Composed:
    """The session's ``lock_timeout`` (outside a transaction, for statements run alone)."""
    return sql.SQL("SELECT set_config('lock_timeout', {}, false)").format(
        sql.Literal(f"{lock_timeout_ms}ms")
    )


def begin_locked(conn: psycopg.Connection, schema: str, lock_timeout_ms: int) -> sql.Composed:
    """``BEGIN`` and, in the same round trip, the schema's transaction-level lock (freed by
    COMMIT or ROLLBACK) with the engine's settings. Its second result is the lock's."""
    return sql.SQL(
        "BEGIN; SELECT pg_catalog.pg_try_advisory_xact_lock({}, pg_catalog.hashtext({})), "
        "pg_catalog.set_config('search_path', {}, true), "
        "pg_catalog.set_config('lock_timeout', {}, true)"
    ).format(
        sql.Literal(LOCK_NAMESPACE),
        sql.Literal(schema),
        sql.Literal(ENGINE_SEARCH_PATH),
        sql.Literal(f"{lock_timeout_ms}ms"),
    )


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


@dataclass(frozen=True)
class IndexState:
    schema: str
    name: str
    valid: bool  # built and usable; False: a failed or cut-off concurrent build
    on_table: bool  # it indexes the table the statement names

    def drop_statement(self) -> sql.Composed:
        return sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
            sql.Identifier(self.schema, self.name)
        )


def index_state(conn: psycopg.Connection, table: str, index: str) -> IndexState | None:
    """The index named ``index`` in the schema of ``table`` (a quoted name, resolved by the
    session's search_path, as ``CREATE INDEX … ON table`` would), or None when the table or
    the index does not exist."""
    row = conn.execute(
        """
        SELECT n.nspname, ic.relname, i.indisvalid AND i.indisready, i.indrelid = t.oid
        FROM pg_class t
        JOIN pg_class ic ON ic.relnamespace = t.relnamespace AND ic.relname = %s
        JOIN pg_index i ON i.indexrelid = ic.oid
        JOIN pg_namespace n ON n.oid = ic.relnamespace
        WHERE t.oid = to_regclass(%s)
        """,
        [index, table],
    ).fetchone()
    return IndexState(*row) if row else None
