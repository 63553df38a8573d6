"""Archive a tenant: refused by routing like a suspended one, and a candidate for cleanup."""

from __future__ import annotations

from tenancy.management.commands.tenant_suspend import StatusCommand


class Command(StatusCommand):
    help = (
        "Archive a tenant (status 'archived'): requests to its domain are refused with 403; its "
        "schema and data stay until `tenant_drop` or `tenant_cleanup`. Audited."
    )
    status = "archived"
