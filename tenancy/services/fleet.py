"""The fleet at a glance, for monitoring (the Prometheus endpoint, ``tenancy/metrics.py``):
tenants by status, schemas pending, failed, drifted and missing, the warm pool's size, and
the last run. A constant number of queries whatever the number of tenants: the per-schema
states are ``reports.schema_states`` (the admin's overview reads the same), plus three.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import psycopg

from tenancy.services import reports, rollout_records
from tenancy.services.infrastructure import connect_ready

TENANT_STATUSES = ("active", "suspended", "archived")  # always reported, 0 when none
RUN_OUTCOMES = ("succeeded", "failed", "refused", "interrupted")


@dataclass
class ScopeCounts:
    """Schemas of one scope (public or tenant) by migration state."""

    schemas: int = 0
    with_pending: int = 0
    pending_files: int = 0
    failed: int = 0
    drifted: int = 0
    missing: int = 0


@dataclass
class LastRun:
    run_id: int
    kind: str
    status: str
    duration_s: float | None
    finished_at: float  # seconds since the epoch


@dataclass
class FleetSnapshot:
    tenants_by_status: dict[str, int]
    scopes: dict[str, ScopeCounts] = field(default_factory=dict)
    pool_size: int = 0
    active_runs: int = 0
    last_run: LastRun | None = None
    # Staged rollouts that hold the scope, by state (running, awaiting_approval, halted).
    rollouts: dict[str, int] = field(default_factory=dict)


def scope_counts(states: Iterable[reports.SchemaState]) -> dict[str, ScopeCounts]:
    """Schemas by migration state, per scope (public, tenant): what /metrics exposes and
    the admin's overview shows."""
    scopes = {scope: ScopeCounts() for scope in ("public", "tenant")}
    for s in states:
        counts = scopes.setdefault(s.scope, ScopeCounts())
        counts.schemas += 1
        counts.with_pending += bool(s.pending)
        counts.pending_files += len(s.pending)
        counts.failed += s.failed
        counts.drifted += bool(s.drift)
        counts.missing += not s.schema_exists
    return scopes


def fleet_snapshot() -> FleetSnapshot:
    states = reports.schema_states(include_public=True)
    by_status = Counter(s.status for s in states if s.scope == "tenant" and s.status)
    snapshot = FleetSnapshot(
        tenants_by_status={**dict.fromkeys(TENANT_STATUSES, 0), **by_status},
        scopes=scope_counts(states),
    )
    with connect_ready() as conn:
        snapshot.active_runs, snapshot.last_run = _runs(conn)
        snapshot.pool_size = pool_size(conn)
        snapshot.rollouts = _rollouts(conn)
    return snapshot


def _rollouts(conn: psycopg.Connection) -> dict[str, int]:
    rows = conn.execute(
        "SELECT state, count(*) FROM public.tenant_rollouts WHERE state = ANY(%s) GROUP BY 1",
        [list(rollout_records.ACTIVE)],
    ).fetchall()
    return {**dict.fromkeys(rollout_records.ACTIVE, 0), **{state: int(n) for state, n in rows}}


def _runs(conn: psycopg.Connection) -> tuple[int, LastRun | None]:
    """Runs queued or running, and the one that finished last (with its duration)."""
    row = conn.execute(
        """
        SELECT (SELECT count(*) FROM public.tenant_migration_runs
                 WHERE status IN ('queued', 'running')),
               r.id, r.kind, r.status,
               extract(epoch FROM r.finished_at - r.started_at)::float8,
               extract(epoch FROM r.finished_at)::float8
          FROM (SELECT 1) one
          LEFT JOIN LATERAL (
                SELECT * FROM public.tenant_migration_runs WHERE finished_at IS NOT NULL
                 ORDER BY finished_at DESC, id DESC LIMIT 1) r ON true
        """
    ).fetchone()
    assert row is not None
    active, run_id, kind, status, duration, finished = row
    last = LastRun(run_id, kind, status, duration, finished) if run_id is not None else None
    return int(active), last


def pool_size(conn: psycopg.Connection) -> int:
    """Schemas ready to be claimed in the warm pool (entries set aside as broken wait for
    the next fill to drop them and are not counted); 0 before the pool's table exists."""
    row = conn.execute(
        "SELECT CASE WHEN to_regclass('public.tenant_pool') IS NULL THEN 0 "
        "ELSE (SELECT count(*) FROM public.tenant_pool WHERE state = 'ready') END"
    ).fetchone()
    return int(row[0]) if row else 0
