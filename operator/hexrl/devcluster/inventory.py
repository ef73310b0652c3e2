"""Inventory file → simulated GPU Node objects (what `hexrl cluster up --inventory` creates).

The inventory is parsed by the planner's own parser (`hexrl.sched.inventory.parse_inventory`), so the
nodes created here and the cluster the planner reads back from them are the same cluster. Each node
carries the labels a real GPU node would have (GPU feature discovery, Karpenter capacity type, topology
zone) plus hexrl's own pool/spot/price labels, the `nvidia.com/gpu` extended resource in capacity and
allocatable, and the annotation that makes kwok manage it (report Ready, run bound pods).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hexrl.devcluster.errors import DevClusterError
from hexrl.sched.catalog import DEFAULT_CATALOG
from hexrl.sched.inventory import InventoryError, parse_inventory
from hexrl.sched.types import Cluster, PoolInfo

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
"""kwok manages nodes carrying this annotation (`--manage-nodes-with-annotation-selector`)."""
KWOK_ANNOTATION_VALUE = "fake"

NODE_CPU = "96"
"""CPU cores per simulated node (a typical 8-GPU server); enough for the job's pods."""
NODE_MEMORY = "1Ti"
"""Memory per simulated node."""
NODE_PODS = "110"
"""Pod limit per node (the kubelet default)."""


def load_inventory(source: str | Path | dict[str, Any]) -> dict[str, Any]:
    """The inventory document from a path or an already parsed mapping."""
    if isinstance(source, dict):
        return source
    path = Path(source)
    if not path.is_file():
        raise DevClusterError(f"inventory file {path} does not exist", "pass a file like manifests/clusters/small.yaml")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise DevClusterError(f"inventory file {path} is not valid YAML: {e}", "fix the YAML syntax") from None
    if not isinstance(data, dict):
        raise DevClusterError(
            f"inventory file {path} must be a mapping (kind: ClusterInventory)",
            "see manifests/clusters/*.yaml for examples",
        )
    return data


def parse(source: str | Path | dict[str, Any]) -> Cluster:
    """Parse and validate an inventory; a bad file becomes a `DevClusterError` naming the field."""
    try:
        return parse_inventory(load_inventory(source))
    except InventoryError as e:
        raise DevClusterError(str(e), "fix the inventory file (format: DESIGN.md §4, examples in manifests/clusters/)") from None


def _memory_mib(pool: PoolInfo, cluster: Cluster) -> int | None:
    """HBM per GPU in MiB (the unit of GPU feature discovery's `nvidia.com/gpu.memory` label)."""
    if pool.gpu_memory_gb is not None:
        gb = pool.gpu_memory_gb
    else:
        spec = DEFAULT_CATALOG.with_specs(getattr(cluster, "gpu_overrides", ())).lookup(pool.gpu)
        if spec is None:
            return None
        gb = spec.hbm_gb
    return round(gb * 1e9 / 2**20)


def pool_labels(pool: PoolInfo, cluster: Cluster) -> dict[str, str]:
    """Labels every node of `pool` carries (keys read back by hexrl.k8s.snapshot)."""
    labels = {
        "type": "kwok",
        "hexrl.dev/pool": pool.name,
        "hexrl.dev/spot": "true" if pool.spot else "false",
        "karpenter.sh/capacity-type": "spot" if pool.spot else "on-demand",
        "nvidia.com/gpu.product": pool.gpu,
        "nvidia.com/gpu.count": str(pool.gpus_per_node),
    }
    mib = _memory_mib(pool, cluster)
    if mib is not None:
        labels["nvidia.com/gpu.memory"] = str(mib)
    if pool.zone:
        labels["topology.kubernetes.io/zone"] = pool.zone
    if pool.price_per_gpu_hour is not None:
        labels["hexrl.dev/price-per-gpu-hour"] = f"{pool.price_per_gpu_hour:g}"
    if pool.inter_node_gbps is not None:
        labels["hexrl.dev/inter-node-gbps"] = f"{pool.inter_node_gbps:g}"
    if pool.preemptions_per_node_hour:
        labels["hexrl.dev/preemptions-per-node-hour"] = f"{pool.preemptions_per_node_hour:g}"
    return labels


REAL_LABEL = "hexrl.dev/real"
"""Set to "true" on real kubelet nodes (pods that must run, like the operator's own, select it)."""


def real_node_labels(pool: PoolInfo, cluster: Cluster) -> dict[str, str]:
    """Labels of a real node of `pool`: the same as a simulated one, but `type=real`, `hexrl.dev/real=true`."""
    return {**pool_labels(pool, cluster), "type": "real", REAL_LABEL: "true",
            "node.kubernetes.io/instance-type": f"{pool.gpu.lower()}x{pool.gpus_per_node}"}


def real_nodes(cluster: Cluster) -> list[tuple[str, PoolInfo]]:
    """(node name, pool) of every node of a `real: true` pool, in inventory order."""
    pools = {p.name: p for p in cluster.pools}
    return [(n.name, pools[n.pool]) for n in cluster.nodes if pools[n.pool].real]


def node_manifests(cluster: Cluster) -> list[dict[str, Any]]:
    """One Node object per simulated inventory node, named `<pool>-<i>` (real nodes register themselves)."""
    pools = {p.name: p for p in cluster.pools}
    out = []
    for n in cluster.nodes:
        pool = pools[n.pool]
        if pool.real:
            continue
        resources = {"cpu": NODE_CPU, "memory": NODE_MEMORY, "pods": NODE_PODS, "nvidia.com/gpu": str(n.gpus)}
        labels = {
            **pool_labels(pool, cluster),
            "kubernetes.io/hostname": n.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "node.kubernetes.io/instance-type": f"{pool.gpu.lower()}x{pool.gpus_per_node}",
        }
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": n.name,
                    "labels": labels,
                    "annotations": {KWOK_ANNOTATION: KWOK_ANNOTATION_VALUE, "node.alpha.kubernetes.io/ttl": "0"},
                },
                "spec": {},
                "status": {"capacity": dict(resources), "allocatable": dict(resources)},
            }
        )
    return out
