"""Production serving: `check --deploy` clean with DEBUG off, gunicorn serving the admin
and its static files (WhiteNoise), and repeated wrong admin passwords locked out (axes)."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
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


def wrong_passwords(settings: Any, **client: str) -> Client:
    """The failure limit's wrong passwords for 'ops'; each attempt after the first may
    claim another address in its own X-Forwarded-For entry (left of the proxy's)."""
    attacker = Client(**client)
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        forwarded = client.get("HTTP_X_FORWARDED_FOR", "")
        spoofed = f"10.9.9.{attempt}, {forwarded}" if forwarded else f"10.9.9.{attempt}"
        attacker.post(
            "/admin/login/",
            {"username": "ops", "password": "wrong", "next": "/admin/"},
            HTTP_HOST="localhost",
            HTTP_X_FORWARDED_FOR=spoofed,
        )
    return attacker


def right_password(**client: str) -> int:
    response = Client(**client).post(
        "/admin/login/",
        {"username": "ops", "password": "the-right-password-42", "next": "/admin/"},
        HTTP_HOST="localhost",
    )
    return response.status_code


def test_behind_a_proxy_the_lockout_is_per_client_and_not_spoofable(public_ready, settings):
    """Behind the TLS proxy every request comes from its address: the client is the entry
    the proxy appended to X-Forwarded-For. An attacker rotating the entries it sends itself
    stays locked out, and does not lock out the admin logging in from elsewhere."""
    settings.TRUSTED_PROXIES = 1
    User.objects.create_superuser("ops", "ops@example.com", "the-right-password-42")
    proxy = "10.0.0.2"
    wrong_passwords(settings, REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert right_password(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="10.1.1.1, 203.0.113.9") == 429
    assert right_password(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="198.51.100.7") == 302


def test_without_a_proxy_x_forwarded_for_is_not_read(public_ready, settings):
    settings.TRUSTED_PROXIES = 0
    User.objects.create_superuser("ops", "ops@example.com", "the-right-password-42")
    wrong_passwords(settings, REMOTE_ADDR="203.0.113.9")  # a new X-Forwarded-For each time
    assert right_password(REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="10.2.2.2") == 429
    assert right_password(REMOTE_ADDR="198.51.100.7") == 302


def setting_in(env: dict[str, str], expression: str) -> str:
    shown = manage_py(
        env, "shell", "-c", f"from django.conf import settings as s; print('=', {expression})"
    )
    return next(line for line in shown.stdout.splitlines() if line.startswith("= "))[2:]


def test_production_trusts_one_proxy_by_default(tmp_path):
    env = production_env(tmp_path)
    assert setting_in(env, "s.TRUSTED_PROXIES, s.SECURE_PROXY_SSL_HEADER") == (
        "1 ('HTTP_X_FORWARDED_PROTO', 'https')"
    )
    env["TRUST_X_FORWARDED_PROTO"] = "false"
    assert setting_in(env, "s.TRUSTED_PROXIES") == "0"
    env["TRUSTED_PROXIES"] = "2"
    assert setting_in(env, "s.TRUSTED_PROXIES") == "2"


def test_an_operator_lifts_a_lockout_with_axes_reset(public_ready, settings):
    User.objects.create_superuser("ops", "ops@example.com", "the-right-password-42")
    wrong_passwords(settings, REMOTE_ADDR="203.0.113.9")
    assert right_password(REMOTE_ADDR="203.0.113.9") == 429
    call_command("axes_reset_username", "ops", stdout=StringIO())
    assert right_password(REMOTE_ADDR="203.0.113.9") == 302
