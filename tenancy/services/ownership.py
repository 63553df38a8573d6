"""Bring every registered tenant to the owner-role model: its schema and objects owned by
its NOLOGIN owner role, the web role's grants in place. Idempotent; run by the Django
migration ``tenancy.0005_tenant_owner_roles`` (so ``migrate_tenants --public`` upgrades an
existing deployment) and callable again at any time."""

from __future__ import annotations

import psycopg
from psycopg import sql

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
    statements = ownership.missing_roles_statements(
        web, owner, database, missing=missing, superuser=ownership.is_superuser(conn)
    )
    statements += ownership.take_over_statements(conn, schema, owner, web)
    for statement in statements:
        conn.execute(statement)
    return True


# -- the shared tables tenants' requests may use ------------------------------------------
SHARED_APPS_TABLES = "shared-apps"


def shared_tables_for_tenants() -> list[str]:
    """``TENANCY["TENANT_SHARED_TABLES"]``: the tables in ``public`` a tenant's requests may
    read and write (through the app role every web role is a member of). ``[]`` (the
    default): none, beyond what public migrations grant. ``"shared-apps"``: every table of
    the models of SHARED_APPS but tenancy's own, as django-tenants allows (its tenants'
    search_path ends in public, under the connecting user). Or a list of table names."""
    from django.apps import apps
    from django.conf import settings

    from tenancy import conf

    chosen = conf.setting("TENANT_SHARED_TABLES")
    if chosen != SHARED_APPS_TABLES:
        return list(chosen or [])
    tenant_apps = set(getattr(settings, "TENANT_APPS", []))
    tables = {
        model._meta.db_table
        for config in apps.get_app_configs()
        if config.name in getattr(settings, "SHARED_APPS", [])
        and config.name not in tenant_apps
        and config.label != "tenancy"
        for model in config.get_models(include_auto_created=True)
        if model._meta.managed and not model._meta.proxy
    }
    return sorted(tables)


def grant_shared_tables(conn: psycopg.Connection) -> list[str]:
    """Grant the app role DML on the shared tables tenants may use (those that exist), in
    one statement; idempotent. Returns the tables."""
    wanted = shared_tables_for_tenants()
    if not wanted:
        return []
    rows = conn.execute(
        "SELECT t FROM unnest(%s::text[]) AS t "
        "WHERE to_regclass('public.' || quote_ident(t)) IS NOT NULL ORDER BY 1",
        [wanted],
    ).fetchall()
    tables = [r[0] for r in rows]
    if tables:
        conn.execute(
            sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(
                sql.SQL(", ").join(sql.Identifier("public", t) for t in tables),
                sql.Identifier(app_role(conn.info.dbname)),
            )
        )
    return tables
