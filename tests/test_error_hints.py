"""Errors that name their fix: a tenant statement denied on a public object names the
public migration's GRANT that lets every tenant owner use it (in the command's output and
in the run's recorded error, which the admin shows); a refused run names the command and
the admin page (the step's Migrations page) that resolve it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenancy.engine import rules
from tenancy.engine.errors import EXIT_DRIFT
from tests.conftest import ledger_versions, query, run_command, tables_in
from tests.test_admin import client_for
from tests.test_engine_runs import add, make_tenants

READS_PUBLIC = (
    "-- UP\nCREATE TABLE local_settings AS SELECT config_key FROM system_configurations;\n"
    "-- DOWN\nDROP TABLE local_settings;\n"
)
WRITES_PUBLIC = (
    "-- UP\nCREATE TABLE seen (id int);\n"
    "INSERT INTO system_configurations (config_key, config_value) VALUES ('seen', '1');\n"
)
SELECT_GRANT = "GRANT SELECT ON public.system_configurations TO {{owner_group}}"


def recorded_error(schema: str) -> str:
    rows = query(
        "SELECT error FROM tenant_migration_run_results WHERE tenant_schema = %s "
        "ORDER BY id DESC LIMIT 1",
        [schema],
    )
    return rows[0][0] if rows else ""


def test_a_denied_read_of_a_public_table_names_the_select_grant(public_ready, sql_dir: Path):
    schemas = make_tenants(2, prefix="gr")
    add(sql_dir, "040_local_settings.sql", READS_PUBLIC)
    code, out, err = run_command("migrate_tenants")
    assert code == 1, (out, err)
    assert SELECT_GRANT in out + err
    run_id = query("SELECT max(id) FROM tenant_migration_runs")[0][0]
    summary = f"2 failed; in the admin: /admin/tenancy/migrationrun/{run_id}/change/"
    assert summary in out  # the summary says so, and where to look
    assert SELECT_GRANT in recorded_error(schemas[0])  # what the run's admin page shows
    assert all("local_settings" not in tables_in(s) for s in schemas)
    assert all("040" not in ledger_versions(s) for s in schemas)
    # The named grant, in a public file, is the fix: the same run then goes through.
    add(sql_dir, "040_grant.sql", f"{SELECT_GRANT};\n", scope="public")
    code, out, err = run_command("migrate_tenants")
    assert code == 0, (out, err)
    assert all("local_settings" in tables_in(s) for s in schemas)


def test_a_denied_write_names_the_insert_grant_in_a_creation(public_ready, sql_dir: Path):
    add(sql_dir, "040_seen.sql", WRITES_PUBLIC)
    code, out, err = run_command("tenant_create", "org_grw1")
    assert code == 1
    assert "GRANT INSERT ON public.system_configurations TO {{owner_group}}" in err
    assert query("SELECT count(*) FROM tenant_registry") == [(0,)]
    assert query("SELECT count(*) FROM system_configurations WHERE config_key = 'seen'") == [(0,)]


@pytest.mark.parametrize(
    ("statement", "message", "grant"),
    [
        (
            "CREATE TABLE a (c int REFERENCES public.sc (id))",
            "permission denied for table sc",
            "GRANT REFERENCES ON public.sc TO",
        ),
        ("UPDATE sc SET v = 1", "permission denied for table sc", "GRANT UPDATE ON public.sc TO"),
        ("DELETE FROM sc", "permission denied for table sc", "GRANT DELETE ON public.sc TO"),
        ("TRUNCATE sc", "permission denied for table sc", "GRANT TRUNCATE ON public.sc TO"),
        (
            "INSERT INTO mine SELECT * FROM sc",  # the denied table is the one it reads
            "permission denied for table sc",
            "GRANT SELECT ON public.sc TO",
        ),
        ("SELECT * FROM v", "permission denied for view v", "GRANT SELECT ON public.v TO"),
        (
            "SELECT nextval('seq')",
            "permission denied for sequence seq",
            "GRANT USAGE ON SEQUENCE public.seq TO",
        ),
        (
            "SELECT f(1)",
            "permission denied for function f",
            "GRANT EXECUTE ON FUNCTION public.f TO",
        ),
    ],
)
def test_the_grant_follows_what_the_statement_did(statement: str, message: str, grant: str):
    assert grant in rules.grant_hint(statement, "42501", message)


def test_no_grant_is_named_for_other_errors():
    assert rules.grant_hint("SELECT 1/0", "22012", "division by zero") == ""
    assert (
        rules.grant_hint("CREATE TABLE public.x ()", "42501", "permission denied for schema public")
        == ""
    )


def test_a_drift_refusal_names_the_command_and_the_admin_page(
    public_ready, sql_dir: Path, superuser
):
    schemas = make_tenants(1, prefix="grd")
    query(
        "UPDATE tenant_migrations SET checksum = 'edited' WHERE tenant_schema = %s "
        "AND migration_version = '002' RETURNING 1",
        [schemas[0]],
    )
    code, out, err = run_command("migrate_tenants")
    assert code == EXIT_DRIFT
    page = "/admin/tenancy/tenantmigration/step/tenant/002/"
    assert "`migrate_tenants --accept-checksum 002`" in err
    assert f"in the admin: {page}" in err
    shown = client_for(superuser).get(page)
    assert shown.status_code == 200
    assert "accept-checksum" in shown.content.decode()  # the page offers the fix


def test_a_missing_file_refusal_names_its_step_page(public_ready, sql_dir: Path, superuser):
    make_tenants(1, prefix="grm")
    (sql_dir / "tenant" / "003_candidates_applications_interviews.sql").unlink()
    code, out, err = run_command("migrate_tenants")
    assert code == EXIT_DRIFT
    page = "/admin/tenancy/tenantmigration/step/tenant/003/"
    assert "missing file: tenant/003_candidates_applications_interviews.sql" in err
    assert f"in the admin: {page}" in err
    assert client_for(superuser).get(page).status_code == 200


def test_many_schemas_failing_alike_make_one_line(public_ready, sql_dir: Path):
    schemas = make_tenants(6, prefix="grg")
    add(sql_dir, "040_local_settings.sql", READS_PUBLIC)
    code, out, err = run_command("migrate_tenants")
    assert code == 1
    summary = err.split("6 schema(s) failed:", 1)[1]
    grouped = [line for line in summary.splitlines() if line.strip()]
    assert len(grouped) == 1, summary  # one error, its schemas named once
    assert grouped[0].startswith(f"  6 schema(s) ({', '.join(schemas[:5])} and 1 more): ")
    assert SELECT_GRANT in grouped[0]
