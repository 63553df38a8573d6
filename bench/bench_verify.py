#!/usr/bin/env python
"""Benchmark of ``tenancy.services.verify.verify()`` beside its raw lower bounds.

A script that prints figures, not a test. Like ``bench_migrations.py`` (whose database
handling and preparation it reuses), it creates its own database (``bench_verify`` by
default) on the configured server, prepares N tenants through ``create_tenant`` (or, with
``--prepare bulk``, bench_migrations' raw SQL path, which leaves the same state), measures,
and drops the database and the roles its tenants created unless ``--keep``. With
``--reuse``, a kept database that already holds N tenants is measured as it is.

Measured, each the median of ``--repeat`` passes, each on fresh connections (as verify()
runs: a backend's catalog caches start empty):

- ``verify()`` over every tenant (all healthy: the fast path), with its default two
  fingerprint connections and with one (``jobs=1``: one fingerprint query for all);
- its parts: the reference build (scratch schema, files, fingerprint and description,
  rollback) and the fingerprint query alone on one connection;
- raw lower bounds: ``SELECT count(*) FROM pg_attribute`` over the tenants' relations (the
  biggest catalog the query reads), and, for scale, one ``pg_get_indexdef`` per index;
- ``verify()`` of one tenant (what the admin's tenant page runs);
- ``verify()`` with ``--tamper K`` tenants given a column by hand (the slow path for K
  schemas; undone afterwards).

    .venv/bin/python bench/bench_verify.py                       # 1,000 tenants
    .venv/bin/python bench/bench_verify.py --tenants 10000 --keep
    .venv/bin/python bench/bench_verify.py --tenants 10000 --reuse
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench_migrations import Bench, Measure, configure_environment, peak_rss_mb  # noqa: E402

DEFAULT_DB = "bench_verify"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tenants", type=int, default=1000, help="tenants to verify (default 1000)")
    p.add_argument("--repeat", type=int, default=3, help="passes per figure (median; default 3)")
    p.add_argument(
        "--tamper", type=int, default=10, help="tenants changed for the slow-path pass (10)"
    )
    p.add_argument(
        "--prepare",
        choices=["engine", "bulk"],
        default="engine",
        help="engine: every tenant through create_tenant; bulk: bench_migrations' raw SQL "
        "path over --prepare-jobs connections (faster; it must leave the state creation "
        "leaves, which verify() then checks)",
    )
    p.add_argument("--prepare-jobs", type=int, default=2, help="connections for --prepare bulk")
    p.add_argument("--database-url", help="server to use (its database name is ignored)")
    p.add_argument("--db-name", default=DEFAULT_DB, help=f"bench database (default {DEFAULT_DB})")
    p.add_argument("--keep", action="store_true", help="keep the bench database and its roles")
    p.add_argument(
        "--reuse", action="store_true", help="measure a kept database holding N tenants as it is"
    )
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    if not args.db_name.startswith("bench"):
        p.error("--db-name must start with 'bench': the bench drops its database at the end")
    if args.tenants < 1 or args.repeat < 1 or args.tamper < 0:
        p.error("--tenants and --repeat must be positive, --tamper at least 0")
    args.profile = None  # what Bench reads: no profiling
    return args


class VerifyBench(Bench):
    def log(self, message: str) -> None:
        print(f"[bench_verify {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    # -- database ------------------------------------------------------------------------
    def reusable(self) -> bool:
        """A kept database with at least N registered tenants."""
        with self.connect("postgres") as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [self.args.db_name]
            ).fetchone()
        if not exists:
            return False
        with self.connect() as conn:
            ready = conn.execute("SELECT to_regclass('public.tenant_registry')").fetchone()[0]
            if ready is None:
                return False
            count = conn.execute("SELECT count(*) FROM public.tenant_registry").fetchone()[0]
        return int(count) >= self.args.tenants

    # -- measurements --------------------------------------------------------------------
    def median(self, action: Any) -> tuple[float, Any]:
        times, result = [], None
        for _ in range(self.args.repeat):
            m = Measure()
            with self.measured(m):
                result = action()
            times.append(m.seconds)
        return statistics.median(times), result

    def measure(self) -> dict[str, Any]:
        """Every figure on fresh connections, as verify() itself runs: a backend's catalog
        caches start empty, and filling them is part of the cost."""
        from tenancy.engine import catalog
        from tenancy.services import verify as service

        schemas = self.tenant_schemas()[: self.args.tenants]
        figures: dict[str, Any] = {"tenants": len(schemas)}
        seconds, report = self.median(lambda: service.verify(schemas))
        assert report.ok, [t.to_dict() for t in report.differing][:3]
        figures["verify_s"] = seconds
        figures["verify_jobs1_s"], _ = self.median(lambda: service.verify(schemas, jobs=1))
        figures["verify_one_s"], _ = self.median(lambda: service.verify(schemas[-1:]))
        figures["reference_s"], _ = self.median(self.reference_only)
        figures["fingerprint_s"], _ = self.median(
            lambda: self.on_fresh(catalog.fingerprints, schemas)
        )
        figures["raw_pg_attribute_s"], rows = self.median(
            lambda: self.on_fresh(lambda c, s: c.execute(_RAW_ATTRIBUTES, [s]).fetchone(), schemas)
        )
        figures["raw_attributes"] = int(rows[0])
        figures["raw_indexdef_s"], rows = self.median(
            lambda: self.on_fresh(lambda c, s: c.execute(_RAW_INDEXDEF, [s]).fetchone(), schemas)
        )
        figures["raw_indexes"] = int(rows[0])
        figures["lines_per_schema"] = self.on_fresh(catalog.fingerprints, schemas[:1])[
            schemas[0]
        ].lines
        if self.args.tamper:
            figures.update(self.tampered(schemas))
        figures["peak_rss_mb"] = peak_rss_mb()
        return figures

    def on_fresh(self, query: Any, schemas: list[str]) -> Any:
        with self.connect() as conn:
            return query(conn, schemas)

    def reference_only(self) -> None:
        from tenancy import conf
        from tenancy.engine.source import TENANT, discover
        from tenancy.services import verify as service
        from tenancy.services.infrastructure import connect_ready

        with connect_ready() as conn:
            service._references(conn, [tuple(discover(conf.migrations_dir(), TENANT))])

    def tampered(self, schemas: list[str]) -> dict[str, Any]:
        """verify() with K tenants given a column by hand (undone afterwards)."""
        from psycopg import sql

        from tenancy.services import verify as service

        victims = schemas[:: max(1, len(schemas) // self.args.tamper)][: self.args.tamper]
        alter = "ALTER TABLE {}.job_postings {} COLUMN bench_tampered"
        with self.connect() as conn:
            for s in victims:
                conn.execute(sql.SQL(alter + " integer").format(sql.Identifier(s), sql.SQL("ADD")))
        try:
            seconds, report = self.median(lambda: service.verify(schemas))
        finally:
            with self.connect() as conn:
                for s in victims:
                    conn.execute(sql.SQL(alter).format(sql.Identifier(s), sql.SQL("DROP")))
        assert {t.schema for t in report.differing} == set(victims)
        return {"tampered": len(victims), "verify_tampered_s": seconds}

    # -- the run -------------------------------------------------------------------------
    def run(self) -> int:
        import django
        from django.conf import settings

        django.setup()
        reuse = self.args.reuse and self.reusable()
        try:
            if reuse:
                self.log(f"reusing {self.args.db_name}")
                settings.TENANCY = {**settings.TENANCY, "MIGRATIONS_DIR": ROOT / "migrations_sql"}
            else:
                self.recreate_database()
                started = time.perf_counter()
                self.prepare()
                self.log(f"prepared {self.args.tenants} in {time.perf_counter() - started:.0f} s")
            self.describe_machine()
            figures = self.measure()
            self.print_figures(figures)
            if self.args.json:
                Path(self.args.json).write_text(
                    json.dumps({"machine": self.results.machine, **figures}, indent=2)
                )
        finally:
            self.cleanup()
        return 0

    def print_figures(self, f: dict[str, Any]) -> None:
        mc = self.results.machine
        n = f["tenants"]
        print(
            f"\nMachine: {mc['cpu']}, {mc['cores']} cores; PostgreSQL {mc['postgresql']} "
            f"over {mc['connection']}; Python {mc['python']}"
        )
        print(f"{n} tenants, {f['lines_per_schema']} catalog lines each; median of "
              f"{self.args.repeat}\n")  # fmt: skip
        rows = [
            ("verify(), all tenants healthy (--jobs 2)", f["verify_s"]),
            ("verify(jobs=1): one fingerprint query", f["verify_jobs1_s"]),
            ("  reference build (scratch schema, rolled back)", f["reference_s"]),
            ("  the fingerprint query alone, one connection", f["fingerprint_s"]),
            (f"raw: count(*) of {f['raw_attributes']} pg_attribute rows", f["raw_pg_attribute_s"]),
            (f"raw: pg_get_indexdef of {f['raw_indexes']} indexes", f["raw_indexdef_s"]),
        ]
        if "verify_tampered_s" in f:
            rows.append((f"verify(), {f['tampered']} tenants changed", f["verify_tampered_s"]))
        for label, seconds in rows:
            print(f"{label:<58} {seconds:8.3f} s  {1e6 * seconds / n:8.1f} µs/tenant")
        print(f"{'verify() of one tenant (the admin page)':<58} {f['verify_one_s']:8.3f} s")
        ratio = f["verify_s"] / f["raw_pg_attribute_s"]
        print(
            f"\nverify() / raw pg_attribute count: {ratio:.1f}x; peak RSS {f['peak_rss_mb']:.0f} MB"
        )


_RAW_ATTRIBUTES = """
SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
"""

_RAW_INDEXDEF = """
SELECT count(pg_get_indexdef(c.oid)) FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%s) AND c.relkind = 'i'
"""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_environment(args)
    return VerifyBench(args).run()


if __name__ == "__main__":
    raise SystemExit(main())
