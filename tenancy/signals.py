"""Signals the tenancy app sends, for in-process hooks (a leaf module: Django only).

``migration_run_alert`` is sent once for every run that failed, was refused or was
interrupted (``tenancy.services.alerts``), after its outcome is recorded. Receivers get
``alert``, the same dict the webhook posts::

    from django.dispatch import receiver
    from tenancy.signals import migration_run_alert

    @receiver(migration_run_alert)
    def page_someone(sender, alert, **kwargs):
        ...  # alert["kind"] is "failed", "refused" or "interrupted"

Receivers run in the process that recorded the outcome (a command, the worker) and are
called robustly: one that raises is logged and never fails the run.
"""

from __future__ import annotations

from django.dispatch import Signal

migration_run_alert = Signal()
