"""The project's own tenant model (django-tenants' ``TENANT_MODEL``) and tenancy.

A project that keeps its tenant model (say ``customers.Client``) keeps its rows: tenancy
holds its own state of each tenant (status, roles, ledger) in ``public.tenant_registry``,
one row per schema, beside the project's row. With the example project's model,
``tenancy.Tenant``, the two are the same row.

django-tenants' ``save()`` (``auto_create_schema``) inserts the row, creates the schema and
calls ``migrate_schemas`` for it: that call builds the schema through tenancy
(``build_if_saved``). ``delete(force_drop=True)`` drops the schema and deletes the row;
after its commit, ``forget_deleted`` drops what tenancy kept (roles, ledger, registry row).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import connection, transaction
from django_tenants.utils import (
    get_creation_fakes_migrations,
    get_public_schema_name,
    get_tenant_model,
    schema_exists,
)

from tenancy.engine.errors import TenancyError
from tenancy.services import lifecycle, tenant_types, tenants
from tenancy.services.infrastructure import connect_ready
from tenancy.services.tenants import uses_own_model

logger = logging.getLogger(__name__)


def _registered(schema: str) -> bool:
    with connect_ready() as conn:
        row = conn.execute(
            "SELECT 1 FROM public.tenant_registry WHERE schema_name = %s", [schema]
        ).fetchone()
    return row is not None


def refuse_template_clone(instance: Any, **_: Any) -> None:
    """``pre_save`` of the project's tenant model: a new tenant that django-tenants would
    clone from a template schema (``TENANT_BASE_SCHEMA`` with
    ``TENANT_CREATION_FAKES_MIGRATIONS``) is refused before anything is written.

    django-tenants' ``clone_schema()`` runs as the login and copies the template's
    functions, rules and policies before its rows, so a rule the template's steps defined
    would run with that authority; it also grants the template's roles on the copy. The
    warm pool is tenancy's fast creation instead (docs/adopting.md)."""
    if type(instance) is not get_tenant_model() or uses_own_model():
        return
    if not instance._state.adding or not getattr(instance, "auto_create_schema", False):
        return
    base = instance.get_base_schema() if get_creation_fakes_migrations() else None
    if base and schema_exists(base):
        raise tenants.TenantError(
            f"Tenant {instance.schema_name} would be cloned from template schema {base} "
            "(TENANT_BASE_SCHEMA with TENANT_CREATION_FAKES_MIGRATIONS): tenancy refuses "
            "clone_schema(), which copies the template's code and runs it with the login's "
            "authority. Unset TENANT_CREATION_FAKES_MIGRATIONS to build each tenant from "
            "its steps; the warm pool (TENANCY['POOL_SIZE']) makes that fast."
        )


def build_if_saved(schema: str, *, actor: str) -> tenants.CreatedTenant | None:
    """Build ``schema`` if it belongs to a tenant just saved through the project's model
    and tenancy does not know it yet; None when there is nothing of the kind."""
    if schema == get_public_schema_name() or uses_own_model():
        return None
    tenant = get_tenant_model().objects.filter(schema_name=schema).first()
    if tenant is None or _registered(schema):
        return None
    if connection.in_atomic_block:
        raise tenants.TenantError(
            f"Tenant {schema} was saved inside transaction.atomic(): tenancy builds its schema "
            "on its own connection, which cannot see the uncommitted row and schema. Save "
            "tenants outside a transaction (TenantTestCase does)."
        )
    tenant_type = tenant_types.of_instance(tenant)  # multi-type tenants: its type's steps
    return tenants.build_saved_tenant(schema, str(tenant), actor=actor, tenant_type=tenant_type)


def forget_deleted(instance: Any, **_: Any) -> None:
    """``post_delete`` of the project's tenant model: once the deletion commits, and if its
    schema is gone (``delete(force_drop=True)``), drop tenancy's roles, ledger rows and
    registry row of it. A tenant deleted with its schema kept keeps them too
    (`tenant_drop` finishes it)."""
    if type(instance) is not get_tenant_model() or uses_own_model():
        return
    schema = getattr(instance, "schema_name", None)
    if not schema or schema == get_public_schema_name():
        return
    transaction.on_commit(lambda: _forget(schema))


def _forget(schema: str) -> None:
    with connect_ready() as conn:
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM public.tenant_registry WHERE schema_name = %s), "
            "to_regnamespace(quote_ident(%s)) IS NOT NULL",
            [schema, schema],
        ).fetchone()
    registered, schema_left = row if row else (False, True)
    if not registered or schema_left:
        return
    try:
        lifecycle.drop_tenant(schema, actor="django-tenants delete()")
    except TenancyError as exc:
        # The project's row is gone whatever happens here; `tenant_drop` finishes the rest.
        logger.warning("Tenant %s was deleted, but tenancy could not forget it: %s", schema, exc)
