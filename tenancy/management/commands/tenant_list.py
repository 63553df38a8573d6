"""List the registered tenants, as the seed guide shows them."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenancy.engine.errors import RunError
from tenancy.services.placement import placement
from tenancy.services.tenants import list_tenants


class Command(BaseCommand):
    help = (
        "List every registered tenant: name, schema, Auth0 org id and status (and, on a "
        "Citus cluster, its worker node)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=["text", "json"], default="text")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenants = list_tenants()
            _, nodes = placement()  # on a Citus cluster: each schema's worker node
        except RunError as exc:
            raise CommandError(str(exc)) from exc
        if options["format"] == "json":
            self.stdout.write(
                json.dumps(
                    [
                        {
                            "organization_name": t.name,
                            "schema_name": t.schema,
                            "auth0_org_id": t.org_id,
                            "status": t.status,
                            "schema_exists": t.schema_exists,
                            "node": nodes.get(t.schema),
                        }
                        for t in tenants
                    ],
                    indent=2,
                )
            )
            return
        if not tenants:
            self.stdout.write("No tenants registered yet")
            return
        for number, t in enumerate(tenants, start=1):
            self.stdout.write(f"{number}. {t.name}")
            self.stdout.write(f"   Schema: {t.schema}")
            self.stdout.write(f"   Auth0 Org ID: {t.org_id}")
            self.stdout.write(f"   Status: {t.status}")
            if t.schema in nodes:
                self.stdout.write(f"   Node: {nodes[t.schema]}")
            if not t.schema_exists:
                self.stdout.write(self.style.ERROR("   Schema missing! (tenant_recreate)"))
