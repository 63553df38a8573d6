"""The admin control room, through Django's test client on the real test database:
permissions, creating a tenant, the tenant list's state and query count, the tenant page,
runs queued for the background worker, audit and settings pages."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse as django_reverse

from tenancy.models import AuditLog, MigrationRun, SystemConfiguration, Tenant
from tenancy.services import reports, tenants
from tests.conftest import connect, ledger_versions, manage, query, tables_in

CHANGELIST = "/admin/tenancy/tenant/"
ADD = "/admin/tenancy/tenant/add/"
RUN_ALL = "/admin/tenancy/tenant/run-all/"

FEATURE_SQL = """-- Migration: 004_feature_data.sql
-- Description: a feature table in every tenant

-- UP: Apply migration
CREATE TABLE IF NOT EXISTS feature_data (id serial PRIMARY KEY, label text NOT NULL);
GRANT SELECT ON feature_data TO {{tenant_role}};

-- DOWN: Rollback migration
/*
DROP TABLE IF EXISTS feature_data;
*/
"""

BROKEN_SQL = """-- Migration: 004_broken.sql
-- UP
CREATE TABLE feature_data (id serial PRIMARY KEY, organization_id uuid REFERENCES nowhere(id));
"""


def reverse(name: str, args: list | None = None) -> str:
    # The admin lives in the public schema's URLconf (tenant hosts get the portal's).
    return django_reverse(name, args=args, urlconf="employer_portal.urls")


def add_file(sql_dir: Path, name: str, text: str) -> None:
    (sql_dir / "tenant" / name).write_text(text)


def user(username: str, *perms: str, staff: bool = True) -> User:
    u = User.objects.create_user(username, password="pw-for-tests-only", is_staff=staff)
    for perm in perms:
        app_label, codename = perm.split(".")
        u.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return u


def client_for(u: User) -> Client:
    c = Client()
    c.force_login(u)
    return c


@pytest.fixture
def ready(public_ready: None, sql_dir: Path) -> Path:
    return sql_dir


def admin_runs() -> Any:
    """Runs started from the admin (public_ready's own run is the command line's)."""
    return MigrationRun.objects.filter(actor__startswith="admin:")


def run_worker(sql_dir: Path) -> None:
    """The real `manage.py db_worker`, in its own process, until the queue is empty."""
    proc = manage(
        "db_worker", "--batch", "--no-startup-delay", "--interval", "0.1", migrations_dir=sql_dir
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err


# -- permissions -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url", [CHANGELIST, ADD, "/admin/tenancy/migrationrun/", "/admin/tenancy/auditlog/"]
)
def test_anonymous_is_redirected_to_login(pg: None, url: str) -> None:
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_anonymous_cannot_create_or_run(ready: Path) -> None:
    c = Client()
    assert c.post(ADD, {"auth0_org_id": "org_anon1"}).status_code == 302
    assert c.post(RUN_ALL, {"post": "yes"}).status_code == 302
    assert not Tenant.objects.exists() and not admin_runs().exists()
    assert "tenant_org_anon1" not in {r[0] for r in query("SELECT nspname FROM pg_namespace")}


def test_non_staff_is_refused_even_with_permissions(ready: Path) -> None:
    c = client_for(user("outsider", "tenancy.add_tenant", "tenancy.run_migrations", staff=False))
    for response in (
        c.get(CHANGELIST),
        c.post(ADD, {"auth0_org_id": "org_outsider1"}),
        c.post(RUN_ALL, {"post": "yes"}),
    ):
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
    assert not Tenant.objects.exists() and not admin_runs().exists()


def test_staff_without_add_permission_cannot_create(ready: Path) -> None:
    c = client_for(user("viewer", "tenancy.view_tenant"))
    page = c.get(CHANGELIST)
    assert page.status_code == 200
    assert "Create tenant" not in page.content.decode()
    assert c.get(ADD).status_code == 403
    assert c.post(ADD, {"auth0_org_id": "org_viewer1"}).status_code == 403
    assert not Tenant.objects.exists()
    assert "tenant_org_viewer1" not in {r[0] for r in query("SELECT nspname FROM pg_namespace")}


def test_staff_without_run_permission_cannot_run(ready: Path) -> None:
    tenant = tenants.create_tenant("org_norun1", actor="test")
    c = client_for(user("viewer", "tenancy.view_tenant", "tenancy.add_tenant"))
    page = c.get(CHANGELIST).content.decode()
    assert "Run pending migrations" not in page and "Run all pending migrations" not in page
    pk = Tenant.objects.get(schema_name=tenant.schema).pk
    assert 'name="action"' not in page  # no action on offer to this user
    c.post(CHANGELIST, {"action": "run_pending_migrations", "_selected_action": [pk], "index": 0})
    assert c.post(RUN_ALL, {"post": "yes"}).status_code == 403
    assert c.get(RUN_ALL).status_code == 403
    assert c.post(f"{CHANGELIST}{pk}/run/").status_code == 403
    assert not admin_runs().exists()
    assert not AuditLog.objects.filter(action="migrate.queued").exists()


def test_run_views_refuse_get(ready: Path, superuser: User) -> None:
    tenants.create_tenant("org_getrun1", actor="test")
    add_file(ready, "004_feature_data.sql", FEATURE_SQL)
    c = client_for(superuser)
    pk = Tenant.objects.get().pk
    assert c.get(f"{CHANGELIST}{pk}/run/").status_code == 403
    assert c.get(RUN_ALL).status_code == 200  # the confirmation page only
    assert c.get(RUN_ALL, {"post": "yes"}).status_code == 200
    assert not admin_runs().exists()


def test_csrf_is_enforced_on_create(ready: Path, superuser: User) -> None:
    c = Client(enforce_csrf_checks=True)
    c.force_login(superuser)
    assert c.post(ADD, {"auth0_org_id": "org_csrf1"}).status_code == 403
    assert not Tenant.objects.exists()


def test_tenant_rows_cannot_be_edited_or_deleted(ready: Path, superuser: User) -> None:
    tenants.create_tenant("org_readonly1", "Before", actor="test")
    pk = Tenant.objects.get().pk
    c = client_for(superuser)
    page = c.get(f"{CHANGELIST}{pk}/change/")
    assert page.status_code == 200 and 'name="organization_name"' not in page.content.decode()
    c.post(f"{CHANGELIST}{pk}/change/", {"organization_name": "After"})
    assert c.post(f"{CHANGELIST}{pk}/delete/", {"post": "yes"}).status_code == 403
    assert Tenant.objects.get().organization_name == "Before"
    assert "organizations" in tables_in("tenant_org_readonly1")


# -- creating a tenant -------------------------------------------------------------------
def test_create_tenant_through_the_form(ready: Path) -> None:
    c = client_for(user("alice", "tenancy.view_tenant", "tenancy.add_tenant"))
    assert "Create tenant" in c.get(CHANGELIST).content.decode()
    assert c.get(ADD).status_code == 200
    assert 'id="schema-preview"' in c.get(ADD).content.decode()
    response = c.post(ADD, {"auth0_org_id": "org_Acme42", "organization_name": "Acme"}, follow=True)
    new = Tenant.objects.get(auth0_org_id="org_Acme42")
    assert response.redirect_chain[-1][0] == reverse("admin:tenancy_tenant_change", args=[new.pk])
    schema = "tenant_org_acme42"
    assert {"organizations", "job_postings", "candidates"} <= tables_in(schema)
    assert ledger_versions(schema) == ["001", "002", "003"]
    assert query("SELECT organization_name, auth0_org_id FROM public.tenant_registry") == [
        ("Acme", "org_Acme42")
    ]
    assert query(
        "SELECT action, actor FROM public.audit_logs WHERE tenant_schema = %s", [schema]
    ) == [("tenant.create", "admin:alice")]
    page = response.content.decode()
    assert "org_Acme42" in page and "0 pending" in page and "003_candidates" in page
    history = c.get(f"{CHANGELIST}{new.pk}/history/").content.decode()
    assert "tenant.create" in history and "admin:alice" in history
    assert "added via this admin site" not in history


@pytest.mark.parametrize(
    ("org_id", "message"),
    [("org bad!", "Invalid Auth0 organization id"), ("org_" + "x" * 70, "Ensure this value")],
)
def test_invalid_org_id_is_a_form_error(
    ready: Path, superuser: User, org_id: str, message: str
) -> None:
    response = client_for(superuser).post(ADD, {"auth0_org_id": org_id})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Tenant.objects.exists()


def test_refused_creation_is_a_form_error_and_leaves_nothing(ready: Path, superuser: User) -> None:
    tenants.create_tenant("org_Twin1", actor="test")
    c = client_for(superuser)
    duplicate = c.post(ADD, {"auth0_org_id": "org_Twin1"}).content.decode()
    assert "already exists" in duplicate and 'class="errornote"' in duplicate

    def field_errors(html: str) -> str:  # the org id field's own error list
        start = html.index("field-auth0_org_id")
        return html[start : html.index("</div>", start)]

    assert "already exists" in field_errors(duplicate)
    twin = c.post(ADD, {"auth0_org_id": "org_TWIN1"}).content.decode()
    assert "differs only in letter case" in field_errors(twin)
    assert Tenant.objects.count() == 1


# -- the tenant list ---------------------------------------------------------------------
def _cell(html: str, org_id: str) -> str:
    """The table row of one tenant, as text."""
    start = html.index(f">{org_id}<")
    return html[html.rindex("<tr", 0, start) : html.index("</tr>", start)]


def test_list_shows_state_and_filters_by_pending_and_failures(ready: Path, superuser: User) -> None:
    tenants.create_tenant("org_alpha1", "Alpha", actor="test")
    tenants.create_tenant("org_beta1", "Beta", actor="test")
    add_file(ready, "004_broken.sql", BROKEN_SQL)
    from tenancy.services import runs

    runs.migrate(only=["tenant_org_alpha1"], public=False, actor="test")  # fails
    c = client_for(superuser)
    html = c.get(CHANGELIST).content.decode()
    assert "1 pending" in _cell(html, "org_alpha1") and "1 failed" in _cell(html, "org_alpha1")
    assert "1 pending" in _cell(html, "org_beta1") and "failed" not in _cell(html, "org_beta1")
    # Failed and pending stand out as coloured badges, not grey text.
    assert "tenancy-badge-error" in _cell(html, "org_alpha1")
    assert "tenancy-badge-warn" in _cell(html, "org_beta1")

    failures = c.get(CHANGELIST, {"has_failures": "yes"}).content.decode()
    assert "org_alpha1" in failures and "org_beta1" not in failures
    no_failures = c.get(CHANGELIST, {"has_failures": "no"}).content.decode()
    assert "org_beta1" in no_failures and "org_alpha1" not in no_failures

    (ready / "tenant" / "004_broken.sql").unlink()
    add_file(ready, "004_feature_data.sql", FEATURE_SQL)
    runs.migrate(only=["tenant_org_beta1"], public=False, actor="test")
    pending = c.get(CHANGELIST, {"has_pending": "yes"}).content.decode()
    assert "org_alpha1" in pending and "org_beta1" not in pending
    up_to_date = c.get(CHANGELIST, {"has_pending": "no"}).content.decode()
    assert "org_beta1" in up_to_date and "org_alpha1" not in up_to_date
    assert "004_feature_data" in _cell(up_to_date, "org_beta1")


def test_list_shows_drift_missing_schema_and_times_to_the_second(
    ready: Path, superuser: User
) -> None:
    import re

    tenants.create_tenant("org_drift1", "Drifted", actor="test")
    tenants.create_tenant("org_gone2", "Gone", actor="test")
    tenants.create_tenant("org_fine1", "Fine", actor="test")
    query(
        "UPDATE public.tenant_migrations SET checksum = 'edited' WHERE tenant_schema = "
        "'tenant_org_drift1' AND migration_version = '002' RETURNING 1"
    )
    with connect() as conn:
        conn.execute("DROP SCHEMA tenant_org_gone2 CASCADE")
    c = client_for(superuser)
    html = c.get(CHANGELIST).content.decode()
    assert "drift" in _cell(html, "org_drift1") and "tenancy-badge-error" in _cell(
        html, "org_drift1"
    )
    assert "schema missing" in _cell(html, "org_gone2")
    fine = _cell(html, "org_fine1")
    assert "0 pending" in fine and "tenancy-badge-ok" in fine and "tenancy-badge-error" not in fine
    created = re.search(r'field-created"><time[^>]*>([^<]+)<', fine)
    assert created and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", created.group(1))
    # The file on its line (its whole name in the tooltip), the time to the second under it.
    assert re.search(
        r'title="003_candidates\S*">003_candidates\S*</span><small><time[^>]*>[-\d]+ [:\d]{8}<',
        fine,
    )
    drift = c.get(CHANGELIST, {"has_drift": "yes"}).content.decode()
    assert "org_drift1" in drift and "org_fine1" not in drift
    missing = c.get(CHANGELIST, {"schema_missing": "yes"}).content.decode()
    assert "org_gone2" in missing and "org_fine1" not in missing


def test_search_by_name_org_id_and_schema(ready: Path, superuser: User) -> None:
    tenants.create_tenant("org_gamma1", "Gamma Corp", actor="test")
    tenants.create_tenant("org_delta1", "Delta Inc", actor="test")
    c = client_for(superuser)
    for term in ("Gamma", "org_gamma1", "tenant_org_gamma1"):
        html = c.get(CHANGELIST, {"q": term}).content.decode()
        assert "org_gamma1" in html and "org_delta1" not in html, term


def _count_list_queries(c: Client, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int, int]:
    calls: list[Any] = []
    original = reports.schema_states

    def spy(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        calls.append(result)
        return result

    monkeypatch.setattr(reports, "schema_states", spy)
    with CaptureQueriesContext(connection) as ctx:
        response = c.get(CHANGELIST, {"has_pending": "no"})
    assert response.status_code == 200
    rows = response.content.decode().count('<td class="field-auth0_org_id">')
    return len(ctx.captured_queries), len(calls), rows


def test_list_query_count_does_not_grow_with_tenants(
    ready: Path, superuser: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = client_for(superuser)
    for i in range(2):
        tenants.create_tenant(f"org_q{i}", actor="test")
    few, calls_few, rows_few = _count_list_queries(c, monkeypatch)
    for i in range(2, 20):
        tenants.create_tenant(f"org_q{i}", actor="test")
    many, calls_many, rows_many = _count_list_queries(c, monkeypatch)
    assert (rows_few, rows_many) == (2, 20)
    assert (calls_few, calls_many) == (1, 1)  # one schema_states (its own connection)
    assert many == few


# -- the tenant page ---------------------------------------------------------------------
def test_tenant_page_shows_history_pending_sql_results_and_audit(
    ready: Path, superuser: User
) -> None:
    tenants.create_tenant("org_page1", "Paged", actor="admin:root")
    add_file(ready, "004_feature_data.sql", FEATURE_SQL)
    pk = Tenant.objects.get().pk
    html = client_for(superuser).get(f"{CHANGELIST}{pk}/change/").content.decode()
    history = html[html.index('id="migration-history"') : html.index('id="run-results"')]
    for version in ("001", "002", "003"):
        assert f"<td>{version}</td>" in history
    pending = html[html.index('id="pending-files"') : html.index('id="migration-history"')]
    assert "004_feature_data.sql" in pending
    from tenancy.engine.names import role_for_schema

    role = role_for_schema("tenant_org_page1", connection.settings_dict["NAME"])
    assert (
        f"GRANT SELECT ON feature_data TO &quot;{role}&quot;" in pending
    )  # rendered, not {{tenant_role}}
    audit = html[html.index('id="audit-rows"') :]
    assert "tenant.create" in audit and "admin:root" in audit


# -- runs ----------------------------------------------------------------------------------
def test_run_action_queues_and_the_worker_runs_it(ready: Path) -> None:
    from django_tasks_db.models import DBTaskResult

    tenants.create_tenant("org_runa1", actor="test")
    tenants.create_tenant("org_runb1", actor="test")
    add_file(ready, "004_feature_data.sql", FEATURE_SQL)
    c = client_for(user("bob", "tenancy.view_tenant", "tenancy.run_migrations"))
    pk = Tenant.objects.get(schema_name="tenant_org_runa1").pk
    response = c.post(CHANGELIST, {"action": "run_pending_migrations", "_selected_action": [pk]})
    run = admin_runs().get()
    assert response["Location"] == reverse("admin:tenancy_migrationrun_change", args=[run.pk])
    assert (run.status, run.kind, run.actor) == ("queued", "migrate", "admin:bob")
    assert run.options["only"] == ["tenant_org_runa1"] and run.options["public"] is False
    assert DBTaskResult.objects.filter(status="READY").count() == 1
    # Nothing ran in the request.
    assert "feature_data" not in tables_in("tenant_org_runa1")
    assert "Queued" in c.get(response["Location"]).content.decode()

    run_worker(ready)

    run.refresh_from_db()
    assert (run.status, run.done_schemas, run.total_schemas, run.failed_schemas) == (
        "succeeded",
        1,
        1,
        0,
    )
    assert "feature_data" in tables_in("tenant_org_runa1")
    assert "feature_data" not in tables_in("tenant_org_runb1")  # not selected: untouched
    progress = c.get(reverse("admin:tenancy_migrationrun_progress", args=[run.pk])).json()
    assert progress["status"] == "succeeded" and progress["active"] is False
    assert [(r["schema"], r["status"], r["versions"]) for r in progress["results"]] == [
        ("tenant_org_runa1", "succeeded", ["004"])
    ]
    assert query(
        "SELECT actor, details->>'outcome' FROM public.audit_logs "
        "WHERE action = 'migrate.run' AND actor LIKE 'admin:%'"
    ) == [("admin:bob", "succeeded")]
    assert query("SELECT actor FROM public.audit_logs WHERE action = 'migrate.queued'") == [
        ("admin:bob",)
    ]
    page = c.get(reverse("admin:tenancy_migrationrun_change", args=[run.pk])).content.decode()
    assert "Succeeded" in page and "1 / 1" in page and "tenant_org_runa1" in page


def test_a_killed_worker_run_is_marked_interrupted_by_the_admin(ready: Path, superuser: User):
    """kill -9 of the job worker mid-run: the next look at the admin closes the run, with no
    other run and no worker restart."""
    tenants.create_tenant("org_kill1", actor="test")
    add_file(ready, "004_slow.sql", "-- UP\nSELECT pg_sleep(4);\nCREATE TABLE slow (id int);\n")
    c = client_for(superuser)
    pk = Tenant.objects.get(schema_name="tenant_org_kill1").pk
    c.post(CHANGELIST, {"action": "run_pending_migrations", "_selected_action": [pk]})
    run = admin_runs().get()
    worker = manage(
        "db_worker", "--no-startup-delay", "--no-reload", "--interval", "0.1", migrations_dir=ready
    )
    try:
        deadline = time.monotonic() + 60
        while run.status != "running" and time.monotonic() < deadline:
            time.sleep(0.1)
            run.refresh_from_db()
        assert run.status == "running"
    finally:
        worker.kill()
        worker.communicate(timeout=30)
        # Its schema worker's statement runs on until the server notices: end it now.
        query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE '%%pg_sleep(4)%%' "
            "AND pid <> pg_backend_pid()"
        )
    progress_url = reverse("admin:tenancy_migrationrun_progress", args=[run.pk])
    deadline = time.monotonic() + 10  # the server notices the dead client's connection
    while c.get(progress_url).json()["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    run.refresh_from_db()
    assert run.status == "interrupted" and run.finished_at is not None
    assert "slow" not in tables_in("tenant_org_kill1")
    assert ledger_versions("tenant_org_kill1")[-1] != "004"


def test_failed_run_shows_the_error_per_schema(ready: Path, superuser: User) -> None:
    tenants.create_tenant("org_fail1", actor="test")
    add_file(ready, "004_broken.sql", BROKEN_SQL)
    c = client_for(superuser)
    pk = Tenant.objects.get().pk
    c.post(f"{CHANGELIST}{pk}/run/")
    run_worker(ready)
    run = admin_runs().get()
    assert (run.status, run.failed_schemas) == ("failed", 1)
    page = c.get(reverse("admin:tenancy_migrationrun_change", args=[run.pk])).content.decode()
    assert "nowhere" in page  # the PostgreSQL error, in the per-schema row
    tenant_page = c.get(f"{CHANGELIST}{pk}/change/").content.decode()
    results = tenant_page[tenant_page.index('id="run-results"') :]
    assert "failed" in results and "nowhere" in results


def test_run_all_button_runs_public_and_every_tenant(ready: Path, superuser: User) -> None:
    tenants.create_tenant("org_all1", actor="test")
    tenants.create_tenant("org_all2", actor="test")
    add_file(ready, "004_feature_data.sql", FEATURE_SQL)
    c = client_for(superuser)
    assert "Run all pending migrations" in c.get(CHANGELIST).content.decode()
    confirm = c.post(RUN_ALL)  # without post=yes: the confirmation page, nothing queued
    assert confirm.status_code == 200 and not admin_runs().exists()
    page = confirm.content.decode()
    assert "tenant/004_feature_data.sql" in page
    assert "tenant_org_all1" in page and "tenant_org_all2" in page
    c.post(RUN_ALL, {"post": "yes"})
    run = admin_runs().get()
    assert run.options["only"] is None and run.options["public"] is True
    run_worker(ready)
    run.refresh_from_db()
    assert (run.status, run.done_schemas) == ("succeeded", 2)
    assert all("feature_data" in tables_in(f"tenant_org_all{i}") for i in (1, 2))


def test_a_run_that_cannot_start_is_marked_failed(ready: Path, superuser: User) -> None:
    tenants.create_tenant("org_gone1", actor="test")
    add_file(ready, "004_feature_data.sql", FEATURE_SQL)
    c = client_for(superuser)
    c.post(f"{CHANGELIST}{Tenant.objects.get().pk}/run/")
    query("DELETE FROM public.tenant_domains RETURNING 1")
    query("DELETE FROM public.tenant_registry RETURNING 1")  # dropped while queued
    run_worker(ready)
    run = admin_runs().get()
    assert run.status == "failed" and "Not a registered tenant schema" in (run.error or "")
    assert query(
        "SELECT actor FROM public.audit_logs WHERE action = 'migrate.run' AND actor LIKE 'admin:%'"
    ) == [("admin:root",)]


def test_runs_list_refreshes_only_while_a_run_is_active(ready: Path, superuser: User) -> None:
    tenants.create_tenant("org_refresh1", actor="test")
    add_file(ready, "004_feature_data.sql", FEATURE_SQL)
    c = client_for(superuser)
    c.post(RUN_ALL, {"post": "yes"})
    assert 'http-equiv="refresh"' in c.get("/admin/tenancy/migrationrun/").content.decode()
    run = admin_runs().get()
    assert (
        "progress.json"
        in c.get(reverse("admin:tenancy_migrationrun_change", args=[run.pk])).content.decode()
    )
    run_worker(ready)
    assert 'http-equiv="refresh"' not in c.get("/admin/tenancy/migrationrun/").content.decode()


def test_progress_endpoint_needs_permission(ready: Path) -> None:
    run = MigrationRun.objects.create(status="queued", actor="admin:x")
    url = reverse("admin:tenancy_migrationrun_progress", args=[run.pk])
    assert Client().get(url).status_code == 302
    assert client_for(user("nobody")).get(url).status_code == 403
    assert client_for(user("watcher", "tenancy.view_migrationrun")).get(url).json()["status"] == (
        "queued"
    )


# -- audit log and settings --------------------------------------------------------------
def test_audit_log_is_read_only(ready: Path, superuser: User) -> None:
    tenants.create_tenant("org_audit1", actor="admin:root")
    c = client_for(superuser)
    html = c.get("/admin/tenancy/auditlog/").content.decode()
    assert "tenant.create" in html and "admin:root" in html
    assert c.get("/admin/tenancy/auditlog/add/").status_code == 403
    pk = AuditLog.objects.get(action="tenant.create").pk
    assert c.post(f"/admin/tenancy/auditlog/{pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditLog.objects.filter(pk=pk).exists()


def test_system_configuration_changes_are_audited(ready: Path, superuser: User) -> None:
    c = client_for(superuser)
    response = c.post(
        "/admin/tenancy/systemconfiguration/add/",
        {"config_key": "feature_enabled", "config_value": '"true"', "description": "x"},
    )
    assert response.status_code == 302
    assert SystemConfiguration.objects.get().config_value == "true"
    assert query(
        "SELECT actor, details->>'config_key' FROM public.audit_logs WHERE action = 'config.create'"
    ) == [("admin:root", "feature_enabled")]


def test_admin_index_lists_the_control_room(pg: None, superuser: User) -> None:
    html = client_for(superuser).get("/admin/").content.decode()
    for name in ("Tenants", "Migration runs", "Audit logs", "System configurations"):
        assert name in html
    assert "Not available for this type of schema" not in html  # the job queue's own admin


def test_run_urls_take_numeric_ids_only(pg: None, superuser: User) -> None:
    c = client_for(superuser)
    # Not a server error, and no run: the admin's catch-all redirects to "not found".
    assert c.get("/admin/tenancy/migrationrun/abc/progress.json").status_code in (301, 302, 404)
    assert c.post(f"{CHANGELIST}abc/run/").status_code in (301, 302, 404)
    assert not admin_runs().exists()


# -- run guards --------------------------------------------------------------------------
def test_nothing_pending_disables_the_buttons_and_records_no_run(
    ready: Path, superuser: User
) -> None:
    tenants.create_tenant("org_idle1", actor="test")
    c = client_for(superuser)
    page = c.get(CHANGELIST).content.decode()
    assert "disabled" in page[page.index("Run all pending migrations") - 200 :][:300]
    pk = Tenant.objects.get().pk
    tenant_page = c.get(f"{CHANGELIST}{pk}/change/").content.decode()
    assert "disabled" in tenant_page[tenant_page.index(">Run pending migrations") - 120 :][:140]
    assert "Nothing is pending" in c.get(RUN_ALL).content.decode()
    response = c.post(RUN_ALL, {"post": "yes"}, follow=True)
    assert "Nothing pending: no run was started." in response.content.decode()
    c.post(f"{CHANGELIST}{pk}/run/")
    assert not admin_runs().exists()
    assert not AuditLog.objects.filter(action="migrate.queued").exists()


def test_a_second_overlapping_run_is_refused_with_a_link(ready: Path, superuser: User) -> None:
    tenants.create_tenant("org_ova1", actor="test")
    tenants.create_tenant("org_ovb1", actor="test")
    add_file(ready, "004_feature_data.sql", FEATURE_SQL)
    c = client_for(superuser)
    a = Tenant.objects.get(schema_name="tenant_org_ova1").pk
    b = Tenant.objects.get(schema_name="tenant_org_ovb1").pk
    c.post(f"{CHANGELIST}{a}/run/")
    first = admin_runs().get()
    again = c.post(f"{CHANGELIST}{a}/run/")
    run_url = reverse("admin:tenancy_migrationrun_change", args=[first.pk])
    assert again["Location"] == run_url
    message = c.get(run_url).content.decode()
    assert f"Run {first.pk} (queued) already covers tenant_org_ova1" in message
    assert f'<a href="{run_url}">Follow it.</a>' in message
    assert c.post(RUN_ALL, {"post": "yes"})["Location"] == run_url  # every tenant overlaps
    assert admin_runs().count() == 1
    c.post(f"{CHANGELIST}{b}/run/")  # another tenant: no overlap
    assert admin_runs().count() == 2
    run_worker(ready)
    c.post(f"{CHANGELIST}{a}/run/")  # finished: nothing pending any more, no run
    assert admin_runs().count() == 2


def test_failed_run_page_puts_failures_first_and_retries_them(ready: Path, superuser: User) -> None:
    for org in ("org_aok1", "org_bok1", "org_zfail1"):
        tenants.create_tenant(org, actor="test")
    add_file(ready, "004_plain.sql", "-- UP\nCREATE TABLE plain_table (id int);\n")
    with connect() as conn:  # only this schema already has the table: only it fails
        conn.execute("CREATE TABLE tenant_org_zfail1.plain_table (id int)")
    runs_before = admin_runs().count()
    c = client_for(superuser)
    c.post(RUN_ALL, {"post": "yes"})
    run_worker(ready)
    run = admin_runs().get()
    assert runs_before == 0 and run.status == "failed"
    html = c.get(reverse("admin:tenancy_migrationrun_change", args=[run.pk])).content.decode()
    rows = html[html.index('id="run-results"') :]
    first_row = rows[rows.index("<tbody>") : rows.index("</tr>", rows.index("<tbody>"))]
    assert "tenant_org_zfail1" in first_row and "already exists" in first_row
    tenant_url = reverse(
        "admin:tenancy_tenant_change", args=[Tenant.objects.get(schema_name="tenant_org_aok1").pk]
    )
    assert f'href="{tenant_url}"' in rows
    assert 'id="run-summary"' in html and "1 of 3 schema(s) failed: tenant_org_zfail1" in html
    assert "backend_pid" not in html and "Backend pid" not in html
    assert '"job_id"' not in html and "{&quot;" not in html  # options as fields, not JSON
    assert "Retry failed schemas" in html


def test_retry_needs_the_run_permission(ready: Path, superuser: User) -> None:
    tenants.create_tenant("org_retry1", actor="test")
    add_file(ready, "004_broken.sql", BROKEN_SQL)
    c = client_for(superuser)
    c.post(f"{CHANGELIST}{Tenant.objects.get().pk}/run/")
    run_worker(ready)
    run = admin_runs().get()
    url = reverse("admin:tenancy_migrationrun_retry", args=[run.pk])
    assert Client().post(url).status_code == 302 and admin_runs().count() == 1
    viewer = client_for(user("viewer", "tenancy.view_migrationrun"))
    assert (
        "Retry failed schemas"
        not in viewer.get(
            reverse("admin:tenancy_migrationrun_change", args=[run.pk])
        ).content.decode()
    )
    assert viewer.post(url).status_code == 403 and admin_runs().count() == 1
    assert c.get(url).status_code == 403
    runner = client_for(user("runner", "tenancy.run_migrations"))
    retry = runner.post(url)
    again = admin_runs().exclude(pk=run.pk).get()
    assert retry["Location"] == reverse("admin:tenancy_migrationrun_change", args=[again.pk])
    assert again.options["only"] == ["tenant_org_retry1"] and again.actor == "admin:runner"


def test_run_all_confirmation_permissions(ready: Path) -> None:
    tenants.create_tenant("org_conf1", actor="test")
    add_file(ready, "004_feature_data.sql", FEATURE_SQL)
    assert Client().get(RUN_ALL).status_code == 302
    assert client_for(user("viewer", "tenancy.view_tenant")).get(RUN_ALL).status_code == 403
    runner = client_for(user("runner", "tenancy.view_tenant", "tenancy.run_migrations"))
    assert "tenant/004_feature_data.sql" in runner.get(RUN_ALL).content.decode()
    assert not admin_runs().exists()


# -- lifecycle actions -------------------------------------------------------------------
def lifecycle_url(pk: int, verb: str) -> str:
    return f"{CHANGELIST}{pk}/lifecycle/{verb}/"


@pytest.mark.parametrize(
    ("verb", "start", "end"),
    [
        ("suspend", "active", "suspended"),
        ("archive", "active", "archived"),
        ("reactivate", "suspended", "active"),
    ],
)
def test_status_actions_need_their_permission_and_are_audited(
    ready: Path, verb: str, start: str, end: str
) -> None:
    tenants.create_tenant("org_life1", actor="test")
    query("UPDATE public.tenant_registry SET status = %s RETURNING 1", [start])
    pk = Tenant.objects.get().pk
    url = lifecycle_url(pk, verb)
    assert Client().get(url).status_code == 302
    assert Client().post(url, {"post": "yes"}).status_code == 302
    other = "suspend" if verb != "suspend" else "archive"
    no_perm = client_for(user("viewer", "tenancy.view_tenant", f"tenancy.{other}_tenant"))
    assert no_perm.get(url).status_code == 403
    assert no_perm.post(url, {"post": "yes"}).status_code == 403
    assert f"/lifecycle/{verb}/" not in no_perm.get(f"{CHANGELIST}{pk}/change/").content.decode()
    assert Tenant.objects.get().status == start
    ops = client_for(user("ops", "tenancy.view_tenant", f"tenancy.{verb}_tenant"))
    assert f"/lifecycle/{verb}/" in ops.get(f"{CHANGELIST}{pk}/change/").content.decode()
    confirm = ops.get(url)
    assert confirm.status_code == 200 and 'name="post" value="yes"' in confirm.content.decode()
    ops.post(url)  # no post=yes: the confirmation page again, nothing changes
    assert Tenant.objects.get().status == start
    response = ops.post(url, {"post": "yes", "reason": "ticket 42"})
    assert response["Location"] == f"{CHANGELIST}{pk}/change/"
    assert Tenant.objects.get().status == end
    assert query(
        "SELECT actor, details->>'reason', details->>'to' FROM public.audit_logs WHERE action = %s",
        [f"tenant.{verb}"],
    ) == [("admin:ops", "ticket 42", end)]


def test_drop_needs_permission_and_the_typed_schema(ready: Path) -> None:
    tenants.create_tenant("org_drop1", actor="test")
    pk = Tenant.objects.get().pk
    url = lifecycle_url(pk, "drop")
    assert (
        Client().post(url, {"post": "yes", "confirm_schema": "tenant_org_drop1"}).status_code == 302
    )
    no_perm = client_for(user("viewer", "tenancy.view_tenant", "tenancy.recreate_tenant"))
    assert (
        no_perm.post(url, {"post": "yes", "confirm_schema": "tenant_org_drop1"}).status_code == 403
    )
    ops = client_for(user("ops", "tenancy.view_tenant", "tenancy.drop_tenant"))
    wrong = ops.post(url, {"post": "yes", "confirm_schema": "tenant_org_other"})
    assert wrong.status_code == 200 and "does not match" in wrong.content.decode()
    assert Tenant.objects.exists() and "organizations" in tables_in("tenant_org_drop1")
    response = ops.post(url, {"post": "yes", "confirm_schema": "tenant_org_drop1"})
    assert response["Location"] == CHANGELIST
    assert not Tenant.objects.exists() and not tables_in("tenant_org_drop1")
    assert query("SELECT actor FROM public.audit_logs WHERE action = 'tenant.drop'") == [
        ("admin:ops",)
    ]


def test_recreate_needs_permission_and_rebuilds_the_schema(ready: Path) -> None:
    tenants.create_tenant("org_recreate1", actor="test")
    with connect() as conn:
        conn.execute("DROP SCHEMA tenant_org_recreate1 CASCADE")
    pk = Tenant.objects.get().pk
    url = lifecycle_url(pk, "recreate")
    assert Client().post(url, {"post": "yes"}).status_code == 302
    no_perm = client_for(user("viewer", "tenancy.view_tenant", "tenancy.drop_tenant"))
    assert no_perm.post(url, {"post": "yes"}).status_code == 403
    assert not tables_in("tenant_org_recreate1")
    ops = client_for(user("ops", "tenancy.view_tenant", "tenancy.recreate_tenant"))
    assert ops.post(url, {"post": "yes"})["Location"] == f"{CHANGELIST}{pk}/change/"
    assert "organizations" in tables_in("tenant_org_recreate1")
    assert ledger_versions("tenant_org_recreate1") == ["001", "002", "003"]
    assert query("SELECT actor FROM public.audit_logs WHERE action = 'tenant.recreate'") == [
        ("admin:ops",)
    ]


def test_unknown_lifecycle_verb_is_not_found(ready: Path, superuser: User) -> None:
    tenants.create_tenant("org_verb1", actor="test")
    pk = Tenant.objects.get().pk
    assert client_for(superuser).get(lifecycle_url(pk, "explode")).status_code == 404


# -- the fleet overview --------------------------------------------------------------------
def test_fleet_overview_counts_and_permissions(ready: Path) -> None:
    import re

    for org in ("org_ova2", "org_ovb2", "org_ovc2"):
        tenants.create_tenant(org, actor="test")
    query(
        "UPDATE public.tenant_registry SET status = 'suspended' "
        "WHERE auth0_org_id = 'org_ovb2' RETURNING 1"
    )
    add_file(ready, "004_feature_data.sql", FEATURE_SQL)
    with connect() as conn:
        conn.execute("DROP SCHEMA tenant_org_ovc2 CASCADE")
    assert Client().get("/admin/").status_code == 302
    staff = client_for(user("nobody")).get("/admin/").content.decode()
    assert 'id="fleet-overview"' not in staff
    html = client_for(user("viewer", "tenancy.view_tenant")).get("/admin/").content.decode()

    def count(card: str) -> int:
        m = re.search(rf'id="fleet-{card}"><span class="n">(\d+)<', html)
        assert m, card
        return int(m.group(1))

    assert count("tenants") == 3 and count("status-active") == 2
    assert count("status-suspended") == 1 and count("status-archived") == 0
    assert count("pending") == 3 and count("missing") == 1
    assert count("failed") == 0 and count("drifted") == 0
    assert "?has_pending=yes" in html and "?schema_missing=yes" in html
    assert 'id="fleet-public"' in html and "no run is active" in html


# -- recovery actions: accept a checksum, mark as applied, roll back -------------------------
ROLLBACK_SQL = """-- Migration: 004_feature_data.sql
-- UP
CREATE TABLE feature_data (id serial PRIMARY KEY, label text NOT NULL);
-- DOWN
DROP TABLE feature_data;
"""


def recover_url(pk: int, verb: str, version: str | None = None) -> str:
    return f"{CHANGELIST}{pk}/recover/{verb}/" + (f"?version={version}" if version else "")


def two_tenants() -> tuple[int, str, str]:
    """Two tenants; the first one's pk and both schemas."""
    tenants.create_tenant("org_reca1", "Recover A", actor="test")
    tenants.create_tenant("org_recb1", "Recover B", actor="test")
    return Tenant.objects.get(auth0_org_id="org_reca1").pk, "tenant_org_reca1", "tenant_org_recb1"


def checksums(version: str) -> dict[str, str]:
    rows = query(
        "SELECT tenant_schema, checksum FROM public.tenant_migrations "
        "WHERE migration_version = %s AND tenant_schema <> 'public'",
        [version],
    )
    return dict(rows)


def assert_refused_without_permission(url: str, data: dict[str, str], other: str) -> None:
    """Anonymous: to the login page; staff with another recovery permission: 403."""
    for response in (Client().get(url), Client().post(url, data)):
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    no_perm = client_for(user("viewer", "tenancy.view_tenant", f"tenancy.{other}"))
    assert no_perm.get(url).status_code == 403
    assert no_perm.post(url, data).status_code == 403


def test_accept_checksum_needs_its_permission_and_is_audited(ready: Path) -> None:
    pk, a, b = two_tenants()
    good = checksums("002")[b]
    query(
        "UPDATE public.tenant_migrations SET checksum = 'edited' WHERE tenant_schema = %s "
        "AND migration_version = '002' RETURNING 1",
        [a],
    )
    url = recover_url(pk, "accept-checksum", "002")
    data = {"post": "yes", "version": "002"}
    assert_refused_without_permission(url, data, "rollback_tenant")
    viewer_page = client_for(User.objects.get(username="viewer")).get(f"{CHANGELIST}{pk}/change/")
    assert "/recover/accept-checksum/" not in viewer_page.content.decode()
    assert checksums("002")[a] == "edited"

    ops = client_for(user("ops", "tenancy.view_tenant", "tenancy.accept_checksum_tenant"))
    page = ops.get(f"{CHANGELIST}{pk}/change/").content.decode()
    assert 'id="accept-002"' in page and "Accept checksum of 002" in page
    confirm = ops.get(url).content.decode()
    assert "tenant/002_job_postings.sql" in confirm and 'id="recovery-confirm"' in confirm
    response = ops.post(url, data)
    assert response["Location"] == f"{CHANGELIST}{pk}/change/"
    assert checksums("002") == {a: good, b: good}
    assert query(
        "SELECT actor, details->'schemas' FROM public.audit_logs "
        "WHERE action = 'migrate.accept_checksum'"
    ) == [("admin:ops", [a])]
    again = ops.get(url).content.decode()  # nothing left to accept: no confirm button
    assert "shows no drift" in again and 'id="recovery-confirm"' not in again


def test_mark_as_applied_needs_its_permission_records_without_running(ready: Path) -> None:
    pk, a, b = two_tenants()
    add_file(ready, "004_feature_data.sql", FEATURE_SQL)
    url = recover_url(pk, "fake", "004")
    data = {"post": "yes", "version": "004"}
    assert_refused_without_permission(url, data, "accept_checksum_tenant")
    assert ledger_versions(a) == ["001", "002", "003"]

    ops = client_for(user("ops", "tenancy.view_tenant", "tenancy.fake_migration_tenant"))
    assert 'id="fake-004"' in ops.get(f"{CHANGELIST}{pk}/change/").content.decode()
    confirm = ops.get(url).content.decode()
    assert "004_feature_data.sql" in confirm and "recorded as applied, not run" in confirm
    response = ops.post(url, data)
    assert response["Location"] == f"{CHANGELIST}{pk}/change/"
    assert ledger_versions(a) == ["001", "002", "003", "004"]
    assert "feature_data" not in tables_in(a)  # recorded, not run
    assert ledger_versions(b) == ["001", "002", "003"]  # the other tenant untouched
    run = MigrationRun.objects.get(kind="fake")
    assert run.actor == "admin:ops" and run.options["only"] == [a]
    assert query(
        "SELECT action, tenant_schema, details->>'outcome' FROM public.audit_logs "
        "WHERE action LIKE 'migrate.fake%%' ORDER BY action"
    ) == [("migrate.fake", None, "succeeded"), ("migrate.fake.schema", a, "succeeded")]


def test_rollback_needs_its_permission_runs_the_down_sql_and_is_audited(ready: Path) -> None:
    from tenancy.services import runs

    pk, a, b = two_tenants()
    add_file(ready, "004_feature_data.sql", ROLLBACK_SQL)
    runs.migrate(public=False, actor="test")
    url = recover_url(pk, "rollback", "004")
    data = {"post": "yes", "version": "004"}
    assert_refused_without_permission(url, data, "fake_migration_tenant")
    assert "feature_data" in tables_in(a)

    ops = client_for(user("ops", "tenancy.view_tenant", "tenancy.rollback_tenant"))
    page = ops.get(f"{CHANGELIST}{pk}/change/").content.decode()
    assert 'id="rollback-004"' in page and "Roll back…" in page
    chooser = ops.get(recover_url(pk, "rollback")).content.decode()
    assert 'id="recovery-choose"' in chooser and '<option value="004">' in chooser
    confirm = ops.get(url).content.decode()
    assert "DROP TABLE feature_data;" in confirm and 'id="recovery-confirm"' in confirm
    response = ops.post(url, data)
    assert response["Location"] == f"{CHANGELIST}{pk}/change/"
    assert "feature_data" not in tables_in(a) and ledger_versions(a) == ["001", "002", "003"]
    assert "feature_data" in tables_in(b) and ledger_versions(b)[-1] == "004"
    assert query(
        "SELECT action, actor, tenant_schema FROM public.audit_logs "
        "WHERE action LIKE 'migrate.rollback%%' ORDER BY action"
    ) == [("migrate.rollback", "admin:ops", None), ("migrate.rollback.schema", "admin:ops", a)]


def test_rollback_without_recorded_down_is_refused_on_its_page(ready: Path, superuser: User):
    from tenancy.services import runs

    pk, a, _ = two_tenants()
    add_file(ready, "004_plain.sql", "-- UP\nCREATE TABLE plain (id int);\n")
    runs.migrate(public=False, actor="test")
    c = client_for(superuser)
    confirm = c.get(recover_url(pk, "rollback", "004")).content.decode()
    assert "no rollback SQL recorded" in confirm and 'id="recovery-confirm"' not in confirm
    response = c.post(recover_url(pk, "rollback"), {"post": "yes", "version": "004"}, follow=True)
    assert "failed" in response.content.decode()
    assert ledger_versions(a)[-1] == "004" and "plain" in tables_in(a)  # nothing undone
    bad = c.get(recover_url(pk, "rollback", "x1")).content.decode()
    assert "is not a migration number" in bad
    assert c.get(recover_url(pk, "explode")).status_code == 404


def test_recovery_refused_while_a_run_covers_the_tenant(ready: Path, superuser: User) -> None:
    pk, a, _ = two_tenants()
    add_file(ready, "004_feature_data.sql", FEATURE_SQL)
    c = client_for(superuser)
    c.post(f"{CHANGELIST}{pk}/run/")  # queued; no worker
    confirm = c.get(recover_url(pk, "fake", "004")).content.decode()
    assert "covers this tenant" in confirm and 'id="recovery-confirm"' not in confirm


def test_drift_refusal_offers_accept_checksum_fleet_wide(ready: Path, superuser: User) -> None:
    _, a, b = two_tenants()
    for schema in (a, b):
        query(
            "UPDATE public.tenant_migrations SET checksum = 'edited' WHERE tenant_schema = %s "
            "AND migration_version = '001' RETURNING 1",
            [schema],
        )
    add_file(ready, "004_feature_data.sql", FEATURE_SQL)
    c = client_for(superuser)
    confirm_page = c.get(RUN_ALL).content.decode()
    assert 'id="drift-offers"' in confirm_page
    # A run that would be refused is not offered (a direct POST is still recorded, refused)
    assert 'id="run-all-blocked"' in confirm_page and "Yes, run" not in confirm_page
    c.post(RUN_ALL, {"post": "yes"})
    run_worker(ready)  # the worker's run is refused for drift
    run_id = MigrationRun.objects.get(status="refused").pk
    page = c.get(reverse("admin:tenancy_migrationrun_change", args=[run_id])).content.decode()
    assert 'id="drift-offers"' in page and "tenant/001_organizations_users.sql" in page
    url = "/admin/tenancy/tenant/accept-checksum/?version=001"
    assert f'href="{url}"' in page
    confirm = c.get(url).content.decode()
    assert a in confirm and b in confirm
    assert Client().post(url, {"post": "yes", "version": "001"}).status_code == 302
    assert client_for(user("viewer", "tenancy.view_tenant")).get(url).status_code == 403
    c.post(url, {"post": "yes", "version": "001"})
    assert "edited" not in checksums("001").values()
    assert "drift-offers" not in c.get(RUN_ALL).content.decode()


# -- the audit log ---------------------------------------------------------------------------
def test_audit_log_reads_as_fields_with_links_and_a_row_per_tenant(
    ready: Path, superuser: User
) -> None:
    from tenancy.services import runs

    pk, a, b = two_tenants()
    add_file(ready, "004_feature_data.sql", FEATURE_SQL)
    report = runs.migrate(public=False, actor="test")
    run_url = reverse("admin:tenancy_migrationrun_change", args=[report.run_id])
    assert query(
        "SELECT tenant_schema, details->>'outcome' FROM public.audit_logs "
        "WHERE action = 'migrate.run.schema' AND (details->>'run_id')::int = %s ORDER BY 1",
        [report.run_id],
    ) == [(a, "succeeded"), (b, "succeeded")]
    c = client_for(superuser)
    found = c.get("/admin/tenancy/auditlog/", {"q": a}).content.decode()
    assert "migrate.run.schema" in found and f'href="{run_url}"' in found
    assert f'href="{CHANGELIST}{pk}/change/"' in found  # the tenant links to its page
    assert "{&#x27;" not in found and "{'" not in found  # no raw dict text
    assert "<b>versions</b>: 004" in found and b not in found
    row = AuditLog.objects.get(action="migrate.run", details__run_id=report.run_id)
    page = c.get(f"/admin/tenancy/auditlog/{row.pk}/change/").content.decode()
    assert '<table class="tenancy-fields">' in page and f'href="{run_url}"' in page
    tenant_page = c.get(f"{CHANGELIST}{pk}/change/").content.decode()
    audit = tenant_page[tenant_page.index('id="audit-rows"') :]
    assert "migrate.run.schema" in audit and b not in audit  # its own rows, not the others'


# -- navigation ------------------------------------------------------------------------------
def test_tenant_page_shows_roles_domain_size_activity(ready: Path, superuser: User) -> None:
    from tenancy.engine.names import role_for_schema

    pk, a, _ = two_tenants()
    html = client_for(superuser).get(f"{CHANGELIST}{pk}/change/").content.decode()
    facts = html[html.index('id="tenant-facts"') : html.index('id="catalog-verify"')]
    assert role_for_schema(a, connection.settings_dict["NAME"]) in facts
    assert "org-reca1." in facts and "(primary)" in facts  # its domain
    assert "kB" in facts or "MB" in facts
    assert "1 audit row(s)" in facts  # the creation


def test_list_sorts_by_state_and_applied(ready: Path, superuser: User) -> None:
    _, a, b = two_tenants()
    query(
        "UPDATE public.tenant_migrations SET checksum = 'edited' WHERE tenant_schema = %s "
        "AND migration_version = '002' RETURNING 1",
        [b],
    )
    c = client_for(superuser)
    # Columns (after the action checkbox): 1 organization, ..., 4 applied, 5 migrations.
    html = c.get(CHANGELIST, {"o": "5"}).content.decode()
    assert html.index("Recover B") < html.index("Recover A")  # drift before up to date
    html = c.get(CHANGELIST, {"o": "-5"}).content.decode()
    assert html.index("Recover A") < html.index("Recover B")
    assert c.get(CHANGELIST, {"o": "4"}).status_code == 200


def test_runs_are_searchable_by_tenant_with_their_scope(ready: Path, superuser: User) -> None:
    from tenancy.services import runs

    _, a, b = two_tenants()
    add_file(ready, "004_feature_data.sql", FEATURE_SQL)
    only_a = runs.migrate(public=False, only=[a], actor="test").run_id
    rest = runs.migrate(public=False, actor="test").run_id
    html = client_for(superuser).get("/admin/tenancy/migrationrun/", {"q": b}).content.decode()
    assert f"/migrationrun/{rest}/change/" in html and f"/migrationrun/{only_a}/change/" not in html
    html = client_for(superuser).get("/admin/tenancy/migrationrun/", {"q": a}).content.decode()
    assert f"/migrationrun/{only_a}/change/" in html and "field-scope" in html


# -- placement on Citus: move to node, rebalance (plain PostgreSQL here) ---------------------
def move_url(pk: int) -> str:
    return f"{CHANGELIST}{pk}/move/"


REBALANCE = f"{CHANGELIST}rebalance/"
REBALANCE_STOP = f"{CHANGELIST}rebalance/stop/"
NOT_CITUS = "not a Citus cluster"


def placement_audit() -> list[tuple]:
    return query(
        "SELECT action FROM public.audit_logs "
        "WHERE action IN ('tenant.move', 'tenant.rebalance', 'tenant.rebalance.stop')"
    )


def test_placement_permissions_exist_after_a_flush(pg: None) -> None:
    # transactional_db flushed the tables before this test: the post_migrate hook in
    # tenancy/admin.py put migration 0010's permissions back.
    names = dict(
        Permission.objects.filter(
            content_type__app_label="tenancy", codename__in=["move_tenant", "rebalance_tenant"]
        ).values_list("codename", "name")
    )
    assert set(names) == {"move_tenant", "rebalance_tenant"}


def test_move_needs_its_permission_and_is_refused_off_citus(ready: Path) -> None:
    tenants.create_tenant("org_move1", "Move One", actor="test")
    pk = Tenant.objects.get().pk
    url = move_url(pk)
    data = {"post": "yes", "node": "127.0.0.1:5432", "mode": "block_writes"}
    for response in (Client().get(url), Client().post(url, data)):
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    other = client_for(user("viewer", "tenancy.view_tenant", "tenancy.rebalance_tenant"))
    assert other.get(url).status_code == 403
    assert other.post(url, data).status_code == 403
    assert "/move/" not in other.get(f"{CHANGELIST}{pk}/change/").content.decode()
    ops = client_for(user("ops", "tenancy.view_tenant", "tenancy.move_tenant"))
    # Off Citus the tenant page offers no move, and the page says why with no "Yes".
    tenant_page = ops.get(f"{CHANGELIST}{pk}/change/").content.decode()
    assert "Move to node" not in tenant_page and ">Node<" not in tenant_page
    confirm = ops.get(url)
    html = confirm.content.decode()
    assert confirm.status_code == 200 and NOT_CITUS in html
    assert 'id="move-confirm"' not in html
    refused = ops.post(url, data)
    assert refused.status_code == 200
    assert f"Move refused: This database is {NOT_CITUS}" in refused.content.decode()
    assert placement_audit() == []
    assert query("SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_org_move1'") == [(1,)]


def test_rebalance_needs_its_permission_and_is_refused_off_citus(ready: Path) -> None:
    tenants.create_tenant("org_rebal1", actor="test")
    for url in (REBALANCE, REBALANCE_STOP):
        for response in (Client().get(url), Client().post(url, {"post": "yes"})):
            assert response.status_code == 302
            assert response["Location"].startswith("/admin/login/")
    other = client_for(user("viewer", "tenancy.view_tenant", "tenancy.move_tenant"))
    for url in (REBALANCE, REBALANCE_STOP):
        assert other.get(url).status_code == 403
        assert other.post(url, {"post": "yes"}).status_code == 403
    ops = client_for(user("ops", "tenancy.view_tenant", "tenancy.rebalance_tenant"))
    assert "Rebalance…" not in ops.get(CHANGELIST).content.decode()  # not offered off Citus
    assert 'id="fleet-nodes"' not in ops.get("/admin/").content.decode()
    for url, refusal in ((REBALANCE, "Rebalance refused"), (REBALANCE_STOP, "Stop refused")):
        page = ops.get(url).content.decode()
        assert NOT_CITUS in page and 'name="post" value="yes"' not in page
        refused = ops.post(url, {"post": "yes", "mode": "block_writes"})
        assert refused.status_code == 200
        assert f"{refusal}: This database is {NOT_CITUS}" in refused.content.decode()
    assert placement_audit() == []


def test_no_node_column_or_filter_off_citus(ready: Path, superuser: User) -> None:
    tenants.create_tenant("org_nonode1", actor="test")
    html = client_for(superuser).get(CHANGELIST).content.decode()
    assert "org_nonode1" in html
    assert 'class="column-node' not in html and 'class="field-node' not in html
    assert "?node=" not in html  # the node filter has no choices, so it is not shown


# -- third pass: what an operator trying to break it found -------------------------------
def test_runs_list_styles_its_badges(ready: Path, superuser: User) -> None:
    # The runs list shows status and failure badges: their colours must be on the page.
    html = client_for(superuser).get("/admin/tenancy/migrationrun/").content.decode()
    assert "tenancy-badge" in html
    assert ".tenancy-badge-error {" in html


def test_lifecycle_message_keeps_the_schema_name_as_it_is(ready: Path, superuser: User) -> None:
    # The admin capitalises a message's first letter: a message must not start with a
    # schema name (tenant_org_… is an identifier, Tenant_org_… is another one).
    tenants.create_tenant("org_life2", actor="test")
    pk = Tenant.objects.get().pk
    c = client_for(superuser)
    html = c.post(lifecycle_url(pk, "suspend"), {"post": "yes"}, follow=True).content.decode()
    assert "tenant_org_life2" in html and "Tenant_org_life2" not in html
    html = c.post(lifecycle_url(pk, "suspend"), {"post": "yes"}, follow=True).content.decode()
    assert "already suspended" in html and "Tenant_org_life2" not in html


def test_actions_on_a_tenant_dropped_meanwhile_go_back_to_the_list(
    ready: Path, superuser: User
) -> None:
    # A confirmation page left open in a tab while the tenant was dropped in another: its
    # "Yes" lands on the tenant list with a message (as Django's own change page does).
    from tenancy.services import lifecycle

    tenants.create_tenant("org_gone1", actor="test")
    pk = Tenant.objects.get().pk
    lifecycle.drop_tenant("tenant_org_gone1", actor="test", expected_schema="tenant_org_gone1")
    c = client_for(superuser)
    for url, data in [
        (lifecycle_url(pk, "archive"), {"post": "yes"}),
        (recover_url(pk, "fake", "003"), {"post": "yes", "version": "003"}),
        (f"{CHANGELIST}{pk}/run/", {}),
    ]:
        response = c.post(url, data)
        assert response.status_code == 302, url
        assert response["Location"] == CHANGELIST
        page = c.get(CHANGELIST).content.decode()
        assert f"ID “{pk}” doesn’t exist" in page, url
    assert c.get(lifecycle_url(pk, "archive"))["Location"] == CHANGELIST
    # Without the permission it is still a refusal, not a hint that the tenant is gone.
    viewer = client_for(user("viewer", "tenancy.view_tenant"))
    assert viewer.post(lifecycle_url(pk, "archive"), {"post": "yes"}).status_code == 403


def test_live_run_summary_admits_failures_before_the_run_ends(ready: Path, superuser: User) -> None:
    # While a run runs, its failed schemas are only counted (their rows come at the end):
    # the page must not say "No failure so far" beside a red progress bar.
    run = MigrationRun.objects.create(
        status="running", total_schemas=4, done_schemas=2, failed_schemas=1
    )
    c = client_for(superuser)
    html = c.get(f"/admin/tenancy/migrationrun/{run.pk}/change/").content.decode()
    assert "No failure so far" not in html
    assert "1 schema(s) failed so far" in html
    progress = c.get(f"/admin/tenancy/migrationrun/{run.pk}/progress.json").json()
    assert "1 schema(s) failed so far" in progress["summary"]
    # The live note follows the status: no "waits for the worker" once it runs.
    assert "js-run-queued-note" in html
    assert 'This run is <span class="js-run-status-lower">running</span>' in html


def test_tenant_page_times_are_to_the_second(ready: Path, superuser: User) -> None:
    import re

    pk, _, _ = two_tenants()
    html = client_for(superuser).get(f"{CHANGELIST}{pk}/change/").content.decode()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    created = html[html.index("Created") : html.index('id="migration-state"')]
    assert re.search(stamp, created)
    for section, nxt in [
        ('id="migration-state"', 'id="tenant-facts"'),
        ('id="migration-history"', 'id="run-results"'),
    ]:
        part = html[html.index(section) : html.index(nxt)]
        assert re.search(stamp, part), section
        assert " a.m." not in part and " p.m." not in part, section


def test_admin_actions_show_in_recent_actions(ready: Path, superuser: User) -> None:
    """Django's admin log (the index's Recent actions) records what the admin's own
    actions did: a creation, a lifecycle change, a drop."""
    from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry

    c = client_for(superuser)
    c.post(ADD, {"auth0_org_id": "org_Logged1", "organization_name": "Logged"})
    tenant = Tenant.objects.get(auth0_org_id="org_Logged1")
    c.post(lifecycle_url(tenant.pk, "suspend"), {"post": "yes"})
    c.post(
        lifecycle_url(tenant.pk, "drop"),
        {"post": "yes", "confirm_schema": "tenant_org_logged1"},
    )
    flags = list(
        LogEntry.objects.filter(object_id=str(tenant.pk))
        .order_by("id")
        .values_list("action_flag", flat=True)
    )
    assert flags == [ADDITION, CHANGE, DELETION]
    index = c.get("/admin/").content.decode()
    assert "Logged (tenant_org_logged1)" in index  # in Recent actions
