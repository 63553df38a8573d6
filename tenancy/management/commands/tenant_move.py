"""Move a tenant's schema to another Citus worker node."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenancy.engine.errors import TenancyError
from tenancy.management.actor import cli_actor
from tenancy.management.options import add_actor, add_format
from tenancy.services import placement


class Command(BaseCommand):
    help = (
        "On a Citus cluster, move a tenant's schema (all its tables, which live together) "
        "to worker node HOST:PORT with citus_schema_move. With --mode auto (the default) "
        "the tenant keeps writing during the copy (needs wal_level = logical); with "
        "block_writes its writes wait. Refused while a migration run works on the tenant. "
        "Audited. `tenant_status` shows each tenant's node."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant", help="Auth0 org id (org_…) or schema name (tenant_org_…)")
        parser.add_argument("--node", required=True, help="Target worker node, HOST:PORT.")
        parser.add_argument("--mode", choices=placement.TRANSFER_MODES, default="auto")
        add_actor(parser)
        add_format(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            move = placement.move_tenant(
                options["tenant"],
                options["node"],
                mode=options["mode"],
                actor=options["actor"] or cli_actor(),
            )
        except TenancyError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from exc
        if options["format"] == "json":
            fields = ["org_id", "schema", "source", "target", "mode", "elapsed_ms"]
            data = {name: getattr(move, name) for name in fields}
            self.stdout.write(json.dumps({**data, "moved": move.moved}, indent=2))
        elif move.moved:
            self.stdout.write(
                self.style.SUCCESS(
                    f"{move.schema}: moved from {move.source} to {move.target} "
                    f"in {move.elapsed_ms} ms"
                )
            )
        else:
            self.stdout.write(f"{move.schema} is already on {move.target}; nothing to do.")
