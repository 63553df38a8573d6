"""Placement on a plain PostgreSQL server (no Citus): the Citus verbs refuse clearly and
the reports show no node; and the order in which a run's workers take schemas on Citus.
The cluster itself is tested in test_citus.py."""

from __future__ import annotations

import json

import pytest

from tenancy.engine.citus import spread_over_nodes
from tenancy.services.placement import PlacementError, _parse_node
from tenancy.services.tenants import create_tenant
from tests.conftest import run_command


def test_runs_take_the_nodes_in_turn():
    nodes = {"a1": "n1", "a2": "n1", "a3": "n1", "b1": "n2", "c1": "n3", "c2": "n3"}
    order = spread_over_nodes(sorted(nodes), nodes.get)
    assert order == ["a1", "b1", "c1", "a2", "c2", "a3"]
    # each node's schemas keep their order; nothing lost or repeated
    assert sorted(order) == sorted(nodes)
    # off Citus (no nodes) the order is unchanged
    assert spread_over_nodes(["x", "y", "z"], lambda _: None) == ["x", "y", "z"]


@pytest.mark.parametrize(
    "args",
    [
        ("tenant_move", "org_place1", "--node", "10.0.0.5:5432"),
        ("tenant_rebalance",),
        ("tenant_rebalance", "--status"),
        ("tenant_rebalance", "--stop"),
        ("tenant_distribute",),
    ],
)
def test_citus_verbs_refuse_on_plain_postgresql(public_ready, args):
    create_tenant("org_place1", "Place", actor="test")
    code, out, err = run_command(*args)
    assert code == 1
    assert "not a Citus cluster" in err
    assert "Traceback" not in err


def test_reports_show_no_node_off_citus(public_ready):
    create_tenant("org_place2", "Place", actor="test")
    code, out, _ = run_command("tenant_status")
    assert code == 0 and "NODE" not in out and "tenant_org_place2" in out
    code, out, _ = run_command("tenant_list", "--format", "json")
    assert json.loads(out)[0]["node"] is None
    code, out, _ = run_command("tenant_status", "--format", "json")
    assert json.loads(out)[0]["node"] is None


def test_a_node_is_host_and_ascii_port():
    workers = ["10.0.0.5:5432"]
    assert _parse_node(" 10.0.0.5:5432\n", workers) == ("10.0.0.5", 5432)
    for bad in ["garbage", ":5432", "10.0.0.5:+5432", "10.0.0.5:\u0665\u0664\u0663\u0662"]:
        with pytest.raises(PlacementError, match="expected HOST:PORT"):
            _parse_node(bad, workers)
