"""Nothing a tenant defines runs with the engine's authority.

Each test is an attacker's tenant file run *below* the refusal rules (the executor, and
tenant creation and the warm pool with the rules switched off), so what it proves is the
database layer: the engine's own statements after a tenant file run with no tenant schema
in their search_path, with no temporary object of the tenant's left on the connection, and
whatever the file deferred fires as the tenant's owner role, up to and including COMMIT.

Every hostile function logs who ran it (``current_user``, ``session_user``) in a table of
the tenant's own, and tries to deface ``public.tenant_registry`` and copy ``auth_user``;
afterwards the registry, the users and every other tenant are as they were, and no call
ran as anyone but the tenant's owner."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from tenancy import conf
from tenancy.engine.executor import Executor
from tenancy.engine.names import app_role, owner_group_role, owner_role_for_schema
from tenancy.engine.source import TENANT, discover
from tenancy.services import pool, tenants
from tenancy.services.tenants import create_tenant, list_tenants
from tests import conftest
from tests.conftest import add_posting, connect, ledger_versions, query

ATTACKER, BYSTANDER = "tenant_org_mallory", "tenant_org_bystander"

# A function that defaces the registry and copies the users, logging who ran it.
EVIL_FN = """
CREATE TABLE who_ran (usr text, sess text);
CREATE TABLE loot (u text, p text);
CREATE FUNCTION evil_body() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO {{schema}}.who_ran VALUES (current_user, session_user);
  BEGIN
    UPDATE public.tenant_registry SET organization_name = 'PWNED by ' || current_user;
  EXCEPTION WHEN insufficient_privilege THEN NULL;
  END;
  BEGIN
    INSERT INTO {{schema}}.loot SELECT username, password FROM public.auth_user;
  EXCEPTION WHEN insufficient_privilege THEN NULL;
  END;
END $$;
"""

DEFERRED_TRIGGER = """
CREATE TABLE evil (id int);
CREATE FUNCTION evil_trg_fn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM {{schema}}.evil_body(); RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER evil_trg AFTER INSERT ON evil DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION evil_trg_fn();
INSERT INTO evil VALUES (1);
"""

# Fired by SET CONSTRAINTS ALL IMMEDIATE, the trigger defers again and queues one more
# event: that one fires at COMMIT itself.
REDEFERRING_TRIGGER = """
CREATE TABLE evil (id int);
CREATE FUNCTION evil_trg_fn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM {{schema}}.evil_body();
  IF NEW.id < 3 THEN
    SET CONSTRAINTS ALL DEFERRED;
    INSERT INTO {{schema}}.evil VALUES (NEW.id + 1);
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER evil_trg AFTER INSERT ON evil DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION evil_trg_fn();
INSERT INTO evil VALUES (1);
"""

# Operators and functions that match the engine's argument types better than pg_catalog's
# (varchar = varchar beats the built-in text = text for a varchar column).
SHADOWING = """
CREATE FUNCTION evil_eq(a varchar, b varchar) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM {{schema}}.evil_body(); RETURN a::text = b::text; END $$;
CREATE FUNCTION evil_eq(a varchar, b text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM {{schema}}.evil_body(); RETURN a::text = b; END $$;
CREATE OPERATOR = (LEFTARG = varchar, RIGHTARG = varchar, FUNCTION = evil_eq);
CREATE OPERATOR = (LEFTARG = varchar, RIGHTARG = text, FUNCTION = evil_eq);
CREATE FUNCTION btrim(varchar) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM {{schema}}.evil_body(); RETURN pg_catalog.btrim($1::text); END $$;
CREATE FUNCTION quote_ident(varchar) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM {{schema}}.evil_body(); RETURN pg_catalog.quote_ident($1::text); END $$;
CREATE FUNCTION set_config(varchar, varchar, boolean) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM {{schema}}.evil_body(); RETURN pg_catalog.set_config($1, $2, $3); END $$;
"""

# Tables named like the ones the engine writes, in the tenant's schema, with a trigger and
# a rule that would run if the engine's writes landed there.
SHADOW_TABLES = """
CREATE TABLE tenant_migrations (tenant_schema text, migration_version text,
  migration_name text, checksum text, rollback_sql text, execution_time_ms int,
  applied_by text, run_id bigint, applied_at timestamptz);
CREATE TABLE audit_logs (tenant_schema text, action text, actor text, details jsonb);
CREATE TABLE tenant_registry (schema_name text, organization_name text, auth0_org_id text);
CREATE FUNCTION evil_trg_fn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM {{schema}}.evil_body(); RETURN NEW; END $$;
CREATE TRIGGER evil_trg BEFORE INSERT OR UPDATE OR DELETE ON tenant_migrations
  FOR EACH ROW EXECUTE FUNCTION evil_trg_fn();
CREATE TRIGGER evil_trg BEFORE INSERT ON audit_logs
  FOR EACH ROW EXECUTE FUNCTION evil_trg_fn();
CREATE RULE evil_rule AS ON INSERT TO tenant_registry
  DO ALSO SELECT {{schema}}.evil_body();
"""

# A temporary view over the catalog, left on the engine's connection.
TEMPORARY_VIEW = """
CREATE FUNCTION evil_value() RETURNS oid LANGUAGE plpgsql AS $$
BEGIN PERFORM {{schema}}.evil_body(); RETURN 0; END $$;
CREATE TEMP VIEW pg_namespace AS SELECT {{schema}}.evil_value() AS oid, 'x'::name AS nspname;
CREATE TEMP TABLE keep (id int) ON COMMIT PRESERVE ROWS;
"""

# The attacks whose code runs whatever the engine does (at COMMIT): the tests check that it
# ran, as the owner. The others run only if the engine resolves or writes the tenant's
# objects, which it must never do.
FIRES = ("deferred_trigger", "redeferring_trigger")

ATTACKS = {
    "deferred_trigger": DEFERRED_TRIGGER,
    "redeferring_trigger": REDEFERRING_TRIGGER,
    "shadowing_operators_and_functions": SHADOWING,
    "shadow_tables_with_trigger_and_rule": SHADOW_TABLES,
}


def write(sql_dir: Path, name: str, up: str) -> None:
    (sql_dir / "tenant" / name).write_text(f"-- UP\n{up}\n-- DOWN\nSELECT 1;\n")


def snapshot() -> dict[str, Any]:
    """What the attacker wants: the registry, the users, the bystander's data."""
    return {
        "registry": query(
            "SELECT id, organization_name, schema_name, status FROM tenant_registry ORDER BY id"
        ),
        "users": query("SELECT id, username, password FROM auth_user ORDER BY id"),
        "bystander": query(
            f"SELECT id, title FROM {BYSTANDER}.job_postings ORDER BY id"  # noqa: S608
        ),
    }


def callers(schema: str = ATTACKER) -> set[tuple[str, str]]:
    """Who ran the attacker's code: (current_user, session_user) pairs."""
    if not query("SELECT to_regclass(%s)", [f"{schema}.who_ran"])[0][0]:
        return set()
    return set(query(f"SELECT usr, sess FROM {schema}.who_ran"))  # noqa: S608


def assert_nothing_escaped(
    before: dict[str, Any], schema: str = ATTACKER, session: str | None = None
) -> None:
    """Nothing the attacker wanted changed, and its code ran as the owner only (with a
    superuser login the owner is the session user too; else ``session``, the login)."""
    assert snapshot() == before
    owner = owner_role_for_schema(schema, connect().info.dbname)
    assert callers(schema) <= {(owner, session or owner)}
    if query("SELECT to_regclass(%s)", [f"{schema}.loot"])[0][0]:
        assert query(f"SELECT count(*) FROM {schema}.loot") == [(0,)]  # noqa: S608


def run_engine(sql_dir: Path, schemas: list[str]) -> list:
    """The executor alone, below the refusal rules."""
    migrations = discover(sql_dir, TENANT)
    executor = Executor(conf.conninfo(), conf.engine_options(), None)
    return executor.migrate((s, migrations, migrations) for s in schemas)


@pytest.fixture
def below_the_rules(monkeypatch: Any) -> None:
    """Creation and the pool take every file, as if the rules did not exist."""
    monkeypatch.setattr(tenants.rules, "refusals", lambda migration: [])


@pytest.fixture
def fleet(public_ready: None, sql_dir: Path) -> Path:
    User.objects.create_user("ceo", password="hunter2-secret")
    for org in ("org_mallory", "org_bystander"):
        create_tenant(org)
    add_posting(BYSTANDER, "CFO, confidential")
    return sql_dir


def attack_file(sql_dir: Path, attack: str, *, qualified: bool = True) -> None:
    """The attack's files; ``qualified=False`` names no schema (a pool schema's files must
    not hold their own name, which a claim's rename could not change), so the hostile code
    finds its tables by the search_path it is called with."""
    for name, text in (("050_evil_fn.sql", EVIL_FN), ("051_attack.sql", ATTACKS[attack])):
        write(sql_dir, name, text if qualified else text.replace("{{schema}}.", ""))


@pytest.mark.parametrize("attack", ATTACKS, ids=list(ATTACKS))
def test_a_run_gives_a_tenant_file_no_engine_authority(fleet: Path, attack: str) -> None:
    attack_file(fleet, attack)
    before = snapshot()
    assert [r.status for r in run_engine(fleet, [ATTACKER])] == ["succeeded"]
    # A later file and a later run: the engine reads and writes the ledger again, with the
    # tenant's operators, functions and tables in place.
    write(fleet, "052_later.sql", "CREATE TABLE later (id int);")
    results = run_engine(fleet, [ATTACKER, BYSTANDER])
    assert [r.status for r in results] == ["succeeded", "succeeded"], results
    assert_nothing_escaped(before)
    if attack in FIRES:  # the attack did run, as the owner
        assert callers()
    assert query("SELECT to_regclass(%s) IS NOT NULL", [f"{BYSTANDER}.later"]) == [(True,)]


@pytest.mark.parametrize("attack", ATTACKS, ids=list(ATTACKS))
def test_a_rollback_gives_a_tenant_file_no_engine_authority(fleet: Path, attack: str) -> None:
    attack_file(fleet, attack)
    assert [r.status for r in run_engine(fleet, [ATTACKER])] == ["succeeded"]
    before = snapshot()
    executor = Executor(conf.conninfo(), conf.engine_options(), None)
    results = executor.rollback([(ATTACKER, 51)])
    assert [r.status for r in results] == ["succeeded"]
    assert_nothing_escaped(before)


@pytest.mark.parametrize("attack", ATTACKS, ids=list(ATTACKS))
def test_a_creation_gives_a_tenant_file_no_engine_authority(
    fleet: Path, attack: str, below_the_rules: None
) -> None:
    attack_file(fleet, attack)
    before = snapshot()
    created = create_tenant("org_mallory2")
    list_tenants()  # the creation's pooled connection, used again
    after_registry = before["registry"]
    now = snapshot()
    # The one change: the new tenant's row, named as it was given.
    assert [r for r in now["registry"] if r not in after_registry] == [
        (now["registry"][-1][0], "org_mallory2", created.schema, "active")
    ]
    now["registry"] = after_registry
    assert now == before
    owner = owner_role_for_schema(created.schema, connect().info.dbname)
    assert callers(created.schema) <= {(owner, owner)}
    assert bool(callers(created.schema)) == (attack in FIRES)


@pytest.mark.parametrize("attack", FIRES)
def test_a_pool_schema_gives_a_tenant_file_no_engine_authority(
    fleet: Path, attack: str, below_the_rules: None, settings: Any, monkeypatch: Any
) -> None:
    settings.TENANCY = {**settings.TENANCY, "POOL_SIZE": 1}
    monkeypatch.setattr(tenants, "REFILL_TASK", "tests.test_pool.no_refill")
    attack_file(fleet, attack, qualified=False)
    before = snapshot()
    built = pool.fill(1, actor="test").built
    assert len(built) == 1
    pool_owner = owner_role_for_schema(built[0], connect().info.dbname)
    assert callers(built[0]) and callers(built[0]) <= {(pool_owner, pool_owner)}
    # The pool schema falls behind a file, is migrated at claim, and becomes a tenant.
    write(fleet, "052_later.sql", "INSERT INTO evil VALUES (7);")
    created = create_tenant("org_pooled1")
    assert created.path == tenants.POOL
    owner = owner_role_for_schema(created.schema, connect().info.dbname)
    assert callers(created.schema) <= {(pool_owner, pool_owner), (owner, owner)}
    assert snapshot()["users"] == before["users"]
    assert snapshot()["bystander"] == before["bystander"]
    assert {r[1] for r in snapshot()["registry"]} == {"org_mallory", "org_bystander", "org_pooled1"}


def test_a_tenant_role_cannot_create_temporary_objects(fleet: Path) -> None:
    write(fleet, "050_evil_fn.sql", EVIL_FN)
    write(fleet, "051_attack.sql", TEMPORARY_VIEW)
    before = snapshot()
    results = run_engine(fleet, [ATTACKER])
    assert results[0].status == "failed"
    assert "permission denied to create temporary tables" in results[0].error
    assert_nothing_escaped(before)


@pytest.fixture
def temporary_allowed(fleet: Path) -> Any:
    """A database where PUBLIC may still create temporary objects (as before tenancy.0012):
    the engine's second layer (the file's temporary objects dropped when it ends)."""
    from psycopg import sql

    database = sql.Identifier(connect().info.dbname)
    with connect() as conn:
        conn.execute(sql.SQL("GRANT TEMPORARY ON DATABASE {} TO PUBLIC").format(database))
    yield fleet
    with connect() as conn:
        conn.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(database))


def test_a_temporary_view_left_by_a_run_never_reaches_the_engine(temporary_allowed: Path) -> None:
    write(temporary_allowed, "050_evil_fn.sql", EVIL_FN)
    write(temporary_allowed, "051_attack.sql", TEMPORARY_VIEW)
    before = snapshot()
    results = run_engine(temporary_allowed, [ATTACKER, BYSTANDER])
    assert [r.status for r in results] == ["succeeded", "succeeded"]
    assert_nothing_escaped(before)


def test_a_temporary_view_left_by_a_creation_never_reaches_the_engine(
    temporary_allowed: Path, below_the_rules: None
) -> None:
    write(temporary_allowed, "050_evil_fn.sql", EVIL_FN)
    write(temporary_allowed, "051_attack.sql", TEMPORARY_VIEW)
    before = snapshot()
    created = create_tenant("org_mallory3")
    assert {t.schema for t in list_tenants()} >= {ATTACKER, BYSTANDER, created.schema}
    assert snapshot()["users"] == before["users"]
    assert callers(created.schema) == set()  # the view was never read


def test_a_deferred_trigger_that_fails_fails_its_schema_with_a_clear_error(fleet: Path) -> None:
    write(
        fleet,
        "050_fails_late.sql",
        "CREATE TABLE t (id int);\n"
        "CREATE FUNCTION no() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN RAISE EXCEPTION 'deferred check said no'; END $$;\n"
        "CREATE CONSTRAINT TRIGGER late AFTER INSERT ON t DEFERRABLE INITIALLY DEFERRED\n"
        "  FOR EACH ROW EXECUTE FUNCTION no();\n"
        "INSERT INTO t VALUES (1);",
    )
    results = run_engine(fleet, [ATTACKER])
    assert results[0].status == "failed"
    assert "050_fails_late.sql: at the end of its transaction" in results[0].error
    assert "deferred check said no" in results[0].error
    assert query("SELECT to_regclass(%s)", [f"{ATTACKER}.t"]) == [(None,)]
    assert "050" not in ledger_versions(ATTACKER)


# -- the issue's file, end to end, and a login that is not a superuser -----------------------
ISSUE_FILE = """-- UP
CREATE TABLE evil (id int);
CREATE TABLE evil_copy (u text, p text);
CREATE FUNCTION evil_fn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE tenant_registry SET organization_name = 'PWNED by ' || current_user;
  INSERT INTO evil_copy SELECT username, password FROM auth_user;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER evil_trg AFTER INSERT ON evil DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION evil_fn();
INSERT INTO evil VALUES (1);
"""


@pytest.mark.parametrize("command", [("migrate_tenants",), ("tenant_create", "org_mallory9")])
def test_the_reported_file_is_refused_naming_the_rule(fleet: Path, command: tuple) -> None:
    from tests.conftest import run_command

    (fleet / "tenant" / "050_evil.sql").write_text(ISSUE_FILE)
    before = snapshot()
    code, out, err = run_command(*command)
    assert code == 1, (out, err)
    assert "[outlives-file]" in err and "deferrable constraint trigger" in err
    assert snapshot() == before
    assert query("SELECT to_regclass(%s)", [f"{ATTACKER}.evil_copy"]) == [(None,)]


@pytest.fixture
def migrator(fleet: Path, monkeypatch: Any, public_baseline: set) -> Any:
    """The engine logs in as a role that is not a superuser (docs/isolation.md): it may
    create schemas and roles, writes the public tables and bypasses their row-level
    security (BYPASSRLS, given by a superuser), and takes tenant roles as their member."""
    from psycopg import sql

    from tenancy.engine.db import close_idle
    from tests.conftest import reset_database

    admin = dict(conf.conninfo())
    database = admin["dbname"]
    role = "tmig_" + hashlib.sha256(database.encode()).hexdigest()[:12]
    group = owner_group_role(database)
    with connect() as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        for statement in (
            "CREATE ROLE {r} LOGIN CREATEROLE BYPASSRLS NOSUPERUSER",
            "GRANT CREATE, TEMPORARY ON DATABASE {d} TO {r}",
            "GRANT ALL ON ALL TABLES IN SCHEMA public TO {r}",
            "GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {r}",
            "GRANT {g} TO {r} WITH ADMIN OPTION",
            "GRANT {a} TO {r} WITH ADMIN OPTION",
        ):
            conn.execute(
                sql.SQL(statement).format(
                    r=sql.Identifier(role),
                    d=sql.Identifier(database),
                    g=sql.Identifier(group),
                    a=sql.Identifier(app_role(database)),
                )
            )
    monkeypatch.setattr(conf, "conninfo", lambda *a, **k: {**admin, "user": role})
    # The test's own checks read as the superuser (the bystander's rows, the registry).
    monkeypatch.setattr(conftest, "connect", lambda: psycopg_connect(admin))
    yield role
    monkeypatch.undo()
    close_idle()
    reset_database(public_baseline)
    with psycopg_connect(admin) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def psycopg_connect(info: dict) -> Any:
    import psycopg

    return psycopg.connect(**info, autocommit=True)


def test_with_a_login_that_is_not_a_superuser_nothing_escapes_either(
    migrator: str, fleet: Path, below_the_rules: None
) -> None:
    with psycopg_connect(conf.conninfo()) as engine:  # what the engine logs in as
        rows = engine.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        assert rows.fetchall() == [(False,)]
    attack_file(fleet, "redeferring_trigger")
    before = snapshot()
    created = create_tenant("org_mallory5")  # its roles are the login's to take
    owner = owner_role_for_schema(created.schema, connect().info.dbname)
    # Without a superuser login the owner is the current user, not the session user.
    assert callers(created.schema) and callers(created.schema) <= {(owner, migrator)}
    write(fleet, "052_later.sql", "INSERT INTO evil VALUES (5);")
    results = run_engine(fleet, [created.schema])
    assert [r.status for r in results] == ["succeeded"], results[0].error
    assert callers(created.schema) <= {(owner, migrator)}
    now = snapshot()
    assert now["users"] == before["users"] and now["bystander"] == before["bystander"]
    assert [r for r in now["registry"] if r not in before["registry"]] == [
        (now["registry"][-1][0], "org_mallory5", created.schema, "active")
    ]


DJANGO_MIGRATIONS_TRIGGER = """
CREATE TABLE django_migrations (id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  app varchar(255) NOT NULL, name varchar(255) NOT NULL, applied timestamptz NOT NULL);
CREATE FUNCTION evil_trg_fn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM {{schema}}.evil_body(); RETURN NEW; END $$;
CREATE TRIGGER evil_trg BEFORE INSERT OR DELETE ON django_migrations
  FOR EACH ROW EXECUTE FUNCTION evil_trg_fn();
CREATE RULE evil_rule AS ON INSERT TO django_migrations DO ALSO SELECT {{schema}}.evil_body();
"""


def test_a_trigger_on_django_migrations_runs_as_the_owner(
    fleet: Path, settings: Any, below_the_rules: None
) -> None:
    """The engine writes each schema's django_migrations (Django tenant apps' steps) as the
    schema's owner, in its transaction: the tenant's trigger and rule there run as the
    owner too, through a run, a rollback and a creation."""
    from tenancy.services import runs
    from tests.settings_sql_only import PROJECT_TENANT_APPS

    write(fleet, "050_evil_fn.sql", EVIL_FN)
    write(fleet, "051_attack.sql", DJANGO_MIGRATIONS_TRIGGER)
    assert [r.status for r in run_engine(fleet, [ATTACKER])] == ["succeeded"]
    before = snapshot()
    settings.TENANT_APPS = PROJECT_TENANT_APPS  # the Django steps are pending now
    report = runs.migrate(public=False, tenants=True, only=[ATTACKER], actor="test")
    assert report.exit_code == 0, [r.error for r in report.failed]
    assert callers()  # the trigger did fire
    report = runs.rollback("candidate_notes.zero", only=[ATTACKER], actor="test")
    assert report.exit_code == 0, [r.error for r in report.failed]
    assert_nothing_escaped(before)
    created = create_tenant("org_mallory6")
    owner = owner_role_for_schema(created.schema, connect().info.dbname)
    assert callers(created.schema) and callers(created.schema) <= {(owner, owner)}
    assert snapshot()["users"] == before["users"]


SESSION_SETTINGS = """
CREATE TABLE marker (id int);
SET search_path TO {{schema}}, public;
SET ROLE {{owner_group}};
"""


def _pooled_session() -> tuple[str, str]:
    """Who the next user of the engine's pooled connection is, and its search_path."""
    from tenancy.engine import db

    with db.pooled(conf.conninfo()) as conn:
        row = conn.execute("SELECT current_user, current_setting('search_path')").fetchone()
    assert row is not None
    return row[0], row[1]


def test_session_settings_a_file_makes_do_not_outlive_its_transaction(
    fleet: Path, below_the_rules: None
) -> None:
    """A file's session-level SET (not LOCAL) would outlive the transaction on the engine's
    connection, pooled for the next operation (and, through a transaction pooler, a server
    connection others share): a tenant search_path there puts the tenant's operators in
    the engine's next queries. The engine resets them inside the transaction."""
    write(fleet, "050_session.sql", SESSION_SETTINGS)
    login, path = _pooled_session()
    create_tenant("org_mallory8")
    assert _pooled_session() == (login, path)
    run_engine(fleet, [ATTACKER])
    assert "marker" in {r[0] for r in query(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s", [ATTACKER]
    )}  # fmt: skip
    assert _pooled_session() == (login, path)


LASTING = """
CREATE TABLE lasting (id int);
DECLARE kept CURSOR WITH HOLD FOR SELECT * FROM {{schema}}.organizations;
LISTEN tenant_news;
CREATE FUNCTION {{schema}}.listen_late() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN EXECUTE 'LISTEN late_news'; RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER late AFTER INSERT ON lasting DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION {{schema}}.listen_late();
INSERT INTO lasting VALUES (1);
"""


def _left_on(conn: Any) -> tuple[int, int]:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM pg_cursors), (SELECT count(*) FROM pg_listening_channels())"
    ).fetchone()
    return int(row[0]), int(row[1])


def test_cursors_and_listens_a_file_makes_do_not_outlive_its_transaction(
    fleet: Path, below_the_rules: None
) -> None:
    """A cursor WITH HOLD would stay open over the tenant's rows on the engine's connection
    (pooled for the next operation, or a worker's for the next schema), and a LISTEN would
    go on receiving, also one a deferred trigger made at COMMIT; the engine closes both
    inside the transaction, after the deferred triggers fired."""
    from tenancy.engine import db
    from tenancy.engine.executor import kept_workers

    write(fleet, "050_lasting.sql", LASTING)
    create_tenant("org_mallory9")
    with db.pooled(conf.conninfo()) as conn:
        assert _left_on(conn) == (0, 0)
    migrations = discover(fleet, TENANT)
    with kept_workers(conf.conninfo(), 1) as kept:
        executor = Executor(conf.conninfo(), conf.engine_options(jobs=1), None, kept=kept)
        results = executor.migrate([(ATTACKER, migrations, migrations)])
        assert [r.status for r in results] == ["succeeded"], results
        with kept.connection() as conn:
            assert _left_on(conn) == (0, 0)
