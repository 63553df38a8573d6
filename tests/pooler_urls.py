"""Views for the pooler tests only: one that fails in the middle of a tenant's
transaction, and one that reports the server connection's state."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import path

# What the failing view saw before it raised (the test reads it).
SEEN: dict[str, object] = {}

STATE_SQL = (
    "SELECT pg_backend_pid(), current_user, session_user, current_setting('search_path'), "
    "current_setting('app.current_tenant', true)"
)


def state() -> dict[str, object]:
    with connection.cursor() as cursor:
        cursor.execute(STATE_SQL)
        pid, current, session, search_path, tenant = cursor.fetchone()
    return {
        "pid": pid,
        "current_user": current,
        "session_user": session,
        "search_path": search_path,
        "tenant": tenant,
    }


def fail_midway(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO job_postings (organization_id, title) "
            "SELECT id, 'written by a failed request' FROM organizations LIMIT 1"
        )
    SEEN.update(state())
    raise RuntimeError("the view failed in the middle of its transaction")


def report_state(request: HttpRequest) -> JsonResponse:
    return JsonResponse(state())


urlpatterns = [path("fail/", fail_midway), path("state/", report_state)]
