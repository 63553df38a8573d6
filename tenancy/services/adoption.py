"""Adoption: make the tenant schemas of a database built by stock django-tenants ours.

A stock fleet has the schemas its tenant model lists (``django_tenants.utils.
get_tenant_model()``), owned by the connecting user, with the tables of the tenant apps'
Django migrations recorded in each schema's own ``django_migrations``; no tenancy roles, no
ledger rows, and (unless the tenant model is ``tenancy.Tenant``) no registry rows.
Adopting a schema does, in one transaction of its own (a killed run is finished by the next
one; schemas adopted stay adopted):

1. the tenant's owner and web roles (and the shared ones when missing), as creation
   makes them (``ownership.missing_roles_statements``), and the owner group's
   ``REFERENCES`` on the shared tables tenant apps point to, as creation grants it;
2. ``django_migrations`` in the shape the engine makes it (Django's recorder made it
   ``bigint`` or ``serial``; the engine's is ``integer`` identity), its rows kept;
3. the schema and every object in it handed to the owner role, the web role's grants
   (``ownership.take_over_statements``);
4. the ledger baselined: each tenant Django step recorded in the schema's
   ``django_migrations`` gets the row the engine writes for a step applied with
   ``--fake`` (its checksum is its migration file's, ``django_steps``); SQL files stay
   pending unless ``baseline`` says the schema has them up to that number;
5. the registry row (``tenants.register_row``) when the tenant model is not the registry;
6. a ``tenant.adopt`` audit row.

After the commits, ``tenant_verify``'s comparison runs on the adopted schemas (read-only).
A schema with nothing left to do is "already adopted": a re-run changes nothing. A dry run
reads the same state in a read-only transaction and says what it would do.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from tenancy import conf
from tenancy.engine import audit, db, ledger, ownership
from tenancy.engine.errors import TenancyError
from tenancy.engine.names import (
    app_role,
    owner_group_role,
    owner_role_for_schema,
    role_for_schema,
    role_prefix,
    validate_org_name,
    validate_schema_name,
)
from tenancy.engine.plan import plan_schema
from tenancy.engine.source import TENANT, Migration
from tenancy.services import django_steps, steps, tenant_types, tenants, verify
from tenancy.services.infrastructure import connect_ready, infrastructure_ready

ACTION = "tenant.adopt"
ADOPTED, WOULD_ADOPT, ALREADY, FAILED = "adopted", "would adopt", "already adopted", "failed"
# Tests hold a schema's transaction ("<schema>:<seconds>"), changes made, before its COMMIT,
# so that a kill lands in the middle of a run. Unset in every real deployment.
PAUSE_ENV = "TENANCY_TEST_ADOPT_PAUSE_S"


class AdoptionError(TenancyError):
    """Adoption refused, for the whole run or for one schema; the message says why."""


@dataclass(frozen=True)
class HostTenant:
    """A row of the project's tenant model: its schema, and its name as the model says."""

    schema: str
    name: str
    tenant_type: str | None = None  # multi-type tenants: its type, as its model says


@dataclass
class SchemaAdoption:
    """What adoption did (or, in a dry run, would do) to one schema."""

    schema: str
    status: str = FAILED
    owner_role: str | None = None
    roles: list[str] = field(default_factory=list)  # created
    handed_over: list[str] = field(default_factory=list)  # the ALTER … OWNER statements
    reshaped: bool = False  # django_migrations brought to the engine's shape
    ledger: list[str] = field(default_factory=list)  # versions recorded as applied
    registered: str | None = None  # the registry row's name, when one was written
    pending: list[str] = field(default_factory=list)  # steps a migration run will apply
    differences: list[str] = field(default_factory=list)  # tenant_verify's, after adoption
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status != FAILED and not self.differences

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "status": self.status,
            "ok": self.ok,
            "owner_role": self.owner_role,
            "roles_created": self.roles,
            "handed_over": self.handed_over,
            "django_migrations_reshaped": self.reshaped,
            "ledger_rows": self.ledger,
            "registered": self.registered,
            "pending": self.pending,
            "differences": self.differences,
            "error": self.error,
        }


@dataclass
class AdoptionReport:
    dry_run: bool
    schemas: list[SchemaAdoption]
    elapsed_ms: int

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.schemas)

    def count(self, status: str) -> int:
        return sum(s.status == status for s in self.schemas)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "schemas": [s.to_dict() for s in self.schemas],
            "summary": {
                "schemas": len(self.schemas),
                "adopted": self.count(ADOPTED),
                "would_adopt": self.count(WOULD_ADOPT),
                "already_adopted": self.count(ALREADY),
                "failed": self.count(FAILED),
                "differing": sum(bool(s.differences) for s in self.schemas),
                "elapsed_ms": self.elapsed_ms,
            },
        }


@dataclass(frozen=True)
class _Run:
    actor: str
    dry_run: bool
    baseline: int | None
    migrations: list[Migration]
    model: str  # the tenant model's label, for messages and the audit row
    lock_timeout_ms: int
    typed: dict[str | None, list[Migration]] | None = None  # multi-type: each type's steps

    def steps_of(self, tenant: HostTenant) -> list[Migration]:
        return self.typed[tenant.tenant_type] if self.typed else self.migrations


def adopt(
    only: list[str] | None = None,
    *,
    baseline: str | None = None,
    dry_run: bool = False,
    actor: str = "system",
) -> AdoptionReport:
    """Adopt every schema of the project's tenant model (or ``only`` those), each in its
    own transaction; ``baseline``: the tenant SQL files up to that number are in the
    schemas already. Raises ``TenancyError`` before any change for bad arguments."""
    started = time.monotonic()
    migrations = steps.tenant_steps()
    run = _Run(
        actor=actor,
        dry_run=dry_run,
        baseline=_baseline_number(baseline, migrations),
        migrations=migrations,
        model=_model_label(),
        lock_timeout_ms=int(conf.setting("LOCK_TIMEOUT_MS")),
        typed=steps.typed(),
    )
    candidates = _selected(host_tenants(), only, run.model)
    with connect_ready() as conn:
        if db.citus(conn):
            raise AdoptionError(
                "tenancy_adopt does not run on a Citus coordinator: tenant roles must be "
                "committed there before their schema is used (docs/scale-out.md). Nothing "
                "was changed."
            )
        results = [_adopt_schema(conn, tenant, run) for tenant in candidates]
    if not dry_run:
        _verify([r for r in results if r.status == ADOPTED])
    return AdoptionReport(dry_run, results, int((time.monotonic() - started) * 1000))


def host_tenants() -> list[HostTenant]:
    """The tenants of the project's tenant model, public left out, in primary key order."""
    from django_tenants.utils import get_public_schema_name, get_tenant_model

    rows = get_tenant_model().objects.exclude(schema_name=get_public_schema_name())
    return [
        HostTenant(t.schema_name, str(t), tenant_types.of_instance(t)) for t in rows.order_by("pk")
    ]


def _model_label() -> str:
    from django_tenants.utils import get_tenant_model

    return get_tenant_model()._meta.label


def _baseline_number(baseline: str | None, migrations: list[Migration]) -> int | None:
    if baseline is None:
        return None
    if not baseline.strip().isdigit():
        raise AdoptionError(f"--baseline takes a tenant migration number, not {baseline!r}.")
    number = int(baseline)
    if not any(m.is_sql_file and m.number == number for m in migrations):
        raise AdoptionError(f"No tenant SQL migration numbered {baseline} on disk.")
    return number


def _selected(found: list[HostTenant], only: list[str] | None, model: str) -> list[HostTenant]:
    """``found``, or those of them that ``only`` names (each validated; a name the tenant
    model does not list is an error, before anything changes)."""
    if not only:
        return found
    wanted = {validate_schema_name(s, allow_public=False) for s in only}
    unknown = sorted(wanted - {t.schema for t in found})
    if unknown:
        raise AdoptionError(
            f"Not a tenant schema of {model}: {', '.join(unknown)}. Nothing was changed."
        )
    return [t for t in found if t.schema in wanted]


# -- one schema --------------------------------------------------------------------------
@dataclass(frozen=True)
class _State:
    """What adoption reads of a schema, under its locks."""

    exists: bool
    schema_owner: str | None
    roles: frozenset[str]  # of the tenant's and the shared roles, those that exist
    registered: bool
    superuser: bool
    django_table: bool  # an ordinary table django_migrations in the schema
    applied: dict[str, ledger.Applied]


@dataclass
class _Work:
    """The changes one schema needs; none: it is adopted already."""

    tenant: HostTenant
    owner: str
    web: str
    roles: list[str] = field(default_factory=list)
    role_statements: list[sql.Composable] = field(default_factory=list)
    reshape: list[sql.Composable] = field(default_factory=list)
    take_over: list[sql.Composable] = field(default_factory=list)
    owner_changes: list[sql.Composable] = field(default_factory=list)  # of take_over
    ledger: list[Migration] = field(default_factory=list)
    register: str | None = None  # the name the registry row gets
    pending: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.roles or self.reshape or self.take_over or self.ledger or self.register)


def _adopt_schema(conn: psycopg.Connection, tenant: HostTenant, run: _Run) -> SchemaAdoption:
    """One schema in a transaction of its own (read-only and rolled back in a dry run); a
    failure is this schema's only: it is reported, and the run goes on with the next."""
    result = SchemaAdoption(tenant.schema)
    try:
        validate_schema_name(tenant.schema, allow_public=False)
        with conn.transaction(force_rollback=run.dry_run):
            if run.dry_run:
                conn.execute("SET TRANSACTION READ ONLY")  # first: a dry run changes nothing
            work = _prepare(conn, tenant, run)
            if not work.empty and not run.dry_run:
                _apply(conn, work, run)
                _pause_for_tests(tenant.schema)
    except psycopg.errors.LockNotAvailable:
        result.error = (
            f"A table of {tenant.schema} is in use (TENANCY['LOCK_TIMEOUT_MS'] passed): "
            "nothing of it was changed; adopt it again."
        )
        return result
    except (TenancyError, psycopg.Error) as exc:
        result.error = _first_line(exc)
        return result
    _describe(result, work, conn, run)
    return result


def _prepare(conn: psycopg.Connection, tenant: HostTenant, run: _Run) -> _Work:
    """Read the schema under its locks and decide what it needs (nothing changes yet)."""
    schema, database = tenant.schema, conn.info.dbname
    db.configure(conn, run.lock_timeout_ms)
    if not run.dry_run:
        _lock(conn, schema)
    work = _Work(tenant, owner_role_for_schema(schema, database), role_for_schema(schema, database))
    state = _read_state(conn, work)
    if not state.exists:
        raise AdoptionError(f"Schema {schema} does not exist (its {run.model} row has none).")
    owned = state.schema_owner == work.owner
    _refuse_stale_roles(work, state, owned)
    _plan_roles(work, state, database)
    work.reshape = _reshape_statements(conn, schema) if state.django_table else []
    changes = ownership.adopt_statements(conn, schema, work.owner)
    # The first of ``changes`` only names the schema; a new web role needs its grants.
    if not owned or len(changes) > 1 or work.web in work.roles:
        work.owner_changes = changes
        work.take_over = ownership.take_over_statements(conn, schema, work.owner, work.web)
    # --baseline is for the schemas tenancy does not have yet, never for its own tenants.
    fresh = not (owned and state.registered)
    work.ledger = _to_record(conn, work.tenant, state, run, baseline=fresh)
    if not state.registered:
        work.register = validate_org_name(tenant.name, schema)
    work.pending = _pending(work, state, run)
    return work


def _refuse_stale_roles(work: _Work, state: _State, owned: bool) -> None:
    """A tenant role that exists while the schema is not its owner role's was not made
    for this schema by tenancy: creation refuses it, and so does adoption."""
    for role in (work.owner, work.web):
        if role in state.roles and not owned:
            raise AdoptionError(
                f"Role {role} already exists but {work.tenant.schema} is not owned by "
                f"{work.owner}: a role left by a database of the same name? Check that it "
                "owns nothing you need, DROP OWNED BY and DROP ROLE it, then adopt again."
            )


def _pending(work: _Work, state: _State, run: _Run) -> list[str]:
    """The steps a migration run will apply once the ledger rows are written."""
    rows = dict(state.applied)
    for m in work.ledger:
        rows[m.version] = ledger.Applied(m.version, m.name, m.checksum, None, False)
    own = run.steps_of(work.tenant)
    return [m.name for m in plan_schema(work.tenant.schema, TENANT, own, rows).pending]


def _lock(conn: psycopg.Connection, schema: str) -> None:
    """Registry writes queue with creations and verbs (the creation lock); the schema's
    own lock is the one a migration run holds: adoption waits for no run."""
    db.xact_lock(conn, db.CREATE_LOCK_NAME)
    if not db.try_xact_lock(conn, schema):
        raise AdoptionError(
            f"A migration run is working on {schema} right now; adopt it again when it has "
            "finished."
        )


_STATE = """
SELECT n.oid IS NOT NULL, pg_catalog.pg_get_userbyid(n.nspowner)::text,
       ARRAY(SELECT rolname::text FROM pg_catalog.pg_roles WHERE rolname = ANY(%(roles)s)),
       EXISTS (SELECT 1 FROM public.tenant_registry WHERE schema_name = %(schema)s),
       (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user),
       EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.relnamespace = n.oid
               AND c.relname = 'django_migrations' AND c.relkind = 'r')
  FROM (SELECT 1) AS one LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = %(schema)s
"""


def _read_state(conn: psycopg.Connection, work: _Work) -> _State:
    database = conn.info.dbname
    roles = [work.owner, work.web, app_role(database), owner_group_role(database)]
    row = conn.execute(_STATE, {"schema": work.tenant.schema, "roles": roles}).fetchone()
    assert row is not None
    exists, owner, found, registered, superuser, table = row
    # The ledger in a statement of its own, after the locks (ledger.applied_for).
    applied = ledger.applied_for(conn, work.tenant.schema)
    return _State(exists, owner, frozenset(found), registered, bool(superuser), table, applied)


def _plan_roles(work: _Work, state: _State, database: str) -> None:
    shared = [app_role(database), owner_group_role(database)]
    work.roles = [r for r in (*shared, work.owner, work.web) if r not in state.roles]
    work.role_statements = ownership.missing_roles_statements(
        work.web, work.owner, database, missing=work.roles, superuser=state.superuser
    )


def _to_record(
    conn: psycopg.Connection, tenant: HostTenant, state: _State, run: _Run, *, baseline: bool
) -> list[Migration]:
    """The steps to record as applied: tenant Django steps that the schema's
    django_migrations holds, and (``baseline``: a schema tenancy did not have yet) the SQL
    files up to the run's baseline; none the ledger has already."""
    recorded = _django_recorded(conn, tenant.schema) if state.django_table else set()
    upto = run.baseline if baseline and run.baseline is not None else -1
    return [
        m
        for m in run.steps_of(tenant)
        if m.version not in state.applied
        and (m.version in recorded if m.runner is not None else m.number <= upto)
    ]


def _django_recorded(conn: psycopg.Connection, schema: str) -> set[str]:
    """``app.name`` of every row of the schema's django_migrations. Plain columns, no
    operator: nothing of the schema's is resolved in the engine's query."""
    rows = conn.execute(
        sql.SQL("SELECT app, name FROM {}").format(sql.Identifier(schema, "django_migrations"))
    ).fetchall()
    return {f"{app}.{name}" for app, name in rows}


# Django's recorder made django_migrations.id ``bigint`` identity (DEFAULT_AUTO_FIELD =
# BigAutoField, Django 4.1 on) or ``serial``/``bigserial`` (before); the engine makes it
# ``integer`` identity (django_steps.DJANGO_MIGRATIONS_TABLE), and tenant_verify compares
# the table as any other. Rows and ids are kept: the identity continues after the last id.
_ID_COLUMN = """
SELECT pg_catalog.format_type(a.atttypid, a.atttypmod), a.attidentity, s.relname::text
  FROM pg_catalog.pg_attribute a
  LEFT JOIN pg_catalog.pg_class s
    ON s.oid = pg_catalog.pg_get_serial_sequence(%(table)s, 'id')::regclass
 WHERE a.attrelid = %(table)s::regclass AND a.attname = 'id' AND NOT a.attisdropped
"""


def _reshape_statements(conn: psycopg.Connection, schema: str) -> list[sql.Composable]:
    table = sql.Identifier(schema, "django_migrations")
    name = table.as_string(conn)
    row = conn.execute(_ID_COLUMN, {"table": name}).fetchone()
    if row is None or (row[0] == "integer" and row[1] == "d"):
        return []
    kind, identity, sequence = row
    alter = sql.SQL("ALTER TABLE {} ALTER COLUMN id ").format(table)
    statements: list[sql.Composable] = []
    if identity:
        statements.append(alter + sql.SQL("DROP IDENTITY"))  # drops its sequence
    else:
        statements.append(alter + sql.SQL("DROP DEFAULT"))
        if sequence:  # a serial's sequence, owned by the column
            statements.append(sql.SQL("DROP SEQUENCE {}").format(sql.Identifier(schema, sequence)))
    if kind != "integer":
        statements.append(alter + sql.SQL("TYPE integer"))
    statements.append(alter + sql.SQL("ADD GENERATED BY DEFAULT AS IDENTITY"))
    statements.append(
        sql.SQL(
            "SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence({}, 'id'), max(id)) "
            "FROM {} HAVING max(id) IS NOT NULL"
        ).format(sql.Literal(name), table)
    )
    return statements


def _apply(conn: psycopg.Connection, work: _Work, run: _Run) -> None:
    """The changes, in the schema's transaction, in creation's order: roles, then the
    schema's objects, then the ledger, registry and audit rows."""
    schema = work.tenant.schema
    if work.role_statements:
        conn.execute(sql.SQL("; ").join(work.role_statements))
    # Tenant apps' foreign keys to shared tables (auth_user) need the owner group's grant,
    # for the steps a migration run will apply here (creation grants it the same way).
    django_steps.grant_references(conn)
    for statement in work.reshape:  # one by one: the last returns a row
        conn.execute(statement)
    if work.reshape:
        # The new identity sequence was made after take_over_statements read the catalog.
        work.take_over = ownership.take_over_statements(conn, schema, work.owner, work.web)
    if work.take_over:
        conn.execute(sql.SQL("; ").join(work.take_over))
    rows = [
        ledger.record_statement(schema, m, elapsed_ms=0, actor=run.actor, run_id=None)
        for m in work.ledger
    ]
    if rows:
        conn.execute(sql.SQL("; ").join(rows))
    if work.register is not None:
        tenants.register_row(
            conn,
            schema=schema,
            name=work.register,
            org_id=schema,
            tenant_type=work.tenant.tenant_type,
        )
    audit.write(conn, ACTION, actor=run.actor, tenant_schema=schema, details=_details(work, run))


def _details(work: _Work, run: _Run) -> dict[str, Any]:
    return {
        "tenant_model": run.model,
        "owner_role": work.owner,
        "role": work.web,
        "roles_created": work.roles,
        "objects_handed_over": max(0, len(work.owner_changes) - 1),
        "django_migrations_reshaped": bool(work.reshape),
        "ledger_rows": [m.version for m in work.ledger],
        "registered": work.register is not None,
        "pending": work.pending,
    }


def _describe(result: SchemaAdoption, work: _Work, conn: psycopg.Connection, run: _Run) -> None:
    result.status = ALREADY if work.empty else (WOULD_ADOPT if run.dry_run else ADOPTED)
    result.owner_role = work.owner
    result.pending = work.pending
    if work.empty:
        return
    result.roles = work.roles
    result.handed_over = [s.as_string(conn) for s in work.owner_changes]
    result.reshaped = bool(work.reshape)
    result.ledger = [m.version for m in work.ledger]
    result.registered = work.register


def _verify(adopted: list[SchemaAdoption]) -> None:
    """tenant_verify's comparison of the adopted schemas with what their applied steps
    build (read-only): its differences are reported with each schema."""
    if not adopted:
        return
    try:
        report = verify.verify([r.schema for r in adopted])
    except TenancyError as exc:
        for r in adopted:
            r.differences = [f"tenant_verify could not run: {_first_line(exc)}"]
        return
    found = {t.schema: t.differences for t in report.tenants}
    for r in adopted:
        r.differences = found.get(r.schema, [])


def _pause_for_tests(schema: str) -> None:
    wanted, _, seconds = os.environ.get(PAUSE_ENV, "").partition(":")
    if wanted == schema and seconds:
        time.sleep(float(seconds))


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# -- the roles of a database that no longer exists ------------------------------------------
@dataclass(frozen=True)
class DroppedRoles:
    database: str
    roles: list[str]
    dry_run: bool

    def to_dict(self) -> dict[str, Any]:
        return {"database": self.database, "roles": self.roles, "dry_run": self.dry_run}


def drop_database_roles(database: str, *, dry_run: bool = False, actor: str) -> DroppedRoles:
    """Drop the tenancy roles of ``database`` (roles belong to the server and outlive a
    dropped database). Refused while it, or another database whose name hashes alike,
    exists: the roles would be theirs."""
    if not database or len(database.encode()) > 63:
        raise AdoptionError(f"Not a database name: {database!r}.")
    with db.pooled(conf.conninfo()) as conn:
        _refuse_live(conn, database)
        roles = ownership.database_roles(conn, database)
        if dry_run or not roles:
            return DroppedRoles(database, roles, dry_run)
        try:
            with conn.transaction():
                conn.execute(ownership.drop_roles_statement(roles))
                if infrastructure_ready(conn):  # this database's audit log, when it has one
                    details = {"database": database, "roles": roles}
                    audit.write(conn, "tenancy.drop_roles", actor=actor, details=details)
        except psycopg.Error as exc:
            detail = exc.diag.message_detail if exc.diag else None
            raise AdoptionError(
                f"The roles of {database} were not dropped: {_first_line(exc)}"
                + (f" ({' '.join(detail.split())})" if detail else "")
                + ". Nothing was dropped."
            ) from exc
    return DroppedRoles(database, roles, dry_run)


def _refuse_live(conn: psycopg.Connection, database: str) -> None:
    names = [r[0] for r in conn.execute("SELECT datname::text FROM pg_database").fetchall()]
    if database in names:
        raise AdoptionError(
            f"Database {database} still exists: its tenancy roles are in use. Drop tenants "
            "with tenant_drop; this command is for the roles of a database that is gone."
        )
    twins = sorted(n for n in names if role_prefix(n) == role_prefix(database))
    if twins:
        raise AdoptionError(
            f"Database {twins[0]} exists and its name has the same role hash as {database} "
            f"({role_prefix(database)}…): the roles may be its. Nothing was dropped."
        )
