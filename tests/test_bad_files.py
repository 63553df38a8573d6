"""Files that are not migrations get one line, fast, from every command that reads them:
a directory named like a migration, a symlink out of the folder, a file over the size or
statement limit. Nothing is read that should not be, and nothing changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import query, run_command

COMMANDS = {
    "dry_run": ("migrate_tenants", "--dry-run"),
    "lint": ("lint_migrations",),
    "tenant_create": ("tenant_create", "org_badfile1"),
}


def make_directory(sql_dir: Path, settings: Any) -> str:
    (sql_dir / "tenant" / "050_dir.sql").mkdir()
    return "not a regular file"


def make_symlink_out(sql_dir: Path, settings: Any) -> str:
    secret = sql_dir.parent / "secret.txt"
    secret.write_text("root:$6$topsecrethash:19000:0:99999:7:::\n")
    (sql_dir / "tenant" / "050_link.sql").symlink_to(secret)
    return "a symlink that leads out of the migrations directory"


def make_oversized(sql_dir: Path, settings: Any) -> str:
    settings.TENANCY = {**settings.TENANCY, "MAX_FILE_BYTES": 10_000}
    rows = "".join(f"INSERT INTO t VALUES ({i});\n" for i in range(1000))
    (sql_dir / "tenant" / "050_big.sql").write_text(f"-- UP\nCREATE TABLE t (id int);\n{rows}")
    return "over the limit of 10,000 (TENANCY['MAX_FILE_BYTES'])"


def make_too_many(sql_dir: Path, settings: Any) -> str:
    settings.TENANCY = {**settings.TENANCY, "MAX_STATEMENTS": 100}
    rows = "".join(f"INSERT INTO t VALUES ({i});\n" for i in range(200))
    (sql_dir / "tenant" / "050_many.sql").write_text(f"-- UP\nCREATE TABLE t (id int);\n{rows}")
    return "201 statements, over the limit of 100 (TENANCY['MAX_STATEMENTS'])"


BAD = {
    "directory": make_directory,
    "symlink_out": make_symlink_out,
    "oversized": make_oversized,
    "too_many_statements": make_too_many,
}


@pytest.mark.parametrize("command", COMMANDS, ids=list(COMMANDS))
@pytest.mark.parametrize("bad", BAD, ids=list(BAD))
def test_a_bad_file_gets_one_line_and_changes_nothing(
    public_ready: None, sql_dir: Path, settings: Any, bad: str, command: str
) -> None:
    expected = BAD[bad](sql_dir, settings)
    code, out, err = run_command(*COMMANDS[command])
    assert code == 1, (out, err)
    assert "Traceback" not in out + err
    assert expected in err, err
    assert "050_" in err  # the file is named
    assert "topsecrethash" not in out + err  # a file outside the folder is never read
    assert query("SELECT count(*) FROM tenant_registry") == [(0,)]
