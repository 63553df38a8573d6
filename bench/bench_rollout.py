#!/usr/bin/env python
"""Benchmark of a staged rollout (issue 22): a three-stage rollout (a canary of 10, half
the fleet, the rest; soak 0, no checks) against a plain run of the same file over the same
tenants, with the raw lower bound (the same SQL and ledger row per schema, on one
connection, no engine) measured in the same run.

A script that prints figures, not a test. It reuses ``bench_migrations.py``'s database
handling: its own database (``bench_rollout``), a copy of ``migrations_sql/``, the safety
limits lifted, the tenants prepared in bulk. Each repeat applies one new tenant file three
ways, interleaved, and undoes it (untimed) after each:

- **plain**: ``runs.migrate(tenants=True)``, as ``migrate_tenants --tenants --jobs J``;
- **rollout**: ``rollouts.start`` with three stages, as ``migrate_tenants --rollout``;
- **raw**: bench_migrations' ``raw_apply``.

    .venv/bin/python bench/bench_rollout.py                 # 1,000 tenants, 3 repeats
    .venv/bin/python bench/bench_rollout.py --tenants 200 --jobs 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench_migrations import Bench, configure_environment  # noqa: E402

DEFAULT_DB = "bench_rollout"
FILE = """-- Description: a column for the rollout bench
-- UP
ALTER TABLE job_postings ADD COLUMN rollout_bench text;
-- DOWN
ALTER TABLE job_postings DROP COLUMN rollout_bench;
"""
STAGES = [
    {"name": "canary", "count": 10},
    {"name": "half", "percent": 50},
    {"name": "rest"},
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tenants", type=int, default=1000, help="tenants (default 1000)")
    p.add_argument("--jobs", type=int, default=2, help="workers, both ways (default 2)")
    p.add_argument("--repeat", type=int, default=3, help="repeats of each variant (default 3)")
    p.add_argument("--database-url", help="server to use (its database name is ignored)")
    p.add_argument("--db-name", default=DEFAULT_DB, help=f"bench database (default {DEFAULT_DB})")
    p.add_argument("--keep", action="store_true", help="keep the bench database and its roles")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    if not args.db_name.startswith("bench"):
        p.error("--db-name must start with 'bench': the bench drops its database at the end")
    if args.tenants < 20 or args.jobs < 1 or args.repeat < 1:
        p.error("--tenants must be at least 20; --jobs and --repeat positive")
    args.profile = None  # what Bench reads
    args.prepare = "bulk"
    args.prepare_jobs = 2
    return args


class RolloutBench(Bench):
    def log(self, message: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        print(f"[bench_rollout {stamp}] {message}", file=sys.stderr, flush=True)

    def plain(self) -> float:
        from tenancy.services import runs

        t0 = time.perf_counter()
        report = runs.migrate(public=False, tenants=True, jobs=self.args.jobs, actor="bench")
        elapsed = time.perf_counter() - t0
        assert report.exit_code == 0 and len(report.results) == self.args.tenants, report
        return elapsed

    def rollout(self) -> float:
        from tenancy.services import rollout_policy, rollouts

        stages = rollout_policy.named_policy("bench", {"bench": STAGES}, jobs=self.args.jobs)
        t0 = time.perf_counter()
        report = rollouts.start(stages, policy="bench", actor="bench")
        elapsed = time.perf_counter() - t0
        assert report.exit_code == 0 and report.record.state == "completed", report
        assert sum(len(s["applied"]) for s in report.record.stages) == self.args.tenants
        return elapsed

    def raw(self, schemas: list[str], migration) -> float:  # noqa: ANN001
        return self.raw_apply(schemas, migration).seconds

    def measure(self) -> dict[str, list[float]]:
        migration = self.write_migration("rollout_bench", FILE)
        schemas = self.tenant_schemas()
        times: dict[str, list[float]] = {"plain": [], "rollout": [], "raw": []}
        for i in range(self.args.repeat):
            order = ["plain", "rollout", "raw"]
            order = order[i % 3 :] + order[: i % 3]  # each goes first once in three
            for variant in order:
                if variant == "raw":
                    times["raw"].append(self.raw(schemas, migration))
                else:
                    times[variant].append(getattr(self, variant)())
                self.undo(schemas, migration)
                self.log(f"repeat {i + 1}: {variant} {times[variant][-1]:.2f}s")
        return times


def report(times: dict[str, list[float]], args: argparse.Namespace) -> dict[str, object]:
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}  # on a noisy machine, the steadier figure
    return {
        "best_s": best,
        "best_rollout_over_plain": best["rollout"] / best["plain"],
        "tenants": args.tenants,
        "jobs": args.jobs,
        "repeats": args.repeat,
        "median_s": med,
        "rollout_over_plain": med["rollout"] / med["plain"],
        "plain_over_raw": med["plain"] / med["raw"],
        "rollout_over_raw": med["rollout"] / med["raw"],
        "all_s": times,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_environment(args)
    import django

    django.setup()
    bench = RolloutBench(args)
    bench.recreate_database()
    try:
        bench.prepare()
        result = report(bench.measure(), args)
    finally:
        if not args.keep:
            with bench.connect("postgres") as conn:
                bench.drop_database(conn)
    m = result["median_s"]
    print(
        f"{args.tenants} tenants, --jobs {args.jobs}, median of {args.repeat}: "
        f"raw {m['raw']:.2f}s, plain run {m['plain']:.2f}s "  # type: ignore[index]
        f"({result['plain_over_raw']:.2f}x raw), three-stage rollout {m['rollout']:.2f}s "  # type: ignore[index]
        f"({result['rollout_over_plain']:.3f}x plain, {result['rollout_over_raw']:.2f}x raw)"
    )
    b = result["best_s"]
    print(
        f"best of {args.repeat}: raw {b['raw']:.2f}s, plain run {b['plain']:.2f}s, "  # type: ignore[index]
        f"three-stage rollout {b['rollout']:.2f}s "  # type: ignore[index]
        f"({result['best_rollout_over_plain']:.3f}x plain)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
