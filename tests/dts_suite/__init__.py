"""A harness that runs django-tenants' own test suite against our database backend.

django-tenants ships its suite's project (``dts_test_project``) in its sdist only; the tests
themselves (``django_tenants.tests``) are in the installed wheel. ``run.py`` fetches the
sdist of the installed version, runs the suite as upstream's CI does (``manage.py test
django_tenants`` from ``dts_test_project``) with the installed django-tenants, under either
django-tenants' backend (``stock``) or ``tenancy.postgresql_backend`` (``ours``), and writes
the figures as JSON (``runner.py`` records them inside the test process).
"""
