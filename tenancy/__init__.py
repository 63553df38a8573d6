"""Schema-per-tenant SQL migrations, tenant lifecycle and their admin, on django-tenants.

Install it with the apps it needs, ``tenancy`` first (its management commands replace
django-tenants' ``migrate_schemas`` and django-tasks-db's ``db_worker``)::

    INSTALLED_APPS = ["tenancy", *tenancy.REQUIRED_APPS, "django.contrib.admin", ...]

``manage.py check`` names whatever is missing or out of order (tenancy/checks.py).
"""

__version__ = "0.1.0"

# django-tenants routes the schemas; django-tasks (with its database backend) runs the
# migrations the admin queues. Each must come after ``tenancy`` in INSTALLED_APPS.
REQUIRED_APPS: list[str] = ["django_tenants", "django_tasks", "django_tasks_db"]
