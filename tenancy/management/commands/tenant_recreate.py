"""The seed's "Recreate Tenant": rebuild a tenant's schema from every tenant migration."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenancy.engine.errors import TenancyError
from tenancy.management.actor import cli_actor
from tenancy.management.prompts import add_tenant_arguments, confirm_schema
from tenancy.services import lifecycle


class Command(BaseCommand):
    help = (
        "Recreate a tenant whose schema is corrupted or missing: drop its schema (its data is "
        "lost), role and ledger rows, then create them again with every tenant migration, in "
        "one transaction. The tenant keeps its registry row (name, org id, status) and domain. "
        "Asks for the schema name as confirmation unless --noinput is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_tenant_arguments(parser, confirm=True)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenant = lifecycle.get_tenant(options["tenant"])
            if options["interactive"]:
                confirm_schema(
                    self,
                    tenant.schema,
                    f"This rebuilds schema {tenant.schema} of {tenant.name} from the migration "
                    "files: every row in it is lost."
                    + ("" if tenant.schema_exists else " (The schema is missing now.)"),
                    "Recreate",
                )
            done = lifecycle.recreate_tenant(
                options["tenant"],
                actor=options["actor"] or cli_actor(),
                reason=options["reason"],
            )
        except TenancyError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from exc
        self.stdout.write(self.style.SUCCESS(f"Recreated tenant {done.tenant.name}"))
        if options["verbosity"] >= 1:
            self.stdout.write(f"   Schema: {done.tenant.schema}")
            self.stdout.write(f"   Auth0 Org ID: {done.tenant.org_id}")
            self.stdout.write(f"   Status: {done.tenant.status}")
            self.stdout.write(f"   Migrations applied: {len(done.migrations_applied)}")
            self.stdout.write(f"   Role: {done.role}")
            self.stdout.write(f"   Domain: {done.domain}")
            self.stdout.write(f"   Took: {done.elapsed_ms} ms")
