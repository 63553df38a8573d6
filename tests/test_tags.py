"""Tenant tags on real PostgreSQL: validation, set/add/remove through the service and
`tenant_tag` (one transaction, audited), tags at creation (direct and claimed from the
pool, in the creation's transaction), `tenant_list --tag`, and the admin's column, filter
and "Edit tags" page behind `tenancy.change_tenant`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tenancy.engine.names import InvalidName, split_tags, validate_tag, validate_tags
from tenancy.models import Tenant
from tenancy.services import pool, tenants
from tenancy.services.tenants import TenantError, create_tenant, set_tenant_tags
from tests.conftest import fail_after_step, query, run_command
from tests.test_admin import client_for, user
from tests.test_tenants_creation import snapshot

CHANGELIST = "/admin/tenancy/tenant/"
ADD = "/admin/tenancy/tenant/add/"


def tags_of(schema: str) -> list[str]:
    return query("SELECT tags FROM public.tenant_registry WHERE schema_name = %s", [schema])[0][0]


def tag_audit() -> list[tuple]:
    return query(
        "SELECT tenant_schema, actor, details FROM public.audit_logs WHERE action = 'tenant.tags' "
        "ORDER BY id"
    )


@pytest.fixture
def acme(public_ready: None) -> str:
    return create_tenant("org_acme1", "Acme", actor="test").schema


# -- validation (no database) --------------------------------------------------------------
@pytest.mark.parametrize("tag", ["eu", "enterprise", "beta.2", "eu-west_1", "0", "a" * 64])
def test_valid_tags(tag: str) -> None:
    assert validate_tag(tag) == tag


@pytest.mark.parametrize(
    "tag",
    ["", "EU", "-eu", ".eu", "_eu", "eu west", "eu,beta", "a" * 65, "ünï", "eu\n", "e'u", None],
)
def test_invalid_tags_are_refused(tag: Any) -> None:
    with pytest.raises(InvalidName, match="Invalid tag"):
        validate_tag(tag)


def test_an_upper_case_tag_is_told_its_lower_case_form() -> None:
    with pytest.raises(InvalidName, match="Tags are lower case: 'eu'"):
        validate_tag("EU")


def test_tags_are_sorted_and_unique_and_split_on_commas() -> None:
    assert validate_tags(["eu", "beta", "eu"]) == ["beta", "eu"]
    assert split_tags(" eu, beta,,") == ["eu", "beta"]
    assert split_tags("") == []
    with pytest.raises(TypeError):
        validate_tags("eu")


# -- the service ---------------------------------------------------------------------------
def test_add_remove_and_replace_keep_tags_sorted_unique_and_audited(acme: str) -> None:
    assert tags_of(acme) == []
    change = set_tenant_tags("org_acme1", add=["eu", "beta", "eu"], actor="test:ann")
    assert (change.schema, change.before, change.tags) == (acme, [], ["beta", "eu"])
    assert tags_of(acme) == ["beta", "eu"]
    change = set_tenant_tags(acme, add=["alpha"], remove=["beta", "absent"], actor="test:bob")
    assert change.tags == ["alpha", "eu"] and tags_of(acme) == ["alpha", "eu"]
    assert set_tenant_tags(acme, replace=["zeta"], actor="test:cy").tags == ["zeta"]
    assert set_tenant_tags(acme, replace=[], actor="test:cy").tags == []
    assert tag_audit() == [
        (acme, "test:ann", {"auth0_org_id": "org_acme1", "before": [], "after": ["beta", "eu"],
                            "added": ["beta", "eu"], "removed": []}),
        (acme, "test:bob", {"auth0_org_id": "org_acme1", "before": ["beta", "eu"],
                            "after": ["alpha", "eu"], "added": ["alpha"], "removed": ["beta"]}),
        (acme, "test:cy", {"auth0_org_id": "org_acme1", "before": ["alpha", "eu"],
                           "after": ["zeta"], "added": ["zeta"], "removed": ["alpha", "eu"]}),
        (acme, "test:cy", {"auth0_org_id": "org_acme1", "before": ["zeta"], "after": [],
                           "added": [], "removed": ["zeta"]}),
    ]  # fmt: skip


def test_a_change_that_changes_nothing_writes_nothing(acme: str) -> None:
    set_tenant_tags(acme, add=["eu"], actor="test")
    updated = query("SELECT updated_at FROM public.tenant_registry")
    change = set_tenant_tags(acme, add=["eu"], remove=["absent"], actor="test")
    assert not change.changed and change.tags == ["eu"]
    assert len(tag_audit()) == 1
    assert query("SELECT updated_at FROM public.tenant_registry") == updated


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"add": ["EU"]}, InvalidName, "Tags are lower case"),
        ({"remove": ["a b"]}, InvalidName, "Invalid tag"),
        ({"replace": ["x" * 65]}, InvalidName, "at most 64"),
        ({"replace": ["eu"], "add": ["beta"]}, TenantError, "not both"),
        ({"add": ["eu"], "remove": ["eu"]}, TenantError, "both added and removed"),
    ],
)
def test_refused_changes_change_nothing(acme: str, kwargs: dict, error: type, message: str) -> None:
    set_tenant_tags(acme, add=["keep"], actor="test")
    before = snapshot(), tag_audit()
    with pytest.raises(error, match=message):
        set_tenant_tags(acme, actor="test", **kwargs)
    assert (snapshot(), tag_audit()) == before and tags_of(acme) == ["keep"]


def test_an_unknown_tenant_is_refused(public_ready: None) -> None:
    with pytest.raises(TenantError, match="No tenant org_ghost1 is registered"):
        set_tenant_tags("org_ghost1", add=["eu"], actor="test")
    with pytest.raises(TenantError, match="No tenant tenant_org_ghost1 is registered"):
        set_tenant_tags("tenant_org_ghost1", add=["eu"], actor="test")
    assert tag_audit() == []


def test_tags_survive_a_suspension_and_a_recreation(acme: str) -> None:
    set_tenant_tags(acme, add=["eu"], actor="test")
    assert run_command("tenant_suspend", "org_acme1")[0] == 0
    assert run_command("tenant_recreate", acme, "--noinput")[0] == 0
    assert tags_of(acme) == ["eu"]
    code, _, err = run_command("tenant_suspend", "org_ghost1")  # the lookup they share
    assert code == 1 and "No tenant org_ghost1 is registered" in err


# -- tenant_tag ----------------------------------------------------------------------------
def test_tenant_tag_command_adds_removes_sets_and_prints_json(acme: str) -> None:
    code, out, err = run_command("tenant_tag", "org_acme1", "--add", "eu,beta", "--add", "gold")
    assert code == 0, err
    assert out.strip() == f"Acme ({acme}): tags none -> beta, eu, gold"
    code, out, _ = run_command("tenant_tag", acme, "--remove", "beta", "--json")
    assert code == 0 and json.loads(out) == {"schema": acme, "tags": ["eu", "gold"]}
    code, out, _ = run_command("tenant_tag", acme, "--set", "x,y", "--format", "json")
    assert code == 0 and json.loads(out) == {"schema": acme, "tags": ["x", "y"]}
    code, out, _ = run_command("tenant_tag", acme, "--set", "x,y")
    assert code == 0 and out.strip() == f"Acme ({acme}): tags unchanged (x, y)."
    code, out, _ = run_command("tenant_tag", acme, "--set", "", "--actor", "ci:deploy")
    assert code == 0 and tags_of(acme) == []
    actors = [r[1] for r in tag_audit()]
    assert actors[:3] == [actors[0]] * 3 and actors[0].startswith("cli:")
    assert actors[3] == "ci:deploy" and len(actors) == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--add", "eu,Beta"], "Invalid tag 'Beta'"),
        (["--set", "eu", "--add", "beta"], "--set replaces every tag"),
        (["--set", "eu", "--remove", "keep"], "--set replaces every tag"),
        ([], "Nothing to change"),
        (["--add", "eu", "--remove", "eu"], "both added and removed"),
    ],
)
def test_tenant_tag_refusals_exit_1_and_change_nothing(
    acme: str, args: list[str], message: str
) -> None:
    set_tenant_tags(acme, add=["keep"], actor="test")
    before = snapshot(), tag_audit()
    code, out, err = run_command("tenant_tag", "org_acme1", *args)
    assert code == 1 and message in err and "Traceback" not in err + out
    assert (snapshot(), tag_audit()) == before and tags_of(acme) == ["keep"]


def test_tenant_tag_on_an_unknown_tenant_exits_1(public_ready: None) -> None:
    code, _, err = run_command("tenant_tag", "org_ghost1", "--add", "eu")
    assert code == 1 and "No tenant org_ghost1 is registered" in err


# -- tags at creation -----------------------------------------------------------------------
def test_tenant_create_with_tags(public_ready: None) -> None:
    code, out, err = run_command("tenant_create", "org_tagged1", "--tag", "eu", "--tag", "beta,eu")
    assert code == 0, err
    assert "   Tags: beta, eu" in out.splitlines()
    assert tags_of("tenant_org_tagged1") == ["beta", "eu"]
    [(details,)] = query("SELECT details FROM public.audit_logs WHERE action = 'tenant.create'")
    assert details["tags"] == ["beta", "eu"] and details["path"] == "direct"
    code, out, _ = run_command("tenant_create", "org_tagged2", "--tag", "x", "--format", "json")
    assert code == 0 and json.loads(out)["tags"] == ["x"]


def test_tenant_create_without_tags_keeps_its_output(public_ready: None) -> None:
    code, out, _ = run_command("tenant_create", "org_plain1")
    assert code == 0 and "Tags" not in out
    assert tags_of("tenant_org_plain1") == []
    [(details,)] = query("SELECT details FROM public.audit_logs WHERE action = 'tenant.create'")
    assert "tags" not in details


def test_tenant_create_with_a_bad_tag_creates_nothing(public_ready: None) -> None:
    before = snapshot()
    code, out, err = run_command("tenant_create", "org_bad1", "--tag", "eu", "--tag", "EU West")
    assert code == 1 and "Invalid tag 'EU West'" in err and "Traceback" not in err + out
    assert snapshot() == before
    with pytest.raises(InvalidName):
        create_tenant("org_bad1", tags=["ok", "-no"], actor="test")
    assert snapshot() == before


def test_a_failed_creation_leaves_no_tagged_row(public_ready: None, monkeypatch: Any) -> None:
    index = [n for n, _ in tenants.CREATION_STEPS].index("audit")
    fail_after_step(monkeypatch, tenants, "CREATION_STEPS", index)
    before = snapshot()
    with pytest.raises(TenantError, match="failed at step 'audit'"):
        create_tenant("org_undone1", tags=["eu"], actor="test")
    assert snapshot() == before


@pytest.fixture
def warm_pool(public_ready: None, sql_dir: Path, settings: Any, monkeypatch: Any) -> None:
    """A pool of one, filled by the test (no refill enqueued)."""
    settings.TENANCY = {**settings.TENANCY, "POOL_SIZE": 1}
    monkeypatch.setattr(tenants, "REFILL_TASK", "tests.test_pool.no_refill")
    assert len(pool.fill(1, actor="test").built) == 1


def test_tags_of_a_tenant_claimed_from_the_pool(warm_pool: None) -> None:
    created = create_tenant("org_warm1", "Warm", tags=["eu", "beta"], actor="test")
    assert created.path == "pool" and created.tags == ["beta", "eu"]
    assert tags_of("tenant_org_warm1") == ["beta", "eu"]
    [(details,)] = query("SELECT details FROM public.audit_logs WHERE action = 'tenant.create'")
    assert details["path"] == "pool" and details["tags"] == ["beta", "eu"]


def test_a_failed_claim_leaves_the_pool_entry_and_no_tagged_row(
    warm_pool: None, monkeypatch: Any
) -> None:
    index = [n for n, _ in tenants.CLAIM_STEPS].index("audit")
    fail_after_step(monkeypatch, tenants, "CLAIM_STEPS", index)
    before = snapshot(), query("SELECT schema_name, state FROM public.tenant_pool")
    with pytest.raises(TenantError, match="failed at step 'audit'"):
        create_tenant("org_warm2", tags=["eu"], actor="test")
    assert (snapshot(), query("SELECT schema_name, state FROM public.tenant_pool")) == before


# -- tenant_list ---------------------------------------------------------------------------
@pytest.fixture
def fleet(public_ready: None) -> None:
    create_tenant("org_one1", "One", tags=["eu", "beta"], actor="test")
    create_tenant("org_two2", "Two", tags=["eu"], actor="test")
    create_tenant("org_three3", "Three", actor="test")


def test_tenant_list_shows_tags_and_filters_on_all_given(fleet: None) -> None:
    code, out, _ = run_command("tenant_list")
    assert code == 0
    assert out.splitlines()[:5] == [
        "1. One",
        "   Schema: tenant_org_one1",
        "   Auth0 Org ID: org_one1",
        "   Status: active",
        "   Tags: beta, eu",
    ]
    assert out.splitlines()[-4:] == [  # an untagged tenant: the guide's lines, as ever
        "3. Three",
        "   Schema: tenant_org_three3",
        "   Auth0 Org ID: org_three3",
        "   Status: active",
    ]
    code, out, _ = run_command("tenant_list", "--tag", "eu", "--format", "json")
    assert code == 0
    assert [(t["auth0_org_id"], t["tags"]) for t in json.loads(out)] == [
        ("org_one1", ["beta", "eu"]),
        ("org_two2", ["eu"]),
    ]
    code, out, _ = run_command("tenant_list", "--tag", "eu", "--tag", "beta")
    assert code == 0 and "1. One" in out and "Two" not in out
    code, out, _ = run_command("tenant_list", "--tag", "eu,beta", "--format", "json")
    assert [t["schema_name"] for t in json.loads(out)] == ["tenant_org_one1"]
    code, out, _ = run_command("tenant_list", "--format", "json")
    assert [t["tags"] for t in json.loads(out)] == [["beta", "eu"], ["eu"], []]


def test_tenant_list_with_no_match_or_a_bad_tag(fleet: None) -> None:
    code, out, _ = run_command("tenant_list", "--tag", "gold")
    assert code == 0 and out.strip() == "No tenants with tag(s) gold"
    code, out, _ = run_command("tenant_list", "--tag", "gold", "--format", "json")
    assert code == 0 and json.loads(out) == []
    code, out, err = run_command("tenant_list", "--tag", "Gold")
    assert code == 1 and "Invalid tag 'Gold'" in err and out == ""


# -- the admin -----------------------------------------------------------------------------
def tags_url(pk: int) -> str:
    return f"{CHANGELIST}{pk}/tags/"


def test_changelist_shows_tags_and_filters_by_tag(fleet: None, superuser: User) -> None:
    c = client_for(superuser)
    page = c.get(CHANGELIST).content.decode()
    assert '<td class="field-tag_list">' in page and '<span class="tenancy-tag">beta</span>' in page
    assert "?tag=beta" in page and "?tag=eu" in page  # the filter lists the tags in use
    filtered = c.get(CHANGELIST, {"tag": "eu"}).content.decode()
    assert "org_one1" in filtered and "org_two2" in filtered and "org_three3" not in filtered
    filtered = c.get(CHANGELIST, {"tag": "beta"}).content.decode()
    assert "org_one1" in filtered and "org_two2" not in filtered


def test_tag_filter_is_hidden_while_no_tenant_has_tags(public_ready: None, superuser: User) -> None:
    create_tenant("org_bare1", actor="test")
    page = client_for(superuser).get(CHANGELIST).content.decode()
    assert "?tag=" not in page and "org_bare1" in page


def test_edit_tags_saves_through_the_service_and_is_audited(acme: str, superuser: User) -> None:
    pk = Tenant.objects.get().pk
    c = client_for(superuser)
    page = c.get(f"{CHANGELIST}{pk}/change/").content.decode()
    assert tags_url(pk) in page and "Edit tags" in page
    form = c.get(tags_url(pk))
    assert form.status_code == 200 and 'name="tags"' in form.content.decode()
    response = c.post(tags_url(pk), {"tags": "eu, beta,eu"})
    assert response.status_code == 302 and response["Location"] == f"{CHANGELIST}{pk}/change/"
    assert tags_of(acme) == ["beta", "eu"]
    assert [(r[1], r[2]["after"]) for r in tag_audit()] == [("admin:root", ["beta", "eu"])]
    page = c.get(f"{CHANGELIST}{pk}/change/").content.decode()
    assert '<span class="tenancy-tag">eu</span>' in page and "tenant.tags" in page
    assert 'value="beta, eu"' in c.get(tags_url(pk)).content.decode()
    c.post(tags_url(pk), {"tags": ""})
    assert tags_of(acme) == [] and len(tag_audit()) == 2


def test_edit_tags_refuses_a_bad_tag_and_changes_nothing(acme: str, superuser: User) -> None:
    set_tenant_tags(acme, add=["keep"], actor="test")
    pk = Tenant.objects.get().pk
    response = client_for(superuser).post(tags_url(pk), {"tags": "eu, Not Valid"})
    assert response.status_code == 200
    assert "Invalid tag &#x27;Not Valid&#x27;" in response.content.decode()
    assert tags_of(acme) == ["keep"] and len(tag_audit()) == 1


def test_editing_tags_needs_the_change_permission(acme: str) -> None:
    pk = Tenant.objects.get().pk
    assert Client().post(tags_url(pk), {"tags": "eu"}).status_code == 302  # to the login
    viewer = client_for(user("viewer", "tenancy.view_tenant", "tenancy.suspend_tenant"))
    assert "Edit tags" not in viewer.get(f"{CHANGELIST}{pk}/change/").content.decode()
    assert viewer.get(tags_url(pk)).status_code == 403
    assert viewer.post(tags_url(pk), {"tags": "eu"}).status_code == 403
    assert tags_of(acme) == [] and tag_audit() == []
    editor = client_for(user("editor", "tenancy.view_tenant", "tenancy.change_tenant"))
    assert "Edit tags" in editor.get(f"{CHANGELIST}{pk}/change/").content.decode()
    assert editor.post(tags_url(pk), {"tags": "eu"}).status_code == 302
    assert tags_of(acme) == ["eu"] and tag_audit()[0][1] == "admin:editor"


def test_edit_tags_of_a_dropped_tenant_goes_back_to_the_list(
    public_ready: None, superuser: User
) -> None:
    response = client_for(superuser).post(tags_url(999), {"tags": "eu"})
    assert response.status_code == 302 and response["Location"] == CHANGELIST


def test_create_tenant_form_takes_tags(public_ready: None, superuser: User) -> None:
    c = client_for(superuser)
    assert 'name="tags"' in c.get(ADD).content.decode()
    response = c.post(ADD, {"auth0_org_id": "org_Form1", "tags": "eu, gold"})
    assert response.status_code == 302
    assert tags_of("tenant_org_form1") == ["eu", "gold"]
    before = snapshot()
    response = c.post(ADD, {"auth0_org_id": "org_Form2", "tags": "eu, G O"})
    assert response.status_code == 200 and "Invalid tag" in response.content.decode()
    assert snapshot() == before
