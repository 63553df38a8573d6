"""A real PgBouncer (Debian's ``pgbouncer``) in front of the test server, for the pooler
tests and ``bench/bench_pooler.py``.

It listens on a free port of 127.0.0.1, forwards every database name to the same name on
the server, trusts the user (the test server trusts it too), and stops with the block.
PgBouncer refuses to run as root, so under root it runs as the owner of the server's
socket folder (it must read the socket) or as ``nobody`` for a TCP server.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def available() -> bool:
    return Path(PGBOUNCER).exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as(host: str) -> str | None:
    if os.geteuid() != 0:
        return None
    if host.startswith("/"):
        return pwd.getpwuid(os.stat(host).st_uid).pw_name
    return "nobody"


def _config(
    server: dict[str, Any], mode: str, pool_size: int, port: int, folder: Path, reset: str | None
) -> str:
    host = server.get("host") or "127.0.0.1"
    target = f"host={host} port={server.get('port') or 5432}"
    # None keeps PgBouncer's default (DISCARD ALL in session mode); "" turns it off, so that
    # state a client left on a server connection reaches the next client.
    reset_line = "" if reset is None else f"server_reset_query = {reset}"
    return f"""
[databases]
* = {target}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {folder / "userlist.txt"}
pool_mode = {mode}
default_pool_size = {pool_size}
max_client_conn = 500
max_db_connections = {pool_size}
logfile = {folder / "pgbouncer.log"}
pidfile = {folder / "pgbouncer.pid"}
{reset_line}
"""


@contextmanager
def pgbouncer(
    server: dict[str, Any], *, mode: str, pool_size: int = 1, reset_query: str | None = None
) -> Iterator[int]:
    """Start PgBouncer in ``mode`` (transaction or session) in front of ``server`` (psycopg
    connection parameters: host, port, user, password); yields the port it listens on.
    Clients are trusted; PgBouncer logs in to the server with the server's password."""
    folder = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    port = free_port()
    user = server.get("user") or "postgres"
    password = str(server.get("password") or "").replace('"', '""')
    (folder / "userlist.txt").write_text(f'"{user}" "{password}"\n')
    config = _config(server, mode, pool_size, port, folder, reset_query)
    (folder / "pgbouncer.ini").write_text(config)
    run_as = _run_as(str(server.get("host") or ""))
    if run_as:
        uid = pwd.getpwnam(run_as).pw_uid
        for path in [folder, *folder.iterdir()]:
            os.chown(path, uid, -1)
    command = [PGBOUNCER, *(["-u", run_as] if run_as else []), str(folder / "pgbouncer.ini")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_listening(port, process, folder)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


def _wait_listening(port: int, process: subprocess.Popen, folder: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = folder / "pgbouncer.log"
            detail = log.read_text() if log.exists() else ""
            output = process.stdout.read().decode() if process.stdout else ""
            raise RuntimeError(f"pgbouncer exited: {output}{detail}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("pgbouncer did not start listening within 10 s")
