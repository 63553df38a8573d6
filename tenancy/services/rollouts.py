"""Staged rollouts (docs/rollouts.md): the pending tenant steps applied stage by stage
(a canary, ordered waves, the rest), each stage a run of its own schemas, with a failure
threshold that halts the rollout, verification between stages, a soak, and gates that
wait for a person. The record (rollout_records.py) makes every stop resumable: a halted,
waiting or killed rollout continues with ``resume``; what is applied is skipped (the
ledger decides, under each schema's lock), what failed is retried."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from tenancy import conf
from tenancy.engine import audit, db
from tenancy.engine.errors import EXIT_AWAITING_APPROVAL, EXIT_FAILED, EXIT_HALTED, EXIT_OK
from tenancy.engine.executor import kept_workers
from tenancy.engine.source import TENANT
from tenancy.services import alerts, rollout_checks, rollout_records, runs, steps
from tenancy.services.infrastructure import connect_ready
from tenancy.services.rollout_policy import PolicyError, Stage, parse_amount
from tenancy.services.rollout_records import Record, RolloutError
from tenancy.services.rollout_selection import candidates, resolve

SCOPE = "tenants"
SOAK_STEP_S = 1.0  # how often a soak touches the heartbeat and looks for an abort
OnStage = Callable[[Record, dict[str, Any]], None]  # called after each stage's run


@dataclass
class RolloutReport:
    record: Record | None
    exit_code: int = EXIT_OK
    dry_run: bool = False
    stages: list[dict[str, Any]] = field(default_factory=list)  # a dry run's plan
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rollout": self.record.to_dict() if self.record else None,
            "exit_code": self.exit_code,
            "dry_run": self.dry_run,
            "stages": self.stages if self.dry_run else (self.record.stages if self.record else []),
            "notes": self.notes,
        }


# -- planning ------------------------------------------------------------------------------
def resolved_stages(stages: list[Stage]) -> list[dict[str, Any]]:
    """Each stage as the record keeps it, its schemas chosen now."""
    with connect_ready() as conn:
        found = candidates(conn, stages)
    known = {c.schema for c in found}
    unknown = sorted({s for st in stages for s in st.selection.get("schemas", [])} - known)
    if unknown:
        raise PolicyError(f"Not a registered tenant schema: {', '.join(unknown)}.")
    return [
        {**stage.to_dict(), "schemas": schemas, "state": "pending", "failed": {}, "applied": {}}
        for stage, schemas in resolve(stages, found)
    ]


def plan(stages: list[Stage]) -> RolloutReport:
    """A dry run: the stages with their schemas and the files each would get."""
    resolved = resolved_stages(stages)
    fleet = runs.make_plan(public=False)
    pending = {s.schema: [m.name for m in s.pending] for s in fleet.schemas}
    for stage in resolved:
        files = sorted({f for schema in stage["schemas"] for f in pending.get(schema, [])})
        stage["pending_files"] = files
        stage["with_pending"] = sum(bool(pending.get(s)) for s in stage["schemas"])
    return RolloutReport(record=None, dry_run=True, stages=resolved)


# -- the verbs -----------------------------------------------------------------------------
def create(stages: list[Stage], *, policy: str, actor: str, undo_on_halt: bool = False) -> Record:
    """The rollout's record, its stages resolved now; refused while another is active. The
    admin creates it in the request and leaves the driving to the worker (``proceed``)."""
    resolved = resolved_stages(stages)
    with closing(db.connect(conf.conninfo())) as conn:
        record = rollout_records.create(
            conn,
            policy=policy,
            scope=SCOPE,
            stages=resolved,
            options={"undo_on_halt": undo_on_halt},
            actor=actor,
        )
        _audit(conn, record, "rollout.start", actor, {"stages": _summary(record)})
        rollout_records.release(conn, record)  # recorded, not driven: this connection closes
    return record


def start(
    stages: list[Stage],
    *,
    policy: str,
    actor: str,
    undo_on_halt: bool = False,
    on_stage: OnStage | None = None,
) -> RolloutReport:
    """Create a rollout and drive it here (the command line)."""
    record = create(stages, policy=policy, actor=actor, undo_on_halt=undo_on_halt)
    return proceed(record.id, actor=actor, on_stage=on_stage)


def proceed(rollout_id: int, *, actor: str, on_stage: OnStage | None = None) -> RolloutReport:
    """Drive a running rollout from its current stage (a new one, or one just approved),
    unless a live process already does."""
    with closing(db.connect(conf.conninfo())) as conn:
        record = rollout_records.load(conn, rollout_id)
        if record.state != "running":
            raise RolloutError(f"Rollout {record.id} is {record.state}: nothing to drive.")
        _refuse_if_driven(conn, record)
        return _drive(conn, record, actor, on_stage)


def resume(rollout_id: int | None, *, actor: str, on_stage: OnStage | None = None) -> RolloutReport:
    """Continue a halted or killed rollout from its first stage not done or with failed
    schemas (the latest active one without an id)."""
    with closing(db.connect(conf.conninfo())) as conn:
        record = _resumable(conn, rollout_id)
        record.current_stage = _first_unfinished(record)
        _audit(conn, record, "rollout.resume", actor, {"from_stage": record.current_stage + 1})
        return _drive(conn, record, actor, on_stage)


def check_resumable(rollout_id: int) -> Record:
    """The rollout, if ``resume`` would take it now (else RolloutError): the admin asks
    before it queues the worker's job."""
    with closing(db.connect(conf.conninfo())) as conn:
        return _resumable(conn, rollout_id)


def _resumable(conn: psycopg.Connection, rollout_id: int | None) -> Record:
    record = _find(conn, rollout_id)
    if record.state == "awaiting_approval":
        raise RolloutError(
            f"Rollout {record.id} waits for approval of stage {record.current_stage + 2}: "
            f"`migrate_tenants --approve {record.id}`."
        )
    _refuse_if_driven(conn, record)
    return record


def record_approval(rollout_id: int, *, actor: str) -> Record:
    """A person lets a waiting rollout start its next stage: recorded and audited; the
    rollout is running again, for ``proceed`` (here, or the worker's job) to drive."""
    with closing(db.connect(conf.conninfo())) as conn:
        record = rollout_records.load(conn, rollout_id)
        if record.state != "awaiting_approval":
            raise RolloutError(f"Rollout {record.id} is {record.state}, not awaiting approval.")
        rollout_records.add_approval(conn, record, actor)
        record.current_stage += 1
        rollout_records.save_stages(conn, record)
        rollout_records.set_state(conn, record, "running")
        rollout_records.release(conn, record)
        _audit(conn, record, "rollout.approve", actor, {"next_stage": record.current_stage + 1})
        return record


def approve(rollout_id: int, *, actor: str, on_stage: OnStage | None = None) -> RolloutReport:
    """Approve, then drive the rest here (the command line)."""
    record_approval(rollout_id, actor=actor)
    return proceed(rollout_id, actor=actor, on_stage=on_stage)


def abort(rollout_id: int, *, actor: str, reason: str = "") -> Record:
    """End an active rollout: nothing more starts (a stage in flight finishes its schemas,
    each all or nothing)."""
    with closing(db.connect(conf.conninfo())) as conn:
        record = rollout_records.load(conn, rollout_id)
        if record.state not in rollout_records.ACTIVE:
            raise RolloutError(f"Rollout {record.id} is already {record.state}.")
        why = f"aborted by {actor}" + (f": {reason}" if reason else "")
        rollout_records.set_state(conn, record, "aborted", why)
        _audit(conn, record, "rollout.abort", actor, {"reason": reason})
        return record


def _find(conn: psycopg.Connection, rollout_id: int | None) -> Record:
    if rollout_id is not None:
        record = rollout_records.load(conn, rollout_id)
        if record.state not in rollout_records.ACTIVE:
            raise RolloutError(f"Rollout {record.id} is {record.state}: nothing to resume.")
        return record
    record = rollout_records.active(conn, SCOPE)
    if record is None:
        raise RolloutError("No rollout to resume: none is halted, waiting or running.")
    return record


def _refuse_if_driven(conn: psycopg.Connection, record: Record) -> None:
    if rollout_records.driven_elsewhere(conn, record):
        raise RolloutError(
            f"Rollout {record.id} is running in another process (server pid "
            f"{record.backend_pid}); wait for it, or abort it with `--abort {record.id}`."
        )


def _first_unfinished(record: Record) -> int:
    for index, stage in enumerate(record.stages):
        if stage["state"] != "done" or stage["failed"]:
            return index
    return len(record.stages)


# -- driving -------------------------------------------------------------------------------
def _drive(
    conn: psycopg.Connection, record: Record, actor: str, on_stage: OnStage | None
) -> RolloutReport:
    rollout_records.take_over(conn, record)
    jobs = max(int(s["jobs"]) for s in record.stages) if record.stages else 1
    with kept_workers(conf.conninfo(), jobs) as workers:
        return _stages(conn, record, actor, on_stage, workers)


def _stages(
    conn: psycopg.Connection,
    record: Record,
    actor: str,
    on_stage: OnStage | None,
    workers: ConnectionPool,
) -> RolloutReport:
    """The stages from the current one on, their runs sharing ``workers``' connections."""
    while record.current_stage < len(record.stages):
        stage = record.stages[record.current_stage]
        stopped = _run_stage(conn, record, stage, actor, workers)
        if on_stage:
            on_stage(record, stage)
        if stopped is not None:
            return stopped
        if rollout_records.heartbeat(conn, record) == "aborted":
            return _aborted(conn, record)
        if _gate(conn, record, stage, actor):
            return RolloutReport(record, exit_code=EXIT_AWAITING_APPROVAL)
        record.current_stage += 1
        rollout_records.save_stages(conn, record)
    rollout_records.set_state(conn, record, "completed")
    _audit(conn, record, "rollout.complete", actor, {"stages": _summary(record)})
    alerts.rollout_changed(record.to_dict(), kind="completed")
    return RolloutReport(record)


def _run_stage(
    conn: psycopg.Connection,
    record: Record,
    stage: dict[str, Any],
    actor: str,
    workers: ConnectionPool,
) -> RolloutReport | None:
    """The stage's run (and checks); a report when the rollout stops here."""
    first_time = stage["state"] == "pending"
    stage.update(state="running", started_at=_now())
    rollout_records.save_stages(conn, record)
    allowed = _allowed_failures(record)
    before = _failures_before(record)
    beat = partial(rollout_records.heartbeat, conn, record)
    report = _migrate(stage, allowed - before, actor, beat, workers)
    _take_results(stage, report)
    if report.refused:
        return _halt(conn, record, stage, actor, "refused: " + "; ".join(report.refused))
    failures = before + len(stage["failed"])
    if failures > allowed:
        why = (
            f"stage {record.current_stage + 1} ({stage['name']}): {failures} failed "
            f"schema(s), more than max_failures {stage['max_failures']} allows ({allowed})"
        )
        return _halt(conn, record, stage, actor, why)
    problems = _checked(stage)
    if problems:
        stage["verify_problems"] = problems
        why = f"stage {record.current_stage + 1} ({stage['name']}): verification failed"
        return _halt(conn, record, stage, actor, f"{why}: {problems[0]}")
    stage.update(state="done", finished_at=_now())
    rollout_records.save_stages(conn, record)
    if first_time and stage.get("soak") and record.current_stage < len(record.stages) - 1:
        return _soak(conn, record, float(stage["soak"]))
    return None


def _migrate(
    stage: dict[str, Any],
    budget: int,
    actor: str,
    beat: Callable[[], str],
    workers: ConnectionPool,
) -> runs.RunReport:
    if not stage["schemas"]:
        return runs.RunReport(kind="migrate", plan=None)
    last = [time.monotonic()]

    def on_event(_event: Any) -> None:
        if time.monotonic() - last[0] > 5:
            last[0] = time.monotonic()
            beat()

    return runs.migrate(
        public=False,
        tenants=True,
        only=list(stage["schemas"]),
        jobs=int(stage["jobs"]),
        max_failures=max(0, budget),
        actor=actor,
        on_event=on_event,
        workers=workers,
    )


def _take_results(stage: dict[str, Any], report: runs.RunReport) -> None:
    """The stage's failed schemas are those of its latest attempt; what it applied adds up
    over attempts (a retry applies what the failed attempt did not)."""
    stage["failed"] = {r.schema: r.error or "failed" for r in report.failed}
    for r in report.results:
        if r.versions and not r.failed:
            stage["applied"][r.schema] = [*stage["applied"].get(r.schema, []), *r.versions]
    if report.run_id is not None:
        stage.setdefault("run_ids", []).append(report.run_id)


def _checked(stage: dict[str, Any]) -> list[str]:
    return rollout_checks.problems(
        list(stage["schemas"]), verify=bool(stage.get("verify")), check=stage.get("check")
    )


def _allowed_failures(record: Record) -> int:
    """The stage's max_failures: a count, or a percentage of the schemas of the stages so
    far (failures count from the rollout's start)."""
    stage = record.stages[record.current_stage]
    so_far = sum(len(s["schemas"]) for s in record.stages[: record.current_stage + 1])
    return parse_amount(stage["max_failures"], "max_failures").of(so_far)


def _failures_before(record: Record) -> int:
    return sum(len(s["failed"]) for s in record.stages[: record.current_stage])


def _gate(conn: psycopg.Connection, record: Record, stage: dict[str, Any], actor: str) -> bool:
    """After a stage with ``approve``: wait for a person (unless approved already)."""
    last = record.current_stage == len(record.stages) - 1
    approved = any(a.get("stage") == record.current_stage for a in record.approvals)
    if not stage.get("approve") or last or approved:
        return False
    why = (
        f"stage {record.current_stage + 1} ({stage['name']}) is done; stage "
        f"{record.current_stage + 2} waits for approval"
    )
    rollout_records.set_state(conn, record, "awaiting_approval", why)
    _audit(conn, record, "rollout.await_approval", actor, {"stage": record.current_stage + 1})
    alerts.rollout_changed(record.to_dict(), kind="awaiting_approval")
    return True


def _soak(conn: psycopg.Connection, record: Record, seconds: float) -> RolloutReport | None:
    ends = time.monotonic() + seconds
    while (left := ends - time.monotonic()) > 0:
        time.sleep(min(SOAK_STEP_S, left))
        if rollout_records.heartbeat(conn, record) == "aborted":
            return _aborted(conn, record)
    return None


def _halt(
    conn: psycopg.Connection, record: Record, stage: dict[str, Any], actor: str, why: str
) -> RolloutReport:
    stage.update(state="halted", finished_at=_now())
    rollout_records.save_stages(conn, record)
    report = RolloutReport(record, exit_code=EXIT_HALTED)
    if record.options.get("undo_on_halt"):
        report.notes += _undo(record, actor)
    rollout_records.set_state(conn, record, "halted", why)
    _audit(conn, record, "rollout.halt", actor, {"reason": why, "failed": stage["failed"]})
    alerts.rollout_changed(record.to_dict(), kind="halted")
    return report


def _aborted(conn: psycopg.Connection, record: Record) -> RolloutReport:
    fresh = rollout_records.load(conn, record.id)
    record.state, record.reason = fresh.state, fresh.reason
    return RolloutReport(record, exit_code=EXIT_FAILED)


def _undo(record: Record, actor: str) -> list[str]:
    """--undo-on-halt: every schema this rollout migrated goes back to where it was, with
    the DOWN sections the ledger recorded, newest first."""
    applied: dict[str, list[str]] = {}
    for stage in record.stages:
        for schema, versions in stage["applied"].items():
            applied.setdefault(schema, []).extend(versions)
        stage["applied"] = {}
    notes = []
    for target, schemas in _undo_targets(applied).items():
        back = runs.rollback(target, only=schemas, actor=actor)
        failed = [r.schema for r in back.failed] + back.refused
        notes.append(f"undone {target} in {len(schemas) - len(back.failed)} schema(s)")
        if failed:
            notes.append(f"could not undo {target}: {', '.join(failed)}")
    return notes


def _undo_targets(applied: dict[str, list[str]]) -> dict[str, list[str]]:
    """What to roll back to, per schema: the oldest SQL file it got (``runs.rollback``
    undoes it and everything above), or for a Django step the step before it."""
    order = [m.version for m in steps.migrations()[TENANT]]
    targets: dict[str, list[str]] = {}
    for schema, versions in applied.items():
        oldest = min(versions, key=lambda v: order.index(v) if v in order else len(order))
        targets.setdefault(_undo_target(oldest, order), []).append(schema)
    return targets


def _undo_target(oldest: str, order: list[str]) -> str:
    if oldest.isdigit():
        return oldest
    app = oldest.split(".", 1)[0]
    earlier = [v for v in order[: order.index(oldest)] if v.split(".", 1)[0] == app]
    return earlier[-1] if earlier else f"{app}.zero"


def _summary(record: Record) -> list[dict[str, Any]]:
    return [
        {"name": s["name"], "schemas": len(s["schemas"]), "state": s["state"]}
        for s in record.stages
    ]


def _audit(
    conn: psycopg.Connection, record: Record, action: str, actor: str, details: dict[str, Any]
) -> None:
    audit.write(conn, action, actor=actor, details={"rollout_id": record.id, **details})


def _now() -> str:
    return datetime.now(UTC).isoformat()
