"""Ablation of the engine's per-schema cost: which of its extra round trips costs what.

Runs against a database kept by ``bench_migrations.py --keep`` (tenants prepared, the
apply migration applied). Each variant applies MIGRATION (a tenant file whose version is
above every applied one, in a copy of migrations_sql/ holding the kept database's files) to
every tenant, one transaction per schema, one connection; undone between variants.

    .venv/bin/python bench/bench_migrations.py --db-name bench_ablation --tenants 1000 \
        --prepare bulk --keep --skip-locks-check --create-sample 0 --rounds 1 --jobs 1
    .venv/bin/python bench/ablation_executor.py bench_ablation /tmp/sql/tenant/005_x.sql 3

It does not drop the database: drop it (and its tenant roles) when done.
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, "/work/main")
os.environ["DJANGO_SETTINGS_MODULE"] = "employer_portal.settings"
if not sys.argv[1].startswith("bench"):
    raise SystemExit("the database name must start with 'bench'")
os.environ.pop("DATABASE_URL", None)
os.environ["EMPLOYER_PORTAL_DB_NAME"] = sys.argv[1]
os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
import django  # noqa: E402

django.setup()
import psycopg  # noqa: E402
from django.conf import settings  # noqa: E402
from psycopg import sql  # noqa: E402

from tenancy import conf  # noqa: E402
from tenancy.engine import db, ledger  # noqa: E402
from tenancy.engine.executor import Executor  # noqa: E402
from tenancy.engine.source import load  # noqa: E402

mig = load(Path(sys.argv[2]), "tenant")
settings.TENANCY = {**settings.TENANCY, "MIGRATIONS_DIR": Path(sys.argv[2]).parent.parent}
conn = psycopg.connect(**conf.conninfo(), autocommit=True)
schemas = [r[0] for r in conn.execute("SELECT schema_name FROM tenant_registry ORDER BY id")]
INS = (
    "INSERT INTO public.tenant_migrations (tenant_schema, migration_version, migration_name, "
    "checksum, rollback_sql, applied_by) VALUES (%s,%s,%s,%s,%s,'x')"
)
UPSERT_ARGS = dict(elapsed_ms=1, actor="x", run_id=None)


def undo():
    for s in schemas:
        with conn.transaction():
            conn.execute(db.search_path(s))
            conn.execute(sql.SQL(mig.down_sql))
            conn.execute(
                "DELETE FROM tenant_migrations WHERE tenant_schema=%s AND migration_version=%s",
                [s, mig.version],
            )


def variant(lock=False, read=False, upsert=False, setconfig=False):
    c = psycopg.connect(**conf.conninfo(), autocommit=True)
    t = time.perf_counter()
    for s in schemas:
        if read:  # the session-lock path: lock, then the ledger in a statement of its own
            db.try_lock(c, s)
            ledger.applied_for(c, s)
        elif lock:
            db.try_lock(c, s)
        with c.transaction():
            if setconfig:
                db.configure(c, s, 5000)
            else:
                c.execute(db.search_path(s))
            c.execute(sql.SQL(mig.up_sql))
            if upsert:
                ledger.record(c, s, mig, **UPSERT_ARGS)
            else:
                c.execute(INS, [s, mig.version, mig.name, mig.checksum, mig.down_sql])
        if lock or read:
            db.unlock(c, s)
    el = time.perf_counter() - t
    c.close()
    return el


def executor():
    t = time.perf_counter()
    res = Executor(conf.conninfo(), conf.engine_options(jobs=1), None).migrate(
        (s, [mig], [mig]) for s in schemas
    )
    assert all(r.status == "succeeded" for r in res), res[:2]
    return time.perf_counter() - t


def runs_migrate():
    from tenancy.services import runs

    t = time.perf_counter()
    rep = runs.migrate(jobs=1)
    assert rep.exit_code == 0
    return time.perf_counter() - t


cases = [
    ("raw", lambda: variant()),
    ("raw + session lock/unlock", lambda: variant(lock=True)),
    ("raw + try_lock, ledger read, unlock", lambda: variant(read=True)),
    ("raw + ledger.record upsert", lambda: variant(upsert=True)),
    ("raw + db.configure", lambda: variant(setconfig=True)),
    ("all four (engine's SQL sequence)", lambda: variant(read=True, upsert=True, setconfig=True)),
    ("Executor.migrate(jobs=1)", executor),
    ("runs.migrate(jobs=1)", runs_migrate),
]
results = {name: [] for name, _ in cases}
for rnd in range(int(sys.argv[3])):
    for name, fn in cases:
        undo()
        results[name].append(fn())
        print(f"round {rnd} {name}: {results[name][-1]:.2f}s", file=sys.stderr, flush=True)
undo()
base = min(results["raw"])
print(f"{len(schemas)} schemas, best of {sys.argv[3]} rounds")
for name, vals in results.items():
    b = min(vals)
    print(
        f"{name:<36} {b:7.2f} s  {1000 * b / len(schemas):5.2f} ms/schema  {b / base:5.2f}x  "
        f" passes {[round(v, 2) for v in vals]}"
    )
