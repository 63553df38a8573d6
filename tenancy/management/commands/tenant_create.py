"""Create a tenant: schema, every tenant migration, role, registry row, domain, audit."""

from __future__ import annotations

import dataclasses
import json
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
        parser.add_argument("--format", choices=["text", "json"], default="text")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            created = create_tenant(
                options["org_id"], options["name"], actor=options["actor"] or cli_actor()
            )
        except TenancyError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from exc
        if options["format"] == "json":
            self.stdout.write(json.dumps(dataclasses.asdict(created), indent=2))
            return
        self.stdout.write(self.style.SUCCESS(f"Created tenant {created.name}"))
        if options["verbosity"] >= 1:
            self.stdout.write(f"   Schema: {created.schema}")
            self.stdout.write(f"   Auth0 Org ID: {created.org_id}")
            self.stdout.write(f"   Migrations applied: {len(created.migrations_applied)}")
            self.stdout.write(f"   Role: {created.role}")
            self.stdout.write(f"   Domain: {created.domain}")
            self.stdout.write(f"   Took: {created.elapsed_ms} ms")
            self.stdout.write(f"   Path: {_path(created)}")


def _path(created: Any) -> str:
    """Which way the tenant was made: a claimed pool schema, or built directly (and why)."""
    if created.path == "pool":
        text = f"claimed from the pool ({created.pool_schema})"
    else:
        text = "built directly"
    return text + "".join(f"; {note}" for note in created.pool_notes)
