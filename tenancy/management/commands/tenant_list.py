"""List the registered tenants, as the seed guide shows them."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenancy.engine.errors import TenancyError
from tenancy.engine.names import split_tags
from tenancy.management.options import add_format
from tenancy.services.placement import placement
from tenancy.services.tenants import list_tenants


class Command(BaseCommand):
    help = (
        "List every registered tenant: name, schema, Auth0 org id, status, its tags when it "
        "has any (and, on a Citus cluster, its worker node). --tag lists only the tenants "
        "that have every tag given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_format(parser)
        parser.add_argument(
            "--tag",
            action="append",
            default=[],
            metavar="TAG",
            help="Only tenants with this tag (repeatable, or comma-separated: all of them).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        wanted = [tag for value in options["tag"] for tag in split_tags(value)]
        try:
            tenants = list_tenants(tags=wanted)
            _, nodes = placement()  # on a Citus cluster: each schema's worker node
        except TenancyError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from exc
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
                            "tags": t.tags,
                            "tenant_type": t.tenant_type,
                        }
                        for t in tenants
                    ],
                    indent=2,
                )
            )
            return
        if not tenants:
            tagged = f" with tag(s) {', '.join(wanted)}" if wanted else " registered yet"
            self.stdout.write(f"No tenants{tagged}")
            return
        for number, t in enumerate(tenants, start=1):
            self.stdout.write(f"{number}. {t.name}")
            self.stdout.write(f"   Schema: {t.schema}")
            self.stdout.write(f"   Auth0 Org ID: {t.org_id}")
            self.stdout.write(f"   Status: {t.status}")
            if t.tags:
                self.stdout.write(f"   Tags: {', '.join(t.tags)}")
            if t.tenant_type:
                self.stdout.write(f"   Type: {t.tenant_type}")
            if t.schema in nodes:
                self.stdout.write(f"   Node: {nodes[t.schema]}")
            if not t.schema_exists:
                self.stdout.write(self.style.ERROR("   Schema missing! (tenant_recreate)"))
