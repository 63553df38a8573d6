"""What a tenant schema's catalog holds, as normalized lines, for many schemas at once.

A line is ``(kind, key, value)``: ``("column", "job_postings.title", "character varying(255)
not null")``, ``("grant", "table job_postings web INSERT", "")``, ``("owner", "schema",
"owner")``. Lines are normalized so that two healthy tenants give identical ones:

- the schema's own name is stripped from definitions (``pg_get_*`` output, read with
  ``search_path`` = ``pg_catalog`` so that everything outside it is qualified the same way),
  and any other mention of it (a placeholder rendered into a literal) reads ``{{schema}}``;
- role names become tokens: the schema's owner role ``owner``, its web role ``web``, the
  app role ``app``, the owner group ``owner_group``, ``PUBLIC``; other roles keep their name;
- absent ACLs read as their defaults (``acldefault``), so "never granted" equals "granted
  back to the defaults".

``fingerprints`` answers with one digest per schema in one query (aggregated in SQL: a
short row per schema, whatever the number of objects). Its lines are a cheaper variant where
the costliest deparsing (``pg_get_indexdef``, ``pg_get_constraintdef``, ``pg_get_expr`` with
a table, one line per privilege) is replaced by raw catalog fields and stored expressions:
equal for equal schemas, but not readable, and only comparable with another fingerprint.
``describe`` returns the readable lines, for the few schemas whose fingerprint differs;
``differences`` renders two sets of them as sentences.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

from tenancy.engine.names import (
    app_role,
    owner_group_role,
    owner_role_for_schema,
    role_for_schema,
)

# The joins of the query over 10,000 schemas (a million rows) spill to disk with the
# default 4MB; one query, one backend, for a few seconds.
WORK_MEM = "64MB"

Key = tuple[str, str]  # (kind, key): unique within a schema
Lines = dict[Key, str]


@dataclass(frozen=True)
class Fingerprint:
    digest: str  # 32 hex digits
    lines: int


def _role(expr: str) -> str:
    """SQL: the token of role oid ``expr`` in the schema of the row (``m`` in scope)."""
    return (
        f"CASE WHEN {expr} = 0 THEN 'PUBLIC' WHEN {expr} = m.owner_oid THEN 'owner' "
        f"WHEN {expr} = m.web_oid THEN 'web' WHEN {expr} = m.app THEN 'app' "
        f"WHEN {expr} = m.grp THEN 'owner_group' ELSE pg_get_userbyid({expr})::text END"
    )


def _norm(expr: str) -> str:
    """SQL: definition ``expr`` without its schema's qualification, other mentions of the
    schema's name as ``{{schema}}``."""
    return f"replace(replace({expr}, m.qualified, ''), m.nspname, '{{{{schema}}}}')"


def _grants(acl: str, default_kind: str, owner: str, what: str) -> str:
    """SQL: one grant line per (grantee, privilege) of ``acl`` (its default when NULL:
    ``acldefault(default_kind, owner)``, ``default_kind`` an SQL expression)."""
    return f"""
    SELECT DISTINCT m.nspname, 'grant',
           {what} || ' ' || {_role("a.grantee")} || ' ' || a.privilege_type,
           CASE WHEN a.is_grantable THEN 'with grant option' ELSE '' END
      FROM aclexplode(coalesce({acl}, acldefault({default_kind}, {owner}))) AS a"""


_REL_ACL_KIND = "(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END)::\"char\""
_RELKIND = (
    "CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' "
    "WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' "
    "WHEN 'S' THEN 'sequence' WHEN 'c' THEN 'type' END"
)


def _acl_text(acl: str) -> str:
    """SQL (fast mode): an ACL as one text, the schema's own roles as tokens. Cheaper than
    a line per privilege; an order of items that differs reads as a difference, which
    the full description then settles."""
    return f"replace(replace({acl}::text, m.owner_name, 'owner'), m.web_name, 'web')"


def _relation_grants(fast: bool) -> str:
    acl = f"coalesce(c.relacl, acldefault({_REL_ACL_KIND}, c.relowner))"
    if fast:
        return f"""
SELECT m.nspname, 'grant', c.kind || ' ' || c.relname, {_acl_text(acl)}
  FROM rel c {_M("c")}
 WHERE c.relkind <> 'c'"""
    return f"""
SELECT x.* FROM rel c {_M("c")} CROSS JOIN LATERAL
  ({_grants("c.relacl", _REL_ACL_KIND, "c.relowner", "c.kind || ' ' || c.relname")}) x
 WHERE c.relkind <> 'c'"""


def _column_extras(fast: bool) -> str:
    """Collation, and column privileges: in fast mode raw, in the column's own line, with
    the column's position."""
    if fast:
        # The position too: index and key lines hold attribute numbers, so two schemas
        # whose columns sit in other positions must not compare equal on them.
        return f"""'collation ' || a.attcollation, 'position ' || a.attnum,
                 CASE WHEN a.attacl IS NOT NULL THEN {_acl_text("a.attacl")} END"""
    return """CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
                      THEN 'collate ' || a.attcollation::regcollation::text END"""


def _column_privileges(fast: bool) -> str:
    if fast:
        return ""
    return f"""
UNION ALL
SELECT DISTINCT m.nspname, 'grant',
       'column ' || c.relname || '.' || a.attname || ' ' || {_role("x.grantee")} || ' '
         || x.privilege_type, CASE WHEN x.is_grantable THEN 'with grant option' ELSE '' END
  FROM rel c {_M("c")}
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attacl IS NOT NULL AND NOT a.attisdropped,
       aclexplode(a.attacl) x"""


# A stored expression that may name an object by oid: a number of 5+ digits in a field
# other than a location (user objects' oids are >= 16384), or a reg* constant (it holds an
# oid in its bytes). Each schema's objects have their own oids, so such a tree is deparsed.
_MAY_NAME_OBJECTS = (
    r":(?!location )[a-zA-Z_]+ [0-9]{5}"
    r"|:consttype (24|2202|2203|2204|2205|2206|3734|3769|4089|4096|4191) "
)


def _tree(tree: str, relid: str) -> str:
    """SQL (fast mode): an expression as stored, without its positions in the file's text
    (placeholders of other lengths move them), or deparsed when it may name an object:
    ``pg_get_expr`` with a table costs ~10 µs, the regular expressions ~2."""
    deparsed = _norm(f"pg_get_expr({tree}, {relid})")
    stored = f"regexp_replace({tree}::text, ' :location -?[0-9]+', '', 'g')"
    return f"CASE WHEN {tree}::text ~ '{_MAY_NAME_OBJECTS}' THEN {deparsed} ELSE {stored} END"


def _constraint_value(fast: bool) -> str:
    """``pg_get_constraintdef`` costs ~5-15 µs a constraint; in fast mode keys and foreign
    keys are described by their raw fields (attribute numbers, actions), checks by their
    deparsed expression (a check's stored tree is ~1,400 characters: testing and cleaning
    it costs more than deparsing it)."""
    full = _norm("pg_get_constraintdef(con.oid)")
    if not fast:
        return full
    return f"""CASE
         WHEN con.contype IN ('p', 'u', 'f') THEN concat_ws(' ', con.contype, con.conkey::text,
              con.condeferrable, con.condeferred, con.convalidated, con.confkey::text,
              CASE WHEN con.confrelid <> 0 THEN {_norm("con.confrelid::regclass::text")} END,
              con.confupdtype, con.confdeltype, con.confmatchtype)
         WHEN con.contype = 'c' THEN concat_ws(' ', 'check',
              {_norm("pg_get_expr(con.conbin, con.conrelid)")}, con.convalidated,
              con.connoinherit)
         ELSE {full} END"""


def _index_value(fast: bool) -> str:
    """``pg_get_indexdef`` costs ~12 µs an index; in fast mode an index is its raw fields
    (table, method, flags, attribute numbers, operator classes, expressions as stored)."""
    validity = "CASE WHEN i.indisvalid THEN '' ELSE ' (INVALID)' END"
    if not fast:
        return f"{_norm('pg_get_indexdef(i.indexrelid)')} || {validity}"
    return f"""concat_ws(' ', c.relname, ic.relam, i.indisunique, i.indisprimary,
              i.indisexclusion, i.indimmediate, i.indkey::text, i.indclass::text,
              i.indcollation::text, i.indoption::text,
              {_tree("i.indexprs", "i.indrelid")}, {_tree("i.indpred", "i.indrelid")})
           || {validity}"""


# A column default never refers to a column: deparsed without opening the table (cheaper).
_DEFAULT = "pg_get_expr(ad.adbin, CASE WHEN a.attgenerated = '' THEN 0 ELSE ad.adrelid END)"
_SIGNATURE = "p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'"
_DOMAIN_BASE = "format_type(ty.typbasetype, ty.typtypmod)"


_M_COLS = "m.nspname, m.qualified, m.owner_name, m.web_name, m.owner_oid, m.web_oid, m.app, m.grp"


def _M(alias: str) -> str:  # noqa: N802 (reads as the ``m`` it stands for)
    """SQL: ``m``, the schema's columns, taken from the row of ``rel`` or ``typ`` aliased
    ``alias`` (a lateral projection the planner flattens: no join)."""
    columns = ", ".join(f"{alias}.{c.split('.')[1]}" for c in _M_COLS.split(", "))
    return f"CROSS JOIN LATERAL (SELECT {columns}) AS m"


def _lines(fast: bool) -> str:
    """Every line of every schema in ``m`` (the schemas asked for that exist, with their
    role oids; ``g``: the shared roles). Each part reads one catalog once for all schemas.
    ``fast``: the fingerprint's variant, where the costliest deparsing is replaced by raw
    catalog fields (comparable between schemas, not readable)."""
    return f"""
WITH m AS MATERIALIZED (
  SELECT n.oid AS nsp, n.nspname::text AS nspname, n.nspowner, n.nspacl,
         quote_ident(n.nspname) || '.' AS qualified, t.owner AS owner_name, t.web AS web_name,
         to_regrole(quote_ident(t.owner))::oid AS owner_oid,
         to_regrole(quote_ident(t.web))::oid AS web_oid,
         to_regrole(quote_ident(%(app)s))::oid AS app, to_regrole(quote_ident(%(grp)s))::oid AS grp
    FROM unnest(%(schemas)s::text[], %(owners)s::text[], %(webs)s::text[]) AS t(nspname, owner, web)
    JOIN pg_namespace n ON n.nspname = t.nspname
), rel AS MATERIALIZED (  -- each row carries its schema's columns: no join back to m
  SELECT c.oid, c.relname::text AS relname, c.relkind, c.relowner, c.relacl, c.relpersistence,
         c.relrowsecurity, c.relforcerowsecurity, {_RELKIND} AS kind, {_M_COLS}
    FROM pg_class c JOIN m ON m.nsp = c.relnamespace
   WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S', 'c')
), typ AS MATERIALIZED (  -- enums, domains, ranges, composite types (not tables' row types)
  SELECT ty.oid, ty.typname::text AS typname, ty.typtype, ty.typnotnull, ty.typbasetype,
         ty.typtypmod, ty.typdefault, ty.typowner, ty.typacl, {_M_COLS}
    FROM pg_type ty JOIN m ON m.nsp = ty.typnamespace
   WHERE ty.typtype IN ('e', 'd', 'r')
      OR (ty.typtype = 'c' AND ty.typrelid IN (SELECT oid FROM rel WHERE relkind = 'c'))
)
-- the schema: owner, grants, default privileges
SELECT m.nspname, 'owner', 'schema', {_role("m.nspowner")} FROM m
UNION ALL
SELECT x.* FROM m CROSS JOIN LATERAL
  ({_grants("m.nspacl", "'n'", "m.nspowner", "'schema'")}) x
UNION ALL
SELECT DISTINCT m.nspname, 'default privilege',
       {_role("d.defaclrole")} || ' ' || CASE d.defaclobjtype WHEN 'r' THEN 'tables'
         WHEN 'S' THEN 'sequences' WHEN 'f' THEN 'functions' WHEN 'T' THEN 'types'
         WHEN 'n' THEN 'schemas' END || ' ' || {_role("a.grantee")} || ' ' || a.privilege_type,
       CASE WHEN a.is_grantable THEN 'with grant option' ELSE '' END
  FROM pg_default_acl d JOIN m ON m.nsp = d.defaclnamespace,
       aclexplode(d.defaclacl) a
UNION ALL
-- relations: kind and row security, owner, grants
SELECT m.nspname, c.kind, c.relname,
       concat_ws(', ', CASE WHEN c.relpersistence = 'u' THEN 'unlogged' END,
                 CASE WHEN c.relrowsecurity THEN 'row security' END,
                 CASE WHEN c.relforcerowsecurity THEN 'forced row security' END,
                 CASE WHEN c.relkind IN ('v', 'm')
                      THEN {_norm("pg_get_viewdef(c.oid)")} END)
  FROM rel c {_M("c")}
 WHERE c.relkind NOT IN ('c', 'S')  -- a sequence's line holds its parameters (below)
UNION ALL
SELECT m.nspname, 'owner', c.kind || ' ' || c.relname, {_role("c.relowner")}
  FROM rel c {_M("c")}
 WHERE c.relkind <> 'c'
UNION ALL
{_relation_grants(fast)}
UNION ALL
-- columns
SELECT m.nspname, 'column', c.relname || '.' || a.attname,
       concat_ws(' ', {_norm("format_type(a.atttypid, a.atttypmod)")},
                 CASE WHEN a.attnotnull THEN 'not null' END,
                 'default ' || {_norm(_DEFAULT)},
                 CASE a.attidentity WHEN 'a' THEN 'generated always as identity'
                      WHEN 'd' THEN 'generated by default as identity' END,
                 CASE WHEN a.attgenerated = 's' THEN 'stored' END,
                 {_column_extras(fast)})
  FROM rel c {_M("c")}
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  {"" if fast else "JOIN pg_type t ON t.oid = a.atttypid"}
  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
 WHERE c.relkind IN ('r', 'p', 'f', 'c')
{_column_privileges(fast)}
UNION ALL
-- constraints of tables and domains (reached through their table or type: indexed)
SELECT m.nspname, 'constraint', c.relname || '.' || con.conname, {_constraint_value(fast)}
  FROM rel c {_M("c")} JOIN pg_constraint con ON con.conrelid = c.oid
UNION ALL
SELECT m.nspname, 'constraint', ty.typname || '.' || con.conname, {_constraint_value(fast)}
  FROM typ ty {_M("ty")} JOIN pg_constraint con ON con.contypid = ty.oid
UNION ALL
-- indexes (an index lives in its table's schema)
SELECT m.nspname, 'index', ic.relname::text, {_index_value(fast)}
  FROM rel c {_M("c")} JOIN pg_index i ON i.indrelid = c.oid
  JOIN pg_class ic ON ic.oid = i.indexrelid
UNION ALL
-- sequences and their parameters (their owner and grants are with the relations)
SELECT m.nspname, 'sequence', c.relname,
       format('%%s start %%s increment %%s min %%s max %%s cache %%s%%s',
              format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax,
              s.seqcache, CASE WHEN s.seqcycle THEN ' cycle' ELSE '' END)
  FROM rel c {_M("c")} JOIN pg_sequence s ON s.seqrelid = c.oid
UNION ALL
-- row-level security policies
SELECT m.nspname, 'policy', c.relname || '.' || p.polname,
       concat_ws(' ', CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT'
                        WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                 CASE WHEN p.polpermissive THEN 'permissive' ELSE 'restrictive' END,
                 'to ' || (SELECT string_agg({_role("r")}, ',' ORDER BY 1)
                             FROM unnest(p.polroles) AS r),
                 'using (' || {_norm("pg_get_expr(p.polqual, p.polrelid)")} || ')',
                 'with check (' || {_norm("pg_get_expr(p.polwithcheck, p.polrelid)")} || ')')
  FROM rel c {_M("c")} JOIN pg_policy p ON p.polrelid = c.oid
UNION ALL
-- triggers
SELECT m.nspname, 'trigger', c.relname || '.' || t.tgname,
       {_norm("pg_get_triggerdef(t.oid)")}
         || CASE t.tgenabled WHEN 'D' THEN ' (disabled)' ELSE '' END
  FROM rel c {_M("c")} JOIN pg_trigger t ON t.tgrelid = c.oid
 WHERE NOT t.tgisinternal
UNION ALL
-- functions and procedures: signature, body (as an md5), owner, grants
SELECT x.* FROM pg_proc p JOIN m ON m.nsp = p.pronamespace
  CROSS JOIN LATERAL (SELECT {_norm(_SIGNATURE)} AS sig) f
  CROSS JOIN LATERAL (
    SELECT m.nspname, 'function', f.sig,
           concat_ws(' ', 'returns ' || {_norm("pg_get_function_result(p.oid)")},
                     'language ' || (SELECT lanname FROM pg_language WHERE oid = p.prolang),
                     CASE p.provolatile WHEN 'i' THEN 'immutable' WHEN 's' THEN 'stable'
                          ELSE 'volatile' END,
                     CASE WHEN p.prosecdef THEN 'security definer' END,
                     'set ' || {_norm("array_to_string(p.proconfig, ', ')")},
                     'body md5 ' || md5({_norm("p.prosrc")}))
    UNION ALL
    SELECT m.nspname, 'owner', 'function ' || f.sig, {_role("p.proowner")}
    UNION ALL
    {_grants("p.proacl", "'f'", "p.proowner", "'function ' || f.sig")}
  ) x
UNION ALL
-- types: enums, domains, ranges, composite types (a table's row type is its table)
SELECT x.* FROM typ ty {_M("ty")}
  CROSS JOIN LATERAL (
    SELECT m.nspname, 'type', ty.typname,
           CASE ty.typtype
             WHEN 'e' THEN 'enum (' || (SELECT string_agg(quote_literal(e.enumlabel), ', '
                                          ORDER BY e.enumsortorder)
                                        FROM pg_enum e WHERE e.enumtypid = ty.oid) || ')'
             WHEN 'd' THEN concat_ws(' ', 'domain ' || {_norm(_DOMAIN_BASE)},
                                     CASE WHEN ty.typnotnull THEN 'not null' END,
                                     'default ' || {_norm("ty.typdefault")})
             WHEN 'r' THEN 'range of ' || (SELECT {_norm("format_type(r.rngsubtype, NULL)")}
                                           FROM pg_range r WHERE r.rngtypid = ty.oid)
             ELSE 'composite' END
    UNION ALL
    SELECT m.nspname, 'owner', 'type ' || ty.typname, {_role("ty.typowner")}
    UNION ALL
    {_grants("ty.typacl", "'T'", "ty.typowner", "'type ' || ty.typname")}
  ) x
"""


# One row per schema: two 64-bit hashes of each line, combined by XOR, which needs no
# order. An md5 of the sorted lines would sort every line of every schema (1.5 million at
# 10,000 tenants): seconds more (bench/README.md). Keys are unique within a schema, so no
# line cancels another.
_FINGERPRINTS = f"""
SELECT l.nspname,
       lpad(to_hex(bit_xor(hashtextextended(l.line, 0))), 16, '0')
         || lpad(to_hex(bit_xor(hashtextextended(l.line, 1))), 16, '0'),
       count(*)
  FROM (SELECT l.nspname, l.kind || ' ' || l.key || ' ' || coalesce(l.value, '') AS line
          FROM ({_lines(fast=True)}) AS l(nspname, kind, key, value)) AS l
 GROUP BY l.nspname
"""

_DESCRIBE = f"""
SELECT l.nspname, l.kind, l.key, coalesce(l.value, '')
  FROM ({_lines(fast=False)}) AS l(nspname, kind, key, value)
"""


def _params(schemas: list[str], database: str) -> dict[str, object]:
    """The schemas with the role names each should have (names.py: they carry a hash of
    the database, so only Python knows them)."""
    return {
        "schemas": schemas,
        "owners": [owner_role_for_schema(s, database) for s in schemas],
        "webs": [role_for_schema(s, database) for s in schemas],
        "app": app_role(database),
        "grp": owner_group_role(database),
    }


@contextmanager
def _catalog_path(conn: psycopg.Connection) -> Iterator[None]:
    """``search_path`` = ``pg_catalog`` and a larger ``work_mem`` for the block, inside a
    transaction (or a savepoint of the caller's), then back: ``pg_get_*`` qualify names by
    what the path shows, and a caller's later statements (a migration) expect their own
    path. On an error the savepoint's rollback restores both."""
    with conn.transaction():
        row = conn.execute(
            "SELECT current_setting('search_path'), current_setting('work_mem'), "
            "set_config('search_path', 'pg_catalog', true), set_config('work_mem', %s, true)",
            [WORK_MEM],
        ).fetchone()
        assert row is not None
        yield
        conn.execute(
            "SELECT set_config('search_path', %s, true), set_config('work_mem', %s, true)",
            [row[0], row[1]],
        )


def fingerprints(
    conn: psycopg.Connection, schemas: list[str], database: str | None = None
) -> dict[str, Fingerprint]:
    """A digest of each schema's lines (fast variant), in one query. Schemas that do not
    exist are absent from the answer."""
    params = _params(schemas, database or conn.info.dbname)
    with _catalog_path(conn):
        rows = conn.execute(_FINGERPRINTS, params).fetchall()
    return {schema: Fingerprint(digest, int(count)) for schema, digest, count in rows}


def describe(
    conn: psycopg.Connection, schemas: list[str], database: str | None = None
) -> dict[str, Lines]:
    """Every line of each schema, in one query (for the schemas whose fingerprint differs)."""
    params = _params(schemas, database or conn.info.dbname)
    found: dict[str, Lines] = {s: {} for s in schemas}
    with _catalog_path(conn):
        for schema, kind, key, value in conn.execute(_DESCRIBE, params):
            found[schema][(kind, key)] = value
    return found


# -- readable differences ------------------------------------------------------------------
def differences(expected: Lines, actual: Lines) -> list[str]:
    """What ``actual`` lacks, adds or holds differently from ``expected``, one sentence
    each, sorted by object."""
    out: list[tuple[Key, str]] = []
    for key in expected.keys() - actual.keys():
        out.append((key, _missing(key, expected[key])))
    for key in actual.keys() - expected.keys():
        out.append((key, _unexpected(key, actual[key])))
    for key in expected.keys() & actual.keys():
        if expected[key] != actual[key]:
            out.append((key, _changed(key, expected[key], actual[key])))
    return [text for _, text in sorted(out, key=lambda item: (item[0][1], item[0][0]))]


def _split_grant(key: str) -> tuple[str, str, str]:
    """``table job_postings web INSERT`` → (``table job_postings``, ``web``, ``INSERT``)."""
    what, grantee, privilege = key.rsplit(" ", 2)
    return what, grantee, privilege


def _with(value: str) -> str:
    return f" {value}" if value else ""


def _missing(key: Key, value: str) -> str:
    kind, name = key
    if kind == "grant":
        what, grantee, privilege = _split_grant(name)
        return f"grant: {grantee} lost {privilege} on {what}"
    if kind == "default privilege":
        return f"default privilege missing: {name}{_with(value)}"
    if kind == "owner":
        return f"owner: {name} should be owned by {value}"
    return f"missing: {kind} {name}{_with(value)}"


def _unexpected(key: Key, value: str) -> str:
    kind, name = key
    if kind == "grant":
        what, grantee, privilege = _split_grant(name)
        return f"grant: {grantee} gained {privilege} on {what}"
    if kind == "default privilege":
        return f"unexpected default privilege: {name}{_with(value)}"
    if kind == "owner":
        return f"owner: {name} is owned by {value}"
    return f"unexpected: {kind} {name}{_with(value)}"


def _changed(key: Key, expected: str, actual: str) -> str:
    kind, name = key
    if kind == "owner":
        return f"owner: {name} is owned by {actual}, expected {expected}"
    if kind in ("grant", "default privilege"):
        plain = "without grant option"
        return f"{kind}: {name}: {actual or plain}, expected {expected or plain}"
    return f"changed: {kind} {name}: {actual or '(plain)'}, expected {expected or '(plain)'}"
