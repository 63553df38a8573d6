"""What docs/adopting.md says of django-tenants' own suite on our backend, read as data.

The section ``## django-tenants' own test suite`` holds a line ``Ran: N, passed: M`` (the
figures of the last run with ``--backend ours``) and a table of the intentional
differences, one failing test a row::

    | test id | reason | what tenancy does instead |
    | --- | --- | --- |
    | `django_tenants.tests.test_x.Case.test_y` | why it fails | what to use instead |
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

HEADING = "## django-tenants' own test suite"
FIGURES = re.compile(r"\bRan:\s*(\d+),\s*passed:\s*(\d+)")
CELL_SEPARATOR = re.compile(r"(?<!\\)\|")  # a cell may hold an escaped \|
TEST_ID = re.compile(r"`([^`]+)`")
COLUMNS = 3


class ExpectedError(AssertionError):
    """The document or its section is missing or not in the agreed form."""


@dataclass(frozen=True)
class Expected:
    ran: int
    passed: int
    differences: dict[str, str]  # test id -> reason


def read_expected(path: Path) -> Expected:
    if not path.is_file():
        raise ExpectedError(
            f"{path} does not exist yet: it must hold a section {HEADING!r} with the line "
            "'Ran: N, passed: M' and the table | test id | reason | what tenancy does instead |"
        )
    lines = _section(path.read_text(), path)
    ran, passed = _figures(lines, path)
    return Expected(ran, passed, _differences(lines, path))


def _normalize(line: str) -> str:
    return line.strip().replace("\u2019", "'").lower()  # a typographic apostrophe is fine


def _section(text: str, path: Path) -> list[str]:
    """The lines under the heading, up to the next heading of the same or a higher level."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if _normalize(line) == HEADING.lower()]
    if not starts:
        raise ExpectedError(f"{path} has no section {HEADING!r}")
    body = lines[starts[0] + 1 :]
    end = next((i for i, line in enumerate(body) if re.match(r"#{1,2}\s", line)), len(body))
    return body[:end]


def _figures(lines: list[str], path: Path) -> tuple[int, int]:
    found = [m for m in map(FIGURES.search, lines) if m]
    if len(found) != 1:
        raise ExpectedError(
            f"{path}, section {HEADING!r}: expected one line 'Ran: N, passed: M', "
            f"found {len(found)}"
        )
    return int(found[0][1]), int(found[0][2])


def _differences(lines: list[str], path: Path) -> dict[str, str]:
    """The table's rows whose first cell is a test id in backticks (the header and the
    separator row have none)."""
    differences: dict[str, str] = {}
    for line in lines:
        if not line.lstrip().startswith("|"):
            continue
        cells = [c.strip() for c in CELL_SEPARATOR.split(line.strip().strip("|"))]
        test_id = TEST_ID.fullmatch(cells[0])
        if not test_id:
            continue
        if len(cells) != COLUMNS or not all(cells):
            raise ExpectedError(
                f"{path}: the row of {test_id[1]} needs {COLUMNS} non-empty cells "
                f"(test id, reason, what tenancy does instead): {line.strip()}"
            )
        differences[test_id[1]] = cells[1].replace("\\|", "|")
    return differences
