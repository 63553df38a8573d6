"""django-tenants' tenant_command, pooler-safe: the wrapped command runs in one tenant
transaction (``tenancy.context.tenant_transaction``: the tenant's web role, its search_path,
``SET LOCAL``), so ``tenant_command showmigrations --schema tenant_org_x`` reads that
schema's own ``django_migrations``, the record the engine writes with each Django step.

Schema changes do not go this way: the web role may not make them (``tenant_command
migrate`` fails with "permission denied"); ``migrate_schemas`` and ``migrate_tenants`` do.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management import get_commands, load_command_class
from django.core.management.base import BaseCommand, CommandError
from django_tenants.management.commands.tenant_command import Command as TenantCommand

from tenancy.context import tenant_transaction


class Command(TenantCommand):
    help = (
        "Run a Django command as one tenant (-s SCHEMA), inside a transaction that runs as "
        "the tenant's role with its search_path (showmigrations shows that schema's "
        "Django migrations). Schema changes go through migrate_schemas instead."
    )

    def run_from_argv(self, argv: list[str]) -> None:
        if len(argv) <= 2:
            return
        try:
            found = get_commands()[argv[2]]
        except KeyError as exc:
            raise CommandError(f"Unknown command: {argv[2]!r}") from exc
        command: Any = (
            found if isinstance(found, BaseCommand) else load_command_class(found, argv[2])
        )
        del argv[1]
        schema_parser = argparse.ArgumentParser(add_help=False)
        schema_parser.add_argument("-s", "--schema", dest="schema_name")
        namespace, rest = schema_parser.parse_known_args(argv)
        tenant = self.get_tenant_from_options_or_interactive(schema_name=namespace.schema_name)
        with tenant_transaction(tenant):
            command.run_from_argv(rest)
