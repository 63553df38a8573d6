#!/usr/bin/env python
"""Benchmark: the tenant engine on Citus (1 and 2 workers) beside plain PostgreSQL, on this
machine, each figure beside its raw lower bound measured in the same run.

A script that prints a table, not a test. For each setup it starts throwaway nodes of the
machine's PostgreSQL 15 binaries (``tests/citus.py``: a coordinator and N workers with Citus
preloaded and schema-based sharding on, or one ``plain`` node of the same binaries and
settings without Citus), and in a child process pointed at it (``EMPLOYER_PORTAL_DB_URL``):

1. ``migrate_tenants --public``;
2. **creation**: ``--tenants`` minus ``--create-sample`` tenants by ``create_tenant`` in one
   loop (each call timed), then the sample: ``--create-sample`` more by ``create_tenant``
   interleaved in chunks of 10 with as many raw creations (one transaction on an open
   connection: ``CREATE SCHEMA``, the tenant files, their ledger rows into a table of the
   same shape; no roles, registry, domain or audit row, and not registered, so not part of
   the apply step);
3. **apply one new tenant migration** (a table with a foreign key and two indexes, a column
   added to ``job_postings``) to every tenant: passes raw, engine ``--jobs J`` for each J,
   raw. Each pass has a file of its own (the next number, its own names: nothing undone
   between passes). Raw: per schema ``BEGIN; SET LOCAL search_path; the SQL; the ledger
   row; COMMIT`` over one psycopg connection (on Citus the statements one at a time, as the
   engine must send them). Every pass is verified (a ledger row and the new column in every
   schema).

The nodes are stopped and deleted at the end, on an error and on Ctrl-C or SIGTERM.

    .venv/bin/python bench/bench_citus.py                      # 500 tenants, ~15 min on 2 cores
    .venv/bin/python bench/bench_citus.py --tenants 1000       # the issue's 1,000: ~27 min
    .venv/bin/python bench/bench_citus.py --tenants 100 --setups plain,citus1
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# setup name → workers (None: a plain node without Citus)
SETUPS: dict[str, int | None] = {"plain": None, "citus1": 1, "citus2": 2}
LABELS = {"plain": "plain PostgreSQL", "citus1": "Citus, 1 worker", "citus2": "Citus, 2 workers"}
CHUNK = 10  # creations per chunk in the interleaved creation sample
PREFIX, SAMPLE_ENGINE, SAMPLE_RAW = "org_bench", "org_cengine", "org_craw"

APPLY_SQL = """-- Migration: {name}
-- Description: Benchmark migration {k}: a tagged table and a column on job_postings

-- UP: Apply migration

CREATE TABLE bench_job_tags_{k} (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    tag VARCHAR(64) NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX idx_bench_job_tags_{k}_org ON bench_job_tags_{k} (organization_id);
CREATE UNIQUE INDEX idx_bench_job_tags_{k}_tag ON bench_job_tags_{k} (organization_id, lower(tag));

ALTER TABLE job_postings ADD COLUMN bench_priority_{k} SMALLINT;

-- DOWN: Rollback migration (commented for safety)
/*
DROP TABLE IF EXISTS bench_job_tags_{k};
ALTER TABLE job_postings DROP COLUMN IF EXISTS bench_priority_{k};
*/
"""


def log(message: str) -> None:
    print(f"[bench_citus {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary_ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "n": len(values),
        "p50": 1000 * statistics.median(values),
        "p95": 1000 * quantile(values, 0.95),
        "mean": 1000 * statistics.fmean(values),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--tenants",
        type=int,
        default=500,
        help="tenants per setup (default 500: the largest that keeps the run near 15 minutes "
        "on a shared 2-core machine: 7.8 min; --tenants 1000 took 27 min there)",
    )
    p.add_argument(
        "--create-sample",
        type=int,
        default=50,
        help="create_tenant and raw creations interleaved per setup (default 50; part of "
        "--tenants for create_tenant, extra unregistered schemas for raw)",
    )
    p.add_argument("--jobs", default="1,2", help="engine worker counts (default 1,2)")
    p.add_argument(
        "--setups",
        default=",".join(SETUPS),
        help=f"which setups, in this order (default {','.join(SETUPS)})",
    )
    p.add_argument(
        "--cached-worker-connections",
        type=int,
        default=0,
        metavar="N",
        help="on Citus, ALTER DATABASE ... SET citus.max_cached_conns_per_worker TO N for the "
        "engine's sessions (default 0; -1 leaves Citus' default, 1). With caching, one session "
        "keeps a worker connection open per tenant role it took, and a run over more tenants "
        "than a worker's max_connections fails (see bench/README.md); raw keeps Citus' default",
    )
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    # The child process of one setup (internal).
    p.add_argument("--child", metavar="SETUP", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.jobs = sorted({int(j) for j in str(args.jobs).split(",") if j.strip()})
    args.setups = [s.strip() for s in str(args.setups).split(",") if s.strip()]
    unknown = [s for s in args.setups if s not in SETUPS]
    if unknown:
        p.error(f"unknown setup(s) {unknown}; choose from {list(SETUPS)}")
    if args.tenants < 1 or not 0 <= args.create_sample <= args.tenants or not args.jobs:
        p.error("--tenants must be positive, --create-sample between 0 and --tenants")
    return args


# -- the parent: clusters, children, the table ----------------------------------------------
def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_setup(args: argparse.Namespace, setup: str) -> dict[str, Any]:
    """Start the setup's nodes, run the child against them, stop and delete them (also on
    Ctrl-C: leaving the ``with`` stops every node started so far)."""
    from tests import citus

    workers = SETUPS[setup]
    started = time.perf_counter()
    load_before = os.getloadavg()
    with citus.cluster(workers=workers or 0, database="bench_citus", plain=workers is None) as c:
        log(f"{setup}: nodes up ({', '.join(n.address for n in c.nodes)})")
        sql_dir = Path(tempfile.mkdtemp(prefix="bench_citus_sql_"))
        try:
            shutil.copytree(ROOT / "migrations_sql", sql_dir, dirs_exist_ok=True)
            env = {
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "employer_portal.settings",
                "EMPLOYER_PORTAL_DB_URL": c.url,
                "TENANCY_MIGRATIONS_DIR": str(sql_dir),
                # The bench creates a thousand tenants in minutes: lift the safety limits.
                "TENANCY_MAX_TENANTS": str(10**9),
                "TENANCY_MAX_CREATIONS_PER_HOUR": str(10**9),
                "TENANCY_POOL_SIZE": "0",
            }
            env.pop("DATABASE_URL", None)
            command = [sys.executable, str(Path(__file__).resolve()), "--child", setup]
            command += ["--url", c.url, "--tenants", str(args.tenants)]
            command += ["--create-sample", str(args.create_sample)]
            command += ["--jobs", ",".join(map(str, args.jobs))]
            command += ["--cached-worker-connections", str(args.cached_worker_connections)]
            out = subprocess.run(
                command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, check=False
            )
            if out.returncode != 0:
                raise SystemExit(f"{setup}: the child failed (exit {out.returncode})")
            result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        finally:
            shutil.rmtree(sql_dir, ignore_errors=True)
    result["wall_s"] = time.perf_counter() - started
    result["load_before"], result["load_after"] = load_before, os.getloadavg()
    log(f"{setup}: done in {result['wall_s']:.0f}s, nodes stopped and deleted")
    return result


def machine() -> dict[str, Any]:
    cpu, mem_kb = "", 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(mem_kb / 1024**2, 1)}


def fmt_ms(s: dict[str, float]) -> str:
    return f"{s['p50']:.0f} / {s['p95']:.0f}" if s else "-"


def print_table(args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> None:
    m = machine()
    print()
    print(f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; {args.tenants} tenants")
    for setup, r in results.items():
        nodes = r.get("nodes") or {}
        spread = ", ".join(f"{k}: {v}" for k, v in sorted(nodes.items())) or "one server"
        print(
            f"  {LABELS[setup]}: {r['server']}; tenants per node: {spread}; setup wall "
            f"{r['wall_s']:.0f}s; load {r['load_before'][0]:.1f} -> {r['load_after'][0]:.1f}"
        )
    print()
    print("Creation per tenant, ms p50 / p95 (sample interleaved in chunks of 10):")
    header = (
        f"  {'setup':<18} {'create_tenant':>14} {'raw':>12} {'ratio p50':>9}   "
        f"{'all create_tenant calls (n, p50 / p95, mean)':<40}"
    )
    print(header)
    for setup, r in results.items():
        c = r["create"]
        ratio = c["sample"]["p50"] / c["raw"]["p50"] if c["sample"] and c["raw"] else None
        every = c["all"]
        print(
            f"  {LABELS[setup]:<18} {fmt_ms(c['sample']):>14} {fmt_ms(c['raw']):>12} "
            f"{(f'{ratio:.2f}x' if ratio else '-'):>9}   {every['n']}, {fmt_ms(every)}, "
            f"{every['mean']:.0f}; first 100 mean {c['first_100_mean_ms']:.0f}, last 100 mean "
            f"{c['last_100_mean_ms']:.0f}"
        )
    print()
    print("Apply one new tenant migration to every tenant, s (ms per schema):")
    cols = ["raw (first)"] + [f"engine --jobs {j}" for j in args.jobs] + ["raw (last)"]
    print(f"  {'setup':<18} " + " ".join(f"{c:>20}" for c in cols) + "  engine / mean raw")
    for setup, r in results.items():
        passes = r["apply"]["passes"]
        raws = [p["seconds"] for p in passes if p["kind"] == "raw"]
        raw_mean = statistics.fmean(raws)
        cells = [f"{p['seconds']:.1f} ({p['ms_per_schema']:.1f})" for p in passes]
        ratios = ", ".join(
            f"j{p['jobs']} {p['seconds'] / raw_mean:.2f}x" for p in passes if p["kind"] == "engine"
        )
        print(f"  {LABELS[setup]:<18} " + " ".join(f"{c:>20}" for c in cells) + f"  {ratios}")
    if {"plain", "citus1"} <= results.keys():
        print()
        base = results["plain"]
        for setup in ("citus1", "citus2"):
            if setup not in results:
                continue
            r = results[setup]
            print(
                f"  {LABELS[setup]} / plain: create_tenant p50 "
                f"{r['create']['sample']['p50'] / base['create']['sample']['p50']:.1f}x"
                if r["create"]["sample"] and base["create"]["sample"]
                else f"  {LABELS[setup]} / plain:",
                end="",
            )
            for kind, jobs in [("raw", None), *(("engine", j) for j in args.jobs)]:
                mine = _pass_seconds(r, kind, jobs)
                theirs = _pass_seconds(base, kind, jobs)
                name = "raw apply" if kind == "raw" else f"apply --jobs {jobs}"
                print(f"; {name} {mine / theirs:.1f}x", end="")
            print()
    print()


def _pass_seconds(result: dict[str, Any], kind: str, jobs: int | None) -> float:
    return statistics.fmean(
        p["seconds"] for p in result["apply"]["passes"] if p["kind"] == kind and p["jobs"] == jobs
    )


def main_parent(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    started = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    try:
        for setup in args.setups:
            results[setup] = run_setup(args, setup)
    except KeyboardInterrupt:
        log("interrupted: every node started was stopped and deleted")
        return 130
    log(f"all setups in {time.perf_counter() - started:.0f}s")
    print_table(args, results)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps({"machine": machine(), "args": vars(args), "results": results}, indent=2)
        )
    return 0


# -- the child: one setup, Django pointed at its coordinator ---------------------------------
class Child:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.setup = args.child

    def connect(self) -> Any:
        """The bench's own connections (raw, checks): Citus' default connection caching,
        whatever the database's setting for the engine."""
        import psycopg

        options = "-c citus.max_cached_conns_per_worker=1" if self.citus() else ""
        return psycopg.connect(
            self.args.url, autocommit=True, prepare_threshold=None, options=options
        )

    def citus(self) -> bool:
        return SETUPS[self.setup] is not None

    def run(self) -> dict[str, Any]:
        import django

        django.setup()
        from django.core.management import call_command
        from psycopg import sql

        with self.connect() as conn:
            server = conn.execute("SELECT version()").fetchone()[0].split(" on ")[0]
            if self.citus():
                version = conn.execute("SELECT citus_version()").fetchone()[0]
                server += f", {version.split(' on ')[0]}"
                cached = self.args.cached_worker_connections
                if cached >= 0:
                    conn.execute(
                        sql.SQL(
                            "ALTER DATABASE {} SET citus.max_cached_conns_per_worker TO {}"
                        ).format(sql.Identifier(conn.info.dbname), sql.Literal(cached))
                    )
                    server += f"; citus.max_cached_conns_per_worker = {cached} for the engine"
        call_command("migrate_tenants", "--public", verbosity=0, stdout=io.StringIO())
        create = self.step_create()
        apply = self.step_apply()
        nodes = self.nodes()
        return {"server": server, "create": create, "apply": apply, "nodes": nodes}

    def tenant_files(self) -> list[Any]:
        from tenancy import conf
        from tenancy.engine.source import TENANT, discover

        return discover(conf.migrations_dir(), TENANT)

    def create_engine(
        self, prefix: str, start: int, count: int, times: list[float], progress: bool = False
    ) -> None:
        from django.db import connections

        from tenancy.services.tenants import create_tenant

        for i in range(start, start + count):
            t0 = time.perf_counter()
            create_tenant(f"{prefix}{i:06d}", f"Bench organization {i}", actor="bench")
            times.append(time.perf_counter() - t0)
            done = len(times)
            if progress and done % max(CHUNK, self.args.tenants // 10) == 0:
                recent = times[-100:]
                log(
                    f"{self.setup}: {done} create_tenant calls, the last {len(recent)} at "
                    f"{1000 * statistics.fmean(recent):.0f} ms each"
                )
        connections.close_all()

    def create_raw(self, conn: Any, start: int, count: int, times: list[float]) -> None:
        """The raw lower bound of a creation: schema, files, ledger rows, one transaction
        (the rows go to ``bench_raw_ledger``, of the ledger's shape: these schemas are not
        tenants, the engine must not see them)."""
        from psycopg import sql

        from tenancy.engine import db, statements

        files = self.tenant_files()
        texts = [statements.render(m.up_sql, {}) for m in files]
        split = [[sql.SQL(s) for s in statements.split(t)] for t in texts]
        for i in range(start, start + count):
            schema = f"tenant_{SAMPLE_RAW}{i:06d}"
            t0 = time.perf_counter()
            with conn.transaction():
                conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
                conn.execute(db.search_path(schema))
                if self.citus():
                    for parts in split:
                        for statement in parts:
                            conn.execute(statement)
                else:
                    for text in texts:
                        conn.execute(sql.SQL(text))
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO public.bench_raw_ledger (tenant_schema, "
                        "migration_version, migration_name, checksum, rollback_sql, "
                        "applied_by) VALUES (%s, %s, %s, %s, %s, 'bench-raw')",
                        [(schema, m.version, m.name, m.checksum, m.down_sql) for m in files],
                    )
            times.append(time.perf_counter() - t0)

    def step_create(self) -> dict[str, Any]:
        n, k = self.args.tenants, self.args.create_sample
        every: list[float] = []
        started = time.perf_counter()
        self.create_engine(PREFIX, 0, n - k, every, progress=True)
        bulk_s = time.perf_counter() - started
        sample, raw = [], []
        with self.connect() as conn:
            conn.execute(
                "CREATE TABLE public.bench_raw_ledger (LIKE public.tenant_migrations INCLUDING ALL)"
            )
            for index, start in enumerate(range(0, k, CHUNK)):
                count = min(CHUNK, k - start)
                order = ["engine", "raw"] if index % 2 == 0 else ["raw", "engine"]
                for variant in order:
                    if variant == "engine":
                        self.create_engine(SAMPLE_ENGINE, start, count, sample)
                    else:
                        self.create_raw(conn, start, count, raw)
        every += sample
        log(
            f"{self.setup}: {len(every)} tenants created ({bulk_s:.0f}s before the sample), "
            f"sample create_tenant p50 {fmt_ms(summary_ms(sample))} ms, "
            f"raw {fmt_ms(summary_ms(raw))} ms"
        )
        return {
            "all": summary_ms(every),
            "sample": summary_ms(sample),
            "raw": summary_ms(raw),
            "first_100_mean_ms": 1000 * statistics.fmean(every[:100]),
            "last_100_mean_ms": 1000 * statistics.fmean(every[-100:]),
            "before_sample_s": bulk_s,
        }

    # -- apply ---------------------------------------------------------------------------
    def write_migration(self, k: int) -> Any:
        from tenancy import conf
        from tenancy.engine.source import TENANT, load

        number = max(m.number for m in self.tenant_files()) + 1
        path = Path(conf.migrations_dir()) / TENANT / f"{number:03d}_bench_job_tags_{k}.sql"
        path.write_text(APPLY_SQL.format(name=path.name, k=k))
        return load(path, TENANT)

    def tenant_schemas(self) -> list[str]:
        with self.connect() as conn:
            return [
                r[0]
                for r in conn.execute(
                    "SELECT schema_name FROM public.tenant_registry ORDER BY created_at, id"
                )
            ]

    def raw_apply(self, schemas: list[str], migration: Any) -> float:
        from psycopg import sql

        from tenancy.engine import db, statements

        text = statements.render(migration.up_sql, {})
        parts = [sql.SQL(s) for s in statements.split(text)] if self.citus() else [sql.SQL(text)]
        row = (
            "INSERT INTO public.tenant_migrations (tenant_schema, migration_version, "
            "migration_name, checksum, rollback_sql, applied_by) "
            "VALUES (%s, %s, %s, %s, %s, 'bench-raw')"
        )
        with self.connect() as conn:
            started = time.perf_counter()
            for schema in schemas:
                with conn.transaction():
                    conn.execute(db.search_path(schema))
                    for part in parts:
                        conn.execute(part)
                    conn.execute(
                        row,
                        [schema, migration.version, migration.name, migration.checksum,
                         migration.down_sql],
                    )  # fmt: skip
            return time.perf_counter() - started

    def verify(self, schemas: list[str], migration: Any, column: str) -> None:
        with self.connect() as conn:
            rows, columns = conn.execute(
                """
                SELECT (SELECT count(*) FROM public.tenant_migrations
                         WHERE migration_version = %s AND tenant_schema = ANY(%s)),
                       (SELECT count(*) FROM pg_attribute a
                          JOIN pg_class c ON c.oid = a.attrelid
                          JOIN pg_namespace n ON n.oid = c.relnamespace
                         WHERE a.attname = %s AND NOT a.attisdropped AND c.relname = 'job_postings'
                           AND n.nspname = ANY(%s))
                """,
                [migration.version, schemas, column, schemas],
            ).fetchone()
        if rows != len(schemas) or columns != len(schemas):
            raise SystemExit(
                f"{self.setup}: {migration.name}: {rows} ledger rows and {columns} {column} "
                f"columns for {len(schemas)} schemas: the pass did not do what it measured"
            )

    def step_apply(self) -> dict[str, Any]:
        from django.db import connections

        from tenancy.services import runs

        schemas = self.tenant_schemas()
        n = len(schemas)
        plan: list[tuple[str, int | None]] = [("raw", None)]
        plan += [("engine", j) for j in self.args.jobs] + [("raw", None)]
        passes: list[dict[str, Any]] = []
        for k, (kind, jobs) in enumerate(plan, 1):
            migration = self.write_migration(k)
            if kind == "raw":
                seconds = self.raw_apply(schemas, migration)
            else:
                connections.close_all()
                started = time.perf_counter()
                report = runs.migrate(jobs=jobs, actor="bench")
                seconds = time.perf_counter() - started
                ok = sum(r.status == "succeeded" for r in report.results)
                if report.exit_code != 0 or ok != n:
                    failed = [r for r in report.results if r.status != "succeeded"]
                    for r in failed[:3]:
                        log(f"{self.setup}: {r.schema} {r.status}: {getattr(r, 'error', '')}")
                    raise SystemExit(
                        f"{self.setup}: engine --jobs {jobs}: exit {report.exit_code}, {ok}/{n}"
                    )
            self.verify(schemas, migration, f"bench_priority_{k}")
            passes.append(
                {
                    "kind": kind,
                    "jobs": jobs,
                    "seconds": seconds,
                    "schemas": n,
                    "ms_per_schema": 1000 * seconds / n,
                }
            )
            label = "raw" if kind == "raw" else f"engine --jobs {jobs}"
            log(f"{self.setup}: apply pass {k} ({label}): {seconds:.1f}s for {n} schemas")
        return {"passes": passes}

    def nodes(self) -> dict[str, int]:
        from tenancy.engine.citus import tenant_nodes

        with self.connect() as conn:
            placed = tenant_nodes(conn)
            registered = set(
                r[0] for r in conn.execute("SELECT schema_name FROM public.tenant_registry")
            )
        counts: dict[str, int] = {}
        for schema, node in placed.items():
            if schema in registered:
                counts[node] = counts.get(node, 0) + 1
        return counts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        result = Child(args).run()
        print(json.dumps(result, default=str))
        return 0
    return main_parent(args)


if __name__ == "__main__":
    raise SystemExit(main())
