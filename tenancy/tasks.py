"""Background jobs (django-tasks, database backend): the admin enqueues, `db_worker` runs.

A run started from the admin never executes in the web request: the view records a
``MigrationRun`` row with status "queued" and enqueues ``run_migrations`` with its id; the
worker process calls ``runs.migrate``, which takes that row over (running → succeeded /
failed, progress counts, per-schema results) exactly as a command-line run would.

The warm pool is refilled here too: a creation (command line, admin, bootstrap) asks for a
refill with ``request_pool_refill`` (``tenants.REFILL_TASK``) and the worker builds the
schemas (``pool.fill``), never the web request or the command that created the tenant.
"""

from __future__ import annotations

from typing import Any

from django_tasks import task
from django_tasks.base import TaskResultStatus

from tenancy.services import pool, run_records, runs

POOL_ACTOR = "worker:pool"


@task()
def run_migrations(
    *,
    run_id: int,
    only: list[str] | None,
    public: bool,
    tenants: bool,
    actor: str,
) -> dict[str, Any]:
    try:
        report = runs.migrate(only=only, public=public, tenants=tenants, actor=actor, run_id=run_id)
    except Exception as exc:
        # runs.migrate could not start (no infrastructure, a tenant dropped since it was
        # queued, an unreadable file): the queued row must not wait forever.
        run_records.fail_queued_run(run_id, actor, f"{type(exc).__name__}: {exc}")
        raise
    return {
        "run_id": report.run_id,
        "exit_code": report.exit_code,
        "succeeded": sum(r.status == "succeeded" for r in report.results),
        "failed": len(report.failed),
        "refused": report.refused,
    }


@task()
def proceed_rollout(*, rollout_id: int, actor: str) -> dict[str, Any]:
    """Drive a rollout the admin started or approved (services/rollouts.py)."""
    from tenancy.services import rollouts

    return _rollout_outcome(rollouts.proceed(rollout_id, actor=actor))


@task()
def resume_rollout(*, rollout_id: int, actor: str) -> dict[str, Any]:
    """Resume a halted or killed rollout from the admin."""
    from tenancy.services import rollouts

    return _rollout_outcome(rollouts.resume(rollout_id, actor=actor))


def _rollout_outcome(report: Any) -> dict[str, Any]:
    record = report.record
    return {"rollout_id": record.id, "state": record.state, "exit_code": report.exit_code}


@task()
def refill_pool() -> dict[str, Any]:
    """Fill the pool to ``TENANCY["POOL_SIZE"]`` (fills queue on a lock and count under it:
    several refills never overshoot)."""
    return pool.fill(actor=POOL_ACTOR).to_dict()


def request_pool_refill() -> None:
    """Enqueue ``refill_pool`` unless one is already waiting: that one will count the
    entries when it runs, claims made before it included."""
    from django_tasks_db.models import DBTaskResult

    waiting = DBTaskResult.objects.filter(
        task_path=refill_pool.module_path, status=TaskResultStatus.READY
    )
    if not waiting.exists():
        refill_pool.enqueue()
