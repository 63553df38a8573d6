"""The SQL inside DO blocks and function bodies, read with PostgreSQL's own parsers (pglast).

A body is a string to the SQL parser, so a check that looks only at a file's statements
would miss ``DO $$ BEGIN DROP SCHEMA tenant_org_victim CASCADE; END $$``. Here a PL/pgSQL
body goes through PL/pgSQL's parser and every statement and expression in it through the
SQL parser; a ``LANGUAGE sql`` body through the SQL parser. What cannot be read is
reported instead of being let through: SQL built at run time (``EXECUTE``), transaction
control inside a body, bodies in other languages, code the parsers refuse.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pglast
from pglast import ast
from pglast.stream import RawStream

# PL/pgSQL statements whose SQL is a string computed at run time.
_DYNAMIC = frozenset({"PLpgSQL_stmt_dynexecute", "PLpgSQL_stmt_dynfors"})
_TRANSACTION = {"PLpgSQL_stmt_commit": "COMMIT", "PLpgSQL_stmt_rollback": "ROLLBACK"}
# PLpgSQL_expr parse modes (PostgreSQL's RawParseMode): 0 a whole statement, 2 an
# expression, 3-5 an assignment "target := expression".
_STATEMENT, _ASSIGNMENTS = 0, (3, 4, 5)
_READABLE_LANGUAGES = ("plpgsql", "sql")


@dataclass(frozen=True)
class Body:
    what: str  # "DO block", "CREATE FUNCTION f body"
    statements: tuple[ast.Node, ...]  # what the body runs, as parsed statements
    problems: tuple[str, ...]  # what in it cannot be read or allowed


def read(node: ast.Node) -> Body | None:
    """The body of a DO block or CREATE FUNCTION/PROCEDURE; None for any other statement
    and for a ``BEGIN ATOMIC`` body (already part of the statement's own tree)."""
    if isinstance(node, ast.DoStmt):
        options, what = node.args, "DO block"
    elif isinstance(node, ast.CreateFunctionStmt) and node.sql_body is None:
        kind = "CREATE PROCEDURE" if node.is_procedure else "CREATE FUNCTION"
        name = ".".join(s.sval for s in node.funcname or () if isinstance(s, ast.String))
        options, what = node.options, f"{kind} {name} body"
    else:
        return None
    language = _option(options, "language") or "plpgsql"
    source = _option(options, "as")
    if language not in _READABLE_LANGUAGES:
        return Body(what, (), (f"LANGUAGE {language} cannot be read by these checks",))
    if language == "sql":
        return _sql_body(what, source or "")
    return _plpgsql_body(what, node)


def _option(options: object, name: str) -> str | None:
    for option in options or ():  # type: ignore[attr-defined]
        if isinstance(option, ast.DefElem) and option.defname == name:
            arg = option.arg
            if isinstance(arg, (list, tuple)):  # AS 'body' is a one-item list
                arg = arg[0] if len(arg) == 1 else None
            if isinstance(arg, ast.String):
                return arg.sval.lower() if name == "language" else arg.sval
    return None


def _sql_body(what: str, source: str) -> Body:
    try:
        found = tuple(raw.stmt for raw in pglast.parse_sql(source))
    except pglast.parser.ParseError as exc:
        return Body(what, (), (f"its SQL cannot be parsed ({exc})",))
    return Body(what, found, ())


def _plpgsql_body(what: str, node: ast.Node) -> Body:
    try:
        tree = _parse_plpgsql(RawStream()(node))
    except Exception as exc:  # noqa: BLE001 - pglast raises several kinds; all mean "unreadable"
        return Body(what, (), (f"its PL/pgSQL cannot be parsed ({exc})",))
    queries: list[tuple[str, int]] = []
    problems: list[str] = []
    _visit(tree, queries, problems)
    found: list[ast.Node] = []
    for query, mode in queries:
        try:
            found += [raw.stmt for raw in pglast.parse_sql(_as_statement(query, mode))]
        except pglast.parser.ParseError as exc:
            problems.append(f"its statement {query!r} cannot be parsed ({exc})")
    return Body(what, tuple(found), tuple(dict.fromkeys(problems)))


@functools.lru_cache(maxsize=256)
def _parse_plpgsql(text: str) -> object:
    return pglast.parse_plpgsql(text)


def _visit(value: object, queries: list[tuple[str, int]], problems: list[str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _DYNAMIC or key == "dynquery":
                problems.append(
                    "EXECUTE runs SQL built at run time, which these checks cannot read "
                    "(write the statements out)"
                )
            elif key in _TRANSACTION:
                problems.append(f"{_TRANSACTION[key]} inside a body ends the engine's transaction")
            elif key == "PLpgSQL_expr":
                queries.append((item.get("query", ""), item.get("parseMode", _STATEMENT)))
            else:
                _visit(item, queries, problems)
    elif isinstance(value, list):
        for item in value:
            _visit(item, queries, problems)


def _as_statement(query: str, mode: int) -> str:
    """An expression or assignment of PL/pgSQL as a SELECT the SQL parser reads."""
    if mode == _STATEMENT:
        return query
    if mode in _ASSIGNMENTS and ":=" in query:
        query = query.split(":=", 1)[1]
    elif mode in _ASSIGNMENTS and "=" in query:
        query = query.split("=", 1)[1]
    return "SELECT " + query
