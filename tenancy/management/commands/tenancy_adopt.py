"""Make the tenant schemas of a database built by stock django-tenants tenancy's own."""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenancy.engine.errors import EXIT_FAILED, Interrupted, TenancyError
from tenancy.management.actor import cli_actor
from tenancy.management.interrupts import interruptible
from tenancy.management.options import add_actor, add_format
from tenancy.management.output import write_json
from tenancy.services import adoption
from tenancy.services.adoption import AdoptionReport, SchemaAdoption

EPILOG = """
each schema, in a transaction of its own: its owner and web roles (and the shared ones
when missing), django_migrations in the engine's shape, the schema and its objects handed
to the owner role with the web role's grants, a ledger row for each tenant Django step
its django_migrations records (SQL files stay pending unless --baseline says they are
there), its registry row, a tenant.adopt audit row; then tenant_verify's comparison.
A schema with nothing left to do is 'already adopted'; a killed run is finished by a
re-run. migrate_tenants then applies the pending steps.

exit codes:
  0  every schema adopted (or already adopted, or, with --dry-run, adoptable)
  1  a schema could not be adopted or differs from its files after adoption, or the
     command could not run (bad arguments, no tenancy tables)
  130, 143  stopped by SIGINT or SIGTERM: the schema in progress was rolled back, those
            adopted before stay adopted; run the command again to finish
"""


class Command(BaseCommand):
    help = (
        "Adopt the tenant schemas of a database built by stock django-tenants (the schemas "
        "of the project's tenant model): tenancy's roles, ownership, grants, ledger, "
        "registry and audit, one transaction per schema. --dry-run says what it would do."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.description = textwrap.fill(self.help, 79)  # raw: wrapped here
        parser.epilog = EPILOG
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--schema",
            action="append",
            metavar="SCHEMA",
            help="Only this schema of the tenant model (repeatable).",
        )
        parser.add_argument(
            "--baseline",
            metavar="VERSION",
            help="The tenant SQL files up to this number are in the schemas already: record "
            "them as applied (as migrate_tenants --baseline does) instead of leaving them "
            "pending. Only for schemas this run adopts (for one adopted already: "
            "migrate_tenants --baseline VERSION --tenant SCHEMA).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Say what, change nothing.")
        add_format(parser)
        parser.add_argument(
            "--json", dest="format", action="store_const", const="json", help="--format json."
        )
        add_actor(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with interruptible():
                report = adoption.adopt(
                    options["schema"],
                    baseline=options["baseline"],
                    dry_run=options["dry_run"],
                    actor=options["actor"] or cli_actor(),
                )
        except Interrupted as stop:
            self.stderr.write(
                f"Interrupted (signal {stop.signum}): the schema in progress was rolled back; "
                "the schemas adopted before it stay adopted. Run the command again to finish."
            )
            sys.exit(stop.exit_code)
        except TenancyError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from exc
        if options["format"] == "json":
            write_json(self.stdout, report.to_dict())
        else:
            self._write_text(report, options["verbosity"])
        if not report.ok:
            sys.exit(EXIT_FAILED)

    def _write_text(self, report: AdoptionReport, verbosity: int) -> None:
        if not report.schemas:
            self.stdout.write("No tenant schemas to adopt (the tenant model lists none).")
            return
        for schema in report.schemas:
            self._write_schema(schema, verbosity)
        failed, differing = (
            report.count(adoption.FAILED),
            sum(bool(s.differences) for s in report.schemas),
        )
        if report.dry_run:
            summary = (
                f"Dry run: {report.count(adoption.WOULD_ADOPT)} schema(s) would be adopted, "
                f"{report.count(adoption.ALREADY)} already adopted, {failed} cannot be. "
                "Nothing was changed."
            )
        else:
            summary = (
                f"{len(report.schemas)} schema(s): {report.count(adoption.ADOPTED)} adopted, "
                f"{report.count(adoption.ALREADY)} already adopted, {failed} failed, "
                f"{differing} with differences ({report.elapsed_ms} ms)"
            )
        self.stdout.write((self.style.SUCCESS if report.ok else self.style.ERROR)(summary))

    def _write_schema(self, s: SchemaAdoption, verbosity: int) -> None:
        if s.status == adoption.FAILED:
            self.stderr.write(self.style.ERROR(f"{s.schema}: FAILED: {s.error}"))
            return
        self.stdout.write(f"{s.schema}: {s.status}")
        if s.status == adoption.ALREADY or verbosity < 1:
            return
        for line in _details(s, verbosity):
            self.stdout.write(f"    {line}")
        for line in s.differences:
            self.stdout.write(self.style.ERROR(f"    differs: {line}"))
        if s.status == adoption.ADOPTED and not s.differences:
            self.stdout.write(self.style.SUCCESS("    verify: ok"))


def _details(s: SchemaAdoption, verbosity: int) -> list[str]:
    lines = []
    if s.roles:
        lines.append(f"new roles: {', '.join(s.roles)}")
    if s.handed_over:
        lines.append(
            f"owner: the schema and {len(s.handed_over) - 1} object(s) to {s.owner_role}, "
            "with the web role's grants"
        )
        if verbosity >= 2:
            lines += [f"  {statement}" for statement in s.handed_over]
    if s.reshaped:
        lines.append("django_migrations: id as the engine makes it (integer identity)")
    if s.ledger:
        lines.append(f"ledger: {len(s.ledger)} row(s) as applied: {', '.join(s.ledger)}")
    if s.registered is not None:
        lines.append(f"registry: {s.registered!r} (org id {s.schema})")
    if s.pending:
        lines.append(f"pending for migrate_tenants: {', '.join(s.pending)}")
    return lines
