"""Lint the SQL migration files: the engine's refusal rules, the safety rules and squawk."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenancy import conf
from tenancy.engine import rules, source
from tenancy.engine.source import SCOPES, Migration, SourceError

_SAFETY = "\n".join(f"  {rule} ({level})" for rule, level in rules.SAFETY_RULES.items())
EPILOG = f"""
refusal rules (always errors; the engine will not run such a file):
  {", ".join(rules.REFUSAL_RULES)}
safety rules (severity from settings TENANCY["LINT"]; "-- lint: ignore <rule>" above a
statement or at the end of its first line silences one; the citus-* rules are off unless
--citus; migrate_tenants turns them on by itself on a Citus coordinator):
{_SAFETY}
  squawk:<rule> (warning): squawk's rules, except those ours replace or that do not fit
See docs/migrations.md.

exit codes:
  0  no errors (warnings allowed)
  1  an error in some file, or a path that is not a migration file or folder
  2  bad arguments
"""


class Command(BaseCommand):
    help = (
        "Check SQL migration files before they run: the engine's refusal rules, the safety "
        "rules (locks, rewrites, destructive changes) and squawk's. Without PATH, every file "
        "of the configured migrations folder (public/ and tenant/)."
    )
    requires_system_checks: list[str] = []  # a file check: no database, no app checks

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.epilog = EPILOG
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "paths",
            nargs="*",
            metavar="PATH",
            help="A migration file (its folder, public/ or tenant/, is its scope), a "
            "public/ or tenant/ folder, or a migrations folder holding them.",
        )
        parser.add_argument(
            "--format",
            choices=["text", "json"],
            default="text",
            help='text: "path:line: severity [rule] message" lines and a summary; json: '
            '{"problems": [...], "errors": n, "warnings": n}.',
        )
        parser.add_argument(
            "--citus",
            action="store_true",
            help="Check for a Citus cluster: the citus-* rules (what schema-based sharding "
            "refuses in a tenant schema) become errors, unless TENANCY['LINT'] sets them. "
            "migrate_tenants does this by itself on a Citus coordinator.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        migrations = collect(options["paths"])
        try:
            severities = conf.lint_severities()
            if options["citus"]:
                severities = rules.for_citus(severities)
            problems = rules.lint(migrations, severities)
        except rules.LintConfigError as exc:
            raise CommandError(f'TENANCY["LINT"]: {exc}') from exc
        problems = sorted((_shown(p) for p in problems), key=lambda p: (p.path, p.line))
        errors = sum(p.severity == rules.ERROR for p in problems)
        warnings = len(problems) - errors
        if options["format"] == "json":
            payload = {"problems": [asdict(p) for p in problems], "errors": errors}
            self.stdout.write(json.dumps({**payload, "warnings": warnings}, indent=2))
        else:
            for problem in problems:
                self.stdout.write(str(problem))
            self.stdout.write(_summary(errors, warnings, len(migrations)))
        if errors:
            sys.exit(1)


def collect(paths: Iterable[str]) -> list[Migration]:
    """The files to lint: the configured folder's, or those the paths name (once each)."""
    try:
        if not paths:
            root = conf.migrations_dir()
            return [
                m for scope in SCOPES for m in source.discover(root, scope, conf.source_limits())
            ]
        found: dict[Path, Migration] = {}
        for path in paths:
            for migration in _from_path(Path(path)):
                found.setdefault(migration.path.resolve(), migration)
        return list(found.values())
    except (SourceError, OSError) as exc:
        raise CommandError(str(exc)) from exc


def _from_path(path: Path) -> list[Migration]:
    if path.is_file():
        if path.parent.name not in SCOPES:
            raise CommandError(
                f"{path}: a migration file lives in a public/ or tenant/ folder, which is its "
                "scope; this one's folder is neither."
            )
        return [source.load(path, path.parent.name, conf.source_limits())]
    if path.is_dir():
        if any((path / scope).is_dir() for scope in SCOPES):
            return [
                m for scope in SCOPES for m in source.discover(path, scope, conf.source_limits())
            ]
        if path.name in SCOPES:
            return source.discover(path.parent, path.name, conf.source_limits())
        raise CommandError(
            f"{path}: neither a migrations folder (holding public/ or tenant/) nor a "
            "public/ or tenant/ folder."
        )
    raise CommandError(f"{path}: no such file or folder.")


def _shown(problem: rules.Problem) -> rules.Problem:
    """The problem with its path relative to the current folder when it lies inside it."""
    path = Path(problem.path)
    if not path.is_absolute():
        return problem
    try:
        return replace(problem, path=str(path.relative_to(Path.cwd())))
    except ValueError:
        return problem


def _summary(errors: int, warnings: int, files: int) -> str:
    def count(n: int, word: str) -> str:
        return f"{n} {word}{'' if n == 1 else 's'}"

    if not errors and not warnings:
        return f"No problems in {count(files, 'file')}."
    return f"{count(errors, 'error')}, {count(warnings, 'warning')} in {count(files, 'file')}."
