"""Production serving: `check --deploy` clean with DEBUG off, gunicorn serving the admin
and its static files (WhiteNoise), and repeated wrong admin passwords locked out (axes)."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.conftest import ROOT, subprocess_env
from tests.pgbouncer import free_port

# Server-independent and slow: .ci/run runs these on its first server only.
pytestmark = pytest.mark.once

# The production environment docs/deployment.md documents (beside the database URL).
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "x9-production-secret-for-tests-only-4f8a0c7d1e2b3a5968776655443322",
    "ALLOWED_HOSTS": "localhost,.localhost,portal.example",
}


def production_env(tmp_path: Path) -> dict[str, str]:
    return {**subprocess_env(), **PRODUCTION, "STATIC_ROOT": str(tmp_path / "static")}


def manage_py(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_debug_off(tmp_path):
    out = manage_py(production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues" in out.stdout


def fetch(url: str) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers={"X-Forwarded-Proto": "https"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def test_gunicorn_serves_the_admin_and_its_static_files(public_ready, tmp_path):
    env = production_env(tmp_path)
    collected = manage_py(env, "collectstatic", "--noinput")
    assert collected.returncode == 0, collected.stderr
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "employer_portal.wsgi", "-b", f"127.0.0.1:{port}",
         "--workers", "1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        base = f"http://localhost:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _, body = fetch(f"{base}/admin/login/")
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.2)
        assert status == 200 and b"csrfmiddlewaretoken" in body
        status, content_type, css = fetch(f"{base}/static/admin/css/base.css")
        assert status == 200 and content_type.startswith("text/css") and len(css) > 1000
        # Plain HTTP (no proxy header) is redirected to HTTPS.
        plain = urllib.request.Request(f"{base}/admin/login/")
        opener = urllib.request.build_opener(NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener.open(plain, timeout=10)
        assert redirect.value.code == 301
        assert redirect.value.headers["Location"].startswith("https://")
    finally:
        server.terminate()
        server.wait(timeout=10)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def test_repeated_wrong_passwords_lock_the_login_out(public_ready, settings):
    User.objects.create_superuser("ops", "ops@example.com", "the-right-password-42")
    client = Client(REMOTE_ADDR="203.0.113.9")
    form = {"username": "ops", "next": "/admin/"}
    limit = settings.AXES_FAILURE_LIMIT
    for attempt in range(1, limit + 1):
        response = client.post(
            "/admin/login/", {**form, "password": "wrong"}, HTTP_HOST="localhost"
        )
        # The form again with its error, until the limit's failure locks the login out.
        assert response.status_code == (429 if attempt == limit else 200)
    locked = client.post(
        "/admin/login/", {**form, "password": "the-right-password-42"}, HTTP_HOST="localhost"
    )
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    # Another address is not locked out by this one's failures.
    other = Client(REMOTE_ADDR="198.51.100.7")
    ok = other.post(
        "/admin/login/", {**form, "password": "the-right-password-42"}, HTTP_HOST="localhost"
    )
    assert ok.status_code == 302
