#!/usr/bin/env python
"""django-tenants' API on our backend against stock django-tenants, beside the raw SQL.

A script that prints figures, not a test. It creates its own database
(``bench_tenant_api``) on the configured server (the embedded one, or ``--database-url``:
only the server is taken from it), two tenants by ``create_tenant`` (``org_bench1``,
``org_bench2``) with an organization and 20 job postings each, then measures, in one
process, three backends on the same database, tenants and rows:

- ``ours``: ``tenancy.postgresql_backend`` (the tenant's context set per transaction with
  ``set_config(..., true)``, sent with the transaction's first statement) and the project's
  routing middleware (``tenancy.middleware.TenantMiddleware``);
- ``stock``: ``django_tenants.postgresql_backend`` as shipped (``TENANT_LIMIT_SET_CALLS``
  off: a session-level ``SET search_path`` before every cursor's statement) and
  ``django_tenants.middleware.main.TenantMainMiddleware``;
- ``stock-limit``: the same with ``TENANT_LIMIT_SET_CALLS = True`` (the ``SET`` only when the
  tenant changed), django-tenants' own optimisation.

Direct (1 and 2), the three backends' Django connections are open at once in this thread
and take turns as Django's ``default`` alias (what ``connection``, ``schema_context`` and
the middlewares use): every block of 10 queries, every request, in an order that rotates,
with raw taking its turn too. The machine's drift (2 shared cores here: a pass can be 30%
slower than the one before it) then weighs on all of them alike. Stock connects as the same
superuser (it switches no role).

1. **per query**: ``with schema_context(s): JobPosting.objects.filter(status="open").first()``,
   alternating between the two tenants, ``--queries`` times per variant, outside
   ``atomic()`` and inside one ``atomic()`` block per variant (``stock-limit`` is left out:
   ``schema_context`` makes django-tenants send its ``SET`` again whatever the setting).
   Raw: the same SELECT (as Django compiles it) with the table schema-qualified, on one
   psycopg connection (autocommit; or one transaction).
2. **per request**: ``GET /`` on a tenant's host with ``django.test.Client`` (the whole
   middleware stack), alternating tenants, ``--requests`` times per backend, one client per
   backend, direct. The bench's view makes 5 queries on the tenant's tables and lists the
   titles it read. Raw:
   the domain lookup and the 5 SELECTs (as Django compiles them, schema-qualified), one
   psycopg connection, autocommit.
3. **behind PgBouncer** (transaction mode, ``default_pool_size = 1``): the same page from
   ``--clients`` threads alternating between the two tenants (tests/load.py's
   ``serve_pages``), each backend in turn (Django's ``default`` ENGINE switched, a new
   PgBouncer each); every response checked for its own tenant's titles and none of the
   other's: ok / wrong / errors per backend, and the errors by kind.

At the end the tenants are dropped (``drop_tenant``), then the database and the roles it
made (roles are server-wide), unless ``--keep``.

    .venv/bin/python bench/bench_tenant_api.py                       # ~1.5 minutes
    .venv/bin/python bench/bench_tenant_api.py --queries 10000 --requests 5000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import sys
import time
import types
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DB_NAME = "bench_tenant_api"
# (org id, the title prefix only its pages may show)
TENANTS = (("org_bench1", "Bench alpha"), ("org_bench2", "Bench beta"))
POSTINGS = 20  # per tenant, every other one open
OURS = "tenancy.postgresql_backend"
STOCK = "django_tenants.postgresql_backend"
# name -> (ENGINE, TENANT_LIMIT_SET_CALLS)
BACKENDS = {"ours": (OURS, False), "stock": (STOCK, False), "stock-limit": (STOCK, True)}
OUR_MIDDLEWARE = "tenancy.middleware.TenantMiddleware"
STOCK_MIDDLEWARE = "django_tenants.middleware.main.TenantMainMiddleware"
URLCONF = "bench_tenant_api_urls"
WARMUP = 50
BLOCK = 10  # queries per block: the variants take turns every block


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--queries", type=int, default=3000, help="ORM queries per variant and mode (default 3000)"
    )
    p.add_argument("--requests", type=int, default=2000, help="requests per backend (default 2000)")
    p.add_argument(
        "--bouncer-requests", type=int, default=1000,
        help="requests per backend through PgBouncer (default 1000; 0 skips it)",
    )  # fmt: skip
    p.add_argument("--clients", type=int, default=4, help="threads through PgBouncer (default 4)")
    p.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    p.add_argument("--keep", action="store_true", help="keep the bench database and its roles")
    p.add_argument("--json", metavar="FILE", help="also write the figures to this file")
    return p.parse_args(argv)


def configure(args: argparse.Namespace) -> None:
    """As bench_pooler.py: the project's settings on the bench's own database, DEBUG off."""
    from bench_pooler import configure as project_settings

    project_settings(args, DB_NAME)


# -- the database --------------------------------------------------------------------------
DROP_DATABASE = "DROP DATABASE IF EXISTS {} WITH (FORCE)"


def admin_connect(params: dict[str, Any]) -> Any:
    import psycopg

    return psycopg.connect(**{**params, "dbname": "postgres"}, autocommit=True)


def prepare() -> None:
    """A fresh database with the two tenants and their rows."""
    import psycopg
    from psycopg import sql

    from tenancy import conf
    from tenancy.services.tenants import create_tenant

    params = conf.conninfo()
    from bench_pooler import recreate_database

    recreate_database(params, DB_NAME)
    with psycopg.connect(**params, autocommit=True) as conn:
        for org, title in TENANTS:
            create_tenant(org, org, actor="bench")
            schema = sql.Identifier(f"tenant_{org}")
            conn.execute(
                sql.SQL(
                    "WITH o AS (INSERT INTO {}.organizations (auth0_org_id, name) "
                    "VALUES (%s, %s) RETURNING id) INSERT INTO {}.job_postings "
                    "(organization_id, title, status, created_at) "
                    "SELECT o.id, %s || ' ' || k, CASE WHEN k %% 2 = 0 THEN 'open' ELSE 'closed' "
                    "END, now() - k * interval '1 hour' FROM o, generate_series(1, %s) k"
                ).format(schema, schema),
                [f"{org}-auth0", f"{title} org", title, POSTINGS],
            )


def cleanup(params: dict[str, Any]) -> None:
    from django.db import connections
    from psycopg import sql

    from tenancy.engine.db import close_idle
    from tenancy.services.lifecycle import drop_tenant
    from tests.conftest import drop_roles

    for org, _title in TENANTS:
        try:
            drop_tenant(org, actor="bench", reason="bench_tenant_api cleanup")
        except Exception as exc:  # not created (a failed preparation): the database goes anyway
            print(f"drop_tenant({org}): {exc}", file=sys.stderr)
    connections.close_all()
    close_idle()
    with admin_connect(params) as conn:
        conn.execute(sql.SQL(DROP_DATABASE).format(sql.Identifier(DB_NAME)))
        drop_roles(conn, DB_NAME)  # the app role and the owner group of this database


# -- the view: 5 queries on the tenant's tables --------------------------------------------
def tenant_page(request: Any) -> Any:
    from django.http import HttpResponse

    from employer_portal.portal.models import JobPosting, Organization

    titles = list(JobPosting.objects.filter(status="open").values_list("title", flat=True)[:50])
    total = JobPosting.objects.count()
    organization = Organization.objects.order_by("name").first()
    latest = JobPosting.objects.order_by("-created_at").first()
    closed = JobPosting.objects.filter(status="closed").exists()
    lines = [
        f"{organization.name if organization else '-'}: {total} postings, closed: {closed}",
        f"latest: {latest.title if latest else '-'}",
        *titles,
    ]
    return HttpResponse("\n".join(lines), content_type="text/plain")


def install_urlconf() -> None:
    from django.urls import path

    module = types.ModuleType(URLCONF)
    module.urlpatterns = [path("", tenant_page)]  # type: ignore[attr-defined]
    sys.modules[URLCONF] = module


# -- switching the backend -----------------------------------------------------------------
@contextmanager
def backend(name: str) -> Iterator[None]:
    """Django's default alias on ``name``'s ENGINE, with its middleware, for the block."""
    from django.conf import settings
    from django.db import connections
    from django.test import override_settings

    engine, limit = BACKENDS[name]
    sd = connections.settings["default"]
    saved = sd["ENGINE"]

    def reset(to: str) -> None:
        connections.close_all()
        sd["ENGINE"] = to
        with suppress(AttributeError):
            del connections["default"]  # this thread's wrapper: the next one is built anew

    first = OUR_MIDDLEWARE if name == "ours" else STOCK_MIDDLEWARE
    rest = [m for m in settings.MIDDLEWARE if m not in (OUR_MIDDLEWARE, STOCK_MIDDLEWARE)]
    reset(engine)
    try:
        with override_settings(
            MIDDLEWARE=[first, *rest], TENANT_LIMIT_SET_CALLS=limit, ROOT_URLCONF=URLCONF
        ):
            assert type(connections["default"]).__module__.startswith(engine)
            yield
    finally:
        reset(saved)


# -- the SQL Django sends, for raw ---------------------------------------------------------
_TENANT_TABLES = re.compile(r'\b(FROM|JOIN) "(job_postings|organizations)"')


def qualified(statement: str, schema: str) -> str:
    """``statement`` with the tenant tables it reads named with ``schema``."""
    return _TENANT_TABLES.sub(rf'\1 "{schema}"."\2"', statement)


def captured(action: Callable[[], Any]) -> list[str]:
    """The statements Django sends for ``action``, without stock's ``SET search_path``."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        action()
    return [q["sql"] for q in ctx.captured_queries if not q["sql"].startswith("SET search_path")]


def orm_query() -> Any:
    from employer_portal.portal.models import JobPosting

    return JobPosting.objects.filter(status="open").first()


# -- the direct measurements: every backend's connection open, swapped per block ---------
class Backends:
    """One Django connection per backend, all open at once on this thread; ``use(name)``
    makes one of them Django's ``default`` (what ``connection``, ``schema_context`` and the
    middlewares use) in microseconds, so that the backends alternate every few queries or
    every request and the machine's drift weighs on all of them alike."""

    def __init__(self, names: list[str]) -> None:
        from django.db import connections
        from django.db.utils import load_backend

        self.saved = connections["default"]
        sd = connections.settings["default"]
        self.made = {
            name: load_backend(BACKENDS[name][0]).DatabaseWrapper({**sd}, "default")
            for name in names
        }

    def use(self, name: str) -> Any:
        from django.conf import settings
        from django.db import connections

        connections["default"] = self.made[name]
        settings.TENANT_LIMIT_SET_CALLS = BACKENDS[name][1]  # read by django-tenants per cursor
        return self.made[name]

    def close(self) -> None:
        from django.conf import settings
        from django.db import connections

        for wrapper in self.made.values():
            wrapper.close()
        connections["default"] = self.saved
        settings.TENANT_LIMIT_SET_CALLS = False


def client_for(name: str) -> Any:
    """A test client whose middleware chain is ``name``'s (loaded now, kept afterwards)."""
    from django.conf import settings
    from django.test import Client, override_settings

    first = OUR_MIDDLEWARE if name == "ours" else STOCK_MIDDLEWARE
    rest = [m for m in settings.MIDDLEWARE if m not in (OUR_MIDDLEWARE, STOCK_MIDDLEWARE)]
    client = Client(raise_request_exception=False)
    with override_settings(MIDDLEWARE=[first, *rest]):
        client.handler.load_middleware()
    return client


def per_block(times: list[float], per: int, scale: float) -> dict[str, Any]:
    """Mean and median of a variant's blocks, per operation."""
    values = [t / per * scale for t in times]
    return {"mean": statistics.fmean(values), "median": statistics.median(values)}


# -- 1. per query --------------------------------------------------------------------------
def per_query(
    backends: Backends, raw_conn: Any, statements: list[str], n: int, *, atomic: bool
) -> dict[str, list[float]]:
    """``n`` queries per variant in blocks of BLOCK, the variants' order rotating every
    block; each block's time. ``atomic``: each variant's blocks all in one transaction."""
    from django.db import transaction
    from django_tenants.utils import schema_context

    schemas = [f"tenant_{org}" for org, _ in TENANTS]
    prefixes = [title for _, title in TENANTS]
    names = [*backends.made, "raw"]
    for name in backends.made:  # untimed, checked
        backends.use(name)
        for i in range(WARMUP):
            with schema_context(schemas[i % 2]):
                posting = orm_query()
            assert posting.title.startswith(prefixes[i % 2] + " "), (name, posting.title)
    for i in range(WARMUP):
        raw_conn.execute(statements[i % 2]).fetchone()
    blocks: dict[str, Any] = {}
    if atomic:
        for name in backends.made:
            backends.use(name)
            blocks[name] = transaction.atomic()
            blocks[name].__enter__()
        blocks["raw"] = raw_conn.transaction()
        blocks["raw"].__enter__()
    times: dict[str, list[float]] = {name: [] for name in names}
    try:
        for b in range(n // BLOCK):
            for name in rotated(names, b):
                if name == "raw":
                    started = time.perf_counter()
                    for j in range(BLOCK):
                        raw_conn.execute(statements[j % 2]).fetchone()
                else:
                    backends.use(name)
                    started = time.perf_counter()
                    for j in range(BLOCK):
                        with schema_context(schemas[j % 2]):
                            orm_query()
                times[name].append(time.perf_counter() - started)
    finally:
        for name, block in blocks.items():
            if name != "raw":
                backends.use(name)  # Atomic finds its connection by alias again on exit
            block.__exit__(None, None, None)
    return times


# -- 2. per request ------------------------------------------------------------------------
def check(body: str, index: int) -> str:
    own = TENANTS[index][1]
    others = [t for j, (_, t) in enumerate(TENANTS) if j != index]
    if own in body and not any(t in body for t in others):
        return "ok"
    return "wrong"


def raw_pages(
    conns: list[Any], statements: list[list[str]], dbname: str
) -> dict[str, Callable[[int], None]]:
    """The page's SQL without Django, one psycopg connection each (autocommit), for tenant
    ``index``: ``raw``, the lower bound (the domain lookup, then the 5 SELECTs with their
    tables schema-qualified); ``raw-as-ours``, the statements our backend sends (the lookup;
    BEGIN, the context, the 5 SELECTs, COMMIT); ``raw-as-stock-limit``, those stock sends with
    TENANT_LIMIT_SET_CALLS (SET public, the lookup, SET the tenant's path, the 5 SELECTs).
    The last two split the gap between the backends into SQL and Python."""
    from tenancy.postgresql_backend.base import DatabaseWrapper

    schemas = [f"tenant_{org}" for org, _ in TENANTS]
    bound = [
        [qualified(s, schema) for s in seq] for seq, schema in zip(statements, schemas, strict=True)
    ]
    contexts = [DatabaseWrapper._context_for(schema, True, dbname).statement for schema in schemas]
    paths = [f'SET search_path = "{schema}","public"' for schema in schemas]
    lower, ours, stock = conns

    def raw(index: int) -> None:
        for statement in bound[index]:
            lower.execute(statement).fetchall()

    def as_ours(index: int) -> None:
        ours.execute(statements[index][0]).fetchall()
        ours.execute("BEGIN")
        ours.execute(contexts[index])
        for statement in statements[index][1:]:
            ours.execute(statement).fetchall()
        ours.execute("COMMIT")

    def as_stock_limit(index: int) -> None:
        stock.execute('SET search_path = "public"')
        stock.execute(statements[index][0]).fetchall()
        stock.execute(paths[index])
        for statement in statements[index][1:]:
            stock.execute(statement).fetchall()

    return {"raw": raw, "raw-as-ours": as_ours, "raw-as-stock-limit": as_stock_limit}


def per_request(
    backends: Backends, raws: dict[str, Callable[[int], None]], n: int
) -> tuple[dict[str, list[float]], dict[str, dict[str, int]]]:
    """``n`` GETs of ``/`` per backend, alternating tenants, the backends (and the raw
    variants) taking turns request by request in a rotating order; each request's time,
    and its check."""
    from tests.load import host_of

    hosts = [host_of(org) for org, _ in TENANTS]
    clients = {name: client_for(name) for name in backends.made}
    for name, client in clients.items():  # untimed, checked
        backends.use(name)
        for i in range(WARMUP):
            response = client.get("/", HTTP_HOST=hosts[i % 2])
            assert response.status_code == 200, (name, response.content[:300])
            assert check(response.content.decode(), i % 2) == "ok", (name, response.content)
    for page in raws.values():
        for i in range(WARMUP):
            page(i % 2)
    names = [*clients, *raws]
    times: dict[str, list[float]] = {name: [] for name in names}
    counts = {name: {"ok": 0, "wrong": 0, "errors": 0} for name in clients}
    for i in range(n):
        for name in rotated(names, i):
            if name in raws:
                started = time.perf_counter()
                raws[name](i % 2)
                times[name].append(time.perf_counter() - started)
                continue
            backends.use(name)
            started = time.perf_counter()
            response = clients[name].get("/", HTTP_HOST=hosts[i % 2])
            times[name].append(time.perf_counter() - started)
            if response.status_code != 200:
                counts[name]["errors"] += 1
            else:
                counts[name][check(response.content.decode(), i % 2)] += 1
    return times, counts


class ErrorKinds(logging.Handler):
    """Counts the exceptions of failed requests (django.request logs them) by their kind
    and first line, instead of printing their tracebacks."""

    def __init__(self) -> None:
        super().__init__()
        self.kinds: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self.kinds[f"{type(exc).__name__}: {line}"] += 1
        else:
            self.kinds[record.getMessage()[:100]] += 1


@contextmanager
def request_errors() -> Iterator[Counter[str]]:
    logger = logging.getLogger("django.request")
    handler = ErrorKinds()
    saved = logger.handlers[:], logger.propagate
    logger.handlers, logger.propagate = [handler], False
    try:
        yield handler.kinds
    finally:
        logger.handlers, logger.propagate = saved


# -- the run -------------------------------------------------------------------------------
def rotated(items: list[str], r: int) -> list[str]:
    k = r % len(items)
    return items[k:] + items[:k]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure(args)
    import django

    # Whitenoise (DEBUG off) warns that no collectstatic ran: the bench serves no static file.
    warnings.filterwarnings("ignore", message="No directory at")
    django.setup()
    from django_tenants.utils import schema_context

    from tests import pgbouncer
    from tests.load import default_database, host_of, serve_pages

    install_urlconf()
    from tenancy import conf

    params = conf.conninfo()
    figures: dict[str, Any] = {"args": vars(args)}
    try:
        started = time.monotonic()
        prepare()
        print(f"prepared {DB_NAME} in {time.monotonic() - started:.1f} s", file=sys.stderr)
        schemas = [f"tenant_{org}" for org, _ in TENANTS]
        # The statements Django compiles (the same for every backend), schema-qualified.
        with backend("stock"):
            one_query = []
            for schema in schemas:
                with schema_context(schema):
                    one_query.append(qualified(captured(orm_query)[0], schema))
            page_sql = []
            for org, _title in TENANTS:
                from django.test import Client

                statements = captured(lambda o=org: Client().get("/", HTTP_HOST=host_of(o)))
                assert len(statements) == 6, statements  # the domain lookup and the view's 5
                page_sql.append(statements)  # unqualified: raw_pages qualifies them
        figures["sql"] = {"raw_query": one_query[0], "django_page": page_sql[0]}

        # 1. and 2., direct: the backends' connections open at once, alternating
        import psycopg
        from django.test import override_settings

        with (
            override_settings(ROOT_URLCONF=URLCONF),
            psycopg.connect(**params, autocommit=True, prepare_threshold=None) as raw_conn,
        ):
            # Per query, stock-limit is stock: schema_context has the SET sent again anyway.
            backends = Backends(["ours", "stock"])
            try:
                queries = {
                    mode: per_query(
                        backends, raw_conn, one_query, args.queries, atomic=mode == "atomic"
                    )
                    for mode in ("autocommit", "atomic")
                }
            finally:
                backends.close()
            backends = Backends(["ours", "stock", "stock-limit"])
            with (
                psycopg.connect(**params, autocommit=True, prepare_threshold=None) as as_ours,
                psycopg.connect(**params, autocommit=True, prepare_threshold=None) as as_stock,
            ):
                raws = raw_pages([raw_conn, as_ours, as_stock], page_sql, params["dbname"])
                try:
                    requests, counts = per_request(backends, raws, args.requests)
                finally:
                    backends.close()
        figures["per_query_us"] = {
            mode: {k: per_block(v, BLOCK, 1e6) for k, v in by.items()}
            for mode, by in queries.items()
        }
        figures["per_request_ms"] = {k: per_block(v, 1, 1e3) for k, v in requests.items()}
        figures["direct_counts"] = counts

        # 3. behind PgBouncer, transaction mode, one server connection
        bounced: dict[str, Any] = {}
        if args.bouncer_requests and not pgbouncer.available():
            print("PgBouncer: skipped (pgbouncer is not installed)", file=sys.stderr)
        elif args.bouncer_requests:
            for name in ("ours", "stock", "stock-limit"):
                with (
                    backend(name),
                    pgbouncer.pgbouncer(params, mode="transaction", pool_size=1) as port,
                    default_database("127.0.0.1", port),
                    request_errors() as kinds,
                ):
                    bounced[name] = serve_pages(
                        list(TENANTS), clients=args.clients, total=args.bouncer_requests,
                        close_each=False,
                    )  # fmt: skip
                bounced[name]["error_kinds"] = dict(kinds.most_common())
        figures["pgbouncer_transaction"] = bounced
    finally:
        if args.keep:
            print(f"kept database {DB_NAME} and its roles", file=sys.stderr)
        else:
            cleanup(params)

    report(figures, args)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    return 0


def report(figures: dict[str, Any], args: argparse.Namespace) -> None:
    def ratio(by: dict[str, Any], a: str, b: str, key: str = "mean") -> float:
        return float(by[a][key] / by[b][key])

    print(
        "\n1. per query: with schema_context(s): JobPosting.objects.filter(...).first(), "
        f"alternating 2 tenants, {args.queries} per variant in blocks of {BLOCK} taking turns; "
        "mean (median of blocks), µs"
    )
    head = f"{'ours':>16}{'stock':>16}{'raw':>16}{'ours/stock':>12}{'ours/raw':>10}"
    print(f"{'':<22}{head}")
    for mode, label in (("autocommit", "outside atomic"), ("atomic", "inside one atomic()")):
        by = figures["per_query_us"][mode]
        cells = "".join(
            f"{by[k]['mean']:>9.1f} ({by[k]['median']:>5.1f})" for k in ("ours", "stock", "raw")
        )
        print(
            f"{label:<22}{cells}{ratio(by, 'ours', 'stock'):>12.3f}"
            f"{ratio(by, 'ours', 'raw'):>10.2f}"
        )
    by = figures["per_request_ms"]
    print(
        "\n2. per request: GET / on a tenant's host (the view: 5 queries), django.test.Client, "
        f"direct, {args.requests} per backend, taking turns request by request"
    )
    print(
        f"{'':<20}{'mean ms':>9}{'median':>9}{'ours ÷ it':>11}{'(median)':>10}  ok / wrong / errors"
    )
    for name in ("ours", "stock", "stock-limit", "raw", "raw-as-ours", "raw-as-stock-limit"):
        c = figures["direct_counts"].get(name)
        counts = f"{c['ok']} / {c['wrong']} / {c['errors']}" if c else ""
        print(
            f"{name:<20}{by[name]['mean']:>9.3f}{by[name]['median']:>9.3f}"
            f"{ratio(by, 'ours', name):>11.3f}{ratio(by, 'ours', name, 'median'):>10.3f}  {counts}"
        )
    worst = max(ratio(by, "ours", "stock"), ratio(by, "ours", "stock-limit"))
    verdict = "PASS" if worst <= 1.05 else "MISS"
    print(f"ours ÷ stock (the faster stock setting, means): {worst:.3f}, target ≤ 1.05: {verdict}")
    b = figures["pgbouncer_transaction"]
    if b:
        print(
            f"\n3. PgBouncer, transaction mode, default_pool_size = 1, {args.clients} threads, "
            "alternating 2 tenants"
        )
        print(f"{'':<14}{'req/s':>8}{'ok':>7}{'wrong':>7}{'errors':>8}")
        for name, f in b.items():
            print(f"{name:<14}{f['rps']:>8.1f}{f['ok']:>7}{f['wrong']:>7}{f['errors']:>8}")
            for kind, count in f["error_kinds"].items():
                print(f"{'':<14}{count:>6} × {kind[:110]}")


if __name__ == "__main__":
    sys.exit(main())
