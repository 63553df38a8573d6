"""django-tenants' migrate_schemas, extended: after Django's migrations it brings the SQL
migrations of migrations_sql/ up to date too, so a developer runs one command."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser
from django_tenants.management.commands.migrate_schemas import MigrateSchemasCommand

from tenancy.engine.errors import RunError
from tenancy.management.actor import cli_actor
from tenancy.services import runs


def _tenant_apps_have_migrations() -> bool:
    from django.apps import apps
    from django.db.migrations.loader import MigrationLoader

    labels = {c.label for c in apps.get_app_configs() if c.name in settings.TENANT_APPS}
    return bool(labels & MigrationLoader(None, ignore_no_migrations=True).migrated_apps)


class Command(MigrateSchemasCommand):
    help = (
        "Django's migrations for the public schema (and tenant apps, if any have migrations), "
        "then the SQL migrations of migrations_sql/ for public and every tenant."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--no-sql",
            action="store_false",
            dest="sql_migrations",
            help="Only Django's migrations; skip migrations_sql/.",
        )
        parser.add_argument(
            "--jobs", type=int, default=1, help="Workers for the SQL migrations of tenant schemas."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # Tenant schemas get their tables from SQL files; when no tenant app has Django
        # migrations, visiting each schema for Django would only cost ~90 ms per tenant
        # (and would need the tenant's search_path at session level, which our backend
        # never sets: tenancy/postgresql_backend).
        if not _tenant_apps_have_migrations():
            options["shared"] = True
        super().handle(*args, **options)
        if not options.get("sql_migrations", True):
            return
        schema = options.get("schema_name")
        try:
            report = runs.migrate(
                public=not schema or schema == "public",
                tenants=not schema or schema != "public",
                only=[schema] if schema and schema != "public" else None,
                jobs=options.get("jobs") or 1,
                actor=cli_actor(),
            )
        except RunError as exc:
            raise CommandError(str(exc)) from exc
        for reason in report.refused:
            self.stderr.write(self.style.ERROR(f"Refused: {reason}"))
        for r in report.failed:
            self.stderr.write(self.style.ERROR(f"{r.schema}: FAILED: {r.error}"))
        if options.get("verbosity", 1) >= 1:
            applied = sum(len(r.versions) for r in report.results)
            self.stdout.write(
                f"SQL migrations: {applied} applied in "
                f"{sum(bool(r.versions) for r in report.results)} schema(s)"
            )
        if report.exit_code:
            raise CommandError("SQL migrations did not complete.", returncode=report.exit_code)
