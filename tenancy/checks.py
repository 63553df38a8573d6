"""System checks: a project that installs tenancy learns at ``manage.py check`` (and before
every command that checks) what its settings lack, one error each, instead of a traceback
in the middle of a migration run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.apps import AppConfig, apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, register
from django.core.exceptions import ImproperlyConfigured
from django.core.management import find_commands

import tenancy

BACKEND = "tenancy.postgresql_backend"
# Not in REQUIRED_APPS, as every project with an admin lists them already (listing them
# twice is an error), but tenancy's migrations depend on them.
CONTRIB_APPS = ("django.contrib.auth", "django.contrib.contenttypes")
# TENANCY keys read without a fallback unless conf.DEFAULTS has one, and what each is.
REQUIRED_SETTINGS = {
    "MIGRATIONS_DIR": 'where public/*.sql and tenant/*.sql live, e.g. BASE_DIR / "migrations_sql"',
}
# django-tenants reads these models; tenancy's services and admin work on its own tables.
INSTALL_HINT = 'INSTALLED_APPS = ["tenancy", *tenancy.REQUIRED_APPS, ...]'


@register()
def check_installation(
    app_configs: Sequence[AppConfig] | None = None, **_: Any
) -> list[CheckMessage]:
    return [*check_apps(), *check_database(), *check_settings()]


def check_apps() -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for name in [*tenancy.REQUIRED_APPS, *CONTRIB_APPS]:
        if not apps.is_installed(name):
            errors.append(
                Error(
                    f"tenancy needs {name!r} in INSTALLED_APPS.",
                    hint=INSTALL_HINT if name in tenancy.REQUIRED_APPS else None,
                    id="tenancy.E001",
                )
            )
    names = [config.name for config in apps.get_app_configs()]
    for name in tenancy.REQUIRED_APPS:
        shared = _shared_commands(name)
        # Django takes a command from the app listed first: tenancy's must win.
        if shared and name in names and names.index(name) < names.index("tenancy"):
            errors.append(
                Error(
                    f"'tenancy' must come before {name!r} in INSTALLED_APPS: tenancy's "
                    f"commands {', '.join(shared)} replace those of {name}.",
                    hint=INSTALL_HINT,
                    id="tenancy.E002",
                )
            )
    return errors


def _shared_commands(app_name: str) -> list[str]:
    """The management commands tenancy and ``app_name`` both define."""
    if not apps.is_installed(app_name):
        return []
    own = set(find_commands(str(Path(apps.get_app_config("tenancy").path) / "management")))
    other = next(c for c in apps.get_app_configs() if c.name == app_name)
    return sorted(own & set(find_commands(str(Path(other.path) / "management"))))


def check_database() -> list[CheckMessage]:
    from django_tenants.utils import get_tenant_database_alias

    alias = get_tenant_database_alias()
    engine = settings.DATABASES.get(alias, {}).get("ENGINE", "")
    if engine and _extends_tenancy_backend(engine):
        return []
    return [
        Error(
            f"DATABASES[{alias!r}]['ENGINE'] is {engine!r}: tenancy needs {BACKEND!r} "
            "(django-tenants' backend, with the tenant's search_path and role held by "
            "transactions only).",
            hint=f'DATABASES["{alias}"]["ENGINE"] = "{BACKEND}"',
            id="tenancy.E003",
        )
    ]


def _extends_tenancy_backend(engine: str) -> bool:
    """True for tenancy's backend or one built on it (a project may wrap it)."""
    from django.db.utils import load_backend

    from tenancy.postgresql_backend.base import DatabaseWrapper

    if engine == BACKEND:
        return True
    try:
        return issubclass(load_backend(engine).DatabaseWrapper, DatabaseWrapper)
    except (ImproperlyConfigured, ImportError, AttributeError):
        return False


def check_settings() -> list[CheckMessage]:
    from tenancy import conf

    errors: list[CheckMessage] = []
    configured = getattr(settings, "TENANCY", {})
    if not isinstance(configured, dict):
        return [Error("settings.TENANCY must be a dict.", id="tenancy.E004")]
    for key, what in REQUIRED_SETTINGS.items():
        if key not in configured and key not in conf.DEFAULTS:
            errors.append(
                Error(
                    f"settings.TENANCY has no {key!r}, which has no default.",
                    hint=f"TENANCY[{key!r}]: {what}.",
                    id="tenancy.E004",
                )
            )
    return errors
