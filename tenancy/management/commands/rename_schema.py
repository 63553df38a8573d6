"""django-tenants' rename_schema, refused: schema names derive from the org id."""

from tenancy.management.refused import RefusedCommand


class Command(RefusedCommand):
    original = (
        "would rename a tenant's schema, whose name derives from its Auth0 org id "
        "(tenant_<org id>) and keys its roles, ledger rows and domain"
    )
    instead = "Renaming a tenant's schema is not supported."
