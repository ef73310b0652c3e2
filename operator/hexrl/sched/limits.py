"""Problem-size limits of the planner: how large a cluster it plans, checked before any MILP is built.

The planner's time grows with the number of pools (options per pool, weight-sync rows per pair of pools, one
homogeneous baseline per GPU type) and, with many pools, with the nodes in them. Measured with `hexrl plan` (baselines
on, 2 shared cores; wall / CPU seconds; 1.5B job at $180/h unless said): 32 pools × 312 nodes (9,984) 5.2 / 4.7 (7B
job at $240/h: 6.1 / 5.8); 32 × 64 4.9 / 4.5; 16 × 256 5.8 / 2.8; 8 × 1,250 1.2 / 1.0; but 64 × 32 22.7 / 15.1,
128 × 16 50.9 / 16.0, 300 × 2 34 s, and 2,000 pools did not finish in 60 s. So a larger input gets a sentence naming
the limit instead of a run of minutes. The limits fit an honest large cluster: a pool is a GPU type × zone × capacity type, and 10,000 nodes is
80,000 GPUs at 8 per node. The size of a training step (promptsPerStep × groupSize) is limited in the RLJob itself
(`hexrl.api.models.MAX_SAMPLES_PER_STEP`), where the API server enforces it too.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "ProblemLimits", "cluster_problem"]


@dataclass(frozen=True)
class ProblemLimits:
    """The largest problem the planner takes."""

    max_pools: int = 32
    """Node pools in one inventory or cluster snapshot (the module doc has the measurements behind 32)."""
    max_nodes: int = 10_000
    """Nodes in all pools together; the placement walks every node and the node pools' capacities bound the MILP's
    integer ranges."""


DEFAULT_LIMITS = ProblemLimits()


def cluster_problem(pools: int, nodes: int, limits: ProblemLimits = DEFAULT_LIMITS) -> str | None:
    """What is too large about a cluster of `pools` pools and `nodes` nodes (one sentence), or None when it fits."""
    if pools > limits.max_pools:
        return (
            f"the cluster has {pools:,} node pools; hexrl plans at most {limits.max_pools:,} (merge pools that share "
            "a GPU type, zone and capacity type, or plan a part of the cluster)"
        )
    if nodes > limits.max_nodes:
        return (
            f"the cluster has {nodes:,} nodes in all; hexrl plans at most {limits.max_nodes:,} (list only the "
            "pools the job may use)"
        )
    return None
