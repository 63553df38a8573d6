"""Where tenants live on a Citus cluster, and moving them.

With Citus' schema-based sharding every tenant schema is a *distributed schema*: its tables
are one colocation group placed together on one worker node. This module reads that
placement (one query for the whole fleet) and changes it: one tenant with
``citus_schema_move``, or the whole fleet with Citus' background rebalancer. On a plain
PostgreSQL server there is nothing to place: reads return no nodes and changes are refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from tenancy.engine import audit, db, ownership
from tenancy.engine.citus import (
    node_name,
    replicate_shared_tables,
    tenant_nodes,
    undistributed_tenants,
    worker_nodes,
)
from tenancy.engine.errors import TenancyError
from tenancy.engine.names import owner_group_role, owner_role_for_schema, role_for_schema
from tenancy.services.infrastructure import connect_ready, require_session
from tenancy.services.lifecycle import get_tenant

# Citus' shard transfer modes: 'auto' copies with logical replication while writes go on
# (it needs wal_level = logical and a replica identity on every table); 'block_writes'
# copies while the tenant's writes wait; 'force_logical' insists on logical replication.
TRANSFER_MODES = ("auto", "block_writes", "force_logical")

NOT_CITUS = (
    "This database is not a Citus cluster (no citus extension), so every tenant is on the "
    "one server; docs/scale-out.md says how to move to Citus."
)


# States of a rebalancer job that is still at work (it can be stopped, or is stopping).
REBALANCE_ACTIVE_STATES = ("scheduled", "running", "cancelling", "failing")


class PlacementError(TenancyError):
    """A placement change refused or failed; the message says why."""


def placement() -> tuple[list[str], dict[str, str]]:
    """(worker nodes, tenant schema → node), for reports and the admin."""
    with connect_ready() as conn:
        return worker_nodes(conn), tenant_nodes(conn)


@dataclass(frozen=True)
class Move:
    org_id: str
    schema: str
    source: str
    target: str
    mode: str
    elapsed_ms: int

    @property
    def moved(self) -> bool:
        return self.source != self.target


def _parse_node(node: str, workers: list[str]) -> tuple[str, int]:
    host, _, port = node.strip().rpartition(":")
    if not host or not (port.isascii() and port.isdigit()):
        raise PlacementError(f"Node {node!r}: expected HOST:PORT, e.g. 10.0.0.5:5432.")
    if node_name(host, int(port)) not in workers:
        listed = ", ".join(workers) or "none"
        raise PlacementError(f"{node} is not an active worker node (workers: {listed}).")
    return host, int(port)


def move_tenant(ident: str, node: str, *, mode: str = "auto", actor: str) -> Move:
    """Move a tenant's schema to worker ``node`` (``host:port``) with ``citus_schema_move``,
    audited. Refused while a migration run works on the tenant, and off Citus."""
    if mode not in TRANSFER_MODES:
        raise PlacementError(f"Unknown transfer mode {mode!r}; one of {', '.join(TRANSFER_MODES)}.")
    started = time.monotonic()
    with connect_ready() as conn:
        if not db.citus(conn):
            raise PlacementError(NOT_CITUS)
        tenant = get_tenant(ident)
        host, port = _parse_node(node, worker_nodes(conn))
        source = tenant_nodes(conn).get(tenant.schema)
        if source is None:
            raise PlacementError(
                f"{tenant.schema} is not a distributed schema (no tables yet, or created "
                "before Citus): `manage.py tenant_distribute` makes it one."
            )
        target = node_name(host, port)
        if source != target:  # a move to where it is records nothing
            _move(conn, tenant.schema, host, port, mode)
            with conn.transaction():
                audit.write(
                    conn,
                    "tenant.move",
                    actor=actor,
                    tenant_schema=tenant.schema,
                    details={"from": source, "to": target, "mode": mode},
                )
    elapsed = int((time.monotonic() - started) * 1000)
    return Move(tenant.org_id, tenant.schema, source, target, mode, elapsed)


def _move(conn: psycopg.Connection, schema: str, host: str, port: int, mode: str) -> None:
    # citus_schema_move runs transactions of its own, so the schema's advisory lock (the
    # one a migration run takes) is held at session level through the whole move: a run
    # that comes meanwhile waits for the tenant (as for another run) instead of failing on
    # Citus' own lock ("could not acquire the lock required to colocate ...").
    require_session(f"Moving {schema}")
    if not db.try_lock(conn, schema):
        raise PlacementError(
            f"A migration run is working on {schema} right now; move it when it is done."
        )
    try:
        conn.execute(
            "SELECT citus_schema_move(%s::regnamespace, %s, %s, %s::citus.shard_transfer_mode)",
            [schema, host, port, mode],
        )
    except psycopg.Error as exc:
        raise PlacementError(f"Moving {schema} failed: {_blocked_reason(exc)}") from exc
    finally:
        if not conn.closed and not conn.broken:
            db.unlock(conn, schema)


def _blocked_reason(exc: psycopg.Error) -> str:
    text = (exc.diag.message_primary or str(exc)).removeprefix("ERROR:  ")
    if "wal_level" in text:
        return (
            f"{text}. A move that keeps writes going uses logical replication: set "
            "wal_level = logical on every node, or pass --mode block_writes (the tenant's "
            "writes wait while its tables copy)."
        )
    if "disk stats" in text or "connection to the remote node" in text:
        return f"{text}. Is every worker node up and reachable from the coordinator?"
    if "replica identity" in text.lower():
        return f"{text}. Pass --mode block_writes, or give every table a primary key."
    return text


# -- converting a server's existing tenants -------------------------------------------------
def local_tenants() -> list[str]:
    """``undistributed_tenants`` on a connection of its own; refused off Citus."""
    with connect_ready() as conn:
        if not db.citus(conn):
            raise PlacementError(NOT_CITUS)
        return undistributed_tenants(conn)


def distribute_tenants(*, actor: str, on_done: Callable[[str], None] | None = None) -> list[str]:
    """Make every registered, still local tenant schema a distributed schema
    (``citus_schema_distribute``), one at a time, each audited; the schemas done. A failure
    stops there with what was done so far distributed (each call is its own transaction)."""
    done: list[str] = []
    with connect_ready() as conn:
        if not db.citus(conn):
            raise PlacementError(NOT_CITUS)
        # Tenant tables may point to shared tables, which must be on every node first.
        try:
            replicate_shared_tables(conn, owner_group_role(conn.info.dbname))
        except psycopg.Error as exc:
            raise PlacementError(f"Making shared tables reference tables failed: {exc}") from exc
        for schema in undistributed_tenants(conn):
            try:
                with conn.transaction():
                    if not db.try_xact_lock(conn, schema):
                        raise PlacementError(f"A migration run is working on {schema}; retry.")
                    # Its roles, made NOLOGIN before Citus, are how the coordinator will
                    # reach the workers for it (see ownership.citus_login_statements).
                    roles = [role_for_schema(schema, conn.info.dbname)]
                    roles.append(owner_role_for_schema(schema, conn.info.dbname))
                    for statement in ownership.citus_login_statements(roles):
                        conn.execute(statement)
                    conn.execute("SELECT citus_schema_distribute(%s::regnamespace)", [schema])
                    audit.write(conn, "tenant.distribute", actor=actor, tenant_schema=schema)
            except psycopg.Error as exc:
                raise PlacementError(
                    f"Distributing {schema} failed: {_blocked_reason(exc)} "
                    f"({len(done)} schema(s) distributed before it)."
                ) from exc
            done.append(schema)
            if on_done:
                on_done(schema)
    return done


# -- the rebalancer ------------------------------------------------------------------------
@dataclass(frozen=True)
class RebalanceJob:
    job_id: int
    state: str
    started_at: Any
    finished_at: Any
    details: dict[str, Any]


def start_rebalance(*, mode: str = "auto", actor: str) -> int | None:
    """Start Citus' background rebalancer; its job id, or None when the nodes are balanced."""
    if mode not in TRANSFER_MODES:
        raise PlacementError(f"Unknown transfer mode {mode!r}; one of {', '.join(TRANSFER_MODES)}.")
    with connect_ready() as conn:
        if not db.citus(conn):
            raise PlacementError(NOT_CITUS)
        try:
            row = conn.execute(
                "SELECT citus_rebalance_start("
                "shard_transfer_mode => %s::citus.shard_transfer_mode)",
                [mode],
            ).fetchone()
        except psycopg.Error as exc:
            raise PlacementError(f"The rebalancer did not start: {_blocked_reason(exc)}") from exc
        job = row[0] if row else None
        with conn.transaction():
            audit.write(conn, "tenant.rebalance", actor=actor, details={"job": job, "mode": mode})
    return job


def rebalance_jobs() -> list[RebalanceJob]:
    """The rebalancer's jobs, newest first (Citus keeps their history)."""
    with connect_ready() as conn:
        if not db.citus(conn):
            raise PlacementError(NOT_CITUS)
        rows = conn.execute(
            "SELECT job_id, state::text, started_at, finished_at, coalesce(details, '{}') "
            "FROM citus_rebalance_status() ORDER BY job_id DESC"
        ).fetchall()
    return [RebalanceJob(*row) for row in rows]


def stop_rebalance(*, actor: str) -> bool:
    """Stop the running rebalance (moves already done stay done); False if none ran."""
    with connect_ready() as conn:
        if not db.citus(conn):
            raise PlacementError(NOT_CITUS)
        running = conn.execute(
            "SELECT count(*) FROM citus_rebalance_status() WHERE state::text = ANY(%s)",
            [list(REBALANCE_ACTIVE_STATES)],
        ).fetchone()
        if not (running and running[0]):
            return False
        conn.execute("SELECT citus_rebalance_stop()")
        with conn.transaction():
            audit.write(conn, "tenant.rebalance.stop", actor=actor, details={})
    return True
