"""Node/Pod dicts → sched.Cluster (DESIGN.md §4), on dict fixtures."""

from __future__ import annotations

import copy

import pytest
from k8s_helpers import hetero_nodes, ready_node

from hexrl.k8s.settings import OperatorSettings
from hexrl.k8s.snapshot import build_cluster, node_view, pod_view

pytestmark = pytest.mark.unit
S = OperatorSettings()


def views(nodes):
    return [node_view(n, S) for n in nodes]


def bare_node(name, labels, gpus="8", resource="nvidia.com/gpu", taints=None, ready="True", **meta):
    return {
        "metadata": {"name": name, "labels": labels, **meta},
        "spec": {"taints": taints} if taints else {},
        "status": {"allocatable": {resource: gpus, "cpu": "96"}, "conditions": [{"type": "Ready", "status": ready}]},
    }


def test_inventory_nodes_become_pools_with_catalog_names_and_capacity_types():
    snap = build_cluster(views(hetero_nodes()), [], None, S)
    pools = {p.name: p for p in snap.cluster.pools}
    assert set(pools) == {"h800-ondemand", "h20-spot", "l40s-ondemand"}
    assert (pools["h20-spot"].gpu, pools["h20-spot"].spot, pools["h20-spot"].gpus_per_node) == ("H20", True, 8)
    assert pools["h800-ondemand"].spot is False
    assert sum(n.gpus for n in snap.cluster.nodes) == 6 * 8
    assert snap.pool_selectors["h20-spot"] == ("hexrl.dev/pool", "h20-spot")
    assert not snap.warnings and not snap.going_away


def test_gfd_product_names_map_through_catalog_aliases_and_amd_counts():
    nodes = [
        bare_node("a", {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "karpenter.sh/nodepool": "p1"}),
        bare_node("b", {"amd.com/gpu.product": "MI300X", "eks.amazonaws.com/nodegroup": "p2"}, "4", "amd.com/gpu"),
    ]
    snap = build_cluster(views(nodes), [], None, S)
    got = {n.name: (n.gpu, n.pool, n.gpus) for n in snap.cluster.nodes}
    assert got == {"a": ("H100", "p1", 8), "b": ("MI300X", "p2", 4)}


def test_pool_label_precedence_follows_the_configured_list():
    labels = {"nvidia.com/gpu.product": "H100", "hexrl.dev/pool": "late", "cloud.google.com/gke-nodepool": "gke"}
    snap = build_cluster(views([bare_node("n", labels)]), [], None, S)
    assert snap.cluster.nodes[0].pool == "gke"
    custom = S.with_values(pool_label_keys=("hexrl.dev/pool",))
    assert build_cluster([node_view(bare_node("n", labels), custom)], [], None, custom).cluster.nodes[0].pool == "late"


@pytest.mark.parametrize(
    ("label", "value", "spot"),
    [
        ("karpenter.sh/capacity-type", "spot", True),
        ("karpenter.sh/capacity-type", "on-demand", False),
        ("cloud.google.com/gke-spot", "true", True),
        ("eks.amazonaws.com/capacityType", "SPOT", True),
        ("eks.amazonaws.com/capacityType", "ON_DEMAND", False),
        ("kubernetes.azure.com/scalesetpriority", "spot", True),
        ("hexrl.dev/spot", "true", True),
    ],
)
def test_capacity_type_labels(label, value, spot):
    n = bare_node("n", {"nvidia.com/gpu.product": "H20", "hexrl.dev/pool": "p", label: value})
    assert build_cluster(views([n]), [], None, S).cluster.nodes[0].spot is spot


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"taints": [{"key": "karpenter.sh/disrupted", "effect": "NoSchedule"}]}, "taint karpenter.sh/disrupted"),
        ({"taints": [{"key": "ToBeDeletedByClusterAutoscaler", "effect": "NoSchedule"}]}, "taint"),
        ({"taints": [{"key": "cloud.google.com/impending-node-termination", "effect": "NoExecute"}]}, "taint"),
        ({"taints": [{"key": "aws-node-termination-handler/spot-itn", "effect": "NoExecute"}]}, "taint"),
        ({"taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}, "taint"),
        ({"ready": "False"}, "not ready"),
        ({"deletionTimestamp": "2026-01-01T00:00:00Z"}, "deleting"),
    ],
)
def test_going_away_signals(change, why):
    kw = dict(change)
    n = bare_node("n", {"nvidia.com/gpu.product": "H20", "hexrl.dev/pool": "p"}, **kw)
    snap = build_cluster(views([n]), [], None, S)
    assert snap.cluster.nodes[0].going_away
    assert snap.cluster.nodes[0].gpus_free == 0
    assert snap.going_away["n"].startswith(why)


def test_prefer_no_schedule_taint_is_not_going_away_and_cordon_is():
    soft = bare_node("n", {"nvidia.com/gpu.product": "H20", "hexrl.dev/pool": "p"},
                     taints=[{"key": "karpenter.sh/disrupted", "effect": "PreferNoSchedule"}])
    assert not build_cluster(views([soft]), [], None, S).cluster.nodes[0].going_away
    cordoned = copy.deepcopy(soft)
    cordoned["spec"]["unschedulable"] = True
    assert build_cluster(views([cordoned]), [], None, S).going_away["n"] == "cordoned"


def _pod(name, node, gpus, job="", ns="default", phase="Running"):
    labels = {"hexrl.dev/job": job} if job else {}
    return pod_view({
        "metadata": {"name": name, "namespace": ns, "uid": name, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]},
        "status": {"phase": phase},
    })


def test_gpus_of_other_pods_are_unavailable_but_own_and_finished_pods_are_not():
    nodes = views([ready_node("h20-spot-0", gpu="H20", pool_name="h20-spot", spot=True)])
    pods = [
        _pod("other", "h20-spot-0", 3),
        _pod("mine", "h20-spot-0", 2, job="j"),
        _pod("done", "h20-spot-0", 4, phase="Succeeded"),
        _pod("same-name-other-ns", "h20-spot-0", 1, job="j", ns="elsewhere"),
    ]
    n = build_cluster(nodes, pods, ("default", "j"), S).cluster.nodes[0]
    assert (n.gpus_used_by_others, n.gpus_free) == (4, 4)


def test_price_bandwidth_and_memory_overrides():
    labels = {
        "nvidia.com/gpu.product": "H20", "hexrl.dev/pool": "p", "hexrl.dev/price-per-gpu-hour": "1.23",
        "hexrl.dev/inter-node-gbps": "12.5", "hexrl.dev/spot": "true", "hexrl.dev/preemptions-per-node-hour": "0.2",
        "nvidia.com/gpu.memory": "97871", "nvidia.com/gpu.clique": "nvl-7", "topology.kubernetes.io/zone": "z1",
    }
    snap = build_cluster(views([bare_node("n", labels)]), [], None, S)
    p, n = snap.cluster.pools[0], snap.cluster.nodes[0]
    assert (p.price_per_gpu_hour, p.inter_node_gbps, p.preemptions_per_node_hour) == (1.23, 12.5, 0.2)
    assert p.gpu_memory_gb == pytest.approx(102.6, abs=0.1)
    assert (n.clique, n.zone, p.zone) == ("nvl-7", "z1", "z1")
    overridden = S.with_values(price_overrides={"p": 0.5})
    assert build_cluster(views([bare_node("n", labels)]), [], None, overridden).cluster.pools[0].price_per_gpu_hour == 0.5


def test_unknown_products_and_cpu_nodes_are_skipped_with_a_warning():
    nodes = [
        bare_node("weird", {"nvidia.com/gpu.product": "NVIDIA-Quantum-Toaster", "hexrl.dev/pool": "p"}),
        bare_node("cpu", {"hexrl.dev/pool": "cpu"}, gpus="0"),
        bare_node("ok", {"nvidia.com/gpu.product": "L4", "hexrl.dev/pool": "l4"}),
    ]
    snap = build_cluster(views(nodes), [], None, S)
    assert [n.name for n in snap.cluster.nodes] == ["ok"]
    assert len(snap.warnings) == 1 and "NVIDIA-Quantum-Toaster" in snap.warnings[0] and "catalog" in snap.warnings[0]


def test_mixed_gpu_pool_is_split_by_type():
    nodes = [
        bare_node("a", {"nvidia.com/gpu.product": "H100", "hexrl.dev/pool": "mixed"}),
        bare_node("b", {"nvidia.com/gpu.product": "L4", "hexrl.dev/pool": "mixed"}),
    ]
    snap = build_cluster(views(nodes), [], None, S)
    assert {(p.name, p.gpu) for p in snap.cluster.pools} == {("mixed", "H100"), ("mixed-l4", "L4")}


def test_other_jobs_plans_reserve_gpus_before_their_pods_exist():
    nodes = views([ready_node("h20-spot-0", gpu="H20", pool_name="h20-spot", spot=True)])
    pods = [_pod("a-pod", "h20-spot-0", 2, job="a"), _pod("plain", "h20-spot-0", 1)]
    # job a's plan reserves 5 GPUs on the node, its pods hold 2 so far: the larger counts, plus the plain pod
    n = build_cluster(nodes, pods, ("default", "b"), S, reserved={"h20-spot-0": 5}).cluster.nodes[0]
    assert n.gpus_used_by_others == 6
    n = build_cluster(nodes, pods, ("default", "b"), S, reserved={"h20-spot-0": 1}).cluster.nodes[0]
    assert n.gpus_used_by_others == 3


def test_a_shared_base_gives_the_same_snapshot_per_job_and_is_not_changed_by_it():
    """The operator builds the node/pool part once per node change and reuses it for every job's pass."""
    from hexrl.k8s.snapshot import cluster_base

    nodes = views(hetero_nodes())
    pods = [
        {"namespace": "default", "name": "a", "uid": "1", "node": "h20-spot-0", "gpus": 2, "job": "a", "terminal": False},
        {"namespace": "default", "name": "b", "uid": "2", "node": "h20-spot-1", "gpus": 8, "job": "", "terminal": False},
    ]
    base = cluster_base(nodes, S)
    before = copy.deepcopy(base)
    for job in (("default", "a"), ("default", "b"), None):
        for reserved in (None, {"h800-ondemand-0": 8}):
            fresh = build_cluster(nodes, pods, job, S, reserved)
            shared = build_cluster(nodes, pods, job, S, reserved, base=base)
            assert shared == fresh
    assert base == before
    used = {n.name: n.gpus_used_by_others for n in build_cluster(nodes, pods, ("default", "b"), S, base=base).cluster.nodes}
    assert used["h20-spot-0"] == 2 and used["h20-spot-1"] == 8
