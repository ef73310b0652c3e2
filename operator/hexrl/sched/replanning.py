"""replan(): re-plan a running job after the cluster changed, preferring the plan that changes least.

`replan` keeps the trainer where it is when it can (a trainer move is a restart from the last checkpoint)
and charges rollout a migration cost per GPU moved, so replicas move only when that buys throughput.
`replan_or_plan` is what the operator calls on a cluster or spec change: the least-change re-plan, or a
fresh `plan` when no re-plan of the current one is feasible (e.g. when the replicas it would keep in place
no longer fit around the trainer's nodes).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, replace

from hexrl.api.models import RLJobSpec
from hexrl.sched.assemble import assemble_plan
from hexrl.sched.planner import cluster_too_large, diagnose, plan, solve_problem
from hexrl.sched.problem import Problem, Solution
from hexrl.sched.searchspace import SearchSpace, TrainCandidate, build_search_space
from hexrl.sched.settings import PlannerSettings
from hexrl.sched.solvecache import SolutionCache
from hexrl.sched.types import Change, Cluster, Infeasible, Plan, PlanResult, TrainerAssignment

__all__ = ["replan", "replan_or_plan"]


def replan_or_plan(
    job: RLJobSpec,
    cluster: Cluster,
    current: Plan,
    settings: PlannerSettings | None = None,
    cache: SolutionCache | None = None,
    *,
    trainer_may_move: bool = True,
) -> PlanResult:
    """`replan(job, cluster, current, ...)`, or `plan(job, cluster, ...)` when that is infeasible: a job
    whose least-change re-plan cannot be placed still gets the best plan from scratch."""
    result = replan(job, cluster, current, settings, cache, trainer_may_move=trainer_may_move)
    if isinstance(result, Infeasible):
        return plan(job, cluster, settings, cache)
    return result


def replan(
    job: RLJobSpec,
    cluster: Cluster,
    current: Plan,
    settings: PlannerSettings | None = None,
    cache: SolutionCache | None = None,
    *,
    trainer_may_move: bool = True,
) -> PlanResult:
    """Re-plan `current` after the cluster changed, preferring the plan that changes least.

    The trainer stays where it is (same pool, strategy and nodes) unless that is now impossible or — with
    `trainer_may_move` (the default) — a plan that moves it is more than `trainer_move_threshold` faster
    (a trainer move is a restart). With `trainer_may_move=False` (the operator after a node event: the
    trainer is never restarted for a change it survived) an intact trainer is kept whatever the gain of
    moving it, and only rollout is re-placed; the full search runs only when the trainer lost a node, no
    longer fits, or no rollout can be bought around it. Rollout counts pay a migration cost
    μ·(GPUs moved) with μ = migration_cost_per_gpu × the current plan's throughput, so the solver moves
    replicas only when that buys more than it costs; replicas are kept on their nodes when those remain.
    `Plan.changes` lists what moved and why.
    """
    settings = settings or PlannerSettings()
    start = time.perf_counter()
    too_large = cluster_too_large(cluster)
    if too_large is not None:
        return too_large
    least_change = _LeastChange.of(current, settings)
    intact = _trainer_intact(current.trainer, cluster)
    chosen = _keep_trainer(job, cluster, current.trainer, settings, cache, least_change) if intact else None
    threshold = 1 + settings.cost.trainer_move_threshold
    # A plan that moves the trainer can beat the kept one by more than the threshold only if the kept
    # one fell that far below the current plan (after capacity losses the optimum cannot exceed it), so
    # the full search runs only then.
    if chosen is None or (trainer_may_move and chosen.solution.evaluation.throughput * threshold < current.tokens_per_second):
        searched = _search_all(job, cluster, current.trainer, settings, cache, least_change, chosen, intact)
        if isinstance(searched, Infeasible):
            return replace(searched, solve_seconds=time.perf_counter() - start)
        chosen = searched
    result = assemble_plan(chosen.space, chosen.solution, cluster, start, previous=current)
    if isinstance(result, Infeasible):
        return result
    changes = _changes(current, result, chosen.kept_trainer, cluster)
    return replace(result, changes=changes, solve_seconds=time.perf_counter() - start)


@dataclass(frozen=True)
class _Choice:
    """A solved search space and whether its trainer is the current one, unmoved."""

    space: SearchSpace
    solution: Solution
    kept_trainer: bool


@dataclass(frozen=True)
class _LeastChange:
    """The migration penalty of a re-plan: the current replica counts per rollout configuration, and μ."""

    have: Counter[tuple[str, int, int]]
    """Current replicas per (pool, TP, PP)."""
    weight: float
    """μ: objective tokens/s charged per GPU moved."""

    @staticmethod
    def of(current: Plan, settings: PlannerSettings) -> _LeastChange:
        have = Counter((r.pool, r.tensor_parallel, r.pipeline_parallel) for r in current.replicas)
        return _LeastChange(have, settings.cost.migration_cost_per_gpu * current.tokens_per_second)

    def problem(self, space: SearchSpace, train: int | None = None) -> Problem:
        """`space`'s problem with the migration penalty (and only strategy `train`, when given)."""
        counts = tuple(self.have.get((m.pool.info.name, m.tp, m.pp), 0) for m in space.rollout)
        p = replace(space.problem, current_counts=counts, migration_weight=self.weight)
        return p if train is None else replace(p, train=(p.train[train],))


def _trainer_intact(trainer: TrainerAssignment, cluster: Cluster) -> bool:
    """Every node of the trainer is still there with the GPUs it holds."""
    free = {n.name: n.gpus_free for n in cluster.nodes}
    return all(free.get(n, 0) >= g for n, g in zip(trainer.nodes, trainer.gpus_per_node, strict=True))


def _keep_trainer(
    job: RLJobSpec,
    cluster: Cluster,
    trainer: TrainerAssignment,
    settings: PlannerSettings,
    cache: SolutionCache | None,
    least_change: _LeastChange,
) -> _Choice | None:
    """The fast path: only the current strategy, no enumeration of the others; None when it no longer
    fits or no rollout can be bought around it."""
    fixed = build_search_space(job, cluster, settings, only=trainer)
    if isinstance(fixed, Infeasible) or not fixed.train:
        return None
    sol = solve_problem(least_change.problem(fixed), settings, cache)
    return None if sol is None else _Choice(fixed, sol, kept_trainer=True)


def _search_all(
    job: RLJobSpec,
    cluster: Cluster,
    trainer: TrainerAssignment,
    settings: PlannerSettings,
    cache: SolutionCache | None,
    least_change: _LeastChange,
    kept: _Choice | None,
    intact: bool,
) -> _Choice | Infeasible:
    """The search over every strategy; its answer replaces `kept` only when more than the trainer-move
    threshold faster, and is then re-solved with least change around its trainer."""
    space = build_search_space(job, cluster, settings)
    if isinstance(space, Infeasible):
        return space
    free = solve_problem(space.problem, settings, cache)
    threshold = 1 + settings.cost.trainer_move_threshold
    if free is not None and (kept is None or free.evaluation.throughput > kept.solution.evaluation.throughput * threshold):
        pinned = solve_problem(least_change.problem(space, free.train), settings, cache)
        sol = replace(pinned, train=free.train) if pinned is not None else free
        return _Choice(space, sol, intact and _same_strategy(space.train[free.train], trainer))
    if kept is None:
        return diagnose(space, job, cluster, settings)
    return kept


def _same_strategy(m: TrainCandidate, trainer: TrainerAssignment) -> bool:
    """The candidate is the trainer's pool and layout."""
    return (m.pool.info.name, m.dp, m.tp, m.pp, m.fsdp) == (
        trainer.pool, trainer.data_parallel, trainer.tensor_parallel, trainer.pipeline_parallel, trainer.fsdp
    )


def _changes(old: Plan, new: Plan, kept_trainer: bool, cluster: Cluster) -> tuple[Change, ...]:
    """What moved from `old` to `new` and why, trainer first, then rollout replicas."""
    gone = {n.name for n in cluster.nodes if n.going_away} | (
        ({n for r in old.replicas for n in r.nodes} | set(old.trainer.nodes)) - {n.name for n in cluster.nodes}
    )
    out: list[Change] = []
    ot, nt = old.trainer, new.trainer
    if kept_trainer and ot.nodes == nt.nodes:
        out.append(Change("kept", "trainer", f"{nt.gpus} {nt.gpu} on {', '.join(nt.nodes)}"))
    elif ot.pool == nt.pool and set(nt.nodes) <= set(ot.nodes) and not any(n in gone for n in ot.nodes):
        out.append(
            Change(
                "resized",
                "trainer",
                f"DP{ot.data_parallel}×TP{ot.tensor_parallel}×PP{ot.pipeline_parallel} → DP{nt.data_parallel}×"
                f"TP{nt.tensor_parallel}×PP{nt.pipeline_parallel} on {', '.join(nt.nodes)}: more than "
                "the trainer-move threshold faster on the changed cluster (restart from the last checkpoint)",
            )
        )
    else:
        lost = [n for n in ot.nodes if n in gone]
        why = f"its nodes {', '.join(lost)} are gone or going away" if lost else "the old layout no longer fits or pays"
        out.append(
            Change(
                "moved",
                "trainer",
                f"{ot.gpus} {ot.gpu} ({ot.pool}) → {nt.gpus} {nt.gpu} ({nt.pool}, DP{nt.data_parallel}×TP{nt.tensor_parallel}"
                f"×PP{nt.pipeline_parallel}) because {why}",
            )
        )
    old_set = Counter((r.pool, r.gpus, r.nodes) for r in old.replicas)
    new_set = Counter((r.pool, r.gpus, r.nodes) for r in new.replicas)
    kept = sum((old_set & new_set).values())
    removed = old_set - new_set
    added = new_set - old_set
    if kept:
        out.append(Change("kept", "rollout", f"{kept} replicas stay on their nodes"))
    for (pool, g, nodes), k in sorted(removed.items()):
        why = "node gone or going away" if any(n in gone for n in nodes) else "rebalanced"
        out.append(Change("removed", "rollout", f"{k}× {g}-GPU replica on {', '.join(nodes)} ({pool}): {why}"))
    for (pool, g, nodes), k in sorted(added.items()):
        out.append(Change("added", "rollout", f"{k}× {g}-GPU replica on {', '.join(nodes)} ({pool})"))
    return tuple(out)
