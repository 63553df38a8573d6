"""What a Citus coordinator's catalog says about placement: the worker nodes, and the node
each tenant schema lives on. With schema-based sharding a tenant schema is a distributed
schema whose tables form one colocation group on one worker. Off Citus (``db.citus`` is
False) there are no nodes, and these return nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TypeVar

import psycopg

from tenancy.engine import db

# Each distributed schema's node: the placement of any one of its tables (they are
# colocated, so all share it). One query for the whole fleet.
_SCHEMA_NODES = """
SELECT DISTINCT ON (s.schemaid) s.schemaid::regnamespace::text, n.nodename, n.nodeport
  FROM pg_dist_schema s
  JOIN pg_dist_partition p ON p.colocationid = s.colocationid
  JOIN pg_dist_shard sh ON sh.logicalrelid = p.logicalrelid
  JOIN pg_dist_placement pl ON pl.shardid = sh.shardid
  JOIN pg_dist_node n ON n.groupid = pl.groupid
 ORDER BY s.schemaid, n.nodeid
"""

_WORKERS = """
SELECT nodename, nodeport FROM pg_dist_node
 WHERE noderole = 'primary' AND isactive AND shouldhaveshards ORDER BY nodeid
"""

# Registered tenant schemas still local to the coordinator (created before Citus, or
# before schema-based sharding was turned on).
_UNDISTRIBUTED = """
SELECT tr.schema_name FROM public.tenant_registry tr
  JOIN pg_namespace n ON n.nspname = tr.schema_name
 WHERE NOT EXISTS (SELECT 1 FROM pg_dist_schema s WHERE s.schemaid = n.oid)
 ORDER BY tr.schema_name
"""


T = TypeVar("T")


def node_name(host: str, port: int) -> str:
    return f"{host}:{port}"


def tenant_nodes(conn: psycopg.Connection) -> dict[str, str]:
    """Each distributed schema's node as ``host:port``; empty off Citus."""
    if not db.citus(conn):
        return {}
    return {schema: node_name(h, p) for schema, h, p in conn.execute(_SCHEMA_NODES)}


def worker_nodes(conn: psycopg.Connection) -> list[str]:
    """The nodes that take tenants, as ``host:port``; empty off Citus."""
    if not db.citus(conn):
        return []
    return [node_name(h, p) for h, p in conn.execute(_WORKERS)]


def undistributed_tenants(conn: psycopg.Connection) -> list[str]:
    if not db.citus(conn):
        return []
    return [row[0] for row in conn.execute(_UNDISTRIBUTED)]


def spread_over_nodes(items: list[T], node_of: Callable[[T], str | None]) -> list[T]:
    """``items`` reordered to take their nodes in turn (A1 B1 A2 B2 …, each node's items in
    their order): a run's workers, which take schemas in this order, then work on
    different nodes at the same time instead of queueing on one. Off Citus every item has
    no node and the order stays as it was."""
    queues: dict[str | None, deque[T]] = {}
    for item in items:
        queues.setdefault(node_of(item), deque()).append(item)
    spread: list[T] = []
    while queues:
        for node in list(queues):
            spread.append(queues[node].popleft())
            if not queues[node]:
                del queues[node]
    return spread


# Public tables that tenant tables may point to (the owner group holds REFERENCES on them,
# granted by a public migration) and that are still local to the coordinator.
_SHARED_LOCAL = """
SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
   AND to_regrole(quote_ident(%s)) IS NOT NULL
   AND has_table_privilege(quote_ident(%s), c.oid, 'REFERENCES')
   AND c.oid NOT IN (SELECT logicalrelid FROM pg_dist_partition)
 ORDER BY 1
"""


def replicate_shared_tables(conn: psycopg.Connection, owner_group: str) -> list[str]:
    """Make every shared table that tenant tables may reference a Citus *reference table*
    (a copy on every node): a tenant's foreign key must find the row on the tenant's own
    node. Returns the tables made so; nothing off Citus."""
    if not db.citus(conn):
        return []
    tables = [row[0] for row in conn.execute(_SHARED_LOCAL, [owner_group, owner_group])]
    for table in tables:
        conn.execute("SELECT create_reference_table(%s)", [table])
    return tables


def unreachable_workers(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(node, what Citus said) for each active worker the coordinator cannot run a query
    on; empty off Citus or when all answer."""
    if not db.citus(conn):
        return []
    rows = conn.execute(
        "SELECT nodename, nodeport, success, result FROM run_command_on_workers('SELECT 1')"
    ).fetchall()
    return [(node_name(host, port), result) for host, port, ok, result in rows if not ok]
