"""django-tenants' create_tenant_superuser, refused: users live in public."""

from tenancy.management.refused import RefusedCommand


class Command(RefusedCommand):
    original = (
        "would create a Django user inside a tenant's schema, which has no Django tables "
        "(users and the admin live in public)"
    )
    instead = "Use `manage.py createsuperuser`."
