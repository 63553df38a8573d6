"""What `make run` does, ending with a working admin unless public cannot migrate."""

from __future__ import annotations

import os
import signal
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenancy.engine.errors import Interrupted, TenancyError
from tenancy.management import serving
from tenancy.management.actor import cli_actor
from tenancy.management.commands import bootstrap_demo
from tenancy.management.interrupts import interruptible
from tenancy.management.output import Progress

if TYPE_CHECKING:
    from tenancy.services.runs import RunReport

PUBLIC_HINTS = (
    "make run: the public schema did not migrate, so the admin cannot start. Fix what the "
    "lines above name, or:",
    "  .venv/bin/python manage.py migrate_tenants --public --dry-run   (what is wrong)",
    "  .venv/bin/python manage.py migrate_tenants --allow-missing   (an applied file was deleted)",
    "  make clean-db && make run   (start over with an empty embedded database)",
)
INTERRUPTED = (130, 143)  # migrate_tenants stopped by Ctrl-C / SIGTERM: no hints
SHOWN_FAILURES = 3  # failed schemas named in the summary; the run's page has them all
SHOWN_FILES = 5


def run_url(base: str, run_id: int) -> str:
    return f"{base}/admin/tenancy/migrationrun/{run_id}/change/"


def first_line(text: str | None, limit: int = 320) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def applied_summary(report: RunReport, base: str) -> list[str]:
    """What the tenant run did, in a few lines: how many migrations and schemas, the
    failures (how many, the first few, the run's admin page)."""
    done = [r for r in report.results if not r.failed]
    versions = sorted({v for r in done for v in r.versions})
    applied = sum(len(r.versions) for r in done)
    lines = [
        f"Tenants: run {report.run_id} applied {applied} migration(s)"
        f"{' (' + ', '.join(versions) + ')' if versions else ''} to {len(done)} schema(s)."
    ]
    failed = report.failed
    if failed:
        lines.append(
            f"Tenants: {len(failed)} of {len(report.results)} schema(s) FAILED in run "
            f"{report.run_id}; each is left as it was. The admin starts anyway:"
        )
        lines += [f"  {r.schema}: {first_line(r.error)}" for r in failed[:SHOWN_FAILURES]]
        if len(failed) > SHOWN_FAILURES:
            lines.append(f"  and {len(failed) - SHOWN_FAILURES} more")
    verb = "every failed schema and its error, and Retry" if failed else "what it did"
    if report.run_id is not None:
        lines.append(f"  Run {report.run_id}: {run_url(base, report.run_id)} ({verb})")
    return lines


def pending_summary(report: RunReport, base: str) -> list[str]:
    """--public-only: what the tenants have pending, and where to apply it."""
    plan = report.plan
    if plan is None or not plan.with_pending:
        return [f"Tenants: up to date ({len(plan.schemas) if plan else 0} schema(s))."]
    files = sorted({m.name for s in plan.with_pending for m in s.pending})
    shown = ", ".join(files[:SHOWN_FILES]) + (" …" if len(files) > SHOWN_FILES else "")
    return [
        f"Tenants: {len(files)} file(s) pending ({shown}) in {len(plan.with_pending)} of "
        f"{len(plan.schemas)} schema(s), NOT applied (--public-only). Apply them from the "
        f"admin, Run all pending migrations: {base}/admin/tenancy/tenant/run-all/",
        "  or: .venv/bin/python manage.py migrate_tenants --tenants",
    ]


def _addrport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    try:
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise CommandError(f"expected HOST:PORT or PORT, not {value!r}") from None


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


class Command(BaseCommand):
    help = (
        "What `make run` does: migrate public (stop when it fails), then the tenants (a "
        "failure is summarised with its run's admin page, and the rest goes on), the demo "
        "tenant and admin login (bootstrap_demo), the warm pool, then the job worker and the "
        "web server; the login is printed again once the server answers."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000", help="HOST:PORT")
        parser.add_argument(
            "--public-only",
            action="store_true",
            help="Migrate public only: show what the tenants have pending and where to "
            "apply it (the admin's Run all pending migrations) instead of applying it.",
        )
        parser.add_argument("--username", default=os.environ.get("ADMIN_USERNAME", "admin"))

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = _addrport(options["addrport"])
        base = f"http://{host}:{port}"
        self._migrate_public(options["no_color"])
        self._migrate_tenants(base, public_only=options["public_only"])
        demo = bootstrap_demo.Command(stdout=self.stdout, stderr=self.stderr)
        demo.style = self.style
        box = demo.bootstrap(options["username"], f"{base}/admin/")
        self._fill_pool()
        sys.exit(self._serve(f"{host}:{port}", f"{base}/admin/", box))

    # -- migrations ------------------------------------------------------------------------
    def _migrate_public(self, no_color: bool) -> None:
        self.stdout.write("Public schema (migrate_tenants --public):")
        try:
            call_command(
                "migrate_tenants",
                "--public",
                stdout=self.stdout,
                stderr=self.stderr,
                no_color=no_color,
            )
            return
        except SystemExit as exc:
            code = int(exc.code or 0)
        except CommandError as exc:
            self.stderr.write(self.style.ERROR(str(exc)))
            code = exc.returncode
        if code in INTERRUPTED:
            sys.exit(code)
        if code:
            for line in PUBLIC_HINTS:
                self.stderr.write(line)
            sys.exit(1)

    def _migrate_tenants(self, base: str, *, public_only: bool) -> None:
        from tenancy.services import runs

        try:
            with interruptible():
                if public_only:
                    report = runs.migrate(public=False, dry_run=True, actor=cli_actor())
                else:
                    report = self._tenant_run(runs)
        except Interrupted as stop:
            self.stderr.write(
                f"Interrupted (signal {stop.signum}): {stop.what_happened()}. The run is "
                "recorded as interrupted; make run again finishes it."
            )
            sys.exit(stop.exit_code)
        except TenancyError as exc:
            self.stderr.write(
                self.style.ERROR(f"Tenants: not migrated: {exc}. The admin starts anyway; ")
                + "manage.py migrate_tenants --dry-run says more."
            )
            return
        self._write_report(report, base, public_only=public_only)

    def _tenant_run(self, runs: ModuleType) -> RunReport:
        progress: Progress | None = None

        def on_plan(plan: Any, jobs: int) -> None:
            nonlocal progress
            total = len(plan.with_pending)
            progress = Progress(self.stdout, self.style, total=total, verbosity=1, show_sql=False)
            if plan.with_pending:
                self.stdout.write(
                    f"Tenants: applying {plan.pending_count} migration(s) to "
                    f"{len(plan.with_pending)} of {len(plan.schemas)} schema(s)"
                )

        return runs.migrate(
            public=False,
            actor=cli_actor(),
            on_plan=on_plan,
            on_event=lambda e: progress and progress(e),
        )

    def _write_report(self, report: RunReport, base: str, *, public_only: bool) -> None:
        for warning in report.warnings:
            self.stderr.write(self.style.WARNING(f"Lint: {warning}"))
        for problem in report.refused + report.problems:
            self.stderr.write(self.style.ERROR(f"Tenants: {problem}"))
        if report.refused:
            self.stderr.write(
                self.style.ERROR("Tenants: refused, nothing applied. The admin starts anyway; ")
                + "manage.py migrate_tenants --dry-run says more."
            )
        elif public_only:
            self._lines(pending_summary(report, base))
        elif report.results:
            self._lines(applied_summary(report, base))
        else:
            schemas = len(report.plan.schemas) if report.plan else 0
            self.stdout.write(self.style.SUCCESS(f"Tenants: up to date ({schemas} schema(s))."))
        for r in report.pool:
            if r.status in ("failed", "discarded"):
                self.stderr.write(self.style.WARNING(f"Pool schema {r.schema}: {r.status}"))

    def _lines(self, lines: list[str]) -> None:
        """A summary: what went wrong or was left out in red, the rest in green, the details
        (indented) plain."""
        for line in lines:
            if line.startswith("  "):
                self.stdout.write(line)
            elif "FAILED" in line or "NOT applied" in line:
                self.stdout.write(self.style.ERROR(line))
            else:
                self.stdout.write(self.style.SUCCESS(line))

    # -- the pool and the processes --------------------------------------------------------
    def _fill_pool(self) -> None:
        try:
            call_command("tenant_pool", "--fill", stdout=self.stdout, stderr=self.stderr)
        except CommandError as exc:
            self.stderr.write(self.style.WARNING(f"Pool not filled: {exc}"))

    def _serve(self, addrport: str, admin_url: str, box: str) -> int:
        """The worker (no autoreload: restart after changing task code) and the web server
        (autoreloads); the login again once it answers; both stopped together."""
        children = serving.Children()
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
        self.stdout.write(
            "Starting the job worker (db_worker, no autoreload: restart make run after "
            f"changing task code) and the web server on {addrport} (autoreloads)."
        )
        self.stdout.flush()
        try:
            children.start("db_worker", "--queue-name", "*", "--no-reload")
            server = children.start("runserver", addrport)
            serving.when_answering(admin_url, server, lambda: self._answering(admin_url, box))
            return server.wait()
        except KeyboardInterrupt:
            return 130
        finally:
            children.stop()

    def _answering(self, admin_url: str, box: str) -> None:
        self.stdout.write(f"The admin answers at {admin_url}; the login again:")
        self.stdout.write(self.style.SUCCESS(box))
        self.stdout.flush()
