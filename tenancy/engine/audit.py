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
