"""Fixtures for the operator's unit tests: hand-built plans, node/pod dicts, and an in-memory API fake.

The fake stands in for the API server only in unit tests (speed); every behaviour here also has an e2e
test against the real kube-apiserver in tests/e2e/operator/.
"""

from __future__ import annotations

import copy
import itertools
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from builders import node as _node
from builders import rljob
from hexrl.k8s.kubeapi import ApiError
from hexrl.sched.types import Plan, RolloutReplica, TrainerAssignment

FIXTURES = Path(__file__).parent / "fixtures"


def ready_node(name: str, **kw: Any) -> dict[str, Any]:
    """A Node as the API server shows it once kwok runs it (Ready=True)."""
    n = _node(name, **kw)
    n["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    return n


def make_plan(
    trainer_nodes: tuple[str, ...] = ("h800-ondemand-0",),
    rollout: tuple[tuple[str, str, str, int, bool], ...] = (
        ("h20-spot", "H20", "h20-spot-0", 1, True),
        ("h20-spot", "H20", "h20-spot-0", 1, True),
        ("h20-spot", "H20", "h20-spot-1", 1, True),
    ),
    trainer_pool: str = "h800-ondemand",
) -> Plan:
    """A plan as the planner would return it: trainer DP×8 on H800, rollout replicas (pool, gpu, node, tp, spot)."""
    trainer = TrainerAssignment(
        gpu="H800", pool=trainer_pool, data_parallel=8 * len(trainer_nodes), tensor_parallel=1,
        pipeline_parallel=1, fsdp=True, nodes=trainer_nodes, gpus_per_node=(8,) * len(trainer_nodes),
        tokens_per_second=9000.0,
    )
    replicas = tuple(
        RolloutReplica(pool=p, gpu=g, tensor_parallel=tp, pipeline_parallel=1, nodes=(n,), spot=s,
                       tokens_per_second=3000.0)
        for p, g, n, tp, s in rollout
    )
    return Plan(
        trainer=trainer, replicas=replicas, tokens_per_second=9000.0, samples_per_second=2.2,
        cost_per_hour=5.28 * 8 * len(trainer_nodes) + 1.85 * len(replicas), rollout_tokens_per_second=9000.0,
        training_tokens_per_second=9000.0, bottleneck="rollout", staleness_predicted=1.5, buffer_depth=64,
        weight_sync_seconds=2.0, solve_seconds=0.01, solver="HiGHS", solver_status="Optimal",
    )


def hetero_nodes() -> list[dict[str, Any]]:
    out = [ready_node(f"h800-ondemand-{i}", gpu="H800", pool_name="h800-ondemand") for i in range(2)]
    out += [ready_node(f"h20-spot-{i}", gpu="H20", pool_name="h20-spot", spot=True) for i in range(3)]
    out += [ready_node("l40s-ondemand-0", gpu="L40S", pool_name="l40s-ondemand")]
    return out


class FakeApi:
    """In-memory stand-in for `KubeApi` with resourceVersions, owner-less GC and request counting."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.requests = 0
        self.writes: list[tuple[str, str, str]] = []
        self.events: list[dict[str, Any]] = []
        self._rv = itertools.count(1)
        self._uid = itertools.count(1)

    def _k(self, kind: str, name: str, ns: str | None) -> tuple[str, str, str]:
        return (kind, ns or "", name)

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        self.requests += 1
        obj = self.objects.get(self._k(kind, name, namespace))
        return copy.deepcopy(obj) if obj is not None else None

    def put_job(self, job: dict[str, Any]) -> dict[str, Any]:
        job = copy.deepcopy(job)
        job["metadata"].setdefault("namespace", "default")
        job["metadata"].setdefault("uid", f"uid-{next(self._uid)}")
        job["metadata"]["generation"] = job["metadata"].get("generation", 0) + 1
        old = self.objects.get(self._k("RLJob", job["metadata"]["name"], job["metadata"]["namespace"]))
        if old is not None:
            job["metadata"]["uid"] = old["metadata"]["uid"]
            job["metadata"]["generation"] = old["metadata"]["generation"] + (old["spec"] != job["spec"])
            job["status"] = old.get("status")
        self.objects[self._k("RLJob", job["metadata"]["name"], job["metadata"]["namespace"])] = job
        return job

    def apply(self, obj: dict[str, Any], force: bool = True) -> dict[str, Any]:
        self.requests += 1
        key = self._k(obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace"))
        old = self.objects.get(key)
        new = copy.deepcopy(obj)
        if old is not None:
            strip = {k: v for k, v in old.items() if k != "status"}
            strip["metadata"] = {k: v for k, v in old["metadata"].items() if k not in ("resourceVersion", "uid")}
            if strip == new:
                return copy.deepcopy(old)
            new["metadata"]["uid"] = old["metadata"]["uid"]
        else:
            new["metadata"]["uid"] = f"uid-{next(self._uid)}"
        new["metadata"]["resourceVersion"] = str(next(self._rv))
        self.objects[key] = new
        self.writes.append(key)
        return copy.deepcopy(new)

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.requests += 1
        if obj["kind"] == "Event":
            self.events.append(copy.deepcopy(obj))
            return obj
        key = self._k(obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace"))
        if key in self.objects:
            raise ApiError(409, "AlreadyExists", f"{key} exists")
        return self.apply(obj)

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None,
               grace_seconds: int | None = None, uid: str | None = None) -> bool:
        self.requests += 1
        key = self._k(kind, name, namespace)
        if key not in self.objects:
            return False
        del self.objects[key]
        self.writes.append(key)
        return True

    def patch_status(self, api_version: str, kind: str, name: str, namespace: str, status: dict[str, Any]) -> None:
        self.requests += 1
        obj = self.objects[self._k(kind, name, namespace)]
        merged = dict(obj.get("status") or {})
        for k, v in status.items():
            if v is None:
                merged.pop(k, None)
            else:
                merged[k] = v
        obj["status"] = merged
        self.writes.append(("RLJob/status", namespace, name))

    # --- test helpers
    def pods(self) -> list[dict[str, Any]]:
        return [o for (k, _, _), o in self.objects.items() if k == "Pod"]

    def run_pods(self, nodes: list[dict[str, Any]]) -> None:
        """What the scheduler + kwok do: bind each pending pod to its preferred node (or any pool node) and run it."""
        names = [n["metadata"]["name"] for n in nodes]
        for (kind, ns, name), dep in list(self.objects.items()):
            pod_key = ("Pod", ns, f"{name}-7d9f")
            if kind == "Deployment" and dep["spec"]["replicas"] and pod_key not in self.objects:
                self.objects[pod_key] = {
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": pod_key[2], "namespace": ns, "uid": f"uid-{next(self._uid)}", "resourceVersion": "1",
                                 "labels": dict(dep["spec"]["template"]["metadata"]["labels"])},
                    "spec": {"nodeName": "cpu-0", **dep["spec"]["template"]["spec"]},
                    "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
                }
        for p in self.pods():
            if p["spec"].get("nodeName"):
                continue
            aff = p["spec"]["affinity"]["nodeAffinity"]
            pref = aff.get("preferredDuringSchedulingIgnoredDuringExecution")
            req = aff["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"][0]
            target = pref[0]["preference"]["matchExpressions"][0]["values"][0] if pref else None
            if target not in names:
                target = next((n["metadata"]["name"] for n in nodes
                               if n["metadata"]["labels"].get(req["key"]) in req["values"]), None)
            if target is None:
                continue
            p["spec"]["nodeName"] = target
            p["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}


__all__ = ["FIXTURES", "FakeApi", "hetero_nodes", "make_plan", "ready_node", "rljob"]
