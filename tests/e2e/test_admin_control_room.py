"""The control room's second pass in a real browser (Playwright, Debian's chromium) at an
operator's laptop width (1400 px) and a phone's (390 px), against a messy fleet: failed,
drifted, pending and missing-schema tenants."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from tenancy.services import runs, tenants
from tests.conftest import connect, query
from tests.e2e.conftest import LONG, log_in

pytestmark = [pytest.mark.once, pytest.mark.e2e]

BROKEN_SQL = """-- Migration: 004_broken.sql
-- UP
CREATE TABLE feature_data (id serial PRIMARY KEY, organization_id uuid REFERENCES nowhere(id));
"""


def make_fleet(sql_dir: Path, count: int = 21) -> dict[str, str]:
    """``count`` tenants (long names), then: a run over all of them where one schema fails
    (its table already exists), a new file pending everywhere, one tenant drifted (its
    ledger checksum changed), one whose schema is missing."""
    for i in range(count):
        tenants.create_tenant(
            f"org_Fleet{i:02d}", f"Fleet Member {i:02d} International Holdings", actor="test"
        )
    failed, drifted, missing = "tenant_org_fleet03", "tenant_org_fleet05", "tenant_org_fleet07"
    (sql_dir / "tenant" / "004_plain.sql").write_text("-- UP\nCREATE TABLE plain (id int);\n")
    with connect() as conn:
        conn.execute(f"CREATE TABLE {failed}.plain (id int)")
    report = runs.migrate(public=False, actor="test")
    (sql_dir / "tenant" / "005_more.sql").write_text("-- UP\nCREATE TABLE more (id int);\n")
    query(
        "UPDATE public.tenant_migrations SET checksum = 'edited' WHERE tenant_schema = %s "
        "AND migration_version = '002' RETURNING 1",
        [drifted],
    )
    with connect() as conn:
        conn.execute(f"DROP SCHEMA {missing} CASCADE")
    return {"failed": failed, "drifted": drifted, "missing": missing, "run": str(report.run_id)}


@pytest.fixture
def fleet(public_ready: None, sql_dir: Path) -> dict[str, str]:
    return make_fleet(sql_dir)


def overflow(page: Any) -> dict[str, int]:
    return page.evaluate(
        """() => ({
            page: document.documentElement.scrollWidth - document.documentElement.clientWidth,
            results: (() => { const r = document.querySelector('#changelist .results');
                               return r ? r.scrollWidth - r.clientWidth : 0; })(),
        })"""
    )


def test_tenant_list_fits_at_1400_and_reads_on_a_phone(
    live_server: Any, fleet: dict[str, str], ops_user: User, browser: Any
) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(LONG)
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/admin/tenancy/tenant/")
    expect(page.locator("#result_list tbody tr")).to_have_count(21)
    assert overflow(page) == {"page": 0, "results": 0}
    for column in ("status_badge", "migration_state", "last_migration", "created"):
        cell = page.locator(f"#result_list td.field-{column}").first
        expect(cell).to_be_visible()
        assert cell.bounding_box()["x"] + cell.bounding_box()["width"] <= 1400

    failed = page.locator("#result_list tbody tr", has_text="Member 03")
    expect(failed.locator(".tenancy-badge-error")).to_contain_text("1 failed")
    drifted = page.locator("#result_list tbody tr", has_text="Member 05")
    expect(drifted.locator(".tenancy-badge-error")).to_contain_text("drift")
    missing = page.locator("#result_list tbody tr", has_text="Member 07")
    expect(missing.locator(".tenancy-badge-error")).to_contain_text("schema missing")
    expect(
        page.locator("#result_list tbody tr", has_text="Member 10").locator(".tenancy-badge-warn")
    ).to_contain_text("1 pending")
    # Failed is red, not grey: the badge's colour is the admin's error colour.
    colour = failed.locator(".tenancy-badge-error").first.evaluate("e => getComputedStyle(e).color")
    assert colour not in ("rgb(102, 102, 102)", "rgb(51, 51, 51)")
    # Times to the second.
    expect(failed.locator("td.field-created")).to_have_text(
        re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
    )

    phone = browser.new_page(viewport={"width": 390, "height": 844})
    phone.set_default_timeout(LONG)
    log_in(phone, live_server.url)
    phone.goto(f"{live_server.url}/admin/tenancy/tenant/")
    assert overflow(phone)["page"] == 0
    first = phone.locator("#result_list tbody tr").first
    for column in ("organization_name", "status_badge", "migration_state"):
        cell = first.locator(f".field-{column}")
        expect(cell).to_be_visible()
        box = cell.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, column


def test_failed_run_page_shows_the_failed_schema_first(
    live_server: Any, fleet: dict[str, str], ops_user: User, browser: Any
) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(LONG)
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/admin/tenancy/migrationrun/{fleet['run']}/change/")
    first = page.locator("#run-results tbody tr").first
    expect(first.locator("th")).to_have_text(fleet["failed"])
    expect(first).to_contain_text("already exists")
    expect(page.locator("#run-summary")).to_contain_text(
        f"1 of 21 schema(s) failed: {fleet['failed']}"
    )
    expect(page.locator(".field-run_status .tenancy-badge-error")).to_have_text("Failed")
    expect(page.locator("#content h2").first).to_contain_text("Failed")
    first.locator("th a").click()  # the schema links to its tenant
    expect(page.locator("#migration-state")).to_contain_text("already exists")


def test_run_all_confirms_refuses_a_second_and_shows_rows_while_running(
    live_server: Any,
    public_ready: None,
    sql_dir: Path,
    worker: Any,
    ops_user: User,
    browser: Any,
) -> None:
    from playwright.sync_api import expect

    for i in range(3):
        tenants.create_tenant(f"org_Live{i}", actor="test")
    (sql_dir / "tenant" / "004_slow.sql").write_text(
        "-- UP\nSELECT pg_sleep(3);\nCREATE TABLE slow (id int);\n"
    )
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(LONG)
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/admin/tenancy/tenant/")
    page.click("text=Run all pending migrations")
    expect(page.locator("#run-all-files")).to_contain_text("tenant/004_slow.sql")
    expect(page.locator("#run-all-schemas li")).to_have_count(3)
    page.click("input[type=submit][value^='Yes, run']")
    expect(page.locator(".field-run_status")).to_contain_text("Running")
    # Rows appear while the run is still running; heading and status agree.
    expect(page.locator("#run-results tbody tr.run-row-succeeded").first).to_be_visible()
    expect(page.locator(".field-run_status")).to_contain_text("Running")
    expect(page.locator("#content h2").first).to_contain_text("Running")
    # The note under the fields agrees too: running, no longer waiting for the worker.
    expect(page.locator("#run-live")).to_contain_text("This run is running;")
    expect(page.locator("#run-live .js-run-queued-note")).to_be_hidden()
    run_url = page.url

    second = browser.new_page(viewport={"width": 1400, "height": 900})
    second.set_default_timeout(LONG)
    log_in(second, live_server.url)
    second.goto(f"{live_server.url}/admin/tenancy/tenant/run-all/")
    second.click("input[type=submit][value^='Yes, run']")
    expect(second.locator(".messagelist .error")).to_contain_text("already covers")
    assert second.url == run_url

    expect(page.locator(".field-run_status")).to_contain_text("Succeeded", timeout=LONG)
    expect(page.locator("#run-results tbody tr.run-row-succeeded")).to_have_count(3)
    assert query("SELECT count(*) FROM public.tenant_migration_runs WHERE actor = 'admin:ops'") == [
        (1,)
    ]


def test_suspend_through_its_confirmation_page(
    live_server: Any, public_ready: None, ops_user: User, browser: Any
) -> None:
    from playwright.sync_api import expect

    tenants.create_tenant("org_Suspend1", "Suspend Me", actor="test")
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(LONG)
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/admin/tenancy/tenant/")
    page.click("text=Suspend Me")
    page.click(".object-tools a.tenancy-lifecycle-suspend")
    expect(page.locator("#content h1")).to_contain_text("Suspend Suspend Me?")
    page.fill("#id_reason", "unpaid invoice")
    page.click("#lifecycle-confirm")
    expect(page.locator(".messagelist .success")).to_contain_text("active → suspended")
    expect(page.locator(".field-status .readonly")).to_have_text("Suspended")
    assert query(
        "SELECT status FROM public.tenant_registry WHERE schema_name = 'tenant_org_suspend1'"
    ) == [("suspended",)]
    assert query(
        "SELECT actor, details->>'reason' FROM public.audit_logs WHERE action = 'tenant.suspend'"
    ) == [("admin:ops", "unpaid invoice")]


def test_overview_counts_match_the_database(
    live_server: Any, fleet: dict[str, str], ops_user: User, browser: Any
) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(LONG)
    log_in(page, live_server.url)
    (tenants_n,) = query("SELECT count(*) FROM public.tenant_registry")[0]
    expect(page.locator("#fleet-tenants .n")).to_have_text(str(tenants_n))
    expect(page.locator("#fleet-failed .n")).to_have_text("1")
    expect(page.locator("#fleet-drifted .n")).to_have_text("1")
    expect(page.locator("#fleet-missing .n")).to_have_text("1")
    expect(page.locator("#fleet-pending .n")).to_have_text(str(tenants_n))
    expect(page.locator("#fleet-latest-runs")).to_contain_text(f"Run {fleet['run']}")
    page.click("#fleet-failed")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("#result_list tbody tr")).to_contain_text("Member 03")


def _ops_page(browser: Any, live_server: Any) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(LONG)
    log_in(page, live_server.url)
    return page


def _audit(action: str) -> list[tuple]:
    return query(
        "SELECT actor, tenant_schema, details->>'reason' FROM public.audit_logs "
        "WHERE action = %s ORDER BY id",
        [action],
    )


def test_archive_reactivate_recreate_drop_through_their_confirmation_pages(
    live_server: Any, public_ready: None, ops_user: User, browser: Any
) -> None:
    from playwright.sync_api import expect

    tenants.create_tenant("org_Life1", "Life One", actor="test")
    tenants.create_tenant("org_Life2", "Life Two", actor="test")
    one, two = "tenant_org_life1", "tenant_org_life2"
    query(
        f"INSERT INTO {one}.organizations (auth0_org_id, name) "
        "VALUES ('org_Life1', 'kept until recreate') RETURNING 1"
    )
    page = _ops_page(browser, live_server)
    page.goto(f"{live_server.url}/admin/tenancy/tenant/")
    page.click("text=Life One")
    tenant_url = page.url.split("?")[0]

    for verb, label, end in (
        ("archive", "Archive", "archived"),
        ("reactivate", "Reactivate", "active"),
    ):
        page.click(f".object-tools a.tenancy-lifecycle-{verb}")
        expect(page.locator("#content h1")).to_contain_text(f"{label} Life One?")
        page.fill("#id_reason", f"ticket {verb}")
        page.click("#lifecycle-confirm")
        expect(page.locator(".messagelist .success")).to_contain_text(f"→ {end}")
        assert page.url == tenant_url
        assert query("SELECT status FROM public.tenant_registry WHERE schema_name = %s", [one]) == [
            (end,)
        ]
        assert _audit(f"tenant.{verb}") == [("admin:ops", one, f"ticket {verb}")]

    page.click(".object-tools a.tenancy-lifecycle-recreate")
    expect(page.locator("#lifecycle-explain")).to_contain_text("ALL ITS DATA IS LOST")
    page.click("#lifecycle-confirm")
    expect(page.locator(".messagelist .success")).to_contain_text(f"Schema {one} recreated")
    assert query(f"SELECT count(*) FROM {one}.organizations") == [(0,)]  # rebuilt, empty
    assert _audit("tenant.recreate") == [("admin:ops", one, None)]

    page.goto(f"{live_server.url}/admin/tenancy/tenant/")
    page.click("text=Life Two")
    page.click(".object-tools a.tenancy-lifecycle-drop")
    page.fill("#id_confirm_schema", "tenant_org_wrong")
    page.click("#lifecycle-confirm")
    expect(page.locator(".messagelist .error")).to_contain_text("Drop refused")
    assert query("SELECT count(*) FROM pg_namespace WHERE nspname = %s", [two]) == [(1,)]
    page.fill("#id_confirm_schema", two)
    page.click("#lifecycle-confirm")
    expect(page.locator(".messagelist .success")).to_contain_text("dropped")
    assert query("SELECT count(*) FROM pg_namespace WHERE nspname = %s", [two]) == [(0,)]
    assert query("SELECT count(*) FROM public.tenant_registry WHERE schema_name = %s", [two]) == [
        (0,)
    ]
    assert [r[:2] for r in _audit("tenant.drop")] == [("admin:ops", two)]
    assert query("SELECT count(*) FROM pg_namespace WHERE nspname = %s", [one]) == [(1,)]


FEATURE_WITH_DOWN = """-- Migration: 004_feature.sql
-- UP
CREATE TABLE feature (id serial PRIMARY KEY, label text NOT NULL);
-- DOWN
DROP TABLE feature;
"""


def test_accept_checksum_mark_applied_and_rollback_through_their_confirmation_pages(
    live_server: Any, public_ready: None, sql_dir: Path, ops_user: User, browser: Any
) -> None:
    from playwright.sync_api import expect

    tenants.create_tenant("org_Fix1", "Fix One", actor="test")
    tenants.create_tenant("org_Fix2", "Fix Two", actor="test")
    one, two = "tenant_org_fix1", "tenant_org_fix2"
    (sql_dir / "tenant" / "004_feature.sql").write_text(FEATURE_WITH_DOWN)
    runs.migrate(public=False, only=[two], actor="test")  # two has 004 applied
    query(
        "UPDATE public.tenant_migrations SET checksum = 'edited' WHERE tenant_schema = %s "
        "AND migration_version = '002' RETURNING 1",
        [one],
    )

    def checksum(schema: str) -> str:
        return query(
            "SELECT checksum FROM public.tenant_migrations WHERE tenant_schema = %s "
            "AND migration_version = '002'",
            [schema],
        )[0][0]

    page = _ops_page(browser, live_server)
    page.goto(f"{live_server.url}/admin/tenancy/tenant/?q=org_Fix1")
    page.click("text=Fix One")
    tenant_url = page.url.split("?")[0]
    # Drift: the tenant page offers Accept checksum for the drifted file.
    page.click("#accept-002")
    expect(page.locator("#recovery-rows")).to_contain_text("tenant/002_")
    page.click("#recovery-confirm")
    expect(page.locator(".messagelist .success")).to_contain_text("Accepted the new checksum")
    assert page.url == tenant_url and checksum(one) == checksum(two)
    assert _audit("migrate.accept_checksum.schema") == [("admin:ops", one, None)]
    expect(page.locator("#drift-row")).to_have_count(0)

    # Pending 004: Mark as applied records it without running it.
    page.click("#fake-004")
    expect(page.locator("#recovery-rows")).to_contain_text("004_feature.sql")
    page.click("#recovery-confirm")
    expect(page.locator(".messagelist .success")).to_contain_text("marked 004 as applied")
    assert query(
        "SELECT count(*) FROM public.tenant_migrations WHERE tenant_schema = %s "
        "AND migration_version = '004'",
        [one],
    ) == [(1,)]
    assert query(
        "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename = 'feature'", [one]
    ) == [(0,)]
    assert _audit("migrate.fake.schema") == [("admin:ops", one, None)]

    # Roll back 004 on the other tenant: its DOWN runs, its ledger row goes.
    page.goto(f"{live_server.url}/admin/tenancy/tenant/?q=org_Fix2")
    page.click("text=Fix Two")
    page.click("#rollback-004")
    expect(page.locator("#recovery-rows")).to_contain_text("DROP TABLE feature;")
    page.click("#recovery-confirm")
    expect(page.locator(".messagelist .success")).to_contain_text("rolled back 004")
    assert query(
        "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename = 'feature'", [two]
    ) == [(0,)]
    assert query(
        "SELECT count(*) FROM public.tenant_migrations WHERE tenant_schema = %s "
        "AND migration_version = '004'",
        [two],
    ) == [(0,)]
    assert _audit("migrate.rollback.schema") == [("admin:ops", two, None)]
    # The other tenant keeps its (faked) 004.
    assert query(
        "SELECT count(*) FROM public.tenant_migrations WHERE tenant_schema = %s "
        "AND migration_version = '004'",
        [one],
    ) == [(1,)]
