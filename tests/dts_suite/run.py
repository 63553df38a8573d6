"""Run django-tenants' own test suite against a database backend and report the figures.

    python tests/dts_suite/run.py [--backend ours|stock] [--json OUT] [--executor E]
                                  [--label LABEL ...] [--timeout S] [--db-name NAME]

As upstream's CI does (run_tests.sh): from ``dts_test_project``, ``EXECUTOR=<executor>
python manage.py test -v2 django_tenants``, where ``django_tenants`` is the *installed*
package (its wheel ships ``django_tenants/tests``; the sdist only adds the project). The
project is copied to a temporary folder with a settings module of ours beside its own:
ours is ``tenancy.postgresql_backend`` with tenancy installed, stock django-tenants'
backend. The test database is ``test_<db-name>`` on our suite's server; the roles tenancy
creates for it are dropped at the end. Exit status: 0 all passed, 1 failures or errors,
2 the suite did not run to its end.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# Run as a script, the path starts with this folder, whose module names (database, sdist)
# would shadow any installed namesakes: the checkout's root instead, for `tests.dts_suite`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.dts_suite import database, sdist  # noqa: E402

ENGINES = {"ours": "tenancy.postgresql_backend", "stock": "django_tenants.postgresql_backend"}
SETTINGS_MODULE = "dts_test_project.dts_suite_settings"
DEFAULT_LABELS = ["django_tenants"]  # upstream's label: the installed package's tests
DEFAULT_TIMEOUT_S = 1800.0
KILL_GRACE_S = 10.0
MESSAGE_LINES = 12  # of an abort's message (a SystemCheckError lists every check)

SETTINGS = '''"""Written by tests/dts_suite/run.py: dts_test_project's settings, on {backend}."""

from dts_test_project.settings import *  # noqa: F403
from dts_test_project.settings import SHARED_APPS as DTS_SHARED_APPS
from dts_test_project.settings import TENANT_APPS

from tests.dts_suite.database import database_settings

DATABASES = {{"default": database_settings({engine!r}, {name!r})}}
TEST_RUNNER = "tests.dts_suite.runner.JsonTestRunner"
DTS_SUITE_RESULT = {result!r}
SILENCED_SYSTEM_CHECKS = {silenced!r}
'''

# What tenancy needs beside the backend, as employer_portal/settings.py installs it.
OURS = """
import tenancy

# tenancy first: its commands (migrate_schemas, create_tenant, ...) replace django-tenants'.
SHARED_APPS = ["tenancy", *DTS_SHARED_APPS]
SHARED_APPS += [a for a in tenancy.REQUIRED_APPS if a not in SHARED_APPS]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]
DATABASE_ROUTERS = ("tenancy.routers.PublicTablesRouter", "django_tenants.routers.TenantSyncRouter")
TASKS = {{"default": {{"BACKEND": "django_tasks_db.DatabaseBackend"}}}}
TENANCY = {{
    # No SQL migrations at all: the suite tests django-tenants' API, not our shipped files.
    "MIGRATIONS_DIR": {migrations!r},
    # Tenant requests use the shared apps' tables, as under django-tenants (docs/adopting.md).
    "TENANT_SHARED_TABLES": "shared-apps",
    # The suite creates a few hundred tenants within minutes.
    "MAX_CREATIONS_PER_HOUR": 100000,
}}
"""


@dataclass
class Outcome:
    returncode: int | None  # None: killed at the timeout
    wall_s: float


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=sorted(ENGINES), default="ours")
    parser.add_argument(
        "--json", type=Path, help="the report's path (default: .cache/BACKEND-EXECUTOR.json)"
    )
    parser.add_argument(
        "--executor",
        choices=["standard", "multiprocessing"],
        default="standard",
        help="migrate_schemas' executor (upstream's CI runs both)",
    )
    parser.add_argument(
        "--label",
        action="append",
        dest="labels",
        help=f"a test label, repeatable (default: {' '.join(DEFAULT_LABELS)})",
    )
    parser.add_argument(
        "--silence",
        action="append",
        metavar="CHECK_ID",
        help="a system check to silence (e.g. fields.E304), to see past it; repeatable",
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds")
    parser.add_argument(
        "--db-name",
        default=database.DEFAULT_NAME,
        help="the suite's database; its test database is test_<name>",
    )
    return parser.parse_args(argv)


def copy_project(source: Path, workdir: Path) -> Path:
    """A fresh copy per run: the suite writes into its project (static and media files)."""
    project = workdir / "dts_test_project"
    shutil.copytree(
        source / "dts_test_project", project, ignore=shutil.ignore_patterns("__pycache__")
    )
    return project


def empty_migrations(workdir: Path) -> Path:
    """tenancy's MIGRATIONS_DIR with no file in it: only Django's own migrations run."""
    folder = workdir / "migrations_sql"
    for kind in ("public", "tenant"):
        (folder / kind).mkdir(parents=True)
    return folder


def write_settings(project: Path, args: argparse.Namespace, result: Path, workdir: Path) -> None:
    text = SETTINGS.format(
        backend=args.backend,
        engine=ENGINES[args.backend],
        name=args.db_name,
        result=str(result),
        silenced=list(args.silence or []),
    )
    if args.backend == "ours":
        text += OURS.format(migrations=str(empty_migrations(workdir)))
    (project / "dts_test_project" / "dts_suite_settings.py").write_text(text)


def suite_command(labels: list[str]) -> list[str]:
    return [sys.executable, "manage.py", "test", "-v2", "--noinput", *labels]


def suite_env(executor: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE=SETTINGS_MODULE,  # not our project's (pytest sets that one)
        EXECUTOR=executor,
        PYTHONWARNINGS="d",  # as upstream's CI
        # The harness' runner and database helpers, and tenancy, from this checkout.
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
    )
    return env


def run_suite(project: Path, args: argparse.Namespace, log: Path) -> Outcome:
    """The suite in its own process group, so that a timeout also ends the processes the
    multiprocessing executor started."""
    started = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen(
            suite_command(args.labels or DEFAULT_LABELS), cwd=project, env=suite_env(args.executor),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            returncode: int | None = process.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            _end_group(process)
            returncode = None
    return Outcome(returncode, round(time.monotonic() - started, 1))


def _end_group(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def read_result(result: Path, log: Path, outcome: Outcome) -> dict[str, Any]:
    """The runner's JSON; without it (the process died before its runner ran) the log's
    last line says why."""
    if result.is_file():
        report: dict[str, Any] = json.loads(result.read_text())
    else:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        report = {"aborted": lines[-1].strip() if lines else "no output"}
    if outcome.returncode is None:
        report["aborted"] = f"killed after the {outcome.wall_s:.0f} s timeout"
    return report


def cleanup(db: dict[str, Any]) -> dict[str, Any]:
    dropped_database = database.drop_leftover_test_database(db)
    return {
        "test_database_dropped": dropped_database,
        "roles_dropped": database.drop_tenancy_roles(db),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    version = sdist.installed_version()
    source = sdist.unpacked_sdist(version)
    db = database.database_settings(ENGINES[args.backend], args.db_name)
    log = sdist.CACHE / f"{args.backend}-{args.executor}.log"
    with tempfile.TemporaryDirectory(prefix="dts_suite_") as tmp:
        workdir = Path(tmp)
        project = copy_project(source, workdir)
        result = workdir / "result.json"
        write_settings(project, args, result, workdir)
        outcome = run_suite(project, args, log)
        report = read_result(result, log, outcome)
    labels = args.labels or DEFAULT_LABELS
    return {
        "backend": args.backend,
        "executor": args.executor,
        "django_tenants_version": version,
        "command": f"cd dts_test_project && EXECUTOR={args.executor} "
        + shlex.join(["python", *suite_command(labels)[1:]]),
        "database": database.where(db),
        "test_database": db["TEST"]["NAME"],
        "wall_s": outcome.wall_s,
        "returncode": outcome.returncode,
        "log": str(log),
        "silenced_checks": list(args.silence or []),
        **report,
        "cleanup": cleanup(db),
    }


def print_summary(report: dict[str, Any]) -> None:
    env = report.get("environment", {})
    print(
        f"django-tenants {report['django_tenants_version']} own suite, backend {report['backend']}"
        f" ({env.get('database_wrapper', '?')}), executor {report['executor']}, "
        f"on {report['database']}"
    )
    if "ran" in report:
        print(
            f"Ran: {report['ran']}, passed: {report['passed']}, failures: {report['failures']}, "
            f"errors: {report['errors']}, skipped: {report['skipped']}, "
            f"in {report['wall_s']} s"
        )
    for problem in report.get("problems", []):
        print(f"  {problem['kind'].upper():8} {problem['id']}: {problem['message']}")
    for key in ("aborted", "teardown_error"):
        if key in report:
            print(f"{key.replace('_', ' ').upper()}: {report[key]}")
            detail = report.get(f"{key}_message", "").strip().splitlines()[1:MESSAGE_LINES]
            print("\n".join(f"  {line}" for line in detail if line.strip()))
    roles = report["cleanup"]["roles_dropped"]
    print(f"Dropped {len(roles)} tenancy role(s); the log: {report['log']}")


def exit_status(report: dict[str, Any]) -> int:
    if "aborted" in report or "ran" not in report:
        return 2
    return 0 if report["failures"] == report["errors"] == report["unexpected_successes"] == 0 else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    print_summary(report)
    out = args.json or sdist.CACHE / f"{args.backend}-{args.executor}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"The report: {out}")
    return exit_status(report)


if __name__ == "__main__":
    sys.exit(main())
