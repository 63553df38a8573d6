"""django-tenants' introspection (table lists of the current schema only), with the
schema's search_path set for the transaction instead of the session.

django-tenants wraps each introspection method in a session-level ``SET search_path`` and
sets the old value back afterwards; behind a transaction pooler the two may reach different
server connections, and either leaves the session changed. Here each method runs in a
transaction (a savepoint inside one) whose search_path is the schema's, and the path is set
back within that transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import transaction
from django.db.backends.postgresql.introspection import DatabaseIntrospection
from psycopg import sql

_SET_PATH = "SELECT current_setting('search_path'), set_config('search_path', %s, true)"
_SET_BACK = "SELECT set_config('search_path', %s, true)"


class DatabaseSchemaIntrospection(DatabaseIntrospection):
    @contextmanager
    def _on_schema(self, cursor: Any) -> Iterator[None]:
        schema = sql.Identifier(self.connection.schema_name).as_string(None)
        with transaction.atomic(using=self.connection.alias):
            cursor.execute(_SET_PATH, [schema])
            previous = cursor.fetchone()[0]
            try:
                yield
            finally:
                cursor.execute(_SET_BACK, [previous])

    def _within(self, method: Callable[..., Any], cursor: Any, *args: Any) -> Any:
        with self._on_schema(cursor):
            return method(cursor, *args)

    def get_table_list(self, cursor: Any) -> Any:
        return self._within(super().get_table_list, cursor)

    def get_table_description(self, cursor: Any, table_name: str) -> Any:
        return self._within(super().get_table_description, cursor, table_name)

    def get_sequences(self, cursor: Any, table_name: str, table_fields: Any = ()) -> Any:
        return self._within(super().get_sequences, cursor, table_name, table_fields)

    def get_key_columns(self, cursor: Any, table_name: str) -> Any:
        return self._within(super().get_key_columns, cursor, table_name)

    def get_constraints(self, cursor: Any, table_name: str) -> Any:
        return self._within(super().get_constraints, cursor, table_name)
