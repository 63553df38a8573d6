"""Show, fill or drain the warm pool of ready tenant schemas (tenancy.services.pool)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenancy.engine.errors import TenancyError
from tenancy.management.actor import cli_actor
from tenancy.management.options import add_actor, add_format
from tenancy.services import pool

# ``--fill`` without N: fill to the setting.
_SETTING = -1


def _count(value: str) -> int:
    """N of ``--fill N``: a whole number, 0 or more (argparse says so in one line)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"N must be a whole number, not {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"N must be 0 or more, not {number}")
    return number


class Command(BaseCommand):
    help = (
        "Show the warm pool of tenant schemas built ahead of creation (TENANCY_POOL_SIZE); "
        "--fill [N] builds entries up to N (default the setting), --drain drops them with "
        "their roles and ledger rows. tenant_create claims an entry when one is usable."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        verbs = parser.add_mutually_exclusive_group()
        verbs.add_argument(
            "--fill",
            nargs="?",
            const=_SETTING,  # an int: argparse converts a str const with type
            type=_count,
            metavar="N",
            help="Build pool schemas until N are ready (default: TENANCY_POOL_SIZE).",
        )
        verbs.add_argument(
            "--drain", action="store_true", help="Drop every pool schema and its roles."
        )
        add_format(parser)
        add_actor(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        actor = options["actor"] or cli_actor()
        try:
            if options["fill"] is not None:
                self._fill(options, actor)
            elif options["drain"]:
                self._drain(options, actor)
            else:
                self._show(options)
        except TenancyError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from exc

    def _show(self, options: dict[str, Any]) -> None:
        state = pool.status()
        if options["format"] == "json":
            self.stdout.write(json.dumps(state.to_dict(), indent=2))
            return
        ready = sum(e.usable for e in state.entries)
        self.stdout.write(f"Pool: {ready} ready of {state.size} (TENANCY_POOL_SIZE)")
        if state.off:
            self.stdout.write(self.style.WARNING(f"Creations do not claim: {state.off}"))
        for e in state.entries:
            notes = [f"{e.applied} applied"]
            if e.state != "ready":
                notes.append("never claimed: the next fill or drain drops it")
            elif e.pending:
                notes.append(f"{len(e.pending)} pending (applied at claim)")
            if e.drift:
                notes.append("drift: " + ", ".join(e.drift))
            if e.missing:
                notes.append("missing files: " + ", ".join(e.missing))
            if not e.schema_exists:
                notes.append("schema missing")
            line = f"  {e.schema}  {e.state}  {e.created_at:%Y-%m-%d %H:%M:%S}  {', '.join(notes)}"
            self.stdout.write(line if e.usable else self.style.WARNING(line))

    def _fill(self, options: dict[str, Any], actor: str) -> None:
        target = None if options["fill"] == _SETTING else options["fill"]
        report = pool.fill(target, actor=actor)
        if options["format"] == "json":
            self.stdout.write(json.dumps(report.to_dict(), indent=2))
            return
        if report.off:
            self.stdout.write(self.style.WARNING(f"Nothing built: {report.off}"))
        elif pool.pool_size() == 0:
            self.stdout.write(
                self.style.WARNING(
                    "TENANCY_POOL_SIZE is 0 (no pool): creations do not claim until it is set"
                    + ("" if target else "; --fill N builds N anyway")
                )
            )
        for name in report.swept:
            self.stdout.write(f"Dropped {name} (broken or left without its pool row)")
        per = f", {sum(report.build_ms) // len(report.build_ms)} ms each" if report.build_ms else ""
        self.stdout.write(
            self.style.SUCCESS(
                f"Built {len(report.built)} pool schema(s) for a pool of {report.target}"
                f" ({report.elapsed_ms} ms{per})"
            )
        )

    def _drain(self, options: dict[str, Any], actor: str) -> None:
        dropped = pool.drain(actor=actor)
        if options["format"] == "json":
            self.stdout.write(json.dumps({"dropped": dropped}, indent=2))
            return
        self.stdout.write(self.style.SUCCESS(f"Dropped {len(dropped)} pool schema(s)"))
        if options["verbosity"] >= 2:
            for name in dropped:
                self.stdout.write(f"  {name}")
