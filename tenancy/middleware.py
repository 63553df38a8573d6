"""Routes a request to its tenant by host and serves it in a tenant transaction.

django-tenants finds the tenant from the host (a query on ``public`` as the connecting
user). A tenant's request then runs inside ``tenancy.context.tenant_transaction``: one
transaction whose first statement switches to the tenant's NOLOGIN role (which may use its
own schema only), its ``search_path`` and ``app.current_tenant`` (which the row-level
security of ``public.audit_logs`` compares rows with), all with transaction scope. COMMIT or
ROLLBACK ends all three on the server, so the context cannot outlive the request on a
persistent connection, in Django's pool, or behind a transaction-pooling PgBouncer.

A response with a 5xx status rolls the request's writes back. Tenants that are not active
are refused (403); a tenant whose role is missing gets 503, never a page served as the
connecting user. Hosts of no tenant (the admin) run on ``public`` with no tenant context.

The connecting user must be allowed to take tenant roles: a superuser is; any other user
is made a member of each tenant role when the tenant is created
(tenancy.services.tenants.create_roles).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseForbidden
from django_tenants.middleware.main import TenantMainMiddleware
from django_tenants.utils import get_public_schema_name

from tenancy.context import TenantRoleMissing, tenant_transaction
from tenancy.models import TenantStatus

logger = logging.getLogger(__name__)

ROLE_MISSING = (
    "This organization is not available right now (its database role is missing; an "
    "operator can run `manage.py tenant_recreate`)."
)


class TenantMiddleware(TenantMainMiddleware):
    async_capable = False

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        try:
            response = self.process_request(request)  # the host's tenant, looked up on public
            if response is None:
                response = self._dispatch(request)
            return response
        finally:
            connection.set_schema_to_public()

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """Fail closed: a tenant whose role is missing is never served as the connecting
        user; its page says how an operator brings it back."""
        if isinstance(exception, TenantRoleMissing):
            logger.error("Tenant %s has no role: %s", connection.schema_name, exception)
            return HttpResponse(ROLE_MISSING, status=503, content_type="text/plain")
        return None

    def _dispatch(self, request: HttpRequest) -> HttpResponseBase:
        tenant = getattr(request, "tenant", None)
        connection.set_schema_to_public()  # a tenant's queries run only in serve_as_tenant
        if tenant is None or tenant.schema_name == get_public_schema_name():
            return self.get_response(request)
        # A host project's tenant model may have no status: tenancy's is in its registry.
        status = getattr(tenant, "status", TenantStatus.ACTIVE)
        if status != TenantStatus.ACTIVE:
            return HttpResponseForbidden(f"This organization is {status}.")
        return serve_as_tenant(request, tenant, self.get_response)


def serve_as_tenant(
    request: HttpRequest, tenant: Any, get_response: Callable[[HttpRequest], HttpResponseBase]
) -> HttpResponseBase:
    """The request in one transaction as ``tenant``. Its context goes with the view's first
    statement (the backend sends it; no round trip of its own): a missing role surfaces
    there, as ``TenantRoleMissing``, and ``process_exception`` answers 503."""
    connection.set_tenant(tenant)
    try:
        with transaction.atomic():
            response = get_response(request)
            if response.status_code >= 500:
                transaction.set_rollback(True)
    finally:
        connection.set_schema_to_public()
    if response.streaming:
        # The iterator runs after this function returned: give it a transaction of its own.
        response.streaming_content = _stream_as(tenant, response.streaming_content)
    return response


def _stream_as(tenant: Any, chunks: Iterable[bytes]) -> Iterator[bytes]:
    with tenant_transaction(tenant):
        yield from chunks
