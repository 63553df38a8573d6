"""django-tenants' create_tenant, refused: tenants are created by tenant_create."""

from tenancy.management.refused import RefusedCommand


class Command(RefusedCommand):
    original = (
        "would register a tenant without the engine: no schema built from the tenant SQL "
        "migrations, no owner and web roles, no ledger rows, no audit row"
    )
    instead = "Use `manage.py tenant_create ORG_ID [--name NAME]`."
