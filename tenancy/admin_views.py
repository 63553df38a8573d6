"""What the admin pages need beyond ModelAdmin: the create-tenant form, a tenant's page
data, enqueueing a run, a run's progress. Thin: every decision is the services'."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Q
from django.http import HttpRequest
from django.templatetags.static import static
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from tenancy import conf
from tenancy.engine import statements
from tenancy.engine.errors import TenancyError
from tenancy.engine.executor import placeholders
from tenancy.engine.names import PUBLIC_SCHEMA, InvalidName, split_tags, validate_tags
from tenancy.engine.source import version_of
from tenancy.models import (
    ACTIVE_ROLLOUT_STATES,
    AuditLog,
    MigrationRun,
    MigrationRunResult,
    Rollout,
    RunStatus,
    TenantMigration,
)
from tenancy.services import (
    admin_links,
    fleet,
    placement,
    reports,
    run_records,
    steps,
    tenant_types,
)
from tenancy.services.reports import SchemaState, human_size
from tenancy.tasks import run_migrations

ACTIVE_RUN_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)
_STATES_ATTR = "_tenancy_schema_states"


def actor_for(request: HttpRequest) -> str:
    return f"admin:{request.user.get_username()}"


# Editing a tenant's tags (its registry row) is the model's change permission: the tenant
# admin offers no change form, so the permission means nothing else there.
TAGS_PERMISSION = "tenancy.change_tenant"
TAGS_HELP = (
    "Comma-separated, e.g. enterprise, eu: lower-case letters, digits, '_', '.' and '-', "
    "at most 64 characters each."
)


def tags_field(*, autofocus: bool = False) -> forms.CharField:
    attrs = {"class": "vTextField", **({"autofocus": True} if autofocus else {})}
    return forms.CharField(
        label="Tags", required=False, help_text=TAGS_HELP, widget=forms.TextInput(attrs=attrs)
    )


def clean_tag_text(text: str) -> list[str]:
    """A comma-separated field's tags, validated (sorted, unique), or the form's error."""
    try:
        return validate_tags(split_tags(text or ""))
    except InvalidName as exc:
        raise forms.ValidationError(str(exc)) from exc


class TagsForm(forms.Form):
    """Edit tags: the tenant's whole list, saved through tenants.set_tenant_tags."""

    tags = tags_field(autofocus=True)

    def clean_tags(self) -> list[str]:
        return clean_tag_text(self.cleaned_data["tags"])


def tag_badges(tags: list[str] | None) -> str:
    """A tenant's tags as quiet badges ("—" without any)."""
    if not tags:
        return "—"
    return format_html_join(" ", '<span class="tenancy-tag">{}</span>', ((t,) for t in tags))


class CreateTenantForm(forms.Form):
    auth0_org_id = forms.CharField(
        label="Auth0 organization id",
        max_length=64,
        help_text="org_ followed by letters and digits, e.g. org_ayHu5XNaTNHMasO5.",
        widget=forms.TextInput(attrs={"autofocus": True, "class": "vTextField"}),
    )
    organization_name = forms.CharField(
        label="Organization name",
        max_length=255,
        required=False,
        help_text="Defaults to the organization id.",
        widget=forms.TextInput(attrs={"class": "vTextField"}),
    )
    tags = tags_field()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if tenant_types.enabled():  # multi-type tenants: which apps the schema gets
            self.fields["tenant_type"] = forms.ChoiceField(
                label="Type",
                choices=[(name, name) for name in tenant_types.names()],
                initial=tenant_types.default(),
                help_text="Its schema gets this type's apps (TENANT_TYPES).",
            )

    def clean_tags(self) -> list[str]:
        return clean_tag_text(self.cleaned_data["tags"])


# -- the admins' common base ---------------------------------------------------------------
class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows the engine writes; the admin shows them and never edits them."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# -- the tenant list ---------------------------------------------------------------------
def schema_states_for(request: HttpRequest) -> dict[str, SchemaState]:
    """Every tenant's migration state, computed once per request (filters, columns and the
    run buttons share it): reports.schema_states answers in a constant number of queries.
    The public schema's state is kept apart (``public_state_for``)."""
    cached = getattr(request, _STATES_ATTR, None)
    if cached is None:
        public: SchemaState | None = None
        try:
            cached = {}
            for s in reports.schema_states(include_public=True):
                if s.scope == "public":
                    public = s
                else:
                    cached[s.schema] = s
        except TenancyError as exc:
            messages.error(request, f"Migration state unavailable: {exc}")
            cached = {}
        setattr(request, _STATES_ATTR, cached)
        setattr(request, _STATES_ATTR + "_public", public)
    return cached


def public_state_for(request: HttpRequest) -> SchemaState | None:
    schema_states_for(request)
    return getattr(request, _STATES_ATTR + "_public", None)


def has_work(state: SchemaState | None) -> bool:
    """Whether a run would do something to this schema (pending files, or a missing schema
    it would report)."""
    return bool(state and (state.pending or not state.schema_exists))


def anything_pending(request: HttpRequest) -> bool:
    states = schema_states_for(request)
    return has_work(public_state_for(request)) or any(has_work(s) for s in states.values())


# -- a tenant's page ---------------------------------------------------------------------
@dataclass(frozen=True)
class PendingFile:
    version: str
    name: str
    transactional: bool
    sql: str


def tenant_page_context(
    request: HttpRequest, schema: str, *, citus: bool = False
) -> dict[str, Any]:
    """History from the ledger, latest run results, pending files with the SQL a run
    would execute in this schema, and the audit rows about it."""
    state: SchemaState | None = None
    pending: list[PendingFile] = []
    try:
        states = reports.schema_states(include_public=False, only=[schema])
        state = states[0] if states else None
        if state and state.pending:
            names = set(state.pending)
            values = placeholders(schema, str(conf.conninfo()["dbname"]))
            pending = [
                PendingFile(m.version, m.name, m.transactional, statements.render(m.up_sql, values))
                for m in steps.tenant_steps(state.tenant_type)
                if m.name in names
            ]
    except TenancyError as exc:
        messages.error(request, f"Migration state unavailable: {exc}")
    # Its own rows: runs, fakes, rollbacks and acceptances write one per schema they touch
    # (the run-wide rows, which list every schema, stay on the audit log's pages).
    about_schema = Q(tenant_schema=schema)
    return {
        "state": state,
        "facts": tenant_facts(schema, state, citus=citus),
        "history": TenantMigration.objects.filter(tenant_schema=schema).order_by(
            "migration_version"
        ),
        "run_results": MigrationRunResult.objects.filter(tenant_schema=schema)
        .select_related("run")
        .order_by("-finished_at", "-id")[:10],
        "pending_files": pending,
        "audit_rows": audit_rows(
            AuditLog.objects.filter(about_schema).order_by("-created_at", "-id")[:50]
        ),
    }


def tenant_facts(
    schema: str, state: SchemaState | None, *, citus: bool = False
) -> list[tuple[str, str]]:
    """What `tenant_status` shows beside the migrations: roles, domains, size, activity
    (its audit rows and the latest one), and on a Citus cluster the node it lives on. The
    size is this schema's alone (one pg_class scan of its relations), not the fleet's."""
    from django.db import connection
    from django.db.models import Max

    from tenancy.engine.names import owner_role_for_schema, role_for_schema
    from tenancy.models import Domain

    database = str(conf.conninfo()["dbname"])
    domains = list(
        Domain.objects.filter(tenant__schema_name=schema).values_list("domain", "is_primary")
    )
    with connection.cursor() as cur:
        cur.execute(
            "SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'm')",
            [schema],
        )
        row = cur.fetchone()
    size = row[0] if row and state and state.schema_exists else None
    activity = AuditLog.objects.filter(tenant_schema=schema).aggregate(n=Max("created_at"))["n"]
    node = [("Node", node_label(state))] if citus else []
    return [
        *node,
        ("Role (requests)", role_for_schema(schema, database)),
        ("Owner role (migrations)", owner_role_for_schema(schema, database)),
        (
            "Domains",
            ", ".join(f"{d}{' (primary)' if primary else ''}" for d, primary in domains) or "—",
        ),
        ("Size", human_size(size) if size is not None else "—"),
        (
            "Activity",
            f"{state.activity_count if state else 0} audit row(s); latest "
            f"{timezone.localtime(activity).strftime(TIME_FORMAT) if activity else '—'}",
        ),
        ("Last run", when(state.last_run_at) if state else "—"),
    ]


# -- runs --------------------------------------------------------------------------------
def enqueue_run(request: HttpRequest, *, only: list[str] | None, public: bool) -> MigrationRun:
    """Record a queued run and hand it to the worker; the row and the job commit together,
    so the worker never picks up a job whose run row it cannot see."""
    actor = actor_for(request)

    def enqueue(run_id: int) -> str:
        job = run_migrations.enqueue(
            run_id=run_id, only=only, public=public, tenants=True, actor=actor
        )
        return str(job.id)

    run_id = run_records.queue_run(
        actor=actor,
        options={"only": only, "public": public, "tenants": True},
        total=len(only) if only else 0,
        enqueue=enqueue,
    )
    return MigrationRun.objects.get(pk=run_id)


def run_progress(run: MigrationRun) -> dict[str, Any]:
    """The JSON the run page polls while a run is queued or running."""
    rows = run_rows(run)
    return {
        "id": run.pk,
        "status": run.status,
        "status_label": run.get_status_display(),
        "active": run.status in ACTIVE_RUN_STATUSES,
        "total": run.total_schemas,
        "done": run.done_schemas,
        "failed": run.failed_schemas,
        "error": run.error,
        "summary": run_summary(run, rows),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "duration": duration(run_duration_ms(run)),
        "results": [
            {
                "schema": r["schema"],
                "status": r["status"],
                "versions": r["versions"],
                "error": r["error"],
                "duration_ms": r["duration_ms"],
                "duration": duration(r["duration_ms"]),
                "finished_at": timezone.localtime(r["finished_at"]).strftime(TIME_FORMAT)
                if r["finished_at"]
                else None,
                "url": r["url"],
            }
            for r in rows
        ],
    }


# -- display helpers ---------------------------------------------------------------------
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def when(dt: Any) -> str:
    """A time to the second, in the site's time zone, as a <time> element."""
    if not dt:
        return "—"
    local = timezone.localtime(dt)
    return format_html('<time datetime="{}">{}</time>', dt.isoformat(), local.strftime(TIME_FORMAT))


def duration(ms: int | float | None) -> str:
    """1.234 s, 2 min 05 s, 340 ms."""
    if ms is None:
        return "—"
    ms = int(ms)
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


# kind → (admin icon, css modifier): the admin's own icons and palette (light and dark).
_BADGE_ICONS = {"ok": "icon-yes.svg", "warn": "icon-alert.svg", "error": "icon-no.svg"}


def badge(text: str, kind: str, title: str = "") -> str:
    """A state as a coloured badge: ok (green), warn (yellow), error (red), quiet (grey)."""
    icon = _BADGE_ICONS.get(kind)
    img = format_html('<img src="{}" alt="" width="13" height="13">', static(f"admin/img/{icon}"))
    return format_html(
        '<span class="tenancy-badge tenancy-badge-{}"{}>{}{}</span>',
        kind,
        format_html(' title="{}"', title) if title else "",
        img if icon else "",
        text,
    )


STATUS_KINDS = {"active": "ok", "suspended": "warn", "archived": "quiet"}
RUN_STATUS_KINDS = {
    "succeeded": "ok",
    "queued": "quiet",
    "running": "warn",
    "failed": "error",
    "refused": "error",
    "interrupted": "error",
}


def state_badges(state: SchemaState | None, schema: str = "") -> str:
    """Missing schema, failed, drift and pending stand out; an up-to-date schema is quiet."""
    if state is None:
        return badge("unknown", "quiet")
    parts: list[str] = []
    if not state.schema_exists:
        parts.append(badge("schema missing", "error", f"{schema or state.schema} does not exist"))
    if state.failed:
        parts.append(badge("1 failed", "error", state.last_error or ""))
    if state.drift:
        label = "drift" if len(state.drift) == 1 else f"drift ×{len(state.drift)}"
        parts.append(badge(label, "error", f"changed after applied: {', '.join(state.drift)}"))
    if state.missing:
        parts.append(badge(f"{len(state.missing)} file(s) gone", "warn", ", ".join(state.missing)))
    if state.pending:
        parts.append(badge(f"{len(state.pending)} pending", "warn", ", ".join(state.pending)))
    if not parts:
        parts.append(badge("0 pending", "ok", "up to date"))
    return mark_safe(" ".join(parts))  # noqa: S308 (each part built by format_html)


# -- a run's page ------------------------------------------------------------------------
def admin_url(name: str, *args: Any) -> str:
    """An admin page's URL in the public schema's URLconf (where the admin lives)."""
    return admin_links.admin_path(name, *args)


def progress_widths(total: int, done: int, failed: int) -> tuple[float, float]:
    """The succeeded and the failed part of a run's bar, in percent of its schemas."""
    if total <= 0:
        return 0.0, 0.0
    done = max(0, min(done, total))
    failed = max(0, min(failed, done))
    return 100 * (done - failed) / total, 100 * failed / total


def progress_bar(total: int, done: int, failed: int) -> str:
    """Two colours sized to the counts: succeeded green, failed red (1 failed of 202 is a
    thin red sliver, never a red bar), the rest of the track still to do."""
    ok, bad = progress_widths(total, done, failed)
    failed = max(0, min(failed, done))
    return format_html(
        '<span class="tenancy-progress tenancy-progress-split" role="progressbar" '
        'aria-valuenow="{}" aria-valuemin="0" aria-valuemax="100" aria-valuetext="{}">'
        '<span class="tenancy-progress-ok" style="width: {}%"></span>'
        '<span class="tenancy-progress-bad{}" style="width: {}%"></span></span>',
        round(ok + bad),
        f"{done - failed} succeeded, {failed} failed, of {total}",
        f"{ok:.2f}",
        " tenancy-progress-some" if bad else "",
        f"{bad:.2f}",
    )


def run_scope(
    options: dict[str, Any], kind: str = "migrate", touched: tuple[bool, bool] | None = None
) -> str:
    """What a run covers, in words, from its recorded options. A rollback records its
    version and ``only``, not whether it was public's or the tenants': ``touched`` (public?,
    tenants?) is what its results show."""
    only = options.get("only")
    if only:
        return _named_scope(list(only), public=bool(options.get("public")))
    if kind == "rollback" and "public" not in options:
        if touched is None or not any(touched):
            version = options.get("version") or "the version"
            return f"every schema with {version} or later recorded"
        return _flag_scope(*touched)
    return _flag_scope(bool(options.get("public", False)), bool(options.get("tenants", True)))


def _flag_scope(public: bool, tenants: bool) -> str:
    if public and tenants:
        return "public and every tenant"
    if public:
        return "public only"
    return "every tenant, not public" if tenants else "—"


def _named_scope(only: list[str], *, public: bool) -> str:
    """``only``'s schemas: a few named, the rest counted; public said first."""
    named = [s for s in only if s != PUBLIC_SCHEMA]
    public = public or len(named) < len(only)
    if not named:
        return "public only"
    names = ", ".join(named[:5]) + (f" and {len(named) - 5} more" if len(named) > 5 else "")
    if len(named) > 1:
        names = f"{len(named)} tenants: {names}"
    return f"public and {names}" if public else names


@dataclass(frozen=True)
class ScopeFacts:
    """What a run's options alone do not say: what a rollback touched (public?, tenants?),
    and the rollout stage a run belongs to (rollout id, stage number, stage name)."""

    touched: tuple[bool, bool] | None = None
    stage: tuple[int, int, str] | None = None


def scope_facts(runs: list[MigrationRun]) -> dict[int, ScopeFacts]:
    """The facts for a page of runs: two queries whatever the page's size."""
    rollbacks = [r.pk for r in runs if r.kind == "rollback" and not (r.options or {}).get("only")]
    staged = [r.pk for r in runs if r.kind == "migrate" and (r.options or {}).get("only")]
    touched, stages = _rollback_touches(rollbacks), _rollout_stages(staged)
    return {r.pk: ScopeFacts(touched.get(r.pk), stages.get(r.pk)) for r in runs}


def _rollback_touches(run_ids: list[int]) -> dict[int, tuple[bool, bool]]:
    from django.db.models import Count

    if not run_ids:
        return {}
    public = Q(tenant_schema=PUBLIC_SCHEMA)
    rows = (
        MigrationRunResult.objects.filter(run_id__in=run_ids)
        .order_by()
        .values("run_id")
        .annotate(p=Count("id", filter=public), t=Count("id", filter=~public))
    )
    return {r["run_id"]: (r["p"] > 0, r["t"] > 0) for r in rows}


def _rollout_stages(run_ids: list[int]) -> dict[int, tuple[int, int, str]]:
    """Each run a rollout's stage started (its ``run_ids``): rollout, stage number, name."""
    import operator
    from functools import reduce

    if not run_ids:
        return {}
    wanted = set(run_ids)
    match = reduce(operator.or_, (Q(stages__contains=[{"run_ids": [i]}]) for i in run_ids))
    found: dict[int, tuple[int, int, str]] = {}
    for rollout in Rollout.objects.filter(match).only("pk", "stages"):
        for number, stage in enumerate(rollout.stages or [], 1):
            for run_id in set(stage.get("run_ids") or []) & wanted:
                found[run_id] = (rollout.pk, number, str(stage.get("name") or ""))
    return found


def run_scope_html(run: MigrationRun, facts: ScopeFacts | None = None) -> str:
    """The run's scope, and the rollout stage it ran for (linked) when it did."""
    facts = facts or scope_facts([run])[run.pk]
    text = run_scope(run.options or {}, run.kind, facts.touched)
    if facts.stage is None:
        return text
    rollout_id, number, name = facts.stage
    return format_html(
        'stage {}{} of <a href="{}">rollout {}</a>: {}',
        number,
        f" ({name})" if name else "",
        admin_url("tenancy_rollout_change", rollout_id),
        rollout_id,
        text,
    )


_OPTION_LABELS = {
    "jobs": "parallel workers",
    "fail_fast": "stop at the first failure",
    "max_failures": "stop after failures",
    "fake": "recorded without running (fake)",
    "version": "rolled back from version",
    "backup_dir": "backups in",
    "job_id": "background job",
}


def run_options(options: dict[str, Any]) -> list[tuple[str, str]]:
    """The run's options other than its scope, as (label, value) pairs a person reads
    (unset ones left out)."""
    rows: list[tuple[str, str]] = []
    for key, label in _OPTION_LABELS.items():
        value = options.get(key)
        if value in (None, False, "", 0):
            continue
        rows.append((label, "yes" if value is True else str(value)))
    return rows


def tenant_urls(schemas: list[str]) -> dict[str, str]:
    """Each registered schema's admin page (one query)."""
    from tenancy.models import Tenant

    pks = Tenant.objects.filter(schema_name__in=schemas).values_list("schema_name", "pk")
    return {schema: admin_url("tenancy_tenant_change", pk) for schema, pk in pks}


def run_rows(run: MigrationRun) -> list[dict[str, Any]]:
    """The run's per-schema rows, failed first. The run records them as it goes (every
    half second); before its first are recorded, the schemas the ledger shows it has
    applied so far."""
    results = list(run.results.all())
    rows = [
        {
            "schema": r.tenant_schema,
            "status": r.status,
            "versions": list(r.versions or []),
            "error": r.error,
            "duration_ms": r.duration_ms,
            "finished_at": r.finished_at,
        }
        for r in results
    ]
    if run.status in ACTIVE_RUN_STATUSES and not rows:
        applied: dict[str, dict[str, Any]] = {}
        for m in TenantMigration.objects.filter(run_id=run.pk).order_by("applied_at", "id"):
            row = applied.setdefault(
                m.tenant_schema,
                {
                    "schema": m.tenant_schema,
                    "status": "succeeded",
                    "versions": [],
                    "error": None,
                    "duration_ms": 0,
                    "finished_at": m.applied_at,
                },
            )
            row["versions"].append(m.migration_version)
            row["duration_ms"] += m.execution_time_ms or 0
            row["finished_at"] = m.applied_at
        rows = list(applied.values())
    urls = tenant_urls([r["schema"] for r in rows])
    for r in rows:
        r["url"] = urls.get(r["schema"])
        r["took"] = duration(r["duration_ms"])
    rows.sort(key=lambda r: (r["status"] != "failed", r["schema"] != "public", r["schema"]))
    return rows


def run_summary(run: MigrationRun, rows: list[dict[str, Any]]) -> str:
    """One sentence on what failed, for the top of the run's page."""
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        first = (failed[0]["error"] or "").strip().splitlines()
        names = ", ".join(r["schema"] for r in failed[:5])
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        return (
            f"{len(failed)} of {max(run.total_schemas, len(rows))} schema(s) failed: "
            f"{names}{more}. First error: {first[0] if first else 'unknown'}"
        )
    if run.error:
        return run.error
    if run.status in ACTIVE_RUN_STATUSES:
        if run.failed_schemas:
            return f"{run.failed_schemas} schema(s) failed so far."
        return "No failure so far."
    return "Nothing failed."


# -- what fixed a failed run ---------------------------------------------------------------
FAILED_RUN_STATUSES = (RunStatus.FAILED, RunStatus.REFUSED, RunStatus.INTERRUPTED)


@dataclass(frozen=True)
class Fixes:
    """What later runs did about a failed run: each failed schema with the run that then
    succeeded for it, those still failing, and for a run that failed as a whole (refused,
    interrupted, no schema failed) the later run that succeeded over its scope."""

    by_schema: dict[str, int]
    still_failing: list[str]
    whole: MigrationRun | None = None


def _family(kind: str) -> tuple[str, ...]:
    """The runs that can fix one of this kind: a rollback's, or a migrate's (a fake too)."""
    return ("rollback",) if kind == "rollback" else ("migrate", "fake")


def has_failures(run: MigrationRun) -> bool:
    return bool(run.failed_schemas) or run.status in FAILED_RUN_STATUSES


def later_fixes(run: MigrationRun, rows: list[dict[str, Any]]) -> Fixes | None:
    """None unless the run failed (two queries at most: one per failed run page)."""
    if run.status in ACTIVE_RUN_STATUSES or not has_failures(run):
        return None
    failed = [r["schema"] for r in rows if r["status"] == "failed"]
    if not failed:
        return Fixes({}, [], _whole_fix(run))
    found = dict(
        MigrationRunResult.objects.filter(
            tenant_schema__in=failed,
            status="succeeded",
            run_id__gt=run.pk,
            run__kind__in=_family(run.kind),
        )
        .order_by("tenant_schema", "run_id")
        .distinct("tenant_schema")
        .values_list("tenant_schema", "run_id")
    )
    return Fixes(found, [s for s in failed if s not in found])


def _whole_fix(run: MigrationRun) -> MigrationRun | None:
    later = MigrationRun.objects.filter(
        pk__gt=run.pk, status=RunStatus.SUCCEEDED, kind__in=_family(run.kind)
    ).order_by("pk")[:200]
    return next((r for r in later if overlaps(r.options or {}, run.options or {})), None)


def _run_link(run_id: int) -> str:
    return format_html(
        '<a href="{}">run {}</a>', admin_url("tenancy_migrationrun_change", run_id), run_id
    )


def _some(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def fixes_html(fixes: Fixes) -> str:
    """The run page's "Later runs": "fixed by run N" (linked) for the failed schemas a later
    run succeeded for (which run fixed which, when several did), and which still fail."""
    if not fixes.by_schema and not fixes.still_failing:
        if fixes.whole is None:
            return "no later run has succeeded over its scope"
        return format_html(
            "fixed by {} (it succeeded over the same scope)", _run_link(fixes.whole.pk)
        )
    by_run: dict[int, list[str]] = {}
    for schema, run_id in sorted(fixes.by_schema.items()):
        by_run.setdefault(run_id, []).append(schema)
    parts = [
        format_html(
            "fixed by {}{}",
            _run_link(run_id),
            f": {_some(names)}" if len(by_run) > 1 or fixes.still_failing else "",
        )
        for run_id, names in sorted(by_run.items())
    ]
    if fixes.still_failing:
        parts.append(format_html("still failing: {}", _some(fixes.still_failing)))
    return mark_safe("; ".join(parts))  # noqa: S308 (each part built by format_html)


def row_fix_html(schema: str, fixes: Fixes | None) -> str:
    """A failed row's note: the later run that applied it, or that it still fails."""
    if fixes is None:
        return ""
    run_id = fixes.by_schema.get(schema)
    if run_id is not None:
        return format_html("fixed by {}", _run_link(run_id))
    return "still failing" if schema in fixes.still_failing else ""


def run_duration_ms(run: MigrationRun) -> int | None:
    if not run.started_at:
        return None
    end = run.finished_at or (timezone.now() if run.status == RunStatus.RUNNING else None)
    return int((end - run.started_at).total_seconds() * 1000) if end else None


# -- run guards --------------------------------------------------------------------------
class RunNotStarted(Exception):
    """Why a run was not queued: nothing to do, or an active run covers the same schemas."""

    def __init__(self, message: str, active: MigrationRun | None = None):
        super().__init__(message)
        self.active = active


def _covers(options: dict[str, Any]) -> tuple[bool, set[str] | None]:
    """(public?, tenant schemas: None for every tenant) of a run's recorded options."""
    only = options.get("only")
    public = bool(options.get("public", False))
    if only:
        return public, set(only)
    return public, None if options.get("tenants", True) else set()


def overlaps(a: dict[str, Any], b: dict[str, Any]) -> bool:
    public_a, tenants_a = _covers(a)
    public_b, tenants_b = _covers(b)
    if public_a and public_b:
        return True
    if tenants_a is None:
        return tenants_b is None or bool(tenants_b)
    if tenants_b is None:
        return bool(tenants_a)
    return bool(tenants_a & tenants_b)


_QUEUE_LOCK = "tenancy.admin.queue_run"


def start_guarded_run(
    request: HttpRequest, *, only: list[str] | None, public: bool
) -> MigrationRun:
    """Queue a run unless it would do nothing (no pending file, no missing schema in its
    scope) or an active run already covers an overlapping scope. The check and the queueing
    share one transaction under an advisory lock, so two clicks cannot both pass."""
    from django.db import connection, transaction

    options = {"only": only, "public": public, "tenants": True}
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [_QUEUE_LOCK])
        for active in MigrationRun.objects.filter(status__in=ACTIVE_RUN_STATUSES).order_by("pk"):
            if overlaps(active.options or {}, options):
                raise RunNotStarted(
                    f"Run {active.pk} ({active.get_status_display().lower()}) already covers "
                    f"{run_scope(active.options or {})}: no second run was started.",
                    active,
                )
        states = reports.schema_states(include_public=public, only=only)
        if not any(has_work(s) for s in states):
            raise RunNotStarted("Nothing pending: no run was started.")
        return enqueue_run(request, only=only, public=public)


# -- lifecycle actions -------------------------------------------------------------------
@dataclass(frozen=True)
class Verb:
    """A lifecycle action: its label, permission, when it applies, what the confirmation
    page says, and the lifecycle service call (the same one its command makes)."""

    name: str
    label: str
    permission: str
    explain: str
    applies: Any  # (tenant) -> bool
    call: Any  # (schema, actor, reason, typed) -> str (the success message)
    danger: bool = False
    typed: bool = False  # the operator types the schema name to confirm


def _status_call(verb: str) -> Any:
    from tenancy.services import lifecycle

    def call(schema: str, actor: str, reason: str | None, typed: str | None) -> str:
        change = getattr(lifecycle, verb)(schema, actor=actor, reason=reason)
        # Not starting with the schema: the admin capitalises a message's first letter.
        if not change.changed:
            return f"Nothing changed: {schema} was already {change.new}."
        return f"Tenant {schema}: {change.old} → {change.new}."

    return call


def _drop(schema: str, actor: str, reason: str | None, typed: str | None) -> str:
    from tenancy.services import lifecycle

    dropped = lifecycle.drop_tenant(schema, actor=actor, expected_schema=typed, reason=reason)
    return (
        f"Tenant {dropped.tenant.org_id} dropped: schema {schema}, role and "
        f"{dropped.ledger_rows} ledger rows, in {dropped.elapsed_ms} ms."
    )


def _recreate(schema: str, actor: str, reason: str | None, typed: str | None) -> str:
    from tenancy.services import lifecycle

    done = lifecycle.recreate_tenant(schema, actor=actor, reason=reason)
    return (
        f"Schema {schema} recreated with {len(done.migrations_applied)} migrations in "
        f"{done.elapsed_ms} ms."
    )


LIFECYCLE_VERBS: dict[str, Verb] = {
    v.name: v
    for v in (
        Verb(
            "suspend",
            "Suspend",
            "tenancy.suspend_tenant",
            "Its domain stops being served at once; its schema and data stay intact.",
            lambda t: t.status != "suspended",
            _status_call("suspend"),
        ),
        Verb(
            "archive",
            "Archive",
            "tenancy.archive_tenant",
            "Its domain stops being served; its schema and data stay intact.",
            lambda t: t.status != "archived",
            _status_call("archive"),
        ),
        Verb(
            "reactivate",
            "Reactivate",
            "tenancy.reactivate_tenant",
            "Its domain is served again.",
            lambda t: t.status != "active",
            _status_call("reactivate"),
        ),
        Verb(
            "recreate",
            "Recreate",
            "tenancy.recreate_tenant",
            "Drops its schema (ALL ITS DATA IS LOST), role and ledger rows, and builds them "
            "again from every tenant migration on disk, in one transaction. The registry row "
            "and domains stay.",
            lambda t: True,
            _recreate,
            danger=True,
        ),
        Verb(
            "drop",
            "Drop",
            "tenancy.drop_tenant",
            "Drops its schema (ALL ITS DATA IS LOST), roles, ledger rows, domains and registry "
            "row, in one transaction. This cannot be undone.",
            lambda t: True,
            _drop,
            danger=True,
            typed=True,
        ),
    )
}


def verbs_for(request: HttpRequest, tenant: Any) -> list[Verb]:
    """The lifecycle actions this user may take on this tenant now."""
    return [
        v
        for v in LIFECYCLE_VERBS.values()
        if request.user.has_perm(v.permission) and v.applies(tenant)
    ]


# -- the fleet overview (admin index) ----------------------------------------------------
def active_rollout() -> Rollout | None:
    """The rollout that holds the fleet (one at a time), if any."""
    return Rollout.objects.filter(state__in=ACTIVE_ROLLOUT_STATES).order_by("-pk").first()


def fleet_overview(request: HttpRequest) -> dict[str, Any]:
    """Counts for the admin index: tenants by status, migration states, the public schema,
    the active run and the latest runs, and on a Citus cluster the worker nodes with their
    tenants (a constant number of queries)."""
    from django.db.models import Count

    from tenancy.models import Tenant

    states = schema_states_for(request)
    counts = fleet.scope_counts(states.values())["tenant"]
    by_status = dict(Tenant.objects.values_list("status").annotate(n=Count("id")))
    active = (
        MigrationRun.objects.filter(status__in=ACTIVE_RUN_STATUSES).order_by("started_at").first()
    )
    latest_runs = list(MigrationRun.objects.order_by("-started_at", "-id")[:5])
    unfinished = (RunStatus.FAILED, RunStatus.REFUSED, RunStatus.INTERRUPTED)
    return {
        "fleet": {
            "tenants": sum(by_status.values()),
            "by_status": [(s, by_status.get(s, 0)) for s in ("active", "suspended", "archived")],
            "pending": counts.with_pending,
            "failed": counts.failed,
            "drifted": counts.drifted,
            "missing": counts.missing,
            "public": public_state_for(request),
            "active_run": active,
            "active_percent": int(100 * active.done_schemas / active.total_schemas)
            if active and active.total_schemas
            else 0,
            "latest_runs": latest_runs,
            # The overview's banner: the latest run, when it failed, was refused or interrupted.
            "latest_failed_run": latest_runs[0]
            if latest_runs and latest_runs[0].status in unfinished
            else None,
            "active_rollout": active_rollout(),
            # On a Citus cluster: each worker with its tenants (empty elsewhere).
            "nodes": node_counts(request),
            "can_rebalance": request.user.has_perm(REBALANCE_PERMISSION),
        }
    }


# -- recovery actions: accept a checksum, mark as applied, roll back ----------------------
@dataclass(frozen=True)
class RecoveryVerb:
    """A recovery action: its label, permission and what the confirmation page says. The
    plan (``recovery_plan``) and the call (``recovery_call``) are the services' own: the
    dry run and the verb ``migrate_tenants`` runs for --accept-checksum, --fake/--baseline
    and --rollback."""

    name: str
    label: str
    permission: str
    explain: str
    danger: bool = False


RECOVERY_VERBS: dict[str, RecoveryVerb] = {
    v.name: v
    for v in (
        RecoveryVerb(
            "accept-checksum",
            "Accept checksum",
            "tenancy.accept_checksum_tenant",
            "Records the file's current checksum in the ledger (and its DOWN section): the "
            "edited file is taken as what was applied. Nothing runs in the schema; runs stop "
            "refusing it for drift. (migrate_tenants --accept-checksum)",
        ),
        RecoveryVerb(
            "fake",
            "Mark as applied",
            "tenancy.fake_migration_tenant",
            "Records the pending file(s) below in the ledger as applied WITHOUT running them: "
            "do this only when the schema already has what they create. A run of kind "
            "'fake' is recorded. (migrate_tenants --fake / --baseline)",
        ),
        RecoveryVerb(
            "rollback",
            "Roll back",
            "tenancy.rollback_tenant",
            "Runs the DOWN SQL recorded in the ledger for each migration below, newest first, "
            "in one transaction, and deletes their ledger rows: data in what they created is "
            "lost. (migrate_tenants --rollback)",
            danger=True,
        ),
    )
}


def recovery_verbs_for(request: HttpRequest) -> dict[str, bool]:
    """Which recovery actions this user may take: {'accept_checksum': True, ...}."""
    return {
        v.name.replace("-", "_"): request.user.has_perm(v.permission)
        for v in RECOVERY_VERBS.values()
    }


@dataclass
class RecoveryPlan:
    """What the confirmation page shows: the versions to choose from, what the chosen one
    would do (rows: name and detail), and why it cannot be done (problems)."""

    choices: list[tuple[str, str]]
    version: str | None = None
    rows: list[tuple[str, str]] = field(default_factory=list)
    schemas: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    active: MigrationRun | None = None


def _active_run_on(schema: str | None) -> MigrationRun | None:
    """A queued or running run covering this tenant (any tenant for a fleet-wide action)."""
    mine = {"only": [schema] if schema else None, "public": False, "tenants": True}
    for run in MigrationRun.objects.filter(status__in=ACTIVE_RUN_STATUSES).order_by("pk"):
        if overlaps(run.options or {}, mine):
            return run
    return None


def recovery_plan(
    verb: str, schema: str | None, version: str | None, *, public: bool = False
) -> RecoveryPlan:
    """The confirmation page's content, read through the services (a state report, the
    drift check, the rollback's dry run); raises TenancyError when they cannot answer."""
    from tenancy.services import recovery, runs

    only = [schema] if schema else None
    states = reports.schema_states(include_public=public, only=only)
    state = next((s for s in states if s.schema == (schema or "public")), None)
    if verb == "accept-checksum":
        scope = "public" if public else "tenant"
        drift = sorted({n for s in states if s.scope == scope for n in s.drift})
        choices = [(version_of(n), n) for n in drift]
    elif verb == "fake":
        choices = [(version_of(n), n) for n in (state.pending if state else [])]
    else:
        applied = TenantMigration.objects.filter(tenant_schema=schema).order_by("migration_version")
        choices = [(m.migration_version, m.migration_name) for m in applied]
    plan = RecoveryPlan(choices=choices, version=version)
    if version is None:
        return plan
    if not version.isdigit():
        # A Django step goes back with Django's semantics (to a migration, not from one):
        # `migrate_schemas APP MIGRATION`, not this page's "this one and newer".
        plan.problems.append(
            f"{version!r} is not a migration number (a Django tenant app's migrations go "
            "back with manage.py migrate_schemas APP MIGRATION)."
        )
        return plan
    if verb == "accept-checksum":
        migration, plan.schemas = recovery.drifted(version, public=public, only=only)
        plan.rows = [
            (f"{migration.scope}/{migration.name}", f"new checksum {migration.checksum[:16]}…")
        ]
        if not plan.schemas:
            plan.problems.append(f"{migration.name} shows no drift: nothing to accept.")
    elif verb == "fake":
        names = [
            n
            for n in (state.pending if state else [])
            if version_of(n).isdigit() and int(version_of(n)) <= int(version)
        ]
        plan.rows = [(n, "recorded as applied, not run") for n in names]
        plan.schemas = [schema] if schema and names else []
        if not names:
            plan.problems.append(f"Nothing pending numbered {version} or below: nothing to mark.")
        elif state and state.drift:
            plan.problems.append(
                f"{schema} has drift ({', '.join(state.drift)}): accept or restore it first."
            )
    else:
        report = runs.rollback(version, public=False, tenants=True, only=only, dry_run=True)
        plan.problems += report.refused
        recorded = {
            m.migration_version: (m.migration_name, (m.rollback_sql or "").strip())
            for m in TenantMigration.objects.filter(tenant_schema=schema)
        }
        for result in report.results:
            plan.schemas.append(result.schema)
            for v in result.versions:
                name, down = recorded.get(v, (v, ""))
                plan.rows.append((name, down or "no DOWN recorded"))
            if result.error:
                plan.problems.append(f"{result.schema}: {result.error}: it cannot be rolled back.")
        if not report.results:
            plan.problems.append(
                f"Nothing numbered {version} or above is recorded: nothing to undo."
            )
    plan.active = _active_run_on(schema) if verb != "accept-checksum" else None
    if plan.active is not None:
        plan.problems.append(
            f"Run {plan.active.pk} ({plan.active.get_status_display().lower()}) covers this "
            "tenant: wait for it to end."
        )
    return plan


@dataclass(frozen=True)
class RecoveryOutcome:
    ok: bool
    message: str
    run_id: int | None = None


def recovery_call(
    verb: str, schema: str | None, version: str, actor: str, *, public: bool = False
) -> RecoveryOutcome:
    """The service the command calls for this verb (it writes the audit rows); a refusal
    raises TenancyError, a schema that failed is an outcome that is not ok."""
    from tenancy.services import recovery, runs

    only = [schema] if schema else None
    if verb == "accept-checksum":
        accepted = recovery.accept_checksum(version, public=public, only=only, actor=actor)
        return RecoveryOutcome(
            True, f"Accepted the new checksum of {accepted.name} in {accepted.rows} schema(s)."
        )
    if verb == "fake":
        report = recovery.baseline(version, public=False, tenants=True, only=only, actor=actor)
        done = f"marked {{}} as applied in {schema} without running them"
    else:
        report = runs.rollback(version, public=False, tenants=True, only=only, actor=actor)
        done = f"rolled back {{}} in {schema}"
    if report.refused:
        raise TenancyError("; ".join(report.refused))
    if report.failed:
        errors = "; ".join(f"{r.schema}: {r.error}" for r in report.failed)
        return RecoveryOutcome(False, f"Run {report.run_id} failed: {errors}", report.run_id)
    versions = sorted({v for r in report.results for v in r.versions})
    if not versions:
        return RecoveryOutcome(False, f"Nothing to do for {version} in {schema}: nothing changed.")
    return RecoveryOutcome(
        True, f"Run {report.run_id}: {done.format(', '.join(versions))}.", report.run_id
    )


def drift_offers(request: HttpRequest) -> list[dict[str, Any]]:
    """Each drifted file in the fleet (tenant and public), with how many schemas and the
    fleet-wide Accept checksum page, for a user who may accept checksums."""
    if not request.user.has_perm(RECOVERY_VERBS["accept-checksum"].permission):
        return []
    found: dict[tuple[str, str], list[str]] = {}
    states = [public_state_for(request), *schema_states_for(request).values()]
    for s in states:
        for name in s.drift if s else []:
            found.setdefault((s.scope, name), []).append(s.schema)
    url = admin_url("tenancy_tenant_accept_checksum")
    return [
        {
            "file": f"{scope}/{name}",
            "schemas": schemas,
            "url": f"{url}?version={version_of(name)}" + ("&public=1" if scope == "public" else ""),
        }
        for (scope, name), schemas in sorted(found.items())
    ]


# -- the audit log, readable ---------------------------------------------------------------
_DETAIL_LABELS = {
    "run_id": "run",
    "outcome": "outcome",
    "versions": "versions",
    "applied": "applied",
    "failed": "failed",
    "rolled_back": "rolled back",
    "schemas": "schemas",
    "only": "tenants",
    "public": "public",
    "tenants": "tenants",
    "job_id": "job",
    "reasons": "reasons",
    "error": "error",
    "reason": "reason",
    "migration": "file",
    "checksum": "checksum",
    "version": "version",
    "from": "from",
    "to": "to",
    "mode": "transfer mode",
    "job": "rebalance job",
}


def _empty(value: Any) -> bool:
    """Nothing to say: no value, an empty text, list or mapping."""
    return value is None or (isinstance(value, str | list | dict) and not value)


def _detail_value(value: Any, limit: int = 5) -> str:
    """A JSON value in words: lists and mappings shortened to ``limit`` entries."""
    if _empty(value):
        return "—"
    if value is True or value is False:
        return "yes" if value else "no"
    if isinstance(value, list):
        shown = ", ".join(_detail_value(v, limit) for v in value[:limit])
        return shown + (f" and {len(value) - limit} more" if len(value) > limit else "")
    if isinstance(value, dict):
        items = list(value.items())
        shown = "; ".join(f"{k}: {_detail_value(v, limit)}" for k, v in items[:limit])
        return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
    return str(value)


def _says_nothing(key: str, value: Any) -> bool:
    """An empty value, or a default (public: no, tenants: yes)."""
    return _empty(value) or (key, value) in (("public", False), ("tenants", True))


def audit_fields(details: dict[str, Any] | None) -> list[tuple[str, str, str | None]]:
    """An audit row's details as (label, value, link) fields a person reads: known keys
    first, in a fixed order; the run id links to its run. Empty values (a run's ``failed:
    {}``, an ``error`` of None) and the defaults are left out."""
    details = dict(details or {})
    order = [k for k in _DETAIL_LABELS if k in details] + sorted(
        k for k in details if k not in _DETAIL_LABELS
    )
    fields: list[tuple[str, str, str | None]] = []
    for key in order:
        value = details[key]
        if _says_nothing(key, value):
            continue
        link = None
        if key == "run_id" and isinstance(value, int):
            link = admin_url("tenancy_migrationrun_change", value)
        label = _DETAIL_LABELS.get(key, key.replace("_", " "))
        fields.append((label, _detail_value(value), link))
    return fields


def audit_details_html(details: dict[str, Any] | None, *, block: bool = False) -> str:
    """The fields as HTML: one per line in a list cell, or a table on the row's page."""
    fields = audit_fields(details)
    if not fields:
        return "—"
    parts = [
        format_html('<a href="{}">{}</a>', link, value) if link else format_html("{}", value)
        for _, value, link in fields
    ]
    if block:
        rows = [
            format_html("<tr><th>{}</th><td>{}</td></tr>", label, part)
            for (label, _, _), part in zip(fields, parts, strict=True)
        ]
        return format_html('<table class="tenancy-fields">{}</table>', mark_safe("".join(rows)))  # noqa: S308
    lines = [
        format_html('<span class="tenancy-detail"><b>{}</b>: {}</span>', label, part)
        for (label, _, _), part in zip(fields, parts, strict=True)
    ]
    return mark_safe("<br>".join(lines))  # noqa: S308 (each line built by format_html)


def audit_rows(queryset: Any) -> list[dict[str, Any]]:
    """Audit rows for a page (the tenant's page, its history): time, action, actor, the
    details as fields."""
    return [
        {
            "created_at": a.created_at,
            "when": when(a.created_at),
            "action": a.action,
            "actor": a.actor,
            "details": audit_details_html(a.details),
        }
        for a in queryset
    ]


# -- the audit log, grouped by run ----------------------------------------------------------
# The run-wide rows that write a row per schema beside them (``<action>.schema``).
PARENT_ACTIONS = ("migrate.run", "migrate.fake", "migrate.rollback", "migrate.accept_checksum")
PER_SCHEMA_ROWS = Q(action__endswith=".schema", tenant_schema__isnull=False)


def _run_id(row: AuditLog) -> int | None:
    value = (row.details or {}).get("run_id")
    return value if isinstance(value, int) else None


def is_parent(row: AuditLog) -> bool:
    return row.action in PARENT_ACTIONS and not row.tenant_schema


def schema_rows_of(parent: AuditLog) -> Q:
    """The per-schema rows a run-wide row wrote: those of its run, or for an acceptance
    (no run) the rows its transaction wrote right after it: the same actor, file and
    checksum, for the schemas it lists."""
    from datetime import timedelta

    rows = Q(action=f"{parent.action}.schema", tenant_schema__isnull=False)
    run_id = _run_id(parent)
    if run_id is not None:
        return rows & Q(details__run_id=run_id)
    details = parent.details or {}
    return rows & Q(
        actor=parent.actor,
        tenant_schema__in=list(details.get("schemas") or []),
        details__migration=details.get("migration"),
        details__checksum=details.get("checksum"),
        pk__gt=parent.pk,
        created_at__lt=parent.created_at + timedelta(minutes=1),
    )


def schema_row_counts(rows: list[AuditLog]) -> dict[int, int]:
    """How many per-schema rows each run-wide row of a page has: one query for the runs
    (an acceptance lists its schemas in its details)."""
    from django.db.models import Count
    from django.db.models.fields.json import KT

    parents = [r for r in rows if is_parent(r)]
    counts = {
        r.pk: len((r.details or {}).get("schemas") or []) for r in parents if _run_id(r) is None
    }
    by_run = {(r.action, _run_id(r)): r.pk for r in parents if _run_id(r) is not None}
    if by_run:
        found = (
            AuditLog.objects.filter(
                PER_SCHEMA_ROWS,
                action__in=sorted({f"{action}.schema" for action, _ in by_run}),
                details__run_id__in=sorted({run_id for _, run_id in by_run}),
            )
            .annotate(run=KT("details__run_id"))
            .order_by()
            .values("action", "run")
            .annotate(n=Count("id"))
        )
        for f in found:
            pk = by_run.get((f["action"].removesuffix(".schema"), int(f["run"])))
            if pk is not None:
                counts[pk] = f["n"]
    return counts


def audit_parent_note(parent: AuditLog, shown: int) -> str:
    """Above a run-wide row's per-schema rows: what they belong to."""
    run_id = _run_id(parent)
    return format_html(
        "{} per-schema row{} of {}{} by {}, {}.",
        shown,
        "" if shown == 1 else "s",
        parent.action,
        format_html(" ({})", _run_link(run_id)) if run_id is not None else "",
        parent.actor,
        when(parent.created_at),
    )


# -- placement on a Citus cluster ----------------------------------------------------------
_PLACEMENT_ATTR = "_tenancy_placement"
LOCAL_NODE = "local"  # the node filter's value for schemas not distributed (on the coordinator)


@dataclass(frozen=True)
class Placement:
    """The worker nodes and each distributed tenant schema's node, read once per request
    (``placement.placement()``: one query for the fleet). Off Citus both are empty."""

    workers: list[str]
    nodes: dict[str, str]

    @property
    def citus(self) -> bool:
        return bool(self.workers)


def placement_for(request: HttpRequest) -> Placement:
    cached = getattr(request, _PLACEMENT_ATTR, None)
    if cached is None:
        try:
            workers, nodes = placement.placement()
        except TenancyError:
            workers, nodes = [], {}  # no infrastructure yet: the pages say so already
        cached = Placement(workers, nodes)
        setattr(request, _PLACEMENT_ATTR, cached)
    return cached


def node_label(state: SchemaState | None) -> str:
    """Where a tenant lives on a Citus cluster, in words."""
    if state is None:
        return "unknown"
    if state.node:
        return state.node
    if not state.schema_exists:
        return "— (schema missing)"
    return "coordinator (not distributed: manage.py tenant_distribute)"


def node_counts(request: HttpRequest) -> list[dict[str, Any]]:
    """The fleet overview's nodes: each worker with how many registered tenants it holds,
    then the registered schemas not distributed (if any), from the page's one
    schema_states call and one placement read."""
    where = placement_for(request)
    if not where.citus:
        return []
    states = schema_states_for(request)
    counts = dict.fromkeys(where.workers, 0)
    local = 0
    for s in states.values():
        if s.node:
            counts[s.node] = counts.get(s.node, 0) + 1
        elif s.schema_exists:
            local += 1
    rows = [{"node": node, "tenants": n, "filter": node} for node, n in counts.items()]
    if local:
        rows.append({"node": "not distributed", "tenants": local, "filter": LOCAL_NODE})
    return rows


MOVE_PERMISSION = "tenancy.move_tenant"
REBALANCE_PERMISSION = "tenancy.rebalance_tenant"

TRANSFER_MODE_HELP = {
    "auto": "copies with logical replication while the tenant's writes go on, then switches "
    "over (needs wal_level = logical and a primary key or replica identity on every table)",
    "block_writes": "the tenant's writes wait while its tables copy (works everywhere; "
    "reads go on)",
    "force_logical": "logical replication, refusing to fall back to blocking writes",
}


@dataclass
class MovePlan:
    """The Move to node confirmation page: where the tenant is, where it can go, and why it
    cannot (problems; then there is no "Yes" button)."""

    current: str | None
    targets: list[str]
    problems: list[str] = field(default_factory=list)


def move_plan(request: HttpRequest, schema: str) -> MovePlan:
    where = placement_for(request)
    current = where.nodes.get(schema)
    plan = MovePlan(current, [w for w in where.workers if w != current])
    if not where.citus:
        plan.problems.append(placement.NOT_CITUS)
    elif current is None:
        plan.problems.append(
            f"{schema} is not a distributed schema (no tables yet, or created before Citus): "
            "`manage.py tenant_distribute` makes it one."
        )
    elif not plan.targets:
        plan.problems.append(f"{current} is the only worker node: there is nowhere to move it.")
    return plan


def move_message(move: placement.Move) -> str:
    if not move.moved:
        return f"Nothing moved: {move.schema} is already on {move.target}."
    return (
        f"Moved {move.schema} from {move.source} to {move.target} "
        f"({move.mode}) in {duration(move.elapsed_ms)}."
    )


def rebalance_rows(jobs: list[placement.RebalanceJob]) -> list[dict[str, Any]]:
    """The rebalancer's jobs for the page: state, times, task counts and a percentage."""
    rows = []
    for job in jobs:
        counts = dict((job.details or {}).get("task_state_counts") or {})
        total = sum(int(n) for n in counts.values())
        done = int(counts.get("done", 0))
        kind = {"finished": "ok", "running": "warn", "scheduled": "warn"}.get(job.state, "")
        if job.state in ("failed", "failing", "cancelled", "cancelling"):
            kind = "error"
        rows.append(
            {
                "job_id": job.job_id,
                "state": badge(job.state, kind or "quiet"),
                "active": job.state in placement.REBALANCE_ACTIVE_STATES,
                "started": when(job.started_at),
                "finished": when(job.finished_at),
                "tasks": ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "—",
                "percent": int(100 * done / total) if total else 0,
            }
        )
    return rows
