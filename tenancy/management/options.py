"""Options many commands share, declared once so that their help reads alike."""

from __future__ import annotations

import argparse


def add_actor(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--actor", help="Who to record in audit_logs (default: cli:<your OS user name>)."
    )


def add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="text for people (the default), json for scripts and CI (on stdout).",
    )
