"""django-tenants' PostgreSQL backend, with the tenant's context held by transactions only.

django-tenants sends a session-level ``SET search_path`` on each connection it uses. Behind
a transaction-pooling PgBouncer a session is shared by whoever's transaction lands on it
next, so one client's search path served another client's queries. This backend keeps
django-tenants' API (``set_tenant``, ``set_schema``, ``schema_context``, ``tenant_context``,
the middlewares, the test cases) and never sets session-level state:

- the tenant that ``connection.schema_name`` names is applied by the *transaction*: its
  role (the tenant's NOLOGIN web role), ``search_path`` and ``app.current_tenant`` are set
  with ``set_config(..., true)`` (``SET LOCAL``), sent in the same message as the first
  statement of the transaction that needs them (no extra round trip), and again only when
  the transaction's tenant changes. COMMIT or ROLLBACK undo them on the server, wherever a
  pooler routed the transaction;
- outside an atomic block (autocommit) a tenant's statement is sent together with its
  context as one message, which PostgreSQL runs as one implicit transaction: the context
  lasts exactly that statement;
- on ``public`` a new transaction sends nothing (the server's defaults and the connecting
  user); a transaction that switches back from a tenant to ``public`` resets the three.

What cannot be made safe is refused with ``TenantContextError`` before it reaches the
server: a session-level ``SET search_path`` / ``SET ROLE`` sent by user code (it would
outlive the transaction and, behind a pooler, reach other clients), and, where the
database's settings say ``"POOLER": "transaction"``, a named server-side cursor for a
tenant outside a transaction (``WITH HOLD``: its FETCHes run in later transactions, which
the pooler sends to other server connections). Without a pooler such a cursor is DECLAREd
in a transaction of its own with the tenant's context.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from django.core.exceptions import ValidationError
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.utils import DatabaseError
from django_tenants.postgresql_backend.base import (
    EXTRA_SEARCH_PATHS,
    is_valid_schema_name,
    original_backend,
)
from django_tenants.postgresql_backend.base import DatabaseWrapper as TenantsDatabaseWrapper
from django_tenants.utils import get_public_schema_name
from psycopg import sql
from psycopg.pq import TransactionStatus

from tenancy.engine.names import CURRENT_TENANT_SETTING, role_for_schema
from tenancy.postgresql_backend.creation import DatabaseCreation
from tenancy.postgresql_backend.introspection import DatabaseSchemaIntrospection


class TenantContextError(DatabaseError):
    """A query on a tenant's behalf that cannot run in that tenant's context: refused."""


class TenantRoleMissing(TenantContextError):
    """The tenant's web role does not exist (a schema tenancy did not create or adopt)."""


@dataclass(frozen=True)
class TenantContext:
    schema: str
    role: str
    statement: str  # the SELECT set_config(...) that applies it, literals quoted


# What a transaction that leaves a tenant for public sends: the connecting user, the
# session's own search_path (its reset value) and no tenant.
PUBLIC_RESET = (
    "SELECT set_config('role', 'none', true), set_config('search_path', "
    "(SELECT reset_val FROM pg_catalog.pg_settings WHERE name = 'search_path'), true), "
    f"set_config('{CURRENT_TENANT_SETTING}', '', true)"
)
_UNKNOWN = object()  # after ROLLBACK TO SAVEPOINT: what the server holds is not known

# Session-level changes of who and where a query runs: they would outlive the transaction.
_SESSION_STATE = re.compile(
    r"\s*(?:SET\s+(?:SESSION\s+)?(?:ROLE|SESSION\s+AUTHORIZATION|SEARCH_PATH)\b"
    r"|RESET\s+(?:ROLE|SESSION\s+AUTHORIZATION|SEARCH_PATH|ALL)\b)",
    re.IGNORECASE,
)
# Sent by Django itself after an error or at a savepoint's end: never with a context.
_SAVEPOINT_END = ("ROLLBACK TO SAVEPOINT", "RELEASE SAVEPOINT")


def _literal(value: str) -> str:
    return sql.Literal(value).as_string(None)


class DatabaseWrapper(TenantsDatabaseWrapper):
    creation_class = DatabaseCreation

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._contexts: dict[tuple[str, bool, str], TenantContext] = {}
        self._last: tuple[tuple[str, bool, str], TenantContext | None] | None = None
        # The context the open transaction has set on the server: None for public (nothing
        # sent), a TenantContext, or _UNKNOWN.
        self._sent: TenantContext | object | None = None
        super().__init__(*args, **kwargs)
        self.introspection = DatabaseSchemaIntrospection(self)

    # -- which context the current schema wants --------------------------------------------
    def wanted_context(self) -> TenantContext | None:
        """The context of ``connection.schema_name`` (None: public). Asked before every
        statement, so the last answer is kept for as long as its inputs hold."""
        key = (self.schema_name, self.include_public_schema, self.settings_dict["NAME"])
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        context = None
        if key[0] not in (None, get_public_schema_name()):
            context = self._contexts.get(key)
            if context is None:
                context = self._contexts[key] = self._context_for(*key)
        self._last = (key, context)
        return context

    @staticmethod
    def _context_for(schema: str, include_public: bool, database: str) -> TenantContext:
        if not is_valid_schema_name(schema):  # what django-tenants' backend raises
            raise ValidationError(f"Invalid string used for the schema name: {schema!r}")
        role = role_for_schema(schema, database)
        path = [schema, *([get_public_schema_name()] if include_public else [])]
        path += EXTRA_SEARCH_PATHS
        search_path = ", ".join(
            p if p == "public" else sql.Identifier(p).as_string(None) for p in path
        )
        statement = (
            f"SELECT set_config('role', {_literal(role)}, true), "
            f"set_config('search_path', {_literal(search_path)}, true), "
            f"set_config('{CURRENT_TENANT_SETTING}', {_literal(schema)}, true)"
        )
        return TenantContext(schema, role, statement)

    def pending_context(self, statement: str) -> str | None:
        """What must be sent before ``statement`` for it to run in the wanted context
        (None: nothing). Raises ``TenantContextError`` for session-level state changes."""
        if _SESSION_STATE.match(statement):
            raise TenantContextError(
                "A session-level SET/RESET of the role or search_path was refused: it would "
                "outlive the transaction (behind a pooler, for other clients). Use "
                "connection.set_tenant()/schema_context(), or SET LOCAL inside a transaction."
            )
        wanted = self.wanted_context()
        if self.autocommit:  # the callers hold a connection: no get_autocommit() check
            return wanted.statement if wanted else None
        status = self.connection.info.transaction_status
        if status == TransactionStatus.IDLE:
            self._sent = None  # the next statement opens a new transaction
        elif status == TransactionStatus.INERROR or statement.startswith(_SAVEPOINT_END):
            return None
        if self._sent is wanted:
            return None
        return wanted.statement if wanted else PUBLIC_RESET

    def context_sent(self) -> None:
        """The pending context reached the server in the open transaction."""
        if not self.autocommit:
            self._sent = self.wanted_context()

    def apply_context(self) -> None:
        """Send the wanted context now, in the open transaction (a request checks its
        tenant's role this way before its view runs)."""
        self.ensure_connection()
        pending = self.pending_context("")
        if pending is not None:
            with self.wrap_database_errors, self._role_named():
                self.connection.execute(pending)
            self.context_sent()

    def _role_named(self) -> AbstractContextManager[None]:
        return _role_missing_named(self.wanted_context())

    # -- cursors ---------------------------------------------------------------------------
    def _cursor(self, name: str | None = None):  # type: ignore[no-untyped-def]
        if name and self.wanted_context() is not None:
            if self.get_autocommit() and self.settings_dict.get("POOLER") == "transaction":
                raise TenantContextError(
                    f"A server-side cursor for tenant schema {self.schema_name!r} outside a "
                    "transaction was refused: Django holds it across transactions, which "
                    "a transaction pooler sends to other server connections. Iterate "
                    "inside transaction.atomic(), or set DISABLE_SERVER_SIDE_CURSORS."
                )
            if not self.get_autocommit():
                self.apply_context()  # DECLARE carries one statement only
        # Skip django-tenants' _cursor: it would send a session-level SET search_path.
        return original_backend.DatabaseWrapper._cursor(self, name)

    def make_cursor(self, cursor: Any) -> CursorWrapper:
        return TenantCursorWrapper(cursor, self)

    def make_debug_cursor(self, cursor: Any) -> CursorDebugWrapper:
        return TenantCursorDebugWrapper(cursor, self)

    # -- the context ends with its transaction ---------------------------------------------
    def _commit(self) -> None:
        self._sent = None
        super()._commit()

    def _rollback(self) -> None:
        self._sent = None
        super()._rollback()

    def _savepoint_rollback(self, sid: str) -> None:
        try:
            super()._savepoint_rollback(sid)
        finally:
            self._sent = _UNKNOWN  # a context sent after the savepoint is undone

    def close(self) -> None:
        self._sent = None
        super().close()


@contextmanager
def _role_missing_named(context: TenantContext | None) -> Iterator[None]:
    """PostgreSQL's "role does not exist", raised by a context, as a message that names
    the tenant and the fix."""
    try:
        yield
    except psycopg.errors.InvalidParameterValue as exc:
        if context is None or context.role not in str(exc):
            raise
        raise TenantRoleMissing(
            f"Tenant schema {context.schema!r} has no role {context.role!r}: tenancy did "
            "not create it. Run `manage.py tenancy_adopt` for schemas that django-tenants "
            "built."
        ) from exc


class _ContextMixin:
    """Sends the transaction's tenant context with the statement that needs it."""

    db: DatabaseWrapper
    cursor: Any

    def _execute(self, sql: str, params: Any, *ignored: Any) -> Any:
        pending = self.db.pending_context(sql) if isinstance(sql, str) else None
        if pending is None:
            return super()._execute(sql, params, *ignored)  # type: ignore[misc]
        self.db.validate_no_broken_transaction()
        with self.db.wrap_database_errors, self.db._role_named():
            result = self._send_with(pending, sql, params)
        self.db.context_sent()
        self._log_context(pending)
        return result

    def _log_context(self, pending: str) -> None:
        """Only the debug cursor logs (below)."""

    def _send_with(self, pending: str, query: str, params: Any) -> Any:
        if getattr(self.cursor, "name", None):
            # A server-side cursor outside a transaction (WITH HOLD): DECLAREd in a
            # transaction of its own with the context; its rows are kept at COMMIT.
            with self.db.connection.transaction():
                self.db.connection.execute(pending)
                return self.cursor.execute(query, params)
        if hasattr(self.cursor, "mogrify"):
            # Client-side binding (Django's default): one message, one round trip.
            body = query if params is None else self.cursor.mogrify(query, params)
            result = self.cursor.execute(f"{pending}; {body}")
            self.cursor.nextset()
            return result
        if self.db.get_autocommit():
            with self.db.connection.transaction():
                self.cursor.execute(pending)
                return self.cursor.execute(query, params)
        self.cursor.execute(pending)
        return self.cursor.execute(query, params)

    def _executemany(self, sql: str, param_list: Any, *ignored: Any) -> Any:
        pending = self.db.pending_context(sql)
        if pending is None:
            return super()._executemany(sql, param_list, *ignored)  # type: ignore[misc]
        self.db.validate_no_broken_transaction()
        with self.db.wrap_database_errors, self.db._role_named():
            if self.db.get_autocommit():
                with self.db.connection.transaction():
                    self.cursor.execute(pending)
                    self._log_context(pending)
                    return self.cursor.executemany(sql, param_list)
            self.cursor.execute(pending)
            self.db.context_sent()
            self._log_context(pending)
            return self.cursor.executemany(sql, param_list)


class TenantCursorWrapper(_ContextMixin, CursorWrapper):
    pass


class TenantCursorDebugWrapper(_ContextMixin, CursorDebugWrapper):
    """Logs the context as a statement of its own (it is one, in the same message), before
    the statement it came with: ``assertNumQueries`` and the debug toolbar count it as
    they count django-tenants' ``SET search_path``."""

    _context_logged: str | None = None

    def _log_context(self, pending: str) -> None:
        self.db.queries_log.append({"sql": pending, "time": "0.000"})
        self._context_logged = f"{pending}; "

    @contextmanager
    def debug_sql(self, *args: Any, **kwargs: Any) -> Iterator[None]:
        self._context_logged = None
        try:
            with super().debug_sql(*args, **kwargs):
                yield
        finally:
            # The statement's own entry: psycopg's last query, which began with the context.
            prefix, log = self._context_logged, self.db.queries_log
            if prefix and log and str(log[-1]["sql"]).startswith(prefix):
                log[-1]["sql"] = log[-1]["sql"][len(prefix) :]
