"""Rollout policies: the named ones of ``TENANCY["ROLLOUTS"]`` and the ad hoc one that
``migrate_tenants --canary/--wave-size/--max-failures/--pause-after-canary`` describes,
parsed into stages (docs/rollouts.md). Pure: no database.

A policy is a list of stages; each stage is a dict::

    {"name": "canary", "tags": ["beta"], "count": 5, "jobs": 2, "max_failures": 0,
     "verify": True, "check": "SELECT count(*) > 0 FROM organizations", "soak": 60,
     "approve": True}

Selection keys (ANDed): ``schemas``, ``tags`` (all of them), ``status``, ``type`` (a
tenant type, with django-tenants' multi-type tenants), ``created_before`` /
``created_after`` (ISO dates), ``node`` (a Citus worker, ``host:port``), then ``order``
(``created``, ``-created``, ``size``, ``-size``, ``schema``) and ``count`` (N) or
``percent`` (P of the fleet). ``repeat`` repeats a stage (wave 1, wave 2, ...) while it
still selects tenants. The last stage takes every tenant no earlier
stage took, so it has no selection of its own.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from tenancy.engine.errors import TenancyError
from tenancy.engine.names import InvalidName, validate_tags
from tenancy.services import tenant_types

AD_HOC = "ad hoc"
SELECTION_KEYS = {
    "schemas",
    "tags",
    "status",
    "type",
    "created_before",
    "created_after",
    "node",
    "order",
    "count",
    "percent",
}
STAGE_KEYS = SELECTION_KEYS | {
    "name",
    "jobs",
    "max_failures",
    "verify",
    "check",
    "soak",
    "approve",
    "repeat",
}
ORDERS = {"created", "-created", "size", "-size", "schema"}
_AMOUNT = re.compile(r"^\s*(\d+)\s*(%?)\s*$")


class PolicyError(TenancyError):
    """A policy or a rollout option that cannot be used: nothing was started."""


@dataclass(frozen=True)
class Amount:
    """A count (``5``) or a percentage (``10%``)."""

    value: int
    percent: bool = False

    def of(self, total: int) -> int:
        """The count it stands for among ``total`` (a percentage rounds up: 1% of 50 is 1)."""
        if not self.percent:
            return self.value
        return -(-total * self.value // 100)

    def __str__(self) -> str:
        return f"{self.value}{'%' if self.percent else ''}"


def parse_amount(text: Any, what: str) -> Amount:
    match = _AMOUNT.match(str(text))
    if not match or (match[2] and int(match[1]) > 100):
        raise PolicyError(f"{what}: {text!r} is not a count (5) or a percentage (10%).")
    return Amount(int(match[1]), bool(match[2]))


@dataclass
class Stage:
    name: str
    selection: dict[str, Any] = field(default_factory=dict)
    jobs: int = 1
    max_failures: Amount = field(default_factory=lambda: Amount(0))
    verify: bool = False
    check: str | None = None  # a dotted path to a callable, or SQL returning true
    soak: float = 0.0
    approve: bool = False  # wait for a person after this stage
    repeat: bool = False  # again and again (wave 1, wave 2, ...) while tenants are left

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["max_failures"] = str(self.max_failures)
        return data


def named_policy(name: str, policies: dict[str, Any], *, jobs: int) -> list[Stage]:
    """The stages of ``TENANCY["ROLLOUTS"][name]``; ``jobs``: the default per stage."""
    if name not in policies:
        known = ", ".join(sorted(policies)) or "none are declared"
        raise PolicyError(f"No rollout policy {name!r} in TENANCY['ROLLOUTS'] ({known}).")
    raw = policies[name]
    if not isinstance(raw, list | tuple) or not raw:
        raise PolicyError(f"Rollout policy {name!r} must be a non-empty list of stages.")
    return _checked([_stage(i, entry, name, jobs) for i, entry in enumerate(raw)], name)


def ad_hoc_policy(
    *,
    canary: str | None,
    wave_size: str | None,
    max_failures: str | None,
    pause_after_canary: bool,
    jobs: int,
) -> list[Stage]:
    """``--canary N|SCHEMA,...``, ``--wave-size N|P%``, ``--max-failures N|P%``: a canary
    stage, waves of the given size, the last wave taking the rest."""
    if pause_after_canary and not canary:
        raise PolicyError("--pause-after-canary needs --canary.")
    limit = parse_amount(max_failures, "--max-failures") if max_failures else Amount(0)
    stages: list[Stage] = []
    if canary:
        selection = _canary_selection(canary)
        stages.append(Stage("canary", selection, jobs, limit, approve=pause_after_canary))
    if wave_size:
        size = parse_amount(wave_size, "--wave-size")
        if size.value == 0:
            raise PolicyError("--wave-size must be at least 1.")
        key = "percent" if size.percent else "count"
        stages.append(Stage("wave", {key: size.value}, jobs, limit, repeat=True))
    stages.append(Stage("rest", {}, jobs, limit))
    return _checked(stages, AD_HOC)


def _canary_selection(canary: str) -> dict[str, Any]:
    if canary.strip().isdigit():
        count = int(canary)
        if count == 0:
            raise PolicyError("--canary must name at least one tenant (a count of 1 or more).")
        return {"count": count}
    schemas = [s.strip() for s in canary.split(",") if s.strip()]
    if not schemas:
        raise PolicyError("--canary: give a count or a comma-separated list of schemas.")
    return {"schemas": schemas}


def _stage(index: int, entry: Any, policy: str, default_jobs: int) -> Stage:
    where = f"rollout policy {policy!r}, stage {index + 1}"
    if not isinstance(entry, dict):
        raise PolicyError(f"{where}: a stage is a dict (see docs/rollouts.md).")
    unknown = sorted(set(entry) - STAGE_KEYS)
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {', '.join(unknown)}.")
    selection = {k: v for k, v in entry.items() if k in SELECTION_KEYS}
    _check_selection(selection, where)
    try:
        jobs, soak = int(entry.get("jobs", default_jobs)), float(entry.get("soak", 0))
    except (TypeError, ValueError) as exc:
        raise PolicyError(f"{where}: jobs and soak are numbers ({exc}).") from exc
    if jobs < 1 or soak < 0:
        raise PolicyError(f"{where}: jobs must be at least 1 and soak not negative.")
    return Stage(
        name=str(entry.get("name") or f"stage {index + 1}"),
        selection=selection,
        jobs=jobs,
        max_failures=parse_amount(entry.get("max_failures", 0), f"{where}: max_failures"),
        verify=bool(entry.get("verify", False)),
        check=entry.get("check") or None,
        soak=soak,
        approve=bool(entry.get("approve", False)),
        repeat=bool(entry.get("repeat", False)),
    )


def _check_selection(selection: dict[str, Any], where: str) -> None:
    if "count" in selection and "percent" in selection:
        raise PolicyError(f"{where}: count and percent exclude each other.")
    for key in ("count", "percent"):
        if key in selection and (not str(selection[key]).isdigit() or int(selection[key]) < 1):
            raise PolicyError(f"{where}: {key} must be a whole number of at least 1.")
    if "percent" in selection and int(selection["percent"]) > 100:
        raise PolicyError(f"{where}: percent is at most 100.")
    if selection.get("order", "schema") not in ORDERS:
        raise PolicyError(f"{where}: order is one of {', '.join(sorted(ORDERS))}.")
    if "type" in selection and selection["type"] not in tenant_types.names():
        known = ", ".join(tenant_types.names()) or "none (HAS_MULTI_TYPE_TENANTS is off)"
        raise PolicyError(f"{where}: type {selection['type']!r} is not a tenant type: {known}.")
    for key in ("schemas", "tags"):
        value = selection.get(key, [])
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise PolicyError(f"{where}: {key} is a list of names.")
    try:
        validate_tags(selection.get("tags", []))
    except InvalidName as exc:
        raise PolicyError(f"{where}: {exc}") from exc
    for key in ("created_before", "created_after"):
        if key in selection:
            try:
                date.fromisoformat(str(selection[key]))
            except ValueError as exc:
                raise PolicyError(f"{where}: {key} is an ISO date (2026-01-31).") from exc


def _checked(stages: list[Stage], policy: str) -> list[Stage]:
    if any(s.repeat and not ({"count", "percent"} & set(s.selection)) for s in stages):
        raise PolicyError(f"Rollout policy {policy!r}: a repeated stage needs a count or percent.")
    if stages[-1].selection and len(stages) > 1:
        raise PolicyError(
            f"Rollout policy {policy!r}: the last stage takes every tenant the earlier stages "
            f"did not; remove its selection ({', '.join(sorted(stages[-1].selection))})."
        )
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise PolicyError(f"Rollout policy {policy!r}: stage names must differ ({names}).")
    return stages


def stage_settings(stage: dict[str, Any]) -> list[str]:
    """A recorded stage's settings in words (the command's dry run, the admin's page)."""
    parts = [f"jobs {stage.get('jobs', 1)}", f"max_failures {stage.get('max_failures', 0)}"]
    if stage.get("verify"):
        parts.append("verify")
    if stage.get("check"):
        parts.append(f"check {stage['check']!r}")
    if stage.get("soak"):
        parts.append(f"soak {stage['soak']:g} s")
    if stage.get("approve"):
        parts.append("then waits for approval")
    return parts
