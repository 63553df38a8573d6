"""Create a tenant: schema, every tenant migration, role, registry row, domain, audit; or
one per row of a CSV file (``--from-file``, services/bulk_creation.py)."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenancy.engine.errors import EXIT_OK, TenancyError
from tenancy.engine.names import split_tags, validate_org_id, validate_tags
from tenancy.management.actor import cli_actor
from tenancy.management.options import add_actor, add_format
from tenancy.management.output import RowProgress
from tenancy.services import bulk_creation as bulk
from tenancy.services.runs import set_up_public_if_missing
from tenancy.services.tenants import (
    CreationLimitReached,
    audit_hourly_override,
    check_creation,
    create_tenant,
)

OVERRIDE_FLAG = "--override-hourly-limit"


class Command(BaseCommand):
    help = (
        "Create a tenant for an Auth0 organization (org_ followed by letters, digits and "
        "underscores). Its schema is tenant_<org id in lower case>; the schema, every tenant "
        "migration, the ledger rows, the tenant's roles, its registry row, its domain and an "
        "audit row are created in one transaction (with its --tag tags): on any error "
        "nothing is left behind. On a fresh database the public schema is set up first (as "
        "`migrate_tenants --public`). --from-file FILE.csv creates one tenant per row "
        "(org_id,name,tags), each in its own transaction: a bad row is reported with its line "
        "and the rest go on; exit 1 when any row failed or was not created."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "org_id", nargs="?", help="Auth0 organization id, e.g. org_ayHu5XNaTNHMasO5"
        )
        parser.add_argument("--name", help="Organization name (default: the org id).")
        parser.add_argument(
            "--tag",
            action="append",
            default=[],
            metavar="TAG",
            help="A tag of the tenant, e.g. enterprise (repeatable, or comma-separated; "
            "`tenant_tag` changes them later).",
        )
        parser.add_argument(
            "--type",
            dest="tenant_type",
            metavar="TYPE",
            help="With django-tenants' multi-type tenants (HAS_MULTI_TYPE_TENANTS): the "
            "tenant's type, one TENANT_TYPES names; its schema gets that type's apps (default: "
            "the first type). With --from-file, every row's.",
        )
        parser.add_argument(
            "--from-file",
            metavar="FILE.csv",
            help="Create a tenant per row of a CSV file: org_id,name,tags (name and tags may "
            "be empty; tags separated by ';' or spaces; an optional header row "
            "org_id,name,tags). Rows already created (same org id and name) are reported as "
            "existing: a re-run creates only what is missing.",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Check every row (or the one tenant) as a creation would, changing nothing.",
        )
        parser.add_argument(
            OVERRIDE_FLAG,
            action="store_true",
            help="Create past TENANCY['MAX_CREATIONS_PER_HOUR'] (TENANCY_MAX_CREATIONS_PER_HOUR)"
            "; audited as tenant.hourly_limit_override with the actor and the count. "
            "TENANCY['MAX_TENANTS'] still holds.",
        )
        add_actor(parser)
        add_format(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        actor = options["actor"] or cli_actor()
        if options["from_file"]:
            self._check_bulk_usage(options)
            self._bulk(options, actor)
            return
        if not options["org_id"]:
            raise CommandError("Give an ORG_ID, or --from-file FILE.csv.")
        try:
            # A bad id or tag changes nothing, not even public.
            validate_org_id(options["org_id"])
            tags = validate_tags(tag for value in options["tag"] for tag in split_tags(value))
            if options["dry_run"]:
                self._check_one(options)
                return
            self._set_up_public(actor, quiet=options["format"] == "json")
            created = create_tenant(
                options["org_id"],
                options["name"],
                actor=actor,
                tags=tags,
                override_hourly_limit=options["override_hourly_limit"],
                tenant_type=options["tenant_type"],
            )
            if created.past_hourly_limit:
                audit_hourly_override(actor, [created.org_id])
        except CreationLimitReached as exc:
            raise CommandError(
                f"{exc} {OVERRIDE_FLAG} creates past it (audited).", returncode=exc.exit_code
            ) from exc
        except TenancyError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from exc
        if options["format"] == "json":
            self.stdout.write(json.dumps(dataclasses.asdict(created), indent=2))
            return
        self.stdout.write(self.style.SUCCESS(f"Created tenant {created.name}"))
        if options["verbosity"] >= 1:
            self.stdout.write(f"   Schema: {created.schema}")
            self.stdout.write(f"   Auth0 Org ID: {created.org_id}")
            self.stdout.write(f"   Migrations applied: {len(created.migrations_applied)}")
            self.stdout.write(f"   Role: {created.role}")
            self.stdout.write(f"   Domain: {created.domain}")
            if created.tags:
                self.stdout.write(f"   Tags: {', '.join(created.tags)}")
            if created.tenant_type:
                self.stdout.write(f"   Type: {created.tenant_type}")
            self.stdout.write(f"   Took: {created.elapsed_ms} ms")
            self.stdout.write(f"   Path: {_path(created)}")
        if created.past_hourly_limit:
            self.stdout.write(self.style.WARNING(_past_limit_note(1)))

    def _check_one(self, options: dict[str, Any]) -> None:
        """--dry-run of one tenant: checked as a creation would check it."""
        checked = check_creation(
            options["org_id"],
            options["name"],
            override_hourly_limit=options["override_hourly_limit"],
            tenant_type=options["tenant_type"],
        )
        if options["format"] == "json":
            self.stdout.write(json.dumps(dataclasses.asdict(checked), indent=2))
            return
        self.stdout.write(
            f"Would create tenant {checked.name}: schema {checked.schema}, "
            f"{len(checked.migrations_applied)} migration(s). Nothing was changed."
        )

    # -- --from-file -------------------------------------------------------------------------
    def _check_bulk_usage(self, options: dict[str, Any]) -> None:
        given = [
            flag
            for flag, key in (("ORG_ID", "org_id"), ("--name", "name"), ("--tag", "tag"))
            if options[key]
        ]
        if given:
            raise CommandError(
                f"--from-file takes the org ids, names and tags from the file: not with "
                f"{', '.join(given)}."
            )

    def _bulk(self, options: dict[str, Any], actor: str) -> None:
        text = options["format"] == "text"
        try:
            rows = bulk.read_rows(options["from_file"])
            if not options["dry_run"]:
                self._set_up_public(actor, quiet=not text)
            progress = RowProgress(
                self.stdout, self.style, total=len(rows), verbosity=options["verbosity"]
            )

            def on_result(result: bulk.RowResult) -> None:
                if text:
                    progress.row(_row_line(result), failed=not result.ok)

            report = bulk.create_from_rows(
                rows,
                actor=actor,
                source=options["from_file"],
                dry_run=options["dry_run"],
                override_hourly_limit=options["override_hourly_limit"],
                on_result=on_result,
                tenant_type=options["tenant_type"],
            )
        except TenancyError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from exc
        except KeyboardInterrupt:
            raise CommandError(
                "Interrupted: the tenant in progress was rolled back, the rows before it are "
                "done; a re-run creates the rest (and reports those as existing).",
                returncode=130,
            ) from None
        if text:
            self._write_summary(report, override=options["override_hourly_limit"])
        else:
            self.stdout.write(json.dumps(_report_json(report), indent=2))
        if report.exit_code != EXIT_OK:
            sys.exit(report.exit_code)

    def _write_summary(self, report: bulk.BulkReport, *, override: bool) -> None:
        counts = report.summary
        made = (
            f"would create {counts[bulk.WOULD_CREATE]}"
            if report.dry_run
            else f"created {counts[bulk.CREATED]}"
        )
        line = (
            f"{len(report.results)} row(s) of {report.source}: {made}, already existed "
            f"{counts[bulk.EXISTS]}, failed {counts[bulk.FAILED]}, not created (hourly limit) "
            f"{counts[bulk.NOT_CREATED]}."
        ) + (" Dry run: nothing was changed." if report.dry_run else "")
        style = self.style.SUCCESS if report.exit_code == EXIT_OK else self.style.ERROR
        self.stdout.write(style(line))
        if report.limit_message:
            self.stdout.write(self.style.WARNING(report.limit_message))
            if not override:
                self.stdout.write(f"{OVERRIDE_FLAG} creates past it (audited).")
        past = sum(r.past_hourly_limit for r in report.results)
        if past:
            self.stdout.write(self.style.WARNING(_past_limit_note(past)))

    def _set_up_public(self, actor: str, *, quiet: bool) -> None:
        """A fresh database gets its public schema first (as `migrate_tenants --public`)."""
        report = set_up_public_if_missing(actor)
        if report is None:
            return
        if report.exit_code != EXIT_OK:
            problems = report.refused + [f"{r.schema}: {r.error}" for r in report.failed]
            raise CommandError(
                "The public schema is not set up, and setting it up failed (nothing of the "
                "tenant was created):\n  " + "\n  ".join(problems or ["see migrate_tenants"]),
                returncode=report.exit_code,
            )
        if not quiet:
            applied = sum(len(r.versions) for r in report.results)
            self.stdout.write(
                f"Set up the public schema first (a fresh database): its tables and "
                f"{applied} public migration(s), as `migrate_tenants --public` does."
            )


def _row_line(result: bulk.RowResult) -> str:
    """One row's outcome, starting with its line number and org id."""
    head = f"line {result.line}: {result.org_id or '(no org id)'}"
    if result.status == bulk.CREATED:
        path = "claimed from the pool" if result.path == "pool" else "built directly"
        return f"{head}: created (schema {result.schema}, {path})"
    if result.status == bulk.WOULD_CREATE:
        return f"{head}: would create (schema {result.schema})"
    if result.status == bulk.EXISTS:
        note = f"; {result.reason}" if result.reason else ""
        return f"{head}: exists (schema {result.schema}){note}"
    if result.status == bulk.NOT_CREATED:
        return f"{head}: NOT CREATED: {result.reason}"
    return f"{head}: FAILED: {result.reason}"


def _report_json(report: bulk.BulkReport) -> dict[str, Any]:
    return {
        "source": report.source,
        "dry_run": report.dry_run,
        "summary": report.summary,
        "limit_message": report.limit_message,
        "exit_code": report.exit_code,
        "rows": [dataclasses.asdict(r) for r in report.results],
    }


def _past_limit_note(count: int) -> str:
    return (
        f"{count} tenant(s) created past the hourly limit ({OVERRIDE_FLAG}): audited as "
        "tenant.hourly_limit_override."
    )


def _path(created: Any) -> str:
    """Which way the tenant was made: a claimed pool schema, or built directly (and why)."""
    if created.path == "pool":
        text = f"claimed from the pool ({created.pool_schema})"
    else:
        text = "built directly"
    return text + "".join(f"; {note}" for note in created.pool_notes)
