"""The control room: tenants with their migration state, creation, runs, audit, settings.

Reads use the ORM or tenancy.services.reports; every write goes through the services
(tenants.create_tenant, runs.migrate in the background worker), never Model.save() on a
tenant. Runs execute in `manage.py db_worker`, never in the web request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import CharField, Func, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django_tasks_db import admin as _tasks_admin  # noqa: F401 (registers DBTaskResult)
from django_tasks_db.models import DBTaskResult

from tenancy.admin_migrations import StepFilter
from tenancy.admin_views import (
    ACTIVE_RUN_STATUSES,
    LIFECYCLE_VERBS,
    LOCAL_NODE,
    MOVE_PERMISSION,
    PER_SCHEMA_ROWS,
    REBALANCE_PERMISSION,
    RECOVERY_VERBS,
    RUN_STATUS_KINDS,
    STATUS_KINDS,
    TAGS_PERMISSION,
    TRANSFER_MODE_HELP,
    CreateTenantForm,
    ReadOnlyAdmin,
    RunNotStarted,
    ScopeFacts,
    TagsForm,
    active_rollout,
    actor_for,
    anything_pending,
    audit_details_html,
    audit_parent_note,
    audit_rows,
    badge,
    drift_offers,
    duration,
    fixes_html,
    fleet_overview,
    has_failures,
    has_work,
    is_parent,
    later_fixes,
    move_message,
    move_plan,
    node_counts,
    node_label,
    placement_for,
    progress_bar,
    public_state_for,
    rebalance_rows,
    recovery_call,
    recovery_plan,
    recovery_verbs_for,
    row_fix_html,
    run_duration_ms,
    run_options,
    run_progress,
    run_rows,
    run_scope_html,
    run_summary,
    schema_row_counts,
    schema_rows_of,
    schema_states_for,
    scope_facts,
    start_guarded_run,
    state_badges,
    tag_badges,
    tenant_page_context,
    tenant_urls,
    verbs_for,
    when,
)
from tenancy.engine.errors import RunError, TenancyError
from tenancy.engine.names import InvalidName, schema_for_org
from tenancy.engine.source import version_of
from tenancy.models import (
    AuditLog,
    MigrationRun,
    SystemConfiguration,
    Tenant,
)
from tenancy.services import placement, run_records, tenant_types
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


def log_admin_action(request: HttpRequest, obj: Any, flag: int, message: str) -> None:
    """A row of Django's admin log for what an action did (the index's Recent actions and
    the admin's own history show it); audit_logs keeps the whole story."""
    LogEntry.objects.log_actions(
        request.user.pk, [obj], flag, change_message=message, single_object=True
    )


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


class TagFilter(admin.SimpleListFilter):
    """The tenants with one tag; the lookups are the tags in use (one query)."""

    title = "tag"
    parameter_name = "tag"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        in_use = (
            Tenant.objects.annotate(tag=Func("tags", function="unnest", output_field=CharField()))
            .values_list("tag", flat=True)
            .distinct()
            .order_by("tag")
        )
        return [(tag, tag) for tag in in_use]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        value = self.value()
        return queryset.filter(tags__contains=[value]) if value else None


class NodeFilter(admin.SimpleListFilter):
    """On a Citus cluster, the tenants on one worker node (or not distributed); hidden
    elsewhere (no lookups)."""

    title = "node"
    parameter_name = "node"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        where = placement_for(request)
        if not where.citus:
            return []
        return [(w, w) for w in where.workers] + [(LOCAL_NODE, "not distributed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        value = self.value()
        if not value:
            return None
        nodes = placement_for(request).nodes
        if value == LOCAL_NODE:
            return queryset.exclude(schema_name__in=list(nodes))
        return queryset.filter(schema_name__in=[s for s, n in nodes.items() if n == value])


class TenantChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        # One schema_states call for the page (shared with the filters), mapped by schema.
        states = schema_states_for(request)
        self.result_list = list(self.result_list)
        for tenant in self.result_list:
            tenant.migration_state = states.get(tenant.schema_name)


def _about_org_id(org_id: str) -> bool:
    """Whether a refused creation is about the id itself: its schema is registered (the
    same id, or a case twin) or exists already."""
    from django.db import connection

    try:
        schema = schema_for_org(org_id)
    except InvalidName:
        return True
    if Tenant.objects.filter(schema_name=schema).exists():
        return True
    with connection.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema])
        return cur.fetchone() is not None


def _count_case(counts: dict[str, int]) -> Any:
    """CASE WHEN schema_name IN (...) THEN n ... ELSE 0: one branch per distinct count."""
    from django.db.models import Case, IntegerField, Value, When

    by_count: dict[int, list[str]] = {}
    for schema, n in counts.items():
        if n:
            by_count.setdefault(int(n), []).append(schema)
    if not by_count:
        return Value(0, output_field=IntegerField())
    return Case(
        *[When(schema_name__in=schemas, then=Value(n)) for n, schemas in by_count.items()],
        default=Value(0),
        output_field=IntegerField(),
    )


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
        # After the columns older links sort by (?o=4: applied, ?o=5: migrations).
        "schema",
        "last_migration",
        "tag_list",
        "created",
    )
    list_filter = (
        "status",
        TagFilter,
        HasPendingFilter,
        HasFailuresFilter,
        HasDriftFilter,
        MissingSchemaFilter,
        NodeFilter,
        StepFilter,  # set by the Migrations page's counts
    )
    search_fields = ("organization_name", "auth0_org_id", "schema_name")
    list_per_page = 100
    actions = ["run_pending_migrations"]
    fields = ("organization_name", "auth0_org_id", "schema_name", "status", "tag_list", "created")
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
    def get_list_display(self, request: HttpRequest) -> Any:
        """On a Citus cluster, the node each tenant lives on, after its migrations (no empty
        column on plain PostgreSQL)."""
        columns = list(super().get_list_display(request))
        if placement_for(request).citus:
            columns.insert(columns.index("migration_state") + 1, "node")
        if tenant_types.enabled():  # multi-type tenants: each one's type, after its schema
            columns.insert(columns.index("schema") + 1, "type_name")
        return columns

    def get_list_filter(self, request: HttpRequest) -> Any:
        found = list(super().get_list_filter(request))
        return [*found, "tenant_type"] if tenant_types.enabled() else found

    @admin.display(description="type", ordering="tenant_type")
    def type_name(self, obj: Tenant) -> str:
        return obj.get_tenant_type() or ""

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return TenantChangeList

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        """The computed counts as sortable annotations: one CASE branch per distinct count
        (a handful), from the page's one schema_states call."""
        queryset = super().get_queryset(request)
        if request.resolver_match and request.resolver_match.url_name != (
            "tenancy_tenant_changelist"
        ):
            return queryset
        states = schema_states_for(request)
        return queryset.annotate(
            applied_n=_count_case({s: st.applied for s, st in states.items()}),
            pending_n=_count_case({s: len(st.pending) for s, st in states.items()}),
            # failed first, then drift, a missing schema, then the most pending
            attention_n=_count_case(
                {
                    s: 1_000_000 * st.failed
                    + 100_000 * bool(st.drift or not st.schema_exists)
                    + len(st.pending)
                    for s, st in states.items()
                }
            ),
        )

    @admin.display(description="Tags")
    def tag_list(self, tenant: Tenant) -> str:
        return tag_badges(tenant.tags)

    @admin.display(description="Applied", ordering="applied_n")
    def applied_count(self, tenant: Tenant) -> int | str:
        state = _state(tenant)
        return state.applied if state else "?"

    @admin.display(description="Status", ordering="status")
    def status_badge(self, tenant: Tenant) -> str:
        return badge(tenant.get_status_display(), STATUS_KINDS.get(tenant.status, "quiet"))

    @admin.display(description="Migrations", ordering="-attention_n")
    def migration_state(self, tenant: Tenant) -> str:
        return state_badges(_state(tenant), tenant.schema_name)

    @admin.display(description="Schema", ordering="schema_name")
    def schema(self, tenant: Tenant) -> str:
        """On one line, shortened with an ellipsis when long (the whole name in its tooltip)."""
        return format_html(
            '<code class="tenancy-code" title="{}">{}</code>',
            tenant.schema_name,
            tenant.schema_name,
        )

    @admin.display(description="Node")
    def node(self, tenant: Tenant) -> str:
        state = _state(tenant)
        if state is not None and state.node:
            return format_html('<span class="tenancy-node">{}</span>', state.node)
        return format_html('<span title="{}">—</span>', node_label(state))

    @admin.display(description="Last migrated")
    def last_migration(self, tenant: Tenant) -> str:
        state = _state(tenant)
        if state is None:
            return "?"
        if not state.last_migration:
            return "—"
        return format_html(
            '<span class="tenancy-last" title="{}">{}</span><small>{}</small>',
            state.last_migration,
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
            path(
                "<int:object_id>/lifecycle/<str:verb>/",
                view(self.lifecycle_view),
                name="tenancy_tenant_lifecycle",
            ),
            path(
                "<int:object_id>/recover/<str:verb>/",
                view(self.recovery_view),
                name="tenancy_tenant_recover",
            ),
            path(
                "accept-checksum/",
                view(self.accept_checksum_view),
                name="tenancy_tenant_accept_checksum",
            ),
            path("<int:object_id>/tags/", view(self.tags_view), name="tenancy_tenant_tags"),
            path("<int:object_id>/move/", view(self.move_view), name="tenancy_tenant_move"),
            path("rebalance/", view(self.rebalance_view), name="tenancy_tenant_rebalance"),
            path(
                "rebalance/stop/",
                view(self.rebalance_stop_view),
                name="tenancy_tenant_rebalance_stop",
            ),
            *super().get_urls(),
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        run_records.close_dead_runs_now()  # the list shows failures and the latest runs
        context = {
            "can_run": self.has_run_migrations_permission(request),
            "nothing_pending": not anything_pending(request),
            "can_rebalance": request.user.has_perm(REBALANCE_PERMISSION)
            and placement_for(request).citus,
            **(extra_context or {}),
        }
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
                    org_id,
                    form.cleaned_data["organization_name"],
                    actor=actor_for(request),
                    tags=form.cleaned_data["tags"],
                    tenant_type=form.cleaned_data.get("tenant_type") or None,
                )
            except InvalidName as exc:
                form.add_error("auth0_org_id", str(exc))
            except (tenant_service.TenantError, RunError) as exc:
                # A duplicate, a case twin or a leftover schema is about the id: on its field.
                form.add_error("auth0_org_id" if _about_org_id(org_id) else None, str(exc))
            else:
                messages.success(
                    request,
                    f"Tenant {created.org_id} created: schema {created.schema}, "
                    f"{len(created.migrations_applied)} migrations applied in "
                    f"{created.elapsed_ms} ms.",
                )
                new = Tenant.objects.filter(schema_name=created.schema).first()
                if new is not None:
                    log_admin_action(request, new, ADDITION, f"Created (schema {created.schema})")
                if new is not None and self.has_view_permission(request, new):
                    return HttpResponseRedirect(
                        reverse("admin:tenancy_tenant_change", args=[new.pk])
                    )
                return HttpResponseRedirect(reverse("admin:index"))
        limit_notice = None  # the hourly limit, told before a submission meets it
        if request.method != "POST":
            try:
                limit_notice = tenant_service.hourly_quota().blocked
            except TenancyError:  # no database: a submission says why
                limit_notice = None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Create tenant",
            "form": form,
            "has_view_permission": self.has_view_permission(request),
            "limit_notice": limit_notice,
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
            citus = placement_for(request).citus
            context.update(tenant_page_context(request, tenant.schema_name, citus=citus))
            context["can_move"] = citus and request.user.has_perm(MOVE_PERMISSION)
            context["can_edit_tags"] = request.user.has_perm(TAGS_PERMISSION)
            context["can_run"] = self.has_run_migrations_permission(request)
            context["nothing_pending"] = not has_work(context.get("state"))
            context["lifecycle_verbs"] = verbs_for(request, tenant)
            context["recovery"] = recovery_verbs_for(request)
            state = context.get("state")
            context["drift_files"] = [(version_of(n), n) for n in (state.drift if state else [])]
            context["verify_result"] = _verify_one(request, tenant.schema_name)
        return super().change_view(request, object_id, form_url, context)

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict | None = None
    ) -> HttpResponse:
        """HISTORY: the tenant's audit rows (the admin's and the command line's), not
        Django's LogEntry, which never sees tenants change (they change through services)."""
        tenant = self.get_object(request, object_id)
        if tenant is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_permission(request, tenant):
            raise PermissionDenied
        limit = 200
        rows = AuditLog.objects.filter(tenant_schema=tenant.schema_name).order_by(
            "-created_at", "-id"
        )[: limit + 1]
        found = audit_rows(rows)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Change history: {tenant}",
            "subtitle": None,
            "module_name": str(self.opts.verbose_name_plural).capitalize(),
            "object": tenant,
            "opts": self.opts,
            "preserved_filters": self.get_preserved_filters(request),
            "audit_rows": found[:limit],
            "more": len(found) > limit,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/tenancy/tenant/object_history.html", context)

    # -- lifecycle ------------------------------------------------------------------------
    def lifecycle_view(self, request: HttpRequest, object_id: int, verb: str) -> HttpResponse:
        """Suspend, archive, reactivate, recreate, drop: a confirmation page (GET), then the
        lifecycle service on POST with ``post=yes``; the service audits it."""
        action = LIFECYCLE_VERBS.get(verb)
        if action is None:
            raise Http404(f"No lifecycle action {verb!r}.")
        if not request.user.has_perm(action.permission):
            raise PermissionDenied
        tenant = Tenant.objects.filter(pk=object_id).first()
        if tenant is None:
            return self._tenant_gone(request, object_id)
        page = reverse("admin:tenancy_tenant_change", args=[tenant.pk])
        reason = (request.POST.get("reason") or "").strip() or None
        if request.method == "POST" and request.POST.get("post") == "yes":
            typed = (request.POST.get("confirm_schema") or "").strip() if action.typed else None
            try:
                message = action.call(tenant.schema_name, actor_for(request), reason, typed)
            except TenancyError as exc:
                messages.error(request, f"{action.label} refused: {exc}")
            else:
                messages.success(request, message)
                log_admin_action(request, tenant, DELETION if verb == "drop" else CHANGE, message)
                if verb == "drop":
                    return HttpResponseRedirect(reverse("admin:tenancy_tenant_changelist"))
                return HttpResponseRedirect(page)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{action.label} {tenant.organization_name}?",
            "subtitle": None,
            "object": tenant,
            "action": action,
            "applies": action.applies(tenant),
            "tenant_url": page,
            "has_view_permission": self.has_view_permission(request),
        }
        template = "admin/tenancy/tenant/lifecycle_confirmation.html"
        return TemplateResponse(request, template, context)

    # -- recovery -------------------------------------------------------------------------
    def recovery_view(self, request: HttpRequest, object_id: int, verb: str) -> HttpResponse:
        """Accept a checksum, mark as applied, roll back, on one tenant: a confirmation page
        (GET, ``?version=``; without it, a choice of versions), then the service on POST
        with ``post=yes``; the service writes the audit rows."""
        action = RECOVERY_VERBS.get(verb)
        if action is None:
            raise Http404(f"No recovery action {verb!r}.")
        if not request.user.has_perm(action.permission):
            raise PermissionDenied
        tenant = Tenant.objects.filter(pk=object_id).first()
        if tenant is None:
            return self._tenant_gone(request, object_id)
        return self._recovery(request, verb, tenant)

    def _tenant_gone(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """A page left open while its tenant was dropped (in another tab, or by the command
        line): back to the list with a message, as Django's own change page does."""
        messages.warning(
            request, f"Tenant with ID “{object_id}” doesn’t exist. Perhaps it was dropped?"
        )
        return HttpResponseRedirect(reverse("admin:tenancy_tenant_changelist"))

    def accept_checksum_view(self, request: HttpRequest) -> HttpResponse:
        """Accept a checksum in every schema that shows the drift (``?public=1``: the
        public schema's file), as `migrate_tenants --accept-checksum` without --tenant."""
        return self._recovery(request, "accept-checksum", None)

    def _recovery(self, request: HttpRequest, verb: str, tenant: Tenant | None) -> HttpResponse:
        action = RECOVERY_VERBS.get(verb)
        if action is None:
            raise Http404(f"No recovery action {verb!r}.")
        if not request.user.has_perm(action.permission):
            raise PermissionDenied
        schema = tenant.schema_name if tenant else None
        public = tenant is None and (request.GET.get("public") or request.POST.get("public")) == "1"
        version = (request.POST.get("version") or request.GET.get("version") or "").strip()
        back = (
            reverse("admin:tenancy_tenant_change", args=[tenant.pk])
            if tenant
            else reverse("admin:tenancy_tenant_changelist")
        )
        if request.method == "POST" and request.POST.get("post") == "yes" and version:
            try:
                outcome = recovery_call(verb, schema, version, actor_for(request), public=public)
            except TenancyError as exc:
                messages.error(request, f"{action.label} refused: {exc}")
            else:
                if outcome.run_id is not None:
                    url = reverse("admin:tenancy_migrationrun_change", args=[outcome.run_id])
                    text = format_html('{} <a href="{}">See the run.</a>', outcome.message, url)
                else:
                    text = outcome.message
                (messages.success if outcome.ok else messages.error)(request, text)
                if tenant is not None and outcome.ok:
                    log_admin_action(request, tenant, CHANGE, outcome.message)
                return HttpResponseRedirect(back)
        try:
            plan = recovery_plan(verb, schema, version or None, public=public)
        except TenancyError as exc:
            messages.error(request, f"{action.label} unavailable: {exc}")
            return HttpResponseRedirect(back)
        where = tenant.organization_name if tenant else ("public" if public else "every tenant")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{action.label} in {where}?",
            "subtitle": None,
            "object": tenant,
            "action": action,
            "plan": plan,
            "public": public,
            "back_url": back,
            "has_view_permission": self.has_view_permission(request),
        }
        template = "admin/tenancy/tenant/recovery_confirmation.html"
        return TemplateResponse(request, template, context)

    # -- tags -----------------------------------------------------------------------------
    def tags_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """Edit tags: a form with the tenant's tags (GET), saved on POST through
        ``tenants.set_tenant_tags``, which audits it as ``tenant.tags``."""
        if not request.user.has_perm(TAGS_PERMISSION):
            raise PermissionDenied
        tenant = Tenant.objects.filter(pk=object_id).first()
        if tenant is None:
            return self._tenant_gone(request, object_id)
        page = reverse("admin:tenancy_tenant_change", args=[tenant.pk])
        form = TagsForm(request.POST or None, initial={"tags": ", ".join(tenant.tags)})
        if request.method == "POST" and form.is_valid():
            try:
                change = tenant_service.set_tenant_tags(
                    tenant.schema_name, replace=form.cleaned_data["tags"], actor=actor_for(request)
                )
            except TenancyError as exc:
                form.add_error(None, str(exc))
            else:
                _tags_saved(request, tenant, change)
                return HttpResponseRedirect(page)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Tags of {tenant.organization_name}",
            "subtitle": None,
            "object": tenant,
            "form": form,
            "tenant_url": page,
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, "admin/tenancy/tenant/tags_form.html", context)

    # -- placement (Citus) ----------------------------------------------------------------
    def move_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """Move to node: a confirmation page (the worker and the transfer mode to choose),
        then ``placement.move_tenant`` on POST with ``post=yes``, in the request (one
        tenant's tables are copied; the service audits it as ``tenant.move``)."""
        if not request.user.has_perm(MOVE_PERMISSION):
            raise PermissionDenied
        tenant = Tenant.objects.filter(pk=object_id).first()
        if tenant is None:
            return self._tenant_gone(request, object_id)
        page = reverse("admin:tenancy_tenant_change", args=[tenant.pk])
        node = (request.POST.get("node") or request.GET.get("node") or "").strip()
        mode = (request.POST.get("mode") or "auto").strip()
        if request.method == "POST" and request.POST.get("post") == "yes":
            try:
                move = placement.move_tenant(
                    tenant.schema_name, node, mode=mode, actor=actor_for(request)
                )
            except TenancyError as exc:
                messages.error(request, f"Move refused: {exc}")
            else:
                (messages.success if move.moved else messages.info)(request, move_message(move))
                if move.moved:
                    log_admin_action(request, tenant, CHANGE, move_message(move))
                return HttpResponseRedirect(page)
        plan = move_plan(request, tenant.schema_name)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Move {tenant.organization_name} to another node?",
            "subtitle": None,
            "object": tenant,
            "plan": plan,
            "chosen_node": node if node in plan.targets else next(iter(plan.targets), ""),
            "modes": [(m, TRANSFER_MODE_HELP[m]) for m in placement.TRANSFER_MODES],
            "chosen_mode": mode if mode in placement.TRANSFER_MODES else "auto",
            "tenant_url": page,
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, "admin/tenancy/tenant/move_confirmation.html", context)

    def rebalance_view(self, request: HttpRequest) -> HttpResponse:
        """Rebalance: the nodes and the rebalancer's jobs (refreshing while one is active);
        with none active, the confirmation to start one (``placement.start_rebalance`` on
        POST with ``post=yes``); with one active, a link to stop it."""
        if not request.user.has_perm(REBALANCE_PERMISSION):
            raise PermissionDenied
        here = reverse("admin:tenancy_tenant_rebalance")
        mode = (request.POST.get("mode") or "auto").strip()
        if request.method == "POST" and request.POST.get("post") == "yes":
            try:
                job = placement.start_rebalance(mode=mode, actor=actor_for(request))
            except TenancyError as exc:
                messages.error(request, f"Rebalance refused: {exc}")
            else:
                if job is None:
                    messages.info(request, "The nodes are balanced: nothing to move.")
                else:
                    messages.success(request, f"Rebalance job {job} started.")
                return HttpResponseRedirect(here)
        return self._rebalance_page(request, mode=mode, stopping=False)

    def rebalance_stop_view(self, request: HttpRequest) -> HttpResponse:
        """Stop the running rebalance: a confirmation page, then
        ``placement.stop_rebalance`` on POST with ``post=yes``."""
        if not request.user.has_perm(REBALANCE_PERMISSION):
            raise PermissionDenied
        if request.method == "POST" and request.POST.get("post") == "yes":
            try:
                stopped = placement.stop_rebalance(actor=actor_for(request))
            except TenancyError as exc:
                messages.error(request, f"Stop refused: {exc}")
            else:
                if stopped:
                    messages.success(request, "Rebalance stopped; the moves already done stay.")
                else:
                    messages.info(request, "No rebalance was running: nothing stopped.")
                return HttpResponseRedirect(reverse("admin:tenancy_tenant_rebalance"))
        return self._rebalance_page(request, mode="auto", stopping=True)

    def _rebalance_page(self, request: HttpRequest, *, mode: str, stopping: bool) -> HttpResponse:
        where = placement_for(request)
        problems: list[str] = []
        jobs: list[dict[str, Any]] = []
        if not where.citus:
            problems.append(placement.NOT_CITUS)
        else:
            try:
                jobs = rebalance_rows(placement.rebalance_jobs())
            except TenancyError as exc:
                problems.append(f"The rebalancer's jobs are unavailable: {exc}")
        active = [j for j in jobs if j["active"]]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Stop the rebalance?" if stopping else "Rebalance tenants over the nodes?",
            "subtitle": None,
            "stopping": stopping,
            "problems": problems,
            "nodes": node_counts(request),
            "jobs": jobs[:10],
            "active": active,
            "modes": [(m, TRANSFER_MODE_HELP[m]) for m in placement.TRANSFER_MODES],
            "chosen_mode": mode if mode in placement.TRANSFER_MODES else "auto",
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, "admin/tenancy/tenant/rebalance.html", context)

    # -- runs -----------------------------------------------------------------------------
    @admin.action(description="Run pending migrations", permissions=["run_migrations"])
    def run_pending_migrations(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse:
        schemas = sorted(queryset.values_list("schema_name", flat=True))
        return self._start(request, only=schemas, public=False)

    def run_all_view(self, request: HttpRequest) -> HttpResponse:
        """Every pending migration, public first, then every tenant: a confirmation page
        (Django's intermediate-page pattern) lists the schemas and files; its POST with
        ``post=yes`` queues the run."""
        if not self.has_run_migrations_permission(request):
            raise PermissionDenied
        if request.method == "POST" and request.POST.get("post") == "yes":
            return self._start(request, only=None, public=True)
        states = schema_states_for(request)
        public = public_state_for(request)
        work = [s for s in [public, *states.values()] if has_work(s)]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Run all pending migrations?",
            "subtitle": None,
            "work": work,
            "files": sorted({f"{s.scope}/{name}" for s in work for name in s.pending}),
            "blocked": [s for s in [public, *states.values()] if s and (s.drift or s.missing)],
            "active_runs": MigrationRun.objects.filter(status__in=ACTIVE_RUN_STATUSES),
            "drift_offers": drift_offers(request),
            "has_view_permission": self.has_view_permission(request),
            **_rollout_offer(request),
        }
        return TemplateResponse(request, "admin/tenancy/tenant/run_all_confirmation.html", context)

    def run_one_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        self._check_can_run(request)
        tenant = Tenant.objects.filter(pk=object_id).first()
        if tenant is None:
            return self._tenant_gone(request, object_id)
        return self._start(request, only=[tenant.schema_name], public=False)

    def _check_can_run(self, request: HttpRequest) -> None:
        if request.method != "POST":  # a run changes databases: never on a GET
            raise PermissionDenied
        if not self.has_run_migrations_permission(request):
            raise PermissionDenied

    def _start(self, request: HttpRequest, *, only: list[str] | None, public: bool) -> Any:
        return start_from_admin(request, only=only, public=public)


def _rollout_offer(request: HttpRequest) -> dict[str, Any]:
    """The run-all confirmation's offer of a staged rollout, to whoever may start one."""
    if not request.user.has_perm(admin_rollouts.PERMISSIONS["start"]):
        return {}
    return {
        "rollout_policies": admin_rollouts.policy_names(),
        "active_rollout": active_rollout(),
    }


def _tags_saved(request: HttpRequest, tenant: Tenant, change: tenant_service.TagChange) -> None:
    if not change.changed:
        messages.info(request, "The tags are unchanged.")
        return
    now, before = ", ".join(change.tags) or "none", ", ".join(change.before) or "none"
    message = f"Tags of {tenant.schema_name}: {now} (were {before})."
    messages.success(request, message)
    log_admin_action(request, tenant, CHANGE, message)


def start_from_admin(request: HttpRequest, *, only: list[str] | None, public: bool) -> Any:
    """Queue a guarded run and go to its page; or say why not (with a link to the run
    already covering that scope) and go back."""
    try:
        run = start_guarded_run(request, only=only, public=public)
    except RunNotStarted as exc:
        if exc.active is not None:
            url = reverse("admin:tenancy_migrationrun_change", args=[exc.active.pk])
            messages.error(request, format_html('{} <a href="{}">Follow it.</a>', str(exc), url))
            return HttpResponseRedirect(url)
        messages.warning(request, str(exc))
        return HttpResponseRedirect(
            request.META.get("HTTP_REFERER") or reverse("admin:tenancy_tenant_changelist")
        )
    except TenancyError as exc:
        messages.error(request, f"No run was started: {exc}")
        return HttpResponseRedirect(reverse("admin:tenancy_tenant_changelist"))
    scope = ", ".join(only) if only else "public and every tenant"
    messages.success(request, f"Run {run.pk} queued for {scope}.")
    log_admin_action(request, run, ADDITION, f"Queued for {scope}")
    return HttpResponseRedirect(reverse("admin:tenancy_migrationrun_change", args=[run.pk]))


# -- runs --------------------------------------------------------------------------------
class RunChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        # What the page's scopes need beyond the options (rollbacks, rollout stages): two
        # queries for the page.
        self.result_list = list(self.result_list)
        facts = scope_facts(self.result_list)
        for run in self.result_list:
            run.scope_facts = facts[run.pk]


@admin.register(MigrationRun)
class MigrationRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "kind",
        "run_status",
        "progress",
        "failures",
        "scope",
        "actor",
        "started",
        "took",
    )
    list_display_links = ("id", "kind")
    list_filter = ("status", "kind")
    search_fields = ("actor", "results__tenant_schema", "options__only")
    # The run's page: readable fields; the per-schema rows (failed first) follow them.
    fields = (
        "run_status",
        "progress",
        "summary",
        "scope",
        "options_display",
        "kind",
        "actor",
        "started",
        "finished",
        "took",
    )
    readonly_fields = (*fields, "fixed_by")
    change_list_template = "admin/tenancy/migrationrun/change_list.html"
    change_form_template = "admin/tenancy/migrationrun/change_form.html"

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        queryset, _ = super().get_search_results(request, queryset, search_term)
        return queryset.distinct(), False

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return RunChangeList

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        """What later runs did about a run that failed ("fixed by run N"), once it has
        ended; nothing to say otherwise, so no such field."""
        fields = list(super().get_fields(request, obj))
        if obj is not None and obj.status not in ACTIVE_RUN_STATUSES and has_failures(obj):
            fields.insert(fields.index("summary") + 1, "fixed_by")
        return fields

    @admin.display(description="Status", ordering="status")
    def run_status(self, run: MigrationRun) -> str:
        return format_html(
            '<span class="js-run-status-badge">{}</span>',
            badge(run.get_status_display(), RUN_STATUS_KINDS.get(run.status, "quiet")),
        )

    @admin.display(description="Progress")
    def progress(self, run: MigrationRun) -> str:
        return format_html(
            '{}<span class="js-run-progress">{} / {}</span> schemas',
            progress_bar(run.total_schemas, run.done_schemas, run.failed_schemas),
            run.done_schemas,
            run.total_schemas,
        )

    @admin.display(description="Failed", ordering="failed_schemas")
    def failures(self, run: MigrationRun) -> str:
        if run.failed_schemas:
            return badge(f"{run.failed_schemas} failed", "error")
        if run.status in ("refused", "interrupted", "failed"):
            return badge(run.get_status_display().lower(), "error", run.error or "")
        return "0"

    @admin.display(description="What failed")
    def summary(self, run: MigrationRun) -> str:
        text = run_summary(run, run_rows(run))
        failed = run.failed_schemas or run.status in ("failed", "refused", "interrupted")
        return format_html(
            '<span class="{}" id="run-summary">{}</span>',
            "tenancy-failed" if failed else "",
            text,
        )

    @admin.display(description="Later runs")
    def fixed_by(self, run: MigrationRun) -> str:
        fixes = later_fixes(run, run_rows(run))
        return fixes_html(fixes) if fixes is not None else "—"

    @admin.display(description="Scope")
    def scope(self, run: MigrationRun) -> str:
        facts: ScopeFacts | None = getattr(run, "scope_facts", None)
        return run_scope_html(run, facts)

    @admin.display(description="Options")
    def options_display(self, run: MigrationRun) -> str:
        rows = run_options(run.options or {})
        if not rows:
            return "—"
        return format_html_join("; ", "{}: {}", rows)

    @admin.display(description="Started", ordering="started_at")
    def started(self, run: MigrationRun) -> str:
        return when(run.started_at)

    @admin.display(description="Finished", ordering="finished_at")
    def finished(self, run: MigrationRun) -> str:
        return when(run.finished_at)

    @admin.display(description="Duration")
    def took(self, run: MigrationRun) -> str:
        return duration(run_duration_ms(run))

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Whoever may start a run may follow it.
        return super().has_view_permission(request, obj) or request.user.has_perm(RUN_PERMISSION)

    def get_urls(self) -> list:
        return [
            path(
                "<int:object_id>/retry/",
                self.admin_site.admin_view(self.retry_view),
                name="tenancy_migrationrun_retry",
            ),
            path(
                "<int:object_id>/progress.json",
                self.admin_site.admin_view(self.progress_view),
                name="tenancy_migrationrun_progress",
            ),
            *super().get_urls(),
        ]

    def retry_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """Retry failed schemas: a new run of the registered schemas that failed in this one."""
        if request.method != "POST" or not request.user.has_perm(RUN_PERMISSION):
            raise PermissionDenied
        run = get_object_or_404(MigrationRun, pk=object_id)
        failed = sorted(
            set(run.results.filter(status="failed").values_list("tenant_schema", flat=True))
        )
        registered = list(
            Tenant.objects.filter(schema_name__in=failed).values_list("schema_name", flat=True)
        )
        if not registered:
            messages.warning(request, "No registered tenant schema failed in this run.")
            return HttpResponseRedirect(reverse("admin:tenancy_migrationrun_change", args=[run.pk]))
        return start_from_admin(request, only=sorted(registered), public=False)

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
            context["run_rows"] = _rows_with_fixes(run)
            context["can_retry"] = (
                not context["run_active"]
                and request.user.has_perm(RUN_PERMISSION)
                and any(r["status"] == "failed" and r["url"] for r in context["run_rows"])
            )
            context["subtitle"] = f"Run {run.pk} ({run.kind}, {run.get_status_display()})"
            context["progress_url"] = reverse("admin:tenancy_migrationrun_progress", args=[run.pk])
            if run.status == "refused" and "drift" in (run.error or ""):
                context["drift_offers"] = drift_offers(request)
        return super().change_view(request, object_id, form_url, context)


def _rows_with_fixes(run: MigrationRun) -> list[dict[str, Any]]:
    """The run's rows, each failed one saying which later run fixed it (or that it still
    fails)."""
    rows = run_rows(run)
    fixes = later_fixes(run, rows)
    for r in rows:
        r["fix"] = row_fix_html(r["schema"], fixes) if r["status"] == "failed" else ""
    return rows


# -- the fleet overview on the admin index -----------------------------------------------
_stock_index = admin.site.index


def _index_with_fleet(request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
    context = dict(extra_context or {})
    if request.user.has_perm("tenancy.view_tenant"):
        run_records.close_dead_runs_now()
        context.update(fleet_overview(request))
    return _stock_index(request, context)


# The admin's own index page, with the overview above the app list (templates/admin/
# tenancy/index.html); admin.site's URLs are built after autodiscovery, so they use this.
admin.site.index = _index_with_fleet  # type: ignore[method-assign]
admin.site.index_template = "admin/tenancy/index.html"


# -- audit and settings ------------------------------------------------------------------
class AuditChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        # The page's tenant links and its run-wide rows' per-schema counts: a query each.
        self.result_list = list(self.result_list)
        urls = tenant_urls([a.tenant_schema for a in self.result_list if a.tenant_schema])
        counts = schema_row_counts(self.result_list)
        for row in self.result_list:
            row.tenant_url = urls.get(row.tenant_schema or "")
            row.schema_rows_n = counts.get(row.pk, 0)


def _narrowed(params: Mapping[str, Any]) -> bool:
    """A tenant, a run-wide row's schemas, a search or a per-schema action: then the
    per-schema rows are what is asked for, not grouped away."""
    action = str(params.get("action__exact") or "")
    return bool(
        params.get("tenant_schema") or params.get("of") or params.get("q")
    ) or action.endswith(".schema")


class SchemaRowsFilter(admin.SimpleListFilter):
    """By default a run's per-schema rows (``….schema``) are left out of the log: its
    run-wide row stands for them and links to them (``?of=``)."""

    title = "per-schema rows"
    parameter_name = "schema_rows"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("shown", "as rows of their own")]

    def choices(self, changelist: Any) -> Any:
        shown = self.value() == "shown" or _narrowed(changelist.params)
        yield {
            "selected": not shown,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "grouped under their run",
        }
        yield {
            "selected": shown,
            "query_string": changelist.get_query_string({self.parameter_name: "shown"}),
            "display": "as rows of their own",
        }

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        if self.value() == "shown" or _narrowed(request.GET):
            return None
        return queryset.exclude(PER_SCHEMA_ROWS)


def _parent_row(value: str | None) -> AuditLog | None:
    """The run-wide row ``?of=`` names."""
    value = value or ""
    return AuditLog.objects.filter(pk=int(value)).first() if value.isdigit() else None


class SchemaRowsOfFilter(admin.SimpleListFilter):
    """``?of=<id>``: the per-schema rows of one run-wide row (its "N schemas" link)."""

    title = "per-schema rows of"
    parameter_name = "of"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        parent = _parent_row(self.value())
        return [(str(parent.pk), f"{parent.action} #{parent.pk}")] if parent else []

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        if self.value() is None:
            return None
        parent = _parent_row(self.value())
        return queryset.filter(schema_rows_of(parent)) if parent else queryset.none()


class ActorFilter(admin.SimpleListFilter):
    """Who: the actors in the log (one query)."""

    title = "actor"
    parameter_name = "actor"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        actors = AuditLog.objects.order_by("actor").values_list("actor", flat=True).distinct()
        return [(a, a) for a in actors]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        value = self.value()
        return queryset.filter(actor=value) if value else None


class TenantSchemaFilter(admin.SimpleListFilter):
    """A tenant's rows, by schema name (a field to type it in: a fleet has too many to
    list); the tenant's page links here with ``?tenant_schema=``."""

    title = "tenant (schema)"
    parameter_name = "tenant_schema"
    template = "admin/tenancy/auditlog/schema_filter.html"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return []

    def has_output(self) -> bool:
        return True

    def choices(self, changelist: Any) -> Any:
        keep = {k: v for k, v in changelist.params.items() if k not in (self.parameter_name, "p")}
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "All",
            "value": self.value() or "",
            "hidden": sorted(keep.items()),
        }

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        value = (self.value() or "").strip()
        return queryset.filter(tenant_schema=value) if value else None


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    """Who did what to which tenant: details as fields, tenants and runs linked. Runs,
    fakes, rollbacks and acceptances write a row per schema they touched (``….schema``)
    beside their run-wide row; the log shows the run-wide row, with its schemas behind a
    link, so that a run over 200 tenants is one row. A tenant's filter, a search by schema
    or "per-schema rows: as rows of their own" show them."""

    list_display = (
        "when_display",
        "action",
        "schema_rows",
        "actor",
        "tenant_link",
        "details_fields",
    )
    list_display_links = ("when_display",)
    list_filter = (
        "action",
        ActorFilter,
        TenantSchemaFilter,
        ("created_at", admin.DateFieldListFilter),
        SchemaRowsFilter,
        SchemaRowsOfFilter,
    )
    search_fields = ("action", "actor", "tenant_schema")
    date_hierarchy = "created_at"
    fields = ("when_display", "action", "schema_rows", "actor", "tenant_link", "details_table")
    readonly_fields = fields
    change_list_template = "admin/tenancy/auditlog/change_list.html"

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return AuditChangeList

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        parent = _parent_row(request.GET.get("of"))
        if parent is not None and hasattr(response, "context_data"):
            shown = response.context_data["cl"].result_count
            response.context_data["schema_rows_of"] = {
                "note": audit_parent_note(parent, shown),
                "url": reverse("admin:tenancy_auditlog_change", args=[parent.pk]),
            }
        return response

    @admin.display(description="When", ordering="created_at")
    def when_display(self, row: AuditLog) -> str:
        return when(row.created_at)

    @admin.display(description="Schemas")
    def schema_rows(self, row: AuditLog) -> str:
        """A run-wide row's per-schema rows, behind a link (``?of=``)."""
        n = getattr(row, "schema_rows_n", None)
        if n is None and is_parent(row):
            n = schema_row_counts([row]).get(row.pk, 0)
        if not n:
            return "—"
        url = reverse("admin:tenancy_auditlog_changelist")
        return format_html(
            '<a class="tenancy-schema-rows" href="{}?of={}">{} schema{}</a>',
            url,
            row.pk,
            n,
            "" if n == 1 else "s",
        )

    @admin.display(description="Tenant", ordering="tenant_schema")
    def tenant_link(self, row: AuditLog) -> str:
        if not row.tenant_schema:
            return "—"
        url = getattr(row, "tenant_url", None)
        if url is None and not hasattr(row, "tenant_url"):
            url = tenant_urls([row.tenant_schema]).get(row.tenant_schema)
        return (
            format_html('<a href="{}">{}</a>', url, row.tenant_schema) if url else row.tenant_schema
        )

    @admin.display(description="Details")
    def details_fields(self, row: AuditLog) -> str:
        return audit_details_html(row.details)

    @admin.display(description="Details")
    def details_table(self, row: AuditLog) -> str:
        return audit_details_html(row.details, block=True)


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


# The staged rollouts' pages register themselves (their own module; the Migrations page's
# module is imported above, for its filter).
from tenancy import admin_rollouts  # noqa: E402, F401
