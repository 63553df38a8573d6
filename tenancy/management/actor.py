"""Who a command acts as, for the audit log: ``cli:<OS user>`` unless ``--actor`` says."""

from __future__ import annotations

import getpass
import os


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return f"cli:uid{os.getuid()}"
