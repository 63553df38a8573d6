#!/usr/bin/env python
"""Benchmark of tenant creation with the warm pool (issue 12): a claimed pool schema vs a
direct ``create_tenant`` vs raw DDL, in one run on the same server, interleaved.

A script that prints figures, not a test. Like ``bench_verify.py`` it reuses
``bench_migrations.py``'s database handling: its own database (``bench_pool``) on the
configured server, a copy of the shipped ``migrations_sql/``, the safety limits lifted; the
database and the roles its tenants created are dropped at the end unless ``--keep``.

Measured, per tenant, ``--sample`` of each, in chunks of ``--chunk`` that rotate which
variant goes first (so the server's load, caches and the growing catalog weigh on all three
alike):

- **claimed**: ``create_tenant`` with ``TENANCY["POOL_SIZE"]`` > 0 and a ready entry (each
  result checked: ``path == "pool"``). The pool is filled before the chunk, untimed here;
- **direct**: ``create_tenant`` with the pool off (``POOL_SIZE`` 0): every tenant file run;
- **raw**: bench_migrations' ``raw_create(full=True)``: the same end state (roles, schema
  owned by the owner role, grants, the files' SQL as the owner, ledger, registry, domain,
  audit row) as plain SQL in one transaction on one open connection, no engine;
- **refill**: ``pool.fill`` of each chunk: the cost per pool schema built (the worker's
  cost, paid ahead of signups), from ``FillReport.build_ms`` and the fill's total;
- **enqueue**: ``tasks.request_pool_refill()``, what a creation adds after its commit to
  ask the worker for a refill (django-tasks' database backend: one Django query or two).
  The claimed figures do not include it (the bench fills itself); it is reported apart.

    .venv/bin/python bench/bench_pool.py                  # 100 of each, chunks of 10
    .venv/bin/python bench/bench_pool.py --sample 300 --json bench/results/pool.json
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

from bench_migrations import Bench, configure_environment, quantile  # noqa: E402

DEFAULT_DB = "bench_pool"
VARIANTS = ("claimed", "direct", "raw")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sample", type=int, default=100, help="tenants per variant (default 100)")
    p.add_argument("--chunk", type=int, default=10, help="tenants per chunk (default 10)")
    p.add_argument("--database-url", help="server to use (its database name is ignored)")
    p.add_argument("--db-name", default=DEFAULT_DB, help=f"bench database (default {DEFAULT_DB})")
    p.add_argument("--keep", action="store_true", help="keep the bench database and its roles")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    if not args.db_name.startswith("bench"):
        p.error("--db-name must start with 'bench': the bench drops its database at the end")
    if args.sample < 1 or args.chunk < 1:
        p.error("--sample and --chunk must be positive")
    # What Bench reads.
    args.profile = None
    args.tenants = 1  # one tenant by create_tenant first: the shared roles exist, as in use
    args.prepare = "engine"
    return args


def no_refill() -> None:
    """The refill hook while measuring: the bench fills the pool itself, timed apart."""


class PoolBench(Bench):
    def log(self, message: str) -> None:
        print(f"[bench_pool {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def setup(self) -> None:
        from django.conf import settings

        from tenancy.services import tenants

        super().prepare()  # public migrations, files copied, limits lifted, one tenant
        settings.TENANCY = {**settings.TENANCY, "POOL_SIZE": self.args.chunk}
        tenants.REFILL_TASK = "bench_pool.no_refill"
        self.times: dict[str, list[float]] = {v: [] for v in VARIANTS}
        self.refill_ms: list[int] = []
        self.fill_totals: list[tuple[int, int]] = []  # (built, ms of the whole fill)

    def pool(self, on: bool) -> None:
        from django.conf import settings

        settings.TENANCY = {**settings.TENANCY, "POOL_SIZE": self.args.chunk if on else 0}

    # -- the three variants -------------------------------------------------------------------
    def claimed(self, start: int, count: int) -> None:
        from tenancy.services import pool
        from tenancy.services.tenants import create_tenant

        self.pool(True)
        report = pool.fill(count, actor="bench")
        assert len(report.built) == count, report.to_dict()
        self.refill_ms += report.build_ms
        self.fill_totals.append((len(report.built), report.elapsed_ms))
        for i in range(start, start + count):
            t0 = time.perf_counter()
            created = create_tenant(f"org_claim{i:06d}", f"Claimed {i}", actor="bench")
            self.times["claimed"].append(time.perf_counter() - t0)
            assert created.path == "pool", created

    def direct(self, start: int, count: int) -> None:
        from tenancy.services.tenants import create_tenant

        self.pool(False)
        for i in range(start, start + count):
            t0 = time.perf_counter()
            created = create_tenant(f"org_direct{i:06d}", f"Direct {i}", actor="bench")
            self.times["direct"].append(time.perf_counter() - t0)
            assert created.path == "direct", created
        self.pool(True)

    def raw(self, start: int, count: int) -> None:
        migrations = self.tenant_migrations()
        with self.connect() as conn:
            for i in range(start, start + count):
                t0 = time.perf_counter()
                with conn.transaction():
                    self.raw_create(conn, "org_raw", i, migrations, full=True)
                self.times["raw"].append(time.perf_counter() - t0)

    def enqueue(self, count: int = 20) -> list[float]:
        """``request_pool_refill`` with nothing queued (the task row deleted after each)."""
        from django_tasks_db.models import DBTaskResult

        from tenancy import tasks

        times = []
        for _ in range(count):
            t0 = time.perf_counter()
            tasks.request_pool_refill()
            times.append(time.perf_counter() - t0)
            DBTaskResult.objects.all().delete()
        return times

    # -- run ----------------------------------------------------------------------------------
    def measure(self) -> dict[str, Any]:
        chunk, sample = self.args.chunk, self.args.sample
        runners = {"claimed": self.claimed, "direct": self.direct, "raw": self.raw}
        for n, start in enumerate(range(0, sample, chunk)):
            count = min(chunk, sample - start)
            order = VARIANTS[n % 3 :] + VARIANTS[: n % 3]  # rotate who goes first
            for variant in order:
                runners[variant](start, count)
            if (start + count) % max(chunk, sample // 5) == 0:
                self.log(f"{start + count}/{sample} of each")
        self.check_identical()
        return self.figures(self.enqueue())

    def check_identical(self) -> None:
        """A claimed and a direct tenant of this run describe identically (tenant_verify's
        fingerprint): the speed is not bought with a different schema."""
        from tenancy.engine import catalog

        pair = ["tenant_org_claim000000", "tenant_org_direct000000"]
        with self.connect() as conn:
            prints = catalog.fingerprints(conn, pair)
        assert prints[pair[0]] == prints[pair[1]], prints

    def figures(self, enqueue: list[float]) -> dict[str, Any]:
        def stats(values: list[float]) -> dict[str, float]:
            ms = [1000 * v for v in values]
            return {
                "n": len(ms),
                "p50_ms": statistics.median(ms),
                "p95_ms": quantile(ms, 0.95),
                "mean_ms": statistics.fmean(ms),
                "min_ms": min(ms),
                "max_ms": max(ms),
            }

        out: dict[str, Any] = {v: stats(self.times[v]) for v in VARIANTS}
        built = sum(b for b, _ in self.fill_totals)
        out["refill"] = {
            "schemas": built,
            "build_p50_ms": statistics.median(self.refill_ms),
            "build_p95_ms": quantile([float(x) for x in self.refill_ms], 0.95),
            "fill_total_ms_per_schema": sum(t for _, t in self.fill_totals) / max(1, built),
        }
        out["enqueue"] = stats(enqueue)
        claimed, direct, raw = (out[v]["p50_ms"] for v in VARIANTS)
        out["ratios"] = {
            "direct_over_claimed_p50": direct / claimed,
            "raw_over_claimed_p50": raw / claimed,
        }
        out["targets"] = {
            "claimed p50 <= 10 ms": claimed <= 10,
            "claimed p95 <= 25 ms": out["claimed"]["p95_ms"] <= 25,
            ">= 3x faster than direct at p50": direct / claimed >= 3,
        }
        return out

    def print_figures(self, f: dict[str, Any]) -> None:
        print()
        print(f"{'variant':10} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8} {'max ms':>8}")
        for v in (*VARIANTS, "enqueue"):
            s = f[v]
            print(
                f"{v:10} {s['n']:>4} {s['p50_ms']:>8.2f} {s['p95_ms']:>8.2f} "
                f"{s['mean_ms']:>8.2f} {s['max_ms']:>8.2f}"
            )
        r = f["refill"]
        print(
            f"refill: {r['schemas']} pool schemas, build p50 {r['build_p50_ms']:.1f} ms, "
            f"p95 {r['build_p95_ms']:.1f} ms, {r['fill_total_ms_per_schema']:.1f} ms per schema "
            "with the fill's own queries"
        )
        print(
            f"direct / claimed at p50: {f['ratios']['direct_over_claimed_p50']:.1f}x; "
            f"raw / claimed: {f['ratios']['raw_over_claimed_p50']:.1f}x"
        )
        for name, ok in f["targets"].items():
            print(f"  {'PASS' if ok else 'MISS'}  {name}")

    def run(self) -> int:
        import django

        django.setup()
        self.recreate_database()
        try:
            self.describe_machine()
            self.setup()
            figures = self.measure()
            figures["machine"] = self.results.machine
            self.print_figures(figures)
            if self.args.json:
                Path(self.args.json).parent.mkdir(parents=True, exist_ok=True)
                Path(self.args.json).write_text(json.dumps(figures, indent=2, default=str))
        finally:
            self.cleanup()
        return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_environment(args)
    return PoolBench(args).run()


if __name__ == "__main__":
    raise SystemExit(main())
