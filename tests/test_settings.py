"""Configuration from the environment: which database, and no silent production defaults."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

PRINT_DB = (
    "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', "
    "'employer_portal.settings'); from django.conf import settings; "
    "d = settings.DATABASES['default']; print(d['HOST'], d['PORT'], d['NAME'], d['ENGINE'])"
)


def run(code: str, **env: str) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "XDG_RUNTIME_DIR": "/tmp"}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_employer_portal_db_url_wins_over_database_url():
    out = run(
        PRINT_DB,
        EMPLOYER_PORTAL_DB_URL="postgresql://u:p@dbhost:6543/portal",
        DATABASE_URL="postgresql://u:p@other:5432/other",
    )
    assert out.stdout.split() == [
        "dbhost",
        "6543",
        "portal",
        "tenancy.postgresql_backend",
    ], out.stderr
    out = run(PRINT_DB, DATABASE_URL="postgresql://u:p@other:5432/other")
    assert out.stdout.split()[:3] == ["other", "5432", "other"], out.stderr


def test_production_requires_secret_key_and_allowed_hosts():
    out = run(PRINT_DB, DEBUG="false", DATABASE_URL="postgresql://u:p@h:5432/d")
    assert out.returncode != 0
    assert "SECRET_KEY" in out.stderr and "required when DEBUG is off" in out.stderr
    out = run(
        PRINT_DB,
        DEBUG="false",
        SECRET_KEY="x" * 50,
        ALLOWED_HOSTS="portal.example",
        DATABASE_URL="postgresql://u:p@h:5432/d",
    )
    assert out.returncode == 0, out.stderr


PRINT_ROUTES = (
    "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', "
    "'employer_portal.settings'); from django.conf import settings; "
    "d = settings.DATABASES; print(d['default']['PORT'], d.get('direct', {}).get('PORT'), "
    "settings.TENANCY['ENGINE_DATABASE'], settings.TENANCY['ENGINE_POOLER'], "
    "(d['default'].get('OPTIONS') or {}).get('pool', {}).get('max_size'))"
)
POOLED = {
    "EMPLOYER_PORTAL_DB_URL": "postgresql://u:p@bouncer:6432/portal",
    "EMPLOYER_PORTAL_DB_POOLER": "transaction",
}


def test_the_app_uses_the_pooler_and_the_engine_the_direct_url():
    out = run(PRINT_ROUTES, **POOLED)
    assert out.stdout.split() == ["6432", "None", "default", "transaction", "None"], out.stderr
    direct = {**POOLED, "EMPLOYER_PORTAL_DIRECT_DB_URL": "postgresql://u:p@db:5432/portal"}
    out = run(PRINT_ROUTES, **direct)
    assert out.stdout.split() == ["6432", "5432", "direct", "none", "None"], out.stderr
    # A management command's process (manage.py marks it) uses the direct URL throughout.
    out = run(PRINT_ROUTES, EMPLOYER_PORTAL_PROCESS="command", **direct)
    assert out.stdout.split()[:2] == ["5432", "5432"], out.stderr


def test_django_pool_and_pooler_mode_are_validated():
    out = run(PRINT_ROUTES, EMPLOYER_PORTAL_DB_POOL="8", **POOLED)
    assert out.stdout.split()[-1] == "8", out.stderr
    out = run(PRINT_ROUTES, **{**POOLED, "EMPLOYER_PORTAL_DB_POOLER": "statement"})
    assert out.returncode != 0
    assert "EMPLOYER_PORTAL_DB_POOLER must be one of none, session, transaction" in out.stderr


def test_whole_number_settings_are_checked_in_one_line():
    manage = (
        "import runpy, sys; sys.argv = ['manage.py', 'check']; "
        "runpy.run_path('manage.py', run_name='__main__')"
    )
    url = {"EMPLOYER_PORTAL_DB_URL": "postgresql://u:p@dbhost:6543/portal"}
    for name, value, expected in [
        ("TENANCY_POOL_SIZE", "abc", "TENANCY_POOL_SIZE must be a whole number, not 'abc'"),
        ("TENANCY_POOL_SIZE", "-2", "TENANCY_POOL_SIZE must be 0 or more, not -2"),
        ("TENANCY_LOCK_TIMEOUT_MS", "1.5", "must be a whole number"),
    ]:
        out = run(manage, **url, **{name: value})
        assert out.returncode == 1, out.stderr
        assert expected in out.stderr and "Traceback" not in out.stderr
