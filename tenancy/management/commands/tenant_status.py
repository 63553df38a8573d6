"""Per-tenant status: migrations applied, last one and when, pending, failed, size, activity."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenancy.engine.errors import TenancyError
from tenancy.engine.names import validate_schema_name
from tenancy.services import pool, run_records
from tenancy.services.reports import human_size, schema_states

COLUMNS = ("SCHEMA", "STATUS", "APPLIED", "LAST MIGRATION", "APPLIED AT", "PENDING", "FAILED",
           "SIZE", "ACTIVITY")  # fmt: skip


def _problems(state: Any) -> list[str]:
    """What --check refuses: a missing schema, a failed last attempt, drift, a missing file,
    an out-of-order file (the same as `migrate_tenants --check`)."""
    problems = [f"{state.schema}: schema missing"] if not state.schema_exists else []
    problems += [f"{state.schema}: last attempt failed: {state.last_error}"] if state.failed else []
    problems += [f"{state.schema}: drift in {name}" for name in state.drift]
    problems += [f"{state.schema}: applied file missing from disk: {n}" for n in state.missing]
    problems += [
        f"{state.schema}: out-of-order file (numbered below an applied one): {n}"
        for n in state.out_of_order
    ]
    return problems


class Command(BaseCommand):
    help = (
        "Show every tenant's state: migrations applied, the last one and when, pending ones, "
        "whether its last run failed, its schema size and its activity (audit rows), and on a "
        "Citus cluster its worker node. A "
        "constant number of queries, whatever the number of tenants. With --check, exit 1 "
        "when a schema is missing, its last attempt failed, an applied file changed (drift) "
        "or is missing from disk, or a file is out of order."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=["table", "json"], default="table")
        parser.add_argument(
            "--tenant", action="append", help="Only this schema (repeatable), e.g. tenant_org_x."
        )
        parser.add_argument("--public", action="store_true", help="Include the public schema.")
        parser.add_argument(
            "--check",
            action="store_true",
            help="Exit 1 if a schema is missing or failed, or shows drift, a missing file or "
            "an out-of-order file.",
        )

    def _pool_line(self) -> None:
        """The warm pool, apart: its schemas are no tenants (`tenant_pool` lists them)."""
        try:
            state = pool.status()
        except TenancyError:
            return  # no pool table yet, or files no tenant can be built from
        if state.entries or state.size:
            behind = sum(bool(e.pending) for e in state.entries if e.usable)
            ready = sum(e.usable for e in state.entries)
            extra = f", {behind} behind the files (migrated at claim)" if behind else ""
            self.stdout.write(f"Pool: {ready} ready of {state.size}{extra} (tenant_pool)")

    def handle(self, *args: Any, **options: Any) -> None:
        only = options["tenant"]
        try:
            run_records.close_dead_runs_now()  # whoever looks next closes runs whose process died
            only = [validate_schema_name(s) for s in only] if only else None
            states = schema_states(include_public=options["public"], only=only, sizes=True)
        except TenancyError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from exc
        unknown = sorted(set(only or ()) - {s.schema for s in states})
        if unknown:
            raise CommandError(
                f"Not a registered tenant schema: {', '.join(unknown)}. "
                "`manage.py tenant_list` shows the registered ones."
            )
        if not options["public"]:
            states = [s for s in states if s.scope != "public"]
        if options["format"] == "json":
            self.stdout.write(json.dumps([s.to_dict() for s in states], indent=2))
        elif not states:
            self.stdout.write("No tenants registered yet")
        else:
            # The NODE column only on a Citus cluster (the schemas have nodes there).
            placed = any(s.node for s in states)
            columns = (*COLUMNS, "NODE") if placed else COLUMNS
            rows = [columns] + [
                (
                    s.schema,
                    s.status or "-",
                    str(s.applied),
                    s.last_migration or "-",
                    s.last_applied_at.strftime("%Y-%m-%d %H:%M") if s.last_applied_at else "-",
                    str(len(s.pending)),
                    "MISSING" if not s.schema_exists else ("yes" if s.failed else "no"),
                    human_size(s.size_bytes) if s.size_bytes is not None else "-",
                    str(s.activity_count),
                    *([s.node or "-"] if placed else []),
                )
                for s in states
            ]
            widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
            for number, row in enumerate(rows):
                line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                self.stdout.write(line.rstrip())
                if number == 0:
                    self.stdout.write("  ".join("-" * w for w in widths))
            for s in states:
                if s.failed and s.last_error and options["verbosity"] >= 2:
                    self.stderr.write(f"{s.schema}: {s.last_error}")
        if options["format"] != "json" and not only:
            self._pool_line()
        if options["check"]:
            problems = [p for s in states for p in _problems(s)]
            if problems:
                raise CommandError("\n".join(problems))
