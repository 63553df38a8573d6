"""Tenant names: organization ids, schema names, role names, domains.

Everything here is pure: it validates before any SQL runs. Identifiers that pass are
still always composed with ``psycopg.sql.Identifier``, never formatted into SQL.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from tenancy.engine.errors import TenancyError

PUBLIC_SCHEMA = "public"
MAX_IDENTIFIER_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1; longer names are silently truncated

_SCHEMA = re.compile(r"[a-z_][a-z0-9_]*")  # what an org id's schema is made of
# Any schema a tenant may have (django-tenants' rule: names reach SQL only
# through sql.Identifier, and quotes, backslashes, semicolons and control characters are
# refused besides, so that no name can end a quoted identifier or a statement in a log or script).
_ANY_SCHEMA = re.compile(r"[^\"'\\;\x00-\x1f\x7f]+")
_RESERVED = ("public", "information_schema")
MAX_ORG_NAME_CHARS = 255  # tenant_registry.organization_name is VARCHAR(255)
# A tenant's tag (tenant_registry.tags is VARCHAR(64)[]): lower case, so that `EU` and `eu`
# are never two tags, and nothing a shell, a URL or a comma-separated list would split.
_TAG = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")

# The custom setting that names the request's tenant: RLS policies compare rows with it.
CURRENT_TENANT_SETTING = "app.current_tenant"


@dataclass(frozen=True)
class Naming:
    """What an organization id looks like and how its schema is named: a project's choice
    (``TENANCY["ORG_ID_PATTERN"]`` and kin, applied by ``tenancy.apps``), not tenancy's.
    The pattern must only accept ids whose lower-cased form, after the prefix, is a valid
    unquoted schema name (letters, digits, underscores)."""

    org_id_pattern: str = r"[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*"
    org_id_label: str = "organization id"
    org_id_example: str = "acme_corp"
    org_id_rule: str = (
        "a letter, then letters and digits, optionally in words joined by single underscores"
    )
    schema_prefix: str = ""


_naming = Naming()
_org_id = re.compile(_naming.org_id_pattern)


def configure(naming: Naming) -> None:
    """Use ``naming`` from now on (once, at start-up)."""
    global _naming, _org_id
    _org_id = re.compile(naming.org_id_pattern)
    _naming = naming


def naming() -> Naming:
    return _naming


def schema_prefix() -> str:
    return _naming.schema_prefix


class InvalidName(TenancyError, ValueError):
    """A name that must never reach SQL."""


def validate_org_id(org_id: str) -> str:
    """Return ``org_id`` if it matches the project's organization id pattern and makes a
    schema name within PostgreSQL's limit, else raise."""
    label, example = _naming.org_id_label, _naming.org_id_example
    if not isinstance(org_id, str) or not org_id:
        raise InvalidName(f"An {label} is required (e.g. {example}).")
    if not _org_id.fullmatch(org_id):
        raise InvalidName(
            f"Invalid {label} {org_id!r}: expected {_naming.org_id_rule} (e.g. {example})."
        )
    schema = _naming.schema_prefix + org_id.lower()
    if not _SCHEMA.fullmatch(schema) or schema in _RESERVED or schema.startswith("pg_"):
        raise InvalidName(f"{label.capitalize()} {org_id!r} does not make a valid schema name.")
    if len(schema.encode()) > MAX_IDENTIFIER_BYTES:
        raise InvalidName(
            f"{label.capitalize()} {org_id!r} is too long: its schema name {schema!r} would be "
            f"{len(schema.encode())} bytes, over PostgreSQL's {MAX_IDENTIFIER_BYTES}-byte limit "
            "(names are refused, never truncated)."
        )
    return org_id


def validate_org_name(name: str | None, org_id: str) -> str:
    """The display name of an organization: any Unicode text (companies have accented names),
    stripped, at most 255 characters, without control characters (NUL cannot be stored and
    line breaks or escapes would forge lines in listings and logs). Empty: the org id."""
    if name is not None and not isinstance(name, str):
        raise InvalidName("The organization name must be text.")
    name = (name or "").strip() or org_id
    if len(name) > MAX_ORG_NAME_CHARS:
        raise InvalidName(
            f"The organization name is {len(name)} characters long; at most "
            f"{MAX_ORG_NAME_CHARS} are allowed."
        )
    bad = sorted({f"U+{ord(c):04X}" for c in name if unicodedata.category(c) in {"Cc", "Cs"}})
    if bad:
        raise InvalidName(
            f"The organization name {name!r} contains control characters ({', '.join(bad)})."
        )
    return name


def schema_for_org(org_id: str) -> str:
    """The prefix + the lower-cased org id: lower case keeps the migration guide's psql and
    ``schemaname||'.'||tablename`` queries working. Case twins are refused by the service."""
    return _naming.schema_prefix + validate_org_id(org_id).lower()


def validate_schema_name(name: str, *, allow_public: bool = True) -> str:
    """Validate a schema name given on a command line (``--tenant tenant_org_x``) or by a
    project's tenant model."""
    if not isinstance(name, str) or not _ANY_SCHEMA.fullmatch(name):
        raise InvalidName(
            f"Invalid schema name {name!r}: quotes, backslashes, semicolons and control "
            "characters are not allowed."
        )
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise InvalidName(f"Schema name {name!r} is longer than {MAX_IDENTIFIER_BYTES} bytes.")
    if name == PUBLIC_SCHEMA:
        if not allow_public:
            raise InvalidName("'public' is the shared schema, not a tenant.")
        return name
    if name.startswith("pg_") or name in _RESERVED:
        raise InvalidName(f"Schema name {name!r} is reserved by PostgreSQL.")
    return name


def role_for_schema(schema: str, database: str) -> str:
    """The NOLOGIN role of a tenant. Roles belong to the whole server, so the name carries a
    short hash of the database: test databases on one server never share a tenant's role."""
    return role_prefix(database) + _fit(schema, MAX_IDENTIFIER_BYTES - len(role_prefix(database)))


def role_prefix(database: str) -> str:
    return "tr" + _db_hash(database) + "_"


def owner_role_for_schema(schema: str, database: str) -> str:
    """The NOLOGIN role that owns a tenant's schema and every object in it: the tenant's
    migrations run under it (it may change its own schema only). Requests never use it."""
    prefix = owner_role_prefix(database)
    return prefix + _fit(schema, MAX_IDENTIFIER_BYTES - len(prefix))


def owner_role_prefix(database: str) -> str:
    return "to" + _db_hash(database) + "_"


def owner_group_role(database: str) -> str:
    """The group of every tenant owner role: what tenant migrations may use in ``public``
    is granted to it (nothing by default; see docs/migrations.md)."""
    return "tg" + _db_hash(database) + "_owners"


def _db_hash(database: str) -> str:
    return hashlib.sha256(database.encode()).hexdigest()[:6]


def app_role(database: str) -> str:
    """The role that request handling switches to: owns nothing, bypasses no RLS."""
    return "ta" + _db_hash(database) + "_app"


def _fit(name: str, limit: int) -> str:
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return name[: limit - 9] + "_" + digest


def domain_for_org(org_id: str, suffix: str) -> str:
    """``<org id>.localhost``: lower case, '_' as '-', since a host name may not hold '_'."""
    return f"{validate_org_id(org_id).lower().replace('_', '-')}.{suffix}"


def validate_tag(tag: str) -> str:
    """Return ``tag`` if it is a valid tenant tag (``enterprise``, ``eu-west``, ``beta.2``),
    else raise: lower-case letters, digits, ``_``, ``.`` and ``-``, starting with a letter
    or a digit, at most 64 characters."""
    if isinstance(tag, str) and _TAG.fullmatch(tag):
        return tag
    hint = ""
    if isinstance(tag, str) and _TAG.fullmatch(tag.lower()):
        hint = f" Tags are lower case: {tag.lower()!r}."
    raise InvalidName(
        f"Invalid tag {tag!r}: expected lower-case letters, digits, '_', '.' or '-', "
        f"starting with a letter or a digit, at most 64 characters (e.g. enterprise, eu-west)."
        + hint
    )


def validate_tags(tags: Iterable[str]) -> list[str]:
    """Every tag validated (the first bad one raises), sorted and without duplicates."""
    if isinstance(tags, str):
        raise TypeError("tags must be an iterable of tags, not one string")
    return sorted({validate_tag(tag) for tag in tags})


def split_tags(text: str) -> list[str]:
    """Tags written as a comma-separated list (``"eu, beta"``; ``""``: none), unvalidated."""
    return [part.strip() for part in text.split(",") if part.strip()]
