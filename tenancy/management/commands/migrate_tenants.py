"""The seed's migration runner: public, then every tenant schema."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenancy.engine.errors import EXIT_FAILED, EXIT_OK, EXIT_PENDING, Interrupted, TenancyError
from tenancy.engine.names import schema_for_org
from tenancy.management import rollout_cli
from tenancy.management.actor import cli_actor
from tenancy.management.interrupts import interruptible
from tenancy.management.prompts import confirm_schema

if TYPE_CHECKING:
    from tenancy.management.output import Progress


def _import_services() -> None:
    """The engine and services, imported when the command runs, not for ``--help``
    (psycopg, the executor and the services are most of a command's start-up)."""
    global conf, admin_links, recovery, runs, BACKUP_NOTE, check_creation, create_tenant  # noqa: PLW0603
    global Progress, write_json, write_plan  # noqa: PLW0603
    from tenancy import conf
    from tenancy.management.output import Progress, write_json, write_plan
    from tenancy.services import admin_links, recovery, runs
    from tenancy.services.backups import BACKUP_NOTE
    from tenancy.services.tenants import check_creation, create_tenant


EPILOG = """
verbs (one at a time; none means migrate): --rollback, --fake, --baseline,
--accept-checksum, --reset-tracking, --create-tenant. Each honours --dry-run (print what
it would do, change nothing) and --check (the same, exit 2 when it would change something).

exit codes:
  0  done (or, with --dry-run/--check, nothing to do)
  1  a schema failed, or the command could not run (bad or conflicting arguments, a file
     broken by the refusal rules); with --dry-run/--check also: a registered tenant's
     schema is missing, or a schema's last attempt failed
  2  --check: something is pending (or the verb would change something)
  3  the ledger and the files disagree (drift, missing file, out-of-order file): nothing applied
  130, 143  stopped by SIGINT (Ctrl-C) or SIGTERM: the schema in progress was rolled back
            (or, in a step outside a transaction, left for the re-run to adopt, as said),
            the run is recorded as interrupted, and a re-run finishes the work
"""


# Up to this many failed schemas are listed one by one; beyond it, one line per distinct
# error, naming its schemas (200 schemas failing alike make one line, not 200).
LISTED_ONE_BY_ONE = 5


def _failure_lines(failed: list) -> list[str]:
    if len(failed) <= LISTED_ONE_BY_ONE:
        return [f"  {r.schema}: {r.error}" for r in failed]
    by_error: dict[str, list[str]] = {}
    for r in failed:
        by_error.setdefault(r.error or "failed", []).append(r.schema)
    return [
        f"  {len(schemas)} schema(s) ({runs.names(schemas)}): {error}"
        for error, schemas in by_error.items()
    ]


# The verbs of the command: at most one per invocation.
VERBS = ("rollback", "fake", "baseline", "accept_checksum", "reset_tracking", "create_tenant")
VALUED_VERBS = ("rollback", "baseline", "accept_checksum", "create_tenant")


# Options that change how one verb works, and the verbs they belong to.
OPTION_VERBS = {
    "fail_fast": ("migrate",),
    "allow_missing": ("migrate", "fake"),
    "allow_out_of_order": ("migrate", "fake"),
    "backup_dir": ("migrate",),
}


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _verb_flag(verb: str) -> str:
    return "a migrate run (no verb)" if verb == "migrate" else _flag(verb)


def _would(o: dict, changes: bool) -> int:
    """The exit code of a verb's dry run: 2 under --check when it would change something."""
    return EXIT_PENDING if (o["check"] and changes) else EXIT_OK


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
        parser.epilog = EPILOG + rollout_cli.EPILOG
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        usage_error = parser.error

        def error(message: str) -> None:
            # argparse exits 2 on bad arguments, but 2 means "pending" to a CI gate here.
            try:
                usage_error(message)
            except SystemExit:
                sys.exit(EXIT_FAILED)

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
            "--backup-dir",
            metavar="DIR",
            help="Back up each schema with pending files (pg_dump, docs/backups.md) into a "
            "new set in DIR right before its files run; a failed backup fails that schema.",
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
            "--actor",
            default=None,
            help="Who to record in audit_logs (default: cli:<your OS user name>).",
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
        rollout_cli.add_arguments(parser)

    def handle(self, *args: Any, **o: Any) -> None:
        _import_services()
        actor = o["actor"] or cli_actor()
        verb = self._verb(o)
        try:
            with interruptible():
                code = self._run(verb, o, actor)
        except Interrupted as stop:
            self.stderr.write(
                f"Interrupted (signal {stop.signum}): {stop.what_happened()}. The run is "
                "recorded as interrupted; run the command again to finish."
            )
            sys.exit(stop.exit_code)
        if code:
            sys.exit(code)

    def _run(self, verb: str, o: dict, actor: str) -> int:
        try:
            if verb in rollout_cli.ROLLOUT_VERBS:
                code = rollout_cli.run(self, verb, o, actor)
            elif verb == "create_tenant":
                code = self._create(o, actor)
            else:
                only = [self._schema(t) for t in o["tenant"]] or None
                public, tenants = o["public"], o["tenants"]
                if not (public or tenants or only):
                    public = tenants = True
                code = getattr(self, f"_{verb}")(o, public, tenants, only, actor)
        except TenancyError as e:
            raise CommandError(str(e), returncode=e.exit_code) from e
        return code

    def _verb(self, o: dict) -> str:
        """The one verb asked for (migrate when none); two at once, an empty value or an
        option that belongs to another verb is a usage error (exit 1)."""
        chosen = [v for v in VERBS if o[v] not in (None, False)]
        if len(chosen) > 1:
            self._usage(
                f"{' and '.join(_flag(v) for v in chosen)} cannot be combined: "
                "each is a verb of its own; run them one after the other."
            )
        for v in VALUED_VERBS:
            if o[v] is not None and not o[v].strip():
                self._usage(f"{_flag(v)} needs a value.")
        if any(not t.strip() for t in o["tenant"]):
            self._usage("--tenant needs a schema name or an Auth0 org id.")
        verb = chosen[0] if chosen else "migrate"
        rollout = rollout_cli.verb_of(o)
        if rollout and chosen:
            self._usage(f"{_flag(verb)} and a rollout cannot be combined.")
        verb = rollout or verb
        for option, verbs in OPTION_VERBS.items():
            if o[option] and verb not in verbs:
                self._usage(
                    f"{_flag(option)} goes with {' or '.join(_verb_flag(v) for v in verbs)} "
                    f"only, not with {_verb_flag(verb)}."
                )
        if o["backup_dir"] is not None and (o["dry_run"] or o["check"]):
            self._usage("--backup-dir goes with a run that applies files, not --dry-run/--check.")
        if o["name"] is not None and verb != "create_tenant":
            self._usage("--name goes with --create-tenant only.")
        if verb == "create_tenant" and (o["public"] or o["tenants"] or o["tenant"]):
            self._usage("--create-tenant takes no --public, --tenants or --tenant.")
        return verb

    def _usage(self, message: str) -> None:
        raise CommandError(message, returncode=EXIT_FAILED)

    # -- verbs ---------------------------------------------------------------------------
    def _schema(self, value: str) -> str:
        return schema_for_org(value) if value.startswith("org_") else value

    def _migrate(self, o: dict, public: bool, tenants: bool, only: list | None, actor: str) -> int:
        dry = o["dry_run"] or o["check"]
        text = o["format"] == "text"
        progress: Progress | None = None

        def on_plan(plan: Any, jobs: int) -> None:
            nonlocal progress
            if text and not dry:
                progress = Progress(
                    self.stdout,
                    self.style,
                    total=len(plan.with_pending),
                    verbosity=o["verbosity"],
                    show_sql=o["verbose"],
                )
                capped = (
                    f" (--jobs {o['jobs']} capped: the server has too few connections free)"
                    if jobs < o["jobs"]
                    else ""
                )
                if plan.with_pending and o["verbosity"] >= 1:
                    self.stdout.write(
                        f"Applying {plan.pending_count} migration(s) to "
                        f"{len(plan.with_pending)} schema(s) with {jobs} worker(s){capped}"
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
            backup_dir=o["backup_dir"],
        )
        if not text:
            write_json(self.stdout, report.to_dict())
            return report.exit_code
        if report.django_migrations and o["verbosity"] >= 1:
            verb = "pending" if dry else "applied"
            count = (
                "all (a fresh database: the tenancy tables do not exist yet)"
                if report.django_migrations == runs.ALL_PENDING
                else len(report.django_migrations)
            )
            self.stdout.write(f"Django migrations {verb} in public: {count}")
        self._refusals(report)
        if report.refused:
            return report.exit_code
        for problem in report.problems:
            self.stderr.write(self.style.ERROR(f"Problem: {problem}"))
        if dry:
            write_plan(
                self.stdout,
                self.style,
                report.plan,
                show_sql=o["verbose"],
                database=conf.conninfo()["dbname"],
            )
            self._pool(report, o)
            return report.exit_code
        self._summary(report)
        self._pool(report, o)
        if o["verbosity"] >= 1:
            for r in report.results:
                for note in r.notes:
                    if note.startswith(BACKUP_NOTE):
                        self.stdout.write(f"{r.schema}: {note}")
        return report.exit_code

    def _refusals(self, report: runs.RunReport) -> None:
        for warning in report.warnings:
            self.stderr.write(self.style.WARNING(f"Lint: {warning}"))
        for reason in report.refused:
            self.stderr.write(self.style.ERROR(f"Refused: {reason}"))
        if report.refused:
            self.stderr.write("Nothing was applied.")

    def _pool(self, report: runs.RunReport, o: dict) -> None:
        """The warm pool's schemas, apart from the tenants (they are no tenants)."""
        for r in report.pool:
            line = f"Pool schema {r.schema}: {r.status}"
            if r.versions:
                line += f" ({', '.join(r.versions)})"
            if r.error:
                line += f": {r.error}"
            if r.status in ("failed", "discarded"):
                self.stderr.write(self.style.WARNING(line))
            elif o["verbosity"] >= 1:
                self.stdout.write(line)
        for note in report.notes:
            if note.startswith("pool "):
                self.stderr.write(self.style.WARNING(note))

    def _summary(self, report: runs.RunReport) -> None:
        done = [r for r in report.results if r.status == "succeeded"]
        if not report.results:
            self.stdout.write(self.style.SUCCESS("No pending migrations"))
            return
        applied = sum(len(r.versions) for r in done)
        line = f"Run {report.run_id}: applied {applied} migration(s) to {len(done)} schema(s)"
        if not report.failed:
            self.stdout.write(self.style.SUCCESS(line))
            return
        page = admin_links.on_page(admin_links.run_page(report.run_id))
        self.stdout.write(self.style.WARNING(f"{line}; {len(report.failed)} failed{page}"))
        self.stderr.write(self.style.ERROR(f"{len(report.failed)} schema(s) failed:"))
        for text in _failure_lines(report.failed):
            self.stderr.write(self.style.ERROR(text))

    def _fake(self, o: dict, public: bool, tenants: bool, only: list | None, actor: str) -> int:
        return self._migrate(o, public, tenants, only, actor)

    def _rollback(self, o: dict, public: bool, tenants: bool, only: list | None, actor: str) -> int:
        dry = o["dry_run"] or o["check"]
        show = o["verbose"] or dry

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
            dry_run=dry,
            jobs=o["jobs"],
            actor=actor,
            on_event=on_event,
        )
        if o["format"] == "json":
            write_json(self.stdout, report.to_dict())
            return report.exit_code
        self._refusals(report)
        if report.refused:
            return report.exit_code
        for note in report.notes:
            self.stdout.write(note)
        if not report.results:
            self.stdout.write(
                f"Nothing to roll back: no schema has migration {o['rollback']} or later recorded."
            )
        for r in report.results:
            if r.failed:
                self.stderr.write(self.style.ERROR(f"{r.schema}: FAILED: {r.error}"))
            else:
                verb = "would roll back" if dry else "rolled back"
                self.stdout.write(f"{r.schema}: {verb} {', '.join(r.versions)}")
        if dry and not report.exit_code:
            return _would(o, bool(report.results))
        return report.exit_code

    def _accept_checksum(
        self, o: dict, public: bool, tenants: bool, only: list | None, actor: str
    ) -> int:
        version, public_only = o["accept_checksum"], o["public"]
        if o["dry_run"] or o["check"]:
            migration, schemas = recovery.drifted(version, public=public_only, only=only)
            if not schemas:
                self.stdout.write(f"Nothing to accept: {migration.name} shows no drift.")
                return 0
            self.stdout.write(
                f"Would accept the new checksum of {migration.name} in {len(schemas)} "
                f"schema(s): {', '.join(schemas[:10])}{' …' if len(schemas) > 10 else ''}"
            )
            return _would(o, True)
        accepted = recovery.accept_checksum(version, public=public_only, only=only, actor=actor)
        self.stdout.write(
            f"Accepted the new checksum of {accepted.name} in {accepted.rows} schema(s)."
        )
        return 0

    def _reset_tracking(
        self, o: dict, public: bool, tenants: bool, only: list | None, actor: str
    ) -> int:
        if not only or len(only) != 1:
            self._usage("--reset-tracking needs exactly one --tenant SCHEMA.")
        schema = only[0]
        if o["dry_run"] or o["check"]:
            rows = recovery.tracked_rows(schema)
            self.stdout.write(f"Would delete {rows} ledger row(s) of {schema}.")
            return _would(o, rows > 0)
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
        dry = o["dry_run"] or o["check"]
        report = recovery.baseline(
            o["baseline"], public=public, tenants=tenants, only=only, actor=actor, dry_run=dry
        )
        if o["format"] == "json":
            write_json(self.stdout, report.to_dict())
            return report.exit_code
        self._refusals(report)
        if report.refused:
            return report.exit_code
        if dry:
            count = report.plan.pending_count if report.plan else 0
            self.stdout.write(
                f"Would record {count} migration(s) as applied (not run) up to {o['baseline']}."
            )
            return _would(o, count > 0) if not report.problems else report.exit_code
        recorded = sum(len(r.versions) for r in report.results)
        self.stdout.write(
            f"Recorded {recorded} migration(s) as applied (not run) up to {o['baseline']}."
        )
        return report.exit_code

    def _create(self, o: dict, actor: str) -> int:
        org_id, name = o["create_tenant"].strip(), o["name"]
        if o["dry_run"] or o["check"]:
            plan = check_creation(org_id, name)
            self.stdout.write(
                f"Would create tenant {plan.name}: schema {plan.schema}, "
                f"{len(plan.migrations_applied)} migration(s), role {plan.role}, "
                f"domain {plan.domain}"
            )
            return _would(o, True)
        created = create_tenant(org_id, name, actor=actor)
        path = f", claimed from the pool ({created.pool_schema})" if created.pool_schema else ""
        self.stdout.write(
            self.style.SUCCESS(
                f"Created tenant {created.name}: schema {created.schema}, "
                f"{len(created.migrations_applied)} migration(s), role {created.role}, "
                f"domain {created.domain} ({created.elapsed_ms} ms{path})"
            )
        )
        return 0
