"""One line instead of a traceback when a command cannot reach its database.

A wrong or unreachable database URL, a bad setting or an embedded server that will not
start is the user's to fix, and 35 lines of traceback hide the one that says what is
wrong. ``manage.py`` runs every command inside ``one_line_errors``; ``--traceback`` keeps
the traceback, and other errors (bugs) keep theirs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from django.core.exceptions import ImproperlyConfigured
from django.db.utils import InterfaceError as DjangoInterfaceError
from django.db.utils import OperationalError as DjangoOperationalError

# SQLSTATEs that mean "no usable connection" rather than "this statement failed":
# connection exceptions, authentication, unknown database, shutdowns, too many clients.
CONNECTION_CLASSES = ("08", "28", "3D")
CONNECTION_CODES = {"57P01", "57P02", "57P03", "53300"}
DATABASE_ERRORS = (
    DjangoOperationalError,
    DjangoInterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


@contextmanager
def one_line_errors(argv: list[str]) -> Iterator[None]:
    if "--traceback" in argv:
        yield
        return
    try:
        yield
    except ImproperlyConfigured as exc:
        _fail(f"Error: {_first_line(exc)}")
    except DATABASE_ERRORS as exc:
        _fail(database_error_message(exc))


def _fail(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.exit(1)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _origin(exc: BaseException) -> BaseException:
    """Django wraps the driver's error; its SQLSTATE is on the original."""
    cause = exc.__cause__
    return (
        cause if isinstance(exc, DjangoOperationalError | DjangoInterfaceError) and cause else exc
    )


def is_connection_error(exc: BaseException) -> bool:
    origin = _origin(exc)
    if isinstance(origin, psycopg.InterfaceError):
        return True
    state = getattr(origin, "sqlstate", None)
    if state is None:  # raised by the client itself: connecting, or the connection broke
        return isinstance(origin, psycopg.OperationalError)
    return state[:2] in CONNECTION_CLASSES or state in CONNECTION_CODES


def database_error_message(exc: BaseException) -> str:
    first = _first_line(_origin(exc))
    if not is_connection_error(exc):
        return f"Error: the database refused: {first} (run with --traceback to see where)"
    return (
        f"Error: cannot connect to the database ({_target()}): {first}. "
        f"Check {_variables()}; manage.py tenancy_check tells more."
    )


def _target() -> str:
    try:
        from django.conf import settings

        return describe(settings.DATABASES["default"])
    except Exception:  # the settings themselves may be what failed
        return "unknown"


def describe(settings_dict: Mapping[str, Any]) -> str:
    """``user@host:port/db``, or the socket folder for a unix socket."""
    user = settings_dict.get("USER") or os.environ.get("PGUSER") or "?"
    options = settings_dict.get("OPTIONS") or {}
    host = str(settings_dict.get("HOST") or options.get("host") or "")  # ?host=/socket URLs
    name = settings_dict.get("NAME") or "?"
    if not host or host.startswith("/"):
        return f"{user}@{host or 'default socket'} (unix socket), database {name}"
    return f"{user}@{host}:{settings_dict.get('PORT') or 5432}/{name}"


def _variables() -> str:
    """The variable that chose the failing URL (settings.py's order)."""
    if os.environ.get("EMPLOYER_PORTAL_DIRECT_DB_URL") and (
        os.environ.get("EMPLOYER_PORTAL_PROCESS") == "command"
    ):
        return "EMPLOYER_PORTAL_DIRECT_DB_URL"
    if os.environ.get("EMPLOYER_PORTAL_DB_URL") or os.environ.get("DATABASE_URL"):
        return "EMPLOYER_PORTAL_DB_URL / DATABASE_URL"
    return "the embedded server's log (.pgdata/log), or set EMPLOYER_PORTAL_DB_URL"
