"""Problem-size limits of the planner: how large a cluster and a batch it plans, checked before any MILP is built.

Beyond these the planner's MILPs grow past what it solves in seconds (measured on 2 cores: 128 pools of 2 nodes in
~4 s, 128 pools with 10,000 nodes in all in ~30 s; 300 pools took minutes), so a larger input gets a sentence
naming the limit instead of a run of minutes. The limits fit an honest large cluster: node pools are GPU type ×
zone × capacity type, rarely more than a few dozen. The size of a training step (promptsPerStep × groupSize) is
limited in the RLJob itself (`hexrl.api.models.MAX_SAMPLES_PER_STEP`), where the API server enforces it too.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "ProblemLimits", "cluster_problem"]


@dataclass(frozen=True)
class ProblemLimits:
    """The largest problem the planner takes."""

    max_pools: int = 128
    """Node pools in one inventory or cluster snapshot; the MILP has options per pool and weight-sync rows per pair
    of pools."""
    max_nodes: int = 10_000
    """Nodes in all pools together; the placement walks every node."""


DEFAULT_LIMITS = ProblemLimits()


def cluster_problem(pools: int, nodes: int, limits: ProblemLimits = DEFAULT_LIMITS) -> str | None:
    """What is too large about a cluster of `pools` pools and `nodes` nodes (one sentence), or None when it fits."""
    if pools > limits.max_pools:
        return (
            f"the inventory has {pools:,} pools; hexrl plans at most {limits.max_pools:,} (merge pools that share "
            "a GPU type, zone and capacity type, or plan a part of the cluster)"
        )
    if nodes > limits.max_nodes:
        return (
            f"the inventory has {nodes:,} nodes in all; hexrl plans at most {limits.max_nodes:,} (list only the "
            "pools the job may use)"
        )
    return None
