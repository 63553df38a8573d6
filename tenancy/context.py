"""Tenant context for Django's connection: a transaction that runs as one tenant.

The backend (``tenancy.postgresql_backend``) applies the tenant that
``connection.set_tenant()`` chose to every transaction, with transaction scope (see its
docstring), so django-tenants' own ``schema_context`` and ``tenant_context`` work as they
do there. ``tenant_transaction`` is the explicit form: one transaction as ``tenant``,
whose role is checked before the block runs, and the connection's previous tenant back
afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from tenancy.engine.names import role_for_schema
from tenancy.postgresql_backend.base import TenantContextError, TenantRoleMissing

__all__ = ["TenantContextError", "TenantRoleMissing", "tenant_role", "tenant_transaction"]


def tenant_role(schema: str, using: str = DEFAULT_DB_ALIAS) -> str:
    """The role a tenant's requests run as (named after the database: see names.py)."""
    return role_for_schema(schema, connections[using].settings_dict["NAME"])


@contextmanager
def tenant_transaction(tenant: Any, using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Run the block in one transaction (a savepoint inside another) as ``tenant`` (a
    Tenant, or anything with a ``schema_name``). The tenant's context is sent first, so a
    missing role raises ``TenantRoleMissing`` before the block runs. The block's queries
    commit together when it ends normally; ``transaction.set_rollback(True)`` discards
    them."""
    conn = connections[using]
    previous = conn.tenant
    conn.set_tenant(tenant)
    try:
        with transaction.atomic(using=using):
            conn.apply_context()
            yield
    finally:
        conn.set_tenant(previous)
