"""Drop a tenant for good: schema and data, role, ledger rows, domains, registry row."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenancy.engine.errors import TenancyError
from tenancy.management.actor import cli_actor
from tenancy.management.prompts import add_tenant_arguments, confirm_schema
from tenancy.services import lifecycle


class Command(BaseCommand):
    help = (
        "Drop a tenant: its schema with every table and row, its role, its ledger rows, its "
        "domains and its registry row, in one transaction, audited. Asks for the schema name "
        "as confirmation unless --noinput is given. This cannot be undone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_tenant_arguments(parser, confirm=True)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenant = lifecycle.get_tenant(options["tenant"])
            confirmation = tenant.schema
            if options["interactive"]:
                confirmation = confirm_schema(
                    self,
                    tenant.schema,
                    f"This drops {tenant.name} ({tenant.org_id}, status {tenant.status}): schema "
                    f"{tenant.schema} with all its data, its role, ledger rows, domains and "
                    "registry row. It cannot be undone.",
                    "Drop",
                )
            dropped = lifecycle.drop_tenant(
                options["tenant"],
                actor=options["actor"] or cli_actor(),
                expected_schema=confirmation,
                reason=options["reason"],
            )
        except TenancyError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from exc
        self.stdout.write(self.style.SUCCESS(f"Dropped tenant {dropped.tenant.name}"))
        if options["verbosity"] >= 1:
            self.stdout.write(f"   Schema: {dropped.tenant.schema}")
            self.stdout.write(f"   Role: {dropped.role}")
            self.stdout.write(f"   Ledger rows deleted: {dropped.ledger_rows}")
            self.stdout.write(f"   Took: {dropped.elapsed_ms} ms")
