"""Each scope's steps, in the order they run: the one list every plan, run, creation,
status and check reads.

Public: the SQL files of ``migrations_sql/public``. Tenant: the SQL files of
``migrations_sql/tenant`` and the Django migrations of the tenant apps
(``services/django_steps.py``), in one topological order:

- SQL files follow each other by number; Django migrations follow their dependencies;
- a SQL file may name steps it follows in a header line ``-- Depends: notes.0002_x``;
- a Django migration may name SQL files it follows: ``sql_dependencies = ["004"]``;
- otherwise SQL files come first, then Django migrations (each group in its own order).

A cycle or a dependency on a step that does not exist is refused, naming them.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection

import psycopg

from tenancy import conf
from tenancy.engine.errors import RunError
from tenancy.engine.plan import Plan, build_plan
from tenancy.engine.source import PUBLIC, TENANT, Migration, discover
from tenancy.services import django_steps, tenant_types


class OrderError(RunError):
    """Dependencies between steps that cannot be met."""


def plan(
    conn: psycopg.Connection,
    *,
    public: bool = True,
    tenants: bool = True,
    only: list[str] | None = None,
) -> Plan:
    """The plan over these steps (each tenant schema with its own type's, ``typed``); the
    tenant files are read once for every type."""
    files = _tenant_files()
    both = {PUBLIC: public_steps(), TENANT: fleet_tenant_steps(files)}
    return build_plan(conn, both, public=public, tenants=tenants, only=only, typed=typed(files))


def migrations() -> dict[str, list[Migration]]:
    """Both scopes' steps, in order. With multi-type tenants (``services/tenant_types``)
    the tenant scope lists every type's steps; each schema runs those of its own type
    (``typed``)."""
    return {PUBLIC: public_steps(), TENANT: fleet_tenant_steps()}


def public_steps() -> list[Migration]:
    return discover(conf.migrations_dir(), PUBLIC, conf.source_limits())


def _tenant_files() -> list[Migration]:
    return discover(conf.migrations_dir(), TENANT, conf.source_limits())


def tenant_steps(
    tenant_type: str | None = None, files: list[Migration] | None = None
) -> list[Migration]:
    """A tenant schema's steps: every tenant SQL file (``files``, read when not given) and
    the Django migrations of its type's apps (``tenant_type`` None: the default type;
    without types, ``TENANT_APPS``)."""
    files = _tenant_files() if files is None else files
    tenant_type = tenant_types.checked(tenant_type)
    # A file may follow a migration of another type's app: not in this type, so moot here.
    elsewhere = django_steps.tenant_app_labels() - django_steps.tenant_app_labels(tenant_type)
    return ordered(files, django_steps.steps(tenant_type), other_types_apps=elsewhere)


def fleet_tenant_steps(files: list[Migration] | None = None) -> list[Migration]:
    """The steps of every tenant type, in one order (without types: ``tenant_steps()``)."""
    if not tenant_types.enabled():
        return tenant_steps(files=files)
    files = _tenant_files() if files is None else files
    return ordered(files, django_steps.fleet_steps())


def typed(files: list[Migration] | None = None) -> dict[str | None, list[Migration]] | None:
    """Each tenant type's steps (None: the type of a tenant registered without one), for
    the plan; None without multi-type tenants (every schema has the same steps)."""
    if not tenant_types.enabled():
        return None
    files = _tenant_files() if files is None else files
    found: dict[str | None, list[Migration]] = {
        t: tenant_steps(t, files) for t in tenant_types.names()
    }
    found[None] = found[tenant_types.default()] if found else []
    return found


def ordered(
    files: list[Migration],
    django: list[Migration],
    *,
    other_types_apps: Collection[str] = (),
) -> list[Migration]:
    """SQL files and Django steps in one order that keeps every dependency (but those on
    ``other_types_apps``: apps of other tenant types, which these schemas do not have)."""
    if not django and not any(f.depends for f in files):
        return files
    steps = [*files, *django]
    by_key = {_key(m): m for m in steps}
    rank = {_key(m): (0 if m.is_sql_file else 1, i) for i, m in enumerate(steps)}
    after: dict[str, set[str]] = {k: set() for k in by_key}
    for previous, following in zip(files, files[1:], strict=False):
        after[_key(following)].add(_key(previous))
    for m in steps:
        for wanted in m.depends:
            found = _resolve(wanted, by_key)
            if found is None and wanted.partition(".")[0] in other_types_apps:
                continue
            if found is None:
                raise OrderError(
                    f"{m.name} depends on {wanted}, which is neither a tenant SQL file nor a "
                    "migration of a tenant app."
                )
            after[_key(m)].add(found)
    return _topological(after, rank, by_key)


def _key(m: Migration) -> str:
    return str(m.key)


def _resolve(wanted: str, by_key: dict[str, Migration]) -> str | None:
    """A dependency as written: a SQL file's number (``004`` or ``4``), or ``app.name`` (the
    name may be just its number prefix, ``notes.0002``)."""
    if wanted.isdigit():
        return str(int(wanted)) if str(int(wanted)) in by_key else None
    if wanted in by_key:
        return wanted
    app, _, prefix = wanted.partition(".")
    matches = [k for k in by_key if k.startswith(f"{app}.{prefix}_")]
    return matches[0] if len(matches) == 1 else None


def _topological(
    after: dict[str, set[str]], rank: dict[str, tuple[int, int]], by_key: dict[str, Migration]
) -> list[Migration]:
    waiting = {k: set(v) for k, v in after.items()}
    followers: dict[str, list[str]] = {k: [] for k in after}
    for k, before in after.items():
        for b in before:
            followers[b].append(k)
    ready = [(rank[k], k) for k, before in waiting.items() if not before]
    heapq.heapify(ready)
    result: list[Migration] = []
    while ready:
        _, k = heapq.heappop(ready)
        result.append(by_key[k])
        for f in followers[k]:
            waiting[f].discard(k)
            if not waiting[f]:
                heapq.heappush(ready, (rank[f], f))
    if len(result) < len(by_key):
        stuck = sorted(by_key[k].name for k, before in waiting.items() if before)
        raise OrderError(
            "The tenant steps' dependencies form a cycle: " + ", ".join(stuck) + " wait for "
            "each other (-- Depends: headers and sql_dependencies)."
        )
    return result
