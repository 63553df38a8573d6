"""/metrics: the fleet's numbers as the database has them, for a token or staff only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.contrib.auth.models import User
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from tenancy.services import fleet
from tenancy.services.tenants import create_tenant
from tests.conftest import connect, query, run_command

TOKEN = "s3cret-metrics-token"

POISONED = """-- Description: fails where an organization is named 'poison'
-- UP
CREATE TABLE invoices (id serial PRIMARY KEY);
DO $$ BEGIN
  IF EXISTS (SELECT 1 FROM organizations WHERE name = 'poison') THEN
    RAISE EXCEPTION 'poisoned tenant %', current_schema();
  END IF;
END $$;
"""


@pytest.fixture
def token(settings: Any) -> str:
    settings.TENANCY = {**settings.TENANCY, "METRICS_TOKEN": TOKEN}
    return TOKEN


def scrape(client: Client | None = None, **extra: str) -> dict[tuple[str, tuple], float]:
    response = (client or Client()).get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def fleet_of_five(public_ready: None, sql_dir: Path) -> dict[str, str]:
    """ok, failed (its 004 failed), drifted (its 004 checksum differs), pending (its 004
    ledger row gone), missing (schema dropped), one of them suspended."""
    names = ("ok", "failed", "drifted", "pending", "missing")
    schemas = {n: create_tenant(f"org_metrics{n}").schema for n in names}
    (sql_dir / "tenant" / "004_invoices.sql").write_text(POISONED)
    with connect() as conn:
        conn.execute(
            f'INSERT INTO "{schemas["failed"]}".organizations (auth0_org_id, name) '
            "VALUES ('org_poison', 'poison')"
        )
    assert run_command("migrate_tenants", "--tenants")[0] == 1
    with connect() as conn:
        conn.execute(
            "UPDATE tenant_migrations SET checksum = 'edited' "
            "WHERE tenant_schema = %s AND migration_version = '004'",
            [schemas["drifted"]],
        )
        conn.execute(
            "DELETE FROM tenant_migrations WHERE tenant_schema = %s AND migration_version = '004'",
            [schemas["pending"]],
        )
        conn.execute(f'DROP SCHEMA "{schemas["missing"]}" CASCADE')
        conn.execute(
            "UPDATE tenant_registry SET status = 'suspended' WHERE schema_name = %s",
            [schemas["ok"]],
        )
    return schemas


def test_metrics_match_the_database(fleet_of_five, token):
    samples = scrape(HTTP_AUTHORIZATION=f"Bearer {token}")
    by_status = dict(query("SELECT status, count(*) FROM tenant_registry GROUP BY status"))
    assert by_status == {"active": 4, "suspended": 1}
    for status in ("active", "suspended", "archived"):
        assert value(samples, "tenancy_tenants", status=status) == by_status.get(status, 0)
    assert value(samples, "tenancy_schemas", scope="tenant") == 5
    assert value(samples, "tenancy_schemas", scope="public") == 1
    # failed and pending lack 004 (the dropped schema's ledger rows still say applied).
    assert value(samples, "tenancy_schemas_pending", scope="tenant") == 2
    assert value(samples, "tenancy_pending_migrations", scope="tenant") == 2
    assert value(samples, "tenancy_schemas_failed", scope="tenant") == 1
    assert value(samples, "tenancy_schemas_drifted", scope="tenant") == 1
    assert value(samples, "tenancy_schemas_missing", scope="tenant") == 1
    assert value(samples, "tenancy_schemas_pending", scope="public") == 0
    assert value(samples, "tenancy_runs_active") == 0
    # The last finished run: the one that failed, with its id and duration.
    run_id, seconds, finished = query(
        "SELECT id, extract(epoch FROM finished_at - started_at)::float8, "
        "extract(epoch FROM finished_at)::float8 FROM tenant_migration_runs "
        "ORDER BY finished_at DESC LIMIT 1"
    )[0]
    assert value(samples, "tenancy_last_run_outcome", outcome="failed") == 1
    assert value(samples, "tenancy_last_run_outcome", outcome="succeeded") == 0
    assert value(samples, "tenancy_last_run_id") == run_id
    assert value(samples, "tenancy_last_run_duration_seconds") == pytest.approx(seconds)
    assert value(samples, "tenancy_last_run_finished_timestamp_seconds") == pytest.approx(finished)
    pooled = query("SELECT count(*) FROM public.tenant_pool WHERE state = 'ready'")[0][0]
    assert value(samples, "tenancy_pool_size") == pooled


def test_numbers_are_read_at_scrape_time_and_the_pool_is_counted(fleet_of_five, token):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    assert value(scrape(**auth), "tenancy_schemas_drifted", scope="tenant") == 1
    edited = query(
        "UPDATE tenant_migrations SET checksum = 'edited' WHERE migration_version = '003' "
        "AND tenant_schema <> %s RETURNING 1",
        [fleet_of_five["missing"]],
    )
    assert len(edited) == 4
    assert value(scrape(**auth), "tenancy_schemas_drifted", scope="tenant") == 4
    with connect() as conn:  # entries of the warm pool: two ready, one set aside as broken
        conn.execute("DELETE FROM public.tenant_pool")
        conn.execute(
            "INSERT INTO public.tenant_pool (schema_name, state) VALUES "
            "('metrics_p1', 'ready'), ('metrics_p2', 'ready'), ('metrics_p3', 'broken')"
        )
    try:
        assert value(scrape(**auth), "tenancy_pool_size") == 2
    finally:
        query("DELETE FROM public.tenant_pool RETURNING 1")


def test_constant_number_of_queries(public_ready, monkeypatch):
    """The same number of statements for 1 tenant and for 6."""
    counted: list[str] = []
    real = psycopg.Connection.execute

    def counting(self: psycopg.Connection, statement: Any, *args: Any, **kwargs: Any) -> Any:
        counted.append(str(statement))
        return real(self, statement, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", counting)
    create_tenant("org_metricsone")
    counted.clear()
    fleet.fleet_snapshot()
    one = len(counted)
    for i in range(5):
        create_tenant(f"org_metricsmore{i}")
    counted.clear()
    snapshot = fleet.fleet_snapshot()
    assert snapshot.scopes["tenant"].schemas == 6
    assert len(counted) == one


def test_anonymous_and_wrong_token_get_401_non_staff_403(pg, token):
    response = Client().get("/metrics")
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer")
    assert b"tenancy_" not in response.content
    wrong = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token")
    assert wrong.status_code == 401
    user = User.objects.create_user("viewer", password="x")
    client = Client()
    client.force_login(user)
    assert client.get("/metrics").status_code == 403


def test_a_staff_session_is_enough(public_ready, settings):
    settings.TENANCY = {**settings.TENANCY, "METRICS_TOKEN": ""}  # no token configured
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401
    staff = User.objects.create_user("ops", password="x", is_staff=True)
    client = Client()
    client.force_login(staff)
    samples = scrape(client)
    assert value(samples, "tenancy_schemas", scope="tenant") == 0
    assert value(samples, "tenancy_last_run_outcome", outcome="failed") == 0


def test_not_served_on_a_tenant_host(public_ready, token):
    tenant = create_tenant("org_metricshost")
    host = query(
        "SELECT domain FROM tenant_domains WHERE tenant_id = "
        "(SELECT id FROM tenant_registry WHERE schema_name = %s)",
        [tenant.schema],
    )[0][0]
    response = Client().get("/metrics", HTTP_HOST=host, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 404
