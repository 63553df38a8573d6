"""Change a tenant's tags: add and remove some, or set them all; audited."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenancy.engine.errors import TenancyError
from tenancy.engine.names import split_tags
from tenancy.management.actor import cli_actor
from tenancy.management.options import add_actor
from tenancy.services.tenants import TagChange, set_tenant_tags

TAGS_HELP = "comma-separated, repeatable"


class Command(BaseCommand):
    help = (
        "Change a tenant's tags (labels such as enterprise, eu, beta that tenant_list and "
        "rollouts select tenants by): --add and --remove some, or --set them all (--set '' "
        "removes every tag). A tag is lower-case letters, digits, '_', '.' and '-', starting "
        "with a letter or a digit, at most 64 characters. One transaction, audited as "
        "tenant.tags with the tags before and after; a change that changes nothing writes "
        "nothing. Exit 0 done, 1 refused (a bad tag, an unknown tenant: nothing changed)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant", help="Auth0 org id (org_…) or schema name (tenant_org_…)")
        parser.add_argument(
            "--add", action="append", metavar="TAGS", help=f"Tags to add ({TAGS_HELP})."
        )
        parser.add_argument(
            "--remove", action="append", metavar="TAGS", help=f"Tags to remove ({TAGS_HELP})."
        )
        parser.add_argument(
            "--set",
            action="append",
            metavar="TAGS",
            help=f"The tenant's tags, replacing the others ({TAGS_HELP}); not with --add or "
            "--remove.",
        )
        add_actor(parser)
        parser.add_argument(
            "--format", choices=["text", "json"], default="text", help="Output (default text)."
        )
        parser.add_argument(
            "--json",
            action="store_const",
            const="json",
            dest="format",
            help='Print {"schema": ..., "tags": [...]} (same as --format json).',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        add, remove, replace = (_tags(options[key]) for key in ("add", "remove", "set"))
        if replace is not None and (add or remove):
            raise CommandError("--set replaces every tag: use it without --add and --remove.")
        if replace is None and add is None and remove is None:
            raise CommandError("Nothing to change: give --add, --remove or --set.")
        try:
            change = set_tenant_tags(
                options["tenant"],
                add=add or [],
                remove=remove or [],
                replace=replace,
                actor=options["actor"] or cli_actor(),
            )
        except TenancyError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from exc
        if options["format"] == "json":
            self.stdout.write(json.dumps({"schema": change.schema, "tags": change.tags}))
        elif change.changed:
            self.stdout.write(self.style.SUCCESS(_summary(change)))
        elif options["verbosity"] >= 1:
            self.stdout.write(f"{_who(change)}: tags unchanged ({_shown(change.tags)}).")


def _tags(values: list[str] | None) -> list[str] | None:
    """An option's values (each comma-separated) as one list; None: the option not given."""
    if values is None:
        return None
    return [tag for value in values for tag in split_tags(value)]


def _who(change: TagChange) -> str:
    return f"{change.name} ({change.schema})"


def _shown(tags: list[str]) -> str:
    return ", ".join(tags) or "none"


def _summary(change: TagChange) -> str:
    return f"{_who(change)}: tags {_shown(change.before)} -> {_shown(change.tags)}"
