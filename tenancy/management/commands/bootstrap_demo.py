"""What `make run` needs after migrating: the seed's demo tenant and an admin login."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from tenancy.services.tenants import TenantError, create_tenant, list_tenants

DEMO_ORG_ID = "org_ayHu5XNaTNHMasO5"
DEMO_NAME = "Baltu Technologies"


# The generated password, kept beside the checkout (git-ignored, owner-only) so that the
# next `make run` prints the same login instead of logging out open admin sessions.
PASSWORD_FILE = Path(settings.BASE_DIR) / ".admin-password"


def _password(user: Any) -> str:
    """ADMIN_PASSWORD when set; else the kept one while it still opens this account; else
    a new random one, kept."""
    wanted = os.environ.get("ADMIN_PASSWORD")
    kept = PASSWORD_FILE.read_text().strip() if PASSWORD_FILE.exists() else ""
    if not wanted and kept and user.check_password(kept):
        return kept
    password = wanted or secrets.token_urlsafe(12)
    user.set_password(password)
    if not wanted:
        PASSWORD_FILE.write_text(password + "\n")
        PASSWORD_FILE.chmod(0o600)
    return password


class Command(BaseCommand):
    help = (
        "Create the demo tenant (Baltu Technologies, org_ayHu5XNaTNHMasO5) if missing, and "
        "an admin user whose login is printed. The password is ADMIN_PASSWORD when set, else a "
        "random one kept in .admin-password and reused while it still works."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default=os.environ.get("ADMIN_USERNAME", "admin"))
        parser.add_argument("--url", default="http://127.0.0.1:8000/admin/")

    def handle(self, *args: Any, **options: Any) -> None:
        self.bootstrap(options["username"], options["url"])

    def bootstrap(self, username: str, url: str) -> str:
        """The demo tenant and the admin user; prints the login box and returns it (run_demo
        prints it again once the web server answers)."""
        if not any(t.org_id == DEMO_ORG_ID for t in list_tenants()):
            try:
                created = create_tenant(DEMO_ORG_ID, DEMO_NAME, actor="bootstrap_demo")
                self.stdout.write(f"Created demo tenant {created.name} ({created.schema})")
            except TenantError as exc:
                self.stderr.write(self.style.WARNING(f"Demo tenant not created: {exc}"))
        user, _ = get_user_model().objects.get_or_create(username=username)
        user.is_staff = user.is_superuser = user.is_active = True
        password = _password(user)
        user.save()
        box = login_box(url, user.get_username(), password)
        self.stdout.write(self.style.SUCCESS(box))
        return box


def login_box(url: str, username: str, password: str) -> str:
    line = "=" * 64
    return (
        f"{line}\n Employer Portal admin: {url}\n"
        f" username: {username}\n password: {password}\n{line}"
    )
