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
from dataclasses import dataclass
from pathlib import Path

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

    @property
    def number(self) -> int:
        return int(self.version)


def discover(migrations_dir: Path | str, scope: str) -> list[Migration]:
    """Every migration of a scope, ordered by version. Duplicate versions are an error."""
    if scope not in SCOPES:
        raise SourceError(f"Unknown migration scope {scope!r}; expected one of {SCOPES}.")
    directory = Path(migrations_dir) / scope
    if not directory.is_dir():
        return []
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        migration = load(path, scope)
        if migration.number in found:
            raise SourceError(
                f"Two {scope} migrations share version {migration.version}: "
                f"{found[migration.number].name} and {migration.name}."
            )
        found[migration.number] = migration
    return [found[number] for number in sorted(found)]


def load(path: Path, scope: str) -> Migration:
    match = _FILENAME.fullmatch(path.name)
    if not match:
        raise SourceError(
            f"{path}: migration files are named NNN_description.sql (e.g. 004_add_feature.sql)."
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not UTF-8 ({exc}).") from exc
    # Line endings do not change what a migration does: a checkout with CRLF is not drift.
    text = text.replace("\r\n", "\n")
    return _parse(path, scope, match["version"], match["slug"], text)


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
    )


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
