"""Ablation of the engine's per-schema cost at ``--jobs 1``: what each of its pieces costs.

Runs against a database kept by ``bench_migrations.py --keep`` (tenants prepared, the apply
migration applied). Each variant applies MIGRATION (a tenant file whose version is above
every applied one, in a copy of migrations_sql/ holding the kept database's files) to
every tenant, one transaction per schema; undone between passes (not timed). Three kinds:

- SQL sequences by hand (raw, raw as the owner role, the engine's statements with and
  without its savepoint and role, ...), one connection, interleaved schema by schema in a
  pass (schema i by variant (i + round) mod k), so that every variant sees the same noise
  and the same catalog; each against raw's ms/schema in the same pass;
- ``Executor.migrate`` of other checkouts (``--checkout NAME=DIR``: another git worktree,
  e.g. an earlier commit; each in a process of its own, timed inside it), interleaved with
  raw by chunks of ``--chunk`` schemas (chunk j by variant (j + round) mod k), each against
  raw's ms/schema in the same pass: a before/after comparison of the per-schema engine;
- whole runs (``Executor.migrate`` and ``runs.migrate`` of this checkout, with the latter's
  phases timed; ``runs.migrate`` of each checkout in a subprocess), pass by pass between
  raw passes (raw, run, raw, run, ..., raw), each against the mean of the raw passes
  either side of it: passes slow down as the catalog bloats, and the machine may be shared.

Figures are medians over ``--rounds``.

    .venv/bin/python bench/bench_migrations.py --db-name bench_ablation --tenants 1000 \
        --prepare bulk --keep --skip-locks-check --create-sample 0 --rounds 1 --jobs 1
    .venv/bin/python bench/ablation_executor.py bench_ablation /tmp/sql/tenant/005_x.sql \
        --rounds 3 --checkout before=/tmp/bench-before --checkout after=.

(/tmp/sql: a copy of migrations_sql/ plus the bench's 004_bench_job_tags.sql, as the bench
wrote it, and 005_x.sql: the same file with other table and column names.)

Each row's SQL is built with the engine's own helpers (``db.begin_locked``,
``ledger.applied_for``, ``ledger.record_statement``, the executor's savepoint and role
statements), so the rows follow the engine. Round trips per schema are given for each.
``--only`` picks variants by key (``exec``: this checkout's executor and the checkouts',
interleaved by chunks).
It does not drop the database: drop it (and its tenant roles) when done.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("db", help="a kept bench database (its name starts with 'bench')")
parser.add_argument("file", help="the tenant migration to apply, in a migrations_sql/ copy")
parser.add_argument("--rounds", type=int, default=3)
parser.add_argument("--only", help="comma-separated variant keys (raw always runs)")
parser.add_argument("--checkout", action="append", default=[], metavar="NAME=DIR")
parser.add_argument("--chunk", type=int, default=50, help="schemas per executor chunk")
ARGS = parser.parse_args()
if not ARGS.db.startswith("bench"):
    raise SystemExit("the database name must start with 'bench'")
os.environ["DJANGO_SETTINGS_MODULE"] = "employer_portal.settings"
os.environ.pop("DATABASE_URL", None)
os.environ.pop("EMPLOYER_PORTAL_DB_URL", None)
os.environ["EMPLOYER_PORTAL_DB_NAME"] = ARGS.db
os.environ.setdefault("EMPLOYER_PORTAL_PGDATA", str(ROOT / ".pgdata"))  # for the checkouts
os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
import django  # noqa: E402

django.setup()
import psycopg  # noqa: E402
from django.conf import settings  # noqa: E402
from psycopg import sql  # noqa: E402

from tenancy import conf  # noqa: E402
from tenancy.engine import db, ledger, statements  # noqa: E402
from tenancy.engine.executor import (  # noqa: E402
    SAVEPOINT,
    Executor,
    _as_owner,
    _back_to_login,
    placeholders,
    tenant_owner,
)
from tenancy.engine.source import discover, load  # noqa: E402

MIGRATION = Path(ARGS.file).resolve()
mig = load(MIGRATION, "tenant")
SCOPE = discover(MIGRATION.parent.parent, "tenant")  # the scope's files, as a run passes them
ONLY = set(ARGS.only.split(",")) if ARGS.only else None
settings.TENANCY = {
    **settings.TENANCY,
    "MIGRATIONS_DIR": MIGRATION.parent.parent,
    "MAX_TENANTS": 10**9,
    "MAX_CREATIONS_PER_HOUR": 10**9,
}
conn = psycopg.connect(**conf.conninfo(), autocommit=True)
DBNAME = conn.info.dbname
schemas = [r[0] for r in conn.execute("SELECT schema_name FROM tenant_registry ORDER BY id")]
# Everything that does not depend on the variant is computed before the clock starts.
TEXT = {s: sql.SQL(statements.render(mig.up_sql, placeholders(s, DBNAME))) for s in schemas}
OWNER = {s: tenant_owner(s, DBNAME) for s in schemas}
INS = sql.SQL(
    "INSERT INTO public.tenant_migrations (tenant_schema, migration_version, migration_name, "
    "checksum, rollback_sql, applied_by) VALUES ({}, {}, {}, {}, {}, 'x')"
)
SAVE = sql.SQL("SAVEPOINT {}").format(sql.Identifier(SAVEPOINT))
RELEASE = sql.SQL("RELEASE SAVEPOINT {}").format(sql.Identifier(SAVEPOINT))
LOCK_TIMEOUT = 5000


def join(*parts) -> sql.Composed:
    return sql.SQL("; ").join(p if isinstance(p, sql.Composable) else sql.SQL(p) for p in parts)


def undo() -> None:
    for s in schemas:
        with conn.transaction():
            conn.execute(db.search_path(s))
            conn.execute(sql.SQL(mig.down_sql))
            conn.execute(
                "DELETE FROM tenant_migrations WHERE tenant_schema=%s AND migration_version=%s",
                [s, mig.version],
            )


def raw(c, s, *, owner=False, savepoint=False):
    """The bench's raw bound (5 round trips; the ledger row's values as literals), with the
    owner role and/or a savepoint joined to the round trips raw makes anyway."""
    with c.transaction():  # BEGIN ... COMMIT: 2 round trips
        c.execute(db.search_path(s))
        enter = [SAVE] if savepoint else []
        enter += [_as_owner(c, OWNER[s])] if owner else []
        c.execute(join(*enter, TEXT[s]))
        leave = [RELEASE] if savepoint else []
        leave += [_back_to_login(c)] if owner else []
        values = [s, mig.version, mig.name, mig.checksum, mig.down_sql]
        c.execute(join(*leave, INS.format(*map(sql.Literal, values))))


def engine_seq(c, s, *, owner=True, savepoint=True, read_with_lock=False):
    """The engine's statements by hand: [BEGIN; lock + settings] [ledger read]
    [SAVEPOINT; role; file] [RELEASE; role back; ledger upsert; COMMIT]: 4 round trips.
    ``read_with_lock``: the ledger read as a third statement of the first round trip (3),
    as the engine sends it since the commit after 8223563."""
    begin = db.begin_locked(c, s, LOCK_TIMEOUT)
    if read_with_lock:
        cur = c.execute(
            join(
                begin,
                sql.SQL(
                    f"SELECT {ledger._APPLIED_COLUMNS} FROM public.tenant_migrations "
                    "WHERE tenant_schema = {}"
                ).format(sql.Literal(s)),
            )
        )
        cur.nextset()
        assert cur.fetchone()[0]
        cur.nextset()
        ledger._rows_to_map(cur.fetchall())
    else:
        cur = c.execute(begin)
        cur.nextset()
        assert cur.fetchone()[0]
        ledger.applied_for(c, s)
    enter = [SAVE] if savepoint else []
    enter += [_as_owner(c, OWNER[s])] if owner else []
    c.execute(join(*enter, TEXT[s]))
    leave = [RELEASE] if savepoint else []
    leave += [_back_to_login(c)] if owner else []
    record = ledger.record_statement(s, mig, elapsed_ms=1, actor="x", run_id=None)
    c.execute(join(*leave, record, "COMMIT"))


NONE = {"owner": False, "savepoint": False}
FAST = {"savepoint": False, "read_with_lock": True}


def executor():
    t = time.perf_counter()
    res = Executor(conf.conninfo(), conf.engine_options(jobs=1), None).migrate(
        (s, SCOPE, [mig]) for s in schemas
    )
    assert all(r.status == "succeeded" for r in res), res[:2]
    return time.perf_counter() - t


PHASES: list[dict[str, float]] = []  # runs.migrate's phases, per pass


def runs_migrate():
    """``runs.migrate(jobs=1)`` with its phases timed (wrappers on the names it calls)."""
    from tenancy.services import runs

    phases: dict[str, float] = {}
    names = [
        "ensure_infrastructure",
        "build_plan",
        "check_files",
        "refusals",
        "start_run",
        "fit_jobs",
        "finish_run",
    ]
    originals = {name: getattr(runs, name) for name in names}
    original_write, original_migrate = runs.audit.write, runs.Executor.migrate

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - started

        return wrapper

    for name, fn in originals.items():
        setattr(runs, name, timed(name, fn))
    runs.audit.write = timed("audit.write", original_write)
    runs.Executor.migrate = timed("Executor.migrate", original_migrate)
    try:
        t = time.perf_counter()
        rep = runs.migrate(jobs=1, actor="ablation")
        elapsed = time.perf_counter() - t
    finally:
        for name, fn in originals.items():
            setattr(runs, name, fn)
        runs.audit.write, runs.Executor.migrate = original_write, original_migrate
    assert rep.exit_code == 0, rep.to_dict()
    phases["rest"] = elapsed - sum(phases.values())
    PHASES.append(phases)
    return elapsed


CHILD = """
import json, os, sys, time
sys.path.insert(0, os.getcwd())
import django
django.setup()
from django.conf import settings
settings.TENANCY = {**settings.TENANCY, "MIGRATIONS_DIR": sys.argv[1]}
from tenancy.services import runs
started = time.perf_counter()
report = runs.migrate(jobs=1, actor="ablation")
seconds = time.perf_counter() - started
ok = sum(r.status == "succeeded" for r in report.results)
print(json.dumps({"seconds": seconds, "exit": report.exit_code, "ok": ok}))
"""


SERVER = """
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, os.getcwd())
import django
django.setup()
from django.conf import settings
settings.TENANCY = {**settings.TENANCY, "MIGRATIONS_DIR": sys.argv[1]}
from tenancy import conf
from tenancy.engine.executor import Executor
from tenancy.engine.source import TENANT, discover
scope = discover(sys.argv[1], TENANT)
mig = next(m for m in scope if m.path.name == Path(sys.argv[2]).name)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    schemas = json.loads(line)
    started = time.perf_counter()
    executor = Executor(conf.conninfo(), conf.engine_options(jobs=1, actor="ablation"), None)
    results = executor.migrate((s, scope, [mig]) for s in schemas)
    seconds = time.perf_counter() - started
    ok = sum(r.status == "succeeded" for r in results)
    print(json.dumps({"seconds": seconds, "ok": ok}), flush=True)
"""


class ExecutorServer:
    """``Executor.migrate`` of the code in another checkout, in a process of its own that
    applies the chunks of schemas it is sent and times each inside itself."""

    def __init__(self, directory: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(MIGRATION.parent.parent), str(MIGRATION)],
            cwd=directory,
            env=os.environ,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert json.loads(self.proc.stdout.readline())["ready"]

    def __call__(self, chunk: list[str]) -> float:
        self.proc.stdin.write(json.dumps(chunk) + "\n")
        self.proc.stdin.flush()
        result = json.loads(self.proc.stdout.readline())
        assert result["ok"] == len(chunk), result
        return result["seconds"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def in_process_executor():
    """``Executor.migrate`` of this checkout over a chunk. (The two prototypes this file
    patched in until commit 8223563, worker connections without psycopg's auto-prepare and
    the ledger read in the BEGIN round trip, are the engine's own since: compare with an
    earlier checkout by ``--checkout before=DIR``.)"""

    def run(chunk: list[str]) -> float:
        started = time.perf_counter()
        options = conf.engine_options(jobs=1, actor="ablation")
        res = Executor(conf.conninfo(), options, None).migrate((s, SCOPE, [mig]) for s in chunk)
        seconds = time.perf_counter() - started
        assert all(r.status == "succeeded" for r in res), [r for r in res if r.failed][:2]
        return seconds

    return run


PROTOTYPES = [  # (key, label, runner)
    ("exec", "Executor.migrate of this checkout, as is", in_process_executor()),
]


def raw_chunk(chunk: list[str]) -> float:
    """Raw over a chunk, on a connection of its own (as each Executor.migrate opens one)."""
    started = time.perf_counter()
    c = psycopg.connect(**conf.conninfo(), autocommit=True)
    for s in chunk:
        R(c, s)
    c.close()
    return time.perf_counter() - started


def in_checkout(directory: str):
    def run():
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(MIGRATION.parent.parent)],
            cwd=directory,
            env=os.environ,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        result = json.loads(out.strip().splitlines()[-1])
        assert result["exit"] == 0 and result["ok"] == len(schemas), result
        return result["seconds"]

    return run


E, R = engine_seq, raw
# SQL sequences by hand: (key, label, round trips per schema, step(conn, schema)). Measured
# interleaved schema by schema (below): every variant sees the same noise and catalog.
STEPS = [
    ("raw", "raw: BEGIN|SET LOCAL search_path|file|INSERT|COMMIT", 5, R),
    ("raw_owner", "raw, file as the owner role", 5, partial(R, owner=True)),
    ("raw_sp", "raw, file in a savepoint", 5, partial(R, savepoint=True)),
    ("seq_old", "engine seq. of adb9785: no savepoint, no role", 4, partial(E, **NONE)),
    ("seq_sp", "  + savepoint", 4, partial(E, owner=False)),
    ("seq_role", "  + owner role", 4, partial(E, savepoint=False)),
    ("seq_now", "  + both: the engine sequence of 8223563", 4, E),
    ("seq_3rt", "  + ledger read with the lock (engine now)", 3, partial(E, read_with_lock=True)),
    ("seq_3rt_nosp", "the engine now without its savepoint", 3, partial(E, **FAST)),
]
# Whole runs: (key, label, runner() -> seconds). Measured pass by pass between raw passes.
RUNS = [
    ("executor", "Executor(...).migrate(jobs=1)", executor),
    ("runs", "runs.migrate(jobs=1)", runs_migrate),
]
for spec in ARGS.checkout:
    name, _, directory = spec.partition("=")
    RUNS.append((name, f"runs.migrate(jobs=1) of {name} ({directory})", in_checkout(directory)))
steps = [c for c in STEPS if ONLY is None or c[0] in ONLY]
if steps and steps[0][0] != "raw":
    steps.insert(0, STEPS[0])  # every ratio is to raw
runs_ = [c for c in RUNS if ONLY is None or c[0] in ONLY]
n = len(schemas)


def interleaved(round_: int) -> dict[str, float]:
    """One pass over every schema, schema i by variant (i + round) mod k: ms per schema of
    each variant. Over k rounds every schema sees every variant once."""
    total = {key: 0.0 for key, *_ in steps}
    count = {key: 0 for key, *_ in steps}
    c = psycopg.connect(**conf.conninfo(), autocommit=True)
    for i, s in enumerate(schemas):
        key, _, _, step = steps[(i + round_) % len(steps)]
        started = time.perf_counter()
        step(c, s)
        total[key] += time.perf_counter() - started
        count[key] += 1
    c.close()
    return {key: 1000 * total[key] / count[key] for key in total}


def raw_pass(raws: list[float]) -> None:
    undo()
    started = time.perf_counter()
    c = psycopg.connect(**conf.conninfo(), autocommit=True)
    for s in schemas:
        R(c, s)
    c.close()
    raws.append(time.perf_counter() - started)
    print(f"raw: {raws[-1]:.2f}s", file=sys.stderr, flush=True)


print(f"{n} schemas, {ARGS.rounds} rounds; medians over the rounds")
if len(steps) > 1:
    per_round: list[dict[str, float]] = []
    for rnd in range(ARGS.rounds):
        undo()
        per_round.append(interleaved(rnd))
        print(f"interleaved round {rnd + 1}: {per_round[-1]}", file=sys.stderr, flush=True)
    print()
    print("SQL sequences by hand, interleaved schema by schema in each pass (schema i by")
    print("variant (i + round) mod k); vs raw: to raw's ms/schema in the same pass")
    print(f"{'variant':<52} {'trips':>5} {'ms/schema':>9} {'vs raw':>6}  per round ms (vs raw)")
    for key, label, trips, _ in steps:
        ms = [r[key] for r in per_round]
        rel = [r[key] / r["raw"] for r in per_round]
        detail = ", ".join(f"{m:.3f} ({x:.2f})" for m, x in zip(ms, rel, strict=True))
        print(
            f"{label:<52} {trips:>5} {statistics.median(ms):>9.3f} "
            f"{statistics.median(rel):>6.2f}  {detail}"
        )
protos = [p for p in PROTOTYPES if ONLY is not None and p[0] in ONLY]
if protos or (ARGS.checkout and (ONLY is None or "exec" in ONLY)):
    servers = {}
    for spec in ARGS.checkout:
        name, _, directory = spec.partition("=")
        servers[name] = ExecutorServer(directory)
    labels = {"raw": "raw", **{key: label for key, label, _ in protos}}
    labels.update({name: f"Executor.migrate of {name}" for name in servers})
    variants = [("raw", raw_chunk), *[(k, fn) for k, _, fn in protos], *servers.items()]
    chunks = [schemas[i : i + ARGS.chunk] for i in range(0, n, ARGS.chunk)]
    per_round = []
    for rnd in range(ARGS.rounds):
        undo()
        total = {key: 0.0 for key, _ in variants}
        count = {key: 0 for key, _ in variants}
        for j, chunk in enumerate(chunks):
            key, fn = variants[(j + rnd) % len(variants)]
            total[key] += fn(chunk)
            count[key] += len(chunk)
        per_round.append({key: 1000 * total[key] / count[key] for key in total})
        print(f"executor round {rnd + 1}: {per_round[-1]}", file=sys.stderr, flush=True)
    for server in servers.values():
        server.close()
    print()
    print(
        f"Executor(...).migrate(jobs=1) (prototypes, checkouts), interleaved with raw by chunks of "
        f"{ARGS.chunk} schemas (chunk j by variant (j + round) mod k; each chunk on a new "
        "connection); vs raw: to raw's ms/schema in the same pass"
    )
    print(f"{'variant':<52} {'ms/schema':>9} {'vs raw':>6}  per round ms (vs raw)")
    for key, _ in variants:
        ms = [r[key] for r in per_round]
        rel = [r[key] / r["raw"] for r in per_round]
        detail = ", ".join(f"{m:.3f} ({x:.2f})" for m, x in zip(ms, rel, strict=True))
        label = labels[key]
        print(f"{label:<52} {statistics.median(ms):>9.3f} {statistics.median(rel):>6.2f}  {detail}")
if runs_:
    raws: list[float] = []
    results: dict[str, list[float]] = {key: [] for key, *_ in runs_}
    ratios: dict[str, list[float]] = {key: [] for key, *_ in runs_}
    raw_pass(raws)
    for rnd in range(ARGS.rounds):
        for key, label, fn in runs_:
            undo()
            results[key].append(fn())
            before = raws[-1]
            raw_pass(raws)
            ratios[key].append(results[key][-1] / ((before + raws[-1]) / 2))
            print(
                f"round {rnd + 1} {label}: {results[key][-1]:.2f}s, {ratios[key][-1]:.2f}x",
                file=sys.stderr,
                flush=True,
            )
    undo()
    print()
    print("Whole runs, pass by pass between raw passes (raw, run, raw, run, ..., raw); vs raw:")
    print(
        "to the mean of the raw passes either side. Raw passes: median "
        f"{1000 * statistics.median(raws) / n:.3f} ms/schema, {[round(v, 2) for v in raws]}"
    )
    print(f"{'variant':<52} {'ms/schema':>9} {'vs raw':>6}  passes s (vs raw)")
    for key, label, _ in runs_:
        med = statistics.median(results[key])
        passes = ", ".join(
            f"{v:.2f} ({r:.2f})" for v, r in zip(results[key], ratios[key], strict=True)
        )
        print(
            f"{label:<52} {1000 * med / n:>9.3f} {statistics.median(ratios[key]):>6.2f}  {passes}"
        )
    if PHASES:
        print()
        print("runs.migrate(jobs=1) by phase, s (median over its passes):")
        for name in PHASES[0]:
            values = [p.get(name, 0.0) for p in PHASES]
            print(f"  {name:<24} {statistics.median(values):8.3f}  {[round(v, 3) for v in values]}")
else:
    undo()
