"""What the tenant commands share: their arguments and the typed-schema-name confirmation."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser


def add_tenant_arguments(parser: CommandParser, *, confirm: bool = False) -> None:
    parser.add_argument("tenant", help="Auth0 org id (org_…) or schema name (tenant_org_…)")
    if confirm:
        add_noinput_argument(parser)
    parser.add_argument("--reason", help="Why; recorded in audit_logs.")
    parser.add_argument("--actor", help="Who to record in audit_logs (default: OS user).")


def add_noinput_argument(parser: CommandParser) -> None:
    """Django's convention: ``--noinput`` sets ``interactive`` to False."""
    parser.add_argument(
        "--noinput",
        "--no-input",
        action="store_false",
        dest="interactive",
        help="Do not ask for confirmation (for scripts).",
    )


def confirm_schema(command: BaseCommand, schema: str, warning: str, verb: str) -> str:
    """Print ``warning``, ask for the schema name and return it; refuse on a mismatch (and
    when there is no terminal to answer: a script must say --noinput)."""
    command.stdout.write(warning)
    try:
        answer = input(f"Type the schema name ({schema}) to confirm: ").strip()
    except EOFError:
        answer = ""
    if answer != schema:
        raise CommandError(f"{verb} cancelled: the schema name did not match.")
    return answer
