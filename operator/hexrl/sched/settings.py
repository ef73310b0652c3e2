"""The planner's settings: the cost model's constants plus the search and solver knobs, one dataclass.

Every entry point (`plan`, `replan`, `baselines`) takes a `PlannerSettings`; the defaults are what the
operator and the CLI use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hexrl.sched.costmodel import CostModelSettings

__all__ = ["PlannerSettings"]


@dataclass(frozen=True)
class PlannerSettings:
    """All planner settings: the cost model plus search and solver knobs."""

    cost: CostModelSettings = field(default_factory=CostModelSettings)
    """Cost-model constants."""
    solver: str = "highs"
    """MILP back end: highs (default, in-process via highspy) or cbc (PuLP's bundled CBC)."""
    time_limit_seconds: float = 10.0
    """Solver time limit per MILP; a solve stopped by it is reported as such, never as optimal."""
    mip_rel_gap: float = 1e-4
    """Relative optimality gap at which the solver stops (1e-4 = within 0.01 % of optimal)."""
    direct_strategy_limit: int = 160
    """Up to this many candidate training strategies go into one MILP; beyond, the planner searches the
    training rate by bisection with one strategy per pool (exact under dominance, see strategy_search.py)."""
    prune_strategies: bool = True
    """With HiGHS in max-throughput mode, bound the strategies one by one (LP relaxation with the strategy
    fixed) and solve only those that can beat the incumbent, instead of one MILP over all of them: the same
    optimum, 3–10× faster on large clusters (prune.py). False keeps the one-MILP search."""
    prune_strategy_limit: int = 1200
    """With `prune_strategies`, up to this many candidate strategies are searched by bound-and-prune (one
    LP of ~1 ms each at most); beyond, the θ bisection. 1,200: on the 1,024-GPU bench cluster (507
    strategies) bound-and-prune takes 0.08 s against 0.6 s for the bisection; at 5,000 strategies the
    LPs alone cost more than the bisection's 15 MILPs."""
    max_pipeline_parallel: int = 1
    """Largest PP degree considered (PP is only used when one node cannot hold the model). 1: the trainer and
    the rollout engine execute no pipeline parallelism, and the planner offers only layouts they run; a
    model that no node can hold is infeasible, with that reason. Larger values are for what-if studies of
    the cost model only (`hexrl.api.trainerlayout` refuses such a layout at start-up)."""
    compute_baselines: bool = True
    """Also compute the best homogeneous plan per GPU type on the same budget (explanation)."""
