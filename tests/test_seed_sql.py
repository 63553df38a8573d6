"""The seed guide's example files and its SQL, verbatim, against our database."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.conftest import SEED_DIR, connect, ledger_versions, query, run_command, tables_in


@pytest.fixture
def two_tenants(public_ready, sql_dir):
    call_command(
        "tenant_create", "org_ayHu5XNaTNHMasO5", "--name", "Baltu Technologies", verbosity=0
    )
    call_command("tenant_create", "org_xyz123", "--name", "Other Company", verbosity=0)
    return sql_dir


def test_seed_003_public_file_applies_and_writes_its_own_ledger_row(two_tenants: Path):
    shutil.copy(SEED_DIR / "003_add_feature.sql", two_tenants / "public")
    code, out, err = run_command("migrate_tenants", "--public")
    assert code == 0, err
    assert "new_feature" in tables_in("public")
    assert query(
        "SELECT config_value, is_public FROM public.system_configurations "
        "WHERE config_key = 'feature_enabled'"
    ) == [("true", True)]
    row = query(
        "SELECT migration_name, rollback_sql, checksum IS NOT NULL, "
        "execution_time_ms IS NOT NULL FROM public.tenant_migrations "
        "WHERE tenant_schema = 'public' AND migration_version = '003'"
    )
    assert row == [
        (
            "003_add_feature.sql",
            "DROP TABLE IF EXISTS public.new_feature;\n"
            "DELETE FROM public.system_configurations WHERE config_key = "
            "'feature_enabled';\n",
            True,
            True,
        )
    ]
    assert "No pending migrations" in run_command("migrate_tenants", "--dry-run")[1]


def test_seed_004_tenant_file_without_up_marker_applies_to_every_tenant(two_tenants: Path):
    shutil.copy(SEED_DIR / "004_add_tenant_feature.sql", two_tenants / "tenant")
    code, out, err = run_command("migrate_tenants", "--tenants")
    assert code == 0, err
    for schema in ("tenant_org_ayhu5xnatnhmaso5", "tenant_org_xyz123"):
        assert "feature_data" in tables_in(schema)
        assert ledger_versions(schema) == ["001", "002", "003", "004"]
        indexes = {
            r[0] for r in query("SELECT indexname FROM pg_indexes WHERE schemaname = %s", [schema])
        }
        assert {"idx_feature_data_org_id", "idx_feature_data_type"} <= indexes
    # The file has no DOWN part: nothing recorded to roll back with.
    assert query(
        "SELECT count(*) FROM public.tenant_migrations WHERE migration_version = '004'"
        " AND rollback_sql IS NULL"
    ) == [(2,)]
    assert "feature_data" not in tables_in("public")


def test_monitoring_and_troubleshooting_queries_run_verbatim(two_tenants: Path):
    with connect() as conn:
        conn.execute(
            "INSERT INTO tenant_org_xyz123.organizations (auth0_org_id, name) "
            "VALUES ('org_xyz123', 'Other Company')"
        )
    # Check migration history
    rows = query("""
SELECT 
    tenant_schema,
    COUNT(*) as migration_count,
    MAX(applied_at) as last_migration
FROM public.tenant_migrations 
GROUP BY tenant_schema 
ORDER BY tenant_schema;
""")
    assert [(r[0], r[1]) for r in rows] == [
        ("public", 2),
        ("tenant_org_ayhu5xnatnhmaso5", 3),
        ("tenant_org_xyz123", 3),
    ]
    assert all(r[2] is not None for r in rows)

    # Check schema sizes
    rows = query("""
SELECT 
    schemaname,
    pg_size_pretty(sum(pg_total_relation_size(schemaname||'.'||tablename))::bigint) as size
FROM pg_tables 
WHERE schemaname LIKE 'tenant_%' 
GROUP BY schemaname 
ORDER BY sum(pg_total_relation_size(schemaname||'.'||tablename)) DESC;
""")
    assert {r[0] for r in rows} == {"tenant_org_ayhu5xnatnhmaso5", "tenant_org_xyz123"}
    assert rows[0][0] == "tenant_org_xyz123"  # the one holding a row is the larger
    assert all(r[1].endswith(("bytes", "kB", "MB")) for r in rows)

    # Check tenant activity: tenant creation is audited per schema.
    rows = query("""
SELECT 
    tr.organization_name,
    tr.schema_name,
    COUNT(al.id) as activity_count
FROM public.tenant_registry tr
LEFT JOIN public.audit_logs al ON al.tenant_schema = tr.schema_name
WHERE tr.status = 'active'
GROUP BY tr.organization_name, tr.schema_name
ORDER BY activity_count DESC;
""")
    assert sorted(rows) == [
        ("Baltu Technologies", "tenant_org_ayhu5xnatnhmaso5", 1),
        ("Other Company", "tenant_org_xyz123", 1),
    ]

    # Verify tenant registry
    rows = query("SELECT * FROM public.tenant_registry;")
    assert len(rows) == 2

    # Reset Migration Tracking (DANGEROUS!) — runs, and the next dry run shows the schema
    # as wholly pending again.
    with connect() as conn:
        deleted = conn.execute(
            "DELETE FROM public.tenant_migrations WHERE tenant_schema = 'tenant_org_xyz';"
        ).rowcount
        assert deleted == 0  # the guide's example schema does not exist here
        conn.execute(
            "DELETE FROM public.tenant_migrations WHERE tenant_schema = 'tenant_org_xyz123';"
        )
    out = run_command("migrate_tenants", "--dry-run")[1]
    assert "tenant_org_xyz123: 3 pending" in out


def test_seed_psql_schema_listing_pattern_matches_lower_case_schema(two_tenants: Path):
    # psql's `\dt tenant_org_ayHu5XNaTNHMasO5.*` folds the unquoted pattern to lower case,
    # which is why schema names are lower case: the pattern finds our schema.
    rows = query(
        "SELECT count(*) FROM pg_tables WHERE schemaname = lower(%s)",
        ["tenant_org_ayHu5XNaTNHMasO5"],
    )
    assert rows[0][0] >= 7
