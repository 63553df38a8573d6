"""The embedded PostgreSQL server used when no database URL is configured.

A fresh machine needs nothing installed: the ``pgserver`` package ships PostgreSQL
binaries, and we keep its data folder inside the checkout (git-ignored). The server
keeps running after this process exits, so ``make run``, a second shell and the test
suite all share one server; ``get_server`` reuses it when it is already up.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = BASE_DIR / ".pgdata"


def embedded_database_settings(dbname: str) -> dict[str, object]:
    """Start (or reuse) the embedded server and return Django DATABASES settings for it."""
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    data_dir = Path(os.environ.get("EMPLOYER_PORTAL_PGDATA", DEFAULT_DATA_DIR))
    server = pgserver.get_server(data_dir, cleanup_mode=None)
    info = server.get_postmaster_info()
    socket_dir = str(info.socket_dir) if info.socket_dir else str(data_dir)
    _ensure_database(server, dbname)
    return {
        "NAME": dbname,
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": socket_dir,
        "PORT": "",
    }


def _ensure_database(server: object, dbname: str) -> None:
    import psycopg
    from psycopg import sql

    info = server.get_postmaster_info()  # type: ignore[attr-defined]
    with psycopg.connect(
        host=str(info.socket_dir), dbname="postgres", user="postgres", autocommit=True
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
