"""The Migrations page in a real browser (Playwright, Debian's chromium): a drifted file's
row, its diff on the step's page, and a fleet-wide Accept checksum from there that clears
the drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from tests.conftest import query
from tests.e2e.conftest import LONG, log_in
from tests.test_engine_runs import make_tenants

pytestmark = pytest.mark.once


@pytest.mark.e2e
def test_fleet_wide_accept_checksum_from_the_migrations_page_clears_the_drift(
    live_server: Any, sql_dir: Path, ops_user: User, browser: Any
) -> None:
    from playwright.sync_api import expect

    # Before the browser starts (Playwright's event loop refuses ORM calls in this thread).
    fleet = make_tenants(3)
    path = sql_dir / "tenant" / "002_job_postings.sql"
    path.write_text(path.read_text().replace("CREATE TABLE", "-- reviewed\nCREATE TABLE", 1))

    page = browser.new_page()
    page.set_default_timeout(LONG)
    log_in(page, live_server.url)
    page.click("a[href='/admin/tenancy/tenantmigration/']")
    row = page.locator("#step-tenant-002")
    expect(row.locator(".count-drifted")).to_have_text("3")
    row.locator("th a").click()
    expect(page.locator("#step-diff .add")).to_contain_text("+-- reviewed")
    page.click("#step-actions .step-action-accept-checksum")
    expect(page.locator("#action-schemas")).to_contain_text(fleet[0])
    page.click("#action-confirm")
    expect(page.locator(".messagelist")).to_contain_text("Accepted the new checksum")
    page.click(".breadcrumbs a:has-text('Migrations')")
    expect(page.locator("#step-tenant-002 .count-drifted")).to_have_text("0")
    checksums = query(
        "SELECT count(DISTINCT checksum) FROM public.tenant_migrations "
        "WHERE migration_version = '002' AND tenant_schema = ANY(%s)",
        [fleet],
    )
    assert checksums == [(1,)]
