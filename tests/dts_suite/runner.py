"""The suite's test runner (``TEST_RUNNER`` of the settings ``run.py`` writes): Django's
DiscoverRunner that records every outcome from the unittest result itself and writes it as
JSON to ``settings.DTS_SUITE_RESULT``, so that nothing is scraped from the console."""

from __future__ import annotations

import json
import os
import traceback
import unittest
from pathlib import Path
from types import TracebackType
from typing import Any

from django.conf import settings
from django.test.runner import DiscoverRunner

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def first_line(exc: BaseException) -> str:
    """``Type: message`` on one line: the exception's first line, as a report shows it."""
    lines = traceback.format_exception_only(type(exc), exc)
    return (lines[-1] if lines else type(exc).__name__).strip().splitlines()[0]


def innermost_frame(tb: TracebackType | None) -> str:
    """Where the error was raised (``file:line in function``): it tells a backend's
    refusal from an assertion in the test at a glance."""
    frames = traceback.extract_tb(tb)
    if not frames:
        return ""
    frame = frames[-1]
    return f"{frame.filename}:{frame.lineno} in {frame.name}"


class RecordingResult(unittest.TextTestResult):
    """A TextTestResult (the console output stays Django's) that also keeps, per test, what
    went wrong as data: its id, the kind, the exception's first line and where it rose."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.started: list[str] = []
        self.problems: list[dict[str, str]] = []

    def startTest(self, test: unittest.TestCase) -> None:  # noqa: N802 (unittest's name)
        super().startTest(test)
        self.started.append(test.id())

    def addError(self, test: unittest.TestCase, err: ExcInfo) -> None:  # noqa: N802
        super().addError(test, err)
        self._record(test, test, "error", err)

    def addFailure(self, test: unittest.TestCase, err: ExcInfo) -> None:  # noqa: N802
        super().addFailure(test, err)
        self._record(test, test, "failure", err)

    def addSubTest(  # noqa: N802
        self, test: unittest.TestCase, subtest: unittest.TestCase, err: ExcInfo | None
    ) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._record(test, subtest, "failure" if failed else "error", err)

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:  # noqa: N802
        super().addUnexpectedSuccess(test)
        self.problems.append(
            {"id": test.id(), "test": test.id(), "kind": "unexpected success", "message": ""}
        )

    def _record(
        self, test: unittest.TestCase, reported: unittest.TestCase, kind: str, err: ExcInfo
    ) -> None:
        # ``test`` is the test method (a subtest's parent): passed figures count those.
        self.problems.append(
            {
                "id": reported.id(),
                "test": test.id(),
                "kind": kind,
                "message": first_line(err[1]),
                "where": innermost_frame(err[2]),
                "traceback": self._exc_info_to_string(err, test),
            }
        )


def summary(result: RecordingResult) -> dict[str, Any]:
    """The figures of a finished run. ``passed``: tests that ran, were not skipped and had
    no failure, error (a subtest's included) or unexpected success."""
    skipped = {test.id() for test, _ in result.skipped}
    bad = {problem["test"] for problem in result.problems}
    return {
        "ran": result.testsRun,
        "passed": sum(1 for t in set(result.started) if t not in skipped and t not in bad),
        "failures": len(result.failures),
        "errors": len(result.errors),
        "skipped": len(result.skipped),
        "expected_failures": len(result.expectedFailures),
        "unexpected_successes": len(result.unexpectedSuccesses),
        "problems": result.problems,
        "skips": [{"id": test.id(), "reason": reason} for test, reason in result.skipped],
        "tests": sorted(set(result.started)),  # every test that ran, in name order
    }


def environment() -> dict[str, str]:
    """What the suite really ran with: the imported django-tenants and the connection's
    class prove the installed code and the chosen backend were the ones tested."""
    import django
    import django_tenants
    from django.db import connections

    from tests.dts_suite.sdist import installed_version

    wrapper = type(connections["default"])  # django.db.connection is a proxy
    return {
        "django": django.get_version(),
        "django_tenants": installed_version(),
        "django_tenants_path": str(Path(django_tenants.__file__).parent),
        "engine": settings.DATABASES["default"]["ENGINE"],
        "database_wrapper": f"{wrapper.__module__}.{wrapper.__qualname__}",
        "executor": os.environ.get("EXECUTOR", "standard"),
    }


def keep_tenancy_available() -> None:
    """django-tenants' test cases narrow the app registry (``available_apps``) to their own
    apps. A project on tenancy always has tenancy installed, and its commands
    (migrate_schemas) and models must stay there: the one adaptation of the suite, named in
    docs/adopting.md."""
    from django.apps import apps

    import tenancy

    always = ["tenancy", *tenancy.REQUIRED_APPS]
    narrow = apps.set_available_apps

    def set_available_apps(available: Any) -> None:
        narrow([*always, *(a for a in available if a not in always)])

    apps.set_available_apps = set_available_apps  # type: ignore[method-assign]


class JsonTestRunner(DiscoverRunner):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.report: dict[str, Any] = {}

    def setup_test_environment(self, **kwargs: Any) -> None:
        super().setup_test_environment(**kwargs)
        if "tenancy" in settings.INSTALLED_APPS:
            keep_tenancy_available()

    def get_resultclass(self) -> type[unittest.TextTestResult]:
        base = super().get_resultclass()  # --debug-sql / --pdb results, else None
        if base is None:
            return RecordingResult
        return type(f"Recording{base.__name__}", (RecordingResult, base), {})

    def run_suite(self, suite: unittest.TestSuite, **kwargs: Any) -> unittest.TestResult:
        result = super().run_suite(suite, **kwargs)
        if isinstance(result, RecordingResult):
            self.report = {**summary(result), "environment": environment()}
            self._write()
        return result

    def run_tests(self, test_labels: list[str], **kwargs: Any) -> int:
        """A run that breaks outside the tests (the test database's migrations, the system
        checks, the teardown) still says why in the JSON, then fails as Django would."""
        try:
            return super().run_tests(test_labels, **kwargs)
        except BaseException as exc:
            key = "teardown_error" if self.report else "aborted"
            self.report.setdefault("environment", environment())
            self.report[key] = first_line(exc)
            self.report[f"{key}_where"] = innermost_frame(exc.__traceback__)
            self.report[f"{key}_message"] = str(exc)  # a SystemCheckError's list, whole
            self.report[f"{key}_traceback"] = traceback.format_exc()
            self._write()
            raise

    def _write(self) -> None:
        path = Path(settings.DTS_SUITE_RESULT)
        path.write_text(json.dumps(self.report, indent=2) + "\n")
