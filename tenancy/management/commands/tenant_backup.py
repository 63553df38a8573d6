"""Back up tenants: a pg_dump of each schema beside its registry, domain and ledger rows."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenancy.engine.errors import EXIT_FAILED, TenancyError
from tenancy.management.actor import cli_actor
from tenancy.management.options import add_actor
from tenancy.management.output import write_json
from tenancy.services.backups import BackupEntry, BackupReport, backup_tenants
from tenancy.services.reports import human_size

EPILOG = """
Each run writes one backup set: OUTPUT/tenant-backup-<UTC time>/ with, per tenant,
<schema>.dump (pg_dump -Fc --schema=<schema>, by the pg_dump of the server's major
version), <schema>.json (its registry, domain and ledger rows, role names, sizes,
SHA-256) and manifest.json. docs/backups.md: retention and restore (tenant_restore).

exit codes:
  0  every tenant backed up
  1  a tenant failed (the others are still backed up), or bad input, an unknown tenant,
     no pg_dump matching the server
"""


def default_output() -> Path:
    return Path(getattr(settings, "TENANCY", {}).get("BACKUP_DIR") or settings.BASE_DIR / "backups")


class Command(BaseCommand):
    help = (
        "Back up tenants: a custom-format pg_dump of each tenant's schema, with its "
        "registry, domain and ledger rows, into a new backup set with a manifest."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.epilog = EPILOG
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--tenant",
            action="append",
            metavar="ORG_ID",
            default=[],
            help="A tenant to back up (Auth0 org id or schema name); repeatable.",
        )
        parser.add_argument("--all", action="store_true", help="Every registered tenant.")
        parser.add_argument(
            "--output",
            metavar="DIR",
            help="Where the backup set's directory is made (default: TENANCY['BACKUP_DIR'], "
            "else backups/ of the project).",
        )
        parser.add_argument(
            "--format",
            choices=["text", "json"],
            default="text",
            help="json: the manifest of the set, for CI.",
        )
        add_actor(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        text = options["format"] == "text"
        if options["output"] is not None and not options["output"].strip():
            raise CommandError("--output needs a directory.", returncode=EXIT_FAILED)
        output = Path(options["output"]) if options["output"] else default_output()
        try:
            report = backup_tenants(
                options["tenant"] or None,
                all_tenants=options["all"],
                output=output,
                actor=options["actor"] or cli_actor(),
                on_entry=self._progress if text else None,
            )
        except TenancyError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from exc
        if text:
            self._summary(report, options["verbosity"])
        else:
            write_json(self.stdout, report.to_dict())
        if report.failed:
            raise SystemExit(EXIT_FAILED)

    def _progress(self, entry: BackupEntry, number: int, total: int) -> None:
        where = f"[{number}/{total}] {entry.schema}"
        if entry.status != "succeeded":
            self.stderr.write(self.style.ERROR(f"{where}: FAILED: {entry.error}"))
            return
        self.stdout.write(
            f"{where}: {entry.tables} table(s), {human_size(entry.schema_bytes)} on the server "
            f"-> {entry.dump} ({human_size(entry.dump_bytes)}) in {entry.elapsed_ms} ms"
        )

    def _summary(self, report: BackupReport, verbosity: int) -> None:
        manifest = report.to_dict()
        summary = manifest["summary"]
        if not summary["schemas"]:
            self.stdout.write("No tenants registered yet: nothing to back up")
            return
        style = self.style.ERROR if report.failed else self.style.SUCCESS
        self.stdout.write(
            style(
                f"Backed up {summary['succeeded']} of {summary['schemas']} tenant(s), "
                f"{human_size(summary['dump_bytes'])}, in {summary['elapsed_ms']} ms"
            )
        )
        if manifest["directory"] and verbosity >= 1:
            self.stdout.write(f"   Set: {manifest['directory']}")
            self.stdout.write(f"   Manifest: {manifest['directory']}/manifest.json")
