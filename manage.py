#!/usr/bin/env python
"""Django's command-line utility for the Employer Portal."""

import os
import sys

WEB_SERVERS = {"runserver", "testserver"}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "employer_portal.settings")
    # Commands (migrations, the job worker) connect directly when a direct URL is set; the
    # development web server connects the way the deployed app does (settings.py).
    if len(sys.argv) > 1 and sys.argv[1] not in WEB_SERVERS:
        os.environ.setdefault("EMPLOYER_PORTAL_PROCESS", "command")
    from django.core.management import execute_from_command_line

    from employer_portal.command_errors import one_line_errors

    # An unreachable database or a bad setting: one line, exit 1 (--traceback for more).
    with one_line_errors(sys.argv):
        execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
