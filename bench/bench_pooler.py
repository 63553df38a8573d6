#!/usr/bin/env python
"""Requests per second of a tenant page, direct and through poolers, beside the raw SQL.

A script that prints a table, not a test. It creates its own database (``bench_pooler``)
on the configured server (the embedded one, or ``--database-url``: only the server is taken
from it), two tenants with one job posting each, then serves ``/`` on both tenants' hosts
through the whole Django stack (middleware, view, template) from ``--clients`` threads,
each with its own Django test client and database connection, over each path:

- ``direct``: straight to PostgreSQL, persistent connections;
- ``pgbouncer-transaction`` / ``pgbouncer-session``: Debian's PgBouncer in that mode with
  ``default_pool_size = 1`` (every client shares one server connection);
- ``django-pool``: Django 5.2's psycopg_pool, direct, 2 pooled connections for the clients.

Every response is checked: its own tenant's posting present, the other's absent. The raw
bound is the SQL a tenant page needs (domain lookup; BEGIN, the tenant context, the two
SELECTs, COMMIT) sent by psycopg on one connection per client, no Django.

    .venv/bin/python bench/bench_pooler.py --requests 2000 --clients 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DB_NAME = "bench_pooler"
TENANTS = (("org_benchpa", "Alpha posting"), ("org_benchpb", "Beta posting"))
POOL = {"min_size": 2, "max_size": 2}
PATHS = ("direct", "pgbouncer-transaction", "pgbouncer-session", "django-pool")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--requests", type=int, default=2000, help="requests per path (all clients)")
    p.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    p.add_argument("--rounds", type=int, default=3, help="rounds per path; the best is shown")
    p.add_argument("--paths", default=",".join(PATHS), help="comma-separated subset of paths")
    p.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    p.add_argument("--json", help="also write the figures to this file")
    return p.parse_args(argv)


def configure(args: argparse.Namespace, db_name: str = DB_NAME) -> None:
    """The project's settings on the bench's own database ``db_name``, DEBUG off."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "employer_portal.settings"
    os.environ.pop("EMPLOYER_PORTAL_DB_URL", None)
    os.environ.pop("DATABASE_URL", None)
    if args.database_url:
        parts = urlsplit(args.database_url)
        os.environ["EMPLOYER_PORTAL_DB_URL"] = urlunsplit(parts._replace(path="/" + db_name))
    else:
        os.environ["EMPLOYER_PORTAL_DB_NAME"] = db_name
    # Production-like: DEBUG off (Django would otherwise keep every query in memory).
    # The bench's client speaks plain HTTP, as behind a TLS-terminating proxy that is not here:
    # without this, production settings answer every page with a redirect to https.
    os.environ.update(
        DEBUG="false",
        SECRET_KEY="bench-only",
        ALLOWED_HOSTS=".localhost",
        SECURE_SSL_REDIRECT="false",
    )
    os.environ.setdefault("TENANCY_MAX_CREATIONS_PER_HOUR", "1000")


def recreate_database(params: dict[str, Any], db_name: str) -> None:
    """The bench's own database, empty (an earlier one dropped with its tenant roles, which
    belong to the whole server), with the public migrations applied."""
    import psycopg
    from django.core.management import call_command
    from psycopg import sql

    from tests.conftest import drop_roles

    with psycopg.connect(**{**params, "dbname": "postgres"}, autocommit=True) as conn:
        name = sql.Identifier(db_name)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        drop_roles(conn, db_name)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
    call_command("migrate_tenants", "--public", verbosity=0)


def prepare() -> dict[str, Any]:
    """A fresh database with the two tenants; returns the direct connection parameters."""
    import psycopg
    from psycopg import sql

    from tenancy import conf
    from tenancy.services.tenants import create_tenant

    params = conf.conninfo()
    recreate_database(params, DB_NAME)
    with psycopg.connect(**params, autocommit=True) as conn:
        for org, title in TENANTS:
            create_tenant(org, org, actor="bench")
            schema = sql.Identifier(f"tenant_{org}")
            conn.execute(
                sql.SQL(
                    "WITH o AS (INSERT INTO {}.organizations (auth0_org_id, name) "
                    "VALUES ('x', 'x') RETURNING id) INSERT INTO {}.job_postings "
                    "(organization_id, title, status) SELECT id, %s, 'open' FROM o"
                ).format(schema, schema),
                [title],
            )
    return params


def raw(params: dict[str, Any], clients: int, total: int) -> float:
    """The SQL of a tenant page on psycopg, one connection per client: the floor."""
    import psycopg

    from tenancy.engine.names import role_for_schema
    from tests.load import host_of, run_clients

    per_client = total // clients

    def loop(index: int) -> None:
        # No prepared statements: as Django's backend, and a transaction pooler loses them.
        with psycopg.connect(**params, autocommit=True, prepare_threshold=None) as conn:
            for i in range(per_client):
                org = TENANTS[(i + index) % 2][0]
                schema = f"tenant_{org}"
                conn.execute(
                    "SELECT d.id, t.schema_name FROM tenant_domains d JOIN tenant_registry t "
                    "ON t.id = d.tenant_id WHERE d.domain = %s",
                    [host_of(org)],
                ).fetchall()
                with conn.transaction():
                    conn.execute(
                        "SELECT set_config('role', %s, true), "
                        "set_config('search_path', %s, true), "
                        "set_config('app.current_tenant', %s, true)",
                        [role_for_schema(schema, params["dbname"]), f"{schema}, public", schema],
                    )
                    conn.execute("SELECT * FROM job_postings LIMIT 200").fetchall()
                    conn.execute(
                        "SELECT * FROM audit_logs ORDER BY created_at DESC, id DESC LIMIT 10"
                    ).fetchall()

    return per_client * clients / run_clients(loop, clients)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure(args)
    import django

    django.setup()
    from tests import pgbouncer
    from tests.load import default_database, serve_pages

    params = prepare()
    direct_host, direct_port = params.get("host", ""), params.get("port", "")
    tenants = list(TENANTS)
    figures: dict[str, Any] = {}
    for path in [p for p in args.paths.split(",") if p]:
        pool = path == "django-pool"
        mode = path.split("-", 1)[1] if path.startswith("pgbouncer") else None
        if mode and not pgbouncer.available():
            print(f"{path}: skipped (pgbouncer is not installed)")
            continue
        rounds: list[dict[str, Any]] = []
        raws: list[float] = []
        load = {"clients": args.clients, "total": args.requests}
        for _ in range(args.rounds):
            if mode:
                with (
                    pgbouncer.pgbouncer(params, mode=mode, pool_size=1) as port,
                    default_database("127.0.0.1", port),
                ):
                    rounds.append(serve_pages(tenants, **load, close_each=False))
                    bounced = {**params, "host": "127.0.0.1", "port": port}
                    raws.append(raw(bounced, args.clients, args.requests))
            else:
                with default_database(direct_host, direct_port, pool=POOL if pool else None):
                    rounds.append(serve_pages(tenants, **load, close_each=pool))
                raws.append(raw(params, args.clients, args.requests))
        best = max(rounds, key=lambda r: r["rps"])
        best["raw_rps"] = max(raws)
        best["rps_rounds"] = [round(r["rps"], 1) for r in rounds]
        best["median_rps"] = statistics.median(r["rps"] for r in rounds)
        figures[path] = best
    print(
        f"{'path':<24}{'req/s':>9}{'median':>9}{'raw req/s':>11}{'ok':>7}{'wrong':>7}{'errors':>8}"
    )
    for path, f in figures.items():
        print(
            f"{path:<24}{f['rps']:>9.1f}{f['median_rps']:>9.1f}{f['raw_rps']:>11.1f}"
            f"{f['ok']:>7}{f['wrong']:>7}{f['errors']:>8}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
