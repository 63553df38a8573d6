"""django-tenants' PostgreSQL backend, with the tenant's context held by transactions only.

django-tenants sends a session-level ``SET search_path`` on each connection it uses. Behind
a transaction-pooling PgBouncer, a session is shared by whoever's transaction lands on it
next, so one client's search path (and, before this backend, its role) served another
client's queries. This backend never sets session-level state:

- on ``public`` (the admin, the routing lookup) it sends nothing: the server's default
  search path and the connecting user;
- for a tenant, a query may run only inside a *tenant transaction*: the outermost
  transaction whose first statement set the tenant's role, ``search_path`` and
  ``app.current_tenant`` with ``set_config(..., true)`` (``SET LOCAL``), which COMMIT or
  ROLLBACK undo on the server wherever the pooler routed it. ``tenancy.context`` opens one.
  A query for a tenant outside it raises ``TenantContextError`` before reaching the server:
  it never runs as the connecting user, nor under whatever the server connection holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.utils import DatabaseError
from django_tenants.postgresql_backend.base import DatabaseWrapper as TenantsDatabaseWrapper
from django_tenants.postgresql_backend.base import original_backend
from django_tenants.utils import get_public_schema_name

from tenancy.engine.db import search_path_value
from tenancy.engine.names import CURRENT_TENANT_SETTING


class TenantContextError(DatabaseError):
    """A query on a tenant's behalf outside that tenant's transaction: refused."""


@dataclass(frozen=True)
class TenantContext:
    schema: str
    role: str


SET_CONTEXT = (
    "SELECT set_config('role', %s, true), set_config('search_path', %s, true), "
    "set_config(%s, %s, true)"
)


class DatabaseWrapper(TenantsDatabaseWrapper):
    def __init__(self, *args: object, **kwargs: object) -> None:
        # The context the current transaction set on the server; None outside one.
        self.tenant_context: TenantContext | None = None
        super().__init__(*args, **kwargs)

    # -- cursors ---------------------------------------------------------------------------
    def _cursor(self, name: str | None = None):  # type: ignore[no-untyped-def]
        self._check_tenant_context()
        # Skip django-tenants' _cursor: it would send a session-level SET search_path.
        return original_backend.DatabaseWrapper._cursor(self, name)

    def _check_tenant_context(self) -> None:
        schema = self.schema_name
        if schema in (None, get_public_schema_name()):
            return
        context = self.tenant_context
        if context is None or context.schema != schema or not self.in_atomic_block:
            raise TenantContextError(
                f"A query for tenant schema {schema!r} outside its tenant transaction was "
                "refused; run tenant queries inside tenancy.context.tenant_transaction()."
            )

    def begin_tenant_context(self, schema: str, role: str) -> None:
        """Make the transaction just opened (the outermost atomic block, no savepoint yet)
        run as ``role`` on ``schema``. ROLLBACK TO SAVEPOINT cannot undo it: it precedes
        every savepoint of the transaction."""
        if not self.in_atomic_block or len(self.atomic_blocks) != 1 or self.savepoint_ids:
            raise TenantContextError("A tenant context must open its own outermost transaction.")
        with original_backend.DatabaseWrapper._cursor(self) as cursor:
            cursor.execute(
                SET_CONTEXT, [role, search_path_value(schema), CURRENT_TENANT_SETTING, schema]
            )
        self.tenant_context = TenantContext(schema, role)

    # -- the context ends with its transaction ---------------------------------------------
    def _commit(self) -> None:
        self.tenant_context = None
        super()._commit()

    def _rollback(self) -> None:
        self.tenant_context = None
        super()._rollback()

    def close(self) -> None:
        self.tenant_context = None
        super().close()
