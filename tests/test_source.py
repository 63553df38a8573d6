"""Script discovery and parsing: the seed's file format, checksums, classification."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenancy.engine import source, statements
from tests.conftest import SEED_DIR


def write(tmp_path: Path, name: str, text: str, scope: str = "tenant") -> Path:
    (tmp_path / scope).mkdir(exist_ok=True)
    path = tmp_path / scope / name
    path.write_text(text)
    return path


def test_seed_003_has_header_up_and_commented_down():
    m = source.load(SEED_DIR / "003_add_feature.sql", "public")
    assert (m.version, m.name) == ("003", "003_add_feature.sql")
    assert m.description == "Add new feature to public schema"
    assert m.up_sql.startswith("-- Add new table to public schema")
    assert "CREATE TABLE IF NOT EXISTS public.new_feature" in m.up_sql
    assert "DROP TABLE" not in m.up_sql.split("'DROP TABLE IF EXISTS public.new_feature;'")[0]
    assert m.down_sql == (
        "DROP TABLE IF EXISTS public.new_feature;\n"
        "DELETE FROM public.system_configurations WHERE config_key = 'feature_enabled';\n"
    )
    assert m.transactional and len(m.checksum) == 64


def test_seed_004_without_up_marker_is_all_up_and_has_no_down():
    m = source.load(SEED_DIR / "004_add_tenant_feature.sql", "tenant")
    assert m.up_sql.lstrip().startswith("-- Migration: 004_add_tenant_feature.sql")
    assert "CREATE POLICY tenant_isolation_policy" in m.up_sql
    assert m.down_sql is None


def test_uncommented_down_part(tmp_path):
    p = write(tmp_path, "005_x.sql", "-- UP\nCREATE TABLE x (a int);\n-- DOWN\nDROP TABLE x;\n")
    m = source.load(p, "tenant")
    assert m.up_sql == "CREATE TABLE x (a int);\n" and m.down_sql == "DROP TABLE x;\n"


def test_checksum_ignores_line_endings_but_not_content(tmp_path):
    a = source.load(write(tmp_path, "001_a.sql", "CREATE TABLE a (x int);\n"), "tenant")
    b = source.load(write(tmp_path, "002_a.sql", "CREATE TABLE a (x int);\r\n"), "tenant")
    c = source.load(write(tmp_path, "003_a.sql", "CREATE TABLE a (x bigint);\n"), "tenant")
    assert a.checksum == b.checksum != c.checksum


def test_concurrent_index_is_recognised_by_the_parser(tmp_path):
    p = write(
        tmp_path,
        "001_i.sql",
        "-- a comment saying CREATE INDEX CONCURRENTLY\nCREATE INDEX i ON t (a);\n",
    )
    assert source.load(p, "tenant").transactional  # words in a comment do not count
    p = write(tmp_path, "002_i.sql", "create index concurrently if not exists i on t (a);\n")
    m = source.load(p, "tenant")
    assert not m.transactional and m.non_transactional_reason == "CREATE INDEX CONCURRENTLY"


def test_header_directive_marks_a_file_non_transactional(tmp_path):
    p = write(tmp_path, "001_v.sql", "-- transactional: false\nVACUUM ANALYZE;\n")
    m = source.load(p, "tenant")
    assert not m.transactional
    p = write(tmp_path, "002_v.sql", "-- transactional: maybe\nSELECT 1;\n")
    with pytest.raises(source.SourceError, match="true or false"):
        source.load(p, "tenant")


def test_discover_orders_numerically_and_refuses_duplicates(tmp_path):
    write(tmp_path, "10_b.sql", "SELECT 1;")
    write(tmp_path, "9_a.sql", "SELECT 1;")
    assert [m.name for m in source.discover(tmp_path, "tenant")] == ["9_a.sql", "10_b.sql"]
    write(tmp_path, "010_c.sql", "SELECT 1;")
    with pytest.raises(source.SourceError, match="share version"):
        source.discover(tmp_path, "tenant")


def test_bad_file_names_and_empty_files_are_refused(tmp_path):
    with pytest.raises(source.SourceError, match="NNN_description.sql"):
        source.load(write(tmp_path, "add_feature.sql", "SELECT 1;"), "tenant")
    with pytest.raises(source.SourceError, match="no SQL statement"):
        source.load(write(tmp_path, "001_empty.sql", "-- UP\n-- nothing\n"), "tenant")
    with pytest.raises(source.SourceError, match="syntax error"):
        source.load(write(tmp_path, "002_bad.sql", "CREATE TABLEE x ();"), "tenant")


def test_placeholders_render_as_quoted_identifiers():
    text = "GRANT SELECT ON {{schema}}.t TO {{ tenant_role }};"
    out = statements.render(text, {"schema": "tenant_org_a", "tenant_role": 'we"ird'})
    assert out == 'GRANT SELECT ON "tenant_org_a".t TO "we""ird";'
    with pytest.raises(statements.StatementError, match="Unknown placeholder"):
        statements.render("SELECT {{nope}}", {"schema": "x"})


def test_split_respects_dollar_quotes():
    parts = statements.split("DO $$ BEGIN PERFORM 1; END $$; SELECT ';';")
    assert parts == ["DO $$ BEGIN PERFORM 1; END $$", "SELECT ';'"]


def test_project_migrations_all_parse():
    """Whatever files the project holds, they load (names, UP/DOWN, parser)."""
    root = Path(__file__).resolve().parent.parent / "migrations_sql"
    for scope in ("public", "tenant"):
        assert source.discover(root, scope), scope
