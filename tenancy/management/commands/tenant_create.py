"""Create a tenant: schema, every tenant migration, role, registry row, domain, audit."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenancy.engine.errors import EXIT_OK, TenancyError
from tenancy.engine.names import split_tags, validate_org_id, validate_tags
from tenancy.management.actor import cli_actor
from tenancy.services.runs import set_up_public_if_missing
from tenancy.services.tenants import create_tenant


class Command(BaseCommand):
    help = (
        "Create a tenant for an Auth0 organization (org_ followed by letters, digits and "
        "underscores). Its schema is tenant_<org id in lower case>; the schema, every tenant "
        "migration, the ledger rows, the tenant's roles, its registry row, its domain and an "
        "audit row are created in one transaction (with its --tag tags): on any error "
        "nothing is left behind. On a fresh database the public schema is set up first (as "
        "`migrate_tenants --public`)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("org_id", help="Auth0 organization id, e.g. org_ayHu5XNaTNHMasO5")
        parser.add_argument("--name", help="Organization name (default: the org id).")
        parser.add_argument(
            "--tag",
            action="append",
            default=[],
            metavar="TAG",
            help="A tag of the tenant, e.g. enterprise (repeatable, or comma-separated; "
            "`tenant_tag` changes them later).",
        )
        parser.add_argument("--actor", help="Who to record in audit_logs (default: OS user).")
        parser.add_argument("--format", choices=["text", "json"], default="text")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = options["actor"] or cli_actor()
        try:
            # A bad id or tag changes nothing, not even public.
            validate_org_id(options["org_id"])
            tags = validate_tags(tag for value in options["tag"] for tag in split_tags(value))
            self._set_up_public(actor, quiet=options["format"] == "json")
            created = create_tenant(options["org_id"], options["name"], actor=actor, tags=tags)
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
            self.stdout.write(f"   Took: {created.elapsed_ms} ms")
            self.stdout.write(f"   Path: {_path(created)}")

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


def _path(created: Any) -> str:
    """Which way the tenant was made: a claimed pool schema, or built directly (and why)."""
    if created.path == "pool":
        text = f"claimed from the pool ({created.pool_schema})"
    else:
        text = "built directly"
    return text + "".join(f"; {note}" for note in created.pool_notes)
