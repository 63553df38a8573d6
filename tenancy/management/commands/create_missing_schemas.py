"""django-tenants' create_missing_schemas, refused: tenant_recreate rebuilds a schema."""

from tenancy.management.refused import RefusedCommand


class Command(RefusedCommand):
    original = (
        "would create empty schemas for registered tenants whose schema is missing, without "
        "their SQL migrations, owner role or ledger rows"
    )
    instead = (
        "Use `manage.py tenant_recreate TENANT` for each; "
        "`manage.py tenant_status --check` lists the missing ones."
    )
