"""django-tenants' migrate_schemas, on the migration engine: Django's migrations of the
shared apps in ``public`` (Django's own executor, as before), then every tenant step
through the engine: the SQL files of migrations_sql/ and the Django migrations of the
tenant apps, compiled once and replayed in each schema (docs/migrations.md, "Django models
in tenant apps"). One command for a developer; the same plan ``migrate_tenants`` shows."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django_tenants.management.commands.migrate_schemas import MigrateSchemasCommand

from tenancy.engine.errors import TenancyError
from tenancy.management.actor import cli_actor


class Command(MigrateSchemasCommand):
    help = (
        "Django's migrations of the shared apps in the public schema, then the tenant steps "
        "(migrations_sql/ and the tenant apps' Django migrations) in public and every tenant "
        "schema, through the migration engine. APP_LABEL MIGRATION_NAME of a tenant app "
        "migrates every tenant schema to that migration (backwards too; 'zero' undoes all "
        "of the app). --fake records without running; --plan and --check change nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--no-sql",
            action="store_false",
            dest="sql_migrations",
            help="Only Django's migrations of the shared apps in public; no tenant step.",
        )
        parser.add_argument(
            "--jobs", type=int, default=None, help="Workers for the tenant schemas (default 1)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from tenancy.services import django_steps

        app_label = options.get("app_label")
        tenant_app = bool(app_label) and app_label in django_steps.tenant_app_labels()
        shared_app = bool(app_label) and app_label in django_steps.shared_app_labels()
        if app_label and not (tenant_app or shared_app):
            raise CommandError(f"App '{app_label}' is not in SHARED_APPS nor in TENANT_APPS.")
        looking = options.get("plan") or options.get("check_unapplied")
        if self._django_in_public(options, shared_app) and not looking:
            # Django's own migrate, in public, for the shared apps (the router keeps the
            # tenant apps out of public).
            public = {**options, "shared": True, "tenant": False}
            if not shared_app:
                public.update(app_label=None, migration_name=None)
            super().handle(*args, **public)
        if options.get("shared") or not options.get("sql_migrations", True):
            return
        if app_label and not tenant_app:
            return
        try:
            code = self._tenant_steps(options, app_label if tenant_app else None)
        except TenancyError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from exc
        if code:
            sys.exit(code)

    @staticmethod
    def _django_in_public(options: dict[str, Any], shared_app: bool) -> bool:
        """Django's migrate for public here, or (the usual case) the run's own public step,
        which runs it only when a shared app's migration is pending (a no-op costs no
        Django migrate): here for what only Django's migrate does (a shared app's target,
        --fake and its kin, --shared or --no-sql)."""
        if options.get("tenant"):
            return False
        django_only = ("fake", "fake_initial", "prune", "run_syncdb", "shared")
        return (
            shared_app
            or any(options.get(o) for o in django_only)
            or not options.get("sql_migrations", True)
        )

    def _tenant_steps(self, options: dict[str, Any], app_label: str | None) -> int:
        from tenancy.services import runs

        schema = options.get("schema_name")
        scope = {
            "public": not options.get("tenant") and (not schema or schema == "public"),
            "tenants": not schema or schema != "public",
            "only": [schema] if schema and schema != "public" else None,
        }
        migration = options.get("migration_name")
        looking = bool(options.get("plan") or options.get("check_unapplied"))
        actor = cli_actor()
        if options.get("tenant") and schema and not looking:
            from tenancy.services import tenant_model

            # django-tenants' TenantMixin.save() asks for the schema it just created.
            built = tenant_model.build_if_saved(schema, actor=actor)
            if built is not None:
                if self.verbosity >= 1:
                    steps = len(built.migrations_applied)
                    self.stdout.write(f"{schema}: built by tenancy ({steps} tenant step(s))")
                return 0
        jobs = options.get("jobs") or options.get("parallel") or 1
        if app_label and migration:
            back = runs.rollback(
                f"{app_label}.{migration}",
                public=False,
                tenants=True,
                only=scope["only"],
                dry_run=looking,
                jobs=jobs,
                actor=actor,
            )
            self._report(back)
            if back.exit_code or back.results or looking:
                return back.exit_code
        report = runs.migrate(
            **scope,
            dry_run=looking,
            check=bool(options.get("check_unapplied")),
            fake=bool(options.get("fake")),
            jobs=jobs,
            actor=actor,
        )
        self._report(report)
        if not looking:
            _send_schema_signals(report)
        return report.exit_code

    def _report(self, report: Any) -> None:
        for reason in report.refused:
            self.stderr.write(self.style.ERROR(f"Refused: {reason}"))
        for r in report.failed:
            self.stderr.write(self.style.ERROR(f"{r.schema}: FAILED: {r.error}"))
        if self.verbosity < 1:
            return
        if report.dry_run:
            for plan in report.plan.with_pending if report.plan else []:
                names = ", ".join(m.name for m in plan.pending)
                self.stdout.write(f"{plan.schema}: would apply {names}")
            for r in report.results:
                if r.versions:
                    self.stdout.write(f"{r.schema}: would roll back {', '.join(r.versions)}")
            return
        if getattr(report, "django_migrations", None):
            self.stdout.write(
                f"Django migrations applied in public: {len(report.django_migrations)}"
            )
        verb = "rolled back" if report.kind == "rollback" else "applied"
        changed = [r for r in report.results if r.versions]
        steps = sum(len(r.versions) for r in changed)
        self.stdout.write(f"Tenant steps: {steps} {verb} in {len(changed)} schema(s)")

    @property
    def verbosity(self) -> int:
        return int(getattr(self, "_verbosity", 1))

    def execute(self, *args: Any, **options: Any) -> Any:
        self._verbosity = int(options.get("verbosity", 1))
        return super().execute(*args, **options)


def _send_schema_signals(report: Any) -> None:
    """django-tenants' schema_pre_migration and schema_migrated, for each schema the run
    covered (in its order), as its executors send them: receivers a project has keep
    working. Sent after the engine's transactions, so a receiver never runs inside one."""
    from django_tenants.migration_executors.base import run_migrations
    from django_tenants.signals import schema_migrated, schema_pre_migration

    for plan in report.plan.schemas if report.plan else []:
        schema_pre_migration.send(run_migrations, schema_name=plan.schema)
        schema_migrated.send(run_migrations, schema_name=plan.schema)
