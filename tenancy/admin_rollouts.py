"""The admin's staged rollouts (docs/rollouts.md): the list, a page per rollout with its
stages (progress, failures, verification), followed live while it runs, and its verbs,
each behind its own permission and audited: start (from the run-all confirmation),
approve the next stage, resume, abort. The work is services/rollouts.py's; the worker
(``db_worker``) drives a rollout started, approved or resumed here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.models import ADDITION, CHANGE
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from tenancy import conf
from tenancy.admin import log_admin_action
from tenancy.admin_views import ReadOnlyAdmin, actor_for, badge, when
from tenancy.engine.errors import TenancyError
from tenancy.models import ACTIVE_ROLLOUT_STATES, Rollout
from tenancy.services.rollout_policy import stage_settings

PERMISSIONS = {
    "start": "tenancy.start_rollout",
    "approve": "tenancy.approve_rollout",
    "resume": "tenancy.resume_rollout",
    "abort": "tenancy.abort_rollout",
}
STATE_KINDS = {
    "running": "warn",
    "awaiting_approval": "warn",
    "halted": "error",
    "completed": "ok",
    "aborted": "quiet",
}
STAGE_KINDS = {"pending": "quiet", "running": "warn", "done": "ok", "halted": "error"}


def policy_names() -> list[str]:
    return sorted(conf.setting("ROLLOUTS") or {})


def stage_rows(rollout: Rollout) -> list[dict[str, Any]]:
    rows = []
    for number, stage in enumerate(rollout.stages or [], 1):
        failed, state = stage.get("failed") or {}, stage.get("state", "pending")
        rows.append(
            {
                "number": number,
                "name": stage["name"],
                "schemas": len(stage.get("schemas", [])),
                "applied": len(stage.get("applied") or {}),
                "state": state,
                "badge": badge(state, STAGE_KINDS.get(state, "quiet")),
                "failed": sorted(failed.items()),
                "problems": stage.get("verify_problems") or [],
                "runs": [
                    (run_id, reverse("admin:tenancy_migrationrun_change", args=[run_id]))
                    for run_id in stage.get("run_ids", [])
                ],
                "settings": ", ".join(stage_settings(stage)),
                "current": number - 1 == rollout.current_stage,
            }
        )
    return rows


def progress(rollout: Rollout) -> dict[str, Any]:
    """The JSON the rollout page polls while the rollout is active."""
    return {
        "id": rollout.pk,
        "state": rollout.state,
        "state_label": rollout.get_state_display(),
        "reason": rollout.reason,
        "current_stage": rollout.current_stage,
        "active": rollout.state in ACTIVE_ROLLOUT_STATES,
        "stages": [
            {k: r[k] for k in ("number", "name", "schemas", "applied", "state")}
            | {"failed": len(r["failed"])}
            for r in stage_rows(rollout)
        ],
    }


@admin.register(Rollout)
class RolloutAdmin(ReadOnlyAdmin):
    list_display = ("id", "policy", "state_badge", "stage", "failed", "started_by", "started")
    list_display_links = ("id", "policy")
    list_filter = ("state", "policy")
    fields = ("state_badge", "stage", "reason", "policy", "started_by", "started", "approved")
    readonly_fields = fields
    change_form_template = "admin/tenancy/rollout/change_form.html"

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Whoever may act on rollouts may follow them.
        return super().has_view_permission(request, obj) or any(
            request.user.has_perm(p) for p in PERMISSIONS.values()
        )

    @admin.display(description="State", ordering="state")
    def state_badge(self, rollout: Rollout) -> str:
        return format_html(
            '<span id="rollout-state">{}</span>',
            badge(rollout.get_state_display(), STATE_KINDS.get(rollout.state, "quiet")),
        )

    @admin.display(description="Stage")
    def stage(self, rollout: Rollout) -> str:
        stages = rollout.stages or []
        if not stages:
            return "—"
        index = min(rollout.current_stage, len(stages) - 1)
        return f"{index + 1} of {len(stages)}: {stages[index]['name']}"

    @admin.display(description="Failed schemas")
    def failed(self, rollout: Rollout) -> int:
        return sum(len(s.get("failed") or {}) for s in rollout.stages or [])

    @admin.display(description="Started", ordering="started_at")
    def started(self, rollout: Rollout) -> str:
        return when(rollout.started_at)

    @admin.display(description="Approved")
    def approved(self, rollout: Rollout) -> str:
        approvals = rollout.approvals or []
        if not approvals:
            return "—"
        return "; ".join(f"stage {a['stage'] + 1} by {a['actor']} at {a['at']}" for a in approvals)

    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
            path("start/", view(self.start_view), name="tenancy_rollout_start"),
            *(
                path(f"<int:object_id>/{verb}/", view(getattr(self, f"{verb}_view")), name=name)
                for verb, name in (
                    ("approve", "tenancy_rollout_approve"),
                    ("resume", "tenancy_rollout_resume"),
                    ("abort", "tenancy_rollout_abort"),
                )
            ),
            path(
                "<int:object_id>/progress.json",
                view(self.progress_view),
                name="tenancy_rollout_progress",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        rollout = get_object_or_404(Rollout, pk=object_id)
        can = {verb: request.user.has_perm(p) for verb, p in PERMISSIONS.items()}
        context = {
            **(extra_context or {}),
            "stage_rows": stage_rows(rollout),
            "rollout_live": rollout.state in ACTIVE_ROLLOUT_STATES,
            "progress_url": reverse("admin:tenancy_rollout_progress", args=[rollout.pk]),
            "can_approve": can["approve"] and rollout.state == "awaiting_approval",
            "can_resume": can["resume"] and rollout.state in ("halted", "running"),
            "can_abort": can["abort"] and rollout.state in ACTIVE_ROLLOUT_STATES,
        }
        return super().change_view(request, object_id, form_url, context)

    def progress_view(self, request: HttpRequest, object_id: int) -> JsonResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return JsonResponse(progress(get_object_or_404(Rollout, pk=object_id)))

    # -- the verbs ---------------------------------------------------------------------------
    def start_view(self, request: HttpRequest) -> HttpResponse:
        """From the run-all confirmation: a rollout of the named policy, driven by the
        worker."""
        from tenancy.services import rollout_policy, rollouts
        from tenancy.tasks import proceed_rollout

        _require(request, "start")
        name = request.POST.get("policy", "")
        back = reverse("admin:tenancy_tenant_run_all")
        try:
            stages = rollout_policy.named_policy(name, conf.setting("ROLLOUTS") or {}, jobs=1)
            record = rollouts.create(stages, policy=name, actor=actor_for(request))
        except TenancyError as exc:
            messages.error(request, f"No rollout was started: {exc}")
            return HttpResponseRedirect(back)
        proceed_rollout.enqueue(rollout_id=record.id, actor=actor_for(request))
        rollout = Rollout.objects.get(pk=record.id)
        log_admin_action(request, rollout, ADDITION, f"Started rollout {record.id} ({name})")
        messages.success(request, f"Rollout {record.id} ({name}) started: the worker drives it.")
        return _to_page(rollout)

    def approve_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        from tenancy.services import rollouts
        from tenancy.tasks import proceed_rollout

        def approve(pk: int, actor: str) -> str:
            record = rollouts.record_approval(pk, actor=actor)
            return f"Approved: the worker starts stage {record.current_stage + 1}."

        return _act(request, object_id, "approve", approve, proceed_rollout)

    def resume_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        from tenancy.services import rollouts
        from tenancy.tasks import resume_rollout

        def resume(pk: int, actor: str) -> str:
            rollouts.check_resumable(pk)
            return f"Rollout {pk}: resume queued for the worker."

        return _act(request, object_id, "resume", resume, resume_rollout)

    def abort_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        from tenancy.services import rollouts

        def abort(pk: int, actor: str) -> str:
            rollouts.abort(pk, actor=actor, reason="from the admin")
            return f"Rollout {pk} aborted: nothing more is started."

        return _act(request, object_id, "abort", abort)


def _act(
    request: HttpRequest,
    object_id: int,
    verb: str,
    call: Callable[[int, str], str],
    task: Any = None,
) -> HttpResponse:
    """A verb on a rollout: its permission (POST only), the service call (its refusal shown
    as a message), the worker's job if it has one, the admin's history, back to the page."""
    _require(request, verb)
    rollout = get_object_or_404(Rollout, pk=object_id)
    actor = actor_for(request)
    try:
        done = call(rollout.pk, actor)
    except TenancyError as exc:
        messages.error(request, str(exc))
        return _to_page(rollout)
    if task is not None:
        task.enqueue(rollout_id=rollout.pk, actor=actor)
    log_admin_action(request, rollout, CHANGE, f"{verb.capitalize()}: rollout {rollout.pk}")
    messages.success(request, done)
    return _to_page(rollout)


def _require(request: HttpRequest, verb: str) -> None:
    if request.method != "POST" or not request.user.has_perm(PERMISSIONS[verb]):
        raise PermissionDenied  # a verb changes databases: never on a GET


def _to_page(rollout: Rollout) -> HttpResponse:
    return HttpResponseRedirect(reverse("admin:tenancy_rollout_change", args=[rollout.pk]))
