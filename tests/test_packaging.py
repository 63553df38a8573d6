"""tenancy as a reusable app: its system checks (tenancy/checks.py) name each setting a
project gets wrong, and its wheel holds tenancy alone, templates and migrations included,
with every distribution tenancy imports declared."""

from __future__ import annotations

import ast
import email
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import packages_distributions

import pytest
from django.conf import settings
from django.core.checks import CheckMessage
from django.test import override_settings
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import tenancy
from tenancy import checks, conf
from tests.conftest import ROOT

SOURCE = ROOT / "tenancy"


def ids(messages: list[CheckMessage]) -> list[str]:
    return [m.id or "" for m in messages]


def apps_without(name: str) -> list[str]:
    return [app for app in settings.INSTALLED_APPS if app != name]


def apps_moving_before_tenancy(name: str) -> list[str]:
    rest = apps_without(name)
    return [*rest[: rest.index("tenancy")], name, *rest[rest.index("tenancy") :]]


# -- system checks ---------------------------------------------------------------------------
def test_the_example_project_passes_every_check():
    assert checks.check_installation() == []


@pytest.mark.parametrize("app", tenancy.REQUIRED_APPS)
def test_a_missing_required_app_is_named(app):
    with override_settings(INSTALLED_APPS=apps_without(app)):
        errors = checks.check_apps()
    assert ids(errors) == ["tenancy.E001"]
    assert repr(app) in errors[0].msg


def test_the_documented_line_with_auth_and_contenttypes_is_all_tenancy_needs():
    with override_settings(INSTALLED_APPS=["tenancy", *tenancy.REQUIRED_APPS]):
        errors = checks.check_apps()
    assert [e.msg for e in errors] == [
        "tenancy needs 'django.contrib.auth' in INSTALLED_APPS.",
        "tenancy needs 'django.contrib.contenttypes' in INSTALLED_APPS.",
    ]
    with override_settings(
        INSTALLED_APPS=["tenancy", *tenancy.REQUIRED_APPS, *checks.CONTRIB_APPS]
    ):
        assert checks.check_apps() == []


@pytest.mark.parametrize(
    ("app", "command"), [("django_tenants", "migrate_schemas"), ("django_tasks_db", "db_worker")]
)
def test_tenancy_after_an_app_whose_commands_it_replaces_is_an_error(app, command):
    with override_settings(INSTALLED_APPS=apps_moving_before_tenancy(app)):
        errors = checks.check_apps()
    assert ids(errors) == ["tenancy.E002"]
    assert f"before {app!r}" in errors[0].msg and command in errors[0].msg


def test_django_tasks_before_tenancy_is_fine_as_tenancy_replaces_none_of_its_commands():
    with override_settings(INSTALLED_APPS=apps_moving_before_tenancy("django_tasks")):
        assert checks.check_apps() == []


def databases_with_engine(engine: str) -> dict:
    return {**settings.DATABASES, "default": {**settings.DATABASES["default"], "ENGINE": engine}}


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
@pytest.mark.parametrize(
    "engine", ["django_tenants.postgresql_backend", "django.db.backends.postgresql", "nowhere"]
)
def test_another_database_engine_is_an_error(engine):
    with override_settings(DATABASES=databases_with_engine(engine)):
        errors = checks.check_database()
    assert ids(errors) == ["tenancy.E003"]
    assert repr(engine) in errors[0].msg and "'tenancy.postgresql_backend'" in errors[0].msg


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_a_backend_built_on_tenancys_passes(tmp_path, monkeypatch):
    package = tmp_path / "wrapped_backend"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "base.py").write_text(
        "from tenancy.postgresql_backend.base import DatabaseWrapper as Base\n\n\n"
        "class DatabaseWrapper(Base):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with override_settings(DATABASES=databases_with_engine("wrapped_backend")):
        assert checks.check_database() == []


def test_a_missing_setting_without_default_is_named(monkeypatch):
    # MIGRATIONS_DIR without a default, as a project without BASE_DIR has it.
    monkeypatch.delitem(conf.DEFAULTS, "MIGRATIONS_DIR", raising=False)
    with override_settings(TENANCY={"LOCK_TIMEOUT_MS": 100}):
        errors = checks.check_settings()
    assert ids(errors) == ["tenancy.E004"]
    assert "'MIGRATIONS_DIR'" in errors[0].msg
    with override_settings(TENANCY={"MIGRATIONS_DIR": ROOT / "migrations_sql"}):
        assert checks.check_settings() == []


def test_a_setting_with_a_default_may_be_left_out():
    with override_settings(TENANCY={"MIGRATIONS_DIR": ROOT / "migrations_sql"}):
        assert checks.check_settings() == []


def test_tenancy_settings_that_are_not_a_dict_are_an_error():
    with override_settings(TENANCY=[("MIGRATIONS_DIR", "x")]):
        assert ids(checks.check_settings()) == ["tenancy.E004"]


# -- the distribution ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel built from a copy of what the build reads (an in-tree build would leave
    build/ and *.egg-info in the checkout, and race another worker's build)."""
    folder = tmp_path_factory.mktemp("wheel")
    source = folder / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(SOURCE, source / "tenancy", ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(folder), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = folder.glob("*.whl")
    return zipfile.ZipFile(built)


def source_files(pattern: str) -> set[str]:
    return {
        str(path.relative_to(ROOT))
        for path in SOURCE.rglob(pattern)
        if "__pycache__" not in path.parts
    }


@pytest.mark.once
def test_the_wheel_holds_tenancy_alone_with_its_templates_and_migrations(wheel):
    names = set(wheel.namelist())
    packaged = {n for n in names if ".dist-info/" not in n}
    assert {n.split("/")[0] for n in packaged} == {"tenancy"}
    assert source_files("*.py") <= packaged
    assert {
        "tenancy/migrations/0001_initial.py",
        "tenancy/management/commands/migrate_schemas.py",
    } <= packaged
    templates = source_files("*.html")
    assert "tenancy/templates/admin/tenancy/index.html" in templates
    assert templates <= packaged
    assert not [n for n in packaged if n.endswith((".pyc", ".sql"))]


@pytest.mark.once
def test_the_wheel_declares_every_distribution_tenancy_imports_and_no_example_one(wheel):
    (metadata_name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    metadata = email.message_from_bytes(wheel.read(metadata_name))
    assert metadata["Name"] == "django-tenancy-migrations"
    assert metadata["Version"] == tenancy.__version__
    required = [Requirement(r) for r in metadata.get_all("Requires-Dist")]
    core = [r for r in required if r.marker is None]
    # psycopg[pool] brings psycopg-pool: an extra of psycopg's named after its distribution.
    declared = {canonicalize_name(r.name) for r in core} | {
        canonicalize_name(f"{r.name}-{extra}") for r in core for extra in r.extras
    }
    owners = packages_distributions()
    imported: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"tenancy"}
    assert "employer_portal" not in third_party
    needed = {canonicalize_name(owners[module][0]) for module in third_party}
    assert needed <= declared, f"imported by tenancy, not declared: {needed - declared}"
    example = {
        canonicalize_name(r.name) for r in required if r.marker and "example" in str(r.marker)
    }
    assert {"pgserver", "whitenoise", "gunicorn", "django-axes"} <= example - declared
