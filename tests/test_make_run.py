"""`make run` (manage.py run_demo): it ends with a working admin unless public cannot
migrate. A tenant that fails is summarised with its run's admin URL and the web server
starts anyway; the login is printed again once the server answers; the worker does not
autoreload; the overview shows a banner for a failed run; the warm pool's default comes
from the settings, in every shell; make stop-db keeps the data."""

from __future__ import annotations

import http.client
import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from io import StringIO
from pathlib import Path
from typing import Any

import psutil
import pytest
from django.contrib.auth.models import User
from django.test import Client

from tenancy.management import serving
from tenancy.management.commands import run_demo
from tenancy.models import MigrationRun
from tenancy.services import runs
from tenancy.services.tenants import create_tenant
from tests.conftest import ROOT, add_posting, connect, ledger_versions, subprocess_env
from tests.test_check import check_embedded, second_server  # noqa: F401 (a fixture)

# A constraint that one tenant's data breaks: the file fails in that schema only.
NO_POISON_SQL = """-- Migration: 004_no_poison_titles.sql
-- Description: job titles may not be 'poison'

-- UP: Apply migration
ALTER TABLE job_postings ADD CONSTRAINT job_postings_no_poison CHECK (title <> 'poison');

-- DOWN: Rollback migration
/*
ALTER TABLE job_postings DROP CONSTRAINT job_postings_no_poison;
*/
"""
BROKEN_PUBLIC_SQL = """-- Migration: 003_broken.sql
-- UP
SELECT 1 / 0;
"""
PASSWORD = "make-run-test-password"
GOOD, POISONED = "tenant_org_makerungood1", "tenant_org_makerunpoison1"


@pytest.fixture
def one_failing(public_ready: None, sql_dir: Path) -> Path:
    """Two tenants and a pending tenant file that fails in one of them."""
    create_tenant("org_makerungood1", "Good", actor="test")
    create_tenant("org_makerunpoison1", "Poisoned", actor="test")
    add_posting(POISONED, "poison")
    (sql_dir / "tenant" / "004_no_poison_titles.sql").write_text(NO_POISON_SQL)
    return sql_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MakeRun:
    """manage.py run_demo in a child process, its output (stdout and stderr) collected."""

    def __init__(self, sql_dir: Path, port: int, *args: str) -> None:
        env = {**subprocess_env(sql_dir), "ADMIN_PASSWORD": PASSWORD, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "run_demo", f"127.0.0.1:{port}", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, found: Callable[[str], Any], timeout: float = 120) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = found(self.text)
            if result:
                return result
            if self.proc.poll() is not None:
                time.sleep(0.5)  # the last lines, still being read
                result = found(self.text)
                assert result, f"exited {self.proc.returncode} first:\n{self.text}"
                return result
            time.sleep(0.2)
        raise AssertionError(f"not seen in {timeout} s:\n{self.text}")

    def kill_all(self) -> None:
        """Whatever is left of it and its children's process groups (a test that failed
        half-way): nothing may keep serving after the test."""
        try:
            family = [psutil.Process(self.proc.pid)]
            family += family[0].children(recursive=True)
        except psutil.NoSuchProcess:
            return
        for p in family:
            with suppress(ProcessLookupError, PermissionError, psutil.Error):
                group = os.getpgid(p.pid)
                if group == os.getpgrp():
                    p.kill()
                else:
                    os.killpg(group, signal.SIGKILL)
        self.proc.wait(timeout=10)


def status_of(port: int, path: str = "/admin/") -> int | None:
    """The HTTP status the server on ``port`` answers ``path`` with (no redirects followed)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


@pytest.mark.once
def test_a_failing_tenant_is_summarised_and_the_admin_serves_anyway(one_failing: Path) -> None:
    port = free_port()
    run = MakeRun(one_failing, port)
    try:
        url = re.escape(f"http://127.0.0.1:{port}/admin/tenancy/migrationrun/") + r"(\d+)/change/"
        run_id = int(run.wait_for(lambda t: re.search(url, t)).group(1))
        assert "Tenants: 1 of 2 schema(s) FAILED in run" in run.text
        assert f"{POISONED}: " in run.text and "job_postings_no_poison" in run.text
        failed = MigrationRun.objects.get(pk=run_id)
        assert (failed.status, failed.failed_schemas) == ("failed", 1)
        assert "004" in ledger_versions(GOOD) and "004" not in ledger_versions(POISONED)

        # The server answers, from the real process, and then the login is printed again.
        run.wait_for(lambda t: t.count(f"password: {PASSWORD}") == 2)
        assert status_of(port) in (200, 302)
        started = run.text.index("Starting development server at")
        assert run.text.rindex(f"password: {PASSWORD}") > started
        assert "The admin answers at" in run.text[started:]
        # The worker runs without its autoreloader: one "Watching" line, the web server's.
        assert run.text.count("Watching for file changes") <= 1

        # Stopped (as by Ctrl-C or a kill), the server goes with it: no orphan answers.
        run.proc.send_signal(signal.SIGTERM)
        run.proc.wait(timeout=30)
        assert status_of(port) is None
    finally:
        run.kill_all()


def test_public_failing_stops_with_the_hints_and_no_server(pg: None, sql_dir: Path) -> None:
    (sql_dir / "public" / "003_broken.sql").write_text(BROKEN_PUBLIC_SQL)
    port = free_port()
    run = MakeRun(sql_dir, port)
    try:
        assert run.proc.wait(timeout=180) == 1, run.text
        run.wait_for(lambda t: "make clean-db && make run" in t, timeout=10)
        assert "division by zero" in run.text
        assert "the public schema did not migrate, so the admin cannot start" in run.text
        assert "Starting development server" not in run.text and PASSWORD not in run.text
        assert status_of(port) is None
    finally:
        run.kill_all()


def test_public_only_lists_the_tenants_pending_work_and_applies_none(one_failing: Path) -> None:
    out, runs_before = StringIO(), MigrationRun.objects.count()
    command = run_demo.Command(stdout=out, stderr=StringIO())
    command._migrate_tenants("http://127.0.0.1:8000", public_only=True)
    pending = "Tenants: 1 file(s) pending (004_no_poison_titles.sql) in 2 of 2 schema(s), NOT"
    assert pending in out.getvalue()
    assert "http://127.0.0.1:8000/admin/tenancy/tenant/run-all/" in out.getvalue()
    assert "004" not in ledger_versions(GOOD) + ledger_versions(POISONED)
    assert MigrationRun.objects.count() == runs_before


def test_the_overview_shows_a_banner_while_the_latest_run_failed(one_failing: Path) -> None:
    admin = Client()
    admin.force_login(User.objects.create_superuser("root", "root@example.com", "pw-test-1"))
    assert 'id="fleet-banner"' not in admin.get("/admin/").content.decode()
    report = runs.migrate(public=False, actor="test")
    html = admin.get("/admin/").content.decode()
    banner = html[html.index('id="fleet-banner"') : html.index("</ul>", html.index("fleet-banner"))]
    assert f"/admin/tenancy/migrationrun/{report.run_id}/change/" in banner
    assert "1 schema failed" in banner and "1 tenant</a> failed" in banner
    # Fixed and run again: the latest run succeeded and nothing is failed, no banner.
    with connect() as conn:
        conn.execute(f"DELETE FROM {POISONED}.job_postings WHERE title = 'poison'")
    assert runs.migrate(public=False, actor="test").exit_code == 0
    assert 'id="fleet-banner"' not in admin.get("/admin/").content.decode()


def test_the_login_waits_until_the_server_answers() -> None:
    port = free_port()
    called = threading.Event()
    running = subprocess.Popen(["sleep", "60"])  # the web server's process, still running
    try:
        serving.when_answering(f"http://127.0.0.1:{port}/admin/", running, called.set)
        assert not called.wait(1.0)  # nothing listens yet: not printed
        server = http.server.HTTPServer(("127.0.0.1", port), http.server.BaseHTTPRequestHandler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            assert called.wait(5.0)  # an error status (501) is an answer: printed
        finally:
            server.shutdown()
            server.server_close()
    finally:
        running.kill()
        running.wait()


def test_the_pool_default_comes_from_the_settings_in_every_shell(public_ready: None) -> None:
    env = subprocess_env()
    env.pop("TENANCY_POOL_SIZE")  # another shell: nothing exported

    def manage(*args: str, **extra: str) -> str:
        done = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=ROOT,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    assert "Pool: 0 ready of 5 (TENANCY_POOL_SIZE)" in manage("tenant_pool")
    assert "Pool: 0 ready of 0" in manage("tenant_pool", TENANCY_POOL_SIZE="0")
    manage("tenant_pool", "--fill", "1")
    assert "claimed from the pool" in manage("tenant_create", "org_poolshell1")


@pytest.mark.once
def test_stop_db_stops_the_embedded_server_and_keeps_its_data(second_server) -> None:  # noqa: F811
    folder, env = second_server
    migrate = [sys.executable, str(ROOT / "manage.py"), "migrate_tenants", "--public", "-v0"]
    subprocess.run(migrate, cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    pid = int((folder / "postmaster.pid").read_text().split()[0])
    stop = [sys.executable, "-m", "employer_portal.embedded_db", "stop"]
    done = subprocess.run(stop, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "its data is kept" in done.stdout, done.stderr
    assert not psutil.pid_exists(pid) and (folder / "PG_VERSION").exists()
    again = subprocess.run(stop, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert "is not running" in again.stdout
    assert check_embedded(env) == 0  # started again: the tenancy tables are still there
