"""Every control-room page at 1400 px, 1280 px and 390 px, in Debian's chromium: nothing
wider than the window (a 255-character organization name without a space included), the
lists without horizontal scrolling at 1400 and 1280 px (the runs list's Started and
Duration on screen), the tenant list dense with whole file names, the overview's cards on
a grid, a run's bar sized to its counts, the buttons clear of the heading, links readable
on the blue module headers, and the red badges readable in the dark theme."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from tenancy.models import AuditLog, Tenant
from tenancy.services import rollout_policy, rollouts, tenants
from tests.e2e.conftest import LONG, log_in
from tests.e2e.test_admin_control_room import make_fleet

pytestmark = [pytest.mark.once, pytest.mark.e2e]

LONG_NAME = "N" * 255  # the most organization_name holds, and no place to break it
SIZES = ((1400, 900), (1280, 800), (390, 844))
# The lists: at 1400 and 1280 px none scrolls sideways (on a phone one may, in its box).
LISTS = ("tenant list", "runs", "audit log", "audit log, a run's schemas", "rollouts")


@pytest.fixture
def pages(public_ready: None, sql_dir: Path) -> dict[str, str]:
    # Before the browser starts: Django refuses ORM calls while Playwright's loop runs.
    fleet = make_fleet(sql_dir, count=8)
    tenants.create_tenant("org_Longname", LONG_NAME, actor="test", tags=["enterprise", "eu"])
    long_pk = Tenant.objects.get(auth0_org_id="org_Longname").pk
    drifted = Tenant.objects.get(schema_name=fleet["drifted"]).pk
    run_row = AuditLog.objects.get(action="migrate.run", details__run_id=int(fleet["run"])).pk
    stages = rollout_policy.ad_hoc_policy(
        canary="1", wave_size=None, max_failures=None, pause_after_canary=True, jobs=1
    )
    rollout = rollouts.start(stages, policy="ad hoc", actor="test").record.id
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
        "audit log, a run's schemas": f"/admin/tenancy/auditlog/?of={run_row}",
        "rollouts": "/admin/tenancy/rollout/",
        "rollout": f"/admin/tenancy/rollout/{rollout}/change/",
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
    for width, height in SIZES:
        page = browser.new_page(viewport={"width": width, "height": height})
        page.set_default_timeout(LONG)
        log_in(page, live_server.url)
        wide = {}
        for name, url in pages.items():
            page.goto(f"{live_server.url}{url}")
            measured = widths(page)
            if measured["page"] > 0:
                wide[name] = measured
            # At 1400 and 1280 px the lists themselves fit too (the audit log's details
            # included); on a phone a list other than the tenants' may scroll in its box.
            if width >= 1280 and measured["results"] > 0:
                wide[name] = measured
        assert wide == {}, f"wider than {width} px: {wide}"
        page.close()


def test_every_list_is_checked_at_each_width(pages: dict[str, str]) -> None:
    assert set(LISTS) <= set(pages)


def right_edges(page: Any, selectors: list[str]) -> dict[str, float]:
    return page.evaluate(
        """sels => Object.fromEntries(sels.map(s => {
             const e = document.querySelector(s);
             if (!e) return [s, -1];
             const r = e.getBoundingClientRect();
             return [s, r.width > 0 && r.height > 0 ? r.right : -1];
           }))""",
        selectors,
    )


def test_the_runs_list_fits_at_1280_with_started_and_duration_on_screen(
    live_server: Any, pages: dict[str, str], ops_user: User, browser: Any
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(LONG)
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}{pages['runs']}")
    assert widths(page) == {"page": 0, "results": 0}
    box = page.evaluate(
        "() => document.querySelector('#changelist .results').getBoundingClientRect().right"
    )
    cells = [
        "#result_list th.column-started",
        "#result_list th.column-took",
        "#result_list tbody tr td.field-started",
        "#result_list tbody tr td.field-took",
    ]
    edges = right_edges(page, cells)
    assert all(0 < edge <= min(box, 1280) + 0.5 for edge in edges.values()), (box, edges)
    page.close()


def single_lines(page: Any, selector: str) -> list[int]:
    """How many lines each element's text takes."""
    return page.evaluate(
        """sel => Array.from(document.querySelectorAll(sel)).map(e => {
             const r = document.createRange(); r.selectNodeContents(e);
             return new Set(Array.from(r.getClientRects()).map(x => Math.round(x.top))).size;
           })""",
        selector,
    )


@pytest.mark.parametrize("width", [1400, 1280])
def test_the_tenant_list_is_dense_with_a_schema_column_and_whole_names(
    live_server: Any, pages: dict[str, str], ops_user: User, browser: Any, width: int
) -> None:
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.set_default_timeout(LONG)
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}{pages['tenant list']}")
    headers = page.evaluate(
        "() => Array.from(document.querySelectorAll('#result_list thead th'))"
        ".map(t => t.className.match(/column-(\\w+)/)?.[1] || '')"
    )
    assert headers.index("schema") == headers.index("migration_state") + 1, headers
    rows = page.evaluate(
        "() => Array.from(document.querySelectorAll('#result_list tbody tr'))"
        ".map(r => r.getBoundingClientRect().height)"
    )
    # Dense: a row is one badge and two lines high (about 20 rows in 900 px); a tenant with
    # two badges (drift and pending) takes a third line.
    assert len(rows) == 9 and sorted(rows)[4] <= 40 and max(rows) <= 52, rows
    # Codes and file names on one line, never broken mid-word (an ellipsis when too long).
    for selector in (".tenancy-code", ".tenancy-last", "td.field-auth0_org_id"):
        lines = single_lines(page, f"#result_list {selector}")
        assert lines and set(lines) == {1}, (selector, lines)
    # The 255-character name: two lines at most (the rest behind an ellipsis).
    name = page.locator("#result_list .field-organization_name a", has_text="NNNN")
    height, line = name.evaluate(
        "a => [a.getBoundingClientRect().height, parseFloat(getComputedStyle(a).lineHeight)]"
    )
    assert height <= 2 * line + 1, (height, line)
    page.close()


def test_the_overview_cards_keep_their_column_width(
    live_server: Any, pages: dict[str, str], ops_user: User, browser: Any
) -> None:
    for width, height in SIZES:
        page = browser.new_page(viewport={"width": width, "height": height})
        page.set_default_timeout(LONG)
        log_in(page, live_server.url)
        cards = page.evaluate(
            """() => Array.from(document.querySelectorAll('.tenancy-cards')).map(g => ({
                 row: g.getBoundingClientRect().width,
                 cards: Array.from(g.children).map(c => c.getBoundingClientRect().width),
               }))"""
        )
        assert len(cards) == 2, cards
        for group in cards:
            # A card alone on its row is as wide as the others, never the whole row.
            assert max(group["cards"]) - min(group["cards"]) < 1, (width, group)
            assert max(group["cards"]) < group["row"] * 0.55, (width, group)
        page.close()


def test_a_failed_runs_bar_is_sized_to_its_counts(
    live_server: Any, pages: dict[str, str], ops_user: User, browser: Any
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(LONG)
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}{pages['failed run']}")
    bar, ok, bad = (
        page.locator(f".field-progress {s}").bounding_box()["width"]
        for s in (".tenancy-progress", ".tenancy-progress-ok", ".tenancy-progress-bad")
    )
    colours = page.evaluate(
        """() => ['ok', 'bad'].map(k => getComputedStyle(
             document.querySelector('.field-progress .tenancy-progress-' + k)).backgroundColor)"""
    )
    # 1 of the 8 tenants failed: an eighth red, the rest green, and two colours.
    assert abs(bad / (bar - 2) - 1 / 8) < 0.02 and abs(ok / (bar - 2) - 7 / 8) < 0.02
    assert colours[0] != colours[1]
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
