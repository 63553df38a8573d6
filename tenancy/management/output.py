"""Rendering of plans, runs and progress for the management commands (text or JSON)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from django.core.management.base import OutputWrapper

from tenancy.engine.executor import Event
from tenancy.engine.plan import Plan


class Progress:
    """A progress bar on a terminal; plain lines, each naming its schema, when piped."""

    def __init__(
        self,
        out: OutputWrapper,
        style: Any,
        *,
        total: int,
        verbosity: int,
        show_sql: bool,
        tty: bool | None = None,
    ):
        self.out, self.style = out, style
        self.total = total
        self.verbosity = verbosity
        self.show_sql = show_sql
        stream: TextIO = getattr(out, "_out", sys.stdout)
        self.tty = stream.isatty() if tty is None else tty
        self.done = self.failed = 0
        self.started = time.monotonic()

    def __call__(self, event: Event) -> None:
        if event.kind == "sql" and self.show_sql:
            self._line(
                f"{event.schema}: -- {event.migration.name if event.migration else event.message}"
            )
            for line in (event.sql or "").rstrip().splitlines():
                self._line(f"{event.schema}:   {line}")
        elif event.kind in ("retry", "notice") and self.verbosity >= 1:
            self._line(self.style.WARNING(f"{event.schema}: {event.message}"))
        elif event.kind == "schema_finished" and event.result is not None:
            r = event.result
            self.done += 1
            self.failed += r.failed
            if r.failed:
                self._line(self.style.ERROR(f"{r.schema}: FAILED: {r.error}"))
            elif r.status == "interrupted":
                self._line(self.style.WARNING(f"{r.schema}: {r.error}"))
            elif self.verbosity >= 1 and (not self.tty or self.verbosity >= 2):
                what = ", ".join(r.versions) if r.versions else "nothing to do"
                self._line(f"{r.schema}: {r.status} ({what}) in {r.duration_ms} ms")
            if self.tty and self.verbosity >= 1:
                self._bar()

    def _line(self, text: str) -> None:
        if self.tty:
            self.out.write("\r\033[K", ending="")
        self.out.write(text)

    def _bar(self) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else 0
        width = 30
        filled = int(width * self.done / self.total) if self.total else width
        self.out.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
            f"  failed {self.failed}  {rate:.1f}/s  ETA {eta:.0f}s",
            ending="" if self.done < self.total else "\n",
        )
        self.out.flush()


def write_plan(
    out: OutputWrapper, style: Any, plan: Plan, *, show_sql: bool, database: str
) -> None:
    """The dry run: each schema's pending files, or the seed's "No pending migrations"."""
    if not plan.with_pending:
        out.write(style.SUCCESS("No pending migrations"))
    for s in plan.with_pending:
        out.write(style.MIGRATE_HEADING(f"{s.schema}: {len(s.pending)} pending"))
        for m in s.pending:
            flag = "" if m.transactional else f"  [non-transactional: {m.non_transactional_reason}]"
            out.write(f"  {m.name}  {m.description}{flag}")
            if show_sql:
                from tenancy.engine.executor import placeholders
                from tenancy.engine.statements import StatementError, render

                try:
                    text = render(m.up_sql, placeholders(s.schema, database))
                except StatementError as exc:
                    text = f"-- cannot render: {exc}"
                for line in text.rstrip().splitlines():
                    out.write(f"    {line}")
    if plan.with_pending:
        out.write(
            f"{plan.pending_count} pending migration(s) in {len(plan.with_pending)} of "
            f"{len(plan.schemas)} schema(s)"
        )


def write_json(out: OutputWrapper, payload: dict[str, Any]) -> None:
    out.write(json.dumps(payload, indent=2, default=str))


class RowProgress(Progress):
    """Progress over the rows of a file (`tenant_create --from-file`): the bar on a
    terminal, failed rows as lines above it; piped, one line per row."""

    def __init__(
        self,
        out: OutputWrapper,
        style: Any,
        *,
        total: int,
        verbosity: int,
        tty: bool | None = None,
    ):
        super().__init__(out, style, total=total, verbosity=verbosity, show_sql=False, tty=tty)

    def row(self, text: str, *, failed: bool) -> None:
        self.done += 1
        self.failed += failed
        if failed:
            self._line(self.style.ERROR(text))
        elif self.verbosity >= 1 and (not self.tty or self.verbosity >= 2):
            self._line(text)
        if self.tty and self.verbosity >= 1:
            self._bar()
