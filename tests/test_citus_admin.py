"""The admin on a Citus cluster (tests/citus.py: a coordinator and two workers): the node
column, the workers on the fleet overview, Move to node… through its confirmation page and
the rebalancer started from the admin, each checked on the coordinator (placement and
audit rows).

The admin is served by ``manage.py runserver`` in a process of its own, with the cluster
as its database, and driven by Playwright with Debian's chromium as a person would (log in,
click, confirm), as a staff user holding only the permissions these actions need. Without
Citus (``scripts/build-citus.sh``) the module skips with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import citus
from tests.conftest import ROOT, TEST_MIGRATIONS
from tests.pgbouncer import free_port

REASON = citus.missing()
pytestmark = [
    pytest.mark.citus,
    pytest.mark.once,
    *([pytest.mark.skip(reason=REASON)] if REASON else []),
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
TENANTS = ["org_cadmin1", "org_cadmin2", "org_cadmin3", "org_cadmin4"]
PASSWORD = "citus-admin-test-only"
LONG = 60_000  # ms: a bound for a slow machine, never a timing assertion


@dataclass
class Served:
    cluster: citus.Cluster
    env: dict[str, str]
    base_url: str

    def manage(self, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return done

    def query(self, text: str, params: list | None = None) -> list[tuple]:
        with self.cluster.connect() as conn:
            return conn.execute(text, params).fetchall()

    def nodes(self) -> dict[str, str]:
        """Tenant schema → worker, from Citus' own views (not the project's reads)."""
        rows = self.query(
            "SELECT DISTINCT c.schema_name::text, s.nodename || ':' || s.nodeport "
            "FROM citus_schemas c JOIN citus_shards s USING (colocation_id)"
        )
        return dict(rows)


def _wait_until_serving(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"runserver exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (local)
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"runserver did not answer: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("citus_admin")
    migrations = folder / "migrations_sql"
    shutil.copytree(TEST_MIGRATIONS, migrations)
    with citus.cluster(workers=2) as cluster:
        env = {**os.environ, "EMPLOYER_PORTAL_DB_URL": cluster.url, "DEBUG": "true"}
        env.pop("DATABASE_URL", None)
        env["TENANCY_MIGRATIONS_DIR"] = str(migrations)
        port = free_port()
        site = Served(cluster, env, f"http://127.0.0.1:{port}")
        site.manage("migrate_tenants", "--public")
        # One process for the tenants and the operator: a staff user with only the
        # permissions the placement pages need (migration 0010's among them).
        script = (
            "from django.contrib.auth.models import Permission, User\n"
            "from tenancy.services.tenants import create_tenant\n"
            f"for org in {TENANTS!r}: create_tenant(org, org.title(), actor='test')\n"
            f"u = User.objects.create_user('ops', password={PASSWORD!r}, is_staff=True)\n"
            "u.user_permissions.set(Permission.objects.filter(content_type__app_label="
            "'tenancy', codename__in=['view_tenant', 'move_tenant', 'rebalance_tenant']))\n"
        )
        site.manage("shell", "-c", script)
        log = folder / "runserver.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "manage.py"),
                    "runserver",
                    "--noreload",
                    f"127.0.0.1:{port}",
                ],  # fmt: skip
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_until_serving(proc, f"{site.base_url}/admin/login/", log)
            yield site
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def page(served: Served) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install -y chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 900})
        tab.set_default_timeout(LONG)
        tab.goto(f"{served.base_url}/admin/login/?next=/admin/")
        tab.fill("#id_username", "ops")
        tab.fill("#id_password", PASSWORD)
        tab.click("input[type=submit]")
        tab.wait_for_url(f"{served.base_url}/admin/")
        yield tab
        browser.close()


def schema_of(org_id: str) -> str:
    return f"tenant_{org_id}"


def tenant_row_nodes(page: Any) -> dict[str, str]:
    """Organization id → the Node cell, as the tenant list shows them."""
    rows = page.eval_on_selector_all(
        "#result_list tbody tr",
        "rows => rows.map(r => [r.querySelector('td.field-auth0_org_id').innerText.trim(),"
        " r.querySelector('td.field-node').innerText.trim()])",
    )
    return dict(rows)


def test_the_list_and_the_overview_show_each_tenants_node(served: Served, page: Any) -> None:
    placed = served.nodes()
    workers = [w.address for w in served.cluster.workers]
    assert set(placed) == {schema_of(org) for org in TENANTS}
    page.goto(f"{served.base_url}/admin/tenancy/tenant/")
    assert page.text_content("#result_list th.column-node").strip() == "Node"
    assert tenant_row_nodes(page) == {org: placed[schema_of(org)] for org in TENANTS}
    # Still no horizontal scrolling at 1400 px with the extra column.
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow == 0
    # The node filter: the tenants of one worker.
    page.click(f"#changelist-filter a:text-is('{workers[0]}')")
    on_first = {o for o, n in tenant_row_nodes(page).items() if n == workers[0]}
    assert set(tenant_row_nodes(page)) == on_first
    assert on_first == {o for o in TENANTS if placed[schema_of(o)] == workers[0]}
    # The fleet overview: each worker with how many tenants it holds.
    page.goto(f"{served.base_url}/admin/")
    text = page.inner_text("#fleet-nodes")
    for worker in workers:
        count = sum(1 for n in placed.values() if n == worker)
        assert f"{worker}: {count} tenant" in text


def test_move_to_node_through_its_confirmation_page(served: Served, page: Any) -> None:
    org = TENANTS[0]
    schema = schema_of(org)
    source = served.nodes()[schema]
    (target,) = [w.address for w in served.cluster.workers if w.address != source]
    rows_before = served.query(f"SELECT count(*) FROM {schema}.organizations")
    page.goto(f"{served.base_url}/admin/tenancy/tenant/?q={org}")
    page.click(f"#result_list a:text-is('{org.title()}')")
    assert source in page.inner_text("#tenant-facts")
    page.click("a.tenancy-move")
    assert page.inner_text("#move-current") == source
    assert page.eval_on_selector("#id_node", "s => [...s.options].map(o => o.value)") == [target]
    page.select_option("#id_mode", "block_writes")
    page.click("#move-confirm")
    page.wait_for_selector("#tenant-facts")
    assert f"Moved {schema} from {source} to {target} (block_writes)" in page.text_content(
        ".messagelist"
    )
    assert target in page.inner_text("#tenant-facts")
    # On the coordinator: the schema lives on the target now, rows kept, and audited.
    assert served.nodes()[schema] == target
    assert served.query(f"SELECT count(*) FROM {schema}.organizations") == rows_before
    assert served.query(
        "SELECT actor, details->>'from', details->>'to', details->>'mode' "
        "FROM public.audit_logs WHERE action = 'tenant.move' AND tenant_schema = %s",
        [schema],
    ) == [("admin:ops", source, target, "block_writes")]


def test_rebalance_from_the_admin_spreads_the_tenants(served: Served, page: Any) -> None:
    first = served.cluster.workers[0].address
    # Everything on the first worker (the service, as tenant_move does), then rebalance.
    script = (
        "from tenancy.services import placement\n"
        f"for org in {TENANTS!r}:\n"
        f"    placement.move_tenant(org, {first!r}, mode='block_writes', actor='test')\n"
    )
    served.manage("shell", "-c", script)
    assert set(served.nodes().values()) == {first}
    page.goto(f"{served.base_url}/admin/tenancy/tenant/")
    page.click("a.tenancy-rebalance")
    assert "4 tenants" in page.inner_text("#rebalance-nodes")
    page.select_option("#id_mode", "block_writes")
    page.click("#rebalance-confirm")
    assert "Rebalance job" in page.inner_text(".messagelist")
    # The page refreshes itself while the job runs; it ends with the job finished.
    page.wait_for_selector("#rebalance-form", timeout=LONG)
    assert "finished" in page.inner_text("#rebalance-jobs tbody tr:first-child")
    counts: dict[str, int] = {}
    for node in served.nodes().values():
        counts[node] = counts.get(node, 0) + 1
    assert sorted(counts.values()) == [2, 2]
    assert served.query(
        "SELECT actor, details->>'mode' FROM public.audit_logs WHERE action = 'tenant.rebalance'"
    ) == [("admin:ops", "block_writes")]
    # Nothing runs now: the stop page says so and offers no "Yes".
    page.goto(f"{served.base_url}/admin/tenancy/tenant/rebalance/stop/")
    assert page.query_selector("#rebalance-stop-confirm") is None
    assert "nothing to stop" in page.inner_text("#rebalance-idle")


def test_stop_a_running_rebalance_through_its_confirmation_page(served: Served, page: Any) -> None:
    first = served.cluster.workers[0].address
    script = (
        "from tenancy.services import placement\n"
        f"for org in {TENANTS!r}:\n"
        f"    placement.move_tenant(org, {first!r}, mode='block_writes', actor='test')\n"
    )
    served.manage("shell", "-c", script)
    before = served.nodes()
    # citus_rebalance_status() shows the latest job only
    last_job = max(
        [j for (j,) in served.query("SELECT job_id FROM citus_rebalance_status()")] or [0]
    )
    # A transaction holding every tenant's table keeps the rebalancer's move waiting, so
    # the job is still running when the operator stops it.
    with served.cluster.connect() as holder:
        holder.execute("BEGIN")
        for org in TENANTS:
            holder.execute(
                f"LOCK TABLE {schema_of(org)}.organizations IN SHARE UPDATE EXCLUSIVE MODE"
            )
        page.goto(f"{served.base_url}/admin/tenancy/tenant/rebalance/")
        page.select_option("#id_mode", "block_writes")
        page.click("#rebalance-confirm", timeout=15_000)
        assert "Rebalance job" in page.inner_text(".messagelist")
        stop_url = page.get_attribute("#rebalance-stop", "href")
        assert stop_url and stop_url.endswith("/rebalance/stop/")
        page.goto(f"{served.base_url}{stop_url}")
        assert "the moves already done stay done" in page.inner_text("#rebalance-explain")
        page.click("#rebalance-stop-confirm")
        assert "Rebalance stopped" in page.inner_text(".messagelist")
        holder.execute("ROLLBACK")
    page.wait_for_selector("#rebalance-form", timeout=LONG)  # the job has ended
    (job,) = served.query("SELECT job_id, state::text FROM citus_rebalance_status()")
    assert job[0] > last_job and job[1] == "cancelled"
    assert served.nodes() == before  # the blocked move never happened
    assert served.query(
        "SELECT actor FROM public.audit_logs WHERE action = 'tenant.rebalance.stop'"
    ) == [("admin:ops",)]
