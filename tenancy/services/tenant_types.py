"""django-tenants' multi-type tenants, read from its settings.

With ``HAS_MULTI_TYPE_TENANTS``, each tenant has a type (its model's
``MULTI_TYPE_DATABASE_FIELD``; tenancy keeps it in ``tenant_registry.tenant_type``):
``TENANT_TYPES[type]["APPS"]`` are the apps whose Django migrations its schema gets,
``TENANT_TYPES["public"]["APPS"]`` those of public, and ``TENANT_TYPES[type]["URLCONF"]``
serves its requests. Without it every tenant has the apps of ``TENANT_APPS``. The SQL files
of ``migrations_sql/tenant`` go to every tenant, whatever its type.

A tenant registered without a type (before types were turned on) has the first type
``TENANT_TYPES`` names after public.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from tenancy.engine.errors import TenancyError

PUBLIC = "public"


class TenantTypeError(TenancyError):
    """A tenant type that the settings do not name, or a type without multi-type tenants."""


def enabled() -> bool:
    return bool(getattr(settings, "HAS_MULTI_TYPE_TENANTS", False))


def _types() -> dict[str, dict[str, Any]]:
    return dict(getattr(settings, "TENANT_TYPES", {}) or {})


def names() -> list[str]:
    """The tenant types, in the settings' order (public is not one)."""
    return [name for name in _types() if name != _public_name()] if enabled() else []


def default() -> str | None:
    """The type of a tenant registered without one; None without multi-type tenants."""
    found = names()
    return found[0] if found else None


def apps_of(tenant_type: str | None) -> list[str]:
    """The apps a tenant schema of ``tenant_type`` gets; for None with types on, those of
    every type (the fleet's steps, as the Migrations page lists them)."""
    if not enabled():
        return list(getattr(settings, "TENANT_APPS", ()))
    types = _types()
    if tenant_type is not None:
        return list(types[checked(tenant_type)].get("APPS", ()))
    listed: list[str] = []
    for name in names():
        listed += [app for app in types[name].get("APPS", ()) if app not in listed]
    return listed


def shared_apps() -> list[str]:
    """The apps of the public schema."""
    if not enabled():
        return list(getattr(settings, "SHARED_APPS", ()))
    return list(_types().get(_public_name(), {}).get("APPS", ()))


def checked(tenant_type: str | None) -> str | None:
    """``tenant_type`` as a tenant may have it: one the settings name (None: the default
    type); without multi-type tenants only None."""
    if not enabled():
        if tenant_type:
            raise TenantTypeError(
                f"Tenant type {tenant_type!r} given, but HAS_MULTI_TYPE_TENANTS is off: every "
                "tenant has the apps of TENANT_APPS."
            )
        return None
    if tenant_type is None:
        return default()
    if tenant_type not in names():
        known = ", ".join(names()) or "none"
        raise TenantTypeError(f"Unknown tenant type {tenant_type!r}: TENANT_TYPES names {known}.")
    return tenant_type


def of_instance(instance: Any) -> str | None:
    """The type of a tenant of the project's model (None without multi-type tenants)."""
    if not enabled():
        return None
    field = getattr(settings, "MULTI_TYPE_DATABASE_FIELD", "") or "type"
    return checked(getattr(instance, field, None) or None)


def takes_untyped(tenant_type: str | None) -> bool:
    """Whether what was made before types were on (no type: a pool entry, a registry row)
    is of ``tenant_type``: of the first type, and without types of none."""
    return tenant_type == default()


def registered(tenant_type: str | None) -> str | None:
    """The type of a registered tenant as its registry row holds it: its own, or the first
    type for one registered before types were on (None without multi-type tenants)."""
    return tenant_type or default()


def _public_name() -> str:
    return getattr(settings, "PUBLIC_SCHEMA_NAME", PUBLIC)
