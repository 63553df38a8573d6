"""A django-tenants project with tenancy installed as docs/adopting.md says (section 2).

The database is WHEELSITE_DB_URL. With WHEELSITE_POOLER_URL, the site's connection goes
through that transaction-mode pooler and tenancy's engine uses the direct one
(docs/deployment.md, setup 3).
"""

import os
from pathlib import Path

import environ

import tenancy

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "wheel-project-test-only"
DEBUG = True
ALLOWED_HOSTS = [".localhost", "127.0.0.1", "testserver"]

SHARED_APPS = [
    "tenancy",
    *tenancy.REQUIRED_APPS,
    "customers",
    "django.contrib.auth",
    "django.contrib.contenttypes",
]
TENANT_APPS = ["notes"]
INSTALLED_APPS = SHARED_APPS + [a for a in TENANT_APPS if a not in SHARED_APPS]


def database(url: str) -> dict:
    db = environ.Env.db_url_config(url)
    db["ENGINE"] = "tenancy.postgresql_backend"
    return db


DIRECT = database(os.environ["WHEELSITE_DB_URL"])
POOLER_URL = os.environ.get("WHEELSITE_POOLER_URL", "")
if POOLER_URL:
    DATABASES = {
        "default": {**database(POOLER_URL), "POOLER": "transaction"},
        "direct": {**DIRECT, "TEST": {"MIRROR": "default"}},
    }
else:
    DATABASES = {"default": {**DIRECT, "TEST": {"NAME": f"test_{DIRECT['NAME']}"}}}
DATABASE_ROUTERS = (
    "tenancy.routers.PublicTablesRouter",
    "django_tenants.routers.TenantSyncRouter",
)
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

TENANT_MODEL = "customers.Client"
TENANT_DOMAIN_MODEL = "customers.Domain"

TENANCY = {
    "MIGRATIONS_DIR": BASE_DIR / "migrations_sql",
    "TENANT_SHARED_TABLES": "shared-apps",
}
if POOLER_URL:
    TENANCY["ENGINE_DATABASE"] = "direct"

MIDDLEWARE = [
    "django_tenants.middleware.main.TenantMainMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "wheelsite.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
