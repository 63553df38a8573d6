"""A router listed before django-tenants' own: tenancy's tables always go to public.

Tenancy's registry, ledger, audit log and run records, the task queue its admin uses, and
the auth and content types tables its migrations refer to live in ``public`` whatever
``SHARED_APPS`` says: a project (or a test) that narrows ``SHARED_APPS`` to its own apps
still gets them there. For everything else it has no opinion, and django-tenants' router
(which django-tenants requires in ``DATABASE_ROUTERS``) decides."""

from __future__ import annotations

from typing import Any

from django.db import connections
from django_tenants.utils import get_public_schema_name, get_tenant_database_alias

ALWAYS_PUBLIC = frozenset(
    {"tenancy", "django_tasks", "django_tasks_database", "auth", "contenttypes"}
)


class PublicTablesRouter:
    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool | None:
        if (
            app_label in ALWAYS_PUBLIC
            and db == get_tenant_database_alias()
            and connections[db].schema_name == get_public_schema_name()
        ):
            return True
        return None
