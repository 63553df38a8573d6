"""The embedded PostgreSQL server used when no database URL is configured.

A fresh machine needs nothing installed: the ``pgserver`` package ships PostgreSQL
binaries, and we keep its data folder inside the checkout (git-ignored). The server
keeps running after this process exits, so ``make run``, a second shell and the test
suite all share one server; ``get_server`` reuses it when it is already up.

pgserver trusts its state files blindly, and processes stopped by signals leave them
stale or half-written; ``repair_state`` puts them right before pgserver reads them:

- ``.handle_pids.json``: the pids of processes holding a handle, rewritten (truncated,
  then written) by every process that starts. A process killed in between leaves it empty
  and pgserver fails on every later start with a ``JSONDecodeError``. It only matters for
  pgserver's ``cleanup_mode`` (we use None: the server outlives us), so an unreadable list
  is reset and the pids of dead processes are dropped.
- ``postmaster.pid``: PostgreSQL's own lock file. pgserver parses it (exactly 8 lines, or
  an ``AssertionError``) and takes a live process with that pid for the server. A file
  whose pid is dead is left alone: PostgreSQL removes it itself after checking that no
  process of the old server still uses its shared memory (removing it by hand loses that
  check). An unreadable file, or one whose pid now belongs to another program, is removed
  (with the socket lock files that name that pid), but only when no PostgreSQL process
  works in the data folder.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = BASE_DIR / ".pgdata"
PID_FILE_LINES = 8  # what pgserver's PostmasterInfo requires
READY_WAIT_S = 15.0  # a server starting up or shutting down settles within this
STOP_WAIT_S = 60.0  # a fast shutdown: sessions ended, a checkpoint written


class EmbeddedServerError(ImproperlyConfigured):
    """The embedded server cannot be started or reached. An ImproperlyConfigured, since it
    is raised while the settings load: manage.py prints it on one line."""


def data_dir() -> Path:
    """The embedded server's data folder (``EMPLOYER_PORTAL_PGDATA`` moves it)."""
    return Path(os.environ.get("EMPLOYER_PORTAL_PGDATA", DEFAULT_DATA_DIR)).expanduser().resolve()


# A start that failed, per data folder. Django imports the settings a second time after
# they failed; pgserver then hands back its half-made server object, and the error would
# be a bare AssertionError instead of the real reason.
_failed: dict[Path, EmbeddedServerError] = {}


def embedded_database_settings(dbname: str) -> dict[str, object]:
    """Start (or reuse) the embedded server and return Django DATABASES settings for it."""
    folder = data_dir()
    if folder in _failed:
        raise _failed[folder]
    errors: list[str] = []
    try:
        with _pgserver_errors(errors):
            socket_dir = _start(folder)
            _ensure_database(socket_dir, dbname)
    except EmbeddedServerError as exc:
        _failed[folder] = exc
        raise
    except Exception as exc:  # any failure of pgserver, pg_ctl or the first connection
        _failed[folder] = EmbeddedServerError(_why(exc, folder, errors))
        raise _failed[folder] from exc
    return {
        "NAME": dbname,
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": socket_dir,
        "PORT": "",
    }


def _pgserver() -> Any:
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
        import pgserver.postgres_server

    return pgserver


def _start(folder: Path) -> str:
    """Repair the state files under pgserver's own inter-process lock (the one it holds
    while it reads and writes them), then start or reuse the server; its socket folder."""
    pgserver = _pgserver()
    if folder.exists():
        with pgserver.postgres_server.PostgresServer._lock:
            repair_state(folder)
    server = pgserver.get_server(folder, cleanup_mode=None)
    info = server.get_postmaster_info()
    return str(info.socket_dir) if info.socket_dir else str(folder)


class _Errors(logging.Handler):
    """Keeps the stderr of a failed PostgreSQL program, which pgserver only logs."""

    def __init__(self, found: list[str]):
        super().__init__(logging.ERROR)
        self.found = found

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "stderr:\n" in message:
            text = message.split("stderr:\n", 1)[1].split("\n---", 1)[0]
            self.found += [line.strip() for line in text.splitlines() if line.strip()]


@contextmanager
def _pgserver_errors(found: list[str]) -> Iterator[None]:
    """pgserver logs a failed start with the whole server log (megabytes) through Python's
    last-resort handler: keep its logs to ourselves, and the failed program's stderr."""
    logger = logging.getLogger("pgserver")
    handler, propagate = _Errors(found), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _why(exc: BaseException, folder: Path, stderr: list[str]) -> str:
    if isinstance(exc, subprocess.CalledProcessError):
        what = f"pg_ctl failed (exit {exc.returncode}){': ' + stderr[-1] if stderr else ''}"
    elif isinstance(exc, subprocess.TimeoutExpired):
        what = "the server did not start in time"
    else:
        what = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    log = folder / "log"
    last = _last_problem(log)
    return (
        f"the embedded PostgreSQL in {folder} could not be started or reached: {what}"
        f"{f' ({last})' if last else ''}. Its log: {log}"
    )


def _last_problem(log: Path) -> str:
    """The last FATAL/PANIC/ERROR line of the server log (read from its end only)."""
    try:
        with log.open("rb") as f:
            f.seek(max(0, log.stat().st_size - 8192))
            tail = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    found = [line for line in tail if any(w in line for w in ("FATAL:", "PANIC:", "ERROR:"))]
    return found[-1].strip() if found else ""


def _ensure_database(socket_dir: str, dbname: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(
        host=socket_dir, dbname="postgres", user="postgres", autocommit=True, connect_timeout=10
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


# -- state files -----------------------------------------------------------------------------
def repair_state(folder: Path) -> list[str]:
    """Make pgserver's state files in ``folder`` readable and true; what was repaired."""
    return _repair_handle_pids(folder / ".handle_pids.json") + _repair_pid_file(folder)


def _repair_handle_pids(path: Path) -> list[str]:
    import psutil

    try:
        pids = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError):
        pids = None
    valid = isinstance(pids, list) and all(type(p) is int for p in pids)
    live = [p for p in pids if psutil.pid_exists(p)] if valid else []
    if valid and live == pids:
        return []
    _write_atomically(path, json.dumps(live))
    return [f"{path.name}: {'dropped dead pids' if valid else 'unreadable, reset'}"]


def _write_atomically(path: Path, text: str) -> None:
    """Readers see the old list or the new one, never an empty file."""
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _read_lines(path: Path) -> list[str] | None:
    try:
        return path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return None


def _pid_of(lines: list[str]) -> int | None:
    try:
        return int(lines[0].strip())
    except (IndexError, ValueError):
        return None


def _parsable(lines: list[str]) -> bool:
    """What pgserver's PostmasterInfo can read: 8 lines, numbers where it wants them."""
    if len(lines) != PID_FILE_LINES:
        return False
    pid, _, start, port = (line.strip() for line in lines[:4])
    return pid.isdigit() and start.isdigit() and (port == "" or port.isdigit())


def _repair_pid_file(folder: Path) -> list[str]:
    pid_file = folder / "postmaster.pid"
    lines = _read_lines(pid_file)
    if lines is None:
        return []
    pid = _pid_of(lines)
    if pid is not None and _is_our_postmaster(pid, folder):
        _wait_ready(pid_file, pid, folder)
        return []
    if _parsable(lines) and not _alive(pid or 0):
        return []  # stale: PostgreSQL checks its shared memory and removes the file itself
    busy = _postgres_in(folder)
    if busy:
        raise EmbeddedServerError(
            f"{pid_file} is unreadable or names another program, and PostgreSQL process(es) "
            f"{', '.join(map(str, busy))} still work in {folder}: stop them "
            f"(kill -INT {busy[0]}) and run the command again."
        )
    socket_dir = Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else folder
    pid_file.unlink(missing_ok=True)
    return [f"{pid_file.name}: removed (pid {pid}: not this server)"] + _repair_socket_locks(
        {folder, socket_dir}, folder
    )


def _repair_socket_locks(dirs: set[Path], folder: Path) -> list[str]:
    """Socket lock files (``.s.PGSQL.<port>.lock``) whose pid is alive but not this
    server, or unreadable: PostgreSQL refuses to start over them."""
    repaired = []
    for directory in dirs:
        for lock in directory.glob(".s.PGSQL.*.lock"):
            pid = _pid_of(_read_lines(lock) or [])
            if pid is None or (_alive(pid) and not _is_our_postmaster(pid, folder)):
                lock.unlink(missing_ok=True)
                repaired.append(f"{lock.name}: removed")
    return repaired


def _alive(pid: int) -> bool:
    import psutil

    return pid > 0 and psutil.pid_exists(pid)


def _is_our_postmaster(pid: int, folder: Path) -> bool:
    import psutil

    try:
        process = psutil.Process(pid)
        return process.name() == "postgres" and _works_in(process, folder)
    except psutil.Error:
        return False


def _works_in(process: Any, folder: Path) -> bool:
    """The postmaster names its data folder on its command line; every PostgreSQL process
    of a server has it as working directory. A process we may not inspect is not ours: the
    server runs as this user (under root, as pgserver's user, which root can inspect)."""
    import psutil

    try:
        return str(folder) in process.cmdline() or Path(process.cwd()) == folder
    except psutil.Error:
        return False


def _postgres_in(folder: Path) -> list[int]:
    """PostgreSQL processes (a postmaster, or backends that outlived it) in ``folder``."""
    import psutil

    found = []
    for process in psutil.process_iter(["name"]):
        if process.info["name"] == "postgres" and _works_in(process, folder):
            found.append(process.pid)
    return found


def _wait_ready(pid_file: Path, pid: int, folder: Path) -> None:
    """A server starting up or shutting down: wait until it is ready or gone, since
    pgserver takes a running server that is not ready for an error."""
    deadline = time.monotonic() + READY_WAIT_S
    while time.monotonic() < deadline:
        lines = _read_lines(pid_file)
        if lines is None or not _is_our_postmaster(pid, folder):
            return
        if _parsable(lines) and lines[-1].strip() == "ready":
            return
        time.sleep(0.2)


# -- make stop-db ------------------------------------------------------------------------------
def stop_server(folder: Path | None = None) -> str:
    """Stop the embedded server of ``folder`` (default: ``data_dir()``), keeping its data:
    SIGINT to its postmaster, PostgreSQL's fast shutdown (pg_ctl refuses root, and under root
    the server runs as pgserver's own user), then wait until it is gone. What was done, in
    one line; a pid file naming another program is not signalled."""
    folder = folder or data_dir()
    pid = _pid_of(_read_lines(folder / "postmaster.pid") or [])
    if pid is None or not _is_our_postmaster(pid, folder):
        return f"The embedded PostgreSQL in {folder} is not running."
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + STOP_WAIT_S
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        raise EmbeddedServerError(
            f"the embedded PostgreSQL in {folder} (pid {pid}) did not stop within "
            f"{STOP_WAIT_S:.0f} s; its log: {folder / 'log'}"
        )
    return (
        f"Stopped the embedded PostgreSQL in {folder}; its data is kept (the next command "
        "starts it again; make clean-db deletes it)."
    )


def main(argv: list[str]) -> int:
    """``python -m employer_portal.embedded_db stop``: what ``make stop-db`` runs."""
    if argv != ["stop"]:
        print("usage: python -m employer_portal.embedded_db stop", file=sys.stderr)
        return 2
    try:
        print(stop_server())
    except EmbeddedServerError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
