"""`make screenshots`: PNGs of the control room at 1400x900, 1280x800 and 390x844 (light
theme), into $SCREENSHOTS_DIR (git-ignored `screenshots/`). Skipped unless that variable is
set."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from tenancy.models import AuditLog, Tenant
from tenancy.services import rollout_policy, rollouts
from tests.e2e.conftest import LONG, log_in
from tests.e2e.test_admin_control_room import make_fleet

pytestmark = [pytest.mark.once, pytest.mark.e2e]
TARGET = os.environ.get("SCREENSHOTS_DIR")
SIZES = {"desktop": (1400, 900), "laptop": (1280, 800), "phone": (390, 844)}


@pytest.fixture
def shot_data(public_ready: None, sql_dir: Path) -> dict[str, Any]:
    # Before the browser starts: Django refuses ORM calls while Playwright's loop runs.
    fleet = make_fleet(sql_dir)
    # A rollout waiting at its gate: its canary got the pending file, the rest waits.
    stages = rollout_policy.ad_hoc_policy(
        canary="1", wave_size=None, max_failures=None, pause_after_canary=True, jobs=1
    )
    return {
        **fleet,
        "pk": Tenant.objects.get(schema_name="tenant_org_fleet04").pk,
        "drifted_pk": Tenant.objects.get(schema_name=fleet["drifted"]).pk,
        "run_row": AuditLog.objects.get(action="migrate.run", details__run_id=int(fleet["run"])).pk,
        "rollout": rollouts.start(stages, policy="ad hoc", actor="admin:ops").record.id,
    }


@pytest.mark.skipif(not TARGET, reason="make screenshots sets SCREENSHOTS_DIR")
def test_screenshots(
    live_server: Any, shot_data: dict[str, Any], ops_user: User, browser: Any
) -> None:
    fleet, pk = shot_data, shot_data["pk"]
    out = Path(str(TARGET))
    out.mkdir(parents=True, exist_ok=True)
    pages = {
        "overview": "/admin/",
        "tenant-list": "/admin/tenancy/tenant/",
        "failed-run": f"/admin/tenancy/migrationrun/{fleet['run']}/change/",
        "confirm-suspend": f"/admin/tenancy/tenant/{pk}/lifecycle/suspend/",
        "confirm-run-all": "/admin/tenancy/tenant/run-all/",
        "confirm-accept-checksum": (
            f"/admin/tenancy/tenant/{shot_data['drifted_pk']}/recover/accept-checksum/?version=002"
        ),
        "tenant-page": f"/admin/tenancy/tenant/{shot_data['drifted_pk']}/change/",
        "runs": "/admin/tenancy/migrationrun/",
        "audit-log": "/admin/tenancy/auditlog/",
        "audit-log-run-schemas": f"/admin/tenancy/auditlog/?of={shot_data['run_row']}",
        "rollouts": "/admin/tenancy/rollout/",
        "rollout": f"/admin/tenancy/rollout/{shot_data['rollout']}/change/",
        "migrations": "/admin/tenancy/tenantmigration/",
        "migration-step-drifted": "/admin/tenancy/tenantmigration/step/tenant/002/",
        "confirm-mark-applied": "/admin/tenancy/tenantmigration/step/tenant/004/fake/",
    }
    for size, (width, height) in SIZES.items():
        page = browser.new_page(viewport={"width": width, "height": height})
        page.set_default_timeout(LONG)
        log_in(page, live_server.url)
        for name, url in pages.items():
            page.goto(f"{live_server.url}{url}")
            page.screenshot(path=str(out / f"{name}-{size}.png"), full_page=True)
        page.close()
    assert len(list(out.glob("*.png"))) >= len(pages) * len(SIZES)
