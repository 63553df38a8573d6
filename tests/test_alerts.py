"""Alerts: a run that fails, is refused or is interrupted sends one notification (webhook,
the admins' mail, the signal); a webhook that is down or slow neither fails nor stalls it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.core import mail

from tenancy.services import alerts, run_records, runs
from tenancy.services.tenants import create_tenant
from tenancy.signals import migration_run_alert
from tests.conftest import ROOT, connect, ledger_versions, query, run_command, subprocess_env

POISONED = """-- Description: fails where an organization is named 'poison'
-- UP
CREATE TABLE invoices (id serial PRIMARY KEY);
DO $$ BEGIN
  IF EXISTS (SELECT 1 FROM organizations WHERE name = 'poison') THEN
    RAISE EXCEPTION 'poisoned tenant %', current_schema();
  END IF;
END $$;
"""


class Hook:
    """A webhook receiver on a free local port: records each POSTed JSON body, answers
    ``status`` after holding the request ``delay`` seconds (released at close)."""

    def __init__(self, *, delay: float = 0.0, status: int = 204):
        self.bodies: list[dict[str, Any]] = []
        self.release = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                hook.bodies.append(json.loads(self.rfile.read(length)))
                hook.release.wait(delay)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook(settings: Any) -> Iterator[Hook]:
    receiver = Hook()
    settings.TENANCY = {**settings.TENANCY, "ALERT_WEBHOOK_URL": receiver.url}
    yield receiver
    receiver.close()


@pytest.fixture
def quick_alerts(settings: Any) -> None:
    """Short webhook patience: 0.5 s per attempt, one retry (budget 1.5 s)."""
    settings.TENANCY = {**settings.TENANCY, "ALERT_TIMEOUT_S": 0.5, "ALERT_RETRIES": 1}


@pytest.fixture
def signals_seen() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    def receive(sender: Any, alert: dict[str, Any], **kwargs: Any) -> None:
        seen.append(alert)

    migration_run_alert.connect(receive, weak=False)
    yield seen
    migration_run_alert.disconnect(receive)


@pytest.fixture
def fleet(public_ready: None, sql_dir: Path) -> list[str]:
    return [create_tenant(f"org_alert{i}").schema for i in range(3)]


def poison_one(sql_dir: Path, schema: str) -> None:
    (sql_dir / "tenant" / "004_invoices.sql").write_text(POISONED)
    with connect() as conn:
        conn.execute(
            f'INSERT INTO "{schema}".organizations (auth0_org_id, name) '
            "VALUES ('org_poison', 'poison')"
        )


def free_port() -> int:
    """A port nothing listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_failed_run_posts_one_webhook_mails_once_and_signals_once(
    fleet, sql_dir, hook, signals_seen, settings
):
    settings.ADMINS = [("Ops", "ops@example.com")]
    bad = fleet[1]
    poison_one(sql_dir, bad)
    code, out, err = run_command("migrate_tenants", "--tenants")
    assert code == 1, (out, err)
    run_id, started, finished = query(
        "SELECT id, started_at, finished_at FROM tenant_migration_runs ORDER BY id DESC LIMIT 1"
    )[0]
    assert len(hook.bodies) == 1
    alert = hook.bodies[0]
    assert alert["kind"] == "failed" and alert["run_id"] == run_id
    assert alert["verb"] == "migrate" and alert["scope"] == "tenants"
    assert [f["schema"] for f in alert["failed_schemas"]] == [bad]
    assert f"poisoned tenant {bad}" in alert["failed_schemas"][0]["error"]
    assert alert["counts"] == {"total": 3, "done": 3, "failed": 1}
    assert alert["started_at"] == started.isoformat()
    assert alert["finished_at"] == finished.isoformat()
    assert alert["duration_s"] == (finished - started).total_seconds()
    # The signal carries the same alert; the admins get one mail naming the schema.
    assert signals_seen == [alert]
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ops@example.com"]
    assert f"Migration run {run_id} failed: 1 of 3" in mail.outbox[0].subject
    assert f"poisoned tenant {bad}" in mail.outbox[0].body


def test_successful_run_sends_nothing(fleet, sql_dir, hook, signals_seen, settings):
    settings.ADMINS = [("Ops", "ops@example.com")]
    (sql_dir / "tenant" / "004_notes.sql").write_text("CREATE TABLE notes (id int);\n")
    assert run_command("migrate_tenants")[0] == 0
    assert all(ledger_versions(s)[-1] == "004" for s in fleet)
    assert hook.bodies == [] and signals_seen == [] and mail.outbox == []


def test_webhook_down_does_not_fail_the_run(fleet, sql_dir, settings, quick_alerts, caplog):
    url = f"http://127.0.0.1:{free_port()}/alerts"
    settings.TENANCY = {**settings.TENANCY, "ALERT_WEBHOOK_URL": url}
    # The mail server is down too.
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()

    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("a receiver with a bug")

    migration_run_alert.connect(broken, weak=False)
    try:
        poison_one(sql_dir, fleet[0])
        started = time.monotonic()
        code, out, err = run_command("migrate_tenants", "--tenants")
        elapsed = time.monotonic() - started
    finally:
        migration_run_alert.disconnect(broken)
    assert code == 1  # as without alerts: the failed schema's exit code, not an alert's
    assert ledger_versions(fleet[0])[-1] == "003"
    assert all(ledger_versions(s)[-1] == "004" for s in fleet[1:])
    assert elapsed < 15
    assert "a receiver with a bug" in caplog.text
    assert f"webhook {url.removesuffix('alerts')}… failed" in caplog.text
    assert "refused" in caplog.text.lower() and "/alerts" not in caplog.text
    assert "cannot mail the admins" in caplog.text


def test_slow_webhook_does_not_stall_the_run(fleet, sql_dir, settings, quick_alerts, caplog):
    slow = Hook(delay=30)
    settings.TENANCY = {**settings.TENANCY, "ALERT_WEBHOOK_URL": slow.url}
    try:
        poison_one(sql_dir, fleet[2])
        started = time.monotonic()
        code, out, err = run_command("migrate_tenants", "--tenants")
        elapsed = time.monotonic() - started
    finally:
        slow.close()
    assert code == 1, (out, err)
    assert ledger_versions(fleet[2])[-1] == "003"
    # Two attempts of 0.5 s and a pause of 0.5 s, then the run goes on: far from 30 s.
    assert len(slow.bodies) == 2
    assert elapsed < 15
    assert "timed out" in caplog.text


def test_drift_refusal_alerts_once_with_the_reason(fleet, sql_dir, hook, signals_seen):
    notes = sql_dir / "tenant" / "004_notes.sql"
    notes.write_text("CREATE TABLE notes (id int);\n")
    assert run_command("migrate_tenants")[0] == 0
    notes.write_text("CREATE TABLE notes (id bigint);\n")
    code, _, err = run_command("migrate_tenants")
    assert code == 3, err
    assert len(hook.bodies) == 1 and signals_seen == hook.bodies
    alert = hook.bodies[0]
    assert alert["kind"] == "refused" and alert["run_id"] is None  # refused before starting
    assert "drift: tenant/004_notes.sql" in alert["error"]
    # A dry run or a check of the same fleet is not a run: no alert.
    assert run_command("migrate_tenants", "--dry-run")[0] == 3
    assert len(hook.bodies) == 1


def test_a_run_closed_as_dead_alerts_once(fleet, hook, signals_seen):
    with connect() as conn:
        run_id = conn.execute(
            "INSERT INTO tenant_migration_runs (kind, actor, status, heartbeat_at, options) "
            "VALUES ('migrate', 'worker', 'running', now() - interval '5 minutes', "
            '\'{"public": false, "tenants": true, "only": null}\') RETURNING id'
        ).fetchone()[0]
    assert run_records.close_dead_runs_now() == 1
    assert run_records.close_dead_runs_now() == 0  # closed once, alerted once
    assert [(a["run_id"], a["kind"]) for a in hook.bodies] == [(run_id, "interrupted")]
    assert "stopped before it finished" in hook.bodies[0]["error"]
    assert signals_seen == hook.bodies


def test_a_run_stopped_by_sigterm_alerts_once_as_interrupted(fleet, sql_dir, hook):
    (sql_dir / "tenant" / "004_slow.sql").write_text(
        "-- UP\nCREATE TABLE slow (id int);\nSELECT pg_sleep(0.3);\n"
    )
    env = {**subprocess_env(sql_dir), "TENANCY_ALERT_WEBHOOK_URL": hook.url}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "migrate_tenants", "--tenants"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not any("004" in ledger_versions(s) for s in fleet):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, (out, err)
    run_id = query("SELECT id FROM tenant_migration_runs ORDER BY id DESC LIMIT 1")[0][0]
    assert [(a["run_id"], a["kind"]) for a in hook.bodies] == [(run_id, "interrupted")]
    assert "signal 15" in hook.bodies[0]["error"]


def test_post_retries_a_server_error_then_gives_up(caplog):
    failing = Hook(status=503)
    try:
        assert not alerts.post(failing.url, b"{}", timeout=1.0, retries=2)
    finally:
        failing.close()
    assert len(failing.bodies) == 3  # one attempt and two retries
    assert "HTTP 503" in caplog.text
    refused = Hook(status=400)
    try:
        assert not alerts.post(refused.url, b"{}", timeout=1.0, retries=2)
    finally:
        refused.close()
    assert len(refused.bodies) == 1  # the receiver refuses the body: no retry


def test_an_admin_run_refused_or_failing_to_start_alerts_once_with_its_id(
    fleet, sql_dir, hook, signals_seen
):
    notes = sql_dir / "tenant" / "004_notes.sql"
    notes.write_text("CREATE TABLE notes (id int);\n")
    assert run_command("migrate_tenants")[0] == 0
    notes.write_text("CREATE TABLE notes (id bigint);\n")
    queued = "INSERT INTO tenant_migration_runs (actor, status) VALUES ('admin:x', 'queued') "
    refused = query(queued + "RETURNING id")[0][0]
    report = runs.migrate(public=False, tenants=True, actor="admin:x", run_id=refused)
    assert report.exit_code == 3
    assert [(a["run_id"], a["kind"]) for a in hook.bodies] == [(refused, "refused")]
    assert "drift: tenant/004_notes.sql" in hook.bodies[0]["error"]
    # A queued run that could not start at all (the worker's fallback) alerts as failed.
    broken = query(queued + "RETURNING id")[0][0]
    run_records.fail_queued_run(broken, "admin:x", "RunError: a tenant was dropped")
    run_records.fail_queued_run(broken, "admin:x", "again")  # already closed: no alert
    assert [(a["run_id"], a["kind"]) for a in hook.bodies[1:]] == [(broken, "failed")]
    assert hook.bodies[1]["error"] == "RunError: a tenant was dropped"
    assert signals_seen == hook.bodies


@pytest.mark.parametrize(
    "url",
    [
        "http://ops:pa55word@127.0.0.1:{port}/services/T0/B1/hooksecret",  # down
        "https://hooks.invalid/services/T0/B1/hooksecret",  # no such host
        "http://127.0.0.1:{port}/services/T0/B1/hooksecret\n",  # not a valid URL
        "hooks.example/services/T0/B1/hooksecret",  # no scheme
    ],
)
def test_the_webhook_url_is_never_logged(url, caplog):
    """A webhook's URL carries its secret (Slack's token is its path): a warning names the
    host, never the path or a password."""
    url = url.format(port=free_port())
    assert not alerts.post(url, b"{}", timeout=0.5, retries=0)
    assert "tenancy alert" in caplog.text
    assert "hooksecret" not in caplog.text and "pa55word" not in caplog.text, caplog.text


def test_error_reports_hide_the_webhook_url(settings):
    """Django's 500 mails to ADMINS and its debug page list the settings."""
    from django.views.debug import get_default_exception_reporter_filter

    secret = "https://hooks.example/services/T0/B1/hooksecret"
    settings.TENANCY = {**settings.TENANCY, "ALERT_WEBHOOK_URL": secret, "METRICS_TOKEN": "t0k"}
    shown = get_default_exception_reporter_filter().get_safe_settings()["TENANCY"]
    assert shown["ALERT_WEBHOOK_URL"] != secret and shown["METRICS_TOKEN"] != "t0k"
    assert shown["ALERT_TIMEOUT_S"] == settings.TENANCY["ALERT_TIMEOUT_S"]
