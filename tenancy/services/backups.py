"""Tenant backups and restores: a ``pg_dump`` of a schema beside its rows in ``public``.

A **backup set** is one directory (``<root>/<label>-<UTC time>``) holding, per schema,
``<schema>.dump`` (``pg_dump -Fc --schema=<schema>``: the schema's objects and data, owners
and grants included) and ``<schema>.json`` (the tenant's ``tenant_registry``,
``tenant_domains`` and ``tenant_migrations`` rows, its role names, sizes and the dump's
SHA-256), plus ``manifest.json`` (every entry, its outcome, sizes and timings). The rows
are read in the transaction whose snapshot ``pg_dump`` imports (``--snapshot``), so the
ledger in the JSON is exactly the one of the dumped schema.

``pg_dump`` must match the server's major version (``find_tools``): the embedded server's
own binaries (pgserver's ``pginstall/bin``), or the system's
``/usr/lib/postgresql/<major>/bin``, or ``TENANCY["PG_BIN_DIR"]`` when set.

A **restore** runs in one transaction on a connection of its own: the tenant's roles and
schema are created as a creation creates them (``services/tenants.py``), the dump's objects
are replayed from ``pg_restore``'s script **as the tenant's owner role** (the dump's own
owners and grants are left out, so the result is what a new tenant looks like: objects of
the owner role, the web role's rights from the owner's default privileges), then the
ledger, registry and domain rows and an ``audit_logs`` row. Any failure rolls all of it
back: no schema, role or row is left.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from graphlib import CycleError, TopologicalSorter
from importlib.util import find_spec
from pathlib import Path
from typing import IO, Any

import psycopg
from django.conf import settings
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb

from tenancy import conf
from tenancy.engine import audit, db, ownership
from tenancy.engine.errors import TenancyError
from tenancy.engine.executor import (  # the engine's owner switch and new-schema build
    _as_owner,
    _back_to_login,
    apply_to_new_schema,
    placeholders,
)
from tenancy.engine.names import (
    PUBLIC_SCHEMA,
    domain_for_org,
    owner_role_for_schema,
    role_for_schema,
    schema_for_org,
    validate_org_id,
    validate_schema_name,
)
from tenancy.engine.source import TENANT, Migration
from tenancy.services import lifecycle
from tenancy.services.infrastructure import connect, connect_ready
from tenancy.services.reports import human_size
from tenancy.services.tenants import (
    CreationContext,
    TenantError,
    commit_as_owner,
    create_roles,
    create_schema,
    drop_committed_roles,
    run_steps,
    tenant_migrations,
)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
BACKUP_NOTE = "backup: "  # how a run's result notes name the backup taken before it
DUMP_SUFFIX = ".dump"
META_SUFFIX = ".json"
# pg_dump waits this long for a table lock (another session's DDL) before it gives up.
LOCK_WAIT_MS = 60_000
# Keys of the engine's connection parameters that are psycopg's, not libpq's.
_PSYCOPG_ONLY = {"prepare_threshold", "autocommit", "row_factory", "cursor_factory", "context"}


class BackupError(TenancyError):
    """A backup or restore refused or failed; the message says why, on one line."""


# -- the pg_dump that matches the server ---------------------------------------------------
@dataclass(frozen=True)
class Tools:
    pg_dump: Path
    pg_restore: Path
    version: str  # pg_dump --version, e.g. "pg_dump (PostgreSQL) 16.2"


def server_version(conn: psycopg.Connection) -> tuple[int, str]:
    """(major version, version text) of the server."""
    row = conn.execute(
        "SELECT current_setting('server_version_num')::int / 10000, "
        "current_setting('server_version')"
    ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def _candidate_dirs(major: int) -> tuple[list[Path], bool]:
    """Where to look for pg_dump, and whether the place was configured (then it is the
    only one: a fallback would hide the mistake)."""
    configured = getattr(settings, "TENANCY", {}).get("PG_BIN_DIR")
    if configured:
        return [Path(configured)], True
    dirs: list[Path] = []
    spec = find_spec("pgserver")
    if spec is not None and spec.submodule_search_locations:
        dirs.append(Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin")
    dirs.append(Path(f"/usr/lib/postgresql/{major}/bin"))
    on_path = shutil.which("pg_dump")
    if on_path:
        dirs.append(Path(on_path).resolve().parent)
    return dirs, False


def _major_of(binary: Path) -> tuple[int | None, str]:
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None, ""
    found = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    return (int(found.group(1)) if found else None), out


def find_tools(major: int) -> Tools:
    """pg_dump and pg_restore of the server's major version, or BackupError."""
    dirs, configured = _candidate_dirs(major)
    seen: list[str] = []
    for directory in dirs:
        dump, restore = directory / "pg_dump", directory / "pg_restore"
        if not (os.access(dump, os.X_OK) and os.access(restore, os.X_OK)):
            continue
        found, version = _major_of(dump)
        if found == major:
            return Tools(dump, restore, version)
        seen.append(f"{dump} is {found or 'unreadable'}")
    where = ", ".join(str(d) for d in dirs)
    found_text = f" (found: {'; '.join(seen)})" if seen else ""
    advice = (
        "fix TENANCY['PG_BIN_DIR']"
        if configured
        else f"install postgresql-client-{major} or set TENANCY['PG_BIN_DIR']"
    )
    raise BackupError(
        f"No pg_dump/pg_restore of PostgreSQL {major} (the server's major version) in "
        f"{where}{found_text}: {advice}."
    )


def tools_for_server() -> Tools:
    with connect() as conn:
        major, _ = server_version(conn)
    return find_tools(major)


def _libpq(conninfo: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """A connection string for pg_dump's ``--dbname`` and its environment: the password goes
    through PGPASSWORD, never on a command line that ``ps`` shows."""
    params = {k: str(v) for k, v in conninfo.items() if k not in _PSYCOPG_ONLY}
    password = params.pop("password", None)
    params["application_name"] = "tenancy-backup"
    env = dict(os.environ)
    if password:
        env["PGPASSWORD"] = password
    return make_conninfo("", **params), env


def _run(args: list[str], env: dict[str, str] | None, what: str, **kwargs: Any) -> None:
    try:
        done = subprocess.run(args, env=env, capture_output=True, check=False, **kwargs)
    except OSError as exc:
        raise BackupError(f"{what}: cannot run {args[0]}: {exc}") from exc
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace") if isinstance(done.stderr, bytes) else ""
        lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
        raise BackupError(
            f"{what}: {Path(args[0]).name} exited {done.returncode}"
            + (f": {lines[-1]}" if lines else "")
        )


# -- files ------------------------------------------------------------------------------
def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomically: a reader (or a crash) never sees half a file."""
    partial = path.with_name(path.name + ".partial")
    with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(partial, path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class BackupEntry:
    schema: str
    status: str  # succeeded | failed
    org_id: str | None = None
    dump: str | None = None  # file names inside the set's directory
    meta: str | None = None
    dump_bytes: int = 0
    schema_bytes: int = 0
    tables: int = 0
    elapsed_ms: int = 0
    error: str | None = None


@dataclass
class BackupSet:
    """One directory of backups, made when its first backup starts; its manifest is
    rewritten after every entry, so an interrupted set still lists what it holds."""

    root: Path
    label: str
    tools: Tools
    conninfo: dict[str, Any]
    origin: dict[str, Any] = field(default_factory=dict)  # who took it, and why
    entries: list[BackupEntry] = field(default_factory=list)
    directory: Path | None = None
    started_at: str = field(default_factory=_now)
    finished_at: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def open(self) -> Path:
        with self._lock:
            if self.directory is None:
                self.directory = _new_directory(self.root, self.label)
            return self.directory

    def backup(self, conn: psycopg.Connection, schema: str) -> BackupEntry:
        """Back up ``schema`` in ``conn``'s open transaction (its snapshot is exported to
        pg_dump). The entry, recorded in the manifest, says whether it failed and why."""
        started = time.monotonic()
        try:
            entry = _backup_schema(conn, schema, self.open(), self)
        except BackupError as exc:
            entry = BackupEntry(schema, "failed", error=str(exc))
        except (OSError, psycopg.Error) as exc:
            entry = BackupEntry(schema, "failed", error=f"backup of {schema} failed: {exc}")
        entry.elapsed_ms = int((time.monotonic() - started) * 1000)
        return self.add(entry)

    def failed(self, schema: str, org_id: str | None, error: str) -> BackupEntry:
        """A schema that could not be backed up at all, recorded as such."""
        return self.add(BackupEntry(schema, "failed", org_id=org_id, error=error))

    def add(self, entry: BackupEntry) -> BackupEntry:
        with self._lock:
            self.entries.append(entry)
            if self.directory is not None:
                _write_json(self.directory / MANIFEST, self.manifest())
        return entry

    def finish(self) -> None:
        self.finished_at = _now()
        with self._lock:
            if self.directory is not None:
                _write_json(self.directory / MANIFEST, self.manifest())

    def manifest(self) -> dict[str, Any]:
        done = [e for e in self.entries if e.status == "succeeded"]
        return {
            "format": FORMAT_VERSION,
            "directory": str(self.directory) if self.directory else None,
            "database": self.conninfo.get("dbname"),
            "pg_dump": {"path": str(self.tools.pg_dump), "version": self.tools.version},
            **self.origin,
            "started_at": self.started_at,
            "updated_at": _now(),
            "finished_at": self.finished_at,
            "entries": [asdict(e) for e in self.entries],
            "summary": {
                "schemas": len(self.entries),
                "succeeded": len(done),
                "failed": len(self.entries) - len(done),
                "dump_bytes": sum(e.dump_bytes for e in done),
                "elapsed_ms": sum(e.elapsed_ms for e in self.entries),
            },
        }


def _new_directory(root: Path, label: str) -> Path:
    """``root/<label>-<UTC time>``, never an existing one (two sets in one second)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        for suffix in ["", *(f"-{n}" for n in range(2, 100))]:
            path = root / f"{label}-{stamp}{suffix}"
            try:
                # A set holds every row of its tenants: its owner's only (0700; the files
                # in it are 0600 too, whatever the umask).
                path.mkdir(mode=0o700)
                path.chmod(0o700)
                return path
            except FileExistsError:
                continue
    except OSError as exc:
        raise BackupError(f"cannot create a backup directory in {root}: {exc}") from exc
    raise BackupError(f"cannot create a backup directory in {root}: too many sets this second")


# What the JSON beside a dump keeps of public: the rows, as PostgreSQL's own JSON of them.
_ROWS = """
SELECT (SELECT to_jsonb(r) FROM public.tenant_registry r WHERE r.schema_name = %(s)s),
       ARRAY(SELECT to_jsonb(d) FROM public.tenant_domains d
              JOIN public.tenant_registry r ON r.id = d.tenant_id
             WHERE r.schema_name = %(s)s ORDER BY d.id),
       ARRAY(SELECT to_jsonb(m) FROM public.tenant_migrations m
             WHERE m.tenant_schema = %(s)s ORDER BY m.migration_version),
       (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = %(s)s AND c.relkind IN ('r', 'p', 'm')),
       (SELECT count(*) FROM pg_tables WHERE schemaname = %(s)s),
       current_setting('server_version')
"""


def _backup_schema(
    conn: psycopg.Connection, schema: str, directory: Path, backup_set: BackupSet
) -> BackupEntry:
    snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()
    row = conn.execute(_ROWS, {"s": schema}).fetchone()
    assert snapshot is not None and row is not None
    registry, domains, ledger_rows, schema_bytes, tables, version = row
    if schema != PUBLIC_SCHEMA and registry is None:
        raise BackupError(f"backup of {schema} failed: no tenant is registered for it")
    dump = directory / f"{schema}{DUMP_SUFFIX}"
    _pg_dump(backup_set, schema, snapshot[0], dump)
    database = conn.info.dbname
    entry = BackupEntry(
        schema,
        "succeeded",
        org_id=registry["auth0_org_id"] if registry else None,
        dump=dump.name,
        meta=f"{schema}{META_SUFFIX}",
        dump_bytes=dump.stat().st_size,
        schema_bytes=int(schema_bytes),
        tables=int(tables),
    )
    meta = {
        "format": FORMAT_VERSION,
        "kind": "public" if schema == PUBLIC_SCHEMA else "tenant",
        "schema": schema,
        "org_id": entry.org_id,
        "created_at": _now(),
        "database": database,
        "server_version": version,
        "pg_dump": backup_set.tools.version,
        "dump": dump.name,
        "dump_bytes": entry.dump_bytes,
        "sha256": _sha256(dump),
        "schema_bytes": entry.schema_bytes,
        "tables": entry.tables,
        "roles": None
        if schema == PUBLIC_SCHEMA
        else {
            "owner": owner_role_for_schema(schema, database),
            "web": role_for_schema(schema, database),
        },
        "registry": registry,
        "domains": list(domains),
        "ledger": list(ledger_rows),
    }
    _write_json(directory / entry.meta, meta)  # type: ignore[operator]
    return entry


def _pg_dump(backup_set: BackupSet, schema: str, snapshot: str, target: Path) -> None:
    """The custom-format dump of one schema, written beside ``target`` and renamed into
    place when complete: a failed dump leaves no file that looks like a backup."""
    dbname, env = _libpq(backup_set.conninfo)
    partial = target.with_name(target.name + ".partial")
    args = [
        str(backup_set.tools.pg_dump),
        "--format=custom",
        # Double quotes make the pattern match this one name exactly (no wildcards).
        f'--schema="{schema}"',
        f"--snapshot={snapshot}",
        f"--lock-wait-timeout={LOCK_WAIT_MS}",
        "--no-password",
        f"--file={partial}",
        f"--dbname={dbname}",
    ]
    try:
        _run(args, env, f"backup of {schema} failed")
        partial.chmod(0o600)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


# -- tenant_backup --------------------------------------------------------------------
@dataclass
class BackupReport:
    backup_set: BackupSet

    @property
    def failed(self) -> list[BackupEntry]:
        return [e for e in self.backup_set.entries if e.status != "succeeded"]

    def to_dict(self) -> dict[str, Any]:
        return self.backup_set.manifest()


def _chosen(tenants: list[str] | None, all_tenants: bool) -> list[lifecycle.TenantRecord]:
    """The tenants named (each must be registered), or every registered one."""
    if tenants and all_tenants:
        raise BackupError("--tenant and --all cannot be combined: name tenants, or take all.")
    if not tenants and not all_tenants:
        raise BackupError("Name the tenants to back up (--tenant ORG_ID, repeatable) or --all.")
    if tenants:
        return [lifecycle.get_tenant(ident) for ident in dict.fromkeys(tenants)]
    with connect_ready() as conn:
        rows = conn.execute(
            "SELECT schema_name FROM public.tenant_registry ORDER BY schema_name"
        ).fetchall()
    return [lifecycle.get_tenant(schema) for (schema,) in rows]


def backup_tenants(
    tenants: list[str] | None,
    *,
    all_tenants: bool = False,
    output: Path,
    actor: str,
    on_entry: Callable[[BackupEntry, int, int], None] | None = None,
) -> BackupReport:
    """Back up each tenant into a new set under ``output``. One failing tenant is recorded
    and the others go on. BackupError before anything is written: bad input, an unknown
    tenant, no matching pg_dump."""
    chosen = _chosen(tenants, all_tenants)
    tools = tools_for_server()
    backup_set = BackupSet(
        Path(output), "tenant-backup", tools, conf.conninfo(), origin={"taken_by": actor}
    )
    with db.connect(conf.conninfo()) as conn:
        for number, tenant in enumerate(chosen, 1):
            entry = _backup_one(conn, backup_set, tenant)
            if entry.status == "succeeded":
                audit.write(
                    conn,
                    "tenant.backup",
                    actor=actor,
                    tenant_schema=tenant.schema,
                    details={"directory": str(backup_set.directory), **asdict(entry)},
                )
            if on_entry:
                on_entry(entry, number, len(chosen))
    backup_set.finish()
    return BackupReport(backup_set)


def _backup_one(
    conn: psycopg.Connection, backup_set: BackupSet, tenant: lifecycle.TenantRecord
) -> BackupEntry:
    """One tenant, in a repeatable-read transaction that holds the schema's lock (no run
    migrates it meanwhile) and whose snapshot pg_dump shares."""
    if not tenant.schema_exists:
        error = f"schema {tenant.schema} does not exist: nothing to back up"
        return backup_set.failed(tenant.schema, tenant.org_id, error)
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    try:
        if not db.try_xact_lock(conn, tenant.schema):
            error = f"a migration run is working on {tenant.schema}; try again later"
            return backup_set.failed(tenant.schema, tenant.org_id, error)
        entry = backup_set.backup(conn, tenant.schema)
        entry.org_id = entry.org_id or tenant.org_id
        return entry
    finally:
        conn.execute("ROLLBACK")


# -- migrate_tenants --backup-dir -----------------------------------------------------
def check_backup_dir(backup_dir: str | Path) -> Tools:
    """What a run checks before anything changes: a directory is named and a pg_dump of
    the server's major version is there (BackupError otherwise)."""
    if not str(backup_dir).strip():
        raise BackupError("--backup-dir needs a directory.")
    return tools_for_server()


def before_schema(
    backup_dir: str | Path, *, run_id: int | None, actor: str
) -> Callable[[psycopg.Connection, str, list[Migration]], str]:
    """The executor's ``Options.before_schema`` for a run: each schema with pending files
    is backed up into this run's set, in its first transaction under its lock, before any
    file runs. A failed backup raises, so the engine fails that schema, changing nothing."""
    backup_set = BackupSet(
        Path(backup_dir),
        f"run-{run_id}" if run_id is not None else "run",
        check_backup_dir(backup_dir),
        conf.conninfo(),
        origin={"taken_by": actor, "run_id": run_id},
    )

    def hook(conn: psycopg.Connection, schema: str, pending: list[Migration]) -> str:
        entry = backup_set.backup(conn, schema)
        if entry.status != "succeeded":
            raise BackupError(entry.error or f"backup of {schema} failed")
        return (
            f"{BACKUP_NOTE}{backup_set.directory}/{entry.dump} ({human_size(entry.dump_bytes)}, "
            f"{entry.elapsed_ms} ms) before {len(pending)} file(s)"
        )

    return hook


# -- restore ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """A tenant's backup on disk: its dump and what the JSON beside it says."""

    dump: Path
    meta: dict[str, Any]

    @property
    def schema(self) -> str:
        return str(self.meta["schema"])

    @property
    def org_id(self) -> str:
        return str(self.meta["org_id"])


def locate(path: str | Path, tenant: str | None = None) -> Source:
    """The backup of ``tenant`` (org id or schema) in a set's directory, or the one a
    ``.dump`` / ``.json`` file names; checked against its SHA-256. BackupError otherwise."""
    path = Path(path)
    if not path.exists():
        raise BackupError(f"No backup at {path}: no such file or directory.")
    if path.is_dir():
        meta_path = _meta_in_set(path, tenant)
    elif path.suffix == DUMP_SUFFIX:
        meta_path = path.with_suffix(META_SUFFIX)
    else:
        meta_path = path
    meta = _read_meta(meta_path)
    if meta.get("kind") != "tenant":
        raise BackupError(
            f"{meta_path} is a backup of {meta.get('schema', 'an unknown schema')}, not of a "
            "tenant: restore the public schema by hand with pg_restore (docs/backups.md)."
        )
    if tenant is not None and _schema_of(tenant) != meta.get("schema"):
        raise BackupError(f"{meta_path} is the backup of {meta.get('schema')}, not of {tenant}.")
    dump = meta_path.parent / str(meta.get("dump"))
    if not dump.is_file():
        raise BackupError(f"The dump {dump} named by {meta_path} is missing.")
    if _sha256(dump) != meta.get("sha256"):
        raise BackupError(f"The dump {dump} does not match its checksum: damaged or replaced.")
    validate_schema_name(str(meta.get("schema")), allow_public=False)
    validate_org_id(str(meta.get("org_id")))
    return Source(dump, meta)


def _schema_of(ident: str) -> str:
    return ident if ident.startswith("tenant_") else schema_for_org(ident)


def _meta_in_set(directory: Path, tenant: str | None) -> Path:
    metas = sorted(
        p for p in directory.glob(f"*{META_SUFFIX}") if p.name != MANIFEST and p.is_file()
    )
    if tenant is not None:
        wanted = directory / f"{_schema_of(tenant)}{META_SUFFIX}"
        if wanted not in metas:
            raise BackupError(f"No backup of {tenant} in {directory}.")
        return wanted
    tenants = [p for p in metas if p.stem != PUBLIC_SCHEMA]
    if len(tenants) != 1:
        names = ", ".join(p.stem for p in tenants) or "none"
        raise BackupError(
            f"{directory} holds {len(tenants)} tenant backup(s) ({names}): choose one with "
            "--tenant ORG_ID."
        )
    return tenants[0]


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"Cannot read the backup description {path}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        raise BackupError(f"{path} is not a backup description of format {FORMAT_VERSION}.")
    return meta


@dataclass(frozen=True)
class Restored:
    org_id: str
    schema: str
    role: str
    owner: str
    tables: int
    ledger_rows: int
    domains: list[str]
    replaced: bool
    elapsed_ms: int
    source: str
    structure: str  # "files": built from the migration files; "dump": the dump's own


@dataclass
class RestoreContext:
    conn: psycopg.Connection
    source: Source
    script: Path  # pg_restore's SQL of the dump (see _script)
    creation: CreationContext
    replace: bool
    files: list[Migration] | None = None  # what builds the schema (files_of)
    scratch: Path = Path()  # where the script's COPY rows are kept
    tenant_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


def restore(
    path: str | Path, tenant: str | None = None, *, replace: bool = False, actor: str
) -> Restored:
    """Bring a tenant back from a backup, all or nothing (see the module's text). The
    tenant must not exist: with ``replace``, an existing one is dropped first, in the same
    transaction (so a failed restore keeps it)."""
    started = time.monotonic()
    source = locate(path, tenant)
    existing = _existing(source)
    if existing is not None and not replace:
        raise BackupError(
            f"Tenant {existing.org_id} exists (schema {existing.schema}): pass --replace to "
            "drop it and restore the backup in its place (its current data is lost)."
        )
    tools = tools_for_server()
    files = files_of(source)
    with tempfile.TemporaryDirectory(prefix="tenancy-restore-") as scratch:
        script = _script(tools, source, Path(scratch), data_only=files is not None)
        with db.connect(conf.conninfo()) as conn:
            if existing is not None and db.citus(conn):
                raise BackupError(
                    f"On Citus a restore cannot replace {existing.schema} in one transaction "
                    "(the tenant's roles would be dropped and made again, and the workers only "
                    "know committed roles). Drop it with `manage.py tenant_drop` first, then "
                    "restore."
                )
            ctx = _restore_context(conn, source, script, actor, replace)
            ctx.files, ctx.scratch = files, Path(scratch)
            steps = list(RESTORE_STEPS)
            if existing is not None:
                steps = _drop_steps(conn, existing, actor, source) + steps
            try:
                run_steps(conn, steps, ctx, f"Restore of tenant {source.org_id}", "restored")
            except BaseException:
                drop_committed_roles(ctx.creation)  # Citus: roles made before the transaction
                raise
    creation = ctx.creation
    return Restored(
        org_id=source.org_id,
        schema=source.schema,
        role=creation.role,
        owner=creation.owner,
        tables=int(ctx.details.get("tables", 0)),
        ledger_rows=len(source.meta.get("ledger") or []),
        domains=[d["domain"] for d in source.meta.get("domains") or []],
        replaced=existing is not None,
        elapsed_ms=int((time.monotonic() - started) * 1000),
        source=str(source.dump),
        structure=ctx.details["structure"],
    )


def _existing(source: Source) -> lifecycle.TenantRecord | None:
    try:
        return lifecycle.get_tenant(source.schema)
    except TenantError:
        return None


def _drop_steps(
    conn: psycopg.Connection, tenant: lifecycle.TenantRecord, actor: str, source: Source
) -> list[tuple[str, Callable[[Any], None]]]:
    """lifecycle's drop, in the restore's transaction, on its own context."""
    drop = lifecycle.LifecycleContext(
        conn,
        tenant,
        role_for_schema(tenant.schema, conn.info.dbname),
        actor,
        reason=f"replaced by the backup {source.dump}",
    )
    return [
        (f"replace: {name}", lambda _ctx, step=step: step(drop))
        for name, step in lifecycle.DROP_STEPS
    ]


def _restore_context(
    conn: psycopg.Connection, source: Source, script: Path, actor: str, replace: bool
) -> RestoreContext:
    schema, database = source.schema, conn.info.dbname
    registry = source.meta.get("registry") or {}
    domains = source.meta.get("domains") or []
    creation = CreationContext(
        conn=conn,
        org_id=source.org_id,
        name=str(registry.get("organization_name") or source.org_id),
        schema=schema,
        role=role_for_schema(schema, database),
        owner=owner_role_for_schema(schema, database),
        domain=domains[0]["domain"]
        if domains
        else domain_for_org(source.org_id, conf.setting("DOMAIN_SUFFIX")),
        actor=actor,
        migrations=[],
    )
    return RestoreContext(conn, source, script, creation, replace)


def files_of(source: Source) -> list[Migration] | None:
    """The tenant files the backup's ledger shows applied, when every one is on disk with
    the checksum it had: the restore then builds the schema from them, as a creation does,
    and takes only the rows from the dump. None when the files cannot rebuild it (one is
    gone, edited or refused): the dump's own definitions are used."""
    try:
        every = tenant_migrations()
    except TenantError:
        return None
    on_disk = {m.version: m for m in every}
    position = {m.version: i for i, m in enumerate(every)}
    files: list[Migration] = []
    for row in source.meta.get("ledger") or []:
        found = on_disk.get(str(row.get("migration_version")))
        if found is None or found.checksum != row.get("checksum"):
            return None
        files.append(found)
    return sorted(files, key=lambda m: position[m.version])


# pg_restore --list: the archive's entries; the schema's own is left out (we create it).
_SCHEMA_ENTRY = re.compile(r"^\s*\d+;\s+\d+\s+\d+\s+SCHEMA\s+-\s+(\S+)\s")


def _script(tools: Tools, source: Source, scratch: Path, *, data_only: bool) -> Path:
    """pg_restore's SQL for the dump's rows (``data_only``) or its objects and rows, without
    CREATE SCHEMA, owners or grants (the restore makes those as a creation does). Made
    before the database is touched, so a damaged archive changes nothing."""
    listing = scratch / "list"
    _run(
        [str(tools.pg_restore), f"--file={listing}", "--list", str(source.dump)],
        None,
        f"cannot read {source.dump}",
    )
    kept: list[str] = []
    schemas: set[str] = set()
    for line in listing.read_text().splitlines():
        entry = _SCHEMA_ENTRY.match(line)
        if entry:
            schemas.add(entry.group(1))
            continue
        kept.append(line)
    if schemas != {source.schema}:
        raise BackupError(
            f"{source.dump} holds schema(s) {', '.join(sorted(schemas)) or 'none'}, "
            f"not {source.schema}."
        )
    listing.write_text("\n".join(kept) + "\n")
    script = scratch / "restore.sql"
    _run(
        [
            str(tools.pg_restore),
            "--no-owner",
            "--no-acl",
            *(["--data-only"] if data_only else []),
            f"--use-list={listing}",
            f"--file={script}",
            str(source.dump),
        ],
        None,
        f"cannot read {source.dump}",
    )
    check_script(script, source.schema, data_only=data_only, what=str(source.dump))
    return script


# -- what a restore script may hold --------------------------------------------------------
# The dump's checksum is only as trustworthy as the JSON beside it: whoever can write a
# backup set can rewrite both. The script runs under the tenant's owner role, but with a
# superuser login that is a session authorization, which `RESET SESSION AUTHORIZATION` in
# the script would end. So the script is read before it runs: the rows (COPY into the
# tenant's own tables, sequence values) and pg_dump's own settings are all a data-only
# script may hold; a script of definitions must also pass the refusal rules of a tenant
# migration file (no session or role change, nothing outside its schema, no privileges).
_IDENT = r'(?:[a-z_][a-z0-9_$]*|"(?:[^"]|"")+")'
_COPY_HEADER = re.compile(rf"^COPY ({_IDENT})\.{_IDENT} \({_IDENT}(?:, {_IDENT})*\) FROM stdin;$")
_SCRIPT_SETTINGS = frozenset(
    {
        "statement_timeout",
        "lock_timeout",
        "idle_in_transaction_session_timeout",
        "transaction_timeout",
        "client_encoding",
        "standard_conforming_strings",
        "check_function_bodies",
        "xmloption",
        "client_min_messages",
        "row_security",
        "default_tablespace",
        "default_table_access_method",
        "default_with_oids",
    }
)
_SET_LINE = re.compile(r"^SET ([a-z_]+) = (?:'[^'\\]*'|[A-Za-z0-9_.]+);$")
_EMPTY_SEARCH_PATH = "SELECT pg_catalog.set_config('search_path', '', false);"
_SETVAL = re.compile(r"^SELECT pg_catalog\.setval\('([^']+)', \d+, (?:true|false)\);$")


def _schema_named(name: str, schema: str) -> bool:
    return name in (schema, f'"{schema}"')


def _script_line_allowed(line: str, schema: str) -> bool:
    """pg_dump's settings, and sequence values of the tenant's own sequences."""
    found = _SET_LINE.match(line)
    if found:
        return found.group(1) in _SCRIPT_SETTINGS
    if line == _EMPTY_SEARCH_PATH:
        return True
    found = _SETVAL.match(line)
    return bool(found) and found.group(1).startswith((f"{schema}.", f'"{schema}".'))


def check_script(script: Path, schema: str, *, data_only: bool, what: str) -> None:
    """BackupError unless ``script`` (pg_restore's SQL of a tenant's dump) holds only what a
    backup of ``schema`` made by tenant_backup holds (see above)."""
    definitions: list[str] = []
    with script.open(encoding="utf-8") as f:
        in_copy = False
        for number, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            if in_copy:
                in_copy = line != "\\."
                continue
            if not line.strip() or line.startswith("--") or line.startswith(_META_COMMANDS):
                continue
            if line.startswith("COPY "):
                header = _COPY_HEADER.match(line)
                if not header or not _schema_named(header.group(1), schema):
                    raise BackupError(
                        f"{what}: line {number} of its restore script copies rows somewhere "
                        f"other than a table of {schema}: {line[:80]}"
                    )
                in_copy = True
                continue
            if _script_line_allowed(line, schema):
                continue
            if data_only:
                raise BackupError(
                    f"{what}: line {number} of its restore script is not a row, a sequence "
                    f"value or a pg_dump setting, refused: {line[:80]}"
                )
            definitions.append(raw)
    if definitions:
        _check_definitions("".join(definitions), schema, what)


def _check_definitions(text: str, schema: str, what: str) -> None:
    """The dump's own definitions must pass a tenant migration file's refusal rules, with
    the schema's name as the file's placeholder."""
    from tenancy.engine import rules  # pglast: only when a dump's definitions are replayed

    named = re.compile(rf'(?<![\w$"])(?:"{re.escape(schema)}"|{re.escape(schema)})\.')
    as_file = Migration(
        scope=TENANT,
        version="000",
        name="restore",
        description="",
        path=Path(what),
        up_sql=named.sub("{{schema}}.", text),
        down_sql=None,
        checksum="",
        transactional=True,
    )
    problems = rules.refusals(as_file)
    if problems:
        first = problems[0]
        raise BackupError(
            f"{what}: its definitions break {len(problems)} refusal rule(s) of a tenant "
            f"migration, refused: [{first.rule}] {first.message[:200]}"
        )


# -- restore steps (one transaction) ------------------------------------------------------
def _step_lock(ctx: RestoreContext) -> None:
    """The creation lock (restores and creations queue on it) and the schema's own."""
    db.xact_lock(ctx.conn, db.CREATE_LOCK_NAME)
    if not db.try_xact_lock(ctx.conn, ctx.source.schema):
        raise TenantError(f"A migration run is working on {ctx.source.schema} right now.")


def _step_check_free(ctx: RestoreContext) -> None:
    row = ctx.conn.execute(
        "SELECT (SELECT auth0_org_id FROM public.tenant_registry WHERE schema_name = %(s)s "
        "OR auth0_org_id = %(o)s LIMIT 1), "
        "EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %(s)s), "
        "(SELECT count(*) FROM public.tenant_registry)",
        {"s": ctx.source.schema, "o": ctx.source.org_id},
    ).fetchone()
    assert row is not None
    registered, schema_exists, count = row
    if registered is not None:
        raise TenantError(
            f"Tenant {registered} is registered with schema {ctx.source.schema}: pass "
            "--replace to replace it."
        )
    if schema_exists:
        raise TenantError(
            f"Schema {ctx.source.schema} exists but no tenant is registered for it; inspect "
            "it and drop it before restoring."
        )
    limit = int(conf.setting("MAX_TENANTS"))
    if int(count) >= limit:
        raise TenantError(f"Tenant limit reached: TENANCY['MAX_TENANTS'] is {limit}.")


def _step_structure(ctx: RestoreContext) -> None:
    """The schema's objects from the files its ledger shows (as a creation builds them,
    so tenant_verify finds what it expects: a dump's CHECK constraints, reparsed, read
    differently); the ledger rows written on the way make room for the backup's own."""
    if ctx.files is None:
        return  # the dump's script brings the objects with the rows
    schema = ctx.source.schema
    apply_to_new_schema(
        ctx.conn,
        schema,
        ctx.files,
        placeholders(schema, ctx.conn.info.dbname),
        lock_timeout_ms=int(conf.setting("LOCK_TIMEOUT_MS")),
        actor=ctx.creation.actor,
    )
    ctx.conn.execute("DELETE FROM public.tenant_migrations WHERE tenant_schema = %s", [schema])


def _step_rows(ctx: RestoreContext) -> None:
    """The dump's rows (and, without files, its objects), written by the tenant's owner
    role, so that it owns what is made and its default privileges give the web role its
    rights, as in a migration."""
    blocks = _blocks(ctx.script, ctx.scratch)
    if ctx.files is not None:
        blocks = _parents_first(ctx.conn, ctx.source.schema, blocks)
    if db.citus(ctx.conn):
        _rows_on_citus(ctx, blocks)
    else:
        ctx.conn.execute(_as_owner(ctx.conn, ctx.creation.owner))
        for block in blocks:
            block.run(ctx.conn)
        # The script's SETs (search_path '', …) end here, with the owner's role, and so
        # do temporary objects (see executor._leave_file).
        ctx.conn.execute(
            sql.SQL("DISCARD TEMP; {}; RESET ALL; {}").format(
                _back_to_login(ctx.conn), db.engine_search_path()
            )
        )
    row = ctx.conn.execute(
        "SELECT count(*) FROM pg_tables WHERE schemaname = %s", [ctx.source.schema]
    ).fetchone()
    ctx.details["tables"] = int(row[0]) if row else 0
    ctx.details["structure"] = "files" if ctx.files is not None else "dump"


def _rows_on_citus(ctx: RestoreContext, blocks: list[_Block]) -> None:
    """On Citus one transaction cannot reach the workers as two users, and the schema was
    built as the login user (see executor.apply_to_new_schema): the script runs as the
    login user too (it passed ``check_script`` first), then the owner role takes over what
    it made and the web role gets its rights, as a creation does there."""
    for block in blocks:
        block.run(ctx.conn)
    ctx.conn.execute("RESET ALL")
    creation = ctx.creation
    for statement in [
        *ownership.adopt_statements(ctx.conn, creation.schema, creation.owner),
        *ownership.existing_objects_grants(creation.schema, creation.role),
    ]:
        ctx.conn.execute(statement)


_COPY = re.compile(r"^COPY (\S+) .*FROM stdin;$")
# psql meta-commands recent pg_restore versions write around a script (\restrict KEY).
_META_COMMANDS = ("\\restrict", "\\unrestrict")


@dataclass(frozen=True)
class _Block:
    """A piece of a pg_restore script: SQL (sent in one round trip), or one COPY with its
    rows kept in a file of their own."""

    text: str
    table: str | None = None  # a COPY's table, as the script names it (schema.table)
    rows: Path | None = None

    def run(self, conn: psycopg.Connection) -> None:
        if self.rows is None:
            conn.execute(self.text.encode())  # bytes: sent as written, no placeholders
            return
        with (
            self.rows.open("rb") as rows,
            conn.cursor() as cur,
            cur.copy(self.text.encode()) as copy,
        ):
            for chunk in iter(lambda: rows.read(1 << 20), b""):
                copy.write(chunk)


def _blocks(script: Path, scratch: Path) -> list[_Block]:
    blocks: list[_Block] = []
    lines: list[str] = []

    def flush() -> None:
        text = "".join(lines).strip()
        lines.clear()
        if text:
            blocks.append(_Block(text))

    with script.open(encoding="utf-8") as f:
        for line in f:
            text = line.rstrip("\n")
            copy = _COPY.match(text)
            if copy:
                flush()
                rows = scratch / f"copy-{len(blocks)}"
                _copy_rows(f, rows)
                blocks.append(_Block(text[:-1], copy.group(1), rows))
            elif text.startswith("\\"):
                if not text.startswith(_META_COMMANDS):
                    raise BackupError(f"unexpected command in the restore script: {text[:60]}")
            else:
                lines.append(line)
    flush()
    return blocks


def _copy_rows(script: IO[str], target: Path) -> None:
    with target.open("w", encoding="utf-8") as out:
        for line in script:
            if line.rstrip("\n") == "\\.":
                return
            out.write(line)
    raise BackupError("the restore script ends inside a COPY block")


# The foreign keys between a schema's tables: (child, parent), named as pg_dump names them.
_PARENTS = """
SELECT format('%%I.%%I', n.nspname, c.relname), format('%%I.%%I', pn.nspname, p.relname)
  FROM pg_constraint k
  JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_class p ON p.oid = k.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
 WHERE k.contype = 'f' AND n.nspname = %s AND k.conrelid <> k.confrelid
"""


def _parents_first(conn: psycopg.Connection, schema: str, blocks: list[_Block]) -> list[_Block]:
    """Rows go into tables whose foreign keys already exist (built from the files), so a
    table's rows follow those of the tables it points to; the script's SQL (settings
    before, sequence values after) keeps its place around them."""
    copies = {b.table: b for b in blocks if b.rows is not None}
    graph: dict[str, set[str]] = {t: set() for t in copies if t}
    for child, parent in conn.execute(_PARENTS, [schema]):
        if child in graph and parent in graph:
            graph[child].add(parent)
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError:
        return blocks  # tables that point at each other: the dump's order, as it is
    first = next((i for i, b in enumerate(blocks) if b.rows is not None), len(blocks))
    before = blocks[:first]
    after = [b for b in blocks[first:] if b.rows is None]
    return [*before, *(copies[t] for t in order), *after]


def _step_ledger(ctx: RestoreContext) -> None:
    _insert_rows(ctx.conn, "tenant_migrations", ctx.source.meta.get("ledger") or [])


def _step_register(ctx: RestoreContext) -> None:
    registry = ctx.source.meta.get("registry")
    if not registry:
        raise BackupError(f"{ctx.source.dump}: its description has no registry row.")
    ctx.tenant_id = _insert_rows(ctx.conn, "tenant_registry", [registry])[0]


def _step_domains(ctx: RestoreContext) -> None:
    domains = [{**d, "tenant_id": ctx.tenant_id} for d in ctx.source.meta.get("domains") or []]
    if not domains:  # a tenant that had lost its domain gets its primary one back
        domains = [{"domain": ctx.creation.domain, "tenant_id": ctx.tenant_id, "is_primary": True}]
    _insert_rows(ctx.conn, "tenant_domains", domains)


def _step_audit(ctx: RestoreContext) -> None:
    meta = ctx.source.meta
    audit.write(
        ctx.conn,
        "tenant.restore",
        actor=ctx.creation.actor,
        tenant_schema=ctx.source.schema,
        details={
            "auth0_org_id": ctx.source.org_id,
            "source": str(ctx.source.dump),
            "backup_created_at": meta.get("created_at"),
            "backup_database": meta.get("database"),
            "sha256": meta.get("sha256"),
            "tables": ctx.details.get("tables"),
            "structure": ctx.details.get("structure"),
            "ledger_rows": len(meta.get("ledger") or []),
            "replaced": ctx.replace,
            "role": ctx.creation.role,
            "owner_role": ctx.creation.owner,
        },
    )


RESTORE_STEPS: list[tuple[str, Callable[[RestoreContext], None]]] = [
    ("lock", _step_lock),
    ("check registry", _step_check_free),
    ("create role", lambda ctx: create_roles(ctx.creation)),
    ("create schema", lambda ctx: create_schema(ctx.creation)),
    ("build from files", _step_structure),
    ("restore rows", _step_rows),
    ("restore ledger rows", _step_ledger),
    ("register", _step_register),
    ("restore domains", _step_domains),
    ("audit", _step_audit),
    ("commit as owner", lambda ctx: commit_as_owner(ctx.creation)),
]


def _insert_rows(conn: psycopg.Connection, table: str, rows: list[dict[str, Any]]) -> list[int]:
    """Insert rows given as PostgreSQL's JSON of them, with the columns the table has now
    (typed by ``jsonb_populate_record``). A row keeps its ``id`` when it is free, else
    gets a new one. Returns the ids."""
    if not rows:
        return []
    columns = [
        r[0]
        for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
            "AND NOT attisdropped ORDER BY attnum",
            [f"public.{table}"],
        )
    ]
    taken = {
        r[0]
        for r in conn.execute(
            sql.SQL("SELECT id FROM {} WHERE id = ANY(%s)").format(sql.Identifier("public", table)),
            [[r["id"] for r in rows if r.get("id") is not None]],
        )
    }
    ids: list[int] = []
    for row in rows:
        if row.get("id") in taken or row.get("id") is None:
            row = {k: v for k, v in row.items() if k != "id"}
        names = [c for c in columns if c in row]
        listed = sql.SQL(", ").join(sql.Identifier(c) for c in names)
        inserted = conn.execute(
            sql.SQL(
                "INSERT INTO {table} ({cols}) SELECT {cols} "
                "FROM jsonb_populate_record(NULL::{table}, %s) RETURNING id"
            ).format(table=sql.Identifier("public", table), cols=listed),
            [Jsonb(row)],
        ).fetchone()
        assert inserted is not None
        ids.append(int(inserted[0]))
    conn.execute(
        sql.SQL(_PAST_KEPT_IDS).format(table=sql.Identifier("public", table)),
        {"name": f"public.{table}"},
    )
    return ids


# Kept ids were not drawn from the table's id sequence: move it past them (when it is
# behind, as in another database), so that the next new row does not collide.
_PAST_KEPT_IDS = """
SELECT setval(x.s, x.m)
  FROM (SELECT pg_get_serial_sequence(%(name)s, 'id') AS s,
               (SELECT max(id) FROM {table}) AS m) x
 WHERE x.s IS NOT NULL AND x.m > coalesce(
       (SELECT q.last_value FROM pg_sequences q
         WHERE format('%%I.%%I', q.schemaname, q.sequencename) = x.s), 0)
"""
