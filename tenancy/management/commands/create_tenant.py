"""django-tenants' create_tenant, refused: tenants are created by tenant_create (with tenancy's own
tenant model); with a project's own, django-tenants' command runs, through tenancy."""

from tenancy.management.refused import RefusedCommand, unless_host_model


class Refused(RefusedCommand):
    original = (
        "would register a tenant without the engine: no schema built from the tenant SQL "
        "migrations, no owner and web roles, no ledger rows, no audit row"
    )
    instead = "Use `manage.py tenant_create ORG_ID [--name NAME]`."



def __getattr__(name: str) -> object:
    """``Command``, chosen each time Django loads it (the tenant model is a setting)."""
    if name == "Command":
        return unless_host_model(Refused, "create_tenant")
    raise AttributeError(name)
