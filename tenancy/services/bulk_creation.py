"""Bulk creation: tenants from a CSV file, one ``tenants.create_tenant`` each (each one
atomic, as ever), for ``tenant_create --from-file``.

The file: one tenant a line, ``org_id,name,tags``; ``name`` and ``tags`` may be left out
or empty (the name is then the org id); the tags cell holds tags separated by ``;``,
spaces or (in a quoted cell) commas. An optional first row ``org_id,name,tags`` is a
header; blank lines and lines starting with ``#`` are skipped. UTF-8 (a BOM is fine).

A row is ``created``; ``exists`` (its org id is registered with the same name: a re-run
changes nothing, and that is no error); ``failed`` (a bad id, name or tag, a duplicate
of an earlier line, a creation refused or failed: its line and the reason, and the next
rows go on); or ``not_created`` (the hourly creation limit was reached: creation stops,
the limit's message says when it reopens; ``override_hourly_limit`` creates past it,
audited as ``tenant.hourly_limit_override`` with the actor and the count). A dry run
validates every row and says what it would create (``would_create``), changing nothing.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenancy.engine.errors import EXIT_FAILED, EXIT_OK, TenancyError
from tenancy.engine.names import validate_org_id, validate_org_name, validate_tags
from tenancy.services import tenants
from tenancy.services.infrastructure import connect_ready

COLUMNS = ("org_id", "name", "tags")
CREATED, WOULD_CREATE, EXISTS = "created", "would_create", "exists"
FAILED, NOT_CREATED = "failed", "not_created"
STATUSES = (CREATED, WOULD_CREATE, EXISTS, FAILED, NOT_CREATED)
LIMIT_REASON = "the hourly creation limit is reached (the summary says until when)"
_TAG_SEPARATORS = re.compile(r"[;,\s]+")


class BulkFileError(TenancyError):
    """The file cannot be read as tenant rows (missing, not CSV text, empty)."""


@dataclass(frozen=True)
class CsvRow:
    line: int  # the file's line number where the row starts
    cells: list[str]


@dataclass
class RowResult:
    line: int
    org_id: str
    status: str  # one of STATUSES
    name: str = ""
    tags: list[str] = field(default_factory=list)
    reason: str = ""  # why failed / not created; a note for exists
    schema: str = ""
    path: str = ""  # created: "direct" or "pool"
    past_hourly_limit: bool = False

    @property
    def ok(self) -> bool:
        return self.status in (CREATED, WOULD_CREATE, EXISTS)


@dataclass
class BulkReport:
    source: str
    dry_run: bool
    results: list[RowResult] = field(default_factory=list)
    limit_message: str = ""  # the hourly limit's message, when it stopped rows

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def summary(self) -> dict[str, int]:
        return {status: self.count(status) for status in STATUSES}

    @property
    def exit_code(self) -> int:
        return EXIT_OK if all(r.ok for r in self.results) else EXIT_FAILED


# -- reading the file -----------------------------------------------------------------------
def read_rows(path: str | Path) -> list[CsvRow]:
    """The file's tenant rows, with their line numbers; ``BulkFileError`` when the file
    is missing, unreadable, not UTF-8 CSV text, or holds no row."""
    text = _read_text(Path(path))
    rows = [row for row in _parse(text, str(path)) if not _skipped(row.cells)]
    if rows and _is_header(rows[0].cells):
        _check_header(rows.pop(0), str(path))
    if not rows:
        raise BulkFileError(f"{path} holds no tenant rows (expected lines of org_id,name,tags).")
    return rows


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BulkFileError(f"{path}: no such file.") from None
    except IsADirectoryError:
        raise BulkFileError(f"{path} is a directory, not a CSV file.") from None
    except OSError as exc:
        raise BulkFileError(f"{path} cannot be read: {exc.strerror or exc}.") from None
    if b"\0" in data:
        raise BulkFileError(f"{path} is not a CSV file: it holds binary data (NUL bytes).")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BulkFileError(
            f"{path} is not a CSV file: not UTF-8 text (byte 0x{data[exc.start]:02x} at "
            f"offset {exc.start})."
        ) from None


def _parse(text: str, name: str) -> Iterator[CsvRow]:
    reader = csv.reader(text.splitlines(keepends=True), strict=True)
    start = 1
    try:
        for cells in reader:
            yield CsvRow(start, [cell.strip() for cell in cells])
            start = reader.line_num + 1
    except csv.Error as exc:
        raise BulkFileError(f"{name} is not valid CSV: line {start}: {exc}.") from None


def _skipped(cells: list[str]) -> bool:
    """Blank lines and ``#`` comments."""
    return not any(cells) or cells[0].startswith("#")


def _is_header(cells: list[str]) -> bool:
    return cells[0].lower() == COLUMNS[0]


def _check_header(row: CsvRow, name: str) -> None:
    given = [cell.lower() for cell in _trimmed(row.cells)]
    if given != list(COLUMNS[: len(given)]):
        raise BulkFileError(
            f"{name}: line {row.line}: the header must be {','.join(COLUMNS)} (name and tags "
            f"may be left out), not {','.join(row.cells)}."
        )


def _trimmed(cells: list[str]) -> list[str]:
    """The cells without trailing empty ones (``org_x,Acme,`` is two columns)."""
    end = len(cells)
    while end > 1 and not cells[end - 1]:
        end -= 1
    return cells[:end]


def split_tag_cell(cell: str) -> list[str]:
    """The tags of a tags cell: separated by ``;``, spaces or commas (unvalidated)."""
    return [tag for tag in _TAG_SEPARATORS.split(cell) if tag]


# -- creating -------------------------------------------------------------------------------
@dataclass
class _Batch:
    """What one pass over the rows carries from row to row."""

    report: BulkReport
    actor: str
    override: bool
    registered: dict[str, tuple[str, str, list[str]]]  # org id: (name, schema, tags)
    seen: dict[str, tuple[int, str]] = field(default_factory=dict)  # lower id: (line, id)
    left: int | None = None  # dry run: creations the hourly limit still allows
    dry_limit_message: str = ""  # dry run: what stops them past ``left``
    stopped: bool = False  # the hourly limit stopped creation
    past_limit: list[str] = field(default_factory=list)  # org ids created past it
    tenant_type: str | None = None  # multi-type tenants: every row's type


def create_from_rows(
    rows: list[CsvRow],
    *,
    actor: str,
    source: str = "",
    dry_run: bool = False,
    override_hourly_limit: bool = False,
    on_result: Callable[[RowResult], None] | None = None,
    tenant_type: str | None = None,
) -> BulkReport:
    """Each row's tenant created (or, ``dry_run``, checked) in file order; ``on_result``
    is called with each row's result as it is known. Raises only what stops every row (no
    tenancy tables, say); a row's own trouble is its result."""
    batch = _Batch(
        report=BulkReport(source=source, dry_run=dry_run),
        actor=actor,
        override=override_hourly_limit,
        registered=_registered(rows),
        tenant_type=tenant_type,
    )
    if dry_run:
        _start_dry_run(batch)
    try:
        for row in rows:
            result = _one(batch, row)
            batch.report.results.append(result)
            if on_result is not None:
                on_result(result)
    finally:  # an interrupted batch audits the creations it made past the limit too
        if not dry_run:
            tenants.audit_hourly_override(actor, batch.past_limit, source=source)
    return batch.report


def _registered(rows: list[CsvRow]) -> dict[str, tuple[str, str, list[str]]]:
    """The registered tenants among the rows' org ids, read in one query."""
    ids = sorted({row.cells[0] for row in rows})
    with connect_ready() as conn:
        found = conn.execute(
            "SELECT auth0_org_id, organization_name, schema_name, tags "
            "FROM public.tenant_registry WHERE auth0_org_id = ANY(%s)",
            [ids],
        ).fetchall()
    return {org_id: (name, schema, list(tags)) for org_id, name, schema, tags in found}


def _start_dry_run(batch: _Batch) -> None:
    """A dry run counts what the hourly limit still allows, as creations would use it."""
    if batch.override:
        return
    quota = tenants.hourly_quota()
    batch.left = quota.left
    if quota.blocked is not None:
        batch.dry_limit_message = str(quota.blocked)
    else:
        batch.dry_limit_message = (
            f"A real run would stop after {quota.left} creation(s): "
            f"{tenants.HOURLY_LIMIT_SETTING} is {quota.limit} and {quota.used} tenant(s) "
            f"were created in the last hour."
        )


def _one(batch: _Batch, row: CsvRow) -> RowResult:
    org_id = row.cells[0]
    result = RowResult(line=row.line, org_id=org_id, status=FAILED)
    try:
        result.name, result.tags = _checked(row)
    except TenancyError as exc:  # InvalidName included
        result.reason = str(exc)
        result.name = row.cells[1].strip() if len(row.cells) > 1 else ""  # as the file has it
        return result
    named = len(row.cells) > 1 and bool(row.cells[1])
    if _duplicate(batch, result) or _exists(batch, result, named=named):
        return result
    if batch.stopped or batch.left == 0:
        result.status, result.reason = NOT_CREATED, LIMIT_REASON
        batch.report.limit_message = batch.report.limit_message or batch.dry_limit_message
        batch.stopped = True
        return result
    if batch.report.dry_run:
        _check(batch, result)
    else:
        _create(batch, result)
    return result


def _checked(row: CsvRow) -> tuple[str, list[str]]:
    """The row's name and tags, validated (``InvalidName`` or ``BulkFileError``)."""
    cells = _trimmed(row.cells)
    if len(cells) > len(COLUMNS):
        raise BulkFileError(
            f"{len(cells)} columns, at most {len(COLUMNS)} expected ({','.join(COLUMNS)}); "
            "quote a name that holds a comma."
        )
    cells += [""] * (len(COLUMNS) - len(cells))
    org_id, name, tags = cells
    validate_org_id(org_id)
    return validate_org_name(name, org_id), validate_tags(split_tag_cell(tags))


def _duplicate(batch: _Batch, result: RowResult) -> bool:
    key = result.org_id.lower()
    earlier = batch.seen.get(key)
    if earlier is None:
        batch.seen[key] = (result.line, result.org_id)
        return False
    line, org_id = earlier
    result.reason = (
        f"duplicate of line {line}"
        if org_id == result.org_id
        else f"differs only in letter case from {org_id} on line {line} (schema names are "
        "lower case: the two cannot both have a schema)"
    )
    return True


def _exists(batch: _Batch, result: RowResult, *, named: bool) -> bool:
    """A registered org id: ``exists`` with the same name (any, when the row gives none),
    else failed (nothing changed)."""
    known = batch.registered.get(result.org_id)
    if known is None:
        return False
    name, schema, tags = known
    result.schema = schema
    if named and name != result.name:
        result.reason = (
            f"already exists as {name!r} (schema {schema}), not {result.name!r}: not changed "
            "(rename it in the admin, or fix the file)"
        )
        return True
    result.status, result.name = EXISTS, name
    if tags != result.tags:
        result.reason = (
            f"its tags are {', '.join(tags) or 'none'}, not changed (`tenant_tag` changes them)"
        )
    return True


def _attempt(batch: _Batch, result: RowResult, call: Callable[[], Any]) -> Any | None:
    """``call``'s answer, or None when it was refused: the hourly limit stops the batch,
    any other refusal is this row's reason."""
    try:
        return call()
    except tenants.CreationLimitReached as exc:
        _stop(batch, result, exc)
    except TenancyError as exc:
        result.reason = str(exc)
    return None


def _check(batch: _Batch, result: RowResult) -> None:
    checked = _attempt(
        batch,
        result,
        lambda: tenants.check_creation(
            result.org_id,
            result.name,
            override_hourly_limit=batch.override,
            tenant_type=batch.tenant_type,
        ),
    )
    if checked is None:
        return
    result.status, result.schema = WOULD_CREATE, checked.schema
    if batch.left is not None:
        batch.left -= 1


def _create(batch: _Batch, result: RowResult) -> None:
    created = _attempt(
        batch,
        result,
        lambda: tenants.create_tenant(
            result.org_id,
            result.name,
            actor=batch.actor,
            tags=result.tags,
            override_hourly_limit=batch.override,
            tenant_type=batch.tenant_type,
        ),
    )
    if created is None:
        return
    result.status, result.schema, result.path = CREATED, created.schema, created.path
    result.past_hourly_limit = created.past_hourly_limit
    if created.past_hourly_limit:
        batch.past_limit.append(created.org_id)


def _stop(batch: _Batch, result: RowResult, exc: tenants.CreationLimitReached) -> None:
    result.status, result.reason = NOT_CREATED, LIMIT_REASON
    batch.report.limit_message = str(exc)
    batch.stopped = True
