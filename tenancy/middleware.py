"""Routes a request to its tenant's schema by host; refuses tenants that are not active."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django_tenants.middleware.main import TenantMainMiddleware

from tenancy.models import TenantStatus


class TenantMiddleware(TenantMainMiddleware):
    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        response = super().process_request(request)
        if response is not None:
            return response
        tenant = getattr(request, "tenant", None)
        if tenant is not None and tenant.status != TenantStatus.ACTIVE:
            from django.db import connection

            connection.set_schema_to_public()
            return HttpResponseForbidden(f"This organization is {tenant.status}.")
        return None
