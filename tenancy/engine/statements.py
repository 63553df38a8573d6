"""SQL statements: splitting and classification by PostgreSQL's own parser (pglast),
and the ``{{placeholder}}`` rendering of migration files."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import pglast
from pglast import ast
from pglast.stream import RawStream
from psycopg import sql

from tenancy.engine.errors import TenancyError

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")
PLACEHOLDERS = ("schema", "tenant_role", "app_role", "owner_group")


class StatementError(TenancyError, ValueError):
    pass


def render(text: str, identifiers: Mapping[str, str]) -> str:
    """Replace ``{{name}}`` with the identifier, quoted by psycopg as PostgreSQL would."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in identifiers:
            known = ", ".join("{{" + p + "}}" for p in sorted(identifiers))
            raise StatementError(f"Unknown placeholder {{{{{name}}}}}; available: {known}.")
        return sql.Identifier(identifiers[name]).as_string(None)

    return _PLACEHOLDER.sub(substitute, text)


def render_for_parsing(text: str) -> str:
    """Render every placeholder with a neutral identifier, so the parser can read the file."""
    return _PLACEHOLDER.sub('"placeholder"', text)


def split(text: str) -> list[str]:
    """The statements of ``text``, split by the parser (dollar quotes, comments and all)."""
    try:
        return [s for s in pglast.split(text, with_parser=True) if s.strip()]
    except pglast.parser.ParseError as exc:
        raise StatementError(f"SQL syntax error: {exc}") from exc


def has_statements(text: str) -> bool:
    try:
        return bool(split(text))
    except StatementError:
        return bool(text.strip())


def _reason(stmt: ast.Node) -> str | None:
    if isinstance(stmt, ast.IndexStmt) and stmt.concurrent:
        return "CREATE INDEX CONCURRENTLY"
    if isinstance(stmt, ast.DropStmt) and stmt.concurrent:
        return "DROP INDEX CONCURRENTLY"
    if isinstance(stmt, ast.ReindexStmt) and any(
        getattr(p, "defname", None) == "concurrently" for p in (stmt.params or ())
    ):
        return "REINDEX CONCURRENTLY"
    if isinstance(stmt, ast.VacuumStmt):
        return "VACUUM" if stmt.is_vacuumcmd else None
    if isinstance(stmt, (ast.CreatedbStmt, ast.DropdbStmt)):
        return "CREATE/DROP DATABASE"
    if isinstance(stmt, ast.AlterSystemStmt):
        return "ALTER SYSTEM"
    if isinstance(stmt, ast.AlterTableStmt) and any(
        isinstance(getattr(c, "def_", None), ast.PartitionCmd) and c.def_.concurrent
        for c in (stmt.cmds or ())
    ):
        return "DETACH PARTITION CONCURRENTLY"
    if isinstance(stmt, ast.TransactionStmt):
        return "explicit transaction control (BEGIN/COMMIT)"
    return None


def non_transactional_reason(text: str) -> str | None:
    """Why ``text`` cannot run inside a transaction block, or None if it can."""
    try:
        parsed = pglast.parse_sql(text)
    except pglast.parser.ParseError as exc:
        raise StatementError(f"SQL syntax error: {exc}") from exc
    for raw in parsed:
        reason = _reason(raw.stmt)
        if reason:
            return reason
    return None


# Statements whose waits for locks do not hold readers up: they ask for SHARE UPDATE
# EXCLUSIVE, which no reader or writer conflicts with, then wait for older transactions.
_READERS_PASS = {"CREATE INDEX CONCURRENTLY", "DROP INDEX CONCURRENTLY", "REINDEX CONCURRENTLY"}


def readers_pass_while_waiting(statement: str) -> bool:
    """True when ``statement``'s lock waits let readers and writers of the table through
    (a concurrent index build waits for every older transaction, harmlessly)."""
    return non_transactional_reason(statement) in _READERS_PASS


@dataclass(frozen=True)
class IndexTarget:
    """The index a ``CREATE INDEX CONCURRENTLY`` builds: its name, and its table as a
    quoted (possibly schema-qualified) name for ``to_regclass``."""

    name: str
    table: str


def concurrent_index(statement: str) -> IndexTarget | None:
    """The index ``statement`` builds when it is a ``CREATE INDEX CONCURRENTLY`` that names
    it. An unnamed one gets a name PostgreSQL generates while building it, so nothing can
    tell beforehand whether an interrupted run already built it: None."""
    try:
        parsed = pglast.parse_sql(statement)
    except pglast.parser.ParseError as exc:
        raise StatementError(f"SQL syntax error: {exc}") from exc
    if len(parsed) != 1:
        return None
    stmt = parsed[0].stmt
    if not (isinstance(stmt, ast.IndexStmt) and stmt.concurrent and stmt.idxname):
        return None
    relation = stmt.relation
    parts = [p for p in (relation.schemaname, relation.relname) if p]
    return IndexTarget(stmt.idxname, sql.Identifier(*parts).as_string(None))


def without_concurrently(statement: str) -> str:
    """The same statement built non-concurrently: on a brand-new schema whose tables are
    empty, a concurrent index build gains nothing and cannot run inside the creation's
    transaction. Statements of any other kind are returned unchanged."""
    parsed = pglast.parse_sql(statement)
    changed = False
    for raw in parsed:
        stmt = raw.stmt
        if isinstance(stmt, (ast.IndexStmt, ast.DropStmt)) and stmt.concurrent:
            stmt.concurrent = False
            changed = True
        elif isinstance(stmt, ast.ReindexStmt) and stmt.params:
            stmt.params = (
                tuple(p for p in stmt.params if getattr(p, "defname", None) != "concurrently")
                or None
            )
            changed = True
    return RawStream()(parsed) if changed else statement
