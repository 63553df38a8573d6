"""The errors a person reads, and the exit codes commands map them to: one place.

Every error raised for a user (bad input, a refusal, an operation that failed and was
undone) is a ``TenancyError``; commands print its message on one line, with no traceback,
and exit with its ``exit_code``; the admin shows the message.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # a schema failed, bad input, a refusal, an unavailable database
EXIT_PENDING = 2  # --check: something is pending (or a verb would change something)
EXIT_DRIFT = 3  # the ledger and the files disagree: nothing was applied
EXIT_HALTED = 4  # a rollout's stage passed its failure threshold (or its verification failed)
EXIT_AWAITING_APPROVAL = 5  # a rollout's stage is done and the next one waits for a person


class TenancyError(Exception):
    exit_code = EXIT_FAILED


class RunError(TenancyError):
    """A run that cannot start: bad arguments, no infrastructure, an unreadable file."""


class Interrupted(KeyboardInterrupt):
    """A signal stopped the run: the schema in progress was rolled back, unless it was in a
    step that runs outside a transaction (``outside_transaction`` names those: what the
    server did of it stays, for the re-run to adopt). A KeyboardInterrupt, so that psycopg
    cancels the statement in progress and leaves the connection usable."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.outside_transaction: list[str] = []  # "schema: file" in such a step

    def what_happened(self) -> str:
        """What became of the schemas in progress, for the person who pressed Ctrl-C."""
        if not self.outside_transaction:
            return "the schema in progress was rolled back (its transaction)"
        return (
            f"{'; '.join(self.outside_transaction)} was in a step that runs outside a "
            "transaction, so it was not rolled back: what the server finished of it stays, "
            "and the re-run adopts it (an index built VALID is taken as built, one left "
            "INVALID is dropped and built again); any other schema in progress was rolled back"
        )

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
