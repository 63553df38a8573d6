"""The control room in a real browser (Playwright driving Debian's chromium) against a
live server on the real test database, with `manage.py db_worker` in its own process:
log in, create a tenant, see a new migration pending, run it, see it applied."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from tests.conftest import ledger_versions, tables_in
from tests.e2e.conftest import LONG

# Server-independent and slow: .ci/run runs these on its first server only.
pytestmark = pytest.mark.once

FEATURE_SQL = """-- Migration: 004_feature_data.sql
-- Description: a feature table in every tenant

-- UP: Apply migration
CREATE TABLE IF NOT EXISTS feature_data (id serial PRIMARY KEY, label text NOT NULL);

-- DOWN: Rollback migration
/*
DROP TABLE IF EXISTS feature_data;
*/
"""


@pytest.mark.e2e
def test_create_tenant_then_run_a_new_migration_from_the_admin(
    live_server: Any, sql_dir: Path, worker: subprocess.Popen, ops_user: User, browser: Any
) -> None:
    from playwright.sync_api import expect

    page = browser.new_page()
    page.set_default_timeout(LONG)

    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", "e2e-password-only")
    page.click("input[type=submit]")
    page.click("text=Tenants")

    page.click("text=Create tenant")
    page.fill("#id_auth0_org_id", "org_E2eBrowser1")
    page.fill("#id_organization_name", "Browser Co")
    page.click("input[type=submit][value='Create tenant']")
    # The new tenant's own page comes next; its row on the list shows its state.
    expect(page.locator("#content")).to_contain_text("tenant_org_e2ebrowser1")
    page.goto(f"{live_server.url}/admin/tenancy/tenant/")
    row = page.locator("#result_list tbody tr", has_text="org_E2eBrowser1")
    expect(row.locator("td.field-migration_state")).to_have_text("0 pending")
    expect(row.locator("td.field-organization_name, th.field-organization_name")).to_have_text(
        "Browser Co"
    )
    schema = "tenant_org_e2ebrowser1"
    assert ledger_versions(schema) == ["001", "002", "003"]

    (sql_dir / "tenant" / "004_feature_data.sql").write_text(FEATURE_SQL)
    page.reload()
    expect(row.locator("td.field-migration_state")).to_have_text("1 pending")

    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "run_pending_migrations")
    page.click("button[name=index]")
    # The run page follows the background run until the worker has finished it.
    expect(page.locator(".field-run_status .readonly")).to_have_text("Succeeded", timeout=LONG)
    expect(page.locator(".field-progress .readonly")).to_contain_text("1 / 1")
    expect(page.locator("#run-results tbody th", has_text=schema)).to_be_visible()
    expect(page.locator("#content h2").first).to_contain_text("Succeeded")
    expect(page.locator(".breadcrumbs")).to_contain_text("Succeeded")

    page.goto(f"{live_server.url}/admin/tenancy/tenant/")
    expect(row.locator("td.field-migration_state")).to_have_text("0 pending")
    expect(row.locator("td.field-last_migration")).to_contain_text("004_feature_data.sql")
    assert "feature_data" in tables_in(schema)
    assert ledger_versions(schema) == ["001", "002", "003", "004"]
    assert worker.poll() is None  # the worker ran it and is still serving
