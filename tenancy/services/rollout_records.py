"""The one writer of ``public.tenant_rollouts`` (the model is ``tenancy.models.Rollout``;
the admin reads it with the ORM). A rollout's stages are a JSON list, each stage a dict:
name, schemas, jobs, max_failures, verify, check, soak, approve, and what became of it:
state (pending, running, done, halted), failed ({schema: error}), applied ({schema:
[versions]}), run_ids, verify_problems, started_at, finished_at."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.errors import UniqueViolation
from psycopg.types.json import Jsonb

from tenancy.engine.errors import TenancyError

# A running rollout whose driving process has not touched it for this long, or whose
# server process is gone, was killed: --resume may take it over.
STALE_S = 60.0
ACTIVE = ("running", "awaiting_approval", "halted")
_COLUMNS = sql.SQL(", ").join(
    sql.Identifier(c)
    for c in (
        "id", "policy", "scope", "state", "reason", "stages", "current_stage", "options",
        "started_by", "approvals", "started_at", "heartbeat_at", "finished_at", "backend_pid",
    )
)  # fmt: skip
_SELECT = sql.SQL("SELECT {} FROM public.tenant_rollouts WHERE ").format(_COLUMNS)


class RolloutError(TenancyError):
    """A rollout verb that cannot be done (another is active, a wrong state, no such id)."""


@dataclass
class Record:
    id: int
    policy: str
    scope: str
    state: str
    reason: str | None
    stages: list[dict[str, Any]]
    current_stage: int
    options: dict[str, Any]
    started_by: str
    approvals: list[dict[str, Any]] = field(default_factory=list)
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    finished_at: datetime | None = None
    backend_pid: int | None = None

    @property
    def current(self) -> dict[str, Any]:
        """The stage it is at (the last one once it completed)."""
        return self.stages[min(self.current_stage, len(self.stages) - 1)] if self.stages else {}

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        for key in ("started_at", "heartbeat_at", "finished_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


def create(
    conn: psycopg.Connection,
    *,
    policy: str,
    scope: str,
    stages: list[dict[str, Any]],
    options: dict[str, Any],
    actor: str,
) -> Record:
    """A new running rollout; refused while another of the scope is active."""
    try:
        row = conn.execute(
            sql.SQL(
                "INSERT INTO public.tenant_rollouts (policy, scope, stages, options, started_by, "
                "backend_pid) VALUES (%s, %s, %s, %s, %s, pg_backend_pid()) RETURNING {}"
            ).format(_COLUMNS),
            [policy, scope, Jsonb(stages), Jsonb(options), actor],
        ).fetchone()
    except UniqueViolation:
        other = active(conn, scope)
        which = f"rollout {other.id} ({other.state})" if other else "another rollout"
        raise RolloutError(
            f"{which} is active for {scope}: resume it (`migrate_tenants --resume"
            f"{f' {other.id}' if other else ''}`) or abort it (`--abort ID`) first."
        ) from None
    assert row is not None
    return Record(*row)


def load(conn: psycopg.Connection, rollout_id: int) -> Record:
    row = conn.execute(_SELECT + sql.SQL("id = %s"), [rollout_id]).fetchone()
    if row is None:
        raise RolloutError(f"No rollout {rollout_id}.")
    return Record(*row)


def active(conn: psycopg.Connection, scope: str = "tenants") -> Record | None:
    row = conn.execute(
        _SELECT + sql.SQL("scope = %s AND state = ANY(%s)"), [scope, list(ACTIVE)]
    ).fetchone()
    return Record(*row) if row else None


def save_stages(conn: psycopg.Connection, record: Record) -> None:
    """The stages and the current stage, with a heartbeat."""
    conn.execute(
        "UPDATE public.tenant_rollouts SET stages = %s, current_stage = %s, "
        "heartbeat_at = now() WHERE id = %s",
        [Jsonb(record.stages), record.current_stage, record.id],
    )


def set_state(
    conn: psycopg.Connection, record: Record, state: str, reason: str | None = None
) -> None:
    """A new state (and its reason); an ending one closes the rollout."""
    row = conn.execute(
        "UPDATE public.tenant_rollouts SET state = %s, reason = %s, heartbeat_at = now(), "
        "finished_at = CASE WHEN %s THEN now() END WHERE id = %s RETURNING finished_at",
        [state, reason, state not in ACTIVE, record.id],
    ).fetchone()
    record.state, record.reason = state, reason
    record.finished_at = row[0] if row else None


def take_over(conn: psycopg.Connection, record: Record) -> None:
    """This process drives the rollout now: running, with this connection's server pid."""
    conn.execute(
        "UPDATE public.tenant_rollouts SET state = 'running', reason = NULL, "
        "backend_pid = pg_backend_pid(), heartbeat_at = now() WHERE id = %s",
        [record.id],
    )
    record.state, record.reason = "running", None


def release(conn: psycopg.Connection, record: Record) -> None:
    """No process drives the rollout now (its creator or approver hands it on)."""
    conn.execute("UPDATE public.tenant_rollouts SET backend_pid = NULL WHERE id = %s", [record.id])
    record.backend_pid = None


def add_approval(conn: psycopg.Connection, record: Record, actor: str) -> None:
    entry = {"stage": record.current_stage, "actor": actor}
    row = conn.execute(
        "UPDATE public.tenant_rollouts SET approvals = approvals || "
        "jsonb_build_array(%s::jsonb || jsonb_build_object('at', now())) "
        "WHERE id = %s RETURNING approvals",
        [Jsonb(entry), record.id],
    ).fetchone()
    record.approvals = row[0] if row else record.approvals


def heartbeat(conn: psycopg.Connection, record: Record) -> str:
    """Touch the heartbeat; returns the state (another process may have aborted it)."""
    row = conn.execute(
        "UPDATE public.tenant_rollouts SET heartbeat_at = now() WHERE id = %s RETURNING state",
        [record.id],
    ).fetchone()
    return str(row[0]) if row else "aborted"


def driven_elsewhere(conn: psycopg.Connection, record: Record) -> bool:
    """A running rollout that a live process still drives (its server process is there
    and its heartbeat is fresh)."""
    row = conn.execute(
        "SELECT state = 'running' AND backend_pid IS NOT NULL "
        "AND backend_pid <> pg_backend_pid() "
        "AND EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = backend_pid) "
        "AND heartbeat_at > now() - make_interval(secs => %s) "
        "FROM public.tenant_rollouts WHERE id = %s",
        [STALE_S, record.id],
    ).fetchone()
    return bool(row and row[0])
