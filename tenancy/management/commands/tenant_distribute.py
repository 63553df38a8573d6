"""Make the tenant schemas of a server converted to Citus distributed schemas."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenancy.engine.errors import TenancyError
from tenancy.management.actor import cli_actor
from tenancy.management.options import add_actor
from tenancy.services import placement


class Command(BaseCommand):
    help = (
        "After an existing server becomes a Citus coordinator, make each registered tenant "
        "schema that is still local a distributed schema (citus_schema_distribute), one at "
        "a time, each audited; `tenant_rebalance` then spreads them over the workers. "
        "--dry-run lists them and changes nothing. New tenants need none of this."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="List; change nothing.")
        add_actor(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["dry_run"]:
                schemas = placement.local_tenants()
                for schema in schemas:
                    self.stdout.write(f"would distribute {schema}")
                self.stdout.write(f"{len(schemas)} tenant schema(s) to distribute.")
                return
            done = placement.distribute_tenants(
                actor=options["actor"] or cli_actor(),
                on_done=lambda schema: self.stdout.write(f"{schema}: distributed"),
            )
        except TenancyError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from exc
        self.stdout.write(self.style.SUCCESS(f"{len(done)} tenant schema(s) distributed."))
