"""Worker connections kept across runs (executor.kept_workers, which a staged rollout's
stages share): the runs reuse the connections, and a kept connection comes back to the
next run as the engine's own: the login role, the default search_path, no advisory lock,
no transaction, no temporary object, whatever the tenant's files did."""

from __future__ import annotations

from pathlib import Path

from tenancy import conf
from tenancy.engine.executor import Executor, kept_workers
from tenancy.engine.source import TENANT, discover
from tests.conftest import query, run_command
from tests.test_engine_runs import add, make_tenants

RECORDS_ITS_BACKEND = (
    "-- UP\nCREATE TABLE backend AS SELECT pg_backend_pid() AS pid;\n"
    "CREATE INDEX backend_pid ON backend (pid);\n-- DOWN\nDROP TABLE backend;\n"
)
# A tenant file's own settings (transaction-scoped), then a file outside a transaction:
# the engine takes a session-level lock and the owner role for the session around it,
# which must both be gone when the connection is kept.
SETS_ITS_OWN = (
    "-- UP\nSET LOCAL search_path = {{schema}};\nSET LOCAL statement_timeout = '1s';\n"
    "CREATE TABLE settings_seen (v text);\n-- DOWN\nDROP TABLE settings_seen;\n"
)
CONCURRENT = "-- UP\nCREATE INDEX CONCURRENTLY settings_seen_v ON settings_seen (v);\n"


def backend_of(schema: str) -> int:
    return query(f'SELECT pid FROM "{schema}".backend')[0][0]


def run_one(schema: str, sql_dir: Path, kept=None) -> None:  # noqa: ANN001
    migrations = discover(sql_dir, TENANT)
    executor = Executor(conf.conninfo(), conf.engine_options(jobs=1), None, kept=kept)
    results = executor.migrate([(schema, migrations, migrations)])
    assert [r.status for r in results] == ["succeeded"], results


def test_runs_sharing_kept_workers_reuse_their_connection(public_ready, sql_dir: Path):
    first, second, third, fourth = make_tenants(4, prefix="kw")
    add(sql_dir, "040_backend.sql", RECORDS_ITS_BACKEND)
    with kept_workers(conf.conninfo(), 1) as kept:
        run_one(first, sql_dir, kept)
        run_one(second, sql_dir, kept)
    assert backend_of(first) == backend_of(second)
    run_one(third, sql_dir)  # without kept workers each run opens its own
    run_one(fourth, sql_dir)
    assert backend_of(third) != backend_of(fourth)


def test_a_kept_connection_returns_as_the_engines_own(public_ready, sql_dir: Path):
    schema, other = make_tenants(2, prefix="kx")
    add(sql_dir, "040_settings.sql", SETS_ITS_OWN)
    add(sql_dir, "041_concurrent.sql", CONCURRENT)  # a session-level lock, RESET ALL
    login = query("SELECT current_user")[0][0]
    with kept_workers(conf.conninfo(), 1) as kept:
        run_one(schema, sql_dir, kept)
        with kept.connection() as conn:
            state = conn.execute(
                "SELECT current_user, session_user, current_setting('search_path'), "
                "current_setting('statement_timeout'), current_setting('lock_timeout'), "
                "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                " AND pid = pg_backend_pid()), "
                "(SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                " WHERE n.oid = pg_my_temp_schema())"
            ).fetchone()
            assert conn.info.transaction_status == 0  # idle, no transaction left open
        assert state == (login, login, '"$user", public', "0", "0", 0, 0)
        run_one(other, sql_dir, kept)  # and the next run on it works
    assert query(
        "SELECT count(*) FROM pg_indexes WHERE indexname = 'settings_seen_v' "
        "AND schemaname = ANY(%s)",
        [[schema, other]],
    ) == [(2,)]


def test_a_rollouts_stages_share_their_workers(public_ready, sql_dir: Path):
    schemas = make_tenants(4, prefix="ks")
    add(sql_dir, "040_backend.sql", RECORDS_ITS_BACKEND)
    code, out, err = run_command(
        "migrate_tenants", "--canary", "1", "--wave-size", "1", "--jobs", "1"
    )
    assert code == 0, (out, err)
    assert len({backend_of(s) for s in schemas}) == 1  # four stages, one connection
