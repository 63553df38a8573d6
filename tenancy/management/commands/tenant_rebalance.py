"""Spread tenants evenly over the Citus worker nodes: start, watch, stop the rebalancer."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenancy.engine.errors import TenancyError
from tenancy.management.actor import cli_actor
from tenancy.management.options import add_actor, add_format
from tenancy.services import placement


class Command(BaseCommand):
    help = (
        "On a Citus cluster, run Citus' background rebalancer, which moves whole tenant "
        "schemas between worker nodes until each holds a fair share. With no option it "
        "starts a rebalance; --status shows the rebalancer's jobs (the newest first, with "
        "progress); --stop stops the running one (moves already done stay done). Audited."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--status", action="store_true", help="Show jobs; change nothing.")
        action.add_argument("--stop", action="store_true", help="Stop the running rebalance.")
        parser.add_argument("--mode", choices=placement.TRANSFER_MODES, default="auto")
        add_actor(parser)
        add_format(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        actor = options["actor"] or cli_actor()
        try:
            if options["status"]:
                self._status(options["format"])
            elif options["stop"]:
                stopped = placement.stop_rebalance(actor=actor)
                self.stdout.write("Rebalance stopped." if stopped else "No rebalance is running.")
            else:
                job = placement.start_rebalance(mode=options["mode"], actor=actor)
                if job is None:
                    self.stdout.write("The nodes are balanced; nothing to move.")
                else:
                    self.stdout.write(
                        self.style.SUCCESS(f"Rebalance job {job} started; watch it with --status.")
                    )
        except TenancyError as exc:
            raise CommandError(str(exc), returncode=exc.exit_code) from exc

    def _status(self, output: str) -> None:
        jobs = placement.rebalance_jobs()
        if output == "json":
            rows = [
                {
                    "job_id": j.job_id,
                    "state": j.state,
                    "started_at": j.started_at and j.started_at.isoformat(),
                    "finished_at": j.finished_at and j.finished_at.isoformat(),
                    "details": j.details,
                }
                for j in jobs
            ]
            self.stdout.write(json.dumps(rows, indent=2))
            return
        if not jobs:
            self.stdout.write("The rebalancer has run no job.")
        for j in jobs:
            tasks = j.details.get("task_state_counts", {})
            progress = ", ".join(f"{n} {state}" for state, n in sorted(tasks.items()))
            self.stdout.write(f"job {j.job_id}: {j.state}" + (f" ({progress})" if progress else ""))
