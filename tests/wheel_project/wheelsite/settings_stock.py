"""The same project on stock django-tenants, without tenancy: how a fleet was built before."""

from wheelsite.settings import *  # noqa: F403
from wheelsite.settings import DIRECT, SHARED_APPS, TENANT_APPS

SHARED_APPS = [a for a in SHARED_APPS if a != "tenancy"]
INSTALLED_APPS = SHARED_APPS + [a for a in TENANT_APPS if a not in SHARED_APPS]
DATABASES = {"default": {**DIRECT, "ENGINE": "django_tenants.postgresql_backend"}}
DATABASE_ROUTERS = ("django_tenants.routers.TenantSyncRouter",)
