"""Bring every registered tenant to the owner-role model: its schema and objects owned by
its NOLOGIN owner role, the web role's grants in place. Idempotent; run by the Django
migration ``tenancy.0005_tenant_owner_roles`` (so ``migrate_tenants --public`` upgrades an
existing deployment) and callable again at any time."""

from __future__ import annotations

import psycopg

from tenancy.engine import ownership
from tenancy.engine.names import (
    app_role,
    owner_group_role,
    owner_role_for_schema,
    role_for_schema,
)


def adopt_all(conn: psycopg.Connection) -> list[str]:
    """Hand every registered tenant schema that exists to its owner role, in the caller's
    transaction. Returns the schemas changed."""
    ownership.revoke_public_create(conn)
    ownership.revoke_public_temp(conn)
    database = conn.info.dbname
    rows = conn.execute(
        "SELECT r.schema_name FROM public.tenant_registry r "
        "JOIN pg_namespace n ON n.nspname = r.schema_name "
        "LEFT JOIN pg_roles o ON o.oid = n.nspowner "
        "WHERE o.rolname IS DISTINCT FROM %s || r.schema_name ORDER BY 1",
        [owner_role_for_schema("", database)],
    ).fetchall()
    changed = [schema for (schema,) in rows if adopt(conn, schema)]
    return changed


def adopt(conn: psycopg.Connection, schema: str) -> bool:
    """One schema; False when it was already its owner role's."""
    database = conn.info.dbname
    owner, web = owner_role_for_schema(schema, database), role_for_schema(schema, database)
    row = conn.execute(
        "SELECT nspowner::regrole::text = quote_ident(%s) FROM pg_namespace WHERE nspname = %s",
        [owner, schema],
    ).fetchone()
    if row is None or row[0]:
        return False
    shared = [app_role(database), owner_group_role(database)]
    missing = ownership.missing_roles(conn, [owner, web, *shared])
    superuser = ownership.is_superuser(conn)
    statements = ownership.shared_roles_statements(database, missing)
    if owner in missing:
        statements += ownership.owner_role_statements(owner, database, superuser=superuser)
    if web in missing:
        statements += ownership.web_role_statements(web, database, superuser=superuser)
    statements += ownership.adopt_statements(conn, schema, owner)
    statements += ownership.schema_grants(schema, owner, web)
    statements += ownership.existing_objects_grants(schema, web)
    for statement in statements:
        conn.execute(statement)
    return True
