"""The planner: where rollout and training run on heterogeneous, preemptible GPU pools, and why.

Pure code (no Kubernetes, no I/O, inputs never mutated). The public surface:

- `catalog`   — GPU specs and default prices (`DEFAULT_CATALOG`, `lookup_gpu`, `canonical_gpu_name`)
- `inventory` — ClusterInventory documents → `Cluster` (`parse_inventory`, `InventoryError`)
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
from hexrl.sched.inventory import InventoryError, cluster_to_inventory, parse_inventory
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
    "GPUSpec",
    "Infeasible",
    "InventoryError",
    "NodeInfo",
    "Plan",
    "PlanResult",
    "PoolInfo",
    "RolloutGroup",
    "RolloutReplica",
    "TrainerAssignment",
    "UnknownGPUError",
    "canonical_gpu_name",
    "cluster_to_inventory",
    "lookup_gpu",
    "parse_inventory",
]
