"""What a reconcile pass carries and remembers: the per-job memory, the result of one pass, and the keys
derived from a spec, a plan or a pod name that the plan, apply and status steps share — among them the
plan basis and `replan_reason`, which decide whether a cluster change is worth a planner call.

Pure: no API calls. `reconcile.Reconciler` owns one `JobMemory` per job; the steps (`planstep`,
`applystep`, `statusstep`) read and update it under the job's lock.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hexrl.api.models import RLJobSpec
from hexrl.k8s import render, scaling
from hexrl.k8s.snapshot import Snapshot
from hexrl.sched.types import Cluster, Infeasible, Plan

EXPECT_TTL = 60.0
"""s during which a pod we created counts as existing even though the watch has not shown it yet."""


@dataclass
class JobMemory:
    """What the operator remembers about one job between passes (rebuilt from the ConfigMap on restart)."""

    uid: str
    seen_at: float = field(default_factory=time.monotonic)
    """When this process first saw the job: the priority of its API calls (earlier first)."""
    loaded: bool = False
    plan: Plan | None = None
    state: dict[str, Any] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    """The job's per-role bearer tokens (`hexrl.api.jobtokens`), derived on the first pass."""
    basis: PlanBasis | None = None
    """What the cluster offered when the planner last answered for this job (None: not asked by this
    process); `replan_reason` compares the cluster with it."""
    child_hashes: dict[tuple[str, str], str] = field(default_factory=dict)
    expected: dict[str, tuple[dict[str, Any], float]] = field(default_factory=dict)
    deleted: dict[str, float] = field(default_factory=dict)
    events_sent: set[str] = field(default_factory=set)
    progress: dict[str, Any] | None = None
    scale: scaling.ScaleState | None = None
    fresh: bool = False
    """The job had no ConfigMap when first seen by this process: its children are all new."""
    rejection: tuple[str, Infeasible] | None = None
    """(spec key, the planner's answer) of the last infeasible plan, to not ask again until the spec
    changes or capacity appears (`passstate.replan_reason`)."""
    baselines: tuple[tuple[Any, ...], tuple[Any, ...]] | None = None
    """(placement the baselines were computed for, the baselines), from the background thread."""
    baselines_pending: tuple[Any, ...] | None = None
    """Placement whose baselines are being computed (so a pass does not submit it twice)."""
    trainer_recovering: bool = False
    """A trainer gang was restarted and is not all ready yet (Degraded stays True until it is)."""
    rollout_recovering: int = 0
    """Rollout pods replaced and not all ready yet."""
    blocker_key: str | None = None
    """What the last Warning Event about a pod problem or the dataset was about (reason and pod): a new
    Event only when it changes, none while the same cause persists."""
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class PassResult:
    """What one pass did (for tests, metrics and the benchmark)."""

    created: int = 0
    deleted: int = 0
    planned: bool = False
    replanned: bool = False
    status_written: bool = False
    requests: int = 0
    plan_seconds: float = 0.0
    outcome: str = ""
    """ok | infeasible | invalid (the label of hexrl_operator_reconciles_total); empty = derive from planned."""
    recheck_seconds: float | None = None
    """Look at the job again after this long even without an event (a pod not ready for longer than the
    grace period becomes a PodNotReady problem; no watch event says so)."""


@dataclass(frozen=True)
class Planned:
    """The plan step's answer when the job has a plan to deploy (handed to the apply and status steps)."""

    snap: Snapshot
    """The cluster as this job saw it when planning (pods are judged against it)."""
    plan: Plan
    """The plan to deploy (possibly unchanged from the last pass)."""
    previous: Plan | None
    """The plan deployed before this pass (None on the first), to tell a re-plan from a repeat."""
    trigger: str
    """first | spec | cluster: why the planner was asked; "" when it was not."""
    lost: int
    """Nodes of the previous plan that are gone or going away."""


def key_of(obj: Any) -> str:
    """Short stable hash of a value's repr (dataclasses of the planner's types)."""
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:16]


def spec_key(spec: RLJobSpec) -> str:
    """Hash of what the planner reads from the spec (η and images change the ConfigMap/pods, not the plan)."""
    wire = spec.wire()
    for k in ("images", "suspend", "reward", "dataset", "checkpoint"):
        wire.pop(k, None)
    return hashlib.sha256(json.dumps(wire, sort_keys=True).encode()).hexdigest()[:16]


def plan_nodes(plan: Plan) -> set[str]:
    """Every node a plan places trainer or rollout on."""
    return set(plan.trainer.nodes) | {n for r in plan.replicas for n in r.nodes}


def placement(plan: Plan) -> tuple[Any, ...]:
    """What the deployed children depend on (not the solver's timing or explanation)."""
    return (plan.trainer, plan.replicas)


def thread_requests(api: Any) -> int:
    """Requests the calling thread made (a fake API without per-thread counts: the total)."""
    fn = getattr(api, "thread_requests", None)
    return int(fn()) if fn is not None else int(api.requests)


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    """The object has an owner reference to `uid`."""
    return any(o.get("uid") == uid for o in obj.get("metadata", {}).get("ownerReferences") or [])


def incarnation(name: str) -> int:
    """The trailing number of a rollout pod's name (`<job>-rollout-<slot>-<incarnation>`)."""
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def epoch_of(pod_name: str, ref: render.JobRef) -> str:
    """The epoch tag in a trainer pod's name (`<job>-trainer-<epoch tag>-<rank>`); "" for other pods."""
    prefix = f"{ref.name}-trainer-"
    return pod_name[len(prefix):].rsplit("-", 1)[0] if pod_name.startswith(prefix) else ""


@dataclass(frozen=True)
class PlanBasis:
    """What the cluster offered a job when the planner last answered for it (see `replan_reason`)."""

    nodes: Mapping[str, tuple[str, int]]
    """node → (pool, GPUs free for this job; 0 while the node is going away)."""
    pools: str
    """Hash of the pools' descriptions (type, price, spot, links) and the cluster-wide settings."""


def plan_basis(cluster: Cluster) -> PlanBasis:
    nodes = {n.name: (n.pool, 0 if n.going_away else n.gpus_free) for n in cluster.nodes}
    return PlanBasis(nodes, key_of((cluster.pools, cluster.inter_pool_gbps, cluster.gpu_overrides)))


def replan_reason(basis: PlanBasis | None, cluster: Cluster, plan: Plan | None) -> str:
    """Why a change of the cluster since `basis` is worth a planner call for a job holding `plan` (None: a
    job without one) — "" when it is not.

    It is when (1) nothing was recorded (a new job, a restarted operator), (2) the pools' descriptions
    changed, (3) a node of the plan is gone, going away, or no longer has the GPUs the plan puts on it, or
    (4) some node offers this job more free GPUs than at the last answer, or sits in another pool (capacity
    appeared: a better plan may exist). Anything else cannot improve on the plan nor break it: capacity
    lost on nodes the plan does not use, and other jobs filling the GPUs of a shared node that this job's
    plan leaves free. (An exact key over every node's occupancy re-planned every job whose nodes another
    job's pods joined, and each re-plan moved pods that made the next job re-plan: 20 jobs arriving together
    made 25 re-plans (130 MILP solves) and deleted pods they had just created.)
    """
    if basis is None:
        return "first pass of this process"
    current = plan_basis(cluster)
    if current.pools != basis.pools:
        return "the pools changed"
    now = current.nodes
    if plan is not None:
        for node, gpus in sorted(plan.gpus_per_node().items()):
            if node not in now:
                return f"node {node} is gone"
            if now[node][1] < gpus:
                return f"node {node} is going away or no longer has {gpus} free GPUs"
    gained = [n for n, (pool, free) in now.items()
              if n not in basis.nodes or basis.nodes[n][0] != pool or free > basis.nodes[n][1]]
    if gained:
        return f"capacity appeared on {len(gained)} node(s) (e.g. {gained[0]})"
    return ""
