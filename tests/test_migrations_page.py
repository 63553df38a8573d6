"""The admin's Migrations page (tenancy/admin_migrations.py): per step, the fleet's counts
(applied, pending, failed, drifted, out of order) as the database has them; each count
opens the tenant list narrowed to those schemas; a step's page shows its SQL and, for a
drifted file, the diff from the text it was applied with; the fleet-wide actions (accept
checksum, retry failed, mark as applied with tenant_verify's findings) each behind its
permission and a confirmation page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tenancy.services import runs
from tests.conftest import ledger_versions, query
from tests.test_admin import client_for, reverse, user
from tests.test_engine_runs import POISONABLE, add, cure, make_tenants, poison

NOTES = "-- UP\nCREATE TABLE notes (id int);\n-- DOWN\nDROP TABLE notes;\n"
STEP_ROW = re.compile(r'<tr class="step-row" id="step-tenant-(\d+)">(.*?)</tr>', re.S)


def counts(html: str) -> dict[str, dict[str, int]]:
    """The tenant rows of the page: version -> {category: count}."""
    found = {}
    for version, row in STEP_ROW.findall(html):
        cells = dict(re.findall(r"count-(\w+)[^>]*>(?:<a [^>]*>)?(\d+)", row))
        found[version] = {k: int(v) for k, v in cells.items()}
    return found


@pytest.fixture
def fleet(public_ready, sql_dir: Path) -> list[str]:
    """Three tenants: 004 applied in two, failed in the third; 005 pending everywhere; the
    first tenant's 002 drifted (its ledger checksum no longer the file's)."""
    schemas = make_tenants(3)
    add(sql_dir, "004_invoices.sql", POISONABLE)
    poison(schemas[2])
    assert runs.migrate(public=False, actor="test").exit_code == 1
    add(sql_dir, "005_notes.sql", NOTES)
    query(
        "UPDATE public.tenant_migrations SET checksum = 'edited' WHERE tenant_schema = %s "
        "AND migration_version = '002' RETURNING 1",
        [schemas[0]],
    )
    return schemas


def test_the_counts_match_the_database(fleet, superuser):
    html = client_for(superuser).get(reverse("admin:tenancy_tenantmigration_changelist"))
    assert html.status_code == 200
    seen = counts(html.content.decode())
    zero = {"failed": 0, "drifted": 0, "out_of_order": 0}
    assert seen["001"] == {"applied": 3, "pending": 0, **zero}
    assert seen["002"] == {"applied": 3, "pending": 0, **zero, "drifted": 1}
    assert seen["004"] == {"applied": 2, "pending": 1, **zero, "failed": 1}
    assert seen["005"] == {"applied": 0, "pending": 3, **zero}
    # Against the ledger itself.
    applied = query(
        "SELECT migration_version, count(*) FROM public.tenant_migrations "
        "WHERE tenant_schema LIKE 'tenant\\_%%' GROUP BY 1"
    )
    assert {v: seen[v]["applied"] for v, _ in applied} == dict(applied)


def test_each_count_opens_the_tenant_list_narrowed_to_those_schemas(fleet, superuser):
    c = client_for(superuser)
    page = c.get(reverse("admin:tenancy_tenantmigration_changelist")).content.decode()
    failed_link = re.search(r'count-failed[^>]*><a href="([^"]+)"', STEP_ROW.findall(page)[3][1])
    assert failed_link and "step=failed:tenant:004" in failed_link[1]
    listed = c.get(failed_link[1].replace("&amp;", "&")).content.decode()
    assert fleet[2] in listed and fleet[0] not in listed and fleet[1] not in listed


def accept_002(schema: str) -> None:
    from tenancy.services import recovery

    recovery.accept_checksum("002", public=False, only=[schema], actor="test")


def test_the_step_page_shows_the_sql_and_the_diff_of_a_drifted_file(fleet, superuser, sql_dir):
    accept_002(fleet[0])  # the drift would stop the run that applies 004
    cure(fleet[2])
    assert runs.migrate(public=False, actor="test").exit_code == 0
    edited = POISONABLE.replace("amount numeric NOT NULL", "amount numeric NOT NULL, note text")
    (sql_dir / "tenant" / "004_invoices.sql").write_text(edited)
    page = client_for(superuser).get(
        reverse("admin:tenancy_migrations_step", args=["tenant", "004"])
    )
    html = page.content.decode()
    assert (
        "CREATE TABLE invoices (id serial PRIMARY KEY, amount numeric NOT NULL, note text);" in html
    )
    assert (
        '<div class="del">-CREATE TABLE invoices (id serial PRIMARY KEY, amount numeric NOT NULL);'
        in html
    )
    added = "+CREATE TABLE invoices (id serial PRIMARY KEY, amount numeric NOT NULL, note text);"
    assert f'<div class="add">{added}' in html
    assert "Accept checksum (3)…" in html


def test_fleet_wide_accept_checksum_clears_the_drift(fleet, superuser):
    c = client_for(superuser)
    url = reverse("admin:tenancy_migrations_action", args=["tenant", "002", "accept-checksum"])
    confirm = c.get(url).content.decode()
    assert fleet[0] in confirm and 'id="action-confirm"' in confirm
    c.post(url, {"post": "yes"})
    checksum = query(
        "SELECT count(DISTINCT checksum) FROM public.tenant_migrations "
        "WHERE migration_version = '002' AND tenant_schema <> 'public'"
    )
    assert checksum == [(1,)]
    seen = counts(c.get(reverse("admin:tenancy_tenantmigration_changelist")).content.decode())
    assert seen["002"]["drifted"] == 0


def test_retry_failed_from_the_step_page_queues_a_run_of_the_failed_schemas(fleet, superuser):
    from tenancy.models import MigrationRun

    cure(fleet[2])
    c = client_for(superuser)
    url = reverse("admin:tenancy_migrations_action", args=["tenant", "004", "retry"])
    assert fleet[2] in c.get(url).content.decode()
    response = c.post(url, {"post": "yes"})
    run = MigrationRun.objects.order_by("-pk").first()
    assert run.status == "queued" and run.options["only"] == [fleet[2]]
    assert response["Location"] == reverse("admin:tenancy_migrationrun_change", args=[run.pk])


def test_mark_applied_shows_tenant_verify_findings_then_records_without_running(fleet, superuser):
    accept_002(fleet[0])  # a drifted schema refuses to record anything
    c = client_for(superuser)
    url = reverse("admin:tenancy_migrations_action", args=["tenant", "005", "fake"])
    confirm = c.get(url).content.decode()
    assert 'id="action-findings"' in confirm and "005_notes.sql" in confirm
    c.post(url, {"post": "yes"})
    for schema in fleet[:2]:
        assert "005" in ledger_versions(schema)
        assert not query(
            "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = 'notes'", [schema]
        ), "marked, not run"


@pytest.mark.parametrize(
    ("version", "action", "needs"),
    [
        ("002", "accept-checksum", "tenancy.accept_checksum_tenant"),
        ("004", "retry", "tenancy.run_migrations"),
        ("005", "fake", "tenancy.fake_migration_tenant"),
    ],
)
def test_each_action_needs_its_permission(fleet, version, action, needs):
    viewer = user("viewer", "tenancy.view_tenantmigration", "tenancy.view_tenant")
    c = client_for(viewer)
    step = c.get(reverse("admin:tenancy_migrations_step", args=["tenant", version]))
    assert step.status_code == 200 and f"step-action-{action}" not in step.content.decode()
    url = reverse("admin:tenancy_migrations_action", args=["tenant", version, action])
    before = query("SELECT count(*), string_agg(checksum, ',') FROM public.tenant_migrations")
    assert c.post(url, {"post": "yes"}).status_code == 403
    assert (
        query("SELECT count(*), string_agg(checksum, ',') FROM public.tenant_migrations") == before
    )
    allowed = client_for(user("holder", needs, "tenancy.view_tenantmigration"))
    assert allowed.get(url).status_code == 200
