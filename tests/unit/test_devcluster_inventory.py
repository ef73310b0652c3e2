"""Inventory → simulated Node objects: names, the label keys the operator reads back, capacity."""

from __future__ import annotations

from pathlib import Path

import pytest

from builders import inventory, node, pool
from hexrl.devcluster import DevClusterError
from hexrl.devcluster.inventory import KWOK_ANNOTATION, node_manifests, parse, real_node_labels, real_nodes

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "manifests" / "clusters").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_inventories_parse(path: Path) -> None:
    cluster = parse(path)
    names = [n["metadata"]["name"] for n in node_manifests(cluster)] + [name for name, _ in real_nodes(cluster)]
    assert names and len(set(names)) == len(names) == len(cluster.nodes)


def test_real_pools_become_real_nodes_not_kwok_objects() -> None:
    cluster = parse(inventory(pool("sim", "H100", 8, 2), pool("cpu", "L4", 2, 2, spot=True, real=True)))
    assert [n["metadata"]["name"] for n in node_manifests(cluster)] == ["sim-0", "sim-1"]
    real = real_nodes(cluster)
    assert [name for name, _ in real] == ["cpu-0", "cpu-1"]
    labels = real_node_labels(real[0][1], cluster)
    # the same keys a simulated node carries, so the snapshot reads a real node exactly like a kwok one
    kwok_keys = set(node_manifests(cluster)[0]["metadata"]["labels"]) - {"kubernetes.io/hostname", "kubernetes.io/os",
                                                                         "kubernetes.io/arch"}
    assert kwok_keys <= set(labels)
    assert labels["type"] == "real" and labels["hexrl.dev/real"] == "true"
    assert labels["karpenter.sh/capacity-type"] == "spot" and labels["nvidia.com/gpu.product"] == "L4"


def test_required_examples_exist() -> None:
    assert {"hetero-3pool", "h800-h20", "small"} <= {p.stem for p in EXAMPLES}
    c = parse(ROOT / "manifests" / "clusters" / "h800-h20.yaml")
    assert sum(n.gpus for n in c.nodes if n.gpu == "H800") == 24
    assert sum(n.gpus for n in c.nodes if n.gpu == "H20") == 24


def test_hetero_inventory_nodes_and_labels() -> None:
    nodes = {n["metadata"]["name"]: n for n in node_manifests(parse(ROOT / "manifests" / "clusters" / "hetero-3pool.yaml"))}
    assert sorted(nodes) == [
        "h20-spot-0", "h20-spot-1", "h20-spot-2", "h800-ondemand-0", "h800-ondemand-1", "h800-ondemand-2",
        "l40s-ondemand-0", "l40s-ondemand-1",
    ]  # fmt: skip
    h20 = nodes["h20-spot-1"]["metadata"]
    assert h20["labels"] == h20["labels"] | {
        "nvidia.com/gpu.product": "H20",
        "nvidia.com/gpu.count": "8",
        "nvidia.com/gpu.memory": str(round(96e9 / 2**20)),
        "hexrl.dev/pool": "h20-spot",
        "hexrl.dev/spot": "true",
        "karpenter.sh/capacity-type": "spot",
        "topology.kubernetes.io/zone": "zone-a",
        "hexrl.dev/preemptions-per-node-hour": "0.05",
        "type": "kwok",
    }
    assert h20["annotations"][KWOK_ANNOTATION] == "fake"
    h800 = nodes["h800-ondemand-0"]
    assert h800["metadata"]["labels"]["hexrl.dev/price-per-gpu-hour"] == "5.28"
    assert h800["metadata"]["labels"]["hexrl.dev/inter-node-gbps"] == "25"
    assert h800["metadata"]["labels"]["karpenter.sh/capacity-type"] == "on-demand"
    assert "hexrl.dev/preemptions-per-node-hour" not in h800["metadata"]["labels"]
    assert h800["status"]["allocatable"]["nvidia.com/gpu"] == "8"
    assert h800["status"]["capacity"] == h800["status"]["allocatable"]


def test_gpu_memory_override_wins_over_catalog() -> None:
    inv = inventory(pool("a100", "A100-80G", gpus_per_node=4, gpuMemoryGB=40))
    labels = node_manifests(parse(inv))[0]["metadata"]["labels"]
    assert labels["nvidia.com/gpu.memory"] == str(round(40e9 / 2**20))


def test_node_builder_matches_inventory_nodes() -> None:
    n = node("h20-spot-7", gpu="H20", gpus=4, spot=True, taints=[{"key": "k", "effect": "NoSchedule"}])
    assert n["metadata"]["labels"]["hexrl.dev/pool"] == "h20-spot"
    assert n["metadata"]["labels"]["kubernetes.io/hostname"] == "h20-spot-7"
    assert n["status"]["allocatable"]["nvidia.com/gpu"] == "4"
    assert n["spec"]["taints"][0]["key"] == "k"


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (inventory(pool("x", "H100", gpus_per_node=0)), "gpusPerNode"),
        (inventory(pool("x", "NoSuchGPU")), "pools[0].gpu"),
        ({"kind": "ClusterInventory", "apiVersion": "hexrl.dev/v1alpha1"}, "pools"),
    ],
)
def test_bad_inventory_names_the_field(bad: dict, field: str) -> None:
    with pytest.raises(DevClusterError) as info:
        parse(bad)
    assert field in info.value.problem


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(DevClusterError, match="does not exist"):
        parse(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("pools: [\n")
    with pytest.raises(DevClusterError, match="not valid YAML"):
        parse(tmp_path / "bad.yaml")
