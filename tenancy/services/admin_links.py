"""Paths of admin pages, for messages that name the page resolving a problem (a refused
run names the Migrations page of the step it is about). The admin lives in the public
schema's URLconf; a project that does not mount it gets no link (``None``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import NoReverseMatch, reverse


def admin_path(name: str, *args: Any) -> str:
    """An admin page's path (``name`` without the ``admin:`` namespace)."""
    urlconf = getattr(settings, "PUBLIC_SCHEMA_URLCONF", settings.ROOT_URLCONF)
    return reverse(f"admin:{name}", args=list(args), urlconf=urlconf)


def step_page(scope: str, version: str) -> str | None:
    """The Migrations page of one public or tenant step, or None without the admin."""
    return _path_or_none("tenancy_migrations_step", scope, version)


def run_page(run_id: int | None) -> str | None:
    """A migration run's page, or None without the admin (or without a run)."""
    return None if run_id is None else _path_or_none("tenancy_migrationrun_change", run_id)


def _path_or_none(name: str, *args: Any) -> str | None:
    try:
        return admin_path(name, *args)
    except (NoReverseMatch, ImportError):
        return None


def on_page(path: str | None) -> str:
    """The words a message ends with to name a page, or nothing without one."""
    return f"; in the admin: {path}" if path else ""
