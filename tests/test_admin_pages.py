"""The run and audit pages an operator reads every day (issue 23), through Django's test
client on the real test database: the progress bar sized to the counts, "fixed by run N"
on a failed run, the scope of every kind of run, the audit log grouped by run with its
per-schema rows behind a link, its filters (actor, tenant, date), and no empty fields."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from tenancy.engine.errors import EXIT_AWAITING_APPROVAL
from tenancy.models import AuditLog, MigrationRun, MigrationRunResult, Tenant
from tenancy.services import recovery, rollout_policy, rollouts, runs, tenants
from tests.conftest import connect, query

RUNS = "/admin/tenancy/migrationrun/"
AUDIT = "/admin/tenancy/auditlog/"
PLAIN = "-- UP\nCREATE TABLE plain_table (id int);\n-- DOWN\nDROP TABLE plain_table;\n"


@pytest.fixture
def ready(public_ready: None, sql_dir: Path) -> Path:
    return sql_dir


@pytest.fixture
def c(pg: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw-only"))
    return client


def page(c: Client, url: str, params: dict | None = None) -> str:
    response = c.get(url, params or {})
    assert response.status_code == 200, (url, response.status_code)
    return response.content.decode()


def run_page(c: Client, run_id: int) -> str:
    return page(c, f"{RUNS}{run_id}/change/")


def field(html: str, name: str) -> str:
    """One readonly field's row of a change page (from its class to the next row)."""
    start = html.index(f'<div class="form-row field-{name}')
    end = html.find('<div class="form-row', start + 1)
    return html[start : end if end > 0 else None]


def results(html: str) -> str:
    """A change list's table."""
    return html[html.index('id="result_list"') : html.index("</table>", html.index("result_list"))]


def make(*orgs: str) -> list[str]:
    return [tenants.create_tenant(org, actor="test").schema for org in orgs]


def add(sql_dir: Path, name: str, text: str, scope: str = "tenant") -> None:
    (sql_dir / scope / name).write_text(text)


def block_table(schema: str) -> None:
    """The next run of PLAIN fails in this schema: its table is there already."""
    with connect() as conn:
        conn.execute(f"CREATE TABLE {schema}.plain_table (id int)")


def unblock_table(schema: str) -> None:
    with connect() as conn:
        conn.execute(f"DROP TABLE {schema}.plain_table")


def fake_run(total: int, done: int, failed: int, status: str = "failed") -> MigrationRun:
    """A finished run's row with these counts (the bar reads nothing else)."""
    return MigrationRun.objects.create(
        kind="migrate",
        actor="test",
        status=status,
        options={"only": None, "public": False, "tenants": True},
        total_schemas=total,
        done_schemas=done,
        failed_schemas=failed,
        finished_at=timezone.now(),
    )


# -- the progress bar ------------------------------------------------------------------------
def bar_widths(html: str) -> list[tuple[str, str]]:
    """(succeeded, failed) widths of each two-colour bar on the page, as written."""
    return re.findall(
        r'tenancy-progress-ok" style="width: ([\d.]+)%"></span>'
        r'<span class="tenancy-progress-bad[^"]*" style="width: ([\d.]+)%"',
        html,
    )


def test_the_bar_is_sized_to_the_counts_on_the_run_page_and_the_list(ready: Path, c: Client):
    one_failed = fake_run(202, 202, 1)
    half_done = fake_run(202, 101, 0, status="interrupted")
    html = run_page(c, one_failed.pk)
    assert bar_widths(field(html, "progress")) == [("99.50", "0.50")]  # a thin red sliver
    assert "tenancy-progress-some" in field(html, "progress")  # never thinner than a sliver
    assert 'aria-valuetext="201 succeeded, 1 failed, of 202"' in html
    assert bar_widths(field(run_page(c, half_done.pk), "progress")) == [("50.00", "0.00")]
    listed = results(page(c, RUNS))
    assert ("99.50", "0.50") in bar_widths(listed) and ("50.00", "0.00") in bar_widths(listed)
    assert "tenancy-progress-failed" not in listed  # no bar painted red as a whole


def test_a_real_run_with_one_failure_in_three_has_a_third_red(ready: Path, c: Client):
    a, b, z = make("org_bara1", "org_barb1", "org_barz1")
    add(ready, "004_plain.sql", PLAIN)
    block_table(z)
    report = runs.migrate(public=False, actor="test")
    assert [r.schema for r in report.failed] == [z]
    assert bar_widths(field(run_page(c, report.run_id), "progress")) == [("66.67", "33.33")]


# -- fixed by run N ----------------------------------------------------------------------------
def test_a_failed_run_says_which_later_run_fixed_each_schema(ready: Path, c: Client) -> None:
    _, y, z = make("org_fixa1", "org_fixy1", "org_fixz1")
    add(ready, "004_plain.sql", PLAIN)
    block_table(y)
    block_table(z)
    failed = runs.migrate(public=False, actor="test").run_id
    html = run_page(c, failed)
    assert "still failing: tenant_org_fixy1, tenant_org_fixz1" in field(html, "fixed_by")
    assert html.count('class="tenancy-fix">still failing</small>') == 2
    unblock_table(y)
    fixed = runs.migrate(public=False, only=[y], actor="test").run_id
    later = f'fixed by <a href="{RUNS}{fixed}/change/">run {fixed}</a>'
    html = run_page(c, failed)
    assert f"{later}: {y}; still failing: {z}" in field(html, "fixed_by")
    rows = html[html.index('id="run-results"') :]
    y_row = rows[rows.index(f">{y}</a>") : rows.index("</tr>", rows.index(f">{y}</a>"))]
    assert later in y_row
    unblock_table(z)
    runs.migrate(public=False, only=[z], actor="test")
    last = MigrationRun.objects.order_by("-pk").first().pk
    fixes = field(run_page(c, failed), "fixed_by")
    assert f"{later}: {y}; " in fixes and f">run {last}</a>: {z}" in fixes
    assert "still failing" not in fixes


def test_one_later_run_fixing_everything_is_said_in_a_few_words(ready: Path, c: Client):
    (a,) = make("org_onefix1")
    add(ready, "004_plain.sql", PLAIN)
    block_table(a)
    failed = runs.migrate(public=False, actor="test").run_id
    unblock_table(a)
    fixed = runs.migrate(public=False, only=[a], actor="test").run_id
    fixes = field(run_page(c, failed), "fixed_by")
    assert re.search(
        rf'<div class="readonly">fixed by <a href="{RUNS}{fixed}/change/">run {fixed}</a></div>',
        fixes,
    )


def test_a_run_that_did_not_fail_has_no_later_runs_field(ready: Path, c: Client) -> None:
    make("org_okrun1")
    add(ready, "004_plain.sql", PLAIN)
    html = run_page(c, runs.migrate(public=False, actor="test").run_id)
    assert "field-fixed_by" not in html and "Later runs" not in html


# -- the scope of every kind of run -----------------------------------------------------------
PUBLIC_FLAG = "-- UP\nCREATE TABLE public.flag_x (id int);\n-- DOWN\nDROP TABLE public.flag_x;\n"


def scope(c: Client, run_id: int) -> str:
    text = field(run_page(c, run_id), "scope")
    return re.sub(r"<[^>]+>", "", text[text.index('class="readonly">') + 17 : text.index("</div>")])


def test_a_rollback_of_public_says_public_not_every_tenant(ready: Path, c: Client) -> None:
    make("org_rbp1")
    add(ready, "003_flag.sql", PUBLIC_FLAG, scope="public")
    runs.migrate(public=True, tenants=False, actor="test")
    back = runs.rollback("003", public=True, tenants=False, actor="test")
    assert back.exit_code == 0 and [r.schema for r in back.results] == ["public"]
    assert MigrationRun.objects.get(pk=back.run_id).options == {"version": "003", "only": None}
    assert scope(c, back.run_id) == "public only"
    listed = results(page(c, RUNS))
    row = listed[listed.index(f"{RUNS}{back.run_id}/change/") :]
    assert "public only" in row[: row.index("</tr>")]


def test_each_kind_of_run_has_its_scope(ready: Path, c: Client) -> None:
    a, b = make("org_scopea1", "org_scopeb1")
    add(ready, "004_plain.sql", PLAIN)
    only_a = runs.migrate(public=False, only=[a], actor="test").run_id
    add(ready, "005_more.sql", "-- UP\nCREATE TABLE more (id int);\n-- DOWN\nDROP TABLE more;\n")
    both = runs.migrate(public=False, only=[a, b], actor="test").run_id
    back = runs.rollback("005", tenants=True, actor="test").run_id
    add(ready, "003_flag.sql", PUBLIC_FLAG, scope="public")
    public = runs.migrate(public=True, tenants=False, actor="test").run_id
    assert scope(c, only_a) == a
    assert scope(c, both) == f"2 tenants: {a}, {b}"
    assert scope(c, back) == "every tenant, not public"  # what the rollback touched
    assert scope(c, public) == "public only"


def test_a_rollout_stage_run_names_its_stage_and_rollout(ready: Path, c: Client) -> None:
    make("org_stagea1", "org_stageb1", "org_stagec1")
    add(ready, "004_plain.sql", PLAIN)
    stages = rollout_policy.ad_hoc_policy(
        canary="1", wave_size=None, max_failures=None, pause_after_canary=True, jobs=1
    )
    report = rollouts.start(stages, policy="ad hoc", actor="test")
    assert report.exit_code == EXIT_AWAITING_APPROVAL
    (run_id,) = report.record.stages[0]["run_ids"]
    canary = report.record.stages[0]["schemas"][0]
    url = f"/admin/tenancy/rollout/{report.record.id}/change/"
    expected = f'stage 1 (canary) of <a href="{url}">rollout {report.record.id}</a>: {canary}'
    assert expected in field(run_page(c, run_id), "scope")
    assert expected in results(page(c, RUNS))


# -- no empty fields --------------------------------------------------------------------------
def test_no_empty_fields_on_the_run_page_or_in_the_audit_log(ready: Path, c: Client) -> None:
    a, b = make("org_empty1", "org_empty2")
    add(ready, "004_plain.sql", PLAIN)
    report = runs.migrate(public=False, actor="test")
    parent = AuditLog.objects.get(action="migrate.run", details__run_id=report.run_id)
    assert parent.details["failed"] == {}
    html = run_page(c, report.run_id)
    rows = html[html.index('id="run-results"') :]
    assert "<td></td>" not in rows and "— ms" not in rows and " ms</td>" in rows
    assert not re.search(r'<div class="readonly">\s*</div>', html)
    for listing in (page(c, AUDIT), page(c, AUDIT, {"schema_rows": "shown"})):
        assert "<b>failed</b>" not in listing and "failed</b>: <" not in listing
        assert "<b>error</b>" not in listing
    row_page = page(c, f"{AUDIT}{parent.pk}/change/")
    assert "<th>failed</th>" not in row_page and "<th>applied</th>" in row_page
    tenant_page = page(c, f"/admin/tenancy/tenant/{Tenant.objects.get(schema_name=a).pk}/change/")
    assert "<b>failed</b>" not in tenant_page


# -- the audit log, grouped by run -----------------------------------------------------------
def test_the_audit_log_shows_one_row_per_run_its_schemas_behind_a_link(ready: Path, c: Client):
    schemas = make("org_grpa1", "org_grpb1", "org_grpc1")
    add(ready, "004_plain.sql", PLAIN)
    run_id = runs.migrate(public=False, actor="test").run_id
    parent = AuditLog.objects.get(action="migrate.run", details__run_id=run_id)
    assert AuditLog.objects.filter(action="migrate.run.schema", details__run_id=run_id).count() == 3
    grouped = results(page(c, AUDIT))
    assert "migrate.run.schema" not in grouped  # behind the run's row, not burying the rest
    assert "tenant.create" in grouped and f"{AUDIT}{parent.pk}/change/" in grouped
    link = f'<a class="tenancy-schema-rows" href="{AUDIT}?of={parent.pk}">3 schemas</a>'
    assert link in grouped
    behind = page(c, AUDIT, {"of": parent.pk})
    shown = results(behind)
    assert shown.count("migrate.run.schema") == 3 and all(s in shown for s in schemas)
    assert "tenant.create" not in shown
    assert "3 per-schema rows of migrate.run" in behind and f">run {run_id}</a>" in behind
    # A tenant's rows, a search and "as rows of their own" show them too.
    assert "migrate.run.schema" in results(page(c, AUDIT, {"tenant_schema": schemas[0]}))
    assert "migrate.run.schema" in results(page(c, AUDIT, {"q": schemas[1]}))
    everything = results(page(c, AUDIT, {"schema_rows": "shown"}))
    assert everything.count("migrate.run.schema") >= 3 and all(s in everything for s in schemas)
    assert "migrate.run.schema" in results(page(c, AUDIT, {"action__exact": "migrate.run.schema"}))


def test_an_acceptance_groups_its_schemas_too(ready: Path, c: Client) -> None:
    a, b = make("org_acca1", "org_accb1")
    query(
        "UPDATE public.tenant_migrations SET checksum = 'edited' WHERE migration_version = '002' "
        "AND tenant_schema = ANY(%s) RETURNING 1",
        [[a, b]],
    )
    recovery.accept_checksum("002", actor="test")
    parent = AuditLog.objects.get(action="migrate.accept_checksum")
    grouped = results(page(c, AUDIT))
    assert "migrate.accept_checksum.schema" not in grouped
    assert f'href="{AUDIT}?of={parent.pk}">2 schemas</a>' in grouped
    shown = results(page(c, AUDIT, {"of": parent.pk}))
    assert shown.count("migrate.accept_checksum.schema") == 2 and a in shown and b in shown


def test_the_audit_log_filters_by_actor_tenant_and_date(ready: Path, c: Client) -> None:
    tenants.create_tenant("org_alice1", actor="cli:alice")
    tenants.create_tenant("org_bob1", actor="cli:bob")
    old = AuditLog.objects.create(action="config.change", actor="cli:carol", details={"k": 1})
    query(
        "UPDATE public.audit_logs SET created_at = '2020-03-04 12:00+00' WHERE id = %s RETURNING 1",
        [old.pk],
    )
    listing = page(c, AUDIT)
    sidebar = listing[listing.index('id="changelist-filter"') :]
    assert "By actor" in sidebar and "?actor=cli%3Aalice" in sidebar
    assert 'id="audit-tenant-filter"' in sidebar and 'name="tenant_schema"' in sidebar
    assert "By created at" in sidebar and "Past 7 days" in sidebar
    alice = results(page(c, AUDIT, {"actor": "cli:alice"}))
    assert "tenant_org_alice1" in alice and "tenant_org_bob1" not in alice
    bob = results(page(c, AUDIT, {"tenant_schema": "tenant_org_bob1"}))
    assert "tenant_org_bob1" in bob and "tenant_org_alice1" not in bob
    # The typed-in tenant keeps the other filters (hidden fields of its form).
    form = page(c, AUDIT, {"actor": "cli:bob"})
    assert '<input type="hidden" name="actor" value="cli:bob">' in form
    # The filter's own "Past 7 days" bounds: local midnights.
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    week = {
        "created_at__gte": str(today - timedelta(days=7)),
        "created_at__lt": str(today + timedelta(days=1)),
    }
    recent = results(page(c, AUDIT, week))
    assert "tenant_org_alice1" in recent and "config.change" not in recent
    in_2020 = results(page(c, AUDIT, {"created_at__year": "2020"}))
    assert "config.change" in in_2020 and "tenant_org_alice1" not in in_2020


def test_the_per_schema_link_of_a_run_without_schema_rows_is_left_out(ready: Path, c: Client):
    run = fake_run(1, 1, 1)
    MigrationRunResult.objects.create(run=run, tenant_schema="tenant_org_gone1", status="failed")
    row = AuditLog.objects.create(action="migrate.run", actor="test", details={"run_id": run.pk})
    grouped = results(page(c, AUDIT))
    mine = grouped[grouped.index(f"{AUDIT}{row.pk}/change/") :]
    mine = mine[: mine.index("</tr>")]
    assert "migrate.run" in mine and "tenancy-schema-rows" not in mine
    assert '<td class="field-schema_rows">—</td>' in mine
