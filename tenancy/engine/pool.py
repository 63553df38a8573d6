"""The warm pool's engine side: pool schema names, whether tenant files may be pooled, the
race-free take, the renames of a claim, the catalog check after them, and the discard.

A pool schema is built like a tenant under a pool name (``tenancy_pool_<hex>``, roles
named from it by ``names.py``); a claim renames the schema and its two roles to a new
tenant's names. PostgreSQL refers to schemas and roles by oid almost everywhere (column
defaults, views, policies, grants, owners, default privileges, sequences' owners), so a
rename carries them along. It cannot reach names held as *text*: a rendered ``{{schema}}``
or ``{{tenant_role}}`` inside a string literal, a function body, a comment, a function's
``SET search_path FROM CURRENT``, or data a file computed from the current schema or role
while it ran. Such files are not pooled (``unpoolable_reason``, read with PostgreSQL's own
parser), and ``rename_traces`` looks for the old names in the catalog after a trial rename
whenever a pool schema is built or migrated: such a schema is never kept.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Iterable

import pglast
import psycopg
from pglast import ast, enums
from psycopg import sql

from tenancy.engine import db, statements
from tenancy.engine.names import owner_role_for_schema, role_for_schema
from tenancy.engine.rules import walk
from tenancy.engine.source import Migration

POOL_PREFIX = "tenancy_pool_"
POOL_TABLE = "tenant_pool"

# Placeholders whose value changes when a pool schema becomes a tenant (the shared roles'
# names do not).
_RENAMED = ("schema", "tenant_role")
_SENTINEL = "tenancy_pool_sentinel"
# Functions of the session whose value during a build would be the pool's names.
_NAME_FUNCTIONS = frozenset(
    {"current_schema", "current_schemas", "current_setting", "current_user", "session_user"}
)
_NAME_SQL_VALUES = frozenset(
    {
        enums.SQLValueFunctionOp.SVFOP_CURRENT_ROLE,
        enums.SQLValueFunctionOp.SVFOP_CURRENT_USER,
        enums.SQLValueFunctionOp.SVFOP_USER,
        enums.SQLValueFunctionOp.SVFOP_SESSION_USER,
        enums.SQLValueFunctionOp.SVFOP_CURRENT_SCHEMA,
    }
)
# Statements that write data (or run code) while the schema is built: a name function
# evaluated there leaves the pool's name in a row. In DDL (a column default) it is
# evaluated later, under the tenant's names.
_WRITES = (
    ast.InsertStmt,
    ast.UpdateStmt,
    ast.DeleteStmt,
    ast.MergeStmt,
    ast.SelectStmt,
    ast.CreateTableAsStmt,
    ast.CallStmt,
    ast.DoStmt,
)


def new_pool_schema() -> str:
    """A fresh pool schema name: random, so fills never collide and no name is reused."""
    return POOL_PREFIX + secrets.token_hex(8)


def is_pool_schema(name: str) -> bool:
    return name.startswith(POOL_PREFIX)


def pool_roles(schema: str, database: str) -> tuple[str, str]:
    """(web role, owner role) of a pool schema: the tenant roles' names for its name."""
    return role_for_schema(schema, database), owner_role_for_schema(schema, database)


# -- may these files be pooled? ---------------------------------------------------------------
def unpoolable_reason(migrations: Iterable[Migration]) -> str | None:
    """Why a schema built from ``migrations`` cannot become a tenant by renaming (the first
    file and reason), or None when it can."""
    for m in migrations:
        reason = _file_reason(m.up_sql)
        if reason:
            return f"{m.name}: {reason}"
    return None


@functools.lru_cache(maxsize=512)
def _file_reason(up_sql: str) -> str | None:
    ids = {
        "schema": _SENTINEL,
        "tenant_role": _SENTINEL + "_role",
        "app_role": "a",
        "owner_group": "g",
    }
    try:
        parsed = pglast.parse_sql(statements.render(up_sql, ids))
    except (statements.StatementError, pglast.parser.ParseError):
        return None  # the file fails the same way whichever path creates the tenant
    for raw in parsed:
        reason = _statement_reason(raw.stmt)
        if reason:
            return reason
    return None


def _statement_reason(stmt: ast.Node) -> str | None:
    writes = isinstance(stmt, _WRITES)
    for node in walk(stmt):
        if isinstance(node, ast.VariableSetStmt) and (
            node.kind == enums.VariableSetKind.VAR_SET_CURRENT
        ):
            return "SET ... FROM CURRENT would keep the pool schema's search_path"
        text = _text_of(node)
        if text is not None and _SENTINEL in text:
            names = " or ".join("{{" + p + "}}" for p in _RENAMED)
            return f"{names} rendered into text (a literal, body or comment) a rename cannot change"
        if writes and _names_session(node, stmt):
            return "data computed from the current schema or role while the schema is built"
    return None


def _text_of(node: ast.Node) -> str | None:
    """The text a node holds that PostgreSQL keeps as text: literals, bodies, comments."""
    if isinstance(node, ast.A_Const) and isinstance(node.val, ast.String):
        return node.val.sval
    if isinstance(node, ast.CommentStmt):
        return node.comment
    if isinstance(node, ast.DefElem) and node.defname in ("as", "set"):
        arg = node.arg
        items = arg if isinstance(arg, (list, tuple)) else [arg]
        return " ".join(i.sval for i in items if isinstance(i, ast.String))
    return None


def _names_session(node: ast.Node, stmt: ast.Node) -> bool:
    if isinstance(node, ast.SQLValueFunction):
        return node.op in _NAME_SQL_VALUES
    if isinstance(node, ast.FuncCall):
        return any(isinstance(s, ast.String) and s.sval in _NAME_FUNCTIONS for s in node.funcname)
    if isinstance(node, ast.DefElem) and isinstance(stmt, ast.DoStmt) and node.defname == "as":
        body = (_text_of(node) or "").lower()
        return any(f in body for f in _NAME_FUNCTIONS)
    return False


# -- the pool table -------------------------------------------------------------------------
def of_type(tenant_type: str | None, *, untyped: bool) -> sql.Composed:
    """Pool rows of ``tenant_type`` (multi-type tenants); ``untyped``: a row built before
    types were on (no type) counts too."""
    return sql.SQL("(tenant_type IS NOT DISTINCT FROM {} OR (tenant_type IS NULL AND {}))").format(
        sql.Literal(tenant_type), sql.Literal(untyped)
    )


_TAKE = """
WITH c AS (SELECT id, schema_name FROM public.tenant_pool
            WHERE state = 'ready' AND schema_name <> ALL(%(skip)s) AND {of_type}
            ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1),
     l AS MATERIALIZED (SELECT id, schema_name,
                               pg_try_advisory_xact_lock(%(ns)s, hashtext(schema_name))
                                 AS locked
                          FROM c),
     d AS (DELETE FROM public.tenant_pool p USING l WHERE p.id = l.id AND l.locked
           RETURNING p.id)
SELECT schema_name, locked FROM l
"""


def take(
    conn: psycopg.Connection,
    skip: list[str],
    tenant_type: str | None = None,
    *,
    untyped: bool = True,
) -> tuple[str, bool] | None:
    """The oldest ready entry of ``tenant_type`` no other transaction holds (a claim, a
    drain), and whether its schema's advisory lock (a migration run's) was free: then its
    row is deleted in the caller's transaction (a rollback puts it back, a commit hands it
    out once); else it is left as it is. ``skip``: entries this transaction already passed
    over; ``untyped``: an entry without a type will do."""
    query = sql.SQL(_TAKE).format(of_type=of_type(tenant_type, untyped=untyped))
    row = conn.execute(query, {"skip": skip, "ns": db.LOCK_NAMESPACE}).fetchone()
    return (str(row[0]), bool(row[1])) if row else None


def count_ready(conn: psycopg.Connection, tenant_type: str | None, *, untyped: bool) -> int:
    """Ready entries of ``tenant_type`` (``of_type``)."""
    query = sql.SQL("SELECT count(*) FROM public.tenant_pool WHERE state = 'ready' AND {}")
    row = conn.execute(query.format(of_type(tenant_type, untyped=untyped))).fetchone()
    return int(row[0]) if row else 0


def record(
    conn: psycopg.Connection,
    schema: str,
    *,
    state: str = "ready",
    tenant_type: str | None = None,
) -> None:
    """The pool row of ``schema`` (built as ``tenant_type``): ``ready`` (built), or
    ``broken`` (a claim that failed on it puts it back so: never claimed, dropped by the
    next fill or drain)."""
    conn.execute(
        "INSERT INTO public.tenant_pool (schema_name, state, tenant_type) VALUES (%s, %s, %s)",
        [schema, state, tenant_type],
    )


# -- a claim's renames ----------------------------------------------------------------------
def rename_statements(pool: str, schema: str, database: str) -> list[sql.Composable]:
    """Schema, owner role and web role to the tenant's names, the ledger rows with them (a
    stray row under the tenant's name, left by no one that still exists, gives way)."""
    pool_web, pool_owner = pool_roles(pool, database)
    web, owner = role_for_schema(schema, database), owner_role_for_schema(schema, database)
    ident = sql.Identifier
    return [
        sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(ident(pool), ident(schema)),
        sql.SQL("ALTER ROLE {} RENAME TO {}").format(ident(pool_owner), ident(owner)),
        sql.SQL("ALTER ROLE {} RENAME TO {}").format(ident(pool_web), ident(web)),
        sql.SQL("DELETE FROM public.tenant_migrations WHERE tenant_schema = {}").format(
            sql.Literal(schema)
        ),
        sql.SQL(
            "UPDATE public.tenant_migrations SET tenant_schema = {} WHERE tenant_schema = {}"
        ).format(sql.Literal(schema), sql.Literal(pool)),
    ]


# Text the catalog keeps for the objects of one schema (and its roles' settings), deparsed
# where it is stored as a tree: a rename changes what is referenced by oid, so any old name
# still found here is held as text.
_TEXTS = """
WITH n AS (SELECT oid FROM pg_namespace WHERE nspname = %(schema)s),
     r AS (SELECT oid FROM pg_roles WHERE rolname = ANY(%(roles)s)),
     rel AS (SELECT c.oid, c.relkind, c.reloptions FROM pg_class c, n WHERE c.relnamespace = n.oid)
SELECT 'function ' || p.proname, concat_ws(' ', p.prosrc, array_to_string(p.proconfig, ' '))
  FROM pg_proc p, n WHERE p.pronamespace = n.oid
UNION ALL
SELECT 'default', pg_get_expr(ad.adbin, ad.adrelid)
  FROM pg_attrdef ad JOIN rel ON rel.oid = ad.adrelid
UNION ALL
SELECT 'constraint ' || con.conname, pg_get_constraintdef(con.oid)
  FROM pg_constraint con, n WHERE con.connamespace = n.oid AND con.contype IN ('c', 'x')
UNION ALL
SELECT 'policy ' || pol.polname, concat_ws(' ', pg_get_expr(pol.polqual, pol.polrelid),
       pg_get_expr(pol.polwithcheck, pol.polrelid))
  FROM pg_policy pol JOIN rel ON rel.oid = pol.polrelid
UNION ALL
SELECT 'view', pg_get_viewdef(rel.oid) FROM rel WHERE rel.relkind IN ('v', 'm')
UNION ALL
SELECT 'options', array_to_string(rel.reloptions, ' ') FROM rel WHERE rel.reloptions IS NOT NULL
UNION ALL
SELECT 'index', pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN rel ON rel.oid = i.indrelid
 WHERE i.indexprs IS NOT NULL OR i.indpred IS NOT NULL
UNION ALL
SELECT 'trigger ' || t.tgname, encode(t.tgargs, 'escape')
  FROM pg_trigger t JOIN rel ON rel.oid = t.tgrelid WHERE NOT t.tgisinternal
UNION ALL
SELECT 'type default', ty.typdefault FROM pg_type ty, n WHERE ty.typnamespace = n.oid
UNION ALL
SELECT 'comment', d.description FROM pg_description d
 WHERE (d.classoid = 'pg_class'::regclass AND d.objoid IN (SELECT oid FROM rel))
    OR (d.classoid = 'pg_proc'::regclass
        AND d.objoid IN (SELECT p.oid FROM pg_proc p, n WHERE p.pronamespace = n.oid))
    OR (d.classoid = 'pg_type'::regclass
        AND d.objoid IN (SELECT ty.oid FROM pg_type ty, n WHERE ty.typnamespace = n.oid))
    OR (d.classoid = 'pg_constraint'::regclass
        AND d.objoid IN (SELECT c.oid FROM pg_constraint c, n WHERE c.connamespace = n.oid))
    OR (d.classoid = 'pg_namespace'::regclass AND d.objoid IN (SELECT oid FROM n))
UNION ALL
SELECT 'comment', d.description FROM pg_shdescription d WHERE d.objoid IN (SELECT oid FROM r)
UNION ALL
SELECT 'role setting', array_to_string(s.setconfig, ' ') FROM pg_db_role_setting s
 WHERE s.setrole IN (SELECT oid FROM r)
"""


def traces(conn: psycopg.Connection, schema: str, old_names: list[str]) -> list[str]:
    """Objects of ``schema`` (just renamed) whose catalog text still holds one of
    ``old_names``; empty when the rename reached everything."""
    database = conn.info.dbname
    roles = [role_for_schema(schema, database), owner_role_for_schema(schema, database)]
    found = []
    for what, text in conn.execute(_TEXTS, {"schema": schema, "roles": roles}).fetchall():
        if text and any(name in text for name in old_names):
            found.append(what)
    return found


def rename_traces(conn: psycopg.Connection, pool: str) -> list[str]:
    """``traces`` of a trial: rename the pool schema and its roles to probe names in a
    savepoint, look, roll the savepoint back. Run wherever a pool schema's catalog changes
    (built, migrated), so that a claim, which renames the same catalog, needs no look of
    its own (half the cost of a claim)."""
    database = conn.info.dbname
    probe = "tenancy_probe_" + secrets.token_hex(8)
    savepoint = sql.Identifier("tenancy_rename_probe")
    renames = rename_statements(pool, probe, database)[:3]  # schema and roles, not the ledger
    conn.execute(sql.SQL("; ").join([sql.SQL("SAVEPOINT {}").format(savepoint), *renames]))
    try:
        return traces(conn, probe, [pool, *pool_roles(pool, database)])
    finally:
        conn.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(savepoint))


# -- discard ----------------------------------------------------------------------------------
def discard(conn: psycopg.Connection, schema: str) -> None:
    """Drop a pool schema with its roles, ledger rows and pool row, in the caller's
    transaction; what is already gone is skipped (a half-built leftover)."""
    database = conn.info.dbname
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    existing = {
        r[0]
        for r in conn.execute(
            "SELECT rolname::text FROM pg_roles WHERE rolname = ANY(%s)",
            [list(pool_roles(schema, database))],
        ).fetchall()
    }
    for role in pool_roles(schema, database):
        if role in existing:
            # Grants (default privileges, shared tables) go first; DROP ROLE refuses else.
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    conn.execute("DELETE FROM public.tenant_migrations WHERE tenant_schema = %s", [schema])
    conn.execute("DELETE FROM public.tenant_pool WHERE schema_name = %s", [schema])
