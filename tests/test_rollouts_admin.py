"""Staged rollouts in the admin (tenancy/admin_rollouts.py): start from the run-all
confirmation, the rollout page, Approve next stage / Resume / Abort each behind its own
permission (403 and nothing changed without it), audited, driven by the worker's tasks."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django_tasks_db.models import DBTaskResult

from tenancy import tasks
from tenancy.engine.errors import EXIT_AWAITING_APPROVAL
from tenancy.models import AuditLog, Rollout
from tenancy.services import rollout_policy, rollouts
from tests.conftest import ledger_versions
from tests.test_admin import client_for, reverse, user
from tests.test_engine_runs import POISONABLE, add, cure, make_tenants, poison

POLICY = [{"name": "canary", "count": 1, "approve": True}, {"name": "rest"}]
VIEW = "tenancy.view_rollout"


@pytest.fixture
def fleet(public_ready, sql_dir: Path, settings) -> list[str]:
    schemas = make_tenants(4)
    add(sql_dir, "004_invoices.sql", POISONABLE)
    settings.TENANCY = {**settings.TENANCY, "ROLLOUTS": {"careful": POLICY}}
    return schemas


def waiting_rollout() -> Rollout:
    stages = rollout_policy.named_policy("careful", {"careful": POLICY}, jobs=1)
    report = rollouts.start(stages, policy="careful", actor="test")
    assert report.exit_code == EXIT_AWAITING_APPROVAL
    return Rollout.objects.get(pk=report.record.id)


def queued(task) -> list[DBTaskResult]:  # noqa: ANN001
    return list(DBTaskResult.objects.filter(task_path=task.module_path))


def run_queued(task) -> None:  # noqa: ANN001
    """What the worker does with the job the admin queued."""
    for job in queued(task):
        task.call(**job.args_kwargs["kwargs"])


def test_start_from_the_run_all_confirmation_then_the_worker_drives_it(fleet):
    starter = user("starter", "tenancy.start_rollout", "tenancy.run_migrations", VIEW)
    c = client_for(starter)
    page = c.get(reverse("admin:tenancy_tenant_run_all")).content.decode()
    assert 'id="rollout-start-form"' in page and '<option value="careful">' in page
    response = c.post(reverse("admin:tenancy_rollout_start"), {"policy": "careful"})
    rollout = Rollout.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:tenancy_rollout_change", args=[rollout.pk])
    assert rollout.state == "running" and rollout.started_by == "admin:starter"
    assert not any("004" in ledger_versions(s) for s in fleet)  # nothing in the request
    run_queued(tasks.proceed_rollout)
    rollout.refresh_from_db()
    assert rollout.state == "awaiting_approval"
    assert ["004" in ledger_versions(s) for s in fleet] == [True, False, False, False]
    # A second rollout is refused, naming the first.
    response = c.post(reverse("admin:tenancy_rollout_start"), {"policy": "careful"}, follow=True)
    assert f"rollout {rollout.pk} (awaiting_approval) is active" in response.content.decode()
    assert Rollout.objects.count() == 1
    overview = client_for(user("looker", "tenancy.view_tenant")).get(reverse("admin:index"))
    overview = overview.content.decode()
    assert f"Rollout {rollout.pk}</a> (careful, awaiting approval, stage 1 of 2)" in overview


def test_approve_from_the_admin_lets_the_worker_finish(fleet):
    rollout = waiting_rollout()
    approver = user("approver", "tenancy.approve_rollout")
    c = client_for(approver)
    page = c.get(reverse("admin:tenancy_rollout_change", args=[rollout.pk])).content.decode()
    assert "Approve next stage" in page and ">Abort<" not in page and ">Resume<" not in page
    assert 'id="stage-1"' in page and 'id="stage-2"' in page
    c.post(reverse("admin:tenancy_rollout_approve", args=[rollout.pk]))
    rollout.refresh_from_db()
    assert rollout.state == "running"
    assert [(a["stage"], a["actor"]) for a in rollout.approvals] == [(0, "admin:approver")]
    run_queued(tasks.proceed_rollout)
    rollout.refresh_from_db()
    assert rollout.state == "completed"
    assert all("004" in ledger_versions(s) for s in fleet)
    assert AuditLog.objects.filter(action="rollout.approve", actor="admin:approver").exists()


def test_resume_and_abort_from_the_admin(fleet, sql_dir: Path):
    poison(fleet[0])
    stages = rollout_policy.ad_hoc_policy(
        canary="1", wave_size="2", max_failures=None, pause_after_canary=False, jobs=1
    )
    record = rollouts.start(stages, policy="ad hoc", actor="test").record
    rollout = Rollout.objects.get(pk=record.id)
    assert rollout.state == "halted"
    operator = user("operator", "tenancy.resume_rollout", "tenancy.abort_rollout")
    c = client_for(operator)
    cure(fleet[0])
    c.post(reverse("admin:tenancy_rollout_resume", args=[rollout.pk]))
    run_queued(tasks.resume_rollout)
    rollout.refresh_from_db()
    assert rollout.state == "completed" and all("004" in ledger_versions(s) for s in fleet)

    # A second rollout, of a new file, waits after its canary; then it is aborted.
    add(sql_dir, "005_more.sql", "-- UP\nCREATE TABLE more_x();")
    gated = rollout_policy.ad_hoc_policy(
        canary="1", wave_size="2", max_failures=None, pause_after_canary=True, jobs=1
    )
    record = rollouts.start(gated, policy="ad hoc", actor="test").record
    assert record.state == "awaiting_approval"
    c.post(reverse("admin:tenancy_rollout_abort", args=[record.id]))
    assert Rollout.objects.get(pk=record.id).state == "aborted"
    assert AuditLog.objects.filter(action="rollout.abort", actor="admin:operator").exists()


@pytest.mark.parametrize(
    ("verb", "needs"),
    [
        ("approve", "tenancy.approve_rollout"),
        ("resume", "tenancy.resume_rollout"),
        ("abort", "tenancy.abort_rollout"),
    ],
)
def test_each_verb_needs_its_own_permission(fleet, verb, needs):
    rollout = waiting_rollout()
    others = [p for p in ("approve", "resume", "abort", "start") if p != verb]
    viewer = user("viewer", VIEW, *(f"tenancy.{p}_rollout" for p in others))
    url = reverse(f"admin:tenancy_rollout_{verb}", args=[rollout.pk])
    assert client_for(viewer).post(url).status_code == 403
    assert client_for(user("holder", needs)).get(url).status_code == 403  # never on a GET
    rollout.refresh_from_db()
    assert rollout.state == "awaiting_approval" and not rollout.approvals
    assert not queued(tasks.proceed_rollout) and not queued(tasks.resume_rollout)


def test_start_needs_its_permission_and_a_known_policy(fleet):
    runner = user("runner", "tenancy.run_migrations")
    url = reverse("admin:tenancy_rollout_start")
    assert client_for(runner).post(url, {"policy": "careful"}).status_code == 403
    page = client_for(runner).get(reverse("admin:tenancy_tenant_run_all")).content.decode()
    assert "rollout-start-form" not in page  # not offered to whoever may not start one
    starter = client_for(user("starter", "tenancy.start_rollout", "tenancy.run_migrations"))
    response = starter.post(url, {"policy": "nope"}, follow=True)
    assert "No rollout policy &#x27;nope&#x27;" in response.content.decode()
    assert not Rollout.objects.exists()


def test_the_progress_json_follows_the_stages(fleet, superuser: User):
    rollout = waiting_rollout()
    data = (
        client_for(superuser)
        .get(reverse("admin:tenancy_rollout_progress", args=[rollout.pk]))
        .json()
    )
    assert data["state"] == "awaiting_approval" and data["active"]
    assert [(s["name"], s["schemas"], s["applied"], s["state"]) for s in data["stages"]] == [
        ("canary", 1, 1, "done"),
        ("rest", 3, 0, "pending"),
    ]
