"""Builders for test data: RLJobs, GPU nodes and cluster inventories as plain dicts (the wire format).

Each builder returns a valid object with sensible defaults; a test states only what matters to it:

    rljob(staleness__maxPolicyLag=2)                  # spec.staleness.maxPolicyLag = 2
    rljob(budget=None, name="no-budget")              # delete spec.budget
    node("h100-0", gpu="H100", gpus=8, spot=True)     # a Node with GPU labels and allocatable
    inventory(pool("a", "H800", nodes=2), pool("b", "H20", spot=True))
    job_pod("j-rollout-a-0-0", status=unschedulable('persistentvolumeclaim "models" not found'))

`__` separates path segments below `spec` (keyword arguments cannot contain dots); the value None deletes
the field. Node labels come from `hexrl.devcluster.inventory.pool_labels`, the code that creates the
simulated cluster, so tests and `hexrl cluster up` agree on every label key.
"""

from __future__ import annotations

import copy
from typing import Any

from hexrl.api.models import API_VERSION, KIND

BASE_SPEC: dict[str, Any] = {
    "model": {
        "name": "Qwen/Qwen2.5-1.5B-Instruct",
        "source": {"pvc": "models", "path": "qwen2.5-1.5b-instruct"},
        "shape": {"parameters": 1.54e9, "layers": 28, "hiddenSize": 1536, "kvHeads": 2, "headDim": 128, "vocab": 151936},
    },
    "algorithm": {"name": "grpo", "groupSize": 16, "promptsPerStep": 64, "learningRate": 1.0e-6},
    "generation": {"promptTokens": 1024, "maxNewTokens": 8192, "meanNewTokens": 3000},
    "staleness": {"maxPolicyLag": 4},
    "budget": {"maxCostPerHour": 180},
}


def _set(obj: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        obj = obj.setdefault(key, {})
    if value is None:
        obj.pop(path[-1], None)
    else:
        obj[path[-1]] = value


def rljob(name: str = "test-job", namespace: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A valid RLJob (the shape of manifests/examples/rljob.yaml) with `overrides` applied below `spec`."""
    spec = copy.deepcopy(BASE_SPEC)
    for key, value in overrides.items():
        _set(spec, key.split("__"), copy.deepcopy(value))
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}


def pool(
    name: str,
    gpu: str = "H100",
    gpus_per_node: int = 8,
    nodes: int = 1,
    spot: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """One inventory pool; `extra` takes the camelCase optional fields (zone, pricePerGpuHour, …)."""
    return {"name": name, "gpu": gpu, "gpusPerNode": gpus_per_node, "nodes": nodes, "spot": spot, **extra}


def inventory(*pools: dict[str, Any], inter_pool_gbps: float = 1.5) -> dict[str, Any]:
    """A ClusterInventory document (default: one on-demand H100 node with 8 GPUs)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "ClusterInventory",
        "interPoolGBps": inter_pool_gbps,
        "pools": list(pools) or [pool("h100")],
    }


def node(
    name: str,
    gpu: str = "H100",
    gpus: int = 8,
    pool_name: str | None = None,
    spot: bool = False,
    zone: str = "",
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
    unschedulable: bool = False,
) -> dict[str, Any]:
    """A simulated GPU Node object as `hexrl cluster up` creates it (kwok manages it)."""
    from hexrl.devcluster.inventory import node_manifests, parse

    inv = inventory(pool(pool_name or name.rsplit("-", 1)[0], gpu, gpus, 1, spot, **({"zone": zone} if zone else {})))
    obj = node_manifests(parse(inv))[0]
    obj["metadata"]["name"] = name
    obj["metadata"]["labels"]["kubernetes.io/hostname"] = name
    obj["metadata"]["labels"].update(labels or {})
    if taints:
        obj["spec"]["taints"] = taints
    if unschedulable:
        obj["spec"]["unschedulable"] = True
    return obj


def gpu_pod(name: str, gpus: int = 1, node_selector: dict[str, str] | None = None, namespace: str = "default") -> dict[str, Any]:
    """A pod requesting `gpus` nvidia.com/gpu, tolerating nothing special."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "nodeSelector": node_selector or {},
            "containers": [
                {
                    "name": "main",
                    "image": "hexrl/placeholder:0",
                    "resources": {"limits": {"nvidia.com/gpu": str(gpus)}, "requests": {"nvidia.com/gpu": str(gpus)}},
                }
            ],
        },
    }


def job_pod(name: str, role: str = "rollout", job: str = "math", namespace: str = "default",
            status: dict[str, Any] | None = None, probe_port: int = 8002) -> dict[str, Any]:
    """A pod of an RLJob as the API server shows it, with `status` (default: just created, Pending)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}",
                     "labels": {"hexrl.dev/job": job, "hexrl.dev/role": role}},
        "spec": {"containers": [{"name": role, "image": "hexrl.local/hexrl-workers:1",
                                 "readinessProbe": {"httpGet": {"path": "/readyz", "port": probe_port}}}]},
        "status": status or {"phase": "Pending"},
    }


def unschedulable(reason: str, nodes: int = 8) -> dict[str, Any]:
    """Pod status after the scheduler gave up: PodScheduled=False/Unschedulable with its usual message."""
    return {"phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": f"0/{nodes} nodes are available: {reason}. preemption: 0/{nodes} nodes are available: "
                   f"{nodes} Preemption is not helpful for scheduling.",
    }]}


def waiting(reason: str, message: str = "", container: str = "rollout", restarts: int = 0,
            last_exit: int | None = None, last_message: str = "") -> dict[str, Any]:
    """Pod status with its container waiting (ErrImagePull, CrashLoopBackOff, …); `last_exit` adds the last
    termination (a crash loop's exit code and termination message)."""
    cs: dict[str, Any] = {"name": container, "ready": False, "restartCount": restarts,
                          "image": "hexrl.local/hexrl-workers:1",
                          "state": {"waiting": {"reason": reason, **({"message": message} if message else {})}}}
    if last_exit is not None:
        cs["lastState"] = {"terminated": {"exitCode": last_exit, "reason": "Error", "message": last_message}}
    return {"phase": "Running" if restarts else "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}],
            "containerStatuses": [cs]}


def running(ready: bool = True, since: str = "2026-01-01T00:00:00Z", container: str = "rollout") -> dict[str, Any]:
    """Pod status of a running container, Ready or not since `since`."""
    return {"phase": "Running", "startTime": since,
            "conditions": [{"type": "PodScheduled", "status": "True"},
                           {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": since}],
            "containerStatuses": [{"name": container, "ready": ready, "restartCount": 0,
                                   "state": {"running": {"startedAt": since}}}]}
