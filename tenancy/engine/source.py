"""Script discovery: ``migrations_sql/{public,tenant}/NNN_name.sql`` → ``Migration``.

The seed's file format: header comments (``-- Migration:``, ``-- Description:``), an
``-- UP`` marker, the SQL, a ``-- DOWN`` marker and the rollback SQL, often inside
``/* … */`` so that running the file never runs it. A file without an UP marker is UP
from its first line to its DOWN marker (or its end). A header line
``-- transactional: false`` marks a file that must run outside a transaction; statements
that cannot run in one (``CREATE INDEX CONCURRENTLY``, …) are recognised by the parser.
"""

from __future__ import annotations

import functools
import hashlib
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pglast
import psycopg

from tenancy.engine import statements
from tenancy.engine.errors import TenancyError

PUBLIC = "public"
TENANT = "tenant"
SCOPES = (PUBLIC, TENANT)

_FILENAME = re.compile(r"(?P<version>\d+)_(?P<slug>[A-Za-z0-9_\-]+)\.sql")
_UP = re.compile(r"^\s*--\s*UP\b.*$", re.IGNORECASE | re.MULTILINE)
_DOWN = re.compile(r"^\s*--\s*DOWN\b.*$", re.IGNORECASE | re.MULTILINE)
_HEADER = re.compile(r"^\s*--\s*(?P<key>[A-Za-z][A-Za-z \-]*?)\s*:\s*(?P<value>.*?)\s*$")
_BLOCK_COMMENT = re.compile(r"^\s*/\*(?P<body>.*)\*/\s*$", re.DOTALL)


class SourceError(TenancyError):
    """A migration file that cannot be used as it is."""


@dataclass(frozen=True)
class Limits:
    """What a migration file may be, checked before it is parsed: a file is read whole and
    parsed by PostgreSQL's parser (and the rules' checks) in every run, dry run and lint,
    so an oversized one would hold them for minutes. Settings:
    ``TENANCY["MAX_FILE_BYTES"]``, ``TENANCY["MAX_STATEMENTS"]``."""

    max_bytes: int = 5 * 1024 * 1024
    max_statements: int = 10_000


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Migration:
    scope: str
    version: str
    name: str
    description: str
    path: Path
    up_sql: str
    down_sql: str | None
    checksum: str
    transactional: bool
    non_transactional_reason: str | None = None
    # 1-based line of the file where ``up_sql`` (stripped) begins: for file:line messages.
    up_line: int = 1
    # 1-based line where the DOWN part begins (0 without one).
    down_line: int = 0
    # A Django migration of a tenant app (see ``Runner``); None for a SQL file.
    runner: Runner | None = None
    # Steps that must come before this one (a SQL file's ``-- Depends:`` header, a Django
    # migration's dependencies on tenant steps): keys as ``key`` gives them.
    depends: tuple[str, ...] = ()

    @property
    def number(self) -> int:
        """A SQL file's version as a number (Django steps have none)."""
        return int(self.version)

    @property
    def key(self) -> int | str:
        """What the plan matches ledger rows by (``version_key``)."""
        return version_key(self.version)

    @property
    def is_sql_file(self) -> bool:
        return self.runner is None


def version_of(name: str) -> str:
    """A step's version from its name: '004_feature.sql' → '004'; a Django step's name
    (``app.0001_initial``) is its version."""
    return name.split("_", 1)[0] if name.endswith(".sql") else name


def version_key(version: str) -> int | str:
    """A version as the plan compares them: a SQL file's number (``004`` and ``4`` are one
    version), a Django step's ``app.name``."""
    return int(version) if version.isdigit() else version


class RunnerError(Exception):
    """A runner's step failed; the message names the operation and the error (the engine
    puts the step's name in front). A lock not granted is raised as is, to be retried."""


@dataclass(frozen=True)
class Ran:
    """What a ``Runner`` did in a schema: the SQL it sent (for ``--verbose`` and errors) and
    the SQL that undoes it (the ledger's ``rollback_sql``; None when it cannot be undone
    as SQL)."""

    sql: str
    rollback_sql: str | None


# How the engine runs SQL of a step (one statement or several): in the schema's transaction
# in one round trip, rewritten for a schema being created, or statement by statement
# outside a transaction (lock retries, the concurrent index resume), as a file's would be.
Execute = Callable[[str], None]


class Runner(Protocol):
    """A step whose SQL is made when it runs, in the schema's transaction and as the
    tenant's owner with the schema's search_path (a Django migration: compiled by Django's
    schema editor, with Python operations run between its statements). The engine treats
    it as a file otherwise: the same lock, owner, sandbox, checksum and ledger row."""

    def run(
        self, conn: psycopg.Connection, schema: str, execute: Execute, enter: Callable[[], None]
    ) -> Ran:
        """Run the step. ``execute`` sends SQL; ``enter`` must be called before the runner
        uses ``conn`` itself (to introspect, to run Python): the tenant's context (owner
        role, search_path) is then current. Until then it travels with the first SQL."""
        ...

    def record_sql(self) -> str:
        """SQL that records the step as applied in the schema without running it
        (``--fake``), run as the owner."""
        ...


def discover(
    migrations_dir: Path | str, scope: str, limits: Limits = DEFAULT_LIMITS
) -> list[Migration]:
    """Every migration of a scope, ordered by version. Duplicate versions are an error."""
    if scope not in SCOPES:
        raise SourceError(f"Unknown migration scope {scope!r}; expected one of {SCOPES}.")
    directory = Path(migrations_dir) / scope
    try:
        if not directory.is_dir():
            return []
        paths = sorted(directory.glob("*.sql"))
    except OSError as exc:
        raise SourceError(f"{directory}: cannot be read ({exc.strerror or exc}).") from exc
    found: dict[int, Migration] = {}
    for path in paths:
        migration = load(path, scope, limits, root=Path(migrations_dir))
        if migration.number in found:
            raise SourceError(
                f"Two {scope} migrations share version {migration.version}: "
                f"{found[migration.number].name} and {migration.name}."
            )
        found[migration.number] = migration
    return [found[number] for number in sorted(found)]


def load(
    path: Path, scope: str, limits: Limits = DEFAULT_LIMITS, *, root: Path | None = None
) -> Migration:
    """One file. ``root``: the migrations directory, which a symlink may not leave."""
    match = _FILENAME.fullmatch(path.name)
    if not match:
        raise SourceError(
            f"{path}: migration files are named NNN_description.sql (e.g. 004_add_feature.sql)."
        )
    raw = _read(path, limits, root or path.parent)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not UTF-8 ({exc}).") from exc
    # Line endings do not change what a migration does: a checkout with CRLF is not drift.
    text = text.replace("\r\n", "\n")
    _check_statement_count(path, text, limits)
    return _parse(path, scope, match["version"], match["slug"], text)


def _read(path: Path, limits: Limits, root: Path) -> bytes:
    """The file's bytes, refused in one line (never read) when it is not a regular file, is
    a symlink that leads out of the migrations directory, or is over the size limit."""
    try:
        target = path.resolve(strict=True)
        if path.is_symlink() and not target.is_relative_to(root.resolve()):
            raise SourceError(
                f"{path}: a symlink that leads out of the migrations directory; refused, not read."
            )
        info = target.stat()
        if not stat.S_ISREG(info.st_mode):
            raise SourceError(f"{path}: not a regular file (a directory or a device); refused.")
        if info.st_size > limits.max_bytes:
            raise SourceError(
                f"{path}: {info.st_size:,} bytes, over the limit of {limits.max_bytes:,} "
                "(TENANCY['MAX_FILE_BYTES']); split it, or load bulk data another way."
            )
        with target.open("rb") as handle:
            return handle.read(limits.max_bytes + 1)
    except OSError as exc:
        raise SourceError(f"{path}: cannot be read ({exc.strerror or exc}).") from exc


def _check_statement_count(path: Path, text: str, limits: Limits) -> None:
    """Refuse a file of more statements than the limit before it is parsed: PostgreSQL's
    scanner counts them (fast, linear), the parse and the rules' checks would take long."""
    try:
        count = sum(1 for s in pglast.split(text, with_parser=False) if s.strip())
    except pglast.parser.ParseError:
        return  # the parse reports the syntax error with its position
    if count > limits.max_statements:
        raise SourceError(
            f"{path}: {count:,} statements, over the limit of {limits.max_statements:,} "
            "(TENANCY['MAX_STATEMENTS']); split it, or load bulk data another way."
        )


@functools.lru_cache(maxsize=1024)
def _parse(path: Path, scope: str, version: str, slug: str, text: str) -> Migration:
    """Parsing is the costly part (PostgreSQL's parser, twice): done once per content, so
    every tenant creation and run re-reads the files but does not re-parse them."""
    checksum = hashlib.sha256(text.encode()).hexdigest()
    headers = _headers(text)
    up_sql, down_sql = split_up_down(text)
    if not statements.has_statements(up_sql):
        raise SourceError(f"{path}: the UP part holds no SQL statement.")
    directive = headers.get("transactional")
    if directive is not None and directive.lower() not in {"true", "false", "yes", "no"}:
        raise SourceError(f"{path}: '-- transactional:' takes true or false, not {directive!r}.")
    reason: str | None = None
    try:
        reason = statements.non_transactional_reason(statements.render_for_parsing(up_sql))
    except statements.StatementError as exc:
        raise SourceError(f"{path}: {exc}") from exc
    if directive is not None and directive.lower() in {"false", "no"}:
        reason = reason or "marked '-- transactional: false'"
    return Migration(
        scope=scope,
        version=version,
        name=path.name,
        description=headers.get("description", slug.replace("_", " ")),
        path=path,
        up_sql=up_sql,
        down_sql=down_sql,
        checksum=checksum,
        transactional=reason is None,
        non_transactional_reason=reason,
        up_line=up_line(text),
        down_line=down_line(text) if down_sql else 0,
        depends=_depends(headers.get("depends", "")),
    )


def _depends(value: str) -> tuple[str, ...]:
    """``-- Depends: notes.0002_add_author, 003`` → the steps a file must follow."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def split_up_down(text: str) -> tuple[str, str | None]:
    """(UP, DOWN) of a file; DOWN unwrapped from ``/* … */`` and None when empty."""
    down_match = _DOWN.search(text)
    body, down = (
        (text[: down_match.start()], text[down_match.end() :]) if down_match else (text, "")
    )
    up_match = _UP.search(body)
    up = body[up_match.end() :] if up_match else body
    down = down.strip()
    wrapped = _BLOCK_COMMENT.match(down)
    if wrapped:
        down = wrapped["body"].strip()
    return up.strip() + "\n", (down + "\n") if statements.has_statements(down) else None


def up_line(text: str) -> int:
    """The 1-based line of ``text`` where the UP part's first non-blank character is, as
    :func:`split_up_down` finds it (after the UP marker, before the DOWN marker)."""
    down_match = _DOWN.search(text)
    body = text[: down_match.start()] if down_match else text
    up_match = _UP.search(body)
    start = up_match.end() if up_match else 0
    rest = body[start:]
    offset = start + len(rest) - len(rest.lstrip())
    return text.count("\n", 0, offset) + 1


def down_line(text: str) -> int:
    """The 1-based line of ``text`` where the DOWN part's SQL begins (after its marker and
    an opening ``/*``)."""
    down_match = _DOWN.search(text)
    if not down_match:
        return 0
    rest = text[down_match.end() :]
    offset = down_match.end() + len(rest) - len(rest.lstrip())
    if text.startswith("/*", offset):
        rest = text[offset + 2 :]
        offset += 2 + len(rest) - len(rest.lstrip())
    return text.count("\n", 0, offset) + 1


def _headers(text: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line.lstrip().startswith("--"):
            break
        match = _HEADER.match(line)
        if match and match["key"].strip().lower() not in {"up", "down"}:
            headers[match["key"].strip().lower()] = match["value"]
    return headers
