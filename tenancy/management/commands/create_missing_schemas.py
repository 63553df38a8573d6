"""django-tenants' create_missing_schemas, refused: tenant_recreate rebuilds a schema (with
tenancy's own tenant model); with a project's own, django-tenants' command runs, through tenancy."""

from tenancy.management.refused import RefusedCommand, unless_host_model


class Refused(RefusedCommand):
    original = (
        "would create empty schemas for registered tenants whose schema is missing, without "
        "their SQL migrations, owner role or ledger rows"
    )
    instead = (
        "Use `manage.py tenant_recreate TENANT` for each; "
        "`manage.py tenant_status --check` lists the missing ones."
    )



def __getattr__(name: str) -> object:
    """``Command``, chosen each time Django loads it (the tenant model is a setting)."""
    if name == "Command":
        return unless_host_model(Refused, "create_missing_schemas")
    raise AttributeError(name)
