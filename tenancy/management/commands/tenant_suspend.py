"""Suspend a tenant: its domain answers 403 until it is reactivated; nothing is deleted."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenancy.engine.errors import TenancyError
from tenancy.management.actor import cli_actor
from tenancy.management.prompts import add_tenant_arguments
from tenancy.services import lifecycle


class StatusCommand(BaseCommand):
    """Shared shell of tenant_suspend, tenant_archive and tenant_reactivate."""

    status = "suspended"

    def add_arguments(self, parser: CommandParser) -> None:
        add_tenant_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            change = lifecycle.set_status(
                options["tenant"],
                self.status,
                actor=options["actor"] or cli_actor(),
                reason=options["reason"],
            )
        except TenancyError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from exc
        t = change.tenant
        if not change.changed:
            if options["verbosity"] >= 1:
                self.stdout.write(f"{t.name} ({t.schema}) is already {t.status}; nothing to do.")
            return
        self.stdout.write(
            self.style.SUCCESS(f"{t.name} ({t.schema}): {change.old} -> {change.new}")
        )


class Command(StatusCommand):
    help = (
        "Suspend a tenant (status 'suspended'): requests to its domain are refused with 403; "
        "its schema and data stay. Audited. `tenant_reactivate` undoes it."
    )
    status = "suspended"
