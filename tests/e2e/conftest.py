"""Browser fixtures: a db_worker process, an admin user, Debian's chromium via Playwright."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from tests.conftest import manage

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LONG = 60_000  # ms: generous bounds for a slow CI machine, never a timing assertion


@pytest.fixture
def worker(public_ready: None, sql_dir: Path) -> Iterator[subprocess.Popen]:
    """The background job worker, as `make run` starts it, on the test database."""
    proc = manage(
        "db_worker",
        "--queue-name",
        "*",
        "--interval",
        "0.2",
        "--no-startup-delay",
        "--no-reload",  # one process: terminate() reaches the worker itself
        migrations_dir=sql_dir,
    )
    yield proc
    proc.terminate()
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


@pytest.fixture
def ops_user(pg: None) -> User:
    # Created before the browser starts: Playwright's sync API runs an event loop in this
    # thread, and Django refuses ORM calls while one runs.
    return User.objects.create_superuser("ops", "ops@example.com", "e2e-password-only")


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # No skip: a machine without chromium fails here (`make test` installs it).
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install -y chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def log_in(page: Any, base_url: str, username: str = "ops", password: str = "e2e-password-only"):
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}/admin/")
