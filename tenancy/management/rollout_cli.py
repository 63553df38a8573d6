"""``migrate_tenants``' staged rollouts (docs/rollouts.md): the options, which verb they
make, and the output. The work is services/rollouts.py's."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tenancy.engine.errors import EXIT_AWAITING_APPROVAL, EXIT_FAILED, EXIT_HALTED

# Verbs of migrate_tenants that this module handles.
ROLLOUT_VERBS = ("rollout", "resume", "approve", "abort")
AD_HOC = ("canary", "wave_size", "max_failures", "pause_after_canary")

EPILOG = """
rollouts (docs/rollouts.md): --rollout NAME, or an ad hoc one with --canary, --wave-size,
--max-failures, --pause-after-canary; --resume [ID], --approve ID, --abort ID.
  4  the rollout halted: a stage's failures passed its threshold, or its checks failed
     (resume after the fix: --resume ID)
  5  a stage is done and the next one waits for approval (--approve ID)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("staged rollout (tenants only; docs/rollouts.md)")
    group.add_argument(
        "--rollout",
        metavar="NAME",
        help="Apply the pending tenant steps stage by stage, as TENANCY['ROLLOUTS'][NAME] says.",
    )
    group.add_argument(
        "--canary",
        metavar="N|SCHEMA,...",
        help="An ad hoc rollout: first these tenants (a count, or schema names).",
    )
    group.add_argument(
        "--wave-size",
        metavar="N|P%",
        help="Then waves of N tenants (or P%% of the fleet), the last wave taking the rest.",
    )
    group.add_argument(
        "--max-failures",
        metavar="N|P%",
        help="Halt once more schemas than this have failed since the rollout began (default 0).",
    )
    group.add_argument(
        "--pause-after-canary",
        action="store_true",
        help="Wait for approval (--approve ID) after the canary stage.",
    )
    group.add_argument(
        "--undo-on-halt",
        action="store_true",
        help="When the rollout halts, roll back what it applied (with the recorded DOWN).",
    )
    group.add_argument(
        "--resume",
        nargs="?",
        const="",
        metavar="ID",
        help="Continue a halted or killed rollout (the active one without ID).",
    )
    group.add_argument("--approve", metavar="ID", help="Approve a waiting rollout's next stage.")
    group.add_argument("--abort", metavar="ID", help="End a rollout: nothing more is started.")


def verb_of(o: dict[str, Any]) -> str | None:
    """The rollout verb asked for, or None; conflicting options are a usage error."""
    ad_hoc = [a for a in AD_HOC if o.get(a)]
    chosen = [v for v in ROLLOUT_VERBS if o.get(v) is not None]
    if ad_hoc and "rollout" in chosen:
        leave = _flags(ad_hoc)
        raise _usage(f"--rollout NAME takes its stages from the settings: leave out {leave}.")
    if ad_hoc and not chosen:
        if not (o.get("canary") or o.get("wave_size")):
            raise _usage(f"{_flags(ad_hoc)} need --canary or --wave-size (or --rollout NAME).")
        chosen = ["rollout"]
    if len(chosen) > 1:
        raise _usage(f"{_flags(chosen)} cannot be combined.")
    verb = chosen[0] if chosen else None
    if ad_hoc and verb != "rollout":
        raise _usage(f"{_flags(ad_hoc)} describe a new rollout: not with {_flags([verb or ''])}.")
    if o.get("undo_on_halt") and verb not in ("rollout", "resume", "approve"):
        raise _usage("--undo-on-halt goes with a rollout (--rollout, --canary, --wave-size).")
    if verb is None:
        return None
    if o["public"] or o["tenant"]:
        raise _usage("A rollout covers the tenants: it takes no --public or --tenant.")
    if verb != "rollout" and (o["dry_run"] or o["check"]):
        raise _usage(f"--dry-run shows a new rollout's stages; {_flags([verb])} changes state.")
    return verb


def run(command: BaseCommand, verb: str, o: dict[str, Any], actor: str) -> int:
    from tenancy.services import rollouts

    def on_stage(record: Any, stage: dict[str, Any]) -> None:
        if o["format"] == "text" and o["verbosity"] >= 1:
            command.stdout.write(_stage_line(record, stage))

    if verb == "abort":
        record = rollouts.abort(_id(o["abort"]), actor=actor)
        command.stdout.write(f"Rollout {record.id} aborted.")
        return 0
    if verb == "rollout" and (o["dry_run"] or o["check"]):
        return _show(command, rollouts.plan(_stages(o)), o)
    if verb == "rollout":
        policy = o["rollout"] or "ad hoc"
        report = rollouts.start(
            _stages(o),
            policy=policy,
            actor=actor,
            undo_on_halt=o["undo_on_halt"],
            on_stage=on_stage,
        )
    elif verb == "resume":
        rollout_id = _id(o["resume"]) if o["resume"] else None
        report = rollouts.resume(rollout_id, actor=actor, on_stage=on_stage)
    else:
        report = rollouts.approve(_id(o["approve"]), actor=actor, on_stage=on_stage)
    return _finished(command, report, o)


def _stages(o: dict[str, Any]) -> list[Any]:
    from tenancy import conf
    from tenancy.services import rollout_policy

    if o["rollout"]:
        policies = dict(conf.setting("ROLLOUTS") or {})
        return rollout_policy.named_policy(o["rollout"], policies, jobs=o["jobs"])
    return rollout_policy.ad_hoc_policy(
        canary=o["canary"],
        wave_size=o["wave_size"],
        max_failures=o["max_failures"],
        pause_after_canary=o["pause_after_canary"],
        jobs=o["jobs"],
    )


def _show(command: BaseCommand, report: Any, o: dict[str, Any]) -> int:
    from tenancy.management.output import write_json
    from tenancy.services import rollout_policy

    if o["format"] == "json":
        write_json(command.stdout, report.to_dict())
        return 0
    out = command.stdout
    out.write(f"Rollout (dry run, nothing changed): {len(report.stages)} stage(s)")
    for i, stage in enumerate(report.stages, 1):
        schemas = stage["schemas"]
        shown = ", ".join(schemas[:10]) + (" …" if len(schemas) > 10 else "")
        out.write(
            f"Stage {i} {stage['name']}: {len(schemas)} schema(s), {stage['with_pending']} "
            f"with pending steps; {', '.join(rollout_policy.stage_settings(stage))}"
        )
        out.write(f"  schemas: {shown or '(none)'}")
        out.write(f"  steps: {', '.join(stage['pending_files']) or '(nothing pending)'}")
    return 0


def _stage_line(record: Any, stage: dict[str, Any]) -> str:
    applied, failed = len(stage["applied"]), len(stage["failed"])
    number = f"{record.current_stage + 1}/{len(record.stages)}"
    return (
        f"Stage {number} {stage['name']}: {len(stage['schemas'])} schema(s), "
        f"{applied} migrated, {failed} failed: {stage['state']}"
    )


def _finished(command: BaseCommand, report: Any, o: dict[str, Any]) -> int:
    from tenancy.management.output import write_json

    record = report.record
    if o["format"] == "json":
        write_json(command.stdout, report.to_dict())
        return report.exit_code
    for note in report.notes:
        command.stdout.write(note)
    for schema, error in record.current.get("failed", {}).items():
        command.stderr.write(command.style.ERROR(f"  {schema}: {error}"))
    if report.exit_code == EXIT_HALTED:
        command.stderr.write(
            command.style.ERROR(f"Rollout {record.id} halted: {record.reason}.")
            + f" After the fix: manage.py migrate_tenants --resume {record.id}"
        )
    elif report.exit_code == EXIT_AWAITING_APPROVAL:
        command.stdout.write(
            f"Rollout {record.id} waits: {record.reason}. "
            f"Approve: manage.py migrate_tenants --approve {record.id}"
        )
    elif record.state == "completed":
        command.stdout.write(command.style.SUCCESS(f"Rollout {record.id} completed."))
    else:
        command.stdout.write(f"Rollout {record.id}: {record.state} ({record.reason}).")
    return report.exit_code


def _id(value: str) -> int:
    if not str(value).strip().isdigit():
        raise _usage(f"A rollout id is a number, not {value!r}.")
    return int(value)


def _flags(dests: list[str]) -> str:
    return " and ".join("--" + d.replace("_", "-") for d in dests)


def _usage(message: str) -> CommandError:
    return CommandError(message, returncode=EXIT_FAILED)
