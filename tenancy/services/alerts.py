"""Alerts: a run that failed, was refused or was interrupted sends one notification.

Three channels, each optional, each unable to fail the run: the ``migration_run_alert``
signal (in-process hooks), Django's ``mail_admins`` (when ``ADMINS`` is set) and a JSON
POST to ``TENANCY_ALERT_WEBHOOK_URL``. ``run_records`` calls ``runs_closed`` right after it
records a run's final outcome, which is the one place every ending passes through (finished,
refused, interrupted, closed as dead, failed to start); a command-line run refused before it
started has no run row, and ``runs`` calls ``unrecorded_refusal`` for it instead.

Sending takes bounded time: the webhook gets ``ALERT_TIMEOUT_S`` per attempt, and
``ALERT_RETRIES`` retries, in a thread the run waits for no longer than that budget; every
error is logged, never raised. Successful runs send nothing.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import psycopg
from django.conf import settings
from django.views.debug import SafeExceptionReporterFilter

from tenancy import conf
from tenancy.signals import migration_run_alert

logger = logging.getLogger(__name__)

ALERT_KINDS = ("failed", "refused", "interrupted")
MAX_SCHEMAS = 100  # failed schemas listed in one alert (the rest are counted)
MAX_ERROR_CHARS = 2000  # of each error: a body a chat webhook still accepts
BACKOFF_S = 0.5  # pause between webhook attempts
RETRY_STATUSES = {408, 429}  # besides 5xx: the receiver asks to be tried again


# -- entry points ------------------------------------------------------------------------
def runs_closed(conn: psycopg.Connection, run_ids: Iterable[int]) -> None:
    """Alert on each of ``run_ids`` (just recorded as ended, committed) whose outcome calls
    for it. Never raises: a broken alert must not turn a run's outcome into another."""
    ids = [int(i) for i in run_ids]
    if not ids or not _anyone_listening():
        return  # no query at all when nobody would hear
    try:
        alerts = recorded_alerts(conn, ids)
    except Exception as exc:  # the outcome is recorded; only the alert is lost
        logger.warning("tenancy alert: cannot read runs %s: %s", ids, exc)
        return
    for alert in alerts:
        send(alert)


def unrecorded_refusal(*, actor: str, reasons: list[str], options: dict[str, Any]) -> None:
    """A run refused before it started (drift, a refused file) from the command line: it
    has no run row, so its alert has no run id and is built from what the run knew."""
    if not _anyone_listening():
        return
    now = datetime.now().astimezone().isoformat()
    send(
        _alert(
            run_id=None,
            kind="refused",
            verb="fake" if options.get("fake") else "migrate",
            options=options,
            actor=actor,
            error="\n".join(reasons),
            failed=[],
            counts={"total": 0, "done": 0, "failed": 0},
            started_at=now,
            finished_at=now,
        )
    )


def rollout_changed(rollout: dict[str, Any], *, kind: str) -> None:
    """A rollout halted, waits for approval, or completed (services/rollouts.py): one alert
    through the same channels, with the stage it concerns and its failed schemas."""
    if not _anyone_listening():
        return
    stages = rollout["stages"]
    stage = stages[min(rollout["current_stage"], len(stages) - 1)] if stages else {}
    failed = [
        {"schema": schema, "error": _clip(error)}
        for schema, error in list(stage.get("failed", {}).items())[:MAX_SCHEMAS]
    ]
    send(
        {
            "event": "rollout_alert",
            "kind": kind,
            "run_id": None,
            "rollout_id": rollout["id"],
            "policy": rollout["policy"],
            "stage": stage.get("name"),
            "stage_number": rollout["current_stage"] + 1,
            "stages": len(stages),
            "scope": rollout["scope"],
            "actor": rollout["started_by"],
            "error": _clip(rollout.get("reason")),
            "failed_schemas": failed,
            "host": socket.gethostname(),
        }
    )


def send(alert: dict[str, Any]) -> None:
    """The signal, the admins' mail and the webhook, each on its own: one failing does not
    keep the others from being sent."""
    for channel in (_signal, _mail, _webhook):
        try:
            channel(alert)
        except Exception as exc:
            logger.warning(
                "tenancy alert of run %s: %s: %s", alert["run_id"], channel.__name__, exc
            )


# -- what an alert says ------------------------------------------------------------------
def recorded_alerts(conn: psycopg.Connection, run_ids: list[int]) -> list[dict[str, Any]]:
    """The alerts of those runs that ended badly, read from the run tables (two queries)."""
    runs = conn.execute(
        "SELECT id, kind, status, actor, options, total_schemas, done_schemas, failed_schemas, "
        "error, started_at, finished_at FROM public.tenant_migration_runs "
        "WHERE id = ANY(%s) AND status = ANY(%s) ORDER BY id",
        [run_ids, list(ALERT_KINDS)],
    ).fetchall()
    if not runs:
        return []
    failed: dict[int, list[dict[str, str]]] = {}
    for run_id, schema, error in conn.execute(
        "SELECT run_id, tenant_schema, error FROM (SELECT run_id, tenant_schema, error, "
        "row_number() OVER (PARTITION BY run_id ORDER BY id) AS n "
        "FROM public.tenant_migration_run_results WHERE run_id = ANY(%s) AND status = 'failed'"
        ") r WHERE n <= %s ORDER BY run_id, n",
        [[r[0] for r in runs], MAX_SCHEMAS],
    ).fetchall():
        failed.setdefault(run_id, []).append({"schema": schema, "error": _clip(error)})
    return [
        _alert(
            run_id=run_id,
            kind=status,
            verb=kind,
            options=options or {},
            actor=actor,
            error=error,
            failed=failed.get(run_id, []),
            counts={"total": total, "done": done, "failed": n_failed},
            started_at=_iso(started),
            finished_at=_iso(finished),
            duration_s=(finished - started).total_seconds() if started and finished else None,
        )
        for (
            run_id,
            kind,
            status,
            actor,
            options,
            total,
            done,
            n_failed,
            error,
            started,
            finished,
        ) in runs  # fmt: skip
    ]


def _alert(
    *,
    run_id: int | None,
    kind: str,
    verb: str,
    options: dict[str, Any],
    actor: str,
    error: str | None,
    failed: list[dict[str, str]],
    counts: dict[str, int],
    started_at: str | None,
    finished_at: str | None,
    duration_s: float | None = 0.0,
) -> dict[str, Any]:
    return {
        "event": "migration_run_alert",
        "kind": kind,
        "run_id": run_id,
        "verb": verb,
        "scope": scope_of(verb, options),
        "options": options,
        "actor": actor,
        "error": _clip(error),
        "failed_schemas": failed,
        "failed_schemas_not_listed": max(0, counts["failed"] - len(failed)),
        "counts": counts,
        "started_at": started_at,
        "finished_at": finished_at,
        "duration_s": duration_s,
        "host": socket.gethostname(),
    }


def scope_of(verb: str, options: dict[str, Any]) -> str:
    """What the run covered, in words ('public and tenants', 'tenants: a, b', …)."""
    only = options.get("only")
    parts = [p for p in ("public", "tenants") if options.get(p, p == "tenants")]
    text = f"tenants: {', '.join(only)}" if only else " and ".join(parts) or "nothing"
    if verb == "rollback":
        return f"rollback to before {options.get('version')} of {text}"
    return text


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_ERROR_CHARS:
        return text
    return text[:MAX_ERROR_CHARS] + "…"


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when else None


def subject_of(alert: dict[str, Any]) -> str:
    if alert.get("event") == "rollout_alert":
        where = f"stage {alert['stage_number']} of {alert['stages']} ({alert['stage']})"
        return f"Rollout {alert['rollout_id']} {alert['kind'].replace('_', ' ')}: {where}"
    run = f"run {alert['run_id']}" if alert["run_id"] is not None else "a run"
    counts = alert["counts"]
    if alert["kind"] == "failed":
        return f"Migration {run} failed: {counts['failed']} of {counts['total']} schema(s)"
    return f"Migration {run} {alert['kind']} ({alert['scope']})"


# -- channels ----------------------------------------------------------------------------
def _anyone_listening() -> bool:
    return bool(
        conf.setting("ALERT_WEBHOOK_URL") or settings.ADMINS or migration_run_alert.has_listeners()
    )


def _signal(alert: dict[str, Any]) -> None:
    for receiver, result in migration_run_alert.send_robust(sender="tenancy", alert=alert):
        if isinstance(result, Exception):
            logger.warning("tenancy alert: receiver %r raised %r", receiver, result)


def _mail(alert: dict[str, Any]) -> None:
    if not settings.ADMINS:
        return
    from django.core.mail import get_connection, mail_admins

    # A mail server that does not answer must not hold the run up either.
    connection = get_connection(timeout=float(conf.setting("ALERT_TIMEOUT_S")))
    body = (
        f"{subject_of(alert)}.\n\n"
        + "".join(f"{f['schema']}: {f['error']}\n" for f in alert["failed_schemas"])
        + (f"\n{alert['error']}\n" if alert["error"] else "")
        + f"\n{json.dumps(alert, indent=2, default=str)}\n"
    )
    try:
        mail_admins(subject_of(alert), body, connection=connection)
    except (OSError, ValueError) as exc:  # smtplib's errors are OSErrors
        logger.warning("tenancy alert: cannot mail the admins: %s", exc)


def _webhook(alert: dict[str, Any]) -> None:
    """POST in a thread the caller waits for at most the whole retry budget: urllib's
    timeout bounds each socket operation, not a response that trickles in slowly."""
    url = conf.setting("ALERT_WEBHOOK_URL")
    if not url:
        return
    timeout = float(conf.setting("ALERT_TIMEOUT_S"))
    retries = max(0, int(conf.setting("ALERT_RETRIES")))
    budget = timeout * (retries + 1) + BACKOFF_S * retries
    body = json.dumps(alert, default=str).encode()
    thread = threading.Thread(
        target=post, args=(url, body, timeout, retries), name="tenancy-alert", daemon=True
    )
    thread.start()
    thread.join(budget + 0.5)
    if thread.is_alive():
        logger.warning(
            "tenancy alert: webhook %s still busy after %.1f s; not waiting", shown(url), budget
        )


def shown(url: str) -> str:
    """The webhook's URL as logs may show it: scheme, host and port. A webhook URL is a
    secret (Slack's and most chat tools' carry their token in the path), and logs travel
    further than settings."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an unreadable URL)"
    if parts.scheme.lower() not in ("http", "https") or not host:
        return "(not an http(s) URL)"
    return f"{parts.scheme.lower()}://{host}{port}/…"


def _without(url: str, text: str) -> str:
    """``text`` (an exception's message) without the URL or its path in it."""
    path = urllib.parse.urlsplit(url).path if "://" in url else ""
    text = text.replace(url, shown(url))
    return text.replace(path, "/…") if len(path) > 1 else text


class ExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's filter of error reports (the debug page, the 500 mails to ADMINS), which
    also hides settings named like a webhook (TENANCY['ALERT_WEBHOOK_URL'])."""

    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|WEBHOOK", flags=re.IGNORECASE
    )


def post(url: str, body: bytes, timeout: float, retries: int) -> bool:
    """POST ``body`` (JSON), retrying on connection errors, timeouts, 5xx, 408 and 429.
    Returns whether the receiver accepted it; logs, never raises."""
    if not url.lower().startswith(("http://", "https://")):
        logger.warning("tenancy alert: TENANCY_ALERT_WEBHOOK_URL is not an http(s) URL")
        return False
    problem = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(BACKOFF_S)
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "employer-portal-tenancy"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
            return True
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}"
            if exc.code < 500 and exc.code not in RETRY_STATUSES:
                break  # the receiver refuses this body: trying again changes nothing
        except (OSError, ValueError) as exc:  # refused, unreachable, timed out, bad URL
            problem = _without(url, str(getattr(exc, "reason", None) or exc))
    logger.warning("tenancy alert: webhook %s failed (%s)", shown(url), problem)
    return False
