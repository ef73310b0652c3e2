"""The cluster GPU gauges (`hexrl_cluster_gpus`, `hexrl_cluster_gpus_going_away`) from Node dicts."""

from __future__ import annotations

import asyncio

import pytest
from k8s_helpers import hetero_nodes
from prometheus_client import REGISTRY

from hexrl.k8s import metrics
from hexrl.k8s.handlers import CLUSTER_METRICS_DELAY, Operator
from hexrl.k8s.settings import OperatorSettings
from hexrl.k8s.snapshot import build_cluster, node_view

pytestmark = pytest.mark.unit
S = OperatorSettings()


def gauge(name: str, gpu: str, pool: str, capacity: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"gpu": gpu, "pool": pool, "capacity_type": capacity})


def series(name: str) -> dict[tuple[str, str, str], float]:
    """Every exported sample of one gauge, keyed by (gpu, pool, capacity_type)."""
    out = {}
    for family in REGISTRY.collect():
        for s in family.samples:
            if s.name == name:
                out[(s.labels["gpu"], s.labels["pool"], s.labels["capacity_type"])] = s.value
    return out


def export(nodes: list[dict]) -> None:
    metrics.export_cluster(build_cluster([node_view(n, S) for n in nodes], [], None, S).cluster)


def test_gpus_are_summed_by_type_pool_and_capacity_type():
    export(hetero_nodes())
    assert series("hexrl_cluster_gpus") == {
        ("H800", "h800-ondemand", "on-demand"): 16.0,
        ("H20", "h20-spot", "spot"): 24.0,
        ("L40S", "l40s-ondemand", "on-demand"): 8.0,
    }
    # Nothing is leaving: every label set still has a going-away series, at 0 (dashboards see 0, not "no data").
    assert series("hexrl_cluster_gpus_going_away") == dict.fromkeys(series("hexrl_cluster_gpus"), 0.0)


def test_cordoned_and_not_ready_nodes_count_as_going_away_and_still_as_allocatable():
    nodes = hetero_nodes()
    by_name = {n["metadata"]["name"]: n for n in nodes}
    by_name["h20-spot-1"]["spec"]["unschedulable"] = True
    by_name["h800-ondemand-0"]["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    export(nodes)
    assert gauge("hexrl_cluster_gpus_going_away", "H20", "h20-spot", "spot") == 8.0
    assert gauge("hexrl_cluster_gpus_going_away", "H800", "h800-ondemand", "on-demand") == 8.0
    assert gauge("hexrl_cluster_gpus_going_away", "L40S", "l40s-ondemand", "on-demand") == 0.0
    assert gauge("hexrl_cluster_gpus", "H20", "h20-spot", "spot") == 24.0


def test_a_vanished_pool_loses_its_series():
    export(hetero_nodes())
    export([n for n in hetero_nodes() if not n["metadata"]["name"].startswith("l40s")])
    assert gauge("hexrl_cluster_gpus", "L40S", "l40s-ondemand", "on-demand") is None
    assert gauge("hexrl_cluster_gpus_going_away", "L40S", "l40s-ondemand", "on-demand") is None
    assert gauge("hexrl_cluster_gpus", "H20", "h20-spot", "spot") == 24.0


def test_operator_node_events_refresh_the_gauges_once_per_burst(fake_api):
    op = Operator(settings=S, api=fake_api)
    export([])  # start from an empty gauge whatever earlier tests left
    rebuilds = 0
    refresh = op.refresh_cluster_metrics

    def counting() -> None:
        nonlocal rebuilds
        rebuilds += 1
        refresh()

    op.refresh_cluster_metrics = counting  # type: ignore[method-assign]

    async def burst() -> None:
        for n in hetero_nodes():
            op.store.put_node(node_view(n, S))
            op.schedule_cluster_metrics()
        await asyncio.sleep(CLUSTER_METRICS_DELAY * 2)

    asyncio.run(burst())
    assert rebuilds == 1
    assert gauge("hexrl_cluster_gpus", "H20", "h20-spot", "spot") == 24.0
    assert gauge("hexrl_cluster_gpus", "H800", "h800-ondemand", "on-demand") == 16.0
