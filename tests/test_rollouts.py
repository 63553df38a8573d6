"""Staged rollouts (migrate_tenants --rollout/--canary/--wave-size, services/rollouts.py):
a failing canary stops the fleet, the failure threshold halts within its wave, --resume
finishes after the fix (after kill -9 too, with nothing applied twice), the approval gate
holds, --dry-run changes nothing, --undo-on-halt restores the canaries, tags select."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from tenancy.engine.errors import EXIT_AWAITING_APPROVAL, EXIT_HALTED
from tenancy.services import rollout_policy, rollouts
from tenancy.services.fleet import fleet_snapshot
from tenancy.services.tenants import set_tenant_tags
from tenancy.signals import migration_run_alert
from tests.conftest import ledger_versions, manage, query, run_command, tables_in
from tests.test_engine_runs import POISONABLE, add, cure, make_tenants, poison

ROLLOUT_STATE = "SELECT id, state, current_stage FROM public.tenant_rollouts ORDER BY id"


def has_004(schema: str) -> bool:
    recorded = "004" in ledger_versions(schema)
    assert recorded == ("invoices" in tables_in(schema)), f"{schema}: ledger and catalog agree"
    return recorded


def rollout_row() -> tuple:
    rows = query(ROLLOUT_STATE)
    assert rows, "no rollout recorded"
    return rows[-1]


@pytest.fixture
def fleet(public_ready, sql_dir: Path) -> list[str]:
    schemas = make_tenants(9)  # built with 001-003; 004 is then pending everywhere
    add(sql_dir, "004_invoices.sql", POISONABLE)
    return schemas


def test_a_failing_canary_stops_the_rollout_before_the_first_wave(fleet):
    poison(fleet[1])
    heard: list[dict] = []

    def receiver(alert: dict, **_: object) -> None:
        heard.append(alert)

    migration_run_alert.connect(receiver)
    try:
        code, out, err = run_command("migrate_tenants", "--canary", "2", "--wave-size", "3")
    finally:
        migration_run_alert.disconnect(receiver)
    assert code == EXIT_HALTED, (out, err)
    assert "halted" in err and "--resume" in err
    _id, state, stage = rollout_row()
    assert (state, stage) == ("halted", 0)
    assert has_004(fleet[0])  # the first canary got it
    assert not has_004(fleet[1])  # the failed canary is as it was
    assert not any(has_004(s) for s in fleet[2:])  # no wave started
    rollout = [a for a in heard if a["event"] == "rollout_alert"]
    assert [(a["kind"], a["stage"]) for a in rollout] == [("halted", "canary")]
    assert [f["schema"] for f in rollout[0]["failed_schemas"]] == [fleet[1]]


def test_max_failures_halts_within_the_wave_of_the_failure_past_it_then_resume_completes(fleet):
    for schema in (fleet[0], fleet[4], fleet[7]):  # one failure in each stage
        poison(schema)
    code, out, err = run_command(
        "migrate_tenants", "--canary", "3", "--wave-size", "3", "--max-failures", "2"
    )
    assert code == EXIT_HALTED, (out, err)
    rollout_id, state, stage = rollout_row()
    assert (state, stage) == ("halted", 2)  # the third stage: wave 2 (fleet[6:9])
    assert has_004(fleet[6])
    assert not has_004(fleet[8]), "nothing is started after the third failure"
    assert [has_004(s) for s in fleet[:6]] == [False, True, True, True, False, True]

    for schema in (fleet[0], fleet[4], fleet[7]):
        cure(schema)
    code, out, err = run_command("migrate_tenants", "--resume", str(rollout_id))
    assert code == 0, (out, err)
    assert all(has_004(s) for s in fleet)
    assert rollout_row()[1] == "completed"
    actions = [r[0] for r in query("SELECT action FROM public.audit_logs ORDER BY id")]
    assert {"rollout.start", "rollout.halt", "rollout.resume", "rollout.complete"} <= set(actions)


def test_a_second_rollout_is_refused_while_one_is_active(fleet):
    poison(fleet[0])
    assert run_command("migrate_tenants", "--canary", "1", "--wave-size", "4")[0] == 4
    first = rollout_row()[0]
    code, _out, err = run_command("migrate_tenants", "--canary", "1", "--wave-size", "4")
    assert code == 1 and f"rollout {first} (halted) is active" in err
    assert run_command("migrate_tenants", "--abort", str(first))[0] == 0
    assert rollout_row()[1] == "aborted"
    cure(fleet[0])
    assert run_command("migrate_tenants", "--canary", "1", "--wave-size", "4")[0] == 0


def test_kill_9_in_a_wave_then_resume_completes_with_nothing_applied_twice(
    public_ready, sql_dir: Path
):
    schemas = make_tenants(12)
    add(
        sql_dir,
        "004_slow.sql",
        "CREATE TABLE slow_a (id int);\nINSERT INTO slow_a VALUES (1);\n"
        "SELECT pg_sleep(0.15);\nCREATE TABLE slow_b (id int);\n",
    )
    proc = manage("migrate_tenants", "--canary", "2", "--wave-size", "10", migrations_dir=sql_dir)
    deadline = time.monotonic() + 90
    done = 0
    while time.monotonic() < deadline and done < 5:
        done = query(
            "SELECT count(*) FROM public.tenant_migrations WHERE migration_version = '004'"
        )[0][0]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert 5 <= done < 12, done
    rollout_id, state, stage = rollout_row()
    assert (state, stage) == ("running", 1)  # killed in the wave, as the record shows
    resumed = _resume_when_the_dead_process_is_gone(rollout_id, sql_dir)
    assert resumed.returncode == 0, resumed.stderr.read() if resumed.stderr else ""
    assert all("004" in ledger_versions(s) for s in schemas)
    assert rollout_row()[1] == "completed"
    # Applied twice, CREATE TABLE would have failed the resumed run; and each has one row.
    for schema in schemas:
        assert query(f'SELECT count(*) FROM "{schema}".slow_a') == [(1,)], schema
        assert ledger_versions(schema).count("004") == 1


def _resume_when_the_dead_process_is_gone(rollout_id: int, sql_dir: Path):  # noqa: ANN202
    """The killed client's server process ends a moment after the kill; until then
    --resume says the rollout is still driven elsewhere (exit 1)."""
    deadline = time.monotonic() + 30
    while True:
        proc = manage("migrate_tenants", "--resume", str(rollout_id), migrations_dir=sql_dir)
        proc.wait(timeout=180)
        if proc.returncode == 0 or time.monotonic() > deadline:
            return proc
        assert "running in another process" in (proc.stderr.read() if proc.stderr else "")
        time.sleep(0.5)


def test_the_approval_gate_holds_until_approved(fleet):
    code, out, _err = run_command(
        "migrate_tenants", "--canary", "2", "--pause-after-canary", "--wave-size", "50%"
    )
    assert code == EXIT_AWAITING_APPROVAL, out
    rollout_id, state, _stage = rollout_row()
    assert state == "awaiting_approval" and f"--approve {rollout_id}" in out
    assert fleet_snapshot().rollouts["awaiting_approval"] == 1  # /metrics: tenancy_rollouts
    assert [has_004(s) for s in fleet] == [True, True] + [False] * 7
    code, _out, err = run_command("migrate_tenants", "--resume")
    assert code == 1 and "waits for approval" in err
    assert not has_004(fleet[2])
    code, out, err = run_command("migrate_tenants", "--approve", str(rollout_id), "--actor", "ops")
    assert code == 0, (out, err)
    assert all(has_004(s) for s in fleet)
    approvals = query("SELECT approvals FROM public.tenant_rollouts WHERE id = %s", [rollout_id])
    assert [(a["stage"], a["actor"]) for a in approvals[0][0]] == [(0, "ops")]


def test_dry_run_prints_the_stages_and_changes_nothing(fleet):
    poison(fleet[0])
    counted = (
        "SELECT (SELECT count(*) FROM public.tenant_migrations), "
        "(SELECT count(*) FROM public.tenant_rollouts), (SELECT count(*) FROM public.audit_logs)"
    )
    before = query(counted)
    code, out, _err = run_command(
        "migrate_tenants", "--dry-run", "--canary", "2", "--wave-size", "4", "--undo-on-halt"
    )
    assert code == 0
    assert "Stage 1 canary: 2 schema(s), 2 with pending steps" in out
    assert "Stage 2 wave 1: 4 schema(s)" in out and "Stage 3 wave 2: 3 schema(s)" in out
    assert "004_invoices.sql" in out
    assert query(counted) == before
    assert not any(has_004(s) for s in fleet)


def test_undo_on_halt_leaves_the_canaries_as_they_were(fleet):
    poison(fleet[1])
    before = ledger_versions(fleet[0])
    code, out, err = run_command(
        "migrate_tenants", "--canary", "2", "--wave-size", "3", "--undo-on-halt"
    )
    assert code == EXIT_HALTED, (out, err)
    assert "undone 004 in 1 schema(s)" in out
    assert ledger_versions(fleet[0]) == before and not has_004(fleet[0])
    assert not any(has_004(s) for s in fleet)


def test_tags_and_attributes_select_the_stages(fleet, settings):
    tagged = {fleet[2]: ["beta"], fleet[5]: ["beta", "eu"], fleet[7]: ["eu"]}
    for schema, tags in tagged.items():
        set_tenant_tags(schema, replace=tags, actor="test")
    settings.TENANCY = {
        **settings.TENANCY,
        "ROLLOUTS": {
            "by-tag": [
                {"name": "beta", "tags": ["beta"]},
                {"name": "eu", "tags": ["eu"], "approve": True},
                {"name": "newest", "order": "-created", "count": 2},
                {"name": "rest"},
            ]
        },
    }
    stages = rollout_policy.named_policy("by-tag", settings.TENANCY["ROLLOUTS"], jobs=1)
    planned = rollouts.plan(stages).stages
    assert [(s["name"], s["schemas"]) for s in planned] == [
        ("beta", [fleet[2], fleet[5]]),
        ("eu", [fleet[7]]),
        ("newest", [fleet[8], fleet[6]]),
        ("rest", [fleet[0], fleet[1], fleet[3], fleet[4]]),
    ]
    code, out, _err = run_command("migrate_tenants", "--rollout", "by-tag")
    assert code == EXIT_AWAITING_APPROVAL, out
    assert [has_004(s) for s in fleet] == [s in (fleet[2], fleet[5], fleet[7]) for s in fleet]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rollout", "nope"], "No rollout policy 'nope'"),
        (["--rollout", "x", "--canary", "1"], "takes its stages from the settings"),
        (["--resume", "--dry-run"], "changes state"),
        (["--canary", "1", "--public"], "takes no --public"),
        (["--canary", "1", "--rollback", "003"], "cannot be combined"),
        (["--canary", "1", "--fail-fast"], "--fail-fast goes with a migrate run"),
        (["--max-failures", "2"], "need --canary or --wave-size"),
        (["--canary", "1", "--wave-size", "150%"], "not a count"),
        (["--canary", "org_nope"], "Not a registered tenant schema"),
        (["--abort", "12345"], "No rollout 12345"),
    ],
)
def test_bad_or_conflicting_rollout_options_are_refused(fleet, args, message):
    code, out, err = run_command("migrate_tenants", *args)
    assert code == 1 and message in err, (out, err)
    assert query("SELECT count(*) FROM public.tenant_rollouts") == [(0,)]
    assert not any(has_004(s) for s in fleet)


def test_a_stage_check_runs_as_the_tenant_and_halts_when_false(fleet, settings):
    poisoned = fleet[1]
    poison(poisoned)  # its organizations table names 'poison'
    # True only as the tenant's role (not the engine's login) on a tenant without poison.
    cure_first = (
        "SELECT current_user <> session_user "
        "AND NOT EXISTS (SELECT 1 FROM organizations WHERE name = 'poison')"
    )
    settings.TENANCY = {
        **settings.TENANCY,
        "ROLLOUTS": {
            "checked": [
                {"name": "first", "schemas": [fleet[0]], "verify": True, "check": cure_first},
                {"name": "second", "schemas": [poisoned, fleet[2]], "check": cure_first},
                {"name": "rest"},
            ]
        },
    }
    # The file itself must not fail on the poisoned tenant: this one checks nothing.
    (Path(settings.TENANCY["MIGRATIONS_DIR"]) / "tenant" / "004_invoices.sql").write_text(
        "-- UP\nCREATE TABLE invoices (id int);\n-- DOWN\nDROP TABLE invoices;\n"
    )
    code, out, err = run_command("migrate_tenants", "--rollout", "checked")
    assert code == EXIT_HALTED, (out, err)
    assert "verification failed" in err and poisoned in err
    _id, state, stage = rollout_row()
    assert (state, stage) == ("halted", 1)
    record = query("SELECT stages FROM public.tenant_rollouts")[0][0]
    assert record[0]["state"] == "done" and not record[0].get("verify_problems")
    assert record[1]["verify_problems"] == [f"{poisoned}: check {cure_first!r} is not true"]
    assert not any(has_004(s) for s in fleet[3:])  # the rest never started


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([{"tags": ["EU"]}, {}], "Tags are lower case: 'eu'"),
        ([{"count": 1, "percent": 5}, {}], "count and percent exclude each other"),
        ([{"name": "a", "count": 2}, {"name": "b", "tags": ["x"]}], "remove its selection"),
        ([{"repeat": True}, {}], "a repeated stage needs a count or percent"),
        ([{"order": "random"}, {}], "order is one of"),
        ([{"created_before": "soon"}, {}], "is an ISO date"),
        ([{"colour": "red"}, {}], "unknown key(s) colour"),
        ([], "non-empty list of stages"),
    ],
)
def test_a_policy_that_cannot_be_used_is_refused_in_one_line(stages, message):
    with pytest.raises(rollout_policy.PolicyError, match=re.escape(message)):
        rollout_policy.named_policy("p", {"p": stages}, jobs=1)
