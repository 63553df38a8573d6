"""django-tenants' commands that would change tenants behind the engine's back, refused.

Our app is listed before ``django_tenants`` in ``INSTALLED_APPS``, so a command module of
the same name in ``tenancy/management/commands/`` replaces theirs. Each replacement
changes nothing: it explains itself in ``--help``, and running it prints one line naming
the command to use instead and exits 1.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

# Django's own options worth keeping; everything else (django-tenants' --schema_name,
# --noinput, ...) is dropped before parsing: whatever it says, the answer is the refusal.
KEPT_OPTIONS = {"-h", "--help", "--traceback", "--no-color", "--force-color"}


class RefusedCommand(BaseCommand):
    """Subclasses set ``original`` (what django-tenants' command did, and why that is
    wrong here) and ``instead`` (what to run)."""

    original = ""
    instead = ""
    requires_system_checks: list[str] = []  # refusing needs nothing, not even the database

    @property
    def name(self) -> str:
        return type(self).__module__.rsplit(".", 1)[-1]

    @property
    def help(self) -> str:  # type: ignore[override]
        return f"Refused: django-tenants' {self.name} {self.original}. {self.instead}"

    def run_from_argv(self, argv: list[str]) -> None:
        super().run_from_argv(argv[:2] + [a for a in argv[2:] if a in KEPT_OPTIONS])

    def handle(self, *args: Any, **options: Any) -> None:
        raise CommandError(f"{self.name} is refused: it {self.original}. {self.instead}")


def unless_host_model(refused: type[RefusedCommand], original: str) -> type[BaseCommand]:
    """``refused`` with tenancy's own tenant model; django-tenants' command ``original``
    (its name) with the project's own model, whose ``save()`` and ``delete()`` build and
    drop tenants through tenancy (services/tenant_model.py)."""
    from importlib import import_module

    from tenancy.services.tenants import uses_own_model

    if uses_own_model():
        return refused
    module = import_module(f"django_tenants.management.commands.{original}")
    command: type[BaseCommand] = module.Command
    return command
