"""Routing: a tenant's domain serves its own rows, from its schema, under its role; a tenant
that is not active is refused; the role never outlives the request."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.utils import ProgrammingError
from django.http import HttpResponse
from django.test import Client, RequestFactory
from psycopg import sql

from tenancy.engine.names import role_for_schema
from tenancy.middleware import TenantMiddleware
from tenancy.services import lifecycle
from tenancy.services.tenants import create_tenant
from tests.conftest import add_posting, connect

A, B = "tenant_org_alpha1", "tenant_org_beta2"
HOST_A, HOST_B = "org-alpha1.localhost", "org-beta2.localhost"


@pytest.fixture
def two_tenants(public_ready: None) -> None:
    create_tenant("org_alpha1", "Alpha Inc", actor="test")
    create_tenant("org_beta2", "Beta GmbH", actor="test")
    add_posting(A, "Alpha engineer")
    add_posting(B, "Beta secret role")


def session_user_state() -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_user = session_user, current_setting('app.current_tenant', true)"
        )
        return cursor.fetchone()


def test_each_host_shows_only_its_own_postings_and_activity(two_tenants):
    client = Client()
    page_a = client.get("/", HTTP_HOST=HOST_A)
    page_b = client.get("/", HTTP_HOST=HOST_B)
    assert page_a.status_code == 200 and page_b.status_code == 200
    text_a, text_b = page_a.content.decode(), page_b.content.decode()
    assert "Alpha Inc" in text_a and "Alpha engineer" in text_a
    assert "Beta" not in text_a
    assert "Beta secret role" in text_b and "Alpha" not in text_b
    # The activity list is an unfiltered query on public.audit_logs: RLS keeps it to the
    # tenant's own rows (its creation), never the other tenant's or the engine's.
    assert text_a.count("tenant.create") == 1 and "migrate.run" not in text_a
    # After the request the connection is the connecting user again, on public.
    assert session_user_state() in ((True, ""), (True, None))  # None: never set
    assert connection.schema_name == "public"


def test_suspended_and_archived_tenants_are_refused_and_come_back(two_tenants):
    client = Client()
    lifecycle.suspend("org_alpha1", actor="test")
    response = client.get("/", HTTP_HOST=HOST_A)
    assert response.status_code == 403
    assert b"suspended" in response.content and b"Alpha engineer" not in response.content
    assert client.get("/", HTTP_HOST=HOST_B).status_code == 200  # the other one unaffected
    lifecycle.archive("org_alpha1", actor="test")
    assert client.get("/", HTTP_HOST=HOST_A).status_code == 403
    lifecycle.reactivate("org_alpha1", actor="test")
    response = client.get("/", HTTP_HOST=HOST_A)
    assert response.status_code == 200 and b"Alpha engineer" in response.content


def test_unknown_host_is_the_public_site_not_a_tenant(two_tenants):
    response = Client().get("/", HTTP_HOST="org-nobody.localhost")
    assert response.status_code == 302 and response["Location"] == "/admin/"


def test_a_dropped_tenant_host_is_no_longer_routed(two_tenants):
    lifecycle.drop_tenant("org_beta2", actor="test")
    response = Client().get("/", HTTP_HOST=HOST_B)
    assert response.status_code == 302  # public site: no tenant, no rows
    assert Client().get("/", HTTP_HOST=HOST_A).status_code == 200


def _middleware_run(host: str, view) -> HttpResponse:
    request = RequestFactory().get("/", HTTP_HOST=host)
    return TenantMiddleware(view)(request)


def test_queries_in_a_tenant_request_run_under_its_role(two_tenants):
    seen: dict = {}

    def view(request) -> HttpResponse:
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user, current_setting('app.current_tenant', true)")
            seen["user"], seen["tenant"] = cursor.fetchone()
            cursor.execute("SELECT title FROM job_postings")
            seen["own"] = cursor.fetchall()
            try:
                cursor.execute("SELECT title FROM tenant_org_beta2.job_postings")
                seen["other"] = cursor.fetchall()
            except ProgrammingError as exc:
                seen["other"] = str(exc)
        return HttpResponse("ok")

    assert _middleware_run(HOST_A, view).status_code == 200
    assert seen["user"] == role_for_schema(A, connection.settings_dict["NAME"])
    assert seen["tenant"] == A
    assert seen["own"] == [("Alpha engineer",)]
    assert "permission denied for schema tenant_org_beta2" in seen["other"]
    assert session_user_state() in ((True, ""), (True, None))  # None: never set


def test_the_role_is_reset_even_when_the_view_raises(two_tenants):
    def view(request) -> HttpResponse:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        _middleware_run(HOST_A, view)
    assert session_user_state() in ((True, ""), (True, None))  # None: never set
    assert connection.schema_name == "public"


def test_a_tenant_whose_role_is_missing_is_not_served_as_the_connecting_user(two_tenants):
    role = role_for_schema(A, connection.settings_dict["NAME"])
    with connect() as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    response = Client().get("/", HTTP_HOST=HOST_A)
    assert response.status_code == 503 and b"Alpha engineer" not in response.content
    assert b"tenant_recreate" in response.content
    lifecycle.recreate_tenant("org_alpha1", actor="test")  # the documented way back
    response = Client().get("/", HTTP_HOST=HOST_A)
    assert response.status_code == 200 and b"No job postings yet." in response.content
