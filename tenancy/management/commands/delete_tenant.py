"""django-tenants' delete_tenant, refused: tenants are dropped by tenant_drop (with tenancy's own
tenant model); with a project's own, django-tenants' command runs, through tenancy."""

from tenancy.management.refused import RefusedCommand, unless_host_model


class Refused(RefusedCommand):
    original = (
        "would delete the registry row only (the model never drops schemas here), leaving "
        "the tenant's schema, roles and ledger rows behind, unaudited"
    )
    instead = "Use `manage.py tenant_drop TENANT` (an org id or schema name)."



def __getattr__(name: str) -> object:
    """``Command``, chosen each time Django loads it (the tenant model is a setting)."""
    if name == "Command":
        return unless_host_model(Refused, "delete_tenant")
    raise AttributeError(name)
