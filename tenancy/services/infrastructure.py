"""The public schema's infrastructure and the connections a run needs.

The tenancy tables come from Django's own migrations of the public schema; a run creates
them first on an empty database (under a lock, so two runs do not both try). Every service
that reads the tenancy tables connects through ``connect_ready``; work that needs a
session-level lock asks ``require_session`` first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import psycopg

from tenancy import conf
from tenancy.engine import db
from tenancy.engine.errors import RunError

INFRASTRUCTURE_LOCK = "tenancy:django-public"


def infrastructure_ready(conn: psycopg.Connection) -> bool:
    row = conn.execute(
        "SELECT to_regclass('public.tenant_migrations') IS NOT NULL "
        "AND to_regclass('public.tenant_registry') IS NOT NULL"
    ).fetchone()
    return bool(row and row[0])


def require_infrastructure(conn: psycopg.Connection) -> None:
    if not infrastructure_ready(conn):
        raise RunError(
            "The public schema has no tenancy tables yet: run "
            "`manage.py migrate_tenants --public` first."
        )


def pending_django_migrations() -> list[str]:
    """Django migrations of the public schema not yet applied (the infrastructure)."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    connection.set_schema_to_public()
    executor = MigrationExecutor(connection)
    targets = executor.loader.graph.leaf_nodes()
    pending = [f"{m.app_label}.{m.name}" for m, _ in executor.migration_plan(targets)]
    if not pending and not connection.in_atomic_block:
        # The engine works on its own connections: a run holds jobs + 1, not one more idle.
        connection.close()
    return pending


def ensure_infrastructure(verbosity: int = 0) -> list[str]:
    """Apply the public schema's Django migrations (the seed's 'creates infrastructure')."""
    if not pending_django_migrations():
        return []
    from django.core.management import call_command

    # Two runs on an empty database must not both create the tables: queue on a lock.
    require_session("Creating the public schema's tables")
    with connect() as conn:
        if not db.wait_lock(conn, INFRASTRUCTURE_LOCK, float(conf.setting("SCHEMA_LOCK_WAIT_S"))):
            raise RunError("Another process kept the infrastructure lock; try again.")
        try:
            pending = pending_django_migrations()
            if pending:
                call_command(
                    "migrate_schemas",
                    shared=True,
                    interactive=False,
                    verbosity=verbosity,
                    sql_migrations=False,
                )
        finally:
            db.unlock(conn, INFRASTRUCTURE_LOCK)
    return pending


@contextmanager
def connect_ready() -> Iterator[psycopg.Connection]:
    """A pooled connection to a database whose tenancy tables exist (else RunError)."""
    with db.pooled(conf.conninfo()) as conn:
        require_infrastructure(conn)
        yield conn


def connect() -> AbstractContextManager[psycopg.Connection]:
    """The coordinator's connection (pooled: a run started right after another operation
    reuses its connection, so a run holds at most jobs + 1)."""
    return db.pooled(conf.conninfo())


def require_session(what: str) -> None:
    """Refuse, before anything changes, work that needs a session-level lock when the
    engine's connection goes through a transaction-mode pooler (it would lose the lock):
    as configured, or found by asking the server (a proxied connection not declared a
    session-mode pooler is taken for one that may not keep sessions)."""
    if conf.engine_through_transaction_pooler():
        raise RunError(
            f"{what} needs a session-level advisory lock, and the database connection goes "
            "through a transaction-mode pooler (EMPLOYER_PORTAL_DB_POOLER=transaction), which "
            "would silently lose it between transactions. Nothing was changed. Set "
            "EMPLOYER_PORTAL_DIRECT_DB_URL to a direct connection to the database (see "
            "docs/deployment.md)."
        )
    if conf.setting("ENGINE_POOLER") == "session":
        return
    with db.pooled(conf.conninfo()) as conn:
        if db.proxied(conn):
            raise RunError(
                f"{what} needs a session-level advisory lock, and the engine's database "
                "connection answers through a pooler or proxy (its backend pid is not the "
                "server's) that is not declared to keep sessions: a transaction-mode pooler "
                "would silently lose the lock. Nothing was changed. Set "
                "EMPLOYER_PORTAL_DIRECT_DB_URL to a direct connection to the database, or "
                "EMPLOYER_PORTAL_DB_POOLER=session for a pooler in session mode (see "
                "docs/deployment.md)."
            )
