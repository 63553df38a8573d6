"""Tenant context for Django's connection: a transaction that runs as one tenant.

``tenant_transaction`` is the only way the ORM serves a tenant: it opens the outermost
transaction and makes its first statement set the tenant's role, ``search_path`` and
``app.current_tenant`` with transaction scope, so the context ends at COMMIT or ROLLBACK on
whatever server connection a pooler gave it, and nothing of it is left for the next
transaction. The backend (``tenancy.postgresql_backend``) refuses tenant queries outside it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.transaction import TransactionManagementError

from tenancy.engine.names import role_for_schema
from tenancy.postgresql_backend.base import TenantContextError

__all__ = ["TenantContextError", "tenant_role", "tenant_transaction"]


def tenant_role(schema: str, using: str = DEFAULT_DB_ALIAS) -> str:
    """The role a tenant's requests run as (named after the database: see names.py)."""
    return role_for_schema(schema, connections[using].settings_dict["NAME"])


@contextmanager
def tenant_transaction(tenant: Any, using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Run the block in one transaction as ``tenant`` (a Tenant, or anything with a
    ``schema_name``). The block's queries commit together when it ends normally; call
    ``transaction.set_rollback(True)`` to discard them. Back on ``public`` afterwards."""
    conn = connections[using]
    if conn.in_atomic_block:
        raise TransactionManagementError(
            "tenant_transaction() opens its own transaction; it cannot run inside another."
        )
    conn.set_tenant(tenant)
    try:
        with transaction.atomic(using=using):
            conn.begin_tenant_context(tenant.schema_name, tenant_role(tenant.schema_name, using))
            yield
    finally:
        conn.set_schema_to_public()
