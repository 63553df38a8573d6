"""Is the database setup healthy? What ``manage.py tenancy_check`` reports, one check a line.

The checks, in order: each connection (the app's URL, and the engine's direct URL when
one is configured), the server's version, the tenancy tables, pending work (Django
migrations of public, SQL migrations per scope), the ledger's agreement with the files,
and the pooler. Each check is a status and one line; the exit code follows the worst:
``failed`` → 1, ``pending`` → 2, else 0 (a ``warning`` is printed, and exits 0).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
from django.conf import settings

from tenancy import conf
from tenancy.engine import citus, db
from tenancy.engine.errors import EXIT_FAILED, EXIT_OK, EXIT_PENDING, RunError
from tenancy.engine.plan import Plan
from tenancy.engine.source import PUBLIC, TENANT, SourceError
from tenancy.services import infrastructure, runs

OK, WARNING, PENDING, FAILED = "ok", "warning", "pending", "failed"
CONNECT_TIMEOUT_S = 5  # an unreachable host must not hang the check for minutes
# Connection parameters that are not libpq's (psql would refuse them in a URL).
NOT_LIBPQ = {"application_name", "prepare_threshold", "cursor_factory", "context"}


@dataclass
class Check:
    name: str
    status: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Health:
    checks: list[Check] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        statuses = {c.status for c in self.checks}
        if FAILED in statuses:
            return EXIT_FAILED
        return EXIT_PENDING if PENDING in statuses else EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "checks": [
                {"name": c.name, "status": c.status, "message": c.message, **c.details}
                for c in self.checks
            ],
        }


@dataclass
class Probe:
    """What one connection attempt found."""

    name: str  # "connection" or "direct connection"
    params: dict[str, Any]
    where: str
    version: str | None = None
    proxied: bool | None = None  # a pooler or proxy between us and the server
    error: str | None = None


# -- which connections ----------------------------------------------------------------------
def _url_params(url: str) -> dict[str, Any]:
    """psycopg parameters of a database URL, read as settings.py reads it."""
    import environ

    sd = environ.Env.db_url_config(url)
    params = {
        "dbname": sd["NAME"],
        "user": sd.get("USER"),
        "password": sd.get("PASSWORD"),
        "host": sd.get("HOST"),
        "port": sd.get("PORT"),
        **(sd.get("OPTIONS") or {}),
    }
    return {k: v for k, v in params.items() if v not in (None, "")}


def _app_params() -> dict[str, Any]:
    """The app's connection. A management command with a direct URL has its default alias
    switched to that URL (settings.py), so the app's own URL is read from the environment:
    that is the one the web processes, and a pooler, answer on."""
    app_url = os.environ.get("EMPLOYER_PORTAL_DB_URL") or os.environ.get("DATABASE_URL")
    dbs = settings.DATABASES
    keys = ("NAME", "USER", "HOST", "PORT")
    switched = "direct" in dbs and all(dbs["default"].get(k) == dbs["direct"].get(k) for k in keys)
    if switched and app_url:
        return _url_params(app_url)
    return dict(conf.conninfo("default"))


def targets() -> list[tuple[str, dict[str, Any]]]:
    found = [("connection", _app_params())]
    if "direct" in settings.DATABASES:
        found.append(("direct connection", dict(conf.conninfo("direct"))))
    return found


def describe(params: dict[str, Any]) -> str:
    """``user@host:port/db``, or the socket folder for a unix socket."""
    user, host, name = params.get("user", "?"), str(params.get("host") or ""), params["dbname"]
    if not host or host.startswith("/"):
        return f"{user}@{host or 'default socket'} (unix socket), database {name}"
    return f"{user}@{host}:{params.get('port') or 5432}/{name}"


def _embedded() -> bool:
    """The project says it started an embedded server (the example project's pgserver)."""
    return bool(conf.setting("EMBEDDED_SERVER"))


def probe(name: str, params: dict[str, Any]) -> Probe:
    found = Probe(name, params, describe(params))
    params = {**params, "application_name": "tenancy_check", "connect_timeout": CONNECT_TIMEOUT_S}
    try:
        with db.connect(params) as conn:
            row = conn.execute(
                "SELECT current_setting('server_version'), pg_backend_pid(), current_user"
            ).fetchone()
            assert row is not None
            found.version = str(row[0])
            # The backend pid announced at connection (BackendKeyData) is the server's own,
            # unless a pooler or proxy (PgBouncer) answered with a cancel key of its own.
            found.proxied = int(row[1]) != conn.info.backend_pid
            found.where = describe({**params, "user": row[2]})
    except psycopg.Error as exc:
        found.error = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return found


def connection_check(p: Probe) -> Check:
    details = {"target": p.where, "proxied": p.proxied}
    if p.error:
        return Check(p.name, FAILED, f"{p.where}: {p.error}. Check {_hint(p.name)}.", details)
    server = "the embedded server, " if _embedded() and p.name == "connection" else ""
    return Check(p.name, OK, f"{server}{p.where}", details)


def _hint(name: str) -> str:
    """Where the failing URL came from (settings.py's order)."""
    if name == "direct connection":
        return "EMPLOYER_PORTAL_DIRECT_DB_URL"
    if _embedded():
        return "the embedded server's log (.pgdata/log), or set EMPLOYER_PORTAL_DB_URL"
    return "EMPLOYER_PORTAL_DB_URL / DATABASE_URL"


# -- the checks -----------------------------------------------------------------------------
def check() -> Health:
    probes = [probe(name, params) for name, params in targets()]
    health = Health([connection_check(p) for p in probes])
    engine = probes[-1]  # the direct connection when there is one: what the engine uses
    if engine.error:
        return health
    version = {"version": engine.version}
    health.checks.append(Check("server", OK, f"PostgreSQL {engine.version}", version))
    with db.connect({**conf.conninfo(), "connect_timeout": CONNECT_TIMEOUT_S}) as conn:
        ready = infrastructure.infrastructure_ready(conn)
        cluster = citus_check(conn)
    health.checks += [cluster] if cluster else []
    health.checks.append(infrastructure_check(ready))
    health.checks += work_checks(ready)
    health.checks.append(pooler_check(probes))
    return health


def citus_check(conn: psycopg.Connection) -> Check | None:
    """On a Citus coordinator: its workers, and whether each answers (a run needs them all:
    tenant DDL changes metadata every node holds). None on a plain server."""
    if not db.citus(conn):
        return None
    workers = citus.worker_nodes(conn)
    down = citus.unreachable_workers(conn)
    details = {"workers": workers, "unreachable": [node for node, _ in down]}
    if down:
        said = "; ".join(f"{node}: {why}" for node, why in down)
        message = f"Citus coordinator; worker(s) not answering: {said}"
        return Check("citus", FAILED, message, details)
    return Check("citus", OK, f"Citus coordinator, {len(workers)} worker(s): "
                 + ", ".join(workers), details)  # fmt: skip


def infrastructure_check(ready: bool) -> Check:
    if ready:
        return Check("infrastructure", OK, "tenancy tables present in public")
    return Check(
        "infrastructure",
        FAILED,
        "no tenancy tables in public (tenant_registry, tenant_migrations): "
        "run `manage.py migrate_tenants --public`",
    )


def work_checks(ready: bool) -> list[Check]:
    """Pending work, and (with the tenancy tables) whether the ledger matches the files."""
    django = infrastructure.pending_django_migrations()
    if not ready:
        message = f"Django: {len(django)} migration(s) of public; SQL: not checked (no tables)"
        return [Check("pending", PENDING, message, {"django": django})]
    try:
        plan = runs.make_plan()
    except (RunError, SourceError) as exc:
        return [Check("pending", FAILED, f"cannot read the migrations: {exc}", {"django": django})]
    return [pending_check(django, plan), ledger_check(plan)]


def pending_check(django: list[str], plan: Plan) -> Check:
    public = sum(len(s.pending) for s in plan.for_scope(PUBLIC))
    tenants = plan.for_scope(TENANT)
    waiting = [s for s in tenants if s.pending]
    tenant_count = sum(len(s.pending) for s in tenants)
    summary = (
        f"Django: {len(django)} migration(s) of public; SQL: public {public}, "
        f"tenants {tenant_count} in {len(waiting)} of {len(tenants)} schema(s)"
    )
    details = {
        "django": django,
        "sql": {"public": public, "tenants": tenant_count, "tenant_schemas": len(waiting)},
    }
    if django or public or tenant_count:
        return Check("pending", PENDING, f"{summary}: run `manage.py migrate_tenants`", details)
    return Check("pending", OK, f"nothing pending ({summary})", details)


def ledger_check(plan: Plan) -> Check:
    reasons = runs.refusals(plan, allow_missing=False, allow_out_of_order=False)
    if not reasons:
        return Check("ledger", OK, "applied files match the ledger")
    message = (
        f"{len(reasons)} problem(s), a run would refuse: {reasons[0]}"
        f"{' …' if len(reasons) > 1 else ''} (`manage.py migrate_tenants --dry-run` lists them)"
    )
    return Check("ledger", WARNING, message, {"problems": reasons})


def pooler_check(probes: list[Probe]) -> Check:
    mode = os.environ.get("EMPLOYER_PORTAL_DB_POOLER", "none").lower()
    app, direct = probes[0], (probes[1] if len(probes) > 1 else None)
    findings = _pooler_findings(mode, app, direct)
    pool = ((settings.DATABASES["default"].get("OPTIONS") or {}).get("pool") or {}).get("max_size")
    if pool:
        findings.append((f"Django's pool: up to {pool} connection(s)", False))
    details = {
        "configured": mode,
        "engine_pooler": conf.setting("ENGINE_POOLER"),
        "detected": {p.name: p.proxied for p in probes},
        "django_pool": pool,
    }
    status = WARNING if any(warn for _, warn in findings) else OK
    return Check("pooler", status, "; ".join(text for text, _ in findings), details)


def _pooler_findings(mode: str, app: Probe, direct: Probe | None) -> list[tuple[str, bool]]:
    """(text, is a warning), in reading order."""
    found = [_app_finding(mode, app.proxied)]
    if mode == "transaction" and direct is None:
        why = "the engine refuses non-transactional files, rollbacks and creating the tables"
        found.append((f"no EMPLOYER_PORTAL_DIRECT_DB_URL: {why}", True))
    if direct is not None and direct.proxied:
        found.append(("EMPLOYER_PORTAL_DIRECT_DB_URL goes through a pooler or proxy", True))
    elif direct is not None:
        found.append(("the engine uses the direct URL", False))
    return found


def _app_finding(mode: str, proxied: bool | None) -> tuple[str, bool]:
    """The configured mode against what answers. A client cannot read PgBouncer's
    pool_mode (``SHOW pool_mode`` exists only on its admin console): a pooler is detected,
    its mode is taken as configured."""
    setting = f"EMPLOYER_PORTAL_DB_POOLER={mode}"
    if proxied is None:
        return f"{setting}; not detected (the app's URL did not answer)", False
    if proxied and mode == "none":
        fix = "set EMPLOYER_PORTAL_DB_POOLER to its pool mode (docs/deployment.md)"
        return f"{setting}, but a pooler or proxy answers on the app's URL: {fix}", True
    if proxied:
        return f"{setting}; a pooler answers (its mode is not visible to clients)", False
    if mode != "none":
        return f"{setting}, but the app's URL reaches PostgreSQL directly", True
    return f"{setting}; none detected", False


# -- psql -----------------------------------------------------------------------------------
def psql_url(params: dict[str, Any] | None = None) -> str:
    """A ``postgresql://`` URL of the engine's database for psql (its password included,
    when the configuration has one): the unix socket's folder goes in ``?host=``."""
    p = {k: v for k, v in (params or conf.conninfo()).items() if k not in NOT_LIBPQ}
    user, password = p.pop("user", None), p.pop("password", None)
    host, port, dbname = str(p.pop("host", "") or ""), p.pop("port", None), p.pop("dbname")
    auth = quote(str(user), safe="") if user else ""
    if auth and password:
        auth += ":" + quote(str(password), safe="")
    query: dict[str, str] = {}
    netloc = ""
    if host.startswith("/"):
        query["host"] = host  # a socket folder cannot stand in the URL's authority
    elif host:
        netloc = f"[{host}]" if ":" in host else host
    if port and netloc:
        netloc += f":{port}"
    elif port:
        query["port"] = str(port)
    query.update({k: str(v) for k, v in p.items() if isinstance(v, str | int | float)})
    url = f"postgresql://{auth + '@' if auth else ''}{netloc}/{quote(str(dbname), safe='')}"
    return f"{url}?{urlencode(query, safe='/', quote_via=quote)}" if query else url
