"""django-tenants' multi-type tenants (HAS_MULTI_TYPE_TENANTS, TENANT_TYPES;
services/tenant_types.py): each tenant schema gets the SQL files and the Django migrations
of its own type's apps, in creation, in the plan and in a run; a tenant registered before
types has the first type; an unknown type is refused with nothing made; the Migrations
page counts a step only where the type has it; requests use the type's URLconf."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.db import connection
from django.test import RequestFactory

from employer_portal.settings import SHARED_APPS
from tenancy.services import django_steps, runs
from tenancy.services.tenants import create_tenant
from tests.conftest import connect, ledger_versions, query, run_command, tables_in
from tests.test_admin import client_for, reverse

NOTES_TABLE = "candidate_notes_candidatenote"
NOTES_STEPS = ["candidate_notes.0001_initial", "candidate_notes.0002_summary"]
BASIC = {"APPS": ["employer_portal.portal"], "URLCONF": "employer_portal.tenant_urls"}
NOTES = {
    "APPS": ["employer_portal.portal", "employer_portal.candidate_notes"],
    "URLCONF": "employer_portal.urls",
}


def turn_on_types(settings: Any, **types: dict) -> None:
    settings.HAS_MULTI_TYPE_TENANTS = True
    settings.MULTI_TYPE_DATABASE_FIELD = "tenant_type"
    settings.TENANT_TYPES = {"public": {"APPS": SHARED_APPS, "URLCONF": "employer_portal.urls"}}
    settings.TENANT_TYPES.update(types)
    django_steps._cache.clear()
    django_steps._introspects.clear()


@pytest.fixture
def typed(settings: Any) -> None:
    turn_on_types(settings, basic=BASIC, notes=NOTES)


STEP_ROW = re.compile(r'<tr class="step-row" id="step-tenant-([^"]+)">(.*?)</tr>', re.S)


def counts_by_version(html: str) -> dict[str, dict[str, int]]:
    """The Migrations page's tenant rows: version (a file's number, a Django step's name)
    -> {category: count}."""
    return {
        version: {k: int(v) for k, v in re.findall(r"count-(\w+)[^>]*>(?:<a [^>]*>)?(\d+)", row)}
        for version, row in STEP_ROW.findall(html)
    }


def registered_type(schema: str) -> str | None:
    return query("SELECT tenant_type FROM tenant_registry WHERE schema_name = %s", [schema])[0][0]


def test_each_type_gets_its_own_apps(public_ready, sql_dir, typed):
    basic = create_tenant("org_tybasic1", tenant_type="basic").schema
    notes = create_tenant("org_tynotes1", tenant_type="notes").schema
    assert (registered_type(basic), registered_type(notes)) == ("basic", "notes")
    assert NOTES_TABLE in tables_in(notes) and NOTES_TABLE not in tables_in(basic)
    assert ledger_versions(notes)[-2:] == NOTES_STEPS
    assert not set(NOTES_STEPS) & set(ledger_versions(basic))
    sql_files = [v for v in ledger_versions(notes) if v.isdigit()]
    assert sql_files == [v for v in ledger_versions(basic) if v.isdigit()]  # files: all types
    # Nothing is pending for either: a basic tenant lacks no notes step.
    plan = runs.make_plan(public=False)
    assert {s.schema: [m.name for m in s.pending] for s in plan.schemas} == {basic: [], notes: []}
    code, out, err = run_command("migrate_tenants", "--check")
    assert code == 0, (out, err)


def test_a_tenant_registered_before_types_has_the_first_type(public_ready, sql_dir, settings):
    before = create_tenant("org_tyold1").schema  # the suite's TENANT_APPS: no notes app
    assert registered_type(before) is None and NOTES_TABLE not in tables_in(before)
    turn_on_types(settings, notes=NOTES, basic=BASIC)  # notes first: the default type
    plan = runs.make_plan(public=False, only=[before])
    assert [m.name for m in plan.schemas[0].pending] == NOTES_STEPS
    code, out, err = run_command("migrate_tenants")
    assert code == 0, (out, err)
    assert NOTES_TABLE in tables_in(before)
    assert ledger_versions(before)[-2:] == NOTES_STEPS


def test_an_unknown_type_is_refused_with_nothing_made(public_ready, sql_dir, typed):
    code, out, err = run_command("tenant_create", "org_tybad1", "--type", "premium")
    assert code == 1
    assert "Unknown tenant type 'premium': TENANT_TYPES names basic, notes." in err
    assert "Traceback" not in err
    assert query("SELECT count(*) FROM tenant_registry") == [(0,)]
    assert query("SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_org_tybad1'") == [(0,)]


def test_a_type_without_multi_type_tenants_is_refused(public_ready, sql_dir):
    code, out, err = run_command("tenant_create", "org_tybad2", "--type", "notes")
    assert code == 1
    assert "HAS_MULTI_TYPE_TENANTS is off" in err
    assert query("SELECT count(*) FROM tenant_registry") == [(0,)]


def test_the_migrations_page_counts_a_step_where_its_type_has_it(
    public_ready, sql_dir, typed, superuser
):
    create_tenant("org_tybasic2", tenant_type="basic")
    create_tenant("org_tynotes2", tenant_type="notes")
    page = client_for(superuser).get(reverse("admin:tenancy_tenantmigration_changelist"))
    seen = counts_by_version(page.content.decode())
    assert seen[NOTES_STEPS[0]]["applied"] == 1 and seen[NOTES_STEPS[0]]["pending"] == 0
    assert seen["001"]["applied"] == 2


def test_requests_use_their_types_urlconf(public_ready, sql_dir, typed):
    from tenancy.middleware import TenantMiddleware

    created = {t: create_tenant(f"org_tyurl{t}", tenant_type=t) for t in ("basic", "notes")}
    middleware = TenantMiddleware(lambda request: None)
    for tenant_type, tenant in created.items():
        request = RequestFactory().get("/", HTTP_HOST=tenant.domain)
        try:
            middleware.process_request(request)  # django-tenants' routing, by host
        finally:
            connection.set_schema_to_public()
        assert request.tenant.schema_name == tenant.schema
        assert request.urlconf == (BASIC if tenant_type == "basic" else NOTES)["URLCONF"]


def test_the_admin_creates_a_tenant_of_a_type_and_lists_types(
    public_ready, sql_dir, typed, superuser
):
    c = client_for(superuser)
    form = c.get("/admin/tenancy/tenant/add/").content.decode()
    assert 'name="tenant_type"' in form and 'value="notes"' in form
    response = c.post(
        "/admin/tenancy/tenant/add/", {"auth0_org_id": "org_tyform1", "tenant_type": "notes"}
    )
    assert response.status_code == 302, response.content.decode()[:500]
    assert registered_type("tenant_org_tyform1") == "notes"
    assert NOTES_TABLE in tables_in("tenant_org_tyform1")
    listed = c.get(reverse("admin:tenancy_tenant_changelist")).content.decode()
    assert "column-type_name" in listed and ">notes<" in listed
    narrowed = c.get(reverse("admin:tenancy_tenant_changelist") + "?tenant_type=basic")
    assert "tenant_org_tyform1" not in narrowed.content.decode()


def test_tenant_verify_compares_each_tenant_with_its_types_steps(public_ready, sql_dir, typed):
    from tenancy.services.verify import verify

    basic = create_tenant("org_tyver1", tenant_type="basic").schema
    notes = create_tenant("org_tyver2", tenant_type="notes").schema
    report = verify()
    found = {t.schema: t.to_dict() for t in report.tenants}
    assert set(found) == {basic, notes}
    assert all(t.ok and not t.behind for t in report.tenants), found  # not behind the other type
    with connect() as conn:
        conn.execute(f'DROP TABLE "{notes}".{NOTES_TABLE}')
    broken = {t.schema: t.ok for t in verify().tenants}
    assert broken == {basic: True, notes: False}


def test_a_file_after_another_types_migration_goes_to_every_type(public_ready, sql_dir, typed):
    (sql_dir / "tenant" / "040_after_notes.sql").write_text(
        "-- Depends: candidate_notes.0002\n-- UP\nCREATE TABLE after_notes (id int);\n"
    )
    basic = create_tenant("org_tydep1", tenant_type="basic").schema
    notes = create_tenant("org_tydep2", tenant_type="notes").schema
    assert "after_notes" in tables_in(basic) and "after_notes" in tables_in(notes)
    order = [
        r[0]
        for r in query(
            "SELECT migration_version FROM tenant_migrations WHERE tenant_schema = %s ORDER BY id",
            [notes],
        )
    ]
    assert order.index("040") > order.index(NOTES_STEPS[1])  # after the step it names


def test_a_rollout_stage_selects_a_type(public_ready, sql_dir, typed):
    from tenancy.services import rollout_policy, rollouts

    basic = create_tenant("org_tyroll1", tenant_type="basic").schema
    notes = create_tenant("org_tyroll2", tenant_type="notes").schema
    (sql_dir / "tenant" / "040_more.sql").write_text("-- UP\nCREATE TABLE more (id int);\n")
    policy = {"by_type": [{"name": "notes first", "type": "notes"}, {"name": "rest"}]}
    stages = rollout_policy.named_policy("by_type", policy, jobs=1)
    report = rollouts.start(stages, policy="by_type", actor="test")
    assert report.exit_code == 0 and report.record.state == "completed"
    assert [s["schemas"] for s in report.record.stages] == [[notes], [basic]]
    with pytest.raises(rollout_policy.PolicyError, match="'premium' is not a tenant type"):
        rollout_policy.named_policy("bad", {"bad": [{"type": "premium"}, {}]}, jobs=1)


def test_tenant_list_shows_each_type(public_ready, sql_dir, typed):
    create_tenant("org_tylist1", tenant_type="notes")
    code, out, _ = run_command("tenant_list", "--format", "json")
    assert code == 0
    assert [t["tenant_type"] for t in json.loads(out)] == ["notes"]
    code, out, _ = run_command("tenant_list")
    assert "Type: notes" in out


def test_migrate_schemas_migrates_each_type_with_its_steps(public_ready, sql_dir, settings):
    schema = create_tenant("org_tyms1").schema  # before types: the suite's apps only
    turn_on_types(settings, basic=BASIC, notes=NOTES)
    query(
        "UPDATE tenant_registry SET tenant_type = 'notes' WHERE schema_name = %s RETURNING 1",
        [schema],
    )  # as if it had been given the type when created
    (sql_dir / "tenant" / "040_more.sql").write_text("-- UP\nCREATE TABLE more (id int);\n")
    code, out, err = run_command("migrate_schemas")
    assert code == 0, (out, err)
    assert {"more", NOTES_TABLE} <= tables_in(schema)
    assert NOTES_TABLE not in tables_in("public")


def test_tenancy_adopt_records_the_steps_of_the_tenants_type(
    public_ready, project_tenant_apps, sql_dir, settings
):
    from tenancy.models import Tenant
    from tenancy.services import adoption
    from tests.test_adopt import stock_schema

    files = sorted((sql_dir / "tenant").glob("*.sql"))
    stock_schema("acme", sql_files=files)  # built by stock django-tenants, every tenant app
    turn_on_types(settings, basic=BASIC, notes=NOTES)  # basic first: the default type
    Tenant.objects.create(
        schema_name="acme", organization_name="Acme", auth0_org_id="org_acme", tenant_type="notes"
    )
    basic = create_tenant("org_tyadopt1", tenant_type="basic").schema
    report = adoption.adopt(["acme"], baseline="003", actor="test")
    assert report.ok, [s.to_dict() for s in report.schemas]
    assert ledger_versions("acme")[-2:] == NOTES_STEPS  # its type's, not the default's
    assert not set(NOTES_STEPS) & set(ledger_versions(basic))
    code, out, err = run_command("migrate_tenants", "--check")
    assert code == 0, (out, err)


def test_the_pool_keeps_entries_of_each_type(public_ready, sql_dir, typed, settings, monkeypatch):
    from tenancy.services import pool, tenants

    settings.TENANCY = {**settings.TENANCY, "POOL_SIZE": 1}
    monkeypatch.setattr(tenants, "REFILL_TASK", "tests.test_pool.no_refill")
    report = pool.fill(actor="test")
    assert len(report.built) == 2, report.to_dict()  # one of each type
    kinds = dict(query("SELECT tenant_type, schema_name FROM tenant_pool"))
    assert set(kinds) == {"basic", "notes"}
    assert NOTES_TABLE in tables_in(kinds["notes"]) and NOTES_TABLE not in tables_in(kinds["basic"])
    notes = create_tenant("org_typool1", tenant_type="notes")
    basic = create_tenant("org_typool2", tenant_type="basic")
    assert (notes.path, notes.pool_schema) == ("pool", kinds["notes"])  # its own type's entry
    assert (basic.path, basic.pool_schema) == ("pool", kinds["basic"])
    assert NOTES_TABLE in tables_in(notes.schema) and NOTES_TABLE not in tables_in(basic.schema)
    assert ledger_versions(notes.schema)[-2:] == NOTES_STEPS
    assert registered_type(notes.schema) == "notes"
    again = create_tenant("org_typool3", tenant_type="notes")  # none of its type is left
    assert again.path == "direct" and NOTES_TABLE in tables_in(again.schema)
