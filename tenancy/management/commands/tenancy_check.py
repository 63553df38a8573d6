"""Check the database setup: connection, server, tenancy tables, pending work, pooler."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from tenancy.management.options import add_format
from tenancy.management.output import write_json
from tenancy.services import health


class Command(BaseCommand):
    help = (
        "Check the database setup, one line each: the connection (server, database, user; "
        "the engine's direct connection too when configured), the server version, the "
        "tenancy tables, pending work (Django migrations of public, SQL migrations of public "
        "and tenants), the ledger against the files, and the pooler. Exit 0 when all is well "
        "(warnings included), 1 when a connection fails, the tenancy tables are missing or "
        "the migration files cannot be read, 2 when migrations are pending. --url prints a "
        'postgresql:// URL of the database for psql: psql "$(manage.py tenancy_check --url)".'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_format(parser)
        parser.add_argument(
            "--url",
            action="store_true",
            help="Print only a postgresql:// URL of the database in use (for psql) and exit.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["url"]:
            self.stdout.write(health.psql_url())
            return
        report = health.check()
        if options["format"] == "json":
            write_json(self.stdout, report.to_dict())
        else:
            for check in report.checks:
                self.stdout.write(self._line(check))
        if report.exit_code:
            sys.exit(report.exit_code)

    def _line(self, check: health.Check) -> str:
        style = {
            health.OK: self.style.SUCCESS,
            health.WARNING: self.style.WARNING,
            health.PENDING: self.style.WARNING,
            health.FAILED: self.style.ERROR,
        }[check.status]
        return f"{check.name:<18} {style(f'{check.status.upper():<8}')} {check.message}"
