"""A staged rollout's approval gate in a real browser (Playwright, Debian's chromium) with
`manage.py db_worker` in its own process: the rollout waits after its canary, the rest of
the fleet is untouched until a person clicks "Approve next stage", then the worker
finishes it and the page, following it live, shows it completed."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from tenancy.engine.errors import EXIT_AWAITING_APPROVAL
from tenancy.services import rollout_policy, rollouts
from tests.conftest import ledger_versions
from tests.e2e.conftest import LONG, log_in
from tests.test_engine_runs import add, make_tenants

pytestmark = pytest.mark.once

FILE = "-- UP\nCREATE TABLE gated (id int);\n-- DOWN\nDROP TABLE gated;\n"


@pytest.mark.e2e
def test_the_approval_gate_holds_until_approved_in_the_admin(
    live_server: Any, sql_dir: Path, worker: subprocess.Popen, ops_user: User, browser: Any
) -> None:
    from playwright.sync_api import expect

    # Before the browser starts (Playwright's event loop refuses ORM calls in this thread).
    fleet = make_tenants(4)
    add(sql_dir, "004_gated.sql", FILE)
    stages = rollout_policy.ad_hoc_policy(
        canary="1", wave_size=None, max_failures=None, pause_after_canary=True, jobs=1
    )
    report = rollouts.start(stages, policy="ad hoc", actor="test")
    assert report.exit_code == EXIT_AWAITING_APPROVAL
    rollout_id = report.record.id

    page = browser.new_page()
    page.set_default_timeout(LONG)
    log_in(page, live_server.url)
    expect(page.locator("#fleet-active-rollout")).to_contain_text(f"Rollout {rollout_id}")
    page.click(f"#fleet-active-rollout a:has-text('Rollout {rollout_id}')")
    expect(page.locator("#rollout-state")).to_have_text("Awaiting approval")
    expect(page.locator("#stage-1 .js-stage-state")).to_have_text("done")
    expect(page.locator("#stage-2 .js-stage-state")).to_have_text("pending")
    assert ["004" in ledger_versions(s) for s in fleet] == [True, False, False, False]

    page.click("button:has-text('Approve next stage')")
    # The worker drives the rest; the page follows it and reloads when its state changes.
    expect(page.locator("#rollout-state")).to_have_text("Completed", timeout=LONG)
    expect(page.locator("#stage-2 .js-stage-applied")).to_have_text("3 / 3")
    assert all("004" in ledger_versions(s) for s in fleet)
    expect(page.locator(".field-approved .readonly")).to_contain_text("stage 1 by admin:ops")
