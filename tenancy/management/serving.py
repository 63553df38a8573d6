"""`make run`'s processes (``run_demo``): the job worker and the web server as children,
each in a process group of its own so that stopping one stops all of it (runserver's
autoreloader runs the server in a child of its own), and a waiter that calls back once the
web server answers HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

STOP_WAIT_S = 10.0  # a worker finishing its current job, a server closing its sockets
ANSWER_WAIT_S = 180.0  # system checks and the first import of every module
POLL_S = 0.25

# No proxy for a server on this machine, whatever http_proxy says.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def child_env() -> dict[str, str]:
    """The environment of a child command: ours, minus manage.py's per-process mark (each
    child's manage.py sets its own: runserver connects as the deployed app does), and
    unbuffered so that its lines come as they are written, to a terminal or a pipe."""
    env = dict(os.environ)
    env.pop("EMPLOYER_PORTAL_PROCESS", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def manage_py() -> Path:
    """The manage.py this command was started from."""
    from django.conf import settings

    started = Path(sys.argv[0])
    return started if started.name == "manage.py" else Path(settings.BASE_DIR) / "manage.py"


class Children:
    """Child ``manage.py`` commands, stopped together."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, str(manage_py()), *args], env=child_env(), process_group=0
        )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        """SIGINT to every group (Ctrl-C: both commands stop cleanly), SIGKILL to a group
        still there after STOP_WAIT_S."""
        for proc in self.procs:
            _signal_group(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + STOP_WAIT_S
        for proc in self.procs:
            while _group_alive(proc.pid) and time.monotonic() < deadline:
                proc.poll()  # reap the group's leader, so that it no longer counts
                time.sleep(0.05)
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()


def _signal_group(pgid: int, signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def answers(url: str, timeout: float = 2.0) -> bool:
    """Whether an HTTP server answers at ``url`` (an error status is an answer too)."""
    try:
        _opener.open(url, timeout=timeout).close()
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False
    return True


def when_answering(
    url: str, server: subprocess.Popen, then: Callable[[], None], wait_s: float = ANSWER_WAIT_S
) -> threading.Thread:
    """Call ``then`` once ``url`` answers while ``server`` runs (never, if it stops first or
    takes longer than ``wait_s``), from a background thread."""

    def wait() -> None:
        deadline = time.monotonic() + wait_s
        while server.poll() is None and time.monotonic() < deadline:
            if answers(url):
                if server.poll() is None:  # our server, not another one on the port
                    then()
                return
            time.sleep(POLL_S)

    thread = threading.Thread(target=wait, name="login-when-answering", daemon=True)
    thread.start()
    return thread
