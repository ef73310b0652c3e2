"""The planner: where rollout and training run on heterogeneous, preemptible GPU pools, and why.

Pure code (no Kubernetes, no I/O, inputs never mutated). The public surface, by module:

- `catalog`     — GPU specs and default prices (`DEFAULT_CATALOG`, `lookup_gpu`, `canonical_gpu_name`)
- `inventory`   — ClusterInventory documents → `Cluster` (`parse_inventory`, `InventoryError`)
- `costmodel`   — throughput/memory estimates (`decode_tokens_per_second`, `training_tokens_per_second`, …)
- `settings`    — `PlannerSettings` (the cost model's constants, search and solver knobs)
- `calibration` — measured factors per (GPU type, phase): `fit_calibration`, `calibration_profile`
                  (observations → `CalibrationProfile`, which `CostModelSettings.calibration` takes)
- `planner`     — `plan(job, cluster)` and `baselines(job, cluster)`
- `replanning`  — `replan(job, cluster, current)` (least change) and `replan_or_plan` (falls back to `plan`)
- `explain`     — `plan_to_json(result)` (stable camelCase) and `plan_summary(plan)` for the RLJob status
- `types`       — the typed contract: `Cluster`, `PoolInfo`, `NodeInfo`, `Plan`, `Infeasible`, …

Inside `plan`: `searchspace` (pools, candidates, the `Problem`) → `strategy_search` (which MILPs to solve;
`formulation` holds the MILP's mathematics and rows, `prune` bound-and-prune, `problem` the data and
`evaluate`) → `assemble` (placement on nodes via `placement`, the explanation). `solvecache` reuses MILP
answers across calls; `limits` refuses clusters too large to plan.
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
from hexrl.sched.costmodel import CostModelSettings, Workload
from hexrl.sched.explain import plan_summary, plan_to_json
from hexrl.sched.inventory import InventoryError, cluster_to_inventory, parse_inventory
from hexrl.sched.planner import plan
from hexrl.sched.replanning import replan, replan_or_plan
from hexrl.sched.settings import PlannerSettings
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
    "replan_or_plan",
]
