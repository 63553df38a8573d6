"""The seed's "Regular cleanup of inactive tenants": drop tenants inactive for N days."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenancy.engine.errors import TenancyError
from tenancy.management.actor import cli_actor
from tenancy.management.options import add_actor, add_format
from tenancy.management.prompts import add_noinput_argument
from tenancy.services import lifecycle


class Command(BaseCommand):
    help = (
        "Drop the tenants inactive for --days days: status suspended or archived, unchanged "
        "for that long, and no audit_logs row about their schema in that time. Active tenants "
        "are never touched. --dry-run lists them only. Each drop is its own transaction, "
        "audited. Exit code 1 if any drop failed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, required=True, help="Inactive for this long.")
        parser.add_argument(
            "--status",
            action="append",
            choices=list(lifecycle.INACTIVE_STATUSES),
            help="Only tenants with this status (repeatable; default: suspended and archived).",
        )
        parser.add_argument("--dry-run", action="store_true", help="List, drop nothing.")
        add_noinput_argument(parser)
        add_format(parser)
        add_actor(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"]
        statuses = tuple(options["status"] or lifecycle.INACTIVE_STATUSES)
        actor = options["actor"] or cli_actor()
        try:
            candidates = lifecycle.inactive_tenants(days, statuses=statuses)
            dry_run = options["dry_run"] or not candidates
            if not dry_run and options["interactive"]:
                self._list(candidates, options)
                answer = self._ask(f"Drop these {len(candidates)} tenant(s) and all their data?")
                if answer != "yes":
                    raise CommandError("Cleanup cancelled: nothing was dropped.")
            report = lifecycle.cleanup(days, actor=actor, dry_run=dry_run, statuses=statuses)
        except TenancyError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from exc
        if options["format"] == "json":
            self.stdout.write(
                json.dumps(
                    {
                        "days": days,
                        "dry_run": report.dry_run,
                        "candidates": [
                            {
                                "schema": c.tenant.schema,
                                "auth0_org_id": c.tenant.org_id,
                                "status": c.tenant.status,
                                "status_since": c.tenant.updated_at.isoformat(),
                                "last_activity": c.last_activity.isoformat()
                                if c.last_activity
                                else None,
                            }
                            for c in report.candidates
                        ],
                        "dropped": [d.tenant.schema for d in report.dropped],
                        "errors": report.errors,
                    },
                    indent=2,
                )
            )
        else:
            if not report.candidates:
                self.stdout.write(f"No tenant has been inactive for {days} days.")
            elif report.dry_run:
                self.stdout.write(f"Would drop {len(report.candidates)} tenant(s) (dry run):")
                self._list(report.candidates, options)
            for d in report.dropped:
                self.stdout.write(self.style.SUCCESS(f"Dropped {d.tenant.schema}"))
            for schema, error in report.errors.items():
                self.stderr.write(self.style.ERROR(f"{schema}: {error}"))
        if report.errors:
            raise CommandError(f"{len(report.errors)} tenant(s) could not be dropped.")

    def _list(self, candidates: list, options: dict) -> None:
        if options["format"] == "json" and options["dry_run"]:
            return
        for c in candidates:
            last = c.last_activity.strftime("%Y-%m-%d") if c.last_activity else "never"
            self.stdout.write(
                f"  {c.tenant.schema}  {c.tenant.status} since "
                f"{c.tenant.updated_at:%Y-%m-%d}, last activity {last}  ({c.tenant.name})"
            )

    def _ask(self, question: str) -> str:
        try:
            return input(f"{question} Type 'yes' to continue: ").strip().lower()
        except EOFError:
            return ""
