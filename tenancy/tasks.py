"""Background jobs (django-tasks, database backend): the admin enqueues, `db_worker` runs.

A run started from the admin never executes in the web request: the view records a
``MigrationRun`` row with status "queued" and enqueues ``run_migrations`` with its id; the
worker process calls ``runs.migrate``, which takes that row over (running → succeeded /
failed, progress counts, per-schema results) exactly as a command-line run would.
"""

from __future__ import annotations

from typing import Any

from django_tasks import task

from tenancy.services import run_records, runs


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
