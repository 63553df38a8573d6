"""Concurrent requests to tenant pages, each response checked for its own tenant's rows:
the pooler tests and bench/bench_pooler.py share it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from django.db import connection, connections
from django.test import Client


def host_of(org_id: str) -> str:
    return org_id.replace("_", "-") + ".localhost"


def run_clients(loop: Callable[[int], None], clients: int) -> float:
    """``loop(index)`` in ``clients`` threads at once; the seconds until all are done."""
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(loop, i) for i in range(clients)]:
            future.result()
    return time.perf_counter() - started


def serve_pages(
    tenants: list[tuple[str, str]], *, clients: int, total: int, close_each: bool
) -> dict[str, Any]:
    """``total`` GETs of ``/`` from ``clients`` threads, alternating over ``tenants``
    ((org id, the title only its page may show)). Each thread has its own Django
    connection; ``close_each`` closes it after every request (returns it to Django's pool)."""
    counts = {"ok": 0, "wrong": 0, "errors": 0}
    samples: list[str] = []
    lock = threading.Lock()
    per_client = total // clients

    def loop(index: int) -> None:
        client = Client(raise_request_exception=False)
        local = dict.fromkeys(counts, 0)
        for i in range(per_client):
            org, title = tenants[(i + index) % len(tenants)]
            others = [t for o, t in tenants if o != org]
            try:
                response = client.get("/", HTTP_HOST=host_of(org))
                body = response.content.decode()
                if response.status_code != 200:
                    local["errors"] += 1
                    samples.append(f"{response.status_code}: {body[:200]}")
                elif title in body and not any(t in body for t in others):
                    local["ok"] += 1
                else:
                    local["wrong"] += 1
            except Exception as exc:  # counted, the run goes on: the figures tell
                local["errors"] += 1
                samples.append(repr(exc)[:200])
            if close_each:
                connection.close()
        connection.close()
        with lock:
            for key, value in local.items():
                counts[key] += value

    elapsed = run_clients(loop, clients)
    requests = per_client * clients
    return {**counts, "requests": requests, "rps": requests / elapsed, "samples": samples[:5]}


@contextmanager
def default_database(host: str, port: int | str, *, pool: dict | None = None) -> Iterator[None]:
    """Point Django's default connection (every thread's) at ``host:port``, optionally with
    Django's connection pool; put it back afterwards."""
    sd = connections.settings["default"]
    saved = {k: sd.get(k) for k in ("HOST", "PORT", "OPTIONS")}
    options = {k: v for k, v in (sd.get("OPTIONS") or {}).items() if k != "pool"}
    if pool:
        options["pool"] = pool
    connections.close_all()
    sd.update(HOST=host, PORT=str(port), OPTIONS=options)
    try:
        yield
    finally:
        connections.close_all()
        if pool:
            connection.close_pool()
        sd.update(saved)
