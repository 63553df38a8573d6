"""Every control-room page at 1400 px and at 390 px, in Debian's chromium: nothing wider
than the window (a 255-character organization name without a space included), the
buttons clear of the heading, links readable on the blue module headers, and the red
badges readable in the dark theme."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from tenancy.models import Tenant
from tenancy.services import tenants
from tests.e2e.conftest import LONG, log_in
from tests.e2e.test_admin_control_room import make_fleet

pytestmark = [pytest.mark.once, pytest.mark.e2e]

LONG_NAME = "N" * 255  # the most organization_name holds, and no place to break it


@pytest.fixture
def pages(public_ready: None, sql_dir: Path) -> dict[str, str]:
    # Before the browser starts: Django refuses ORM calls while Playwright's loop runs.
    fleet = make_fleet(sql_dir, count=8)
    tenants.create_tenant("org_Longname", LONG_NAME, actor="test")
    long_pk = Tenant.objects.get(auth0_org_id="org_Longname").pk
    drifted = Tenant.objects.get(schema_name=fleet["drifted"]).pk
    return {
        "overview": "/admin/",
        "tenant list": "/admin/tenancy/tenant/",
        "tenant page": f"/admin/tenancy/tenant/{drifted}/change/",
        "long-named tenant": f"/admin/tenancy/tenant/{long_pk}/change/",
        "history": f"/admin/tenancy/tenant/{long_pk}/history/",
        "suspend": f"/admin/tenancy/tenant/{long_pk}/lifecycle/suspend/",
        "drop": f"/admin/tenancy/tenant/{long_pk}/lifecycle/drop/",
        "mark as applied": f"/admin/tenancy/tenant/{long_pk}/recover/fake/?version=005",
        "accept checksum": f"/admin/tenancy/tenant/{drifted}/recover/accept-checksum/?version=002",
        "run-all": "/admin/tenancy/tenant/run-all/",
        "failed run": f"/admin/tenancy/migrationrun/{fleet['run']}/change/",
        "runs": "/admin/tenancy/migrationrun/",
        "audit log": "/admin/tenancy/auditlog/",
        "create": "/admin/tenancy/tenant/add/",
    }


def widths(page: Any) -> dict[str, int]:
    return page.evaluate(
        """() => ({
            page: document.documentElement.scrollWidth - document.documentElement.clientWidth,
            results: (() => { const r = document.querySelector('#changelist .results');
                               return r ? r.scrollWidth - r.clientWidth : 0; })(),
        })"""
    )


def test_no_page_is_wider_than_the_window(
    live_server: Any, pages: dict[str, str], ops_user: User, browser: Any
) -> None:
    for width, height in ((1400, 900), (390, 844)):
        page = browser.new_page(viewport={"width": width, "height": height})
        page.set_default_timeout(LONG)
        log_in(page, live_server.url)
        wide = {}
        for name, url in pages.items():
            page.goto(f"{live_server.url}{url}")
            measured = widths(page)
            if measured["page"] > 0:
                wide[name] = measured
            # At 1400 px the lists themselves fit too (the audit log's details included);
            # on a phone a list other than the tenants' may scroll inside its box.
            if width == 1400 and measured["results"] > 0:
                wide[name] = measured
        assert wide == {}, f"wider than {width} px: {wide}"
        page.close()


def test_buttons_clear_the_heading_and_header_links_read(
    live_server: Any, pages: dict[str, str], ops_user: User, browser: Any
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(LONG)
    log_in(page, live_server.url)
    for name in ("tenant page", "long-named tenant", "failed run"):
        page.goto(f"{live_server.url}{pages[name]}")
        heading = page.locator("#content h2").first.bounding_box()
        for button in page.locator(".object-tools li").all():
            box = button.bounding_box()
            apart = (
                box["y"] >= heading["y"] + heading["height"]
                or box["y"] + box["height"] <= heading["y"]
                or box["x"] >= heading["x"] + heading["width"]
            )
            assert apart, f"{name}: {button.inner_text()!r} covers the heading"
    page.goto(f"{live_server.url}{pages['tenant page']}")
    link = page.locator("#audit-rows h2 a")
    colour, background = link.evaluate(
        "a => [getComputedStyle(a).color, getComputedStyle(a.parentElement).backgroundColor]"
    )
    assert contrast(colour, background) >= 4.5, (colour, background)


def luminance(css: str) -> float:
    channels = [int(x) for x in css[css.index("(") + 1 : css.index(")")].split(",")[:3]]
    lin = [
        c / 255 / 12.92 if c / 255 <= 0.03928 else ((c / 255 + 0.055) / 1.055) ** 2.4
        for c in channels
    ]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_state_badges_read_in_both_themes(
    live_server: Any, pages: dict[str, str], ops_user: User, browser: Any, scheme: str
) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 900}, color_scheme=scheme)
    page = context.new_page()
    page.set_default_timeout(LONG)
    log_in(page, live_server.url)
    for name in ("tenant list", "runs", "overview", "failed run"):
        page.goto(f"{live_server.url}{pages[name]}")
        badges = page.locator(".tenancy-badge")
        assert badges.count() > 0, name
        for badge in badges.all():
            colour, background, kind = badge.evaluate(
                "b => [getComputedStyle(b).color, getComputedStyle(b).backgroundColor, b.className]"
            )
            assert background != "rgba(0, 0, 0, 0)", f"{name}: {kind} has no colour"
            assert contrast(colour, background) >= 4.5, (scheme, name, kind, colour, background)
    context.close()
