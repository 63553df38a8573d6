"""Routes a request to its tenant's schema by host, and runs it under that tenant's role.

django-tenants picks the tenant from the host and sets ``search_path``. That alone isolates
nothing: a query may still name ``tenant_org_other.job_postings``. So, for a tenant's
request, this middleware also switches the connection to the tenant's NOLOGIN role
(``SET ROLE``), which may use its own schema only, and sets ``app.current_tenant``, which
the row-level security policies of shared tables (``public.audit_logs``) compare rows with.
When the request ends, however it ends, the role and setting are reset and the connection
is back on ``public`` as the connecting user; a reset that fails closes the connection, so
no later request can inherit a tenant's role. Tenants that are not active are refused (403).

The connecting user must be allowed to ``SET ROLE`` to tenant roles: a superuser is; any
other user is made a member of each tenant role when the tenant is created
(tenancy.services.tenants._create_role).
"""

from __future__ import annotations

import logging

from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django_tenants.middleware.main import TenantMainMiddleware

from tenancy.engine.names import CURRENT_TENANT_SETTING, role_for_schema
from tenancy.models import TenantStatus

logger = logging.getLogger(__name__)

# Marks a Django connection whose session is under a tenant's role.
_ROLE_ATTR = "tenancy_role"


def enter_tenant(schema: str) -> str:
    """Run the connection's next queries under ``schema``'s role, with RLS keyed on it."""
    role = role_for_schema(schema, connection.settings_dict["NAME"])
    with connection.cursor() as cursor:
        # Values, not identifiers: set_config takes the role name as a parameter.
        cursor.execute(
            "SELECT set_config(%s, %s, false), set_config('role', %s, false)",
            [CURRENT_TENANT_SETTING, schema, role],
        )
    setattr(connection, _ROLE_ATTR, role)
    return role


def leave_tenant() -> None:
    """Back to the connecting user, no current tenant, ``public``. Idempotent."""
    if getattr(connection, _ROLE_ATTR, None) is None:
        return
    setattr(connection, _ROLE_ATTR, None)
    try:
        if connection.connection is not None and not connection.needs_rollback:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('role', 'none', false), set_config(%s, '', false)",
                    [CURRENT_TENANT_SETTING],
                )
        else:
            connection.close()
    except DatabaseError:
        logger.exception("Could not reset the tenant role; closing the connection")
        connection.close()
    connection.set_schema_to_public()


class TenantMiddleware(TenantMainMiddleware):
    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            return super().__call__(request)
        finally:
            leave_tenant()

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        leave_tenant()  # whatever a previous request on this connection left behind
        response = super().process_request(request)
        if response is not None:
            return response
        tenant = getattr(request, "tenant", None)
        if tenant is None or tenant.schema_name == "public":
            return None
        if tenant.status != TenantStatus.ACTIVE:
            connection.set_schema_to_public()
            return HttpResponseForbidden(f"This organization is {tenant.status}.")
        try:
            enter_tenant(tenant.schema_name)
        except DatabaseError:
            # Fail closed: never serve a tenant's page as the connecting user.
            logger.exception("Cannot switch to the role of %s", tenant.schema_name)
            connection.set_schema_to_public()
            return HttpResponse(
                "This organization is not available right now (its database role is "
                "missing; an operator can run `manage.py tenant_recreate`).",
                status=503,
                content_type="text/plain",
            )
        return None
