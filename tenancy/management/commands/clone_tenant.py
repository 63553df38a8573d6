"""django-tenants' clone_tenant, refused: a tenant is built from the SQL files."""

from tenancy.management.refused import RefusedCommand


class Command(RefusedCommand):
    original = (
        "would copy another tenant's schema, data included, under a new name, without its "
        "own roles or ledger rows; tenants are built from the SQL migration files"
    )
    instead = "Use `manage.py tenant_create ORG_ID [--name NAME]`."
