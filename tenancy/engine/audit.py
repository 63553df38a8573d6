"""Rows of ``public.audit_logs``: who did what, to which schema, with what outcome."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb


def write(
    conn: psycopg.Connection,
    action: str,
    *,
    actor: str,
    tenant_schema: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        "INSERT INTO public.audit_logs (tenant_schema, action, actor, details) "
        "VALUES (%s, %s, %s, %s)",
        [tenant_schema, action, actor, Jsonb(details or {})],
    )


def write_per_schema(
    conn: psycopg.Connection,
    action: str,
    *,
    actor: str,
    rows: list[tuple[str, dict[str, Any]]],
) -> None:
    """One row per schema (``rows``: schema, details), in one pipelined statement: a run's
    per-tenant rows, so that a tenant's own history and a search by schema find them."""
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO public.audit_logs (tenant_schema, action, actor, details) "
            "VALUES (%s, %s, %s, %s)",
            [(schema, action, actor, Jsonb(details)) for schema, details in rows],
        )
