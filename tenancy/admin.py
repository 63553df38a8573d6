"""The control room: tenants with their migration state, creation, runs, audit, settings.

Reads use the ORM or tenancy.services.reports; every write goes through the services
(tenants.create_tenant, runs.migrate in the background worker), never Model.save() on a
tenant. Runs execute in `manage.py db_worker`, never in the web request.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django_tasks_db import admin as _tasks_admin  # noqa: F401 (registers DBTaskResult)
from django_tasks_db.models import DBTaskResult

from tenancy.admin_views import (
    ACTIVE_RUN_STATUSES,
    STATUS_KINDS,
    CreateTenantForm,
    actor_for,
    badge,
    enqueue_run,
    run_progress,
    schema_states_for,
    state_badges,
    tenant_page_context,
    when,
)
from tenancy.engine.errors import RunError, TenancyError
from tenancy.engine.names import InvalidName
from tenancy.models import (
    AuditLog,
    MigrationRun,
    MigrationRunResult,
    SystemConfiguration,
    Tenant,
)
from tenancy.services import run_records
from tenancy.services import tenants as tenant_service
from tenancy.services.reports import SchemaState
from tenancy.services.verify import TenantResult, verify

RUN_PERMISSION = "tenancy.run_migrations"

# The job queue's own admin (DBTaskResult) is hidden: runs are followed on the Migration runs
# pages, and a job that fails before runs.migrate starts marks its run failed with the
# error. (django-tenants' app list would also mislabel it "Not available for this type of
# schema", since its app label differs from its module name.) Imported first so that it is
# registered before we unregister it, whatever the order of INSTALLED_APPS.
if admin.site.is_registered(DBTaskResult):
    admin.site.unregister(DBTaskResult)


# -- the tenant list ---------------------------------------------------------------------
class _StateFilter(admin.SimpleListFilter):
    """Filters on the computed migration state: the matching schemas become an IN list."""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def matches(self, state: SchemaState) -> bool:
        raise NotImplementedError

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        if self.value() not in ("yes", "no"):
            return None
        schemas = [s for s, state in schema_states_for(request).items() if self.matches(state)]
        if self.value() == "yes":
            return queryset.filter(schema_name__in=schemas)
        return queryset.exclude(schema_name__in=schemas)


class HasPendingFilter(_StateFilter):
    title = "has pending"
    parameter_name = "has_pending"

    def matches(self, state: SchemaState) -> bool:
        return bool(state.pending)


class HasFailuresFilter(_StateFilter):
    title = "has failures"
    parameter_name = "has_failures"

    def matches(self, state: SchemaState) -> bool:
        return state.failed


class HasDriftFilter(_StateFilter):
    title = "has drift"
    parameter_name = "has_drift"

    def matches(self, state: SchemaState) -> bool:
        return bool(state.drift)


class MissingSchemaFilter(_StateFilter):
    title = "schema missing"
    parameter_name = "schema_missing"

    def matches(self, state: SchemaState) -> bool:
        return not state.schema_exists


class TenantChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        # One schema_states call for the page (shared with the filters), mapped by schema.
        states = schema_states_for(request)
        self.result_list = list(self.result_list)
        for tenant in self.result_list:
            tenant.migration_state = states.get(tenant.schema_name)


def _state(tenant: Tenant) -> SchemaState | None:
    return getattr(tenant, "migration_state", None)


def _verify_one(request: HttpRequest, schema: str) -> TenantResult | None:
    """The tenant's catalog against its migration files (one reference build, rolled back,
    and one fingerprint: 0.14 s at 1,000 tenants, 0.48 s at 10,000, bench/README.md), or
    None with a message when it cannot run."""
    try:
        return verify([schema]).tenants[0]
    except TenancyError as exc:
        messages.error(request, f"Catalog verification unavailable: {exc}")
        return None


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    # Narrow columns that fit at 1400 px beside the filters; the phone hides the quiet ones.
    list_display = (
        "organization_name",
        "auth0_org_id",
        "status_badge",
        "applied_count",
        "migration_state",
        "last_migration",
        "created",
    )
    list_filter = (
        "status",
        HasPendingFilter,
        HasFailuresFilter,
        HasDriftFilter,
        MissingSchemaFilter,
    )
    search_fields = ("organization_name", "auth0_org_id", "schema_name")
    list_per_page = 100
    actions = ["run_pending_migrations"]
    fields = ("organization_name", "auth0_org_id", "schema_name", "status", "created_at")
    readonly_fields = fields
    change_list_template = "admin/tenancy/tenant/change_list.html"
    change_form_template = "admin/tenancy/tenant/change_form.html"

    # -- permissions: tenants change only through the services ---------------------------
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_run_migrations_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(RUN_PERMISSION)

    # -- columns --------------------------------------------------------------------------
    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return TenantChangeList

    @admin.display(description="Applied")
    def applied_count(self, tenant: Tenant) -> int | str:
        state = _state(tenant)
        return state.applied if state else "?"

    @admin.display(description="Status", ordering="status")
    def status_badge(self, tenant: Tenant) -> str:
        return badge(tenant.get_status_display(), STATUS_KINDS.get(tenant.status, "quiet"))

    @admin.display(description="Migrations")
    def migration_state(self, tenant: Tenant) -> str:
        return state_badges(_state(tenant), tenant.schema_name)

    @admin.display(description="Last migrated")
    def last_migration(self, tenant: Tenant) -> str:
        state = _state(tenant)
        if state is None:
            return "?"
        if not state.last_migration:
            return "—"
        return format_html(
            '<span class="tenancy-last">{}</span><br><small>{}</small>',
            state.last_migration,
            when(state.last_applied_at),
        )

    @admin.display(description="Created", ordering="created_at")
    def created(self, tenant: Tenant) -> str:
        return when(tenant.created_at)

    # -- pages ----------------------------------------------------------------------------
    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
            path("run-all/", view(self.run_all_view), name="tenancy_tenant_run_all"),
            path("<int:object_id>/run/", view(self.run_one_view), name="tenancy_tenant_run"),
            *super().get_urls(),
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        run_records.close_dead_runs_now()  # the list shows failures and the latest runs
        context = {"can_run": self.has_run_migrations_permission(request), **(extra_context or {})}
        return super().changelist_view(request, context)

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        """Create tenant: a form whose submission calls tenants.create_tenant."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = CreateTenantForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            org_id = form.cleaned_data["auth0_org_id"].strip()
            try:
                created = tenant_service.create_tenant(
                    org_id, form.cleaned_data["organization_name"], actor=actor_for(request)
                )
            except InvalidName as exc:
                form.add_error("auth0_org_id", str(exc))
            except (tenant_service.TenantError, RunError) as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(
                    request,
                    f"Tenant {created.org_id} created: schema {created.schema}, "
                    f"{len(created.migrations_applied)} migrations applied in "
                    f"{created.elapsed_ms} ms.",
                )
                target = "admin:tenancy_tenant_changelist"
                if not self.has_view_permission(request):
                    target = "admin:index"
                return HttpResponseRedirect(reverse(target))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Create tenant",
            "form": form,
            "has_view_permission": self.has_view_permission(request),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/tenancy/tenant/create_tenant.html", context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        tenant = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if tenant is not None and self.has_view_permission(request, tenant):
            context.update(tenant_page_context(request, tenant.schema_name))
            context["can_run"] = self.has_run_migrations_permission(request)
            context["verify_result"] = _verify_one(request, tenant.schema_name)
        return super().change_view(request, object_id, form_url, context)

    # -- runs -----------------------------------------------------------------------------
    @admin.action(description="Run pending migrations", permissions=["run_migrations"])
    def run_pending_migrations(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse:
        schemas = sorted(queryset.values_list("schema_name", flat=True))
        return self._start(request, only=schemas, public=False)

    def run_all_view(self, request: HttpRequest) -> HttpResponse:
        """Every pending migration: public first, then every tenant."""
        self._check_can_run(request)
        return self._start(request, only=None, public=True)

    def run_one_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        self._check_can_run(request)
        tenant = get_object_or_404(Tenant, pk=object_id)
        return self._start(request, only=[tenant.schema_name], public=False)

    def _check_can_run(self, request: HttpRequest) -> None:
        if request.method != "POST":  # a run changes databases: never on a GET
            raise PermissionDenied
        if not self.has_run_migrations_permission(request):
            raise PermissionDenied

    def _start(self, request: HttpRequest, *, only: list[str] | None, public: bool) -> Any:
        run = enqueue_run(request, only=only, public=public)
        scope = ", ".join(only) if only else "public and every tenant"
        messages.success(request, f"Run {run.pk} queued for {scope}.")
        return HttpResponseRedirect(reverse("admin:tenancy_migrationrun_change", args=[run.pk]))


# -- runs --------------------------------------------------------------------------------
class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows the engine writes; the admin shows them and never edits them."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MigrationRunResultInline(admin.TabularInline):
    model = MigrationRunResult
    fields = ("tenant_schema", "status", "versions", "error", "duration_ms", "finished_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("tenant_schema",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(MigrationRun)
class MigrationRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "kind",
        "status",
        "progress",
        "failed_schemas",
        "actor",
        "started_at",
        "finished_at",
    )
    list_filter = ("status", "kind")
    search_fields = ("actor",)
    fields = (
        "kind",
        "status",
        "progress",
        "failed_schemas",
        "actor",
        "options",
        "error",
        "started_at",
        "finished_at",
        "backend_pid",
    )
    readonly_fields = fields
    inlines = [MigrationRunResultInline]
    change_list_template = "admin/tenancy/migrationrun/change_list.html"
    change_form_template = "admin/tenancy/migrationrun/change_form.html"

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Whoever may start a run may follow it.
        return super().has_view_permission(request, obj) or request.user.has_perm(RUN_PERMISSION)

    @admin.display(description="Progress (done / total)")
    def progress(self, run: MigrationRun) -> str:
        return f"{run.done_schemas} / {run.total_schemas}"

    def get_urls(self) -> list:
        return [
            path(
                "<int:object_id>/progress.json",
                self.admin_site.admin_view(self.progress_view),
                name="tenancy_migrationrun_progress",
            ),
            *super().get_urls(),
        ]

    def progress_view(self, request: HttpRequest, object_id: int) -> JsonResponse:
        run_records.close_dead_runs_now()  # whoever looks next closes runs whose process died
        run = get_object_or_404(MigrationRun, pk=object_id)
        if not self.has_view_permission(request, run):
            raise PermissionDenied
        return JsonResponse(run_progress(run))

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        run_records.close_dead_runs_now()
        active = MigrationRun.objects.filter(status__in=ACTIVE_RUN_STATUSES).exists()
        return super().changelist_view(
            request, {"has_active_runs": active, **(extra_context or {})}
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        run_records.close_dead_runs_now()
        run = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if run is not None:
            context["run_active"] = run.status in ACTIVE_RUN_STATUSES
            context["progress_url"] = reverse("admin:tenancy_migrationrun_progress", args=[run.pk])
        return super().change_view(request, object_id, form_url, context)


# -- audit and settings ------------------------------------------------------------------
@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "action", "actor", "tenant_schema", "details")
    list_filter = ("action",)
    search_fields = ("action", "actor", "tenant_schema")
    date_hierarchy = "created_at"
    fields = ("created_at", "action", "actor", "tenant_schema", "details")
    readonly_fields = fields


@admin.register(SystemConfiguration)
class SystemConfigurationAdmin(admin.ModelAdmin):
    list_display = ("config_key", "config_value", "is_public", "description", "updated_at")
    list_filter = ("is_public",)
    search_fields = ("config_key", "description")
    readonly_fields = ("created_at", "updated_at")

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = ["config_key", "config_value", "description", "is_public"]
        return fields + ["created_at", "updated_at"] if obj else fields

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        obj.updated_at = timezone.now()  # the column has a database default only
        super().save_model(request, obj, form, change)
        AuditLog.objects.create(
            action="config.change" if change else "config.create",
            actor=actor_for(request),
            details={"config_key": obj.config_key, "config_value": obj.config_value},
        )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        AuditLog.objects.create(
            action="config.delete",
            actor=actor_for(request),
            details={"config_key": obj.config_key, "config_value": obj.config_value},
        )
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for obj in queryset:
            self.delete_model(request, obj)
