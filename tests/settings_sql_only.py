"""The project's settings with the suite's own tenant apps: none with Django migrations.

As the suite runs on its own snapshot of the SQL migrations (tests/migrations_sql), it runs
on its own set of tenant apps, so that a Django tenant app a user adds changes nothing a
test sees. Child processes (``manage.py`` run by tests) use this module; the tests of
Django tenant apps (tests/test_django_steps.py) turn the project's tenant apps back on."""

from employer_portal.settings import *  # noqa: F403
from employer_portal.settings import TENANT_APPS as PROJECT_TENANT_APPS

# Installed still (INSTALLED_APPS is the project's), but no tenant app: no Django steps.
SUITE_TENANT_APPS = ["employer_portal.portal"]
TENANT_APPS = SUITE_TENANT_APPS
__all__ = ["PROJECT_TENANT_APPS", "SUITE_TENANT_APPS"]
