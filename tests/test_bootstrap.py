"""`make run`'s bootstrap: the demo tenant and an admin login that stays the same from one
`make run` to the next (open admin sessions are not logged out)."""

from __future__ import annotations

import re

from django.contrib.auth.models import User

from tenancy.management.commands import bootstrap_demo
from tests.conftest import run_command


def printed_password(out: str) -> str:
    match = re.search(r"password: (\S+)", out)
    assert match, out
    return match.group(1)


def test_the_login_is_kept_across_runs_unless_asked(public_ready, tmp_path, monkeypatch):
    monkeypatch.setattr(bootstrap_demo, "PASSWORD_FILE", tmp_path / ".admin-password")
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    code, first, err = run_command("bootstrap_demo")
    assert code == 0, err
    assert "Created demo tenant Baltu Technologies" in first
    code, second, _ = run_command("bootstrap_demo")
    assert code == 0 and printed_password(second) == printed_password(first)
    assert User.objects.get(username="admin").check_password(printed_password(first))
    # Changed by hand (manage.py changepassword): a new one is made and printed.
    user = User.objects.get(username="admin")
    user.set_password("changed-by-hand-123")
    user.save()
    code, third, _ = run_command("bootstrap_demo")
    assert printed_password(third) != printed_password(first)
    assert User.objects.get(username="admin").check_password(printed_password(third))
    monkeypatch.setenv("ADMIN_PASSWORD", "from-the-environment-9")
    code, fourth, _ = run_command("bootstrap_demo")
    assert printed_password(fourth) == "from-the-environment-9"
