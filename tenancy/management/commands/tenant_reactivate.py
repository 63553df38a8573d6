"""Reactivate a suspended or archived tenant: its domain is served again."""

from __future__ import annotations

from tenancy.management.commands.tenant_suspend import StatusCommand


class Command(StatusCommand):
    help = "Reactivate a suspended or archived tenant (status 'active'). Audited."
    status = "active"
