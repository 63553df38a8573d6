"""The refusal rules, the linter and `manage.py lint_migrations` (files only, no database)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tenancy.engine import rules, source
from tenancy.engine.rules import Problem
from tests.conftest import ROOT, run_command

HEADER = "-- Migration: test\n-- UP: Apply migration\n\n"  # the UP part starts on line 4
DOWN = "\n-- DOWN: Rollback migration (commented for safety)\n/*\nSELECT 1;\n*/\n"
EARLIER = "CREATE TABLE organizations (id UUID PRIMARY KEY, name TEXT);\n"  # tenant/001


def write(root: Path, relative: str, up: str, *, down: bool = True) -> Path:
    """A migration file ``root/<scope>/<name>`` with a header, ``up`` from line 4 and a DOWN."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + up + (DOWN if down else ""))
    return path


def lint_dir(root: Path, severities: dict[str, str] | None = None) -> list[Problem]:
    migrations = [m for scope in source.SCOPES for m in source.discover(root, scope)]
    return rules.lint(migrations, severities)


def tenant_file(tmp_path: Path, up: str, **severities: str) -> list[Problem]:
    """Lint tenant/002_change.sql (``up`` from line 4) after tenant/001 (organizations)."""
    write(tmp_path, "tenant/001_organizations.sql", EARLIER)
    write(tmp_path, "tenant/002_change.sql", up)
    return [p for p in lint_dir(tmp_path, severities) if p.path.endswith("002_change.sql")]


def hits(problems: list[Problem], rule: str) -> list[tuple[int, str]]:
    return [(p.line, p.severity) for p in problems if p.rule == rule]


def rules_of(problems: list[Problem]) -> set[str]:
    return {p.rule for p in problems}


# --- the bug report: each of these files must be refused --------------------------------------

BUG_REPORT = [
    ("DROP SCHEMA IF EXISTS tenant_org_victim CASCADE; CREATE TABLE t (id int);", "foreign-schema"),
    ("SET search_path TO public; CREATE TABLE t (id int);", "session-state"),
    ("CREATE TABLE public.x (id int);", "writes-public"),
    (
        "INSERT INTO public.system_configurations (config_key, config_value) VALUES ('a', '1');",
        "writes-public",
    ),
    ("BEGIN; CREATE TABLE t (id int); COMMIT;", "transaction-control"),
    ("CREATE TABLE t (id int); COMMIT; SELECT 1/0;", "transaction-control"),
    ("BEGIN; CREATE TABLE t (id int); SELECT 1/0; COMMIT;", "transaction-control"),
]


@pytest.mark.parametrize(("sql", "rule"), BUG_REPORT)
def test_bug_report_files_are_refused(tmp_path, sql, rule):
    path = tmp_path / "tenant" / "005_bug.sql"
    path.parent.mkdir()
    path.write_text(sql + "\n")
    refused = rules.refusals(source.load(path, "tenant"))
    assert refused and all(p.severity == "error" for p in refused)
    assert (refused[0].path, refused[0].line, refused[0].rule) == (str(path), 1, rule)
    code, out, _ = run_command("lint_migrations", str(path))
    assert code == 1 and f"{path}:1: error [{rule}]" in out


def test_transaction_control_names_each_statement_on_its_line(tmp_path):
    problems = tenant_file(
        tmp_path,
        "BEGIN;\nCREATE TABLE t (id int);\nSAVEPOINT s;\nROLLBACK TO SAVEPOINT s;\n"
        "RELEASE SAVEPOINT s;\nCOMMIT;\nPREPARE TRANSACTION 'x';\nCOMMIT PREPARED 'x';\n",
    )
    assert hits(problems, "transaction-control") == [(n, "error") for n in (4, 6, 7, 8, 9, 10, 11)]
    messages = [p.message for p in problems if p.rule == "transaction-control"]
    assert messages[0].startswith("BEGIN ") and messages[5].startswith("PREPARE TRANSACTION ")


def test_transaction_control_is_refused_in_public_files_too(tmp_path):
    path = write(tmp_path, "public/001_x.sql", "CREATE TABLE public.x (id int);\nCOMMIT;\n")
    assert [(p.line, p.rule) for p in rules.refusals(source.load(path, "public"))] == [
        (5, "transaction-control")
    ]


def test_session_state(tmp_path):
    problems = tenant_file(
        tmp_path,
        "SET LOCAL search_path = {{schema}};\n"  # 4
        "SET ROLE postgres;\n"  # 5
        "SET SESSION AUTHORIZATION postgres;\n"  # 6
        "RESET ROLE;\n"  # 7
        "RESET ALL;\n"  # 8
        "DISCARD ALL;\n"  # 9
        "SELECT set_config('search_path', 'public', true);\n"  # 10
        "CREATE TABLE t AS SELECT pg_catalog.set_config(current_user, 'x', false);\n"  # 11
        "SET LOCAL lock_timeout = '1s';\n"  # 12: other settings, transaction-scoped, are fine
        "SELECT set_config('app.current_tenant', 'x', true);\n"  # 13
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = {{schema}}, public\n"
        "  AS 'SELECT 1';\n",  # 14: a function's own SET clause is fine
    )
    assert hits(problems, "session-state") == [(n, "error") for n in range(4, 12)]
    message = next(p.message for p in problems if p.line == 10)
    assert message.startswith("set_config('search_path', …)")


def test_session_state_in_public_files(tmp_path):
    path = write(tmp_path, "public/001_x.sql", "SET ROLE postgres;\n")
    assert rules_of(rules.refusals(source.load(path, "public"))) == {"session-state"}


def test_foreign_schema(tmp_path):
    problems = tenant_file(
        tmp_path,
        "CREATE TABLE t (id int);\n"  # 4: fine
        "SELECT * FROM tenant_org_other.users;\n"  # 5
        "DROP SCHEMA tenant_org_victim CASCADE;\n"  # 6
        "CREATE SCHEMA extra;\n"  # 7
        "ALTER TABLE t SET SCHEMA extra;\n"  # 8
        "ALTER SCHEMA {{schema}} RENAME TO other;\n"  # 9
        "SELECT other.f(1);\n"  # 10
        "CREATE TABLE u (id other.custom_type);\n"  # 11
        "DROP TABLE other.t;\n"  # 12
        "GRANT SELECT ON ALL TABLES IN SCHEMA other TO PUBLIC;\n"  # 13
        "SELECT * FROM {{tenant_role}}.t;\n"  # 14: another placeholder is not the schema
        "SELECT pg_catalog.now(), public.gen_random_uuid(), {{schema}}.t.id FROM {{schema}}.t;\n",
    )
    assert hits(problems, "foreign-schema") == [(n, "error") for n in range(5, 15)]
    assert "tenant_org_other" in next(p.message for p in problems if p.line == 5)
    assert next(p.message for p in problems if p.line == 6).startswith("DROP SCHEMA ")


def test_foreign_schema_and_writes_public_apply_to_tenant_files_only(tmp_path):
    write(tmp_path, "public/001_x.sql", "CREATE TABLE public.x (id int);\nSELECT other.f();\n")
    assert lint_dir(tmp_path, {"squawk": "off"}) == []


def test_writes_public(tmp_path):
    problems = tenant_file(
        tmp_path,
        "CREATE TABLE public.x (id int);\n"  # 4
        "INSERT INTO public.system_configurations (config_key) VALUES ('a');\n"  # 5
        "UPDATE public.tenant_registry SET status = 'x';\n"  # 6
        "WITH gone AS (DELETE FROM public.audit_logs RETURNING id) SELECT * FROM gone;\n"  # 7
        "TRUNCATE public.audit_logs;\n"  # 8
        "ALTER TABLE public.audit_logs ADD COLUMN x int;\n"  # 9
        "DROP TABLE public.x;\n"  # 10
        "ALTER TABLE public.x RENAME TO y;\n"  # 11
        "GRANT ALL ON public.tenant_registry TO PUBLIC;\n"  # 12
        "COMMENT ON TABLE public.x IS 'mine';\n"  # 13
        "CREATE INDEX CONCURRENTLY i ON public.audit_logs (id);\n"  # 14
        "CREATE TRIGGER t AFTER INSERT ON public.x FOR EACH ROW EXECUTE FUNCTION f();\n"  # 15
        "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1';\n"  # 16
        "COPY public.x FROM STDIN;\n"  # 17
        "CREATE VIEW pg_catalog.v AS SELECT 1;\n",  # 18
    )
    assert hits(problems, "writes-public") == [(n, "error") for n in range(4, 19)]
    assert "INSERT INTO public.system_configurations" in problems[1].message
    assert "DELETE FROM public.audit_logs" in next(p.message for p in problems if p.line == 7)


def test_reading_public_and_the_tenant_schema_pass(tmp_path):
    """The legitimate forms: no problem at all, squawk included."""
    problems = tenant_file(
        tmp_path,
        "CREATE TABLE members (\n"
        "    id UUID PRIMARY KEY,\n"
        "    organization_id UUID NOT NULL REFERENCES organizations(id),\n"
        "    config_key VARCHAR(100) REFERENCES public.system_configurations(config_key)\n"
        ");\n"
        "CREATE TABLE {{schema}}.notes (id UUID PRIMARY KEY, body TEXT);\n"
        "INSERT INTO {{schema}}.notes (id, body)\n"
        "    SELECT gen_random_uuid(), c.config_value FROM public.system_configurations c\n"
        "    JOIN public.tenant_registry r ON r.schema_name = current_schema();\n"
        "CREATE INDEX members_org ON members (organization_id);\n"
        "CREATE INDEX CONCURRENTLY organizations_name ON {{schema}}.organizations (name);\n"
        "GRANT SELECT ON {{schema}}.notes TO {{tenant_role}};\n",
    )
    assert problems == []


def test_session_level_settings_are_refused_in_transactional_files(tmp_path):
    problems = tenant_file(
        tmp_path,
        "SET default_transaction_read_only = on;\n"  # 4: would hold for every later schema
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;\n"  # 5: transaction-scoped
        "SET LOCAL statement_timeout = 0;\n",  # 6
    )
    assert hits(problems, "session-state") == [(4, "error")]
    assert "SET LOCAL default_transaction_read_only" in problems[0].message


def test_bodies_are_read_statement_by_statement(tmp_path):
    problems = tenant_file(
        tmp_path,
        "DO $$ BEGIN SET /**/ ROLE postgres; END $$;\n"  # 4
        "DO $$ BEGIN PERFORM U&\"set\\005fconfig\"('role', 'none', true); END $$;\n"  # 5
        "DO $$ BEGIN EXECUTE 'DROP SCHEMA ' || 'x'; END $$;\n"  # 6
        "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$\n"  # 7
        "BEGIN\n    SET search_path = public;\nEND $$;\n"
        "CREATE PROCEDURE p() LANGUAGE sql AS $$ RESET SESSION AUTHORIZATION $$;\n"  # 11
        "DO $$ BEGIN PERFORM 1; END $$;\n"  # 12: fine
        "CREATE FUNCTION g() RETURNS void LANGUAGE plpgsql AS $$\n"  # 13
        "BEGIN EXECUTE 'SELECT 1'; END $$;\n"
        "DO $$ BEGIN DROP SCHEMA IF EXISTS tenant_org_victim CASCADE; END $$;\n"  # 15
        "CREATE FUNCTION h() RETURNS void LANGUAGE sql SET role = 'none'\n"  # 16
        "  AS $$ CREATE TABLE public.pwned (id int) $$;\n"
        "CREATE FUNCTION py() RETURNS int LANGUAGE plpython3u AS $$ return 1 $$;\n",  # 18
    )
    assert hits(problems, "session-state") == [(n, "error") for n in (4, 5, 7, 11, 16)]
    assert hits(problems, "unreadable-body") == [(n, "error") for n in (6, 13, 18)]
    assert hits(problems, "foreign-schema") == [(15, "error")]
    assert hits(problems, "writes-public") == [(16, "error")]
    assert next(p for p in problems if p.line == 4).message.startswith("DO block: SET role")
    assert "EXECUTE runs SQL built at run time" in next(p for p in problems if p.line == 6).message


def test_roles_owners_grants_and_session_functions_are_refused(tmp_path):
    problems = tenant_file(
        tmp_path,
        "DROP OWNED BY CURRENT_USER;\n"  # 4
        "GRANT USAGE ON SCHEMA {{schema}} TO {{app_role}};\n"  # 5
        "GRANT ALL ON organizations TO PUBLIC;\n"  # 6
        "GRANT SELECT ON organizations TO {{tenant_role}};\n"  # 7: its own web role: fine
        "REVOKE ALL ON organizations FROM PUBLIC;\n"  # 8: taking away is fine
        "ALTER TABLE organizations OWNER TO postgres;\n"  # 9
        "ALTER ROLE CURRENT_USER SET work_mem = '1GB';\n"  # 10
        "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC;\n"  # 11
        "SELECT lo_create(0), pg_advisory_lock(1);\n"  # 12
        "SELECT query_to_xml('DROP SCHEMA x', true, true, '');\n"  # 13
        "ALTER DATABASE postgres SET search_path = public;\n",  # 14
    )
    assert hits(problems, "privileges") == [(n, "error") for n in (4, 5, 6, 9, 10, 11, 14)]
    assert hits(problems, "forbidden-function") == [(12, "error"), (13, "error")]


def test_down_sections_are_checked_too(tmp_path):
    path = tmp_path / "tenant" / "002_change.sql"
    path.parent.mkdir(parents=True)
    path.write_text(
        HEADER + "CREATE TABLE t (id int);\n"  # 4
        "-- DOWN: Rollback migration\n"  # 5
        "/*\n"  # 6
        "RESET ROLE;\n"  # 7
        "DROP SCHEMA tenant_org_victim CASCADE;\n"  # 8
        "*/\n"
    )
    problems = rules.refusals(source.load(path, "tenant"))
    assert [(p.line, p.rule) for p in problems] == [(7, "session-state"), (8, "foreign-schema")]
    assert all(p.path.endswith("002_change.sql (DOWN)") for p in problems)


def test_public_files_may_use_do_blocks_with_execute(tmp_path):
    write(tmp_path, "public/001_x.sql", "DO $$ BEGIN EXECUTE 'SELECT 1'; END $$;\n")
    assert lint_dir(tmp_path, {"squawk": "off"}) == []


def test_refusals_list_every_problem_at_once(tmp_path):
    write(tmp_path, "public/001_p.sql", "BEGIN;\nCREATE TABLE public.p (id int);\nCOMMIT;\n")
    write(tmp_path, "tenant/001_a.sql", "SET ROLE postgres;\nCREATE TABLE public.x (id int);\n")
    write(tmp_path, "tenant/002_b.sql", "DROP SCHEMA tenant_org_victim CASCADE;\nROLLBACK;\n")
    expected = {
        ("public/001_p.sql", 4, "transaction-control"),
        ("public/001_p.sql", 6, "transaction-control"),
        ("tenant/001_a.sql", 4, "session-state"),
        ("tenant/001_a.sql", 5, "writes-public"),
        ("tenant/002_b.sql", 4, "foreign-schema"),
        ("tenant/002_b.sql", 5, "transaction-control"),
    }
    problems = lint_dir(tmp_path, {"squawk": "off"})
    assert {(str(Path(p.path).relative_to(tmp_path)), p.line, p.rule) for p in problems} == expected
    code, out, _ = run_command("lint_migrations", str(tmp_path))
    assert code == 1 and out.count(": error [") == 6 and "6 errors, " in out.splitlines()[-1]


def test_syntax_error_is_a_refusal(tmp_path):
    migration = source.Migration(
        scope="tenant",
        version="001",
        name="001_x.sql",
        description="x",
        path=tmp_path / "001_x.sql",
        up_sql="CREATE TABLE (;\n",
        down_sql=None,
        checksum="0",
        transactional=True,
        up_line=3,
    )
    assert [(p.line, p.rule) for p in rules.refusals(migration)] == [(3, "syntax-error")]


# --- safety rules ------------------------------------------------------------------------------


def test_index_not_concurrent_on_an_earlier_table(tmp_path):
    problems = tenant_file(
        tmp_path,
        "CREATE TABLE t (id int);\n"
        "CREATE INDEX t_id ON t (id);\n"  # same file: new, empty table
        "CREATE INDEX org_name ON organizations (name);\n"  # 6
        "CREATE UNIQUE INDEX org_name2 ON {{schema}}.organizations (name);\n"  # 7
        "CREATE INDEX CONCURRENTLY org_name3 ON organizations (name);\n",
    )
    assert hits(problems, "index-not-concurrent") == [(6, "warning"), (7, "warning")]
    assert "organizations (created by tenant/001_organizations.sql)" in problems[0].message


def test_add_column_not_null_without_default(tmp_path):
    problems = tenant_file(
        tmp_path,
        "ALTER TABLE organizations ADD COLUMN a int NOT NULL;\n"  # 4
        "ALTER TABLE organizations\n"  # 5
        "    ADD COLUMN b int NOT NULL DEFAULT 0,\n"
        "    ADD COLUMN c int,\n"
        "    ADD COLUMN d bigserial NOT NULL,\n"
        "    ADD COLUMN e int GENERATED ALWAYS AS IDENTITY,\n"
        "    ADD COLUMN f int PRIMARY KEY;\n"  # 10: PRIMARY KEY is NOT NULL
        "CREATE TABLE t (id int);\n"
        "ALTER TABLE t ADD COLUMN g int NOT NULL;\n",  # same file: fine
    )
    assert hits(problems, "add-column-not-null-without-default") == [(4, "error"), (5, "error")]
    assert "ADD COLUMN f " in problems[1].message


def test_alter_column_type_drop_column_drop_table(tmp_path):
    problems = tenant_file(
        tmp_path,
        "ALTER TABLE organizations ALTER COLUMN name TYPE VARCHAR(10);\n"  # 4
        "ALTER TABLE organizations DROP COLUMN name;\n"  # 5
        "DROP TABLE IF EXISTS organizations;\n"  # 6
        "CREATE TABLE t (id int, x int);\n"
        "ALTER TABLE t ALTER COLUMN x TYPE bigint, DROP COLUMN id;\n"  # same file: fine
        "DROP TABLE t;\n",
    )
    assert hits(problems, "alter-column-type") == [(4, "warning")]
    assert hits(problems, "drop-column") == [(5, "warning")]
    assert hits(problems, "drop-table") == [(6, "warning")]


def test_constraint_without_not_valid(tmp_path):
    problems = tenant_file(
        tmp_path,
        "ALTER TABLE organizations ADD CONSTRAINT name_set CHECK (name <> '');\n"  # 4
        "ALTER TABLE organizations ADD CONSTRAINT self FOREIGN KEY (id)\n"  # 5
        "    REFERENCES organizations (id);\n"
        "ALTER TABLE organizations ADD CONSTRAINT c2 CHECK (name <> '') NOT VALID;\n"
        "ALTER TABLE organizations ADD CONSTRAINT u UNIQUE (name);\n"  # other rules' business
        "CREATE TABLE t (id int, org UUID);\n"
        "ALTER TABLE t ADD CONSTRAINT t_org FOREIGN KEY (org) REFERENCES organizations (id);\n",
    )
    assert hits(problems, "constraint-without-not-valid") == [(4, "warning"), (5, "warning")]


def test_missing_down(tmp_path):
    write(tmp_path, "tenant/001_a.sql", "CREATE TABLE a (id int);\n", down=False)
    write(tmp_path, "tenant/002_b.sql", "CREATE TABLE b (id int);\n")
    (tmp_path / "tenant/003_c.sql").write_text(
        "-- lint: ignore missing-down\n-- UP\nCREATE TABLE c (id int);\n"
    )
    problems = lint_dir(tmp_path, {"squawk": "off"})
    assert [(Path(p.path).name, p.line, p.rule, p.severity) for p in problems] == [
        ("001_a.sql", 1, "missing-down", "warning")
    ]


# --- -- lint: ignore, severities, lines --------------------------------------------------------


def test_lint_ignore_above_or_at_the_end_of_the_first_line(tmp_path):
    problems = tenant_file(
        tmp_path,
        "-- lint: ignore index-not-concurrent\n"
        "CREATE INDEX a ON organizations (name);\n"
        "CREATE INDEX b ON organizations (name); -- lint: ignore index-not-concurrent\n"
        "-- Why: organizations is tiny in every tenant.\n"
        "-- lint: ignore drop-column, alter-column-type\n"
        "ALTER TABLE organizations DROP COLUMN name,\n"
        "    ALTER COLUMN id TYPE text;\n"
        "CREATE INDEX c ON organizations (name); -- lint: ignore drop-column\n"  # 11: other rule
        "\n-- lint: ignore index-not-concurrent\n\n"
        "CREATE INDEX d ON organizations (name);\n"  # 15: not directly above
        "BEGIN; -- lint: ignore transaction-control\n",  # 16: refusals cannot be ignored
    )
    assert [(p.line, p.rule) for p in problems] == [
        (11, "index-not-concurrent"),
        (15, "index-not-concurrent"),
        (16, "transaction-control"),
    ]


def test_lines_count_from_the_file_with_non_ascii_text_before(tmp_path):
    path = tmp_path / "tenant" / "001_x.sql"
    path.parent.mkdir()
    path.write_text(
        "-- Migration: Übersicht — café ✓\n\n-- UP\n\n  /* déjà vu */\n"
        "CREATE TABLE t (note TEXT DEFAULT 'naïve');\n"
        "-- commentaire élégant\n"
        "COMMIT;\n"
    )
    migration = source.load(path, "tenant")
    assert migration.up_line == 5
    assert [(p.line, p.rule) for p in rules.refusals(migration)] == [(8, "transaction-control")]


def test_severities_from_settings(tmp_path, settings):
    write(tmp_path, "tenant/001_organizations.sql", EARLIER)
    write(
        tmp_path,
        "tenant/002_change.sql",
        "ALTER TABLE organizations DROP COLUMN name;\nCREATE INDEX i ON organizations (id);\n",
    )
    settings.TENANCY = {**settings.TENANCY, "LINT": {}}
    code, out, _ = run_command("lint_migrations", str(tmp_path))
    assert code == 0 and "warning [drop-column]" in out and "warning [index-not" in out
    settings.TENANCY = {
        **settings.TENANCY,
        "LINT": {"drop-column": "error", "index-not-concurrent": "off"},
    }
    code, out, _ = run_command("lint_migrations", str(tmp_path))
    assert code == 1 and "002_change.sql:4: error [drop-column]" in out
    assert "index-not-concurrent" not in out and "1 error, 0 warnings in 2 files." in out


@pytest.mark.parametrize(
    "lint",
    [{"transaction-control": "off"}, {"no-such-rule": "warning"}, {"drop-table": "loud"}],
)
def test_bad_severity_settings_are_a_clean_error(tmp_path, settings, lint):
    write(tmp_path, "tenant/001_a.sql", "CREATE TABLE a (id int);\n")
    settings.TENANCY = {**settings.TENANCY, "LINT": lint}
    code, _, err = run_command("lint_migrations", str(tmp_path))
    assert code == 1 and 'TENANCY["LINT"]' in err and "Traceback" not in err


def test_refusal_rules_stay_errors_whatever_the_severities(tmp_path):
    write(tmp_path, "tenant/001_a.sql", "COMMIT;\n")
    problems = lint_dir(tmp_path, {"transaction-control": "error", "squawk": "off"})
    assert [(p.rule, p.severity) for p in problems] == [("transaction-control", "error")]


# --- squawk ------------------------------------------------------------------------------------


def test_squawk_rules_with_file_lines_and_ignores(tmp_path):
    problems = tenant_file(
        tmp_path,
        "ALTER TABLE organizations\n"  # 4
        "    RENAME COLUMN name TO title;\n"
        "-- lint: ignore squawk:renaming-column\n"
        "ALTER TABLE organizations RENAME COLUMN title TO label;\n"
        "CREATE TABLE t (id UUID PRIMARY KEY, seen TIMESTAMP, again TIMESTAMP);\n",  # 8
    )
    assert hits(problems, "squawk:renaming-column") == [(4, "warning")]
    assert hits(problems, "squawk:prefer-timestamp-tz") == [(8, "warning")]  # once per statement
    assert not any(p.rule.removeprefix("squawk:") in rules.SQUAWK_EXCLUDED for p in problems)


def test_squawk_severities(tmp_path):
    up = "ALTER TABLE organizations RENAME COLUMN name TO title;\n"
    problems = tenant_file(tmp_path, up, **{"squawk:renaming-column": "error"})
    assert hits(problems, "squawk:renaming-column") == [(4, "error")]
    assert tenant_file(tmp_path, up, squawk="off") == []


def test_squawk_missing_is_one_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(rules, "squawk_binary", lambda: None)
    write(tmp_path, "tenant/001_a.sql", "CREATE TABLE a (id int);\n")
    write(tmp_path, "tenant/002_b.sql", "CREATE TABLE b (id int);\n")
    problems = lint_dir(tmp_path)
    assert [(p.rule, p.severity) for p in problems] == [("squawk:unavailable", "warning")]


# --- the command -------------------------------------------------------------------------------


def test_shipped_migrations_pass(settings):
    settings.TENANCY = {**settings.TENANCY, "MIGRATIONS_DIR": ROOT / "migrations_sql", "LINT": {}}
    code, out, err = run_command("lint_migrations")
    assert code == 0, out + err
    assert ": error [" not in out


def test_json_output_and_exit_codes(tmp_path):
    write(tmp_path, "tenant/001_organizations.sql", EARLIER)
    write(tmp_path, "tenant/002_change.sql", "ALTER TABLE organizations DROP COLUMN name;\n")
    code, out, _ = run_command("lint_migrations", "--format", "json", str(tmp_path))
    payload = json.loads(out)
    assert code == 0 and (payload["errors"], payload["warnings"]) == (0, 1)
    assert payload["problems"] == [
        {
            "path": str(tmp_path / "tenant/002_change.sql"),
            "line": 4,
            "rule": "drop-column",
            "severity": "warning",
            "message": payload["problems"][0]["message"],
        }
    ]
    write(tmp_path, "tenant/003_bad.sql", "SET search_path = public;\n")
    code, out, _ = run_command("lint_migrations", "--format", "json", str(tmp_path / "tenant"))
    assert code == 1 and json.loads(out)["errors"] == 1


def test_paths_files_scope_folders_and_roots(tmp_path):
    a = write(tmp_path, "tenant/001_a.sql", "CREATE TABLE a (id int);\n")
    write(tmp_path, "public/001_p.sql", "COMMIT;\n")
    code, out, _ = run_command("lint_migrations", str(a))
    assert (code, out.strip()) == (0, "No problems in 1 file.")
    code, out, _ = run_command("lint_migrations", str(tmp_path / "tenant"), str(a))
    assert code == 0 and "in 1 file." in out  # the same file once
    code, out, _ = run_command("lint_migrations", str(tmp_path))
    assert code == 1 and "public/001_p.sql:4: error [transaction-control]" in out


@pytest.mark.parametrize("bad", ["missing", "loose/001_x.sql", "loose", "tenant/x.sql"])
def test_bad_paths_are_a_clean_error(tmp_path, bad):
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose/001_x.sql").write_text("SELECT 1;\n")
    (tmp_path / "tenant").mkdir()
    (tmp_path / "tenant/x.sql").write_text("SELECT 1;\n")
    code, out, err = run_command("lint_migrations", str(tmp_path / bad))
    assert code == 1 and out == "" and str(tmp_path / bad) in err and "Traceback" not in err


def test_unreadable_file_is_a_clean_error(tmp_path):
    path = tmp_path / "tenant" / "001_x.sql"
    path.parent.mkdir()
    path.write_bytes(b"CREATE TABLE \xff (id int);\n")
    code, _, err = run_command("lint_migrations", str(path))
    assert code == 1 and "not UTF-8" in err


def test_an_unnamed_concurrent_index_is_flagged_as_not_resumable(tmp_path):
    named = tenant_file(tmp_path / "a", "CREATE INDEX CONCURRENTLY idx_o ON organizations (name);")
    unnamed = tenant_file(tmp_path / "b", "CREATE INDEX CONCURRENTLY ON organizations (name);")
    assert "unnamed-concurrent-index" not in rules_of(named)
    assert hits(unnamed, "unnamed-concurrent-index") == [(4, "warning")]


# --- Citus ----------------------------------------------------------------------------------

CITUS_FILE = (
    "CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;\n"
    "CREATE TRIGGER stamped BEFORE INSERT ON organizations\n"
    "  FOR EACH ROW EXECUTE FUNCTION stamp();\n"
    "CREATE TABLE archived_organizations (note text) INHERITS (organizations);\n"
    "ALTER TABLE organizations ADD COLUMN plan_id int;\n"
    "ALTER TABLE organizations ADD CONSTRAINT organizations_plan_fk FOREIGN KEY (plan_id)\n"
    "  REFERENCES public.plans (id) NOT VALID;\n"
)


def test_citus_rules_flag_what_schema_based_sharding_refuses(tmp_path):
    problems = tenant_file(tmp_path, CITUS_FILE, squawk="off", **rules.CITUS_RULES)
    assert hits(problems, "citus-trigger") == [(5, "error")]
    assert hits(problems, "citus-inheritance") == [(7, "error")]
    assert hits(problems, "citus-shared-reference") == [(9, "warning")]
    # off on a plain server unless settings turn them on
    plain = tenant_file(tmp_path, CITUS_FILE, squawk="off")
    assert not rules_of(plain) & set(rules.CITUS_RULES)
    chosen = tenant_file(tmp_path, CITUS_FILE, squawk="off", **{"citus-trigger": "warning"})
    assert hits(chosen, "citus-trigger") == [(5, "warning")]
    assert rules.for_citus({"citus-trigger": "off"})["citus-trigger"] == "off"


def test_lint_migrations_citus_option(tmp_path):
    write(tmp_path, "tenant/001_organizations.sql", EARLIER)
    write(tmp_path, "tenant/002_change.sql", CITUS_FILE)
    code, out, _ = run_command("lint_migrations", str(tmp_path), "--format", "json")
    assert code == 0
    assert not {p["rule"] for p in json.loads(out)["problems"]} & set(rules.CITUS_RULES)
    code, out, _ = run_command("lint_migrations", str(tmp_path), "--citus", "--format", "json")
    assert code == 1
    found = {p["rule"] for p in json.loads(out)["problems"]}
    assert set(rules.CITUS_RULES) <= found


def test_code_left_to_run_after_the_file_is_refused(tmp_path):
    """What would run after a tenant file's own statements, when the engine works on."""
    problems = tenant_file(
        tmp_path,
        "CREATE TABLE evil (id int);\n"  # 4
        "CREATE CONSTRAINT TRIGGER t AFTER INSERT ON evil DEFERRABLE INITIALLY DEFERRED\n"  # 5
        "  FOR EACH ROW EXECUTE FUNCTION f();\n"
        "CREATE CONSTRAINT TRIGGER t2 AFTER INSERT ON evil FOR EACH ROW EXECUTE FUNCTION f();\n"
        "CREATE TEMP TABLE tt (id int) ON COMMIT DELETE ROWS;\n"  # 8
        "CREATE TABLE oc (id int) ON COMMIT DROP;\n"  # 9
        "CREATE TEMP VIEW pg_namespace AS SELECT 1;\n"  # 10
        "SELECT 1 INTO TEMP z;\n"  # 11
        "CREATE OPERATOR = (LEFTARG = varchar, RIGHTARG = varchar, FUNCTION = f);\n"  # 12
        "CREATE TRIGGER d BEFORE INSERT ON django_migrations FOR EACH ROW\n"  # 13
        "  EXECUTE FUNCTION f();\n"
        "CREATE RULE r AS ON INSERT TO django_migrations DO ALSO SELECT 1;\n"  # 15
        "DO $$ BEGIN CREATE TEMP TABLE inner_t (id int); END $$;\n"  # 16
        "SELECT ts_stat('SELECT 1'), table_to_xml('evil', true, true, '');\n",  # 17
    )
    assert hits(problems, "outlives-file") == [
        (n, "error") for n in (5, 8, 9, 10, 11, 12, 13, 15, 16)
    ]
    assert hits(problems, "forbidden-function") == [(17, "error")]
    assert "fires at COMMIT" in next(p for p in problems if p.line == 5).message


# --- what would outlive the schema's transaction on the engine's connection ------------------
OUTLIVES = [
    "PREPARE p1 AS SELECT 1;",
    "LISTEN tenant_events;",
    "DECLARE kept CURSOR WITH HOLD FOR SELECT 1;",
    "SELECT set_config('statement_timeout', '1ms', false);",
    "SELECT pg_catalog.set_config('app.flag', 'x', 1 > 0);",  # a computed is_local
    "DO $$ BEGIN PERFORM set_config('lock_timeout', '1', false); END $$;",
]
WITHIN = [
    "SELECT set_config('statement_timeout', '1ms', true);",
    "DECLARE ends CURSOR FOR SELECT 1;",
    "SET LOCAL statement_timeout = '1s';",
]


@pytest.mark.parametrize("sql", OUTLIVES)
def test_what_outlives_the_transaction_is_refused(tmp_path, sql):
    path = tmp_path / "tenant" / "005_lasting.sql"
    path.parent.mkdir()
    path.write_text(f"-- UP\n{sql}\n")
    refused = rules.refusals(source.load(path, "tenant"))
    assert [(p.line, p.rule, p.severity) for p in refused] == [(2, "session-state", "error")]


@pytest.mark.parametrize("sql", WITHIN)
def test_what_ends_with_the_transaction_is_allowed(tmp_path, sql):
    path = tmp_path / "tenant" / "005_local.sql"
    path.parent.mkdir()
    path.write_text(f"-- UP\n{sql}\n")
    assert rules.refusals(source.load(path, "tenant")) == []
