"""Scale-out on Citus: a local coordinator and two workers (tests/citus.py), with the
project's commands run against the coordinator as an operator would run them.

The tests of this module share one cluster and one fleet of 20 tenants, in order: they are
one scenario (create, migrate, fail, race, move, isolate, drop). Citus is not packaged for
Debian; without it (``scripts/build-citus.sh``) they skip with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import errors, sql

from tenancy.engine import db
from tenancy.engine.names import owner_role_for_schema, role_for_schema
from tests import citus
from tests.conftest import ROOT, TEST_MIGRATIONS

REASON = citus.missing()
pytestmark = [
    pytest.mark.citus,
    pytest.mark.once,
    *([pytest.mark.skip(reason=REASON)] if REASON else []),
]

TENANTS = [f"org_citus{n:02d}" for n in range(1, 21)]


@dataclass
class Fleet:
    cluster: citus.Cluster
    migrations: Path

    def manage(self, *args: str, migrations: Path | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "EMPLOYER_PORTAL_DB_URL": self.cluster.url}
        env.pop("DATABASE_URL", None)
        env["TENANCY_MIGRATIONS_DIR"] = str(migrations or self.migrations)
        return subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def query(self, text: str, params: list | None = None, node: citus.Node | None = None):
        with self.cluster.connect(node) as conn:
            if node is not None:  # a worker hides its shards from catalog queries otherwise
                conn.execute("SET citus.override_table_visibility TO off")
            return conn.execute(text, params).fetchall()

    def nodes(self) -> dict[str, str]:
        """Tenant schema → worker (host:port), read from Citus' own view."""
        rows = self.query(
            "SELECT DISTINCT c.schema_name::text, s.nodename || ':' || s.nodeport "
            "FROM citus_schemas c JOIN citus_shards s USING (colocation_id)"
        )
        placed: dict[str, str] = {}
        for schema, node in rows:
            assert schema not in placed, f"{schema}'s tables are on more than one node"
            placed[schema] = node
        return placed

    def add_file(self, name: str, text: str) -> None:
        (self.migrations / "tenant" / name).write_text(text)


def schema_of(org_id: str) -> str:
    return f"tenant_{org_id}"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    migrations = tmp_path_factory.mktemp("citus") / "migrations_sql"
    shutil.copytree(TEST_MIGRATIONS, migrations)
    with citus.cluster(workers=2) as cluster:
        fleet = Fleet(cluster, migrations)
        public = fleet.manage("migrate_tenants", "--public")
        assert public.returncode == 0, public.stderr
        # One process creates them all: 20 `manage.py tenant_create` would mostly be startup.
        script = (
            "from tenancy.services.tenants import create_tenant\n"
            f"for org in {TENANTS!r}: create_tenant(org, org.title(), actor='test')\n"
        )
        created = fleet.manage("shell", "-c", script)
        assert created.returncode == 0, created.stderr
        yield fleet


def test_tenants_land_on_both_workers_with_all_their_tables(fleet):
    placed = fleet.nodes()
    assert set(placed) == {schema_of(org) for org in TENANTS}
    workers = {node.address for node in fleet.cluster.workers}
    assert set(placed.values()) == workers
    # the project's own reports say the same
    listed = json.loads(fleet.manage("tenant_list", "--format", "json").stdout)
    assert {t["schema_name"]: t["node"] for t in listed} == placed
    status = fleet.manage("tenant_status")
    assert status.returncode == 0, status.stderr
    assert "NODE" in status.stdout and fleet.cluster.workers[0].address in status.stdout
    # every tenant table is distributed with its schema (none left on the coordinator)
    local = fleet.query(
        "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname LIKE 'tenant\\_org\\_citus%%' "
        "AND c.relkind = 'r' AND c.oid NOT IN (SELECT logicalrelid FROM pg_dist_partition)"
    )
    assert local == []


def test_a_new_file_reaches_every_tenant_on_its_node_with_two_jobs(fleet):
    before = fleet.nodes()
    fleet.add_file(
        "004_posting_note.sql",
        "-- UP\nALTER TABLE job_postings ADD COLUMN note text;\n"
        "CREATE INDEX CONCURRENTLY job_postings_note_idx ON job_postings (note);\n"
        "-- DOWN\nDROP INDEX CONCURRENTLY job_postings_note_idx;\n"
        "ALTER TABLE job_postings DROP COLUMN note;\n",
    )
    done = fleet.manage("migrate_tenants", "--jobs", "2", "--format", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    ledger = fleet.query(
        "SELECT tenant_schema FROM public.tenant_migrations WHERE migration_version = '004'"
    )
    assert sorted(r[0] for r in ledger) == sorted(before)
    assert fleet.nodes() == before  # nothing moved
    # On each worker, the shard of every tenant placed there has the column and the index.
    for worker in fleet.cluster.workers:
        mine = [s for s, node in before.items() if node == worker.address]
        rows = fleet.query(
            "SELECT n.nspname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE a.attname = 'note' AND c.relname LIKE 'job\\_postings\\_%%' "
            "AND c.relkind = 'r' AND n.nspname = ANY(%s)",
            [mine],
            node=worker,
        )
        assert sorted(r[0] for r in rows) == sorted(mine)
        indexes = fleet.query(
            "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'job\\_postings\\_note\\_idx%%' "
            "AND tablename LIKE 'job\\_postings\\_%%' AND schemaname = ANY(%s)",  # shards only
            [mine],
            node=worker,
        )
        assert indexes[0][0] == len(mine)


def test_a_failing_file_leaves_that_tenant_as_it_was_on_its_node(fleet):
    victim = schema_of(TENANTS[2])
    node_before = fleet.nodes()[victim]
    fleet.query(
        sql.SQL(
            "WITH o AS (INSERT INTO {}.organizations (auth0_org_id, name) VALUES ('x', 'x') "
            "RETURNING id) INSERT INTO {}.job_postings (organization_id, title) "
            "SELECT id, 'kept' FROM o RETURNING 1"
        ).format(sql.Identifier(victim), sql.Identifier(victim))
    )
    # A NOT NULL column without a default fails only where a row exists.
    fleet.add_file(
        "005_required_code.sql",
        "-- UP\nALTER TABLE job_postings ADD COLUMN code int NOT NULL;\n"
        "-- DOWN\nALTER TABLE job_postings DROP COLUMN code;\n",
    )
    done = fleet.manage("migrate_tenants", "--jobs", "2", "--format", "json")
    assert done.returncode == 1
    results = {r["schema"]: r["status"] for r in json.loads(done.stdout)["results"]}
    assert results[victim] == "failed"
    assert sum(status == "succeeded" for status in results.values()) == len(TENANTS) - 1
    ledger = fleet.query(
        "SELECT migration_version FROM public.tenant_migrations WHERE tenant_schema = %s "
        "ORDER BY 1",
        [victim],
    )
    assert [r[0] for r in ledger] == ["001", "002", "003", "004"]
    columns = fleet.query(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = 'job_postings' AND column_name = 'code'",
        [victim],
    )
    assert columns == []
    kept = fleet.query(sql.SQL("SELECT title FROM {}.job_postings").format(sql.Identifier(victim)))
    assert kept == [("kept",)]
    assert fleet.nodes()[victim] == node_before
    # Rolled back where it applied (its DOWN, on each node), then the file goes.
    rolled = fleet.manage("migrate_tenants", "--rollback", "005", "--jobs", "2")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    (fleet.migrations / "tenant" / "005_required_code.sql").unlink()
    assert fleet.query(
        "SELECT count(*) FROM information_schema.columns WHERE column_name = 'code'"
    ) == [(0,)]


def test_two_concurrent_runs_apply_each_file_once(fleet):
    fleet.add_file(
        "006_candidate_source.sql",
        "-- UP\nALTER TABLE candidates ADD COLUMN referral_note text;\n"
        "-- DOWN\nALTER TABLE candidates DROP COLUMN referral_note;\n",
    )
    env = {**os.environ, "EMPLOYER_PORTAL_DB_URL": fleet.cluster.url}
    env.pop("DATABASE_URL", None)
    env["TENANCY_MIGRATIONS_DIR"] = str(fleet.migrations)
    command = [sys.executable, str(ROOT / "manage.py"), "migrate_tenants", "--jobs", "2"]
    command += ["--format", "json"]
    runs = [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [json.loads(run.communicate(timeout=300)[0]) for run in runs]
    applied = [
        r["schema"] for out in outputs for r in out["results"] if "006" in r.get("versions", [])
    ]
    failures = [(r["schema"], r["error"]) for out in outputs for r in out["results"] if r["error"]]
    assert failures == []
    assert sorted(applied) == sorted(schema_of(org) for org in TENANTS)  # each exactly once
    rows = fleet.query(
        "SELECT count(*) FROM public.tenant_migrations WHERE migration_version = '006'"
    )
    assert rows[0][0] == len(TENANTS)


def test_a_shared_table_that_tenants_reference_is_copied_to_every_node(fleet):
    (fleet.migrations / "public" / "003_job_categories.sql").write_text(
        "-- UP\nCREATE TABLE public.job_categories (id int PRIMARY KEY, name text NOT NULL);\n"
        "INSERT INTO public.job_categories VALUES (1, 'Engineering');\n"
        "GRANT SELECT, REFERENCES ON public.job_categories TO {{owner_group}};\n"
        "-- DOWN\nDROP TABLE public.job_categories;\n"
    )
    fleet.add_file(
        "007_posting_category.sql",
        "-- UP\nALTER TABLE job_postings ADD COLUMN category_id int "
        "REFERENCES public.job_categories (id);\n"
        "-- DOWN\nALTER TABLE job_postings DROP COLUMN category_id;\n",
    )
    done = fleet.manage("migrate_tenants", "--jobs", "2", "--format", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert any("reference table" in note for note in json.loads(done.stdout)["notes"])
    kind = fleet.query(
        "SELECT partmethod FROM pg_dist_partition "
        "WHERE logicalrelid = 'public.job_categories'::regclass"
    )
    assert kind == [("n",)]  # a reference table: a copy on every node
    schema = schema_of(TENANTS[5])
    with fleet.cluster.connect() as conn, conn.transaction():
        _in_tenant_context(conn, schema)
        conn.execute(
            "WITH o AS (INSERT INTO organizations (auth0_org_id, name) VALUES ('c', 'c') "
            "RETURNING id) INSERT INTO job_postings (organization_id, title, category_id) "
            "SELECT id, 'Categorised', 1 FROM o"
        )
        with pytest.raises(errors.ForeignKeyViolation), conn.transaction():
            conn.execute("UPDATE job_postings SET category_id = 99")


def _worker_backends(fleet: Fleet) -> int:
    """Client connections to the fleet's database on the busiest worker."""
    return max(
        fleet.query(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
            [fleet.cluster.database],
            node=worker,
        )[0][0]
        for worker in fleet.cluster.workers
    )


def test_a_run_does_not_keep_a_worker_connection_per_tenant(fleet):
    # The run works as one tenant owner after another; Citus would cache a worker
    # connection for each (1,000 tenants: more than a worker's max_connections).
    fleet.add_file(
        "008_slow_note.sql",
        "-- UP\nALTER TABLE interviews ADD COLUMN slow_note text;\nSELECT pg_sleep(0.1);\n"
        "-- DOWN\nALTER TABLE interviews DROP COLUMN slow_note;\n",
    )
    env = {**os.environ, "EMPLOYER_PORTAL_DB_URL": fleet.cluster.url}
    env.pop("DATABASE_URL", None)
    env["TENANCY_MIGRATIONS_DIR"] = str(fleet.migrations)
    run = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "migrate_tenants", "--tenants"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    most = 0
    while run.poll() is None:
        most = max(most, _worker_backends(fleet))
        time.sleep(0.05)
    out, err = run.communicate()
    assert run.returncode == 0, out + err
    assert fleet.query(
        "SELECT count(*) FROM public.tenant_migrations WHERE migration_version = '008'"
    ) == [(len(TENANTS),)]
    assert most <= 4, f"{most} connections on a worker during the run"


def _in_tenant_context(conn: psycopg.Connection, schema: str) -> None:
    """What the portal does per request: the tenant's role, search_path and setting, for
    this transaction only."""
    conn.execute(
        sql.SQL("SET LOCAL ROLE {}; SET LOCAL search_path = {}, public").format(
            sql.Identifier(role_for_schema(schema, conn.info.dbname)), sql.Identifier(schema)
        )
    )
    conn.execute("SELECT set_config('app.current_tenant', %s, true)", [schema])


def test_a_moved_tenant_keeps_its_rows_its_role_and_its_routing(fleet):
    placed = fleet.nodes()
    schema = schema_of(TENANTS[0])
    org = TENANTS[0]
    fleet.query(
        sql.SQL(
            "WITH o AS (INSERT INTO {}.organizations (auth0_org_id, name) VALUES ('m', 'm') "
            "RETURNING id) INSERT INTO {}.job_postings (organization_id, title, status) "
            "SELECT id, 'Moved engineer', 'open' FROM o RETURNING 1"
        ).format(sql.Identifier(schema), sql.Identifier(schema))
    )
    target = next(w.address for w in fleet.cluster.workers if w.address != placed[schema])
    moved = fleet.manage("tenant_move", org, "--node", target, "--format", "json")
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["target"] == target
    assert fleet.nodes()[schema] == target
    audit = fleet.query(
        "SELECT details->>'to' FROM public.audit_logs WHERE action = 'tenant.move' "
        "AND tenant_schema = %s",
        [schema],
    )
    assert audit == [(target,)]
    with fleet.cluster.connect() as conn, conn.transaction():
        _in_tenant_context(conn, schema)
        titles = conn.execute("SELECT title FROM job_postings").fetchall()
    assert titles == [("Moved engineer",)]
    page = fleet.manage(
        "shell",
        "-c",
        "from django.test import Client\n"
        f"r = Client().get('/', HTTP_HOST='{org.replace('_', '-')}.localhost')\n"
        "print(f'status={r.status_code}'); print(r.content.decode())",
    )
    assert "status=200" in page.stdout, page.stdout + page.stderr
    assert "Moved engineer" in page.stdout


def test_moves_refused_clearly(fleet):
    unknown = fleet.manage("tenant_move", TENANTS[1], "--node", "127.0.0.1:1")
    assert unknown.returncode == 1
    assert "is not an active worker node" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    missing = fleet.manage("tenant_move", "org_nobody", "--node", fleet.cluster.workers[0].address)
    assert missing.returncode == 1 and "No tenant org_nobody" in missing.stderr


def test_roles_and_row_level_security_hold_across_nodes(fleet):
    placed = fleet.nodes()
    by_node: dict[str, str] = {}
    for schema, node in sorted(placed.items()):
        by_node.setdefault(node, schema)
    a, b = list(by_node.values())[:2]
    assert placed[a] != placed[b]
    with fleet.cluster.connect() as conn:
        with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
            _in_tenant_context(conn, a)
            conn.execute(sql.SQL("SELECT * FROM {}.job_postings").format(sql.Identifier(b)))
        with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
            # a tenant's migrations run as its owner role, which cannot reach the other either
            conn.execute(
                sql.SQL("SET LOCAL ROLE {}").format(
                    sql.Identifier(owner_role_for_schema(a, conn.info.dbname))
                )
            )
            conn.execute(sql.SQL("DROP TABLE {}.candidates").format(sql.Identifier(b)))
        with conn.transaction():
            _in_tenant_context(conn, a)
            seen = conn.execute("SELECT DISTINCT tenant_schema FROM public.audit_logs").fetchall()
    assert seen == [(a,)]
    assert fleet.query(sql.SQL("SELECT count(*) FROM {}.candidates").format(sql.Identifier(b)))


def test_a_failed_creation_leaves_no_role_on_any_node(fleet, tmp_path):
    broken = tmp_path / "migrations_sql"
    shutil.copytree(fleet.migrations, broken)
    (broken / "tenant" / "900_broken.sql").write_text("-- UP\nSELECT 1/0;\n")
    created = fleet.manage("tenant_create", "org_citusbroken", migrations=broken)
    assert created.returncode == 1 and "division by zero" in created.stderr
    schema = "tenant_org_citusbroken"
    roles = [role_for_schema(schema, fleet.cluster.database)]
    roles.append(owner_role_for_schema(schema, fleet.cluster.database))
    for node in fleet.cluster.nodes:
        assert (
            fleet.query("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [roles], node=node)
            == []
        )
        assert (
            fleet.query("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema], node=node) == []
        )
    assert (
        fleet.query("SELECT 1 FROM public.tenant_registry WHERE schema_name = %s", [schema]) == []
    )


def test_the_rebalancer_evens_out_the_workers(fleet):
    first, second = (w.address for w in fleet.cluster.workers)
    for schema, node in fleet.nodes().items():  # everyone onto the first worker
        if node != first:
            moved = fleet.manage("tenant_move", schema, "--node", first, "--mode", "block_writes")
            assert moved.returncode == 0, moved.stderr
    assert set(fleet.nodes().values()) == {first}
    started = fleet.manage("tenant_rebalance", "--mode", "block_writes")
    assert started.returncode == 0, started.stderr
    assert "started" in started.stdout
    fleet.query("SELECT citus_rebalance_wait()")
    status = fleet.manage("tenant_rebalance", "--status", "--format", "json")
    assert json.loads(status.stdout)[0]["state"] == "finished"
    counts = Counter(fleet.nodes().values())
    # Citus stops within its threshold (10% of the average) of an even split
    assert set(counts) == {first, second} and abs(counts[first] - counts[second]) <= 2
    assert fleet.manage("tenant_rebalance", "--stop").stdout.strip() == "No rebalance is running."
    assert fleet.query("SELECT count(*) FROM public.audit_logs WHERE action = 'tenant.rebalance'")


def _status_code(fleet: Fleet, org: str) -> str:
    page = fleet.manage(
        "shell",
        "-c",
        "from django.test import Client\n"
        f"print('status=' + str(Client().get('/', HTTP_HOST='{org.replace('_', '-')}.localhost')"
        ".status_code))",
    )
    return page.stdout.strip().splitlines()[-1]


def test_suspend_and_recreate_on_citus(fleet):
    org = TENANTS[10]
    schema = schema_of(org)
    assert fleet.manage("tenant_suspend", org).returncode == 0
    assert _status_code(fleet, org) == "status=403"
    assert fleet.manage("tenant_reactivate", org).returncode == 0
    recreated = fleet.manage("tenant_recreate", org, "--noinput")
    assert recreated.returncode == 0, recreated.stderr
    assert schema in fleet.nodes()  # distributed again, on a worker
    versions = fleet.query(
        "SELECT count(*) FROM public.tenant_migrations WHERE tenant_schema = %s", [schema]
    )
    files = len(list((fleet.migrations / "tenant").glob("*.sql")))
    assert versions == [(files,)]
    assert _status_code(fleet, org) == "status=200"
    verified = fleet.manage("tenant_verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_backup_drop_and_restore_on_citus(fleet, tmp_path):
    org = TENANTS[0]
    schema = schema_of(org)
    backup = fleet.manage("tenant_backup", "--tenant", org, "--output", str(tmp_path))
    assert backup.returncode == 0, backup.stderr
    (backup_set,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    replace = fleet.manage("tenant_restore", str(backup_set), "--replace", "--noinput")
    assert replace.returncode == 1 and "tenant_drop" in replace.stderr  # refused on Citus
    assert fleet.manage("tenant_drop", org, "--noinput").returncode == 0
    restored = fleet.manage("tenant_restore", str(backup_set))
    assert restored.returncode == 0, restored.stderr
    assert schema in fleet.nodes()  # distributed again
    rows = fleet.query(sql.SQL("SELECT title FROM {}.job_postings").format(sql.Identifier(schema)))
    assert rows == [("Moved engineer",)]  # the rows came from the workers into the dump
    assert _status_code(fleet, org) == "status=200"
    verified = fleet.manage("tenant_verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_the_warm_pool_stays_off_on_citus(fleet, monkeypatch):
    # A claim renames the pool schema's roles, and the workers would keep the old names.
    monkeypatch.setenv("TENANCY_POOL_SIZE", "2")
    filled = fleet.manage("tenant_pool", "--fill")
    assert "pool off on Citus" in filled.stdout + filled.stderr
    assert fleet.query("SELECT count(*) FROM public.tenant_pool") == [(0,)]
    created = fleet.manage("tenant_create", "org_citusdirect", "--format", "json")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["path"] == "direct"
    assert _status_code(fleet, "org_citusdirect") == "status=200"


def test_converting_a_plain_database_to_citus(fleet):
    """Tenants made on a plain server, then Citus installed and workers added:
    tenant_distribute makes their schemas distributed, the rebalancer spreads them, and
    they migrate and serve as before (their roles, made NOLOGIN, may log in now)."""
    database = "converted"
    citus.create_database(fleet.cluster, database)
    url = fleet.cluster.coordinator.url(database)
    old = ["org_old1", "org_old2", "org_old3", "org_old4"]

    def manage(*args: str) -> subprocess.CompletedProcess:
        env = {
            **os.environ,
            "EMPLOYER_PORTAL_DB_URL": url,
            "TENANCY_MIGRATIONS_DIR": str(fleet.migrations),
        }
        env.pop("DATABASE_URL", None)
        return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=300)  # fmt: skip

    for org in old:
        made = manage("tenant_create", org)  # the first one sets up public too
        assert made.returncode == 0, made.stderr
    citus.make_citus(fleet.cluster, database)
    listed = manage("tenant_distribute", "--dry-run")
    assert listed.returncode == 0 and "4 tenant schema(s) to distribute" in listed.stdout
    done = manage("tenant_distribute")
    assert done.returncode == 0, done.stderr
    rebalanced = manage("tenant_rebalance", "--mode", "block_writes")
    assert rebalanced.returncode == 0, rebalanced.stderr
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT citus_rebalance_wait()")
        nodes = dict(conn.execute(
            "SELECT DISTINCT c.schema_name::text, s.nodeport FROM citus_schemas c "
            "JOIN citus_shards s USING (colocation_id)").fetchall())  # fmt: skip
    assert len(nodes) == 4 and len(set(nodes.values())) == 2  # on both workers
    fleet.add_file(
        "009_after_conversion.sql",
        "-- UP\nALTER TABLE users ADD COLUMN converted boolean;\n"
        "-- DOWN\nALTER TABLE users DROP COLUMN converted;\n",
    )
    run = manage("migrate_tenants", "--jobs", "2")
    assert run.returncode == 0, run.stdout + run.stderr
    page = manage(
        "shell", "-c", "from django.test import Client\n"
        "print('status=' + str(Client().get('/', HTTP_HOST='org-old3.localhost').status_code))",
    )  # fmt: skip
    assert "status=200" in page.stdout, page.stdout + page.stderr


def test_a_run_during_a_move_waits_for_the_tenant(fleet):
    # citus_schema_move runs transactions of its own; the move holds the schema's advisory
    # lock (a run's) through all of them, so a run that comes meanwhile waits for the
    # tenant instead of failing on Citus' lock ("could not acquire the lock required to
    # colocate distributed table ...").
    org = TENANTS[2]
    schema = schema_of(org)
    with fleet.cluster.connect() as conn:  # enough rows for the copy to take a while
        conn.execute(
            sql.SQL(
                "INSERT INTO {}.organizations (auth0_org_id, name) "
                "SELECT 'bulk' || g, 'Bulk' FROM generate_series(1, 200000) g"
            ).format(sql.Identifier(schema))
        )
    target = next(w.address for w in fleet.cluster.workers if w.address != fleet.nodes()[schema])
    env = {**os.environ, "EMPLOYER_PORTAL_DB_URL": fleet.cluster.url}
    env.pop("DATABASE_URL", None)
    env["TENANCY_MIGRATIONS_DIR"] = str(fleet.migrations)
    move = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "tenant_move", org, "--node", target],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    held = []
    deadline = time.monotonic() + 30
    while move.poll() is None and time.monotonic() < deadline and not held:
        held = fleet.query(
            "SELECT 1 FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid "
            "WHERE a.query LIKE 'SELECT citus_schema_move%%' AND l.locktype = 'advisory' "
            "AND l.granted AND l.classid = %s AND l.objid = hashtext(%s)::oid",
            [db.LOCK_NAMESPACE, schema],
        )
    fleet.add_file(
        "010_during_move.sql",
        "-- UP\nALTER TABLE departments ADD COLUMN moved_note text;\n"
        "-- DOWN\nALTER TABLE departments DROP COLUMN moved_note;\n",
    )
    run = fleet.manage("migrate_tenants", "--tenant", org)
    out, err = move.communicate(timeout=300)
    assert held, "the move did not hold the schema's lock"
    assert move.returncode == 0, err
    assert run.returncode == 0, run.stdout + run.stderr
    assert fleet.nodes()[schema] == target
    assert fleet.query(
        "SELECT count(*) FROM public.tenant_migrations "
        "WHERE tenant_schema = %s AND migration_version = '010'",
        [schema],
    ) == [(1,)]


def test_a_file_citus_refuses_is_refused_before_any_tenant(fleet):
    path = fleet.migrations / "tenant" / "099_stamp_trigger.sql"
    path.write_text(
        "-- UP\nCREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RETURN NEW; END $$;\n"
        "CREATE TRIGGER stamped BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION stamp();\n"
        "-- DOWN\nDROP TRIGGER stamped ON users;\nDROP FUNCTION stamp();\n"
    )
    try:
        before = fleet.query("SELECT count(*) FROM public.tenant_migrations")
        run = fleet.manage("migrate_tenants", "--jobs", "2")
        assert run.returncode == 1
        assert "citus-trigger" in run.stderr and "Refused" in run.stderr, run.stderr
        assert fleet.query("SELECT count(*) FROM public.tenant_migrations") == before
        assert fleet.query("SELECT count(*) FROM pg_proc WHERE proname = 'stamp'") == [(0,)]
    finally:
        path.unlink()


def test_a_dropped_tenant_leaves_nothing_on_any_node(fleet):
    org = TENANTS[-1]
    schema = schema_of(org)
    dropped = fleet.manage("tenant_drop", org, "--noinput", "--reason", "test")
    assert dropped.returncode == 0, dropped.stderr
    roles = [role_for_schema(schema, fleet.cluster.database)]
    roles.append(owner_role_for_schema(schema, fleet.cluster.database))
    for node in fleet.cluster.nodes:
        assert (
            fleet.query("SELECT nspname FROM pg_namespace WHERE nspname = %s", [schema], node=node)
            == []
        )
        assert (
            fleet.query("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [roles], node=node)
            == []
        )


def test_tenancy_check_names_the_cluster_and_a_worker_that_is_down(fleet):
    """Last: it stops a worker (the module's cluster ends after it)."""
    healthy = fleet.manage("tenancy_check", "--format", "json")
    checks = {c["name"]: c for c in json.loads(healthy.stdout)["checks"]}
    assert checks["citus"]["status"] == "ok", healthy.stdout
    assert sorted(checks["citus"]["workers"]) == sorted(w.address for w in fleet.cluster.workers)
    citus._stop_node(fleet.cluster.workers[1])
    down = fleet.manage("tenancy_check")
    assert down.returncode == 1
    assert f"not answering: {fleet.cluster.workers[1].address}" in down.stdout + down.stderr
