"""Rules for migration files: refusals (a file that breaks one never runs) and lint
(risky statements, configurable), read by PostgreSQL's own parser (pglast) and squawk.

``refusals`` guards the engine's own guarantees: one transaction per schema, the
``search_path`` and role the engine sets, a tenant file changing only its own schema.
``lint`` adds the safety rules (locks, rewrites, destructive changes) and squawk's.
The linter catches mistakes, not malice: SQL built at run time cannot be read here.
"""

from __future__ import annotations

import bisect
import functools
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pglast
from pglast import ast
from pglast.enums import (
    CURSOR_OPT_HOLD,
    AlterTableType,
    ConstrType,
    GrantTargetType,
    ObjectType,
    RoleSpecType,
    TransactionStmtKind,
    VariableSetKind,
)

from tenancy.engine import bodies, statements
from tenancy.engine.errors import TenancyError
from tenancy.engine.source import TENANT, Migration

ERROR, WARNING, OFF = "error", "warning", "off"
LEVELS = (ERROR, WARNING, OFF)

# Always errors: they cannot be turned off in settings nor ignored in a file.
REFUSAL_RULES = (
    "syntax-error",
    "transaction-control",
    "session-state",
    "foreign-schema",
    "writes-public",
    "privileges",
    "forbidden-function",
    "outlives-file",
    "unreadable-body",
)
# Rule → default severity; settings (TENANCY["LINT"]) may change them or turn them "off".
SAFETY_RULES: dict[str, str] = {
    "index-not-concurrent": WARNING,
    "unnamed-concurrent-index": WARNING,
    "add-column-not-null-without-default": ERROR,
    "alter-column-type": WARNING,
    "drop-column": WARNING,
    "drop-table": WARNING,
    "constraint-without-not-valid": WARNING,
    "missing-down": WARNING,
    "shared-reference-grant": WARNING,
    # What Citus' schema-based sharding refuses in a tenant schema: off on a plain server,
    # errors on a Citus cluster (``for_citus``), or set in settings to prepare for one.
    "citus-trigger": OFF,
    "citus-inheritance": OFF,
    "citus-shared-reference": OFF,
}
CITUS_RULES = {
    "citus-trigger": ERROR,
    "citus-inheritance": ERROR,
    "citus-shared-reference": WARNING,
}
SQUAWK = "squawk"  # settings key for every squawk rule at once ("off" skips squawk)
SQUAWK_EXCLUDED = frozenset(
    {
        # Ours already check these, knowing which tables the same file creates (new, empty)
        # and honouring `-- lint: ignore`; squawk would report each one twice.
        "require-concurrent-index-creation",
        "adding-required-field",
        "changing-column-type",
        "ban-drop-column",
        "ban-drop-table",
        "constraint-missing-not-valid",
        "adding-foreign-key-constraint",
        "transaction-nesting",
        "ban-uncommitted-transaction",
        # The engine sets lock_timeout for every file and retries on it; a statement_timeout
        # would cut a legitimate long CREATE INDEX CONCURRENTLY.
        "require-timeout-settings",
        "require-lock-timeout",
        "require-statement-timeout",
        # A file runs in one transaction with its ledger row: a failure undoes all of it, so
        # IF NOT EXISTS guards are not needed to re-run it.
        "prefer-robust-stmts",
        # Column type taste, not migration safety; noisy on the shipped schema (VARCHAR(n),
        # a SMALLINT rating, an INTEGER duration, a CHAR(3) currency code).
        "prefer-text-field",
        "prefer-bigint-over-int",
        "prefer-bigint-over-smallint",
        "ban-char-field",
    }
)

# Placeholders rendered so the parser reads the file and {{schema}} stays recognisable.
TENANT_SCHEMA = "__tenant_schema__"
TENANT_ROLE = "__tenant_role__"
_OTHER_PLACEHOLDER = "__placeholder__"
_SQUAWK_PLACEHOLDER = '"tenant_schema_placeholder"'
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")
_SHARED_SCHEMAS = frozenset({"public", "pg_catalog"})
_TENANT_MAY_NAME = _SHARED_SCHEMAS | {TENANT_SCHEMA}
_SESSION_SETTINGS = frozenset({"search_path", "role", "session_authorization"})
# Settings a function's own SET clause may not change (search_path there is scoped to the
# call, and in a tenant file checked like any schema name).
_IDENTITY_SETTINGS = frozenset({"role", "session_authorization"})
# SET forms that are transaction-scoped by nature.
_TRANSACTION_SETTINGS = frozenset({"TRANSACTION", "transaction_isolation"})
_IGNORE = re.compile(r"--\s*lint:\s*ignore\b(?P<names>[^\n]*)", re.IGNORECASE)
_LEADING_BLANKS = re.compile(r"(?:\s+|--[^\n]*|/\*.*?\*/)*", re.DOTALL)
_SERIAL_TYPES = frozenset({"serial", "bigserial", "smallserial", "serial2", "serial4", "serial8"})


class LintConfigError(TenancyError, ValueError):
    """A severity mapping that names an unknown rule or level, or tries to relax a refusal."""


@dataclass(frozen=True)
class Problem:
    path: str  # the file's path (str(migration.path))
    line: int  # 1-based line in the file where the offending statement starts
    rule: str  # e.g. "transaction-control", "squawk:renaming-column"
    severity: str  # "error" | "warning"
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.severity} [{self.rule}] {self.message}"


@dataclass(frozen=True)
class _Statement:
    node: ast.Node
    line: int  # file lines, 1-based
    end_line: int
    ignored: frozenset[str]  # rules named by `-- lint: ignore` above or on its first line


# --- public API -----------------------------------------------------------------------------


def refusals(migration: Migration) -> list[Problem]:
    """Rules a file must pass before anything runs (always errors, never ignorable)."""
    return list(_refusals(migration))


def lint(
    migrations: Sequence[Migration], severities: Mapping[str, str] | None = None
) -> list[Problem]:
    """refusals() plus the safety rules plus squawk, for files of one or both scopes.
    `migrations` are in version order per scope; rules that need 'earlier files'
    (tables created by earlier files of the same scope) use that order.

    The problems depend on nothing but the files' content and the severities, so the
    answer is kept for the same files: a staged rollout lints them once, not per stage."""
    try:
        return list(_lint_once(tuple(migrations), tuple(sorted((severities or {}).items()))))
    except TypeError:  # a severity that cannot be a key (the check reports it)
        return _lint(migrations, severities or {})


@functools.lru_cache(maxsize=16)
def _lint_once(
    migrations: tuple[Migration, ...], severities: tuple[tuple[str, str], ...]
) -> tuple[Problem, ...]:
    return tuple(_lint(migrations, dict(severities)))


def _lint(migrations: Sequence[Migration], severities: Mapping[str, str]) -> list[Problem]:
    levels = _levels(severities)
    problems: list[Problem] = []
    for group in _groups(migrations):
        problems += _lint_group(group, levels)
    problems += _ungranted_reference_problems(migrations, levels["shared-reference-grant"])
    if migrations and levels.get(SQUAWK) != OFF:
        problems += _squawk_problems(migrations, levels)
    # set(): squawk reports e.g. each column of a statement, all at the statement's line.
    return sorted(set(problems), key=lambda p: (p.path, p.line, p.rule, p.message))


# --- parsing --------------------------------------------------------------------------------


def _render(text: str, schema: str, other: str, role: str | None = None) -> str:
    def value(match: re.Match) -> str:
        if match[1] == "schema":
            return schema
        return role if match[1] == "tenant_role" and role else other

    return _PLACEHOLDER.sub(value, text)


def _statements(migration: Migration) -> tuple[_Statement, ...]:
    """The UP part's statements with their file lines. Raises pglast's ParseError."""
    return _parse(migration.up_sql, migration.up_line)


def _down_statements(migration: Migration) -> tuple[_Statement, ...]:
    """The DOWN part's statements (what ``--rollback`` runs). Raises pglast's ParseError."""
    return _parse(migration.down_sql, migration.down_line) if migration.down_sql else ()


@functools.lru_cache(maxsize=1024)
def _parse(sql_text: str, first_line: int) -> tuple[_Statement, ...]:
    text = _render(sql_text, f'"{TENANT_SCHEMA}"', f'"{_OTHER_PLACEHOLDER}"', f'"{TENANT_ROLE}"')
    lines = text.split("\n")
    line_of = _LineIndex(text)
    found = []
    for raw in pglast.parse_sql(text):
        # pglast turns PostgreSQL's byte offsets into offsets in the str it was given.
        start = _LEADING_BLANKS.match(text, raw.stmt_location).end()
        end = raw.stmt_location + raw.stmt_len if raw.stmt_len else len(text)
        first = line_of(start)  # 0-based line of the text (placeholders hold none)
        last = line_of(max(start, end - 1))
        found.append(
            _Statement(
                raw.stmt, first_line + first, first_line + last, _ignored_above(lines, first)
            )
        )
    return tuple(found)


class _LineIndex:
    """0-based line of an offset, by bisection over the line starts: counting newlines from
    the start for every statement would be quadratic in a long file."""

    def __init__(self, text: str) -> None:
        self._starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def __call__(self, offset: int) -> int:
        return bisect.bisect_right(self._starts, offset) - 1


def _ignored_above(lines: list[str], first: int) -> frozenset[str]:
    """Rules named in `-- lint: ignore` at the end of line ``first`` or in the comment lines
    directly above it."""
    names = _ignore_names(lines[first])
    index = first - 1
    while index >= 0 and lines[index].lstrip().startswith("--"):
        names |= _ignore_names(lines[index])
        index -= 1
    return frozenset(names)


def _ignore_names(line: str) -> set[str]:
    match = _IGNORE.search(line)
    return {n for n in re.split(r"[,\s]+", match["names"]) if n} if match else set()


def walk(value: object) -> Iterator[ast.Node]:
    """Every node of a statement tree, the statement itself first."""
    if isinstance(value, ast.Node):
        yield value
        for name in value:
            yield from walk(getattr(value, name))
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from walk(item)


# --- statement kinds, for messages -----------------------------------------------------------

_KINDS: dict[type, str] = {
    ast.CreateStmt: "CREATE TABLE",
    ast.IndexStmt: "CREATE INDEX",
    ast.ViewStmt: "CREATE VIEW",
    ast.InsertStmt: "INSERT INTO",
    ast.UpdateStmt: "UPDATE",
    ast.DeleteStmt: "DELETE FROM",
    ast.MergeStmt: "MERGE INTO",
    ast.TruncateStmt: "TRUNCATE",
    ast.CopyStmt: "COPY FROM",
    ast.CreateSeqStmt: "CREATE SEQUENCE",
    ast.AlterSeqStmt: "ALTER SEQUENCE",
    ast.CreateTrigStmt: "CREATE TRIGGER",
    ast.CreatePolicyStmt: "CREATE POLICY",
    ast.AlterPolicyStmt: "ALTER POLICY",
    ast.CompositeTypeStmt: "CREATE TYPE",
    ast.CreateEnumStmt: "CREATE TYPE",
    ast.CreateRangeStmt: "CREATE TYPE",
    ast.AlterEnumStmt: "ALTER TYPE",
    ast.CreateDomainStmt: "CREATE DOMAIN",
    ast.AlterDomainStmt: "ALTER DOMAIN",
    ast.AlterFunctionStmt: "ALTER FUNCTION",
    ast.RuleStmt: "CREATE RULE",
    ast.RefreshMatViewStmt: "REFRESH MATERIALIZED VIEW",
    ast.CreateSchemaStmt: "CREATE SCHEMA",
    ast.AlterDefaultPrivilegesStmt: "ALTER DEFAULT PRIVILEGES",
}


def _objtype(objtype: ObjectType) -> str:
    words = {"MATVIEW": "MATERIALIZED VIEW", "TABCONSTRAINT": "CONSTRAINT"}
    name = objtype.name.removeprefix("OBJECT_")
    return words.get(name, name.replace("_", " "))


def _kind(node: ast.Node) -> str:
    """The statement's kind as SQL words (CREATE TABLE, DROP SCHEMA, …)."""
    if isinstance(node, ast.DropStmt):
        return f"DROP {_objtype(node.removeType)}"
    if isinstance(node, ast.GrantStmt):
        return "GRANT" if node.is_grant else "REVOKE"
    if isinstance(node, ast.SelectStmt):
        return "SELECT INTO" if node.intoClause else "SELECT"
    if isinstance(node, ast.CreateFunctionStmt):
        return "CREATE PROCEDURE" if node.is_procedure else "CREATE FUNCTION"
    if isinstance(node, ast.AlterTableStmt):
        return f"ALTER {_objtype(node.objtype)}"
    if isinstance(node, ast.RenameStmt):
        return f"ALTER {_objtype(node.renameType)} … RENAME"
    if isinstance(node, ast.AlterObjectSchemaStmt):
        return f"ALTER {_objtype(node.objectType)} … SET SCHEMA"
    if isinstance(node, ast.AlterOwnerStmt):
        return f"ALTER {_objtype(node.objectType)} … OWNER TO"
    if isinstance(node, ast.CommentStmt):
        return f"COMMENT ON {_objtype(node.objtype)}"
    if isinstance(node, ast.DefineStmt):
        return f"CREATE {_objtype(node.kind)}"
    if isinstance(node, ast.CreateTableAsStmt):
        return f"CREATE {_objtype(node.objtype)} AS"
    if isinstance(node, ast.TransactionStmt):
        return _TRANSACTION_KINDS[node.kind]
    if isinstance(node, ast.VariableSetStmt):
        return _set_kind(node)
    camel = type(node).__name__.removesuffix("Stmt")
    return _KINDS.get(type(node)) or re.sub(r"(?<!^)(?=[A-Z])", " ", camel).upper()


_TRANSACTION_KINDS = {
    TransactionStmtKind.TRANS_STMT_BEGIN: "BEGIN",
    TransactionStmtKind.TRANS_STMT_START: "START TRANSACTION",
    TransactionStmtKind.TRANS_STMT_COMMIT: "COMMIT",
    TransactionStmtKind.TRANS_STMT_ROLLBACK: "ROLLBACK",
    TransactionStmtKind.TRANS_STMT_SAVEPOINT: "SAVEPOINT",
    TransactionStmtKind.TRANS_STMT_RELEASE: "RELEASE SAVEPOINT",
    TransactionStmtKind.TRANS_STMT_ROLLBACK_TO: "ROLLBACK TO SAVEPOINT",
    TransactionStmtKind.TRANS_STMT_PREPARE: "PREPARE TRANSACTION",
    TransactionStmtKind.TRANS_STMT_COMMIT_PREPARED: "COMMIT PREPARED",
    TransactionStmtKind.TRANS_STMT_ROLLBACK_PREPARED: "ROLLBACK PREPARED",
}


def _set_kind(node: ast.VariableSetStmt) -> str:
    if node.kind == VariableSetKind.VAR_RESET_ALL:
        return "RESET ALL"
    verb = "RESET" if node.kind == VariableSetKind.VAR_RESET else "SET"
    return f"{verb}{' LOCAL' if node.is_local else ''} {node.name}"


# --- names: qualified references and write targets -------------------------------------------

# Nodes whose attribute is a (possibly qualified) name list: schema.name.
_NAME_LISTS: dict[type, tuple[str, ...]] = {
    ast.FuncCall: ("funcname",),
    ast.TypeName: ("names",),
    ast.CreateFunctionStmt: ("funcname",),
    ast.ObjectWithArgs: ("objname",),
    ast.CreateEnumStmt: ("typeName",),
    ast.CreateRangeStmt: ("typeName",),
    ast.AlterEnumStmt: ("typeName",),
    ast.DefineStmt: ("defnames",),
    ast.CreateDomainStmt: ("domainname",),
    ast.AlterDomainStmt: ("typeName",),
    ast.CollateClause: ("collname",),
    ast.IndexElem: ("opclass", "collation"),
    ast.CreateTrigStmt: ("funcname",),
    ast.CreateStatsStmt: ("defnames",),
    ast.A_Expr: ("name",),  # OPERATOR(schema.op)
}
# Objects whose last name is a part of a table: schema.table.part.
_SUB_OBJECTS = frozenset(
    {
        ObjectType.OBJECT_COLUMN,
        ObjectType.OBJECT_TRIGGER,
        ObjectType.OBJECT_POLICY,
        ObjectType.OBJECT_RULE,
        ObjectType.OBJECT_TABCONSTRAINT,
    }
)


def _strings(items: object) -> list[str]:
    return [i.sval for i in (items or ()) if isinstance(i, ast.String)]  # type: ignore[attr-defined]


def _split(names: list[str]) -> tuple[str | None, str]:
    """(schema or None, object name) of a name list."""
    return (names[-2] if len(names) >= 2 else None, names[-1] if names else "")


def _object(objtype: ObjectType, obj: object) -> tuple[str | None, str]:
    """(schema, name) of an object of DROP/COMMENT/GRANT/…; a schema is ("its name", "")."""
    if objtype == ObjectType.OBJECT_SCHEMA and isinstance(obj, ast.String):
        return obj.sval, ""
    if isinstance(obj, ast.RangeVar):
        return obj.schemaname, obj.relname
    if isinstance(obj, ast.ObjectWithArgs):
        return _split(_strings(obj.objname))
    if isinstance(obj, ast.TypeName):
        return _split(_strings(obj.names))
    if isinstance(obj, ast.String):
        return None, obj.sval
    names = _strings(obj) if isinstance(obj, (list, tuple)) else []
    return _split(names[:-1] if objtype in _SUB_OBJECTS else names)


def _objects(node: ast.Node) -> Iterator[tuple[str | None, str]]:
    """The objects a DROP, COMMENT, GRANT, RENAME, OWNER TO or SET SCHEMA acts on."""
    if isinstance(node, ast.DropStmt):
        for obj in node.objects or ():
            yield _object(node.removeType, obj)
    elif isinstance(node, ast.GrantStmt):
        in_schema = node.targtype == GrantTargetType.ACL_TARGET_ALL_IN_SCHEMA
        objtype = ObjectType.OBJECT_SCHEMA if in_schema else node.objtype
        for obj in node.objects or ():
            yield _object(objtype, obj)
    elif isinstance(node, ast.CommentStmt) and node.object is not None:
        yield _object(node.objtype, node.object)
    elif isinstance(node, (ast.RenameStmt, ast.AlterOwnerStmt, ast.AlterObjectSchemaStmt)):
        objtype = node.renameType if isinstance(node, ast.RenameStmt) else node.objectType
        if node.relation is not None:
            yield node.relation.schemaname, node.relation.relname
        elif node.object is not None:
            yield _object(objtype, node.object)
    elif isinstance(node, ast.AlterDefaultPrivilegesStmt):
        for option in node.options or ():
            if option.defname == "schemas":
                yield from ((schema, "") for schema in _strings(option.arg))


def _schemas(node: ast.Node) -> Iterator[str]:
    """Schemas this node names explicitly (qualified names, schema objects)."""
    if isinstance(node, ast.RangeVar) and node.schemaname:
        yield node.schemaname
    elif isinstance(node, ast.ColumnRef) and len(node.fields or ()) >= 3:
        yield from _strings(node.fields[-3:-2])  # schema.table.column
    elif isinstance(node, ast.DefElem) and node.defname == "schema":
        yield from _strings([node.arg])  # CREATE EXTENSION … SCHEMA x
    elif isinstance(node, ast.VariableSetStmt) and node.name == "search_path":
        # a function's SET search_path clause (a file's own SET is refused as session state)
        yield from (
            a.val.sval
            for a in node.args or ()
            if isinstance(a, ast.A_Const) and isinstance(a.val, ast.String)
        )
    for schema, _ in _objects(node):
        if schema:
            yield schema
    for attr in _NAME_LISTS.get(type(node), ()):
        schema, _ = _split(_strings(getattr(node, attr)))
        if schema:
            yield schema


# Statements (and nodes) whose attribute names the relation they create or change.
_RELATION_TARGETS: dict[type, str] = {
    ast.CreateStmt: "relation",
    ast.ViewStmt: "view",
    ast.IndexStmt: "relation",
    ast.CreateSeqStmt: "sequence",
    ast.AlterSeqStmt: "sequence",
    ast.CompositeTypeStmt: "typevar",
    ast.InsertStmt: "relation",
    ast.UpdateStmt: "relation",
    ast.DeleteStmt: "relation",
    ast.MergeStmt: "relation",
    ast.AlterTableStmt: "relation",
    ast.CreateTrigStmt: "relation",
    ast.CreatePolicyStmt: "table",
    ast.AlterPolicyStmt: "table",
    ast.RuleStmt: "relation",
    ast.RefreshMatViewStmt: "relation",
    ast.ClusterStmt: "relation",
    ast.ReindexStmt: "relation",
}
_NAME_TARGETS: dict[type, str] = {
    ast.CreateFunctionStmt: "funcname",
    ast.CreateEnumStmt: "typeName",
    ast.CreateRangeStmt: "typeName",
    ast.AlterEnumStmt: "typeName",
    ast.DefineStmt: "defnames",
    ast.CreateDomainStmt: "domainname",
    ast.AlterDomainStmt: "typeName",
    ast.CreateStatsStmt: "defnames",
}


def _targets(node: ast.Node) -> Iterator[tuple[str | None, str]]:
    """(schema, name) of what this node creates, writes or changes (not what it reads)."""
    relation = getattr(node, _RELATION_TARGETS.get(type(node), "-"), None)
    if isinstance(relation, ast.RangeVar):
        yield relation.schemaname, relation.relname
    if type(node) in _NAME_TARGETS:
        yield _split(_strings(getattr(node, _NAME_TARGETS[type(node)])))
    into = getattr(node, "into", None) or getattr(node, "intoClause", None)
    if isinstance(into, ast.IntoClause):  # CREATE TABLE AS, SELECT INTO
        yield into.rel.schemaname, into.rel.relname
    if isinstance(node, ast.TruncateStmt):
        yield from ((r.schemaname, r.relname) for r in node.relations or ())
    if isinstance(node, ast.CopyStmt) and node.is_from and node.relation is not None:
        yield node.relation.schemaname, node.relation.relname
    if isinstance(node, ast.AlterFunctionStmt):
        yield _split(_strings(node.func.objname))
    yield from _objects(node)


def _write_label(node: ast.Node, schema: str, name: str) -> str:
    """'CREATE TABLE public.x', 'GRANT ON SCHEMA public', …"""
    on = " ON" if isinstance(node, (ast.GrantStmt, ast.AlterDefaultPrivilegesStmt)) else ""
    return f"{_kind(node)}{on} {f'{schema}.{name}' if name else f'SCHEMA {schema}'}"


# --- refusal rules ---------------------------------------------------------------------------

Check = Callable[[ast.Node], str | None]


def _transaction_control(node: ast.Node) -> str | None:
    if not isinstance(node, ast.TransactionStmt):
        return None
    return (
        f"{_kind(node)} in a migration file: the engine runs each schema's files in one "
        "transaction that it commits with their ledger rows; a file's own transaction "
        "control would commit or discard part of that work behind the ledger's back. "
        "Remove it (a file that must run outside a transaction says '-- transactional: false')."
    )


def _session_state(node: ast.Node) -> str | None:
    kind = None
    if isinstance(node, ast.VariableSetStmt) and (
        node.kind == VariableSetKind.VAR_RESET_ALL or node.name in _SESSION_SETTINGS
    ):
        kind = _kind(node)
    elif isinstance(node, ast.DiscardStmt):
        kind = "DISCARD"
    elif (lasting := _outlives_transaction(node)) is not None:
        return lasting
    else:
        kind = next(filter(None, map(_identity_change, walk(node))), None)
    if kind is None:
        return None
    return (
        f"{kind} in a migration file: the engine sets each schema's search_path and role "
        "for its files; changing them would run the rest of the file, and the files after "
        "it, against another schema or as another role. Name the schema instead "
        "({{schema}}.table in a tenant file, public.table in a public file)."
    )


def _outlives_transaction(node: ast.Node) -> str | None:
    """PREPARE, LISTEN and a cursor WITH HOLD stay on the connection after COMMIT: the
    engine's connections serve one schema after another, so the next schema's files would
    meet them (a name taken, a cursor over another tenant's rows)."""
    if isinstance(node, ast.PrepareStmt):
        kind = "PREPARE"
    elif isinstance(node, ast.ListenStmt):
        kind = "LISTEN"
    elif isinstance(node, ast.DeclareCursorStmt) and node.options & CURSOR_OPT_HOLD:
        kind = "DECLARE … CURSOR WITH HOLD"
    else:
        return None
    return (
        f"{kind} in a migration file outlives the schema's transaction on the engine's "
        "connection, which then serves the next schema: its files would find it there. A "
        "migration needs none of them (a cursor without HOLD ends with the transaction)."
    )


def _identity_change(node: ast.Node) -> str | None:
    """A set_config() of the role, session user or search_path anywhere in a statement, or
    a function's own SET clause that changes the role or the session user."""
    if isinstance(node, ast.CreateFunctionStmt | ast.AlterFunctionStmt):
        options = node.options if isinstance(node, ast.CreateFunctionStmt) else node.actions
        for option in options or ():
            value = option.arg if isinstance(option, ast.DefElem) else None
            if isinstance(value, ast.VariableSetStmt) and value.name in _IDENTITY_SETTINGS:
                return f"a function's SET {value.name} clause"
        return None
    return _set_config_call(node)


def _session_setting(node: ast.Node) -> str | None:
    """A session-level SET in a file that runs in the schema's transaction (checked only
    there: a file run outside a transaction has no transaction to scope it to), or its
    function form, set_config(…, false)."""
    if (call := next(filter(None, map(_session_set_config, walk(node))), None)) is not None:
        return (
            f"{call} in a migration file lasts for the whole connection, and the engine's "
            "connections serve one schema after another: every later schema and file would "
            "run with it. Pass true (is_local): it ends with the schema's transaction."
        )
    if (
        not isinstance(node, ast.VariableSetStmt)
        or node.is_local
        or node.kind == VariableSetKind.VAR_RESET_ALL
        or node.name in _SESSION_SETTINGS | _TRANSACTION_SETTINGS
    ):
        return None
    return (
        f"{_kind(node)} in a migration file lasts for the whole connection, and the engine's "
        "connections serve one schema after another: every later schema and file would run "
        f"with it. Write SET LOCAL {node.name} (it ends with the schema's transaction)."
    )


def _session_set_config(node: ast.Node) -> str | None:
    """ "set_config('x', …, false)" (or with a computed is_local): a session-level setting
    (one of the identity settings is refused already, by ``_identity_change``)."""
    if not isinstance(node, ast.FuncCall) or len(node.args or ()) != 3:
        return None
    if _set_config_call(node) is not None:
        return None
    names = _strings(node.funcname)
    if names[-1:] != ["set_config"] or names[:-1] not in ([], ["pg_catalog"]):
        return None
    local = node.args[2]
    if isinstance(local, ast.A_Const) and isinstance(local.val, ast.Boolean) and local.val.boolval:
        return None
    first = node.args[0]
    named = isinstance(first, ast.A_Const) and isinstance(first.val, ast.String)
    return f"set_config('{first.val.sval}', …, false)" if named else "set_config(…, false)"


def _set_config_call(node: ast.Node) -> str | None:
    """ "set_config('x', …)" when the call may change search_path, role or the session user."""
    if not isinstance(node, ast.FuncCall) or not node.args:
        return None
    names = _strings(node.funcname)
    if names[-1:] != ["set_config"] or names[:-1] not in ([], ["pg_catalog"]):
        return None
    first = node.args[0]
    if isinstance(first, ast.A_Const) and isinstance(first.val, ast.String):
        setting = first.val.sval.lower()
        return f"set_config('{setting}', …)" if setting in _SESSION_SETTINGS else None
    return "set_config() with a computed setting name"


def _foreign_schema(node: ast.Node) -> str | None:
    if _is_schema_ddl(node):
        return (
            f"{_kind(node)} in a tenant file: a tenant file runs once in every tenant schema "
            "and may change only that schema; creating, dropping, renaming or moving "
            "schemas is the engine's job (tenant_create, tenant_drop)."
        )
    foreign = sorted({s for n in walk(node) for s in _schemas(n)} - _TENANT_MAY_NAME)
    if not foreign:
        return None
    return (
        f"{_kind(node)} names schema {', '.join(foreign)}: a tenant file runs in every "
        "tenant schema and may name only its own ({{schema}}, or unqualified names), "
        "public and pg_catalog; another schema is another tenant's data or no tenant's."
    )


def _is_schema_ddl(node: ast.Node) -> bool:
    schema = ObjectType.OBJECT_SCHEMA
    return (
        isinstance(node, (ast.CreateSchemaStmt, ast.AlterObjectSchemaStmt))
        or (isinstance(node, ast.DropStmt) and node.removeType == schema)
        or (isinstance(node, ast.RenameStmt) and node.renameType == schema)
        or (isinstance(node, ast.AlterOwnerStmt) and node.objectType == schema)
    )


def _writes_public(node: ast.Node) -> str | None:
    writes = sorted(
        {
            _write_label(n, schema, name)
            for n in walk(node)
            for schema, name in _targets(n)
            if schema in _SHARED_SCHEMAS
        }
    )
    if not writes:
        return None
    return (
        f"{'; '.join(writes)} in a tenant file: a tenant file runs once per tenant, so a "
        "change to a shared schema would run once per tenant (and as the tenant's role, "
        "which may not change it). Tenant files may read public (SELECT, REFERENCES "
        "public.x); shared objects belong in a public migration."
    )


# Statements about roles, ownership and the server: the engine's, never a tenant file's.
_ENGINE_ONLY: dict[type, str] = {
    ast.DropOwnedStmt: "DROP OWNED",
    ast.ReassignOwnedStmt: "REASSIGN OWNED",
    ast.CreateRoleStmt: "CREATE ROLE",
    ast.AlterRoleStmt: "ALTER ROLE",
    ast.AlterRoleSetStmt: "ALTER ROLE … SET",
    ast.DropRoleStmt: "DROP ROLE",
    ast.GrantRoleStmt: "GRANT/REVOKE of a role",
    ast.AlterOwnerStmt: "ALTER … OWNER TO",
    ast.CreateExtensionStmt: "CREATE EXTENSION",
    ast.AlterExtensionStmt: "ALTER EXTENSION",
    ast.CreateEventTrigStmt: "CREATE EVENT TRIGGER",
    ast.AlterSystemStmt: "ALTER SYSTEM",
    ast.CreatePLangStmt: "CREATE LANGUAGE",
    ast.CreateFdwStmt: "CREATE FOREIGN DATA WRAPPER",
    ast.CreateForeignServerStmt: "CREATE SERVER",
    ast.CreateUserMappingStmt: "CREATE USER MAPPING",
    ast.CreatePublicationStmt: "CREATE PUBLICATION",
    ast.CreateSubscriptionStmt: "CREATE SUBSCRIPTION",
    ast.LoadStmt: "LOAD",
    ast.CreatedbStmt: "CREATE DATABASE",
    ast.DropdbStmt: "DROP DATABASE",
    ast.AlterDatabaseStmt: "ALTER DATABASE",
    ast.AlterDatabaseSetStmt: "ALTER DATABASE … SET",
    ast.CreateTableSpaceStmt: "CREATE TABLESPACE",
}
_GRANTEES_ALLOWED = frozenset({TENANT_ROLE})


def _privileges(node: ast.Node) -> str | None:
    what = _ENGINE_ONLY.get(type(node))
    if isinstance(node, ast.AlterTableStmt) and any(
        cmd.subtype == AlterTableType.AT_ChangeOwner for cmd in node.cmds or ()
    ):
        what = "ALTER TABLE … OWNER TO"
    elif isinstance(node, ast.CopyStmt) and (node.filename or node.is_program):
        what = "COPY to or from a server file or program"
    elif grantees := _other_grantees(node):
        what = f"GRANT to {', '.join(grantees)}"
    if what is None:
        return None
    return (
        f"{what} in a tenant file: a tenant's objects belong to its owner role and are "
        "shared only with its own web role ({{tenant_role}}); roles, owners, grants to "
        "other roles and server-wide objects are the engine's (tenant_create, a public "
        "migration), since a tenant file that changes them opens one tenant to another."
    )


def _other_grantees(node: ast.Node) -> list[str]:
    grant = node.action if isinstance(node, ast.AlterDefaultPrivilegesStmt) else node
    if not isinstance(grant, ast.GrantStmt) or not grant.is_grant:
        return []  # REVOKE only takes away
    names = []
    for spec in grant.grantees or ():
        if spec.roletype == RoleSpecType.ROLESPEC_PUBLIC:
            names.append("PUBLIC")
        elif spec.roletype == RoleSpecType.ROLESPEC_CSTRING and spec.rolename not in (
            _GRANTEES_ALLOWED
        ):
            names.append(spec.rolename.replace(_OTHER_PLACEHOLDER, "{{…}}"))
    return names


# Functions that run SQL given as text, act outside the schema or on the session.
_FORBIDDEN_FUNCTIONS = frozenset(
    {
        "query_to_xml",
        "query_to_xmlschema",
        "query_to_xml_and_xmlschema",
        "cursor_to_xml",
        "cursor_to_xmlschema",
        "table_to_xml",
        "table_to_xmlschema",
        "table_to_xml_and_xmlschema",
        "schema_to_xml",
        "schema_to_xmlschema",
        "schema_to_xml_and_xmlschema",
        "database_to_xml",
        "database_to_xmlschema",
        "database_to_xml_and_xmlschema",
        "ts_stat",
        "lo_create",
        "lo_creat",
        "lo_import",
        "lo_export",
        "lo_unlink",
        "lo_from_bytea",
        "lo_put",
        "pg_advisory_lock",
        "pg_advisory_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
        "pg_advisory_unlock",
        "pg_advisory_unlock_shared",
        "pg_advisory_unlock_all",
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_read_file",
        "pg_read_binary_file",
    }
)


def _forbidden_function(node: ast.Node) -> str | None:
    called = sorted(
        {
            name
            for n in walk(node)
            if isinstance(n, ast.FuncCall)
            for name in _strings(n.funcname)[-1:]
            if name in _FORBIDDEN_FUNCTIONS or name.startswith("dblink")
        }
    )
    if not called:
        return None
    return (
        f"{', '.join(called)}() in a tenant file: it runs SQL given as text, reaches outside "
        "the schema (large objects, files, other connections) or holds session state "
        "(session-level advisory locks); the engine takes the locks a run needs."
    )


# Tables in a tenant schema the engine writes itself (Django's record of applied
# migrations, written as the owner in the schema's transaction).
ENGINE_WRITTEN_TABLES = frozenset({"django_migrations"})


def _outlives_file(node: ast.Node) -> str | None:
    """Code a tenant file leaves to run after its own statements, when the engine works on
    (docs/isolation.md): the database already runs all of it as the tenant's owner or not
    at all; refusing it here says so before anything runs."""
    if (
        isinstance(node, ast.CreateTrigStmt)
        and node.isconstraint
        and (node.deferrable or node.initdeferred)
    ):
        return (
            "a deferrable constraint trigger fires at COMMIT, after the file; write an "
            "ordinary AFTER trigger (it fires at the end of its statement)"
        )
    if isinstance(node, (ast.CreateTrigStmt, ast.RuleStmt)) and (
        node.relation.relname in ENGINE_WRITTEN_TABLES
    ):
        what = "trigger" if isinstance(node, ast.CreateTrigStmt) else "rule"
        return f"a {what} on {node.relation.relname}, which the engine writes after the file"
    relation = _created_relation(node)
    if relation is not None and relation.relpersistence == "t":
        return (
            "a temporary object outlives the file on the engine's connection, where its "
            "name would stand in for a catalog or shared table (tenant roles may not "
            "create them); use a table of the schema and drop it"
        )
    if isinstance(node, ast.CreateStmt) and node.oncommit and node.oncommit.name != "ONCOMMIT_NOOP":
        return "ON COMMIT acts at COMMIT, after the file"
    if isinstance(node, ast.DefineStmt) and node.kind == ObjectType.OBJECT_OPERATOR:
        return (
            "an operator in a tenant schema changes what an operator such as = means for "
            "every query that has the schema in its search_path"
        )
    return None


def _created_relation(node: ast.Node) -> ast.RangeVar | None:
    if isinstance(node, (ast.CreateStmt, ast.CreateSeqStmt)):
        return node.relation if isinstance(node, ast.CreateStmt) else node.sequence
    if isinstance(node, ast.ViewStmt):
        return node.view
    if isinstance(node, ast.CreateTableAsStmt) and node.into is not None:
        return node.into.rel
    if isinstance(node, ast.SelectStmt) and node.intoClause is not None:
        return node.intoClause.rel
    return None


_REFUSALS: tuple[tuple[str, Check], ...] = (
    ("transaction-control", _transaction_control),
    ("session-state", _session_state),
)
_TRANSACTIONAL_REFUSALS = (*_REFUSALS, ("session-state", _session_setting))
_TENANT_ONLY: tuple[tuple[str, Check], ...] = (
    ("foreign-schema", _foreign_schema),
    ("writes-public", _writes_public),
    ("privileges", _privileges),
    ("forbidden-function", _forbidden_function),
    ("outlives-file", _outlives_file),
)


def _checks(scope: str, transactional: bool) -> tuple[tuple[str, Check], ...]:
    checks = _TRANSACTIONAL_REFUSALS if transactional else _REFUSALS
    return (*checks, *_TENANT_ONLY) if scope == TENANT else checks


def _check(
    node: ast.Node, checks: tuple[tuple[str, Check], ...], tenant: bool
) -> Iterator[tuple[str, str]]:
    """(rule, message) for a statement and, in a tenant file, for every statement of a DO
    block or function body in it: a body runs as the file's own statements do."""
    for rule, check in checks:
        if message := check(node):
            yield rule, message
    body = bodies.read(node) if tenant else None
    if body is None:
        return
    for problem in body.problems:
        yield (
            "unreadable-body",
            (
                f"{body.what}: {problem}. A tenant file's code must be readable here, since it "
                "runs as the tenant's owner and everything it does is checked before it runs."
            ),
        )
    for inner in body.statements:
        for rule, message in _check(inner, checks, tenant):
            yield rule, f"{body.what}: {message}"


@functools.lru_cache(maxsize=1024)
def _refusals(migration: Migration) -> tuple[Problem, ...]:
    """Cached: tenant creation checks the same files for every new tenant."""
    checks = _checks(migration.scope, migration.transactional)
    up = _text_refusals(
        str(migration.path), migration.up_sql, migration.up_line, migration.scope, checks
    )
    if not migration.down_sql:
        return up
    return up + _text_refusals(
        f"{migration.path} (DOWN)",
        migration.down_sql,
        migration.down_line,
        migration.scope,
        _checks(migration.scope, _transactional(migration.down_sql)),
    )


def rollback_refusals(label: str, down_sql: str, scope: str) -> list[Problem]:
    """The refusal rules on rollback SQL as the ledger recorded it (``label`` names it)."""
    checks = _checks(scope, _transactional(down_sql))
    return list(_text_refusals(label, down_sql, 1, scope, checks))


def _transactional(text: str) -> bool:
    try:
        return statements.non_transactional_reason(statements.render_for_parsing(text)) is None
    except statements.StatementError:
        return True  # the syntax error is reported by the refusals themselves


def _text_refusals(
    path: str, text: str, first_line: int, scope: str, checks: tuple[tuple[str, Check], ...]
) -> tuple[Problem, ...]:
    try:
        found = _parse(text, first_line)
    except pglast.parser.ParseError as exc:
        return (Problem(path, first_line, "syntax-error", ERROR, f"SQL syntax error: {exc}"),)
    found_problems = {
        Problem(path, stmt.line, rule, ERROR, message)
        for stmt in found
        for rule, message in _check(stmt.node, checks, scope == TENANT)
    }
    return tuple(sorted(found_problems, key=lambda p: (p.line, p.rule, p.message)))


# --- safety rules ----------------------------------------------------------------------------


def _table_key(relation: ast.RangeVar) -> str:
    """A table's name as the rules compare it: its own schema's tables unqualified."""
    if relation.schemaname in (None, TENANT_SCHEMA, "public"):
        return relation.relname
    return f"{relation.schemaname}.{relation.relname}"


def _created_tables(found: Iterable[_Statement]) -> set[str]:
    created = set()
    for stmt in found:
        node = stmt.node
        if isinstance(node, ast.CreateStmt):
            created.add(_table_key(node.relation))
        into = getattr(node, "into", None) or getattr(node, "intoClause", None)
        if isinstance(into, ast.IntoClause):
            created.add(_table_key(into.rel))
    return created


def _existing(table: str, earlier: Mapping[str, str]) -> str:
    where = f"created by {earlier[table]}" if table in earlier else "not created in this file"
    return f"{table} ({where})"


def _safety(node: ast.Node, new: set[str], earlier: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    """(rule, message) of the safety rules this statement breaks. Tables the same file
    creates are new and empty: nothing on them can lock or lose anyone's data."""
    if isinstance(node, ast.IndexStmt) and not node.concurrent:
        table = _table_key(node.relation)
        if table not in new:
            yield (
                "index-not-concurrent",
                (
                    f"CREATE INDEX on {_existing(table, earlier)} without CONCURRENTLY blocks "
                    "writes to the table while the index builds. Write CREATE INDEX CONCURRENTLY: "
                    "the engine runs such a file alone outside a transaction (and builds it "
                    "plainly when it creates a new tenant)."
                ),
            )
    elif isinstance(node, ast.IndexStmt) and not node.idxname:
        yield (
            "unnamed-concurrent-index",
            "CREATE INDEX CONCURRENTLY without a name cannot be resumed: if a run is killed "
            "while it builds, the engine cannot find the index by name, and a re-run builds a "
            "second copy. Name the index.",
        )
    elif isinstance(node, ast.AlterTableStmt) and node.objtype == ObjectType.OBJECT_TABLE:
        table = _table_key(node.relation)
        if table not in new:
            for cmd in node.cmds or ():
                yield from _alter_table_cmd(cmd, _existing(table, earlier))
    elif isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_TABLE:
        for schema, name in _objects(node):
            table = _table_key(ast.RangeVar(schemaname=schema, relname=name))
            if table not in new:
                yield (
                    "drop-table",
                    (
                        f"DROP TABLE {table} deletes its data while code of the running release "
                        "may still use it: stop using it in one deploy, drop it in a later one."
                    ),
                )


def for_citus(severities: Mapping[str, str]) -> dict[str, str]:
    """The severities for a Citus cluster: the Citus rules on, unless settings say."""
    return {**CITUS_RULES, **severities}


def _citus(node: ast.Node) -> Iterator[tuple[str, str]]:
    """(rule, message) of what Citus refuses in a distributed (tenant) schema."""
    if isinstance(node, ast.CreateTrigStmt):
        yield (
            "citus-trigger",
            f"CREATE TRIGGER {node.trigname} on {_table_key(node.relation)}: Citus refuses "
            "triggers on distributed tables, and on a Citus cluster every tenant table is "
            "one. Do it in the application, or with a constraint or a generated column.",
        )
    elif isinstance(node, ast.CreateStmt) and node.inhRelations:
        yield (
            "citus-inheritance",
            f"CREATE TABLE {_table_key(node.relation)} … INHERITS: tables in a Citus "
            "distributed schema cannot inherit or be inherited. Use declarative "
            "partitioning (PARTITION BY / PARTITION OF), which Citus supports.",
        )
    for constraint in _foreign_keys(node):
        target = constraint.pktable
        if target is not None and target.schemaname == "public":
            yield (
                "citus-shared-reference",
                f"A foreign key to public.{target.relname}: on Citus the row must be on the "
                "tenant's node, so public."
                f"{target.relname} must be a reference table. The engine makes it one when "
                "a public migration grants REFERENCES on it to {{owner_group}}; make sure "
                "one does.",
            )


def shared_references(tenant_files: Sequence[Migration]) -> dict[str, list[tuple[str, int]]]:
    """The public tables the tenant files' foreign keys point to → [(file, line)]: named
    ``public.x``, or unqualified and created by no tenant file (so the schema's search_path
    finds them in public). Tenant owner roles need REFERENCES on each. (Kept for the same
    files, as ``lint`` is.)"""
    found = _shared_references_once(tuple(tenant_files))
    return {table: list(places) for table, places in found.items()}


@functools.lru_cache(maxsize=16)
def _shared_references_once(
    tenant_files: tuple[Migration, ...],
) -> dict[str, list[tuple[str, int]]]:
    parsed = []
    for m in tenant_files:
        try:
            parsed.append((m, _statements(m)))
        except pglast.parser.ParseError:
            continue  # reported by refusals()
    own = {t for _, found in parsed for t in _created_tables(found)}
    found_refs: dict[str, list[tuple[str, int]]] = {}
    for m, found in parsed:
        for stmt in found:
            for fk in _foreign_keys(stmt.node):
                target = fk.pktable
                if target is None or target.schemaname not in (None, "public"):
                    continue
                if target.schemaname is None and target.relname in own:
                    continue
                found_refs.setdefault(target.relname, []).append((str(m.path), stmt.line))
    return found_refs


def granted_references(public_files: Sequence[Migration]) -> set[str]:
    """The public tables on which public files grant REFERENCES (or ALL) to a placeholder
    role (``{{owner_group}}``)."""
    granted: set[str] = set()
    for m in public_files:
        try:
            found = _statements(m)
        except pglast.parser.ParseError:
            continue
        for stmt in found:
            node = stmt.node
            if not (isinstance(node, ast.GrantStmt) and node.is_grant):
                continue
            if node.objtype != ObjectType.OBJECT_TABLE:
                continue
            privileges = {p.priv_name for p in node.privileges or ()}
            if node.privileges and "references" not in privileges:
                continue  # None: ALL PRIVILEGES
            to_placeholder = any(
                getattr(g, "rolename", None) == _OTHER_PLACEHOLDER for g in node.grantees or ()
            )
            if to_placeholder:
                granted |= {o.relname for o in node.objects or () if isinstance(o, ast.RangeVar)}
    return granted


# "permission denied for table x" and its kin: the object a tenant owner may not use.
_DENIED = re.compile(
    r'permission denied for (table|view|materialized view|sequence|function|procedure) "?([^\s"]+)'
)
_ROUTINES = {"function": "FUNCTION", "procedure": "PROCEDURE"}
_WRITES = {ast.InsertStmt: "INSERT", ast.UpdateStmt: "UPDATE", ast.DeleteStmt: "DELETE"}


def grant_hint(statement: str, sqlstate: str | None, message: str) -> str:
    """For a tenant statement that failed with "permission denied" on a shared object: the
    public migration's GRANT to {{owner_group}} that lets every tenant owner use it (the
    only objects a tenant file may reach outside its schema are public's); else "". The
    privilege follows what the statement did to the object: REFERENCES for a foreign key,
    INSERT / UPDATE / DELETE / TRUNCATE for its target, USAGE on a sequence, EXECUTE on a
    routine, SELECT for what it reads."""
    found = _DENIED.search(message) if sqlstate == "42501" else None
    if not found:
        return ""
    kind, name = found.groups()
    if kind in _ROUTINES:
        privilege, on = "EXECUTE", f"{_ROUTINES[kind]} public.{name}"
    elif kind == "sequence":
        privilege, on = "USAGE", f"SEQUENCE public.{name}"
    else:
        privilege, on = _table_privilege(statement, name), f"public.{name}"
    return (
        f" (tenant owner roles may not use public.{name} this way: add a public migration "
        f"with GRANT {privilege} ON {on} TO {{{{owner_group}}}})"
    )


def _table_privilege(statement: str, table: str) -> str:
    """The privilege ``statement`` needs on ``table`` (SELECT when it only reads it)."""
    try:
        nodes = [raw.stmt for raw in pglast.parse_sql(statement)]
    except pglast.parser.ParseError:
        return "SELECT"
    for node in nodes:
        keys = [fk.pktable for fk in _foreign_keys(node) if fk.pktable is not None]
        if any(target.relname == table for target in keys):
            return "REFERENCES"
        for kind, privilege in _WRITES.items():
            if isinstance(node, kind) and node.relation.relname == table:
                return privilege
        truncated = node.relations or () if isinstance(node, ast.TruncateStmt) else ()
        if any(r.relname == table for r in truncated):
            return "TRUNCATE"
    return "SELECT"


def _ungranted_reference_problems(migrations: Sequence[Migration], level: str) -> list[Problem]:
    """Lint: a tenant foreign key to a public table no public file lets the owners
    reference (the dry run checks the database itself)."""
    if level == OFF:
        return []
    tenant = [m for m in migrations if m.scope == TENANT]
    public = [m for m in migrations if m.scope != TENANT]
    if not public:
        return []  # the grants live in public files: without them, nothing to compare
    granted = granted_references(public)
    return [
        Problem(
            path,
            line,
            "shared-reference-grant",
            level,
            f"a foreign key to public.{table}, which tenant owner roles may reference only "
            "when a public file grants it: GRANT REFERENCES ON public."
            f"{table} TO {{{{owner_group}}}} (the dry run checks the database)",
        )
        for table, places in shared_references(tenant).items()
        if table not in granted
        for path, line in places
    ]


def _foreign_keys(node: ast.Node) -> Iterator[ast.Constraint]:
    """FOREIGN KEY constraints a CREATE TABLE or ALTER TABLE adds (column or table level)."""
    for item in walk(node):
        if isinstance(item, ast.Constraint) and item.contype == ConstrType.CONSTR_FOREIGN:
            yield item


def _alter_table_cmd(cmd: ast.AlterTableCmd, table: str) -> Iterator[tuple[str, str]]:
    subtype = cmd.subtype.name
    if subtype == "AT_AddColumn" and _required_without_value(cmd.def_):
        yield (
            "add-column-not-null-without-default",
            (
                f"ADD COLUMN {cmd.def_.colname} NOT NULL without a DEFAULT on {table} fails in "
                "every schema whose table has rows. Add it nullable, backfill, then enforce NOT "
                "NULL (a CHECK … NOT VALID, VALIDATE, SET NOT NULL), or give it a DEFAULT."
            ),
        )
    elif subtype == "AT_AlterColumnType":
        yield (
            "alter-column-type",
            (
                f"ALTER COLUMN {cmd.name} TYPE on {table} usually rewrites the table and its "
                "indexes under an ACCESS EXCLUSIVE lock, blocking reads and writes meanwhile. "
                "Add a new column, backfill and switch to it across deploys."
            ),
        )
    elif subtype == "AT_DropColumn":
        yield (
            "drop-column",
            (
                f"DROP COLUMN {cmd.name} on {table} while code of the running release may still "
                "read or write it: stop using it in one deploy, drop it in a later one."
            ),
        )
    elif subtype == "AT_AddConstraint" and _validated_on_add(cmd.def_):
        kind = "FOREIGN KEY" if cmd.def_.contype == ConstrType.CONSTR_FOREIGN else "CHECK"
        yield (
            "constraint-without-not-valid",
            (
                f"ADD CONSTRAINT {cmd.def_.conname or ''} {kind} on {table} without NOT VALID "
                "checks every row while holding a lock that blocks writes. Add it NOT VALID, "
                "then VALIDATE CONSTRAINT in a later deploy."
            ),
        )


def _required_without_value(column: ast.ColumnDef) -> bool:
    """NOT NULL (or PRIMARY KEY) with nothing to fill existing rows."""
    kinds = {c.contype for c in column.constraints or ()}
    required = column.is_not_null or kinds & {ConstrType.CONSTR_NOTNULL, ConstrType.CONSTR_PRIMARY}
    filled = kinds & {
        ConstrType.CONSTR_DEFAULT,
        ConstrType.CONSTR_IDENTITY,
        ConstrType.CONSTR_GENERATED,
    }
    type_names = _strings(column.typeName.names) if column.typeName else []
    serial = bool(type_names) and type_names[-1] in _SERIAL_TYPES  # an implicit DEFAULT
    return bool(required) and not filled and not serial


def _validated_on_add(constraint: object) -> bool:
    return (
        isinstance(constraint, ast.Constraint)
        and constraint.contype in (ConstrType.CONSTR_FOREIGN, ConstrType.CONSTR_CHECK)
        and not constraint.skip_validation
    )


# --- lint: grouping, severities, squawk ------------------------------------------------------


def _levels(severities: Mapping[str, str]) -> dict[str, str]:
    """Every safety rule's severity, defaults first; squawk entries as given."""
    levels = dict(SAFETY_RULES)
    for rule, level in severities.items():
        if level not in LEVELS:
            raise LintConfigError(f"Lint severity of {rule!r} is {level!r}; expected {LEVELS}.")
        if rule in REFUSAL_RULES:
            if level != ERROR:
                raise LintConfigError(f"{rule!r} is a refusal rule: always an error.")
        elif rule not in SAFETY_RULES and rule != SQUAWK and not rule.startswith("squawk:"):
            known = ", ".join([*SAFETY_RULES, SQUAWK, "squawk:<rule>"])
            raise LintConfigError(f"Unknown lint rule {rule!r}; known: {known}.")
        levels[rule] = level
    return levels


def _groups(migrations: Iterable[Migration]) -> list[list[Migration]]:
    """Files by scope and folder, in version order: 'earlier files' are within a group."""
    groups: dict[tuple[str, Path], list[Migration]] = {}
    for migration in migrations:
        groups.setdefault((migration.scope, migration.path.parent), []).append(migration)
    return [sorted(group, key=lambda m: m.number) for group in groups.values()]


def _lint_group(group: list[Migration], levels: Mapping[str, str]) -> list[Problem]:
    problems: list[Problem] = []
    earlier: dict[str, str] = {}  # table → the earlier file that created it
    for migration in group:
        problems += refusals(migration)
        try:
            found = _statements(migration)
        except pglast.parser.ParseError:
            continue  # reported by refusals()
        new = _created_tables(found)
        for stmt in found:
            citus = _citus(stmt.node) if migration.scope == TENANT else ()
            for rule, message in (*_safety(stmt.node, new, earlier), *citus):
                if levels[rule] != OFF and rule not in stmt.ignored:
                    problems.append(
                        Problem(str(migration.path), stmt.line, rule, levels[rule], message)
                    )
        problems += _missing_down(migration, levels["missing-down"])
        for table in new:
            earlier.setdefault(table, f"{migration.scope}/{migration.name}")
    return problems


def _missing_down(migration: Migration, level: str) -> list[Problem]:
    """A file-level rule: `-- lint: ignore missing-down` anywhere in the file silences it."""
    if migration.down_sql is not None or level == OFF:
        return []
    try:
        text = migration.path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = migration.up_sql
    if any("missing-down" in _ignore_names(line) for line in text.splitlines()):
        return []
    message = (
        "no DOWN section: `migrate_tenants --rollback` cannot undo this file. Add a "
        "'-- DOWN' marker and the SQL that reverses it (it may stay inside /* … */)."
    )
    return [Problem(str(migration.path), 1, "missing-down", level, message)]


def squawk_binary() -> str | None:
    """squawk from squawk-cli: beside this Python (a virtualenv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "squawk"
    return str(beside) if beside.is_file() else shutil.which("squawk")


def _squawk_problems(migrations: Sequence[Migration], levels: Mapping[str, str]) -> list[Problem]:
    binary = squawk_binary()
    if binary is None:
        return [_squawk_note("unavailable", "squawk not found (install squawk-cli): not run.")]
    with tempfile.TemporaryDirectory(prefix="tenancy-lint-") as folder:
        files = {}
        for index, migration in enumerate(migrations):
            path = Path(folder) / f"{index:05d}.sql"
            # Blank lines in front keep squawk's line numbers the file's.
            rendered = _render(migration.up_sql, _SQUAWK_PLACEHOLDER, _SQUAWK_PLACEHOLDER)
            path.write_text("\n" * (migration.up_line - 1) + rendered, encoding="utf-8")
            files[path.name] = migration
        command = [binary, "--reporter", "json", "--exclude", ",".join(sorted(SQUAWK_EXCLUDED))]
        try:
            done = subprocess.run(
                [*command, *files], cwd=folder, capture_output=True, text=True, timeout=300
            )
            violations = json.loads(done.stdout or "[]")
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            return [_squawk_note("failed", f"squawk could not lint the files: {exc}")]
    problems = []
    for violation in violations:
        migration = files.get(Path(violation.get("file", "")).name)
        if migration is not None:
            problems += _squawk_problem(migration, violation, levels)
    return problems


def _squawk_note(what: str, message: str) -> Problem:
    return Problem(SQUAWK, 0, f"squawk:{what}", WARNING, message)


def _squawk_problem(
    migration: Migration, violation: dict, levels: Mapping[str, str]
) -> list[Problem]:
    rule = f"squawk:{violation.get('rule_name', 'unknown')}"
    level = levels.get(rule, levels.get(SQUAWK, WARNING))
    line = int(violation.get("line", 0)) + 1  # squawk counts lines from 0
    stmt = _statement_at(migration, line)
    ignored = stmt.ignored if stmt else frozenset()
    if level == OFF or rule in ignored or SQUAWK in ignored:
        return []
    message = violation.get("message", "")
    if violation.get("help"):
        message += f" ({violation['help']})"
    return [Problem(str(migration.path), stmt.line if stmt else line, rule, level, message)]


def _statement_at(migration: Migration, line: int) -> _Statement | None:
    try:
        found = _statements(migration)
    except pglast.parser.ParseError:
        return None
    return next((s for s in found if s.line <= line <= s.end_line), None)
