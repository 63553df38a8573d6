"""Which tenants each stage of a rollout takes: the registry's tenants, filtered by a
stage's selection (rollout_policy.py), each tenant in one stage only, the last stage
taking the rest. Resolved once, when the rollout starts; the record keeps the lists."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

import psycopg

from tenancy.engine import citus
from tenancy.services import tenant_types
from tenancy.services.rollout_policy import Amount, Stage


@dataclass(frozen=True)
class Candidate:
    schema: str
    tags: frozenset[str]
    status: str
    created_at: datetime
    tenant_type: str | None = None  # multi-type tenants (None: the first type)
    size: int = 0  # bytes, read only when a stage orders by size
    node: str | None = None  # a Citus worker, read only when a stage selects by node


def candidates(conn: psycopg.Connection, stages: list[Stage]) -> list[Candidate]:
    """Every registered tenant, in the registry's order (oldest first)."""
    rows = conn.execute(
        "SELECT schema_name, tags, status, created_at, tenant_type FROM public.tenant_registry "
        "WHERE schema_name <> 'public' ORDER BY created_at, id"
    ).fetchall()
    found = [
        Candidate(r[0], frozenset(r[1] or ()), r[2], r[3], tenant_types.registered(r[4]))
        for r in rows
    ]
    wanted = [s.selection for s in stages]
    if any(str(w.get("order", "")).lstrip("-") == "size" for w in wanted):
        sizes = _sizes(conn, [c.schema for c in found])
        found = [replace(c, size=sizes.get(c.schema, 0)) for c in found]
    if any("node" in w for w in wanted):
        nodes = citus.tenant_nodes(conn)
        found = [replace(c, node=nodes.get(c.schema)) for c in found]
    return found


def _sizes(conn: psycopg.Connection, schemas: list[str]) -> dict[str, int]:
    rows = conn.execute(
        "SELECT n.nspname, coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint "
        "FROM pg_namespace n LEFT JOIN pg_class c "
        "ON c.relnamespace = n.oid AND c.relkind IN ('r', 'm', 'p') "
        "WHERE n.nspname = ANY(%s) GROUP BY 1",
        [schemas],
    ).fetchall()
    return {schema: int(size) for schema, size in rows}


def resolve(stages: list[Stage], found: list[Candidate]) -> list[tuple[Stage, list[str]]]:
    """Each stage with its schemas. A repeated stage becomes ``name 1``, ``name 2``, ...
    while it selects tenants; the last stage takes what is left (dropped when nothing is
    and an earlier stage took any). Unknown schemas named by a stage are refused by the
    caller's run, as any unknown schema is."""
    left = list(found)
    resolved: list[tuple[Stage, list[str]]] = []
    for index, stage in enumerate(stages):
        last = index == len(stages) - 1
        rounds = 0
        while True:
            taken = left if last else _select(stage.selection, left, len(found))
            name = f"{stage.name} {rounds + 1}" if stage.repeat else stage.name
            if taken or not stage.repeat:
                resolved.append((replace(stage, name=name), [c.schema for c in taken]))
            chosen = {c.schema for c in taken}
            left = [c for c in left if c.schema not in chosen]
            rounds += 1
            if not (stage.repeat and taken and left):
                break
    if len(resolved) > 1 and not resolved[-1][1]:
        resolved.pop()
    return resolved


def _select(selection: dict[str, Any], left: list[Candidate], fleet: int) -> list[Candidate]:
    named = selection.get("schemas")
    taken = [c for c in left if _matches(selection, c)]
    if named:
        order = {schema: i for i, schema in enumerate(named)}
        taken = sorted((c for c in taken if c.schema in order), key=lambda c: order[c.schema])
    taken = _ordered(taken, str(selection.get("order", "")))
    if "count" in selection:
        taken = taken[: int(selection["count"])]
    elif "percent" in selection:
        taken = taken[: Amount(int(selection["percent"]), percent=True).of(fleet)]
    return taken


def _matches(selection: dict[str, Any], c: Candidate) -> bool:
    if "tags" in selection and not set(selection["tags"]) <= c.tags:
        return False
    if "status" in selection and c.status != selection["status"]:
        return False
    if "type" in selection and c.tenant_type != selection["type"]:
        return False
    if "node" in selection and c.node != selection["node"]:
        return False
    created = c.created_at.date()
    if "created_before" in selection and created >= date.fromisoformat(
        str(selection["created_before"])
    ):
        return False
    return not (
        "created_after" in selection
        and created <= date.fromisoformat(str(selection["created_after"]))
    )


def _ordered(taken: list[Candidate], order: str) -> list[Candidate]:
    keys = {
        "created": lambda c: c.created_at,
        "size": lambda c: c.size,
        "schema": lambda c: c.schema,
    }
    key = keys.get(order.lstrip("-"))
    return sorted(taken, key=key, reverse=order.startswith("-")) if key else taken
