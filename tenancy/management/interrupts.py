"""SIGINT and SIGTERM during a run: stop cleanly instead of dying with a traceback.

The signal raises ``Interrupted`` (engine/errors.py) in the main thread; the run service rolls
back the schema in progress (its transaction), marks the run 'interrupted', and the command exits
128 + the signal number (130 for Ctrl-C, 143 for SIGTERM), the shell's convention.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from tenancy.engine.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextmanager
def interruptible() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals (a command called from a worker)
        return
    previous = {s: signal.signal(s, _raise) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
