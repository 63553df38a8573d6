"""Who owns a tenant's schema, and what each tenant role may do.

Every tenant has two NOLOGIN roles (names in ``names.py``; on Citus they may log in, see
``citus_login_statements``):

- the **owner** owns the schema and every object in it. The tenant's migrations run under
  it (``SET LOCAL ROLE`` in the schema's transaction), so PostgreSQL itself refuses a
  tenant file that drops another tenant's schema, writes to ``public`` or creates anything
  outside its schema. It is a member of the owner group, which holds what tenant files
  may use in ``public`` (nothing by default: a public migration grants, for example,
  ``SELECT, REFERENCES`` on a shared table that tenant tables point to, to
  ``{{owner_group}}``);
- the **web role** serves the tenant's requests: ``USAGE`` on the schema and DML on its
  tables and sequences (default privileges of the owner), membership in the app role.

A connecting user that is not a superuser is made a member of both, so it may take them.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from tenancy.engine.names import app_role, owner_group_role, owner_role_prefix, role_prefix

ROLE_OPTIONS = "NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS INHERIT"


def role_ddl(role: str) -> sql.Composed:
    return sql.SQL("CREATE ROLE {} " + ROLE_OPTIONS).format(sql.Identifier(role))


def citus_login_statements(roles: list[str]) -> list[sql.Composable]:
    """On Citus the coordinator reaches the workers as the *current* user, so a tenant role
    that runs queries (its owner during migrations, its web role during requests) must be
    able to log in there. The roles get no password: the coordinator's own connections are
    authenticated by the cluster's node authentication (docs/scale-out.md), and a client
    cannot log in as them where pg_hba.conf asks for a password."""
    return [sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(r)) for r in roles]


def missing_roles(conn: psycopg.Connection, roles: list[str]) -> list[str]:
    rows = conn.execute(
        "SELECT r FROM unnest(%s::text[]) AS r WHERE to_regrole(quote_ident(r)) IS NULL",
        [roles],
    ).fetchall()
    return [r[0] for r in rows]


def is_superuser(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    return bool(row and row[0])


def tenant_roles_statements(
    web_role: str, owner: str, database: str, *, create_shared: list[str], superuser: bool
) -> list[sql.Composable]:
    """Create a tenant's owner and web roles (and the shared app role and owner group when
    ``create_shared`` names them: they belong to the server and may not exist yet)."""
    return [
        *shared_roles_statements(database, create_shared),
        *owner_role_statements(owner, database, superuser=superuser),
        *web_role_statements(web_role, database, superuser=superuser),
    ]


def shared_roles_statements(database: str, missing: list[str]) -> list[sql.Composable]:
    return [role_ddl(r) for r in (app_role(database), owner_group_role(database)) if r in missing]


def owner_role_statements(owner: str, database: str, *, superuser: bool) -> list[sql.Composable]:
    group = sql.Identifier(owner_group_role(database))
    return [
        role_ddl(owner),
        sql.SQL("GRANT {} TO {}").format(group, sql.Identifier(owner)),
        *_take(owner, superuser),
    ]


def web_role_statements(web_role: str, database: str, *, superuser: bool) -> list[sql.Composable]:
    app = sql.Identifier(app_role(database))
    return [
        role_ddl(web_role),
        # Shared tables (audit_logs, under RLS) are reached through the app role's grants.
        sql.SQL("GRANT {} TO {}").format(app, sql.Identifier(web_role)),
        *_take(web_role, superuser),
    ]


def _take(role: str, superuser: bool) -> list[sql.Composable]:
    """A superuser may take any role; anyone else must be a member of it."""
    return [] if superuser else [sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(role))]


def schema_grants(schema: str, owner: str, web_role: str) -> list[sql.Composable]:
    """The web role's rights on the schema: use it, and read and write the tables and
    sequences the owner creates from now on (default privileges)."""
    s, o, w = sql.Identifier(schema), sql.Identifier(owner), sql.Identifier(web_role)
    return [
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, w),
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} "
            "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}"
        ).format(o, s, w),
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} "
            "GRANT USAGE, SELECT ON SEQUENCES TO {}"
        ).format(o, s, w),
    ]


def existing_objects_grants(schema: str, web_role: str) -> list[sql.Composable]:
    """The same rights on the tables and sequences already there (an adopted schema).
    Not for a new schema: each statement scans pg_class, and there is nothing to grant."""
    s, w = sql.Identifier(schema), sql.Identifier(web_role)
    return [
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {} TO {}").format(
            s, w
        ),
        sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(s, w),
    ]


def create_schema_statements(schema: str, owner: str, web_role: str) -> list[sql.Composable]:
    create = sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(
        sql.Identifier(schema), sql.Identifier(owner)
    )
    return [create, *schema_grants(schema, owner, web_role)]


# Objects of a schema not owned by the schema's owner role: (ALTER verb, identity).
_FOREIGN_OWNED = """
WITH o AS (SELECT coalesce((SELECT oid FROM pg_roles WHERE rolname = %(owner)s), 0) AS oid)
SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                      WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE'
                      ELSE 'TABLE' END,
       format('%%I.%%I', n.nspname, c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
   AND c.relowner <> (SELECT oid FROM o)
   -- a sequence owned by a column follows its table
   AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid
            AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
UNION ALL
SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
       p.oid::regprocedure::text
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = %(schema)s AND p.proowner <> (SELECT oid FROM o)
UNION ALL
SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
       format('%%I.%%I', n.nspname, t.typname)
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
  LEFT JOIN pg_class c ON c.oid = t.typrelid
 WHERE n.nspname = %(schema)s AND t.typowner <> (SELECT oid FROM o)
   AND (t.typtype IN ('d', 'e', 'r') OR (t.typtype = 'c' AND c.relkind = 'c'))
"""


def adopt_statements(conn: psycopg.Connection, schema: str, owner: str) -> list[sql.Composable]:
    """Hand ``schema`` and everything in it to ``owner`` (a schema built before tenants had
    owner roles belongs to the connecting user)."""
    rows = conn.execute(_FOREIGN_OWNED, {"schema": schema, "owner": owner}).fetchall()
    o = sql.Identifier(owner)
    statements: list[sql.Composable] = [
        sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(sql.Identifier(schema), o)
    ]
    for verb, identity in rows:
        # The identity was formatted by PostgreSQL itself (format %I, regprocedure).
        statements.append(
            sql.SQL("ALTER {} {} OWNER TO {}").format(sql.SQL(verb), sql.SQL(identity), o)
        )
    return statements


def revoke_public_create(conn: psycopg.Connection) -> None:
    """No role may create objects in ``public`` merely by existing (PostgreSQL 15's default;
    older databases granted it to PUBLIC): a tenant owner role must not."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_namespace n, aclexplode(n.nspacl) a "
        "WHERE n.nspname = 'public' AND a.grantee = 0 AND a.privilege_type = 'CREATE')"
    ).fetchone()
    if row and row[0]:
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")


def revoke_public_temp(conn: psycopg.Connection) -> None:
    """No role may create temporary objects merely by existing (PostgreSQL grants TEMPORARY
    on a database to PUBLIC): a tenant's owner role must not. A temporary table or view a
    tenant file made would stay on the engine's connection after the file, where it is
    searched before pg_catalog and public for relation names: a temporary view called
    ``pg_namespace`` would run the tenant's functions in the engine's next catalog query,
    with the engine's authority. The connecting user keeps the right."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_database d, aclexplode(d.datacl) a "
        "WHERE d.datname = current_database() AND a.grantee = 0 "
        "AND a.privilege_type = 'TEMPORARY') OR "
        "(SELECT datacl IS NULL FROM pg_database WHERE datname = current_database())"
    ).fetchone()
    if row and row[0]:
        database = sql.Identifier(conn.info.dbname)
        conn.execute(
            sql.SQL(
                "REVOKE TEMPORARY ON DATABASE {0} FROM PUBLIC; "
                "GRANT TEMPORARY ON DATABASE {0} TO CURRENT_USER"
            ).format(database)
        )


def not_referenceable(conn: psycopg.Connection, tables: list[str], group: str) -> list[str]:
    """Of ``tables`` (names in ``public``; those that do not exist are left out), the ones
    ``group`` may not reference (all of them when the group does not exist yet)."""
    rows = conn.execute(
        "SELECT t FROM unnest(%s::text[]) AS t "
        "WHERE to_regclass('public.' || quote_ident(t)) IS NOT NULL AND ("
        "to_regrole(quote_ident(%s)) IS NULL OR "
        "NOT has_table_privilege(%s, 'public.' || quote_ident(t), 'REFERENCES'))",
        [tables, group, group],
    ).fetchall()
    return [r[0] for r in rows]


# -- adoption: schemas tenancy did not build, roles of a database that is gone ---------------
def missing_roles_statements(
    web_role: str, owner: str, database: str, *, missing: list[str], superuser: bool
) -> list[sql.Composable]:
    """Create those of a tenant's roles and the shared ones that ``missing`` names, each as
    tenant creation creates it: with all four missing, ``tenant_roles_statements``."""
    statements = shared_roles_statements(database, missing)
    if owner in missing:
        statements += owner_role_statements(owner, database, superuser=superuser)
    if web_role in missing:
        statements += web_role_statements(web_role, database, superuser=superuser)
    return statements


def take_over_statements(
    conn: psycopg.Connection, schema: str, owner: str, web_role: str
) -> list[sql.Composable]:
    """Make an existing schema (built by someone else: stock django-tenants, a restore) a
    tenant's as if creation had built it: the schema and every object in it owned by
    ``owner``, and the web role's rights of ``create_schema_statements`` (usage, default
    privileges for what the owner creates later) plus the same rights on the tables and
    sequences already there. Reads the catalog once (the objects to hand over)."""
    return [
        *adopt_statements(conn, schema, owner),
        *schema_grants(schema, owner, web_role),
        *existing_objects_grants(schema, web_role),
    ]


def database_roles(conn: psycopg.Connection, database: str) -> list[str]:
    """Every role tenancy made for ``database`` (its tenants' and the warm pool's owner and
    web roles, the app role, the owner group), found by the hash of the database's name
    that their names carry (``names.py``), sorted."""
    prefixes = [
        p.replace("_", "\\_") + "%" for p in (role_prefix(database), owner_role_prefix(database))
    ]
    rows = conn.execute(
        "SELECT rolname::text FROM pg_roles WHERE rolname LIKE ANY(%s) OR rolname = ANY(%s) "
        "ORDER BY 1",
        [prefixes, [app_role(database), owner_group_role(database)]],
    ).fetchall()
    return [r[0] for r in rows]


def drop_roles_statement(roles: list[str]) -> sql.Composed:
    """One ``DROP ROLE`` for all of ``roles``: PostgreSQL refuses it as a whole while any of
    them still owns an object or holds a privilege in any database of the server."""
    return sql.SQL("DROP ROLE {}").format(sql.SQL(", ").join(sql.Identifier(r) for r in roles))
