"""django-tenants' own test suite on our backend (tests/dts_suite/run.py): every test that
fails is an intentional difference that docs/adopting.md lists, with its reason.

Slow (the whole upstream suite, on its own test database) and the same on every server:
``once``. It needs none of our SQL migrations (the harness gives tenancy an empty folder).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.dts_suite.expected import HEADING, Expected, read_expected

pytestmark = pytest.mark.once

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "tests" / "dts_suite" / "run.py"
ADOPTING = ROOT / "docs" / "adopting.md"
MIN_RAN = 150  # upstream's suite has 154 tests: fewer means whole classes did not run
# Past the harness' own timeout (run.py's DEFAULT_TIMEOUT_S, 1800 s), which ends the suite
# and still reports: this one only catches a harness that hangs itself.
TIMEOUT_S = 2400


def run_harness(out: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(RUN), "--backend", "ours", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    assert out.is_file(), f"the harness wrote no report:\n{done.stdout}\n{done.stderr}"
    return json.loads(out.read_text())


def unlisted(report: dict[str, Any], expected: Expected) -> list[str]:
    """The failing tests the document does not list, with their first error line."""
    problems = report["problems"]
    return sorted(
        {f"{p['id']}: {p['message']}" for p in problems if p["id"] not in expected.differences}
    )


def test_django_tenants_own_suite_fails_only_where_docs_say_why(tmp_path: Path) -> None:
    expected = read_expected(ADOPTING)  # before the slow run: a missing doc fails at once
    report = run_harness(tmp_path / "dts_suite.json")

    assert "aborted" not in report, (
        f"the suite did not run to its end: {report['aborted']}\n"
        f"{report.get('aborted_message', '')}\nlog: {report['log']}"
    )
    assert report["ran"] >= MIN_RAN, f"only {report['ran']} tests ran; log: {report['log']}"
    missing = unlisted(report, expected)
    assert not missing, (
        f"failing tests that {ADOPTING.name} ({HEADING!r}) does not list:\n" + "\n".join(missing)
    )
    assert (expected.ran, expected.passed) == (report["ran"], report["passed"]), (
        f"{ADOPTING.name} says 'Ran: {expected.ran}, passed: {expected.passed}'; this run: "
        f"'Ran: {report['ran']}, passed: {report['passed']}'"
    )
