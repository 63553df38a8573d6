"""Drop the tenancy roles of a database that no longer exists (roles outlive databases)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenancy.engine.errors import TenancyError
from tenancy.management.actor import cli_actor
from tenancy.management.options import add_actor, add_format
from tenancy.management.output import write_json
from tenancy.services.adoption import drop_database_roles


class Command(BaseCommand):
    help = (
        "Drop the tenancy roles (tenant owner and web roles, the app role, the owner group) "
        "of a database that no longer exists: their names carry a hash of its name. Refused "
        "while that database, or another whose name hashes alike, exists; PostgreSQL refuses "
        "it (nothing dropped) while any of them owns or holds something in another database."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", required=True, metavar="NAME", help="The dropped one.")
        parser.add_argument("--dry-run", action="store_true", help="List them, drop nothing.")
        add_format(parser)
        add_actor(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = drop_database_roles(
                options["database"],
                dry_run=options["dry_run"],
                actor=options["actor"] or cli_actor(),
            )
        except TenancyError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from exc
        if options["format"] == "json":
            write_json(self.stdout, result.to_dict())
            return
        if not result.roles:
            self.stdout.write(f"No tenancy roles of database {result.database}.")
            return
        verb = "Would drop" if result.dry_run else "Dropped"
        self.stdout.write(
            self.style.SUCCESS(f"{verb} {len(result.roles)} role(s) of database {result.database}")
            + (" (dry run)" if result.dry_run else "")
        )
        if options["verbosity"] >= 1:
            for role in result.roles:
                self.stdout.write(f"  {role}")
