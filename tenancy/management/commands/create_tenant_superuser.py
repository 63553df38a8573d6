"""django-tenants' create_tenant_superuser, refused: users live in public (with tenancy's own
tenant model); with a project's own, django-tenants' command runs, through tenancy."""

from tenancy.management.refused import RefusedCommand, unless_host_model


class Refused(RefusedCommand):
    original = (
        "would create a Django user inside a tenant's schema, which has no Django tables "
        "(users and the admin live in public)"
    )
    instead = "Use `manage.py createsuperuser`."



def __getattr__(name: str) -> object:
    """``Command``, chosen each time Django loads it (the tenant model is a setting)."""
    if name == "Command":
        return unless_host_model(Refused, "create_tenant_superuser")
    raise AttributeError(name)
