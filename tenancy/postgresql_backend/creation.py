"""Django's test-database creation, with the engine's pooled connections closed before the
test database is dropped: they are sessions on it, and PostgreSQL refuses to drop a
database someone is connected to ("being accessed by other users")."""

from __future__ import annotations

from django.db.backends.postgresql.creation import DatabaseCreation as PostgresCreation

from tenancy.engine import db


class DatabaseCreation(PostgresCreation):
    def _destroy_test_db(self, test_database_name: str, verbosity: int) -> None:
        db.close_idle()
        super()._destroy_test_db(test_database_name, verbosity)
