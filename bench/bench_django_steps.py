#!/usr/bin/env python
"""Benchmark: the Django migrations of a tenant app through the engine, beside raw.

A script that prints a table, not a test: it never asserts, it reports PASS/MISS per
target. Its own database (``bench_django`` by default) on the configured server, dropped
with its tenant roles at the end unless ``--keep``; the example tenant app
(``candidate_notes``) with migrations of the bench's own: 0001 (the table), 0002 (an
``AddField``) and, in the last step, 0003 (a ``RunPython`` touching every row).

Steps, each whole-process (``manage.py …`` timed from outside, start-up included):

1. **AddField to every tenant**: ``migrate_schemas`` with ``--jobs 1`` and ``--jobs 2``,
   alternating with the raw lower bound measured in the same run: ``sqlmigrate``'s SQL for
   0002 plus the ``django_migrations`` row, one psycopg connection, one transaction per
   schema (timed inside this process: no start-up, no plan, no ledger). Each pass is
   undone (untimed) before the next.
2. **no-op**: ``migrate_schemas`` and ``migrate_tenants --dry-run`` with nothing pending;
   beside them ``manage.py version`` (Django's own start-up, the floor of any command).
3. **RunPython**: 0003 through ``migrate_tenants``, per schema, against the AddField's.

    .venv/bin/python bench/bench_django_steps.py --tenants 1000
    .venv/bin/python bench/bench_django_steps.py --tenants 100 --database-url postgresql://postgres@127.0.0.1:5432/x
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_migrations as base

ROOT = Path(__file__).resolve().parent.parent
APP = "candidate_notes"
REAL = ROOT / "employer_portal" / "candidate_notes" / "migrations"
ADD_FIELD = """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("candidate_notes", "0001_initial")]
    operations = [
        migrations.AddField(
            model_name="candidatenote",
            name="summary",
            field=models.CharField(blank=True, default="", max_length=200),
        ),
    ]
"""
RUN_PYTHON = """from django.db import migrations


def touch(apps, schema_editor):
    note = apps.get_model("candidate_notes", "CandidateNote")
    note.objects.filter(summary="").update(summary="-")


class Migration(migrations.Migration):
    dependencies = [("candidate_notes", "0002_summary")]
    operations = [migrations.RunPython(touch, migrations.RunPython.noop)]
"""
# Stock django-tenants on the same fleet and app: its own backend (a session-level
# search_path per schema) and its own migrate_schemas (the standard or multiprocessing
# executor), as a project that has not switched would run it.
STOCK_SETTINGS = """from bench_settings import *  # noqa: F403
DATABASES = {**DATABASES, "default": {**DATABASES["default"],
             "ENGINE": "django_tenants.postgresql_backend"}}
TENANT_MULTIPROCESSING_MAX_PROCESSES = 2
"""
STOCK_CHILD = """
import sys
import django
django.setup()
from django.core.management import call_command
from django_tenants.management.commands.migrate_schemas import MigrateSchemasCommand
call_command(MigrateSchemasCommand(), tenant=True, interactive=False, verbosity=0,
             executor=sys.argv[1])
"""
SETTINGS = """from employer_portal.settings import *  # noqa: F403
MIGRATION_MODULES = {"candidate_notes": "bench_notes_migrations"}
TENANCY = {**TENANCY, "MAX_TENANTS": 10**7, "MAX_CREATIONS_PER_HOUR": 10**7}
"""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tenants", type=int, default=1000, help="tenants (default 1000)")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    p.add_argument("--database-url", help="server to use (its database name is ignored)")
    p.add_argument("--db-name", default="bench_django", help="bench database (bench_django)")
    p.add_argument("--keep", action="store_true", help="keep the database and its roles")
    p.add_argument(
        "--stock",
        action="store_true",
        help="also time stock django-tenants' migrate_schemas (standard and multiprocessing) "
        "on the same fleet and app",
    )
    args = p.parse_args()
    if not args.db_name.startswith("bench") or args.tenants < 1:
        p.error("--db-name must start with 'bench'; --tenants must be positive")
    return args


class DjangoBench(base.Bench):
    def __init__(self, args: argparse.Namespace, folder: Path):
        super().__init__(args)
        self.folder = folder
        self.schemas: list[str] = []

    def manage(self, *argv: str, stock: str | None = None) -> float:
        """A whole ``manage.py`` process, timed from outside; ``stock``: django-tenants' own
        migrate_schemas with that executor, on its own backend, instead."""
        env = {**os.environ, **({"DJANGO_SETTINGS_MODULE": "bench_stock"} if stock else {})}
        command = ["-c", STOCK_CHILD, stock] if stock else [str(ROOT / "manage.py"), *argv]
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True
        )
        seconds = time.perf_counter() - started
        if done.returncode:
            raise SystemExit(f"manage.py {' '.join(argv)} failed:\n{done.stderr[-2000:]}")
        return seconds

    def prepare(self) -> None:
        from django.core.management import call_command

        from tenancy.services.tenants import create_tenant

        self.recreate_database()
        call_command("migrate_tenants", "--public", verbosity=0)
        started = time.perf_counter()
        self.schemas = [create_tenant(f"org_bdj{i}").schema for i in range(self.args.tenants)]
        self.log(f"prepared {len(self.schemas)} tenants in {time.perf_counter() - started:.0f} s")
        self.undo_engine()

    def undo_engine(self) -> None:
        from tenancy.services import runs

        report = runs.rollback(f"{APP}.0001", tenants=True, jobs=2, actor="bench")
        assert report.exit_code == 0, [r.error for r in report.failed]

    def raw_sql(self) -> list[str]:
        """0002's SQL as Django compiles it for a tenant schema (``sqlmigrate``'s)."""
        from tenancy.services import django_steps

        with self.connect() as conn:
            return django_steps.sqlmigrate(conn, self.schemas[0], APP, "0002_summary")

    def raw_pass(self, statements: list[str]) -> float:
        from psycopg import sql

        record = "INSERT INTO django_migrations (app, name, applied) VALUES (%s, %s, now())"
        with self.connect() as conn:
            started = time.perf_counter()
            for schema in self.schemas:
                with conn.transaction():
                    conn.execute(
                        sql.SQL("SET LOCAL search_path TO {}, public").format(
                            sql.Identifier(schema)
                        )
                    )
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute(record, [APP, "0002_summary"])
            seconds = time.perf_counter() - started
        self.undo_raw()
        return seconds

    def undo_raw(self) -> None:
        """Undo 0002 where it was applied outside the engine (raw, stock), untimed."""
        from psycopg import sql

        with self.connect() as conn:
            for schema in self.schemas:
                with conn.transaction():
                    path = sql.SQL("SET LOCAL search_path TO {}, public")
                    conn.execute(path.format(sql.Identifier(schema)))
                    conn.execute(
                        'ALTER TABLE "candidate_notes_candidatenote" DROP COLUMN "summary"'
                    )
                    conn.execute(
                        "DELETE FROM django_migrations WHERE app = %s AND name = %s",
                        [APP, "0002_summary"],
                    )

    def run(self) -> None:
        self.prepare()
        statements = self.raw_sql()
        raw: list[float] = []
        engine: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(self.args.rounds):
            raw.append(self.raw_pass(statements))
            for jobs in (1, 2):
                engine[jobs].append(self.manage("migrate_schemas", "--jobs", str(jobs), "-v", "0"))
                self.undo_engine()
        raw.append(self.raw_pass(statements))
        stock = self.stock() if self.args.stock else {}
        self.manage("migrate_schemas", "-v", "0")  # 0002 applied: the no-op state
        noop = min(self.manage("migrate_schemas", "-v", "0") for _ in range(3))
        dry = min(self.manage("migrate_tenants", "--dry-run") for _ in range(3))
        floor = min(self.manage("version") for _ in range(3))
        add_field_one = min(engine[1])
        (self.folder / "bench_notes_migrations" / "0003_touch.py").write_text(RUN_PYTHON)
        run_python = self.manage("migrate_tenants", "--tenants")
        self.report(min(raw), add_field_one, min(engine[2]), noop, dry, floor, run_python)
        for executor, (apply, stock_noop) in stock.items():
            verdict = "PASS" if min(apply / add_field_one, stock_noop / noop) >= 10 else "MISS"
            print(
                f"stock django-tenants ({executor}): AddField {apply:.2f} s = "
                f"{apply / add_field_one:.1f}x ours (--jobs 1), no-op {stock_noop:.2f} s = "
                f"{stock_noop / noop:.1f}x ours; >= 10x: {verdict}"
            )

    def stock_warm_up(self) -> None:
        """Stock django-tenants migrates every app in each tenant schema (the router skips
        the shared apps' operations but records them): its first run records them all
        (untimed). Its consistency check needs the tenant app's shared dependencies (auth,
        contenttypes) recorded in each schema, as a stock project's first migrate leaves."""
        from psycopg import sql

        with self.connect() as conn:
            for schema in self.schemas:
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {}.django_migrations (app, name, applied) "
                        "SELECT app, name, applied FROM public.django_migrations "
                        "WHERE app IN ('auth', 'contenttypes')"
                    ).format(sql.Identifier(schema))
                )
        seconds = self.manage(stock="standard")
        self.undo_raw()
        self.log(f"stock warm-up (records every app's migrations per schema): {seconds:.1f} s")

    def stock(self) -> dict[str, tuple[float, float]]:
        """Stock django-tenants' migrate_schemas on the same fleet (0002 pending): the
        AddField, then its no-op, with each executor; undone after (untimed)."""
        self.stock_warm_up()
        found = {}
        for executor in ("standard", "multiprocessing"):
            apply = self.manage(stock=executor)
            noop = self.manage(stock=executor)
            self.undo_raw()
            found[executor] = (apply, noop)
            self.log(f"stock {executor}: AddField {apply:.1f} s, no-op {noop:.1f} s")
        return found

    def report(
        self, raw: float, one: float, two: float, noop: float, dry: float, floor: float, py: float
    ) -> None:
        n = len(self.schemas)
        rows = [
            ("AddField, raw (sqlmigrate SQL + django_migrations row)", raw, "", ""),
            (
                "AddField, migrate_schemas --jobs 1 (whole process)",
                one,
                f"{one / raw:.2f}x raw",
                "PASS" if one <= 1.3 * raw else "MISS",
            ),
            (
                "AddField, migrate_schemas --jobs 2 (whole process)",
                two,
                f"{two / raw:.2f}x raw",
                "PASS" if two < raw else "MISS",
            ),
            (
                "no-op migrate_schemas (whole process)",
                noop,
                "<= 1.0 s",
                "PASS" if noop <= 1.0 else "MISS",
            ),
            (
                "migrate_tenants --dry-run (whole process)",
                dry,
                "<= 1.0 s",
                "PASS" if dry <= 1.0 else "MISS",
            ),
            ("manage.py version (Django's start-up)", floor, "floor", ""),
            (
                "RunPython 0003, migrate_tenants (whole process)",
                py,
                f"{(py - floor) / n * 1000:.2f} ms/schema",
                "",
            ),
        ]
        print(f"\n{n} tenants, best of {self.args.rounds} alternating rounds\n")
        for name, seconds, note, verdict in rows:
            print(f"{name:<58} {seconds:8.2f} s  {note:<18} {verdict}")


def main() -> int:
    args = parse_args()
    base.configure_environment(args)
    folder = Path(tempfile.mkdtemp(prefix="bench_django_"))
    package = folder / "bench_notes_migrations"
    package.mkdir()
    (package / "__init__.py").write_text("")
    shutil.copy(REAL / "0001_initial.py", package / "0001_initial.py")
    (package / "0002_summary.py").write_text(ADD_FIELD)
    (folder / "bench_settings.py").write_text(SETTINGS)
    (folder / "bench_stock.py").write_text(STOCK_SETTINGS)
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench_settings"
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(folder), str(ROOT), os.environ.get("PYTHONPATH", "")]
    )
    sys.path[:0] = [str(folder), str(ROOT)]
    import django

    django.setup()
    bench = DjangoBench(args, folder)
    try:
        bench.run()
    finally:
        if not args.keep:
            from tenancy.engine.db import close_idle

            close_idle()
            with bench.connect("postgres") as conn:
                bench.drop_database(conn)
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
