"""The seed's migration runner: public, then every tenant schema."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenancy import conf
from tenancy.engine.names import InvalidName, schema_for_org
from tenancy.engine.source import SourceError
from tenancy.management.output import Progress, write_json, write_plan
from tenancy.management.prompts import confirm_schema
from tenancy.services import recovery, runs
from tenancy.services.tenants import TenantError, create_tenant

EPILOG = """
exit codes:
  0  done (or, with --dry-run/--check, nothing pending)
  1  a schema failed, or the command could not run (bad arguments included)
  2  --check found pending migrations
  3  the ledger and the files disagree (drift, missing file, out-of-order file): nothing applied
"""


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {number}")
    return number


class Command(BaseCommand):
    help = (
        "Apply the SQL migrations of migrations_sql/: public first, then every tenant schema, "
        "each schema in its own transaction under its own advisory lock. Without --public or "
        "--tenants both run; --tenant limits the run to the schemas named."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.epilog = EPILOG
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        usage_error = parser.error

        def error(message: str) -> None:
            # argparse exits 2 on bad arguments, but 2 means "pending" to a CI gate here.
            try:
                usage_error(message)
            except SystemExit:
                sys.exit(runs.EXIT_FAILED)

        parser.error = error  # type: ignore[method-assign]
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        scope = parser.add_argument_group("what to migrate")
        scope.add_argument(
            "--public",
            action="store_true",
            help="Only the public schema (on an empty database this first "
            "creates the infrastructure: Django's public migrations).",
        )
        scope.add_argument("--tenants", action="store_true", help="Only the tenant schemas.")
        scope.add_argument(
            "--tenant",
            action="append",
            metavar="SCHEMA",
            default=[],
            help="Only this tenant (schema name or Auth0 org id); repeatable.",
        )
        run = parser.add_argument_group("how")
        run.add_argument(
            "--dry-run",
            action="store_true",
            help="Show each schema's pending migrations; apply nothing.",
        )
        run.add_argument(
            "--check",
            action="store_true",
            help="Like --dry-run, but exit 2 when anything is pending (CI gate).",
        )
        run.add_argument(
            "--jobs",
            "-j",
            type=_positive,
            default=1,
            metavar="N",
            help="Migrate N schemas at once, each worker with its own connection.",
        )
        run.add_argument(
            "--fail-fast",
            action="store_true",
            help="Stop at the first schema that fails (default: go on).",
        )
        run.add_argument(
            "--verbose",
            action="store_true",
            help="Print the SQL of every migration, placeholders rendered.",
        )
        run.add_argument(
            "--format",
            choices=["text", "json"],
            default="text",
            help="json: the plan and per-schema results, for CI.",
        )
        run.add_argument(
            "--actor", default=None, help="Who to record in audit_logs (default: the OS user)."
        )
        run.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Do not prompt (for --reset-tracking).",
        )
        fix = parser.add_argument_group("recovery")
        fix.add_argument(
            "--rollback",
            metavar="VERSION",
            help="Undo migrations numbered VERSION and above, newest first, with "
            "the recorded rollback SQL (tenants unless --public).",
        )
        fix.add_argument(
            "--fake",
            action="store_true",
            help="Record pending migrations as applied without running them.",
        )
        fix.add_argument(
            "--baseline",
            metavar="VERSION",
            help="Record migrations up to VERSION as applied without running them.",
        )
        fix.add_argument(
            "--accept-checksum",
            metavar="VERSION",
            help="Accept the current content of an applied, edited file (drift).",
        )
        fix.add_argument(
            "--reset-tracking",
            action="store_true",
            help="Delete the ledger rows of one --tenant (the seed's 'Reset "
            "Migration Tracking'; DANGEROUS, asks for confirmation).",
        )
        fix.add_argument(
            "--allow-missing",
            action="store_true",
            help="Go on although applied files are missing from disk.",
        )
        fix.add_argument(
            "--allow-out-of-order",
            action="store_true",
            help="Apply new files numbered below already applied ones.",
        )
        create = parser.add_argument_group("tenants")
        create.add_argument(
            "--create-tenant",
            metavar="ORG_ID",
            help="Create a tenant (as tenant_create does) and exit.",
        )
        create.add_argument("--name", help="Organization name for --create-tenant.")

    def handle(self, *args: Any, **o: Any) -> None:
        actor = o["actor"] or recovery.default_actor()
        try:
            if o["create_tenant"]:
                self._create(o["create_tenant"], o["name"], actor)
                return
            only = [self._schema(t) for t in o["tenant"]] or None
            public, tenants = o["public"], o["tenants"]
            if not (public or tenants or only):
                public = tenants = True
            if o["rollback"]:
                code = self._rollback(o, public, tenants, only, actor)
            elif o["accept_checksum"]:
                code = self._accept(o, actor)
            elif o["reset_tracking"]:
                code = self._reset(o, only, actor)
            elif o["baseline"]:
                code = self._baseline(o, public, tenants, only, actor)
            else:
                code = self._migrate(o, public, tenants, only, actor)
        except (runs.RunError, InvalidName, SourceError, TenantError, recovery.RecoveryError) as e:
            raise CommandError(str(e), returncode=runs.EXIT_FAILED) from e
        if code:
            sys.exit(code)

    # -- verbs ---------------------------------------------------------------------------
    def _schema(self, value: str) -> str:
        return schema_for_org(value) if value.startswith("org_") else value

    def _migrate(self, o: dict, public: bool, tenants: bool, only: list | None, actor: str) -> int:
        dry = o["dry_run"] or o["check"]
        text = o["format"] == "text"
        progress: Progress | None = None

        def on_plan(plan: Any) -> None:
            nonlocal progress
            if text and not dry:
                progress = Progress(
                    self.stdout,
                    self.style,
                    total=len(plan.with_pending),
                    verbosity=o["verbosity"],
                    show_sql=o["verbose"],
                )
                if plan.with_pending and o["verbosity"] >= 1:
                    self.stdout.write(
                        f"Applying {plan.pending_count} migration(s) to "
                        f"{len(plan.with_pending)} schema(s) with {o['jobs']} worker(s)"
                    )

        report = runs.migrate(
            public=public,
            tenants=tenants,
            only=only,
            dry_run=o["dry_run"],
            check=o["check"],
            jobs=o["jobs"],
            fail_fast=o["fail_fast"],
            fake=o["fake"],
            allow_missing=o["allow_missing"],
            allow_out_of_order=o["allow_out_of_order"],
            actor=actor,
            on_plan=on_plan,
            on_event=lambda e: progress and progress(e),
        )
        if not text:
            write_json(self.stdout, report.to_dict())
            return report.exit_code
        if report.django_migrations and o["verbosity"] >= 1:
            verb = "pending" if dry else "applied"
            self.stdout.write(
                f"Django migrations {verb} in public: {len(report.django_migrations)}"
            )
        for warning in report.warnings:
            self.stderr.write(self.style.WARNING(f"Lint: {warning}"))
        for reason in report.refused:
            self.stderr.write(self.style.ERROR(f"Refused: {reason}"))
        if report.refused:
            self.stderr.write("Nothing was applied.")
            return report.exit_code
        if dry:
            write_plan(
                self.stdout,
                self.style,
                report.plan,
                show_sql=o["verbose"],
                database=conf.conninfo()["dbname"],
            )
            return report.exit_code
        self._summary(report)
        return report.exit_code

    def _summary(self, report: runs.RunReport) -> None:
        done = [r for r in report.results if r.status == "succeeded"]
        if not report.results:
            self.stdout.write(self.style.SUCCESS("No pending migrations"))
            return
        applied = sum(len(r.versions) for r in done)
        self.stdout.write(
            self.style.SUCCESS(
                f"Run {report.run_id}: applied {applied} migration(s) to {len(done)} schema(s)"
            )
        )
        if report.failed:
            self.stderr.write(self.style.ERROR(f"{len(report.failed)} schema(s) failed:"))
            for r in report.failed:
                self.stderr.write(self.style.ERROR(f"  {r.schema}: {r.error}"))

    def _rollback(self, o: dict, public: bool, tenants: bool, only: list | None, actor: str) -> int:
        show = o["verbose"] or o["dry_run"]

        def on_event(e: Any) -> None:
            if e.kind == "sql" and show and o["format"] == "text":
                self.stdout.write(f"{e.schema}: -- undo {e.message}")
                for line in (e.sql or "").rstrip().splitlines():
                    self.stdout.write(f"{e.schema}:   {line}")

        report = runs.rollback(
            o["rollback"],
            public=o["public"],
            tenants=not o["public"] or bool(only),
            only=only,
            dry_run=o["dry_run"],
            jobs=o["jobs"],
            actor=actor,
            on_event=on_event,
        )
        if o["format"] == "json":
            write_json(self.stdout, report.to_dict())
            return report.exit_code
        if not report.results:
            self.stdout.write(
                f"Nothing to roll back: no schema has migration {o['rollback']} or later recorded."
            )
        for r in report.results:
            if r.failed:
                self.stderr.write(self.style.ERROR(f"{r.schema}: FAILED: {r.error}"))
            else:
                verb = "would roll back" if o["dry_run"] else "rolled back"
                self.stdout.write(f"{r.schema}: {verb} {', '.join(r.versions)}")
        return report.exit_code

    def _accept(self, o: dict, actor: str) -> int:
        accepted = recovery.accept_checksum(
            o["accept_checksum"],
            public=o["public"],
            only=[self._schema(t) for t in o["tenant"]] or None,
            actor=actor,
        )
        self.stdout.write(
            f"Accepted the new checksum of {accepted.name} in {accepted.rows} schema(s)."
        )
        return 0

    def _reset(self, o: dict, only: list | None, actor: str) -> int:
        if not only or len(only) != 1:
            raise CommandError("--reset-tracking needs exactly one --tenant SCHEMA.")
        schema = only[0]
        if o["interactive"]:
            confirm_schema(
                self,
                schema,
                f"This deletes every ledger row of {schema}: its migrations will run again.",
                "Reset",
            )
        deleted = recovery.reset_tracking(schema, actor=actor)
        self.stdout.write(f"Deleted {deleted} ledger row(s) of {schema}.")
        return 0

    def _baseline(self, o: dict, public: bool, tenants: bool, only: list | None, actor: str) -> int:
        report = recovery.baseline(
            o["baseline"], public=public, tenants=tenants, only=only, actor=actor
        )
        if o["format"] == "json":
            write_json(self.stdout, report.to_dict())
        else:
            recorded = sum(len(r.versions) for r in report.results)
            self.stdout.write(
                f"Recorded {recorded} migration(s) as applied (not run) up to {o['baseline']}."
            )
        return report.exit_code

    def _create(self, org_id: str, name: str | None, actor: str) -> None:
        created = create_tenant(org_id, name, actor=actor)
        self.stdout.write(
            self.style.SUCCESS(
                f"Created tenant {created.name}: schema {created.schema}, "
                f"{len(created.migrations_applied)} migration(s), role {created.role}, "
                f"domain {created.domain} ({created.elapsed_ms} ms)"
            )
        )
