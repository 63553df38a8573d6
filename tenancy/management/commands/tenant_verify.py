"""Compare each tenant schema's catalog with what its migration files build."""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenancy.engine.errors import TenancyError
from tenancy.management.output import write_json
from tenancy.services.verify import (
    DEFAULT_JOBS,
    OWN_CONNECTIONS_FROM,
    TenantResult,
    VerifyError,
    VerifyReport,
    verify,
)


class Command(BaseCommand):
    help = (
        "Verify that every tenant schema (or each --tenant) matches its migration files: "
        "tables, columns, constraints, indexes, sequences, row-level security policies, "
        "triggers, functions, types, grants and owners. The reference is built by applying "
        "the tenant files to a scratch schema in a transaction that is rolled back (nothing "
        "remains); a tenant behind (or ahead of) the files is compared with the files it "
        "has applied. Exit 0 when every tenant matches, 1 otherwise."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.description = textwrap.fill(self.help, 79)  # raw: wrapped here
        parser.epilog = (
            "output: one line per tenant, 'SCHEMA: ok' or 'SCHEMA: N difference(s)' followed\n"
            "by the differences, indented ('missing: column job_postings.priority smallint',\n"
            "'grant: web lost INSERT on table job_postings'); roles read as tokens: owner,\n"
            "web, app, owner_group. A tenant with pending files says 'N migration(s) behind'.\n"
            "\n"
            "exit codes:\n"
            "  0  every tenant matches its migration files\n"
            "  1  a tenant differs or its schema is missing, or the command could not run"
        )
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--tenant",
            action="append",
            metavar="SCHEMA",
            help="Only this tenant schema (repeatable), e.g. tenant_org_x.",
        )
        parser.add_argument(
            "--jobs",
            type=int,
            default=DEFAULT_JOBS,
            metavar="N",
            help=f"With {OWN_CONNECTIONS_FROM} tenants or more, fingerprint them over N "
            f"connections at once (default {DEFAULT_JOBS}).",
        )
        parser.add_argument(
            "--format",
            choices=["text", "json"],
            default="text",
            help='json: {"tenants": [{"schema", "ok", "differences", "behind"}], "summary"}.',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["jobs"] < 1:
                raise VerifyError("--jobs must be at least 1.")
            report = verify(options["tenant"], jobs=options["jobs"])
        except TenancyError as exc:  # bad names, unknown tenants, no infrastructure, …
            raise CommandError(str(exc), returncode=exc.exit_code) from exc
        if options["format"] == "json":
            write_json(self.stdout, report.to_dict())
        else:
            self._write_text(report)
        if not report.ok:
            raise SystemExit(1)

    def _write_text(self, report: VerifyReport) -> None:
        if not report.tenants:
            self.stdout.write("No tenants registered yet")
            return
        for tenant in report.tenants:
            self.stdout.write(_headline(tenant, self.style))
            for line in tenant.differences:
                self.stdout.write(f"    {line}")
        differing = len(report.differing)
        summary = (
            f"{len(report.tenants)} tenant(s): {len(report.tenants) - differing} ok, "
            f"{differing} with differences ({report.elapsed_ms} ms)"
        )
        style = self.style.SUCCESS if report.ok else self.style.ERROR
        self.stdout.write(style(summary))


def _headline(tenant: TenantResult, style: Any) -> str:
    behind = f" ({len(tenant.behind)} migration(s) behind)" if tenant.behind else ""
    if tenant.ok:
        return f"{tenant.schema}: {style.SUCCESS('ok')}{behind}"
    return f"{tenant.schema}: {style.ERROR(f'{len(tenant.differences)} difference(s)')}{behind}"
