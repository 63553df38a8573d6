"""django-tenants' delete_tenant, refused: tenants are dropped by tenant_drop."""

from tenancy.management.refused import RefusedCommand


class Command(RefusedCommand):
    original = (
        "would delete the registry row only (the model never drops schemas here), leaving "
        "the tenant's schema, roles and ledger rows behind, unaudited"
    )
    instead = "Use `manage.py tenant_drop TENANT` (an org id or schema name)."
