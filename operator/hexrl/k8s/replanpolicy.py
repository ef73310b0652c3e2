"""When a change of the cluster is worth a planner call for a job: the plan basis and `replan_reason`.

Pure: the planning part (`planning.Planning`) records a `PlanBasis` each time the planner answers for a
job and asks `replan_reason` on every later pass whether the cluster has changed in a way that could break
the job's plan or improve on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hexrl.sched.types import Cluster, Plan


def key_of(obj: Any) -> str:
    """Short stable hash of a value's repr (dataclasses of the planner's types)."""
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PlanBasis:
    """What the cluster offered a job when the planner last answered for it (see `replan_reason`)."""

    nodes: Mapping[str, tuple[str, int]]
    """node → (pool, GPUs free for this job; 0 while the node is going away)."""
    pools: str
    """Hash of the pools' descriptions (type, price, spot, links) and the cluster-wide settings."""


def plan_basis(cluster: Cluster) -> PlanBasis:
    """The basis of a planner answer given against `cluster`."""
    nodes = {n.name: (n.pool, 0 if n.going_away else n.gpus_free) for n in cluster.nodes}
    return PlanBasis(nodes, key_of((cluster.pools, cluster.inter_pool_gbps, cluster.gpu_overrides)))


def replan_reason(basis: PlanBasis | None, cluster: Cluster, plan: Plan | None) -> str:
    """Why a change of the cluster since `basis` is worth a planner call for a job holding `plan` (None: a
    job without one) — "" when it is not.

    It is when (1) nothing was recorded (a new job, a restarted operator), (2) the pools' descriptions
    changed, (3) a node of the plan is gone, going away, or no longer has the GPUs the plan puts on it, or
    (4) some node offers this job more free GPUs than at the last answer, or sits in another pool (capacity
    appeared: a better plan may exist). Anything else can neither improve on the plan nor break it: capacity
    lost on nodes the plan does not use, and other jobs filling the GPUs of a shared node that this job's
    plan leaves free. Ignoring those matters when many jobs arrive together: with an exact key over every
    node's occupancy, each job's new pods would make the jobs sharing their nodes re-plan, and each re-plan
    would move pods that make the next job re-plan.
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
