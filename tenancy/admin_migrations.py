"""The admin's Migrations page (the ledger's changelist): every public and tenant step with
its counts across the fleet (applied, pending, failed, drifted, out of order), each count
linking to the tenant list filtered to those schemas; a page per step with its SQL, the
drift diff, and the fleet-wide actions, each behind its permission and a confirmation
page: accept checksum (with the diff), retry the failed schemas, mark as applied (with
``tenant_verify``'s findings for the schemas it would mark). The work is the services'
(services/migration_overview.py, recovery, runs, verify)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from tenancy.admin_views import (
    RECOVERY_VERBS,
    ReadOnlyAdmin,
    actor_for,
    public_state_for,
    recovery_call,
    schema_states_for,
)
from tenancy.engine.errors import TenancyError
from tenancy.engine.source import PUBLIC, TENANT
from tenancy.models import TenantMigration
from tenancy.services.migration_overview import CATEGORIES, StepRow, drift_diff, step_rows

STEP_FILTER = "step"  # the tenant list's filter: ?step=<category>:<scope>:<version>
RUN_PERMISSION = "tenancy.run_migrations"
LABELS = {
    "applied": "Applied",
    "pending": "Pending",
    "failed": "Failed",
    "drifted": "Drifted",
    "out_of_order": "Out of order",
}


def _rows(request: HttpRequest) -> list[StepRow]:
    states = [s for s in [public_state_for(request), *schema_states_for(request).values()] if s]
    return step_rows(states)


def _row(request: HttpRequest, scope: str, version: str) -> StepRow:
    for row in _rows(request):
        if row.scope == scope and row.version == version:
            return row
    raise Http404(f"No {scope} step {version}.")


def tenant_list_url(row: StepRow, category: str) -> str:
    base = reverse("admin:tenancy_tenant_changelist")
    return f"{base}?{STEP_FILTER}={category}:{row.scope}:{row.version}"


class StepFilter(admin.SimpleListFilter):
    """The tenant list narrowed to the schemas of one count of the Migrations page (not
    offered in the sidebar: the page's links set it)."""

    title = "migration"
    parameter_name = STEP_FILTER

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = self.value()
        return [(value, value.replace(":", " ", 1))] if value else []

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        if not self.value():
            return None
        category, _, rest = self.value().partition(":")
        scope, _, version = rest.partition(":")
        if category not in CATEGORIES or scope != TENANT:
            return queryset.none()
        for row in _rows(request):
            if row.scope == scope and row.version == version:
                return queryset.filter(schema_name__in=row.schemas[category])
        return queryset.none()


@admin.register(TenantMigration)
class MigrationsAdmin(ReadOnlyAdmin):
    """The ledger is written by the engine only: this admin shows it per step."""

    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        step = "step/<str:scope>/<str:version>/"
        return [
            path(step, view(self.step_view), name="tenancy_migrations_step"),
            path(f"{step}<str:action>/", view(self.action_view), name="tenancy_migrations_action"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        rows = _rows(request)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Migrations",
            "subtitle": None,
            "sections": [
                (label, [_display(r) for r in rows if r.scope == scope])
                for scope, label in ((PUBLIC, "Public"), (TENANT, "Tenants"))
            ],
            "labels": LABELS,
        }
        return TemplateResponse(request, "admin/tenancy/migrations/overview.html", context)

    def step_view(self, request: HttpRequest, scope: str, version: str) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        row = _row(request, scope, version)
        context = {**self._step_context(request, row), "title": row.name}
        return TemplateResponse(request, "admin/tenancy/migrations/step.html", context)

    def _step_context(self, request: HttpRequest, row: StepRow) -> dict[str, Any]:
        migration, recorded = (None, [])
        if not row.gone:
            migration, recorded = drift_diff(row.scope, row.version, row.schemas["drifted"])
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "subtitle": None,
            "row": _display(row),
            "migration": migration,
            "recorded": recorded if row.schemas["drifted"] else [],
            "actions": _actions(request, row),
        }

    # -- the fleet-wide actions ------------------------------------------------------------
    def action_view(
        self, request: HttpRequest, scope: str, version: str, action: str
    ) -> HttpResponse:
        row = _row(request, scope, version)
        chosen = {a["name"]: a for a in _actions(request, row)}.get(action)
        if chosen is None:
            raise Http404(f"No action {action!r}.")
        if not request.user.has_perm(chosen["permission"]):
            raise PermissionDenied
        page = reverse("admin:tenancy_migrations_step", args=[scope, version])
        if request.method == "POST" and request.POST.get("post") == "yes":
            return _act(request, row, action, page)
        context = {
            **self._step_context(request, row),
            "title": f"{chosen['label']}: {row.name}?",
            "action": chosen,
            "findings": _findings(row) if action == "fake" else None,
        }
        return TemplateResponse(request, "admin/tenancy/migrations/confirm.html", context)


def _display(row: StepRow) -> dict[str, Any]:
    counts = [
        {
            "category": c,
            "label": LABELS[c],
            "n": row.count(c),
            "url": tenant_list_url(row, c) if row.scope == TENANT and row.count(c) else None,
        }
        for c in CATEGORIES
    ]
    return {
        "row": row,
        "counts": counts,
        "url": reverse("admin:tenancy_migrations_step", args=[row.scope, row.version]),
        "kind": "SQL file" if row.is_sql_file else "Django migration",
    }


def _actions(request: HttpRequest, row: StepRow) -> list[dict[str, Any]]:
    """The fleet-wide actions that apply to the step, each with whether the user may."""
    found = []
    specs = (
        (
            "accept-checksum",
            "Accept checksum",
            RECOVERY_VERBS["accept-checksum"].permission,
            "drifted",
        ),
        ("retry", "Retry failed schemas", RUN_PERMISSION, "failed"),
        ("fake", "Mark as applied", RECOVERY_VERBS["fake"].permission, "pending"),
    )
    for name, label, permission, category in specs:
        schemas = row.schemas[category]
        if row.gone or not schemas:
            continue
        if name == "fake" and (row.scope != TENANT or not row.is_sql_file):
            continue  # tenant SQL files only (as the tenant page's Mark as applied)
        found.append(
            {
                "name": name,
                "label": label,
                "permission": permission,
                "schemas": schemas,
                "url": reverse(
                    "admin:tenancy_migrations_action", args=[row.scope, row.version, name]
                ),
                "help": RECOVERY_VERBS[name].explain if name in RECOVERY_VERBS else "",
                "allowed": request.user.has_perm(permission),
            }
        )
    return found


def _findings(row: StepRow) -> list[dict[str, Any]]:
    """``tenant_verify`` on the schemas a Mark as applied would mark: what their catalog
    lacks or has differently, so that nobody marks a file whose tables are not there."""
    from tenancy.services.verify import verify

    report = verify(row.schemas["pending"])
    return [t.to_dict() for t in report.tenants]


def _act(request: HttpRequest, row: StepRow, action: str, page: str) -> HttpResponse:
    """The confirmed action, through the service its command uses (which writes the audit
    rows); its outcome as a message, back to the step's page."""
    from tenancy.admin import start_from_admin

    if action == "retry":
        return start_from_admin(request, only=row.schemas["failed"], public=False)
    actor = actor_for(request)
    try:
        if action == "accept-checksum":
            public = row.scope == PUBLIC
            outcome = recovery_call(action, None, row.version, actor, public=public)
            ok, text = outcome.ok, outcome.message
        else:
            ok, text = _mark_applied(row, actor)
    except TenancyError as exc:
        messages.error(request, f"Refused: {exc}")
        return HttpResponseRedirect(page)
    (messages.success if ok else messages.error)(request, text)
    return HttpResponseRedirect(page)


def _mark_applied(row: StepRow, actor: str) -> tuple[bool, str]:
    """Every schema with the file pending records it (and what precedes it) as applied,
    without running it: ``migrate_tenants --baseline VERSION`` for those schemas."""
    from tenancy.services import recovery

    report = recovery.baseline(
        row.version, public=False, tenants=True, only=row.schemas["pending"], actor=actor
    )
    if report.refused:
        raise TenancyError("; ".join(report.refused))
    marked = [r.schema for r in report.results if r.versions]
    return True, f"Run {report.run_id}: marked {row.name} as applied in {len(marked)} schema(s)."
