"""Bring a tenant back from a backup (tenant_backup, migrate_tenants --backup-dir)."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenancy.engine.errors import TenancyError
from tenancy.management.actor import cli_actor
from tenancy.management.options import add_actor
from tenancy.management.output import write_json
from tenancy.management.prompts import add_noinput_argument, confirm_schema
from tenancy.services import backups

EPILOG = """
FILE_OR_DIR: a backup set's directory (with --tenant when it holds several tenants), or a
<schema>.dump / <schema>.json of one. In one transaction: the tenant's roles and schema
are created as tenant_create creates them, the dump's tables and rows are restored as the
tenant's owner role (so owners and grants are a new tenant's), then its ledger, registry
and domain rows and an audit_logs row. A failure leaves nothing behind.

A tenant that exists is refused; --replace drops it and restores the backup in its place,
in the same transaction (it asks for the schema name unless --noinput).

exit codes:
  0  restored
  1  refused or failed (nothing changed), or bad input
"""


class Command(BaseCommand):
    help = "Restore a tenant from a backup: schema, rows, roles, grants, registry and ledger."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.epilog = EPILOG
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", metavar="FILE_OR_DIR", help="A backup set or file.")
        parser.add_argument(
            "--tenant",
            metavar="ORG_ID",
            help="The tenant to restore from a set (Auth0 org id or schema name).",
        )
        parser.add_argument(
            "--replace",
            action="store_true",
            help="Drop the tenant if it exists and restore the backup in its place.",
        )
        add_noinput_argument(parser)
        parser.add_argument(
            "--format", choices=["text", "json"], default="text", help="json: what was restored."
        )
        add_actor(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["replace"] and options["interactive"]:
                self._confirm(options)
            restored = backups.restore(
                options["source"],
                options["tenant"],
                replace=options["replace"],
                actor=options["actor"] or cli_actor(),
            )
        except TenancyError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from exc
        if options["format"] == "json":
            write_json(self.stdout, asdict(restored))
            return
        verb = "Replaced" if restored.replaced else "Restored"
        self.stdout.write(
            self.style.SUCCESS(f"{verb} tenant {restored.org_id} from {restored.source}")
        )
        if options["verbosity"] >= 1:
            self.stdout.write(f"   Schema: {restored.schema} ({restored.tables} table(s))")
            self.stdout.write(f"   Roles: {restored.role}, owner {restored.owner}")
            self.stdout.write(f"   Ledger rows: {restored.ledger_rows}")
            self.stdout.write(f"   Domains: {', '.join(restored.domains) or '-'}")
            self.stdout.write(f"   Took: {restored.elapsed_ms} ms")

    def _confirm(self, options: dict[str, Any]) -> None:
        source = backups.locate(options["source"], options["tenant"])
        confirm_schema(
            self,
            source.schema,
            f"--replace drops tenant {source.org_id} (schema {source.schema}) with all its "
            f"current data if it exists, and restores {source.dump} in its place.",
            "Restore",
        )
