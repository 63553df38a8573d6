"""django-tasks' database worker, which first closes the runs a dead predecessor left
'running' (a worker killed mid-run cannot say so itself)."""

from __future__ import annotations

from typing import Any

from django_tasks_db.management.commands.db_worker import Command as WorkerCommand

from tenancy.services import run_records


class Command(WorkerCommand):
    help = (
        "Run the background worker that executes migration runs queued from the admin. "
        "On start, runs whose process died (a killed worker) are marked interrupted."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        closed = run_records.close_dead_runs_now()
        if closed and options.get("verbosity", 1) >= 1:
            self.stdout.write(f"Marked {closed} run(s) whose process died as interrupted.")
        super().handle(*args, **options)
