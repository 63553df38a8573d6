"""django-tenants' ``TENANT_MIGRATION_ORDER``: the order in which a run takes the tenant
schemas, as ``order_by()`` fields of the tenant model (``["-created_on"]``: the newest
first). Unset, a run takes them in the registry's order (oldest first)."""

from __future__ import annotations

from django.conf import settings
from django_tenants.utils import get_public_schema_name, get_tenant_model

from tenancy.engine.plan import Plan


def configured_order() -> list[str] | None:
    """The tenant schemas in ``TENANT_MIGRATION_ORDER``'s order (None: the setting is
    unset, so the registry's order stands)."""
    fields = getattr(settings, "TENANT_MIGRATION_ORDER", None)
    if not fields:
        return None
    rows = (
        get_tenant_model()
        .objects.exclude(schema_name=get_public_schema_name())
        .order_by(*fields)
        .values_list("schema_name", flat=True)
    )
    return list(rows)


def apply_configured_order(plan: Plan) -> Plan:
    order = configured_order()
    if order is not None:
        plan.order_tenants(order)
    return plan
