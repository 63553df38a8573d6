"""The bridge from Django settings to the engine: connection parameters and options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from tenancy.engine.executor import Options
from tenancy.engine.names import Naming
from tenancy.engine.source import Limits

DEFAULTS: dict[str, Any] = {
    "LOCK_TIMEOUT_MS": 500,
    "LOCK_RETRIES": 10,
    "SCHEMA_LOCK_WAIT_S": 600.0,
    "MAX_TENANTS": 10000,
    "MAX_CREATIONS_PER_HOUR": 100,
    "DOMAIN_SUFFIX": "localhost",
    "ENGINE_DATABASE": "default",
    "ENGINE_POOLER": "none",
    # Lint rule → "error" | "warning" | "off" (lint_migrations); {} keeps each rule's default.
    "LINT": {},
    # Alerts on failed, refused and interrupted runs (services/alerts.py); "" sends no POST.
    "ALERT_WEBHOOK_URL": "",
    "ALERT_TIMEOUT_S": 3.0,  # per webhook attempt (and the admins' mail connection)
    "ALERT_RETRIES": 2,
    # Bearer token of the Prometheus endpoint (tenancy/metrics.py); "" allows staff only.
    "METRICS_TOKEN": "",
    # What a migration file may be (engine/source.py Limits): refused in one line beyond.
    "MAX_FILE_BYTES": 5 * 1024 * 1024,
    "MAX_STATEMENTS": 10_000,
    # What an organization id looks like, and the schema name's prefix (engine/names.py
    # Naming): a project's choice; the example project sets Auth0's org_… and tenant_.
    "ORG_ID_PATTERN": Naming.org_id_pattern,
    "ORG_ID_LABEL": Naming.org_id_label,
    "ORG_ID_EXAMPLE": Naming.org_id_example,
    "ORG_ID_RULE": Naming.org_id_rule,  # the pattern in words, for error messages
    "SCHEMA_PREFIX": Naming.schema_prefix,
    # Tables in public that tenants' requests may read and write: [] (none), a list of
    # names, or "shared-apps" (django-tenants' behaviour): services/ownership.py.
    "TENANT_SHARED_TABLES": [],
    "POOL_SIZE": 0,
    # Named staged-rollout policies for `migrate_tenants --rollout NAME`: {name: [stage,
    # ...]} (services/rollout_policy.py, docs/rollouts.md).
    "ROLLOUTS": {},
    # True when the project started an embedded PostgreSQL for itself (tenancy_check's
    # wording and hints); the example project sets it.
    "EMBEDDED_SERVER": False,
}


def setting(name: str) -> Any:
    return {**DEFAULTS, **getattr(settings, "TENANCY", {})}[name]


def naming() -> Naming:
    """The project's organization ids and schema names, from the settings."""
    return Naming(
        org_id_pattern=str(setting("ORG_ID_PATTERN")),
        org_id_label=str(setting("ORG_ID_LABEL")),
        org_id_example=str(setting("ORG_ID_EXAMPLE")),
        org_id_rule=str(setting("ORG_ID_RULE")),
        schema_prefix=str(setting("SCHEMA_PREFIX")),
    )


def migrations_dir() -> Path:
    """``TENANCY["MIGRATIONS_DIR"]``, the one setting without a default (checks.py names
    it at start-up): the folder of ``public/`` and ``tenant/`` SQL files."""
    try:
        return Path(setting("MIGRATIONS_DIR"))
    except KeyError:
        raise ImproperlyConfigured(
            "TENANCY['MIGRATIONS_DIR'] is not set: the folder holding public/ and tenant/."
        ) from None


def source_limits() -> Limits:
    """What a migration file may be (size, statements), from the settings."""
    return Limits(int(setting("MAX_FILE_BYTES")), int(setting("MAX_STATEMENTS")))


def lint_severities() -> dict[str, str]:
    """The linter's severity overrides (``TENANCY["LINT"]``); rules.lint validates them."""
    return dict(setting("LINT") or {})


def engine_through_transaction_pooler() -> bool:
    """True when the engine's connections go through a transaction-pooling pooler, where
    a session (and so a session-level lock) lasts one transaction only."""
    return setting("ENGINE_POOLER") == "transaction"


def conninfo(alias: str | None = None) -> dict[str, Any]:
    """psycopg connection parameters of the engine's database (the direct one when
    configured; the test database in tests), or of the Django database ``alias``."""
    sd = connections[alias or setting("ENGINE_DATABASE")].settings_dict
    params: dict[str, Any] = {
        "dbname": sd["NAME"],
        "user": sd.get("USER") or None,
        "password": sd.get("PASSWORD") or None,
        "host": sd.get("HOST") or None,
        "port": sd.get("PORT") or None,
        "application_name": "tenancy",
    }
    for key, value in (sd.get("OPTIONS") or {}).items():
        if key not in {"pool", "server_side_binding", "isolation_level", "assume_role"}:
            params[key] = value
    params = {k: v for k, v in params.items() if v is not None}
    if alias is None and engine_through_transaction_pooler():
        # A prepared statement lives in one server session: the pooler would lose it.
        params["prepare_threshold"] = None
    return params


def engine_options(**overrides: Any) -> Options:
    options = Options(
        lock_timeout_ms=setting("LOCK_TIMEOUT_MS"),
        lock_retries=setting("LOCK_RETRIES"),
        schema_lock_wait_s=setting("SCHEMA_LOCK_WAIT_S"),
        transaction_pooler=engine_through_transaction_pooler(),
    )
    for key, value in overrides.items():
        if value is not None:
            setattr(options, key, value)
    return options
