"""Snapshot: Node and Pod objects (raw JSON dicts, as kopf and the API server give them) → `sched.Cluster`.

Pure conversion functions, no I/O. The operator keeps compact *views* of Nodes and Pods in kopf indexes
(`node_view`, `pod_view`), and `build_cluster` turns those views into the planner's cluster model for one
job (DESIGN.md §4):

- GPU type from `nvidia.com/gpu.product` (GPU feature discovery; mapped to a catalog name through the
  catalog's aliases — the shipped catalog with the settings' `gpu_catalog` overrides, so a GPU type added
  there is recognised, and the `Cluster` carries the overridden specs for the planner), count from `status.allocatable["nvidia.com/gpu"]` (or `amd.com/gpu`), memory from
  `nvidia.com/gpu.memory` (MiB);
- pool from the first present of the configured pool label keys; spot from the capacity-type labels;
  zone from `topology.kubernetes.io/zone`; NVLink clique from `nvidia.com/gpu.clique`; price, bandwidth
  and preemption-rate overrides from `hexrl.dev/*` labels and the settings;
- GPUs allocated by pods that are not this job's (`gpus_used_by_others`), so two jobs never plan the
  same GPUs;
- going away: deletion, reclaim/termination taints, `spec.unschedulable`, `Ready != True`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from hexrl.k8s import podhealth
from hexrl.k8s.settings import OperatorSettings
from hexrl.k8s.store import JobKey
from hexrl.sched.catalog import DEFAULT_CATALOG, Catalog, canonical_gpu_name
from hexrl.sched.types import Cluster, NodeInfo, PoolInfo

log = logging.getLogger(__name__)

GPU_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu")
LABEL_PRODUCT = "nvidia.com/gpu.product"
LABEL_AMD_PRODUCT = "amd.com/gpu.product"
LABEL_MEMORY = "nvidia.com/gpu.memory"
LABEL_CLIQUE = "nvidia.com/gpu.clique"
LABEL_ZONE = "topology.kubernetes.io/zone"
LABEL_PRICE = "hexrl.dev/price-per-gpu-hour"
LABEL_INTER_NODE = "hexrl.dev/inter-node-gbps"
LABEL_PREEMPTIONS = "hexrl.dev/preemptions-per-node-hour"
LABEL_JOB = "hexrl.dev/job"
LABEL_ROLE = "hexrl.dev/role"
LABEL_SLOT = "hexrl.dev/slot"
LABEL_POOL = "hexrl.dev/pool"
LABEL_EPOCH = "hexrl.dev/trainer-epoch"
ANNOTATION_HASH = "hexrl.dev/spec-hash"


# ----------------------------------------------------------------------------------------- catalog


def catalog_name(product: str, catalog: Catalog | None = None) -> str | None:
    """The GPU catalog name for a product label value ("NVIDIA-H100-80GB-HBM3" → "H100"), or None.

    `catalog` defaults to the shipped one; the operator passes `settings.catalog()` (with its overrides).
    """
    return canonical_gpu_name(product, catalog) if product else None


# ------------------------------------------------------------------------------------------- views


def _quantity(value: Any) -> int:
    """Integer count from a Kubernetes quantity string (GPU counts are plain integers)."""
    if value is None:
        return 0
    try:
        return int(float(str(value)))
    except ValueError:
        return 0


def node_gpus(node: Mapping[str, Any]) -> int:
    alloc = (node.get("status") or {}).get("allocatable") or {}
    return max((_quantity(alloc.get(r)) for r in GPU_RESOURCES), default=0)


def node_ready(node: Mapping[str, Any]) -> bool:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def node_going_away(node: Mapping[str, Any], settings: OperatorSettings) -> str:
    """Why the node is going away ("" when it is not): deletion, taint, cordon or NotReady."""
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    if meta.get("deletionTimestamp"):
        return "deleting"
    for taint in spec.get("taints") or []:
        if taint.get("key") in settings.discovery.going_away_taints and taint.get("effect") in ("NoSchedule", "NoExecute"):
            return f"taint {taint.get('key')}"
    if spec.get("unschedulable"):
        return "cordoned"
    if not node_ready(node):
        return "not ready"
    return ""


def node_view(node: Mapping[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    """The compact, planning-relevant part of a Node (what the index stores and what events compare)."""
    meta = node.get("metadata") or {}
    return {
        "name": meta.get("name", ""),
        "labels": dict(meta.get("labels") or {}),
        "gpus": node_gpus(node),
        "goingAway": node_going_away(node, settings),
    }


def pod_gpus(pod: Mapping[str, Any]) -> int:
    """GPUs a pod holds: max(sum over containers, any init container) of requests (or limits)."""
    spec = pod.get("spec") or {}

    def one(c: Mapping[str, Any]) -> int:
        res = c.get("resources") or {}
        req = res.get("requests") or {}
        lim = res.get("limits") or {}
        return sum(_quantity(req.get(r, lim.get(r))) for r in GPU_RESOURCES)

    main = sum(one(c) for c in spec.get("containers") or [])
    init = max((one(c) for c in spec.get("initContainers") or []), default=0)
    return max(main, init)


def pod_terminal(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def pod_disrupted(pod: Mapping[str, Any]) -> bool:
    """The pod carries DisruptionTarget=True (eviction, preemption, node shutdown)."""
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "DisruptionTarget" and cond.get("status") == "True":
            return True
    return False


def pod_ready(pod: Mapping[str, Any]) -> bool:
    if (pod.get("status") or {}).get("phase") != "Running":
        return False
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def pod_view(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The compact part of a Pod the operator needs: where it is, what it holds, whose it is, its health
    (and, from `podhealth`, what keeps it from starting or serving)."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    return {
        "namespace": meta.get("namespace", ""),
        "name": meta.get("name", ""),
        "uid": meta.get("uid", ""),
        "node": (pod.get("spec") or {}).get("nodeName") or "",
        "gpus": pod_gpus(pod),
        "job": labels.get(LABEL_JOB, ""),
        "role": labels.get(LABEL_ROLE, ""),
        "slot": labels.get(LABEL_SLOT, ""),
        "epoch": labels.get(LABEL_EPOCH, ""),
        "hash": (meta.get("annotations") or {}).get(ANNOTATION_HASH, ""),
        "phase": (pod.get("status") or {}).get("phase", ""),
        "terminal": pod_terminal(pod),
        "disrupted": pod_disrupted(pod),
        "deleting": bool(meta.get("deletionTimestamp")),
        "ready": pod_ready(pod),
        "ip": (pod.get("status") or {}).get("podIP") or "",
        "problem": podhealth.pod_problem(pod),
        "notReadySince": podhealth.not_ready_since(pod),
        "readinessProbe": podhealth.readiness_target(pod),
    }


# ---------------------------------------------------------------------------------------- snapshot


@dataclass
class Snapshot:
    """A `Cluster` plus what rendering needs to pin pods to pools, and warnings for Events."""

    cluster: Cluster
    pool_selectors: dict[str, tuple[str, str]] = field(default_factory=dict)
    """pool name → (node label key, value) that selects exactly the pool's nodes."""
    going_away: dict[str, str] = field(default_factory=dict)
    """node name → why it is going away."""
    warnings: list[str] = field(default_factory=list)


def pool_of(labels: Mapping[str, str], settings: OperatorSettings) -> tuple[str, str] | None:
    """(label key, pool name) from the first present pool label key."""
    for key in settings.discovery.pool_label_keys:
        if labels.get(key):
            return key, labels[key]
    return None


def is_spot(labels: Mapping[str, str], settings: OperatorSettings) -> bool:
    return any(labels.get(k, "").lower() == v.lower() for k, v in settings.discovery.spot_labels)


def _float_label(labels: Mapping[str, str], key: str) -> float | None:
    raw = labels.get(key)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if value >= 0 else None


def _product(labels: Mapping[str, str]) -> str:
    return labels.get(LABEL_PRODUCT) or labels.get(LABEL_AMD_PRODUCT) or ""


def used_by_others(
    pods: Iterable[Mapping[str, Any]],
    job_key: JobKey | None,
    reserved: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """GPUs unavailable to the job `job_key` = (namespace, name) per node.

    `used[n] = other[n] + max(observed_rljobs[n], reserved[n])`: GPUs of live pods that belong to no RLJob,
    plus, for other RLJobs, the larger of what their pods hold and what their current plans reserve on
    the node (`reserved`). Counting plans too means two jobs planned a moment apart never promise each
    other the same GPUs before the first one's pods exist.
    """
    other: dict[str, int] = {}
    rljobs: dict[str, int] = {}
    for p in pods:
        if not p.get("node") or p.get("terminal") or not p.get("gpus"):
            continue
        if job_key is not None and (p.get("namespace"), p.get("job")) == job_key:
            continue
        bucket = rljobs if p.get("job") else other
        bucket[p["node"]] = bucket.get(p["node"], 0) + int(p["gpus"])
    reserved = reserved or {}
    nodes = set(other) | set(rljobs) | set(reserved)
    return {n: other.get(n, 0) + max(rljobs.get(n, 0), reserved.get(n, 0)) for n in nodes}


def build_cluster(
    nodes: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    job_key: JobKey | None,
    settings: OperatorSettings,
    reserved: Mapping[str, int] | None = None,
    base: Snapshot | None = None,
) -> Snapshot:
    """Node views + pod views → the planner's `Cluster` as the job `job_key` sees it (its own pods' GPUs are free;
    `reserved` = GPUs per node that other jobs' current plans hold, see `used_by_others`).

    `base` is `cluster_base(nodes, settings)` when the caller has it already: the node and pool part does
    not depend on the job, and rebuilding it for 1,000 nodes on every pass costs a seventh of the operator's
    CPU while jobs arrive; only the GPUs in use differ per job."""
    base = base if base is not None else cluster_base(nodes, settings)
    used = used_by_others(pods, job_key, reserved)
    infos = tuple(
        replace(n, gpus_used_by_others=min(n.gpus, used[n.name])) if used.get(n.name) else n
        for n in base.cluster.nodes
    )
    return Snapshot(cluster=replace(base.cluster, nodes=infos), pool_selectors=dict(base.pool_selectors),
                    going_away=dict(base.going_away), warnings=list(base.warnings))


def cluster_base(nodes: Iterable[Mapping[str, Any]], settings: OperatorSettings) -> Snapshot:
    """The job-independent snapshot: every GPU node (none of its GPUs in use), the pools, their selectors."""
    warnings: list[str] = []
    selectors: dict[str, tuple[str, str]] = {}
    going: dict[str, str] = {}
    infos: list[NodeInfo] = []
    pool_nodes: dict[str, list[dict[str, Any]]] = {}
    unknown: dict[str, list[str]] = {}
    catalog = settings.catalog()
    for view in sorted(nodes, key=lambda v: v["name"]):
        if view["gpus"] <= 0:
            continue
        labels = view["labels"]
        product = _product(labels)
        gpu = catalog_name(product, catalog)
        if gpu is None:
            unknown.setdefault(product or "<no product label>", []).append(view["name"])
            continue
        found = pool_of(labels, settings)
        if found is None:
            key, pool = "kubernetes.io/hostname", f"node-{view['name']}"
        else:
            key, pool = found
        first = pool_nodes.get(pool)
        if first and first[0]["gpu"] != gpu:
            pool = f"{pool}-{gpu.lower()}"  # a pool must be homogeneous; split mixed ones by GPU type
        selectors.setdefault(pool, (key, labels.get(key, view["name"])))
        if view["goingAway"]:
            going[view["name"]] = view["goingAway"]
        info = NodeInfo(
            name=view["name"],
            pool=pool,
            gpu=gpu,
            gpus=int(view["gpus"]),
            spot=is_spot(labels, settings),
            zone=labels.get(LABEL_ZONE, ""),
            clique=labels.get(LABEL_CLIQUE, ""),
            going_away=bool(view["goingAway"]),
        )
        infos.append(info)
        pool_nodes.setdefault(pool, []).append({"gpu": gpu, "labels": labels, "info": info})
    for product, names in sorted(unknown.items()):
        warnings.append(
            f"skipped {len(names)} node(s) with unknown GPU product {product!r} (e.g. {names[0]}); "
            "add it to the GPU catalog (chart value gpuCatalog, with the product as an alias) "
            "or label the nodes with a catalog name"
        )
    pools = tuple(_pool_info(name, members, settings) for name, members in sorted(pool_nodes.items()))
    cluster = Cluster(
        pools=pools,
        nodes=tuple(infos),
        inter_pool_gbps=settings.discovery.inter_pool_gbps,
        gpu_overrides=settings.gpu_overrides(),
    )
    return Snapshot(cluster=cluster, pool_selectors=selectors, going_away=going, warnings=warnings)


def _pool_info(name: str, members: list[dict[str, Any]], settings: OperatorSettings) -> PoolInfo:
    infos: list[NodeInfo] = [m["info"] for m in members]
    labels: list[Mapping[str, str]] = [m["labels"] for m in members]
    gpu = infos[0].gpu
    zones = {i.zone for i in infos}
    price = settings.pricing.price_overrides.get(name, settings.pricing.price_overrides.get(gpu))
    if price is None:
        price = next((p for p in (_float_label(lb, LABEL_PRICE) for lb in labels) if p is not None), None)
    spot = any(i.spot for i in infos)
    if price is None:
        price = _override_price(gpu, spot, settings)
    inter = next((v for v in (_float_label(lb, LABEL_INTER_NODE) for lb in labels) if v is not None), None)
    preempt = next((v for v in (_float_label(lb, LABEL_PREEMPTIONS) for lb in labels) if v is not None), 0.0)
    mem_mib = next((v for v in (_float_label(lb, LABEL_MEMORY) for lb in labels) if v), None)
    return PoolInfo(
        name=name,
        gpu=gpu,
        gpus_per_node=max(i.gpus for i in infos),
        spot=spot,
        zone=zones.pop() if len(zones) == 1 else "",
        price_per_gpu_hour=price,
        inter_node_gbps=inter,
        preemptions_per_node_hour=preempt if spot else 0.0,
        gpu_memory_gb=round(mem_mib * 1.048576 / 1000, 1) if mem_mib else None,
    )


def _override_price(gpu: str, spot: bool, settings: OperatorSettings) -> float | None:
    """The `gpu_catalog` price of `gpu` when it differs from the shipped catalog's, else None (= catalog default).

    The planner resolves a None price through `Cluster.gpu_overrides` anyway; writing an overridden price
    into the pool means code that prices pools from the shipped catalog alone agrees with the planner.
    """
    if gpu not in {s.name for s in settings.gpu_overrides()}:
        return None
    price = settings.catalog().get(gpu).price(spot)
    shipped = DEFAULT_CATALOG.lookup(gpu)
    return None if shipped is not None and shipped.price(spot) == price else price
