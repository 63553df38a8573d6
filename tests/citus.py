"""A local Citus cluster (a coordinator and workers) for the scale-out tests and
``bench/bench_citus.py``.

Each node is a PostgreSQL server of the machine's Debian packages with ``citus`` preloaded,
initialised in a temporary folder, listening on a free port of 127.0.0.1, trusting local
users; the coordinator knows the workers, and the database has schema-based sharding on
(every new schema becomes a distributed schema placed on one worker). PostgreSQL refuses to
run as root, so under root the nodes run as the ``postgres`` system user the packages
create. Citus is not packaged for Debian: ``scripts/build-citus.sh`` installs it.
``cluster(workers=0, plain=True)`` starts one node of the same binaries and settings without
Citus (the baseline of ``bench/bench_citus.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from tests.pgbouncer import free_port

PG_MAJOR = os.environ.get("CITUS_PG_MAJOR", "15")
BIN = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
LIB = Path(f"/usr/lib/postgresql/{PG_MAJOR}/lib")
SYSTEM_USER = "postgres"


def missing(plain: bool = False) -> str | None:
    """Why a cluster (``plain``: a node without Citus) cannot start here, in one line; None
    when it can."""
    if not (BIN / "postgres").exists():
        return f"no PostgreSQL {PG_MAJOR} server binaries in {BIN}"
    if not plain and not (LIB / "citus.so").exists():
        return f"Citus is not installed for PostgreSQL {PG_MAJOR} (scripts/build-citus.sh SOURCE)"
    return None


@dataclass
class Node:
    port: int
    folder: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


@dataclass
class Cluster:
    coordinator: Node
    workers: list[Node]
    database: str
    nodes: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.coordinator.url(self.database)

    def connect(self, node: Node | None = None) -> psycopg.Connection:
        node = node or self.coordinator
        return psycopg.connect(node.url(self.database), autocommit=True)


def _as_postgres(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", SYSTEM_USER, "--", *command]


def _run(command: list[str]) -> None:
    done = subprocess.run(_as_postgres(command), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip() or done.stdout}")


def _start_node(root: Path, name: str, plain: bool = False) -> Node:
    folder = root / name
    _run([str(BIN / "initdb"), "-D", str(folder), "-U", "postgres", "-A", "trust", "-E", "UTF8",
          "--no-sync"])  # fmt: skip
    port = free_port()
    # Speed over durability: the cluster lives for one test session.
    settings = {
        "shared_preload_libraries": "'citus'",
        "port": str(port),
        "listen_addresses": "'127.0.0.1'",
        "unix_socket_directories": f"'{root}'",
        "max_connections": "200",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "citus.shard_replication_factor": "1",
        # The maintenance daemon would phone home for version checks without this.
        "citus.enable_statistics_collection": "off",
        "max_prepared_transactions": "200",
        # tenant_move's default mode copies a schema with logical replication.
        "wal_level": "logical",
    }
    if plain:
        settings = {k: v for k, v in settings.items() if "citus" not in k + v}
    with (folder / "postgresql.conf").open("a") as conf:
        conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
    _run([str(BIN / "pg_ctl"), "-D", str(folder), "-l", str(folder / "server.log"), "-w",
          "-t", "60", "start"])  # fmt: skip
    return Node(port, folder)


def _stop_node(node: Node) -> None:
    subprocess.run(
        _as_postgres([str(BIN / "pg_ctl"), "-D", str(node.folder), "-m", "immediate", "stop"]),
        capture_output=True,
    )


def create_database(cluster: Cluster, name: str) -> None:
    """An empty database ``name`` on every node (no extension yet)."""
    for node in cluster.nodes:
        with psycopg.connect(node.url("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def make_citus(cluster: Cluster, name: str) -> None:
    """Turn database ``name`` of every node into one Citus database: the extension, the
    coordinator and its workers, schema-based sharding on for new sessions."""
    for node in cluster.nodes:
        with psycopg.connect(node.url(name), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION citus")
    with psycopg.connect(cluster.coordinator.url(name), autocommit=True) as conn:
        conn.execute(
            "SELECT citus_set_coordinator_host('127.0.0.1', %s)", [cluster.coordinator.port]
        )
        for worker in cluster.workers:
            conn.execute("SELECT citus_add_node('127.0.0.1', %s)", [worker.port])
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET citus.enable_schema_based_sharding TO on").format(
                sql.Identifier(name)
            )
        )


@contextmanager
def cluster(
    workers: int = 2, database: str = "employer_portal", *, plain: bool = False
) -> Iterator[Cluster]:
    """Start a coordinator and ``workers`` workers; yields the cluster, stops and deletes it
    afterwards. ``plain``: one node of the same binaries and settings without Citus (no
    workers; the database only created), for comparisons."""
    if plain and workers:
        raise ValueError("a plain node has no workers")
    reason = missing(plain)
    if reason:
        raise RuntimeError(reason)
    root = Path(tempfile.mkdtemp(prefix="citus-"))
    if os.geteuid() == 0:
        shutil.chown(root, SYSTEM_USER, SYSTEM_USER)
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, root, True)
        nodes: list[Node] = []
        for name in ["coordinator", *(f"worker{i + 1}" for i in range(workers))]:
            node = _start_node(root, name, plain)
            stack.callback(_stop_node, node)
            nodes.append(node)
        result = Cluster(nodes[0], nodes[1:], database, nodes)
        create_database(result, database)
        if not plain:
            make_citus(result, database)
        yield result
