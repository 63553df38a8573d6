"""``/metrics``: the fleet in Prometheus' text format, read from the database at scrape time.

For ``TENANCY_METRICS_TOKEN`` as a bearer token (compared in constant time) or a logged-in
staff user; anyone else gets 401 (403 for a user who is not staff). Served on the main host
only: a tenant's host routes to the portal's URLs, which have no ``/metrics``. The numbers
come from ``tenancy.services.fleet`` (a constant number of queries).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator

import psycopg
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tenancy import conf
from tenancy.engine.errors import TenancyError
from tenancy.services import fleet


class FleetCollector(Collector):
    """Reads a fresh snapshot on every collect (every scrape), never a cached number."""

    def __init__(self, snapshot: Callable[[], fleet.FleetSnapshot] = fleet.fleet_snapshot):
        self.snapshot = snapshot

    def describe(self) -> list[Metric]:
        return []  # registering must not query the database; collect does

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot()
        tenants = GaugeMetricFamily("tenancy_tenants", "Registered tenants", labels=["status"])
        for status, n in sorted(s.tenants_by_status.items()):
            tenants.add_metric([status], n)
        yield tenants
        yield from _scope_gauges(s)
        yield GaugeMetricFamily(
            "tenancy_pool_size", "Ready schemas in the warm pool (0 without one)", value=s.pool_size
        )
        yield GaugeMetricFamily(
            "tenancy_runs_active", "Migration runs queued or running", value=s.active_runs
        )
        yield from _last_run_gauges(s.last_run)
        rollouts = GaugeMetricFamily(
            "tenancy_rollouts", "Staged rollouts holding the fleet, by state", labels=["state"]
        )
        for state, count in sorted(s.rollouts.items()):
            rollouts.add_metric([state], count)
        yield rollouts


SCOPE_GAUGES = (  # (name, help, ScopeCounts field)
    ("tenancy_schemas", "Schemas known to the engine", "schemas"),
    ("tenancy_schemas_pending", "Schemas with pending migration files", "with_pending"),
    ("tenancy_pending_migrations", "Pending migration files, summed over schemas", "pending_files"),
    ("tenancy_schemas_failed", "Schemas whose latest attempt failed, still pending", "failed"),
    ("tenancy_schemas_drifted", "Schemas with an applied file whose content changed", "drifted"),
    ("tenancy_schemas_missing", "Registered tenants whose schema does not exist", "missing"),
)


def _scope_gauges(s: fleet.FleetSnapshot) -> Iterator[Metric]:
    for name, text, attribute in SCOPE_GAUGES:
        gauge = GaugeMetricFamily(name, text, labels=["scope"])
        for scope, counts in sorted(s.scopes.items()):
            gauge.add_metric([scope], getattr(counts, attribute))
        yield gauge


def _last_run_gauges(run: fleet.LastRun | None) -> Iterator[Metric]:
    """The last finished run: one 0/1 series per outcome (alert on outcome="failed" == 1),
    its id, duration and end time. Nothing but zeros before the first run."""
    outcome = GaugeMetricFamily(
        "tenancy_last_run_outcome", "1 for the outcome of the last finished run", labels=["outcome"]
    )
    for name in fleet.RUN_OUTCOMES:
        outcome.add_metric([name], float(run is not None and run.status == name))
    yield outcome
    if run is None:
        return
    yield GaugeMetricFamily("tenancy_last_run_id", "Id of the last finished run", value=run.run_id)
    if run.duration_s is not None:
        yield GaugeMetricFamily(
            "tenancy_last_run_duration_seconds", "Duration of the last run", value=run.duration_s
        )
    yield GaugeMetricFamily(
        "tenancy_last_run_finished_timestamp_seconds",
        "When the last run finished (Unix time)",
        value=run.finished_at,
    )


def allowed(request: HttpRequest) -> bool | None:
    """True: the token or a staff user. False: a logged-in user who is not staff (403).
    None: no credentials, or a wrong token (401)."""
    expected = conf.setting("METRICS_TOKEN") or ""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if expected and scheme.lower() == "bearer":
        return hmac.compare_digest(given.strip().encode(), expected.encode()) or None
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return bool(user.is_active and user.is_staff)


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    verdict = allowed(request)
    if verdict is None:
        response = HttpResponse("Authentication required.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if not verdict:
        return HttpResponse("Staff only.\n", status=403, content_type="text/plain")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector())
    try:
        body = generate_latest(registry)
    except (TenancyError, psycopg.Error) as exc:  # no tenancy tables, no database: a line
        return HttpResponse(f"{exc}\n", status=503, content_type="text/plain")
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
