"""What a rollout checks after a stage, before the next one starts: ``tenant_verify`` on
the stage's schemas (their catalog against a reference built from the same files), and a
project's own check in each schema. The check runs as the tenant (its role and
search_path, in a transaction of its own), never with the engine's authority: it reads a
tenant's data, which a tenant defines."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.utils.module_loading import import_string

from tenancy.context import tenant_transaction
from tenancy.services import verify as verify_service

MAX_PROBLEMS = 20


class _Schema:
    """What ``tenant_transaction`` needs of a tenant: its schema name."""

    def __init__(self, schema_name: str) -> None:
        self.schema_name = schema_name


def problems(schemas: list[str], *, verify: bool, check: str | None) -> list[str]:
    found: list[str] = []
    if verify and schemas:
        report = verify_service.verify(schemas)
        for tenant in report.differing:
            found += [f"{tenant.schema}: {d}" for d in tenant.differences[:3]]
    if check:
        found += _user_check(schemas, check)
    return found[:MAX_PROBLEMS]


def _user_check(schemas: list[str], check: str) -> list[str]:
    """``check``: SQL whose first column must be true, or the dotted path of a callable
    taking the schema name and returning a truthy value (or raising)."""
    is_sql = " " in check.strip()
    func = None if is_sql else import_string(check)
    found = []
    for schema in schemas:
        try:
            with tenant_transaction(_Schema(schema)):
                ok = _sql_check(check) if func is None else func(schema)
        except Exception as exc:  # a project's check: any failure is its verdict
            found.append(f"{schema}: check {check!r} raised {type(exc).__name__}: {exc}")
            continue
        if not ok:
            found.append(f"{schema}: check {check!r} is not true")
    return found


def _sql_check(text: str) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(text)
        row = cursor.fetchone()
    return bool(row and row[0])
