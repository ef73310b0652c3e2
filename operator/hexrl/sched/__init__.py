"""The planner: where rollout and training run on heterogeneous, preemptible GPU pools, and why.

Pure code (no Kubernetes, no I/O, inputs never mutated). The public surface:

- `catalog`   — GPU specs and default prices (`DEFAULT_CATALOG`, `lookup_gpu`, `canonical_gpu_name`)
- `inventory` — ClusterInventory documents → `Cluster` (`parse_inventory`, `InventoryError`)
- `costmodel` — throughput/memory estimates (`decode_tokens_per_second`, `training_tokens_per_second`, …)
- `milp`, `placement`, `planner` — `plan(job, cluster)` and `replan(current, cluster, job)`
- `explain`   — `plan_to_json(result)` (stable camelCase) and `plan_summary(plan)` for the RLJob status
- `types`     — the typed contract: `Cluster`, `PoolInfo`, `NodeInfo`, `Plan`, `Infeasible`, …
"""

from __future__ import annotations

from hexrl.sched.catalog import (
    DEFAULT_CATALOG,
    Catalog,
    CatalogError,
    GPUSpec,
    UnknownGPUError,
    canonical_gpu_name,
    lookup_gpu,
)
from hexrl.sched.costmodel import CostModelSettings, PlannerSettings, Workload
from hexrl.sched.explain import plan_summary, plan_to_json
from hexrl.sched.inventory import InventoryError, cluster_to_inventory, parse_inventory
from hexrl.sched.planner import plan, replan
from hexrl.sched.types import (
    Baseline,
    Change,
    Cluster,
    Infeasible,
    NodeInfo,
    Plan,
    PlanResult,
    PoolInfo,
    RolloutGroup,
    RolloutReplica,
    TrainerAssignment,
)

__all__ = [
    "DEFAULT_CATALOG",
    "Baseline",
    "Catalog",
    "CatalogError",
    "Change",
    "Cluster",
    "CostModelSettings",
    "GPUSpec",
    "Infeasible",
    "InventoryError",
    "NodeInfo",
    "Plan",
    "PlanResult",
    "PlannerSettings",
    "PoolInfo",
    "RolloutGroup",
    "RolloutReplica",
    "TrainerAssignment",
    "UnknownGPUError",
    "Workload",
    "canonical_gpu_name",
    "cluster_to_inventory",
    "lookup_gpu",
    "parse_inventory",
    "plan",
    "plan_summary",
    "plan_to_json",
    "replan",
]
