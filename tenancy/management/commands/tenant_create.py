"""Create a tenant: schema, every tenant migration, role, registry row, domain, audit."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenancy.engine.errors import TenancyError
from tenancy.management.actor import cli_actor
from tenancy.services.tenants import create_tenant


class Command(BaseCommand):
    help = (
        "Create a tenant for an Auth0 organization (org_ followed by letters and digits). "
        "Its schema is tenant_<org id in lower case>; the schema, every tenant migration, the "
        "ledger rows, the tenant's role, its registry row, its domain and an audit row are "
        "created in one transaction: on any error nothing is left behind."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("org_id", help="Auth0 organization id, e.g. org_ayHu5XNaTNHMasO5")
        parser.add_argument("--name", help="Organization name (default: the org id).")
        parser.add_argument("--actor", help="Who to record in audit_logs (default: OS user).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            created = create_tenant(
                options["org_id"], options["name"], actor=options["actor"] or cli_actor()
            )
        except TenancyError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from exc
        self.stdout.write(self.style.SUCCESS(f"Created tenant {created.name}"))
        if options["verbosity"] >= 1:
            self.stdout.write(f"   Schema: {created.schema}")
            self.stdout.write(f"   Auth0 Org ID: {created.org_id}")
            self.stdout.write(f"   Migrations applied: {len(created.migrations_applied)}")
            self.stdout.write(f"   Role: {created.role}")
            self.stdout.write(f"   Domain: {created.domain}")
            self.stdout.write(f"   Took: {created.elapsed_ms} ms")
