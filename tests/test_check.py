"""manage.py tenancy_check: exit codes in each state, JSON, --url for psql, pooler detection;
one-line errors for an unreachable database in every command; the embedded server
repairing pgserver's stale state files by itself."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from employer_portal import embedded_db
from tenancy import conf
from tests import pgbouncer
from tests.conftest import ROOT, TEST_MIGRATIONS, connect, run_command, subprocess_env

BAD_URL = "postgresql://nobody@127.0.0.1:1/x"
PENDING_FILE = "-- UP\nCREATE TABLE check_pending (id int);\n-- DOWN\nDROP TABLE check_pending;\n"


def run_manage(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env={**subprocess_env(), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def checks(stdout: str) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads(stdout)["checks"]}


# -- exit codes ------------------------------------------------------------------------------
def test_a_database_without_tenancy_tables_exits_1_naming_the_command(fresh_database):
    url = subprocess_env()["EMPLOYER_PORTAL_DB_URL"].replace(
        f"/{connect().info.dbname}", f"/{fresh_database}"
    )
    out = run_manage("tenancy_check", EMPLOYER_PORTAL_DB_URL=url)
    assert out.returncode == 1, out.stdout + out.stderr
    lines = dict(line.split(None, 1) for line in out.stdout.splitlines())
    assert lines["connection"].startswith("OK") and fresh_database in lines["connection"]
    assert lines["infrastructure"].startswith("FAILED")
    assert "migrate_tenants --public" in lines["infrastructure"]
    assert "Traceback" not in out.stderr


def test_all_well_exits_0(public_ready):
    code, out, err = run_command("tenancy_check")
    assert code == 0, out + err
    names = [line.split()[0] for line in out.splitlines()]
    assert names == ["connection", "server", "infrastructure", "pending", "ledger", "pooler"]
    assert "FAILED" not in out and "PENDING" not in out
    assert "nothing pending" in out
    assert f"PostgreSQL {connect().info.parameter_status('server_version')}" in out


def test_a_pending_file_exits_2_and_json_counts_it(public_ready, sql_dir):
    (sql_dir / "public" / "900_check_pending.sql").write_text(PENDING_FILE)
    code, out, _ = run_command("tenancy_check", "--format", "json")
    assert code == 2
    payload = json.loads(out)
    assert payload["exit_code"] == 2
    found = checks(out)
    assert found["pending"]["status"] == "pending"
    assert found["pending"]["sql"] == {"public": 1, "tenants": 0, "tenant_schemas": 0}
    assert found["pending"]["django"] == []
    assert found["connection"]["status"] == "ok" and found["connection"]["proxied"] is False
    assert found["server"]["version"] == connect().info.parameter_status("server_version")
    code, out, _ = run_command("tenancy_check")
    assert code == 2 and "run `manage.py migrate_tenants`" in out


def test_drift_is_a_warning_naming_the_file(public_ready, sql_dir):
    applied = sorted((sql_dir / "public").glob("*.sql"))[0]
    applied.write_text(applied.read_text() + "\n-- edited after it was applied\n")
    code, out, _ = run_command("tenancy_check", "--format", "json")
    assert code == 0
    ledger = checks(out)["ledger"]
    assert ledger["status"] == "warning" and applied.name in ledger["message"]


# -- --url -----------------------------------------------------------------------------------
def test_url_connects_psycopg_to_the_database_in_use(public_ready):
    code, out, _ = run_command("tenancy_check", "--url")
    url = out.strip()
    assert code == 0 and url.startswith("postgresql://") and "\n" not in url
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (conf.conninfo()["dbname"],)


def test_url_forms():
    from tenancy.services.health import psql_url

    socket = {"dbname": "employer_portal", "user": "postgres", "host": "/srv/.pgdata"}
    assert psql_url(socket) == "postgresql://postgres@/employer_portal?host=/srv/.pgdata"
    tcp = {"dbname": "d b", "user": "u", "password": "p@ss:/", "host": "db", "port": 6432}
    assert psql_url({**tcp, "sslmode": "require", "application_name": "tenancy"}) == (
        "postgresql://u:p%40ss%3A%2F@db:6432/d%20b?sslmode=require"
    )


# -- one line, no traceback --------------------------------------------------------------------
@pytest.mark.parametrize(
    "args", [("tenancy_check",), ("tenant_list",), ("migrate_tenants",)], ids=lambda a: a[0]
)
def test_an_unreachable_database_is_one_line_without_traceback(args):
    out = run_manage(*args, EMPLOYER_PORTAL_DB_URL=BAD_URL)
    assert out.returncode == 1
    assert "Traceback" not in out.stdout + out.stderr
    text = out.stdout if args[0] == "tenancy_check" else out.stderr
    line = next(line for line in text.splitlines() if "127.0.0.1" in line)
    assert "nobody@127.0.0.1:1/x" in line and "Connection refused" in line
    assert "EMPLOYER_PORTAL_DB_URL" in line
    if args[0] != "tenancy_check":
        assert out.stderr.strip() == line and line.startswith("Error: cannot connect")
        assert "manage.py tenancy_check" in line


def test_a_bad_setting_is_one_line():
    out = run_manage("tenant_list", EMPLOYER_PORTAL_DB_POOLER="sometimes")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        "Error: EMPLOYER_PORTAL_DB_POOLER must be one of none, session, transaction, "
        "not 'sometimes'"
    ]


@pytest.mark.parametrize(
    "url", ["notaurl", "postgresql://u:secret@h:54x2/db", "mysql://u@h/db"], ids=str
)
def test_a_malformed_database_url_is_one_line(url):
    out = run_manage("tenant_list", EMPLOYER_PORTAL_DB_URL=url)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: The database URL")
    assert "secret" not in out.stderr


def test_traceback_option_keeps_the_traceback():
    out = run_manage("tenant_list", "--traceback", EMPLOYER_PORTAL_DB_URL=BAD_URL)
    assert out.returncode == 1 and "Traceback" in out.stderr


def test_a_statement_error_is_not_called_a_connection_error():
    from employer_portal.command_errors import database_error_message, is_connection_error

    timeout = psycopg.errors.LockNotAvailable("canceling statement due to lock timeout")
    assert not is_connection_error(timeout)
    assert "cannot connect" not in database_error_message(timeout)
    assert is_connection_error(psycopg.OperationalError("connection failed: refused"))


# -- pooler ----------------------------------------------------------------------------------
@pytest.mark.skipif(not pgbouncer.available(), reason="pgbouncer is not installed")
def test_a_pooler_is_detected_and_checked_against_the_configuration(public_ready):
    direct = subprocess_env()["EMPLOYER_PORTAL_DB_URL"]
    dbname = conf.conninfo()["dbname"]
    with pgbouncer.pgbouncer(conf.conninfo(), mode="transaction") as port:
        pooled = f"postgresql://postgres@127.0.0.1:{port}/{dbname}"
        out = run_manage(
            "tenancy_check",
            "--format",
            "json",
            EMPLOYER_PORTAL_DB_URL=pooled,
            EMPLOYER_PORTAL_DB_POOLER="transaction",
            EMPLOYER_PORTAL_DIRECT_DB_URL=direct,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        found = checks(out.stdout)
        assert str(port) in found["connection"]["target"]
        assert found["pooler"]["detected"] == {"connection": True, "direct connection": False}
        assert found["pooler"]["status"] == "ok"
        # A pooler the configuration does not mention is a warning, not a failure.
        out = run_manage("tenancy_check", "--format", "json", EMPLOYER_PORTAL_DB_URL=pooled)
        assert out.returncode == 0, out.stdout + out.stderr
        pooler = checks(out.stdout)["pooler"]
        assert pooler["status"] == "warning" and pooler["detected"] == {"connection": True}
        assert "EMPLOYER_PORTAL_DB_POOLER=none, but a pooler" in pooler["message"]


# -- the embedded server's state files ---------------------------------------------------------
def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_handle_pids_unreadable_is_reset_and_dead_pids_dropped(tmp_path):
    handles = tmp_path / ".handle_pids.json"
    handles.write_text("")
    assert embedded_db.repair_state(tmp_path) == [".handle_pids.json: unreadable, reset"]
    assert json.loads(handles.read_text()) == []
    handles.write_text(json.dumps([os.getpid(), dead_pid()]))
    embedded_db.repair_state(tmp_path)
    assert json.loads(handles.read_text()) == [os.getpid()]
    assert embedded_db.repair_state(tmp_path) == []  # a sound file is left as it is


def pid_file(pid: int | str, folder: Path) -> str:
    return f"{pid}\n{folder}\n1700000000\n5432\n{folder}\n\n  123 456\nready   \n"


def test_postmaster_pid_of_another_program_or_unreadable_is_removed(tmp_path):
    pid, lock = tmp_path / "postmaster.pid", tmp_path / ".s.PGSQL.5432.lock"
    pid.write_text(pid_file(os.getpid(), tmp_path))  # alive, but python: a reused pid
    lock.write_text(f"{os.getpid()}\n{tmp_path}\n")
    repaired = embedded_db.repair_state(tmp_path)
    assert not pid.exists() and not lock.exists(), repaired
    pid.write_text("")
    embedded_db.repair_state(tmp_path)
    assert not pid.exists()
    # A dead pid is PostgreSQL's to handle (it checks its shared memory first): kept.
    pid.write_text(pid_file(dead_pid(), tmp_path))
    assert embedded_db.repair_state(tmp_path) == [] and pid.exists()


def stop_server(folder: Path) -> str:
    """SIGINT the postmaster (PostgreSQL's fast shutdown; it runs as pgserver's own user,
    so pg_ctl would refuse root), wait for it; the pid file's content, for replays."""
    content = (folder / "postmaster.pid").read_text()
    pid = int(content.splitlines()[0])
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return content
        time.sleep(0.1)
    raise AssertionError(f"the embedded server {pid} did not stop")


def write_as_server(path: Path, text: str) -> None:
    """A state file as the server's user leaves it (the data folder's owner)."""
    path.write_text(text)
    owner = path.parent.stat()
    os.chown(path, owner.st_uid, owner.st_gid)


@pytest.fixture
def second_server(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A second embedded server in tmp_path (the suite's own server is not touched)."""
    folder = tmp_path / "pgdata"
    env = {**subprocess_env(), "EMPLOYER_PORTAL_PGDATA": str(folder)}
    env.pop("EMPLOYER_PORTAL_DB_URL")
    env["TENANCY_MIGRATIONS_DIR"] = str(TEST_MIGRATIONS)
    try:
        yield folder, env
    finally:
        if (folder / "postmaster.pid").exists():
            with contextlib.suppress(ValueError, ProcessLookupError):
                stop_server(folder)


def check_embedded(env: dict[str, str]) -> int:
    out = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "tenancy_check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in out.stderr, out.stderr
    return out.returncode


def test_the_embedded_server_recovers_from_stale_state_files(second_server):
    folder, env = second_server
    migrate = [sys.executable, str(ROOT / "manage.py"), "migrate_tenants", "--public", "-v0"]
    subprocess.run(migrate, cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    assert check_embedded(env) == 0
    handles = folder / ".handle_pids.json"

    # The reported case: server and worker stopped by signals, the handle list left empty.
    saved = stop_server(folder)
    handles.write_text("")
    assert check_embedded(env) == 0
    assert isinstance(json.loads(handles.read_text()), list)

    # A lock file of the stopped server (its pid dead): PostgreSQL's own recovery.
    stop_server(folder)
    write_as_server(folder / "postmaster.pid", saved)
    assert check_embedded(env) == 0

    # Its pid since reused by another program (after a restart), with the socket's lock.
    saved = stop_server(folder)
    reused = str(os.getpid())
    write_as_server(folder / "postmaster.pid", reused + saved[saved.index("\n") :])
    write_as_server(folder / ".s.PGSQL.5432.lock", f"{reused}\n{folder}\n")
    assert check_embedded(env) == 0

    # A truncated lock file.
    stop_server(folder)
    write_as_server(folder / "postmaster.pid", "")
    assert check_embedded(env) == 0
