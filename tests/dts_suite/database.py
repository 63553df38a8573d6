"""The database the suite runs on, and what a run leaves on its server.

The server is the one our own suite uses (``EMPLOYER_PORTAL_DB_URL``, else ``DATABASE_URL``,
else the embedded PostgreSQL), with a database name of the harness' own: its test database
(``test_<name>``) never meets our suite's. Imported both by ``run.py`` and by the settings
module it writes, so a password never has to be written into a file.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import environ
import psycopg
from psycopg import sql

DEFAULT_NAME = "dts_test_project"
MAINTENANCE_DB = "postgres"


def database_settings(engine: str, name: str = DEFAULT_NAME) -> dict[str, Any]:
    """Django settings of database ``name`` (created when missing) with ``engine``."""
    url = os.environ.get("EMPLOYER_PORTAL_DB_URL") or os.environ.get("DATABASE_URL")
    if url:
        with warnings.catch_warnings():  # django-environ warns about unknown URL options
            warnings.simplefilter("ignore")
            db: dict[str, Any] = environ.Env.db_url_config(url)
        db["NAME"] = name
        _ensure_database(db)
    else:
        from employer_portal.embedded_db import embedded_database_settings

        db = embedded_database_settings(name)  # starts or reuses it; creates the database
    db["ENGINE"] = engine
    db["TEST"] = {"NAME": f"test_{name}"}
    return db


def where(db: dict[str, Any]) -> str:
    """The server and database, for the report (never the password)."""
    return f"{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}/{db['NAME']}"


def connect(db: dict[str, Any], dbname: str | None = None) -> psycopg.Connection:
    params = {
        "dbname": dbname or db["NAME"],
        "user": db.get("USER") or None,
        "password": db.get("PASSWORD") or None,
        "host": db.get("HOST") or None,
        "port": db.get("PORT") or None,
        **{k: v for k, v in (db.get("OPTIONS") or {}).items() if k in {"sslmode", "sslrootcert"}},
    }
    return psycopg.connect(
        **{k: v for k, v in params.items() if v is not None}, autocommit=True, connect_timeout=10
    )


def _ensure_database(db: dict[str, Any]) -> None:
    with connect(db, MAINTENANCE_DB) as conn:
        if not conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]
        ).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))


def drop_leftover_test_database(db: dict[str, Any]) -> bool:
    """Django drops the test database when the suite ends; a run that was killed (the
    timeout) leaves it, with the roles' objects in it. True when one was dropped."""
    name = db["TEST"]["NAME"]
    with connect(db, MAINTENANCE_DB) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return False
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    return True


def tenancy_role_prefixes(database: str) -> list[str]:
    """What the names of the roles tenancy creates for ``database`` start with (tenancy's
    own naming rules: they are server-wide, so they carry a hash of the database name)."""
    from tenancy.engine.names import app_role, owner_group_role, owner_role_prefix, role_prefix

    return [
        role_prefix(database),  # tr<hash>_: the tenants' web roles
        owner_role_prefix(database),  # to<hash>_: the tenants' owner roles
        owner_group_role(database),  # tg<hash>_owners: the owners' group
        app_role(database),  # ta<hash>_app: the role requests switch to
    ]


def drop_tenancy_roles(db: dict[str, Any]) -> list[str]:
    """Drop the roles tenancy created for the test database (roles outlive it); their
    names. Run after the test database is gone: what they owned went with it."""
    patterns = [
        p.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"
        for p in tenancy_role_prefixes(db["TEST"]["NAME"])
    ]
    # Connected to the suite's own database: DROP OWNED clears what a role holds there.
    with connect(db) as conn:
        roles = [
            name
            for (name,) in conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE ANY(%s) ORDER BY rolname",
                [patterns],
            ).fetchall()
        ]
        for role in roles:
            conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    return roles
