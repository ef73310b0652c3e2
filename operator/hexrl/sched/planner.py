"""plan() and baselines(): from an RLJob spec and a cluster snapshot to a placed, explained Plan.

Steps, each in the module named:
1. the search space (searchspace.py): eligible pools — the job's GPU-type and pool allow-lists, known
   GPU types, nodes not going away — and candidates from the cost model (costmodel.py): per pool,
   rollout configurations (TP from the pool's chain of sizes, PP across whole nodes only when one node
   cannot hold the model), undominated ones kept; training strategies DP×TP×PP with and without FSDP,
   DP growing only until the trainer outruns every possible rollout; and the MILP `Problem` (problem.py);
2. the MILP (formulation.py, searched by strategy_search.py) picks counts and the strategy;
3. assemble.py places it on nodes (placement.py) and explains it: per-stage rates, bottleneck, cost,
   staleness, buffer depth; here, homogeneous baselines on the same budget are added.
Re-planning a running job with least change is replanning.py. Infeasibility is returned as `Infeasible`
with a reason from `hexrl.api.reasons` and a sentence saying what to change (`diagnose`). Nothing here
mutates its inputs or does I/O.

Throughput where the gate binds (derived in formulation.py): the (η+1)·B_step the gate admits also hold
the batch in training, the weight-sync gap and the finished buffer, so only (η + ½)·B_step − T·k_s
generate; rollout configurations whose group latency cannot be trained within η (stragglers) are not
planned; at η = 0 a step is generation (the batch's longest response), training and weight sync in
series. Because a faster trainer frees gate capacity, training strategies keep growing past the rollout
rate until the step is negligible next to the fastest group latency (searchspace.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

from hexrl.api import reasons
from hexrl.api.models import RLJobSpec
from hexrl.sched.assemble import assemble_plan
from hexrl.sched.costmodel import Workload
from hexrl.sched.limits import cluster_problem
from hexrl.sched.problem import Problem, Solution
from hexrl.sched.searchspace import SearchSpace, build_search_space
from hexrl.sched.settings import PlannerSettings
from hexrl.sched.solvecache import SolutionCache
from hexrl.sched.strategy_search import solve
from hexrl.sched.types import Baseline, Cluster, Infeasible, Plan, PlanResult

__all__ = ["baselines", "cluster_too_large", "diagnose", "plan", "solve_problem"]


def _fmt_gpus(n: int, gpu: str) -> str:
    return f"{n} {gpu}" + ("" if n == 1 else "s" if not gpu[-1].isdigit() else "")


def _model_size(w: Workload) -> str:
    b = w.parameters / 1e9
    return f"{b:.3g}B" if b >= 1 else f"{w.parameters / 1e6:.3g}M"


def diagnose(b: SearchSpace, job: RLJobSpec, cluster: Cluster, settings: PlannerSettings) -> Infeasible:
    """Why the MILP of `b` has no solution, as an `Infeasible` whose sentence says what to change."""
    w, p = b.workload, b.problem
    size = _model_size(w)
    if not b.rollout or not b.train:
        stage = "a rollout replica" if not b.rollout else "the trainer"
        tried = sorted({pl.spec.name for pl in b.pools})
        hint = "allow spot for the trainer, " if not b.train and job.placement.spot.trainer == "forbidden" and any(
            pl.info.spot for pl in b.pools
        ) else ""
        return Infeasible(
            reasons.MODEL_DOES_NOT_FIT,
            f"the {size} model does not fit {stage} on any eligible GPU ({', '.join(tried)}) with the "
            f"prompt + response length {w.max_sequence_tokens} tokens; {hint}add GPUs with more memory, "
            "larger nodes, or shorten generation.maxNewTokens",
        )
    cheapest_train = min(p.train, key=lambda t: t.price)
    cheapest_roll = min(p.rollout, key=lambda r: r.price)
    if p.budget is not None and cheapest_train.price + cheapest_roll.price > p.budget:
        r = min(b.rollout, key=lambda m: m.pool.price * m.tp * m.pp)
        t = min(b.train, key=lambda m: m.pool.price * m.dp * m.tp * m.pp)
        need = cheapest_train.price + cheapest_roll.price
        affords = int(p.budget // r.pool.price)
        return Infeasible(
            reasons.BUDGET_TOO_SMALL,
            f"{size} needs {_fmt_gpus(r.tp * r.pp, r.pool.spec.name)} per rollout replica and "
            f"{_fmt_gpus(t.dp * t.tp * t.pp, t.pool.spec.name)} for the trainer (${need:.2f}/h); the budget of "
            f"${p.budget:.2f}/h affords {_fmt_gpus(affords, r.pool.spec.name)}. Raise budget.maxCostPerHour "
            f"to at least {math.ceil(need * 100) / 100:.2f}",
        )
    if p.target is not None:
        budget = job.budget.model_copy(
            update={"target_tokens_per_second": None, "max_cost_per_hour": job.budget.max_cost_per_hour or 1e12}
        )
        relaxed = job.model_copy(update={"budget": budget})
        best = _plan_core(relaxed, cluster, settings, baselines=False)
        reach = f"; the best this cluster reaches is {best.tokens_per_second:,.0f} tokens/s" if isinstance(best, Plan) else ""
        return Infeasible(
            reasons.TARGET_UNREACHABLE,
            f"budget.targetTokensPerSecond {p.target:,.0f} cannot be reached{reach}; lower the target, raise "
            "budget.maxCostPerHour or add GPUs",
        )
    need = min(t.gpus for t in p.train) + min(r.gpus for r in p.rollout)
    return Infeasible(
        reasons.NO_ELIGIBLE_GPUS,
        f"{size} needs at least {need} free GPUs (trainer + one rollout replica) in pools the job may use "
        "under its spot policy and on-demand rollout floor; add nodes or relax placement.spot",
    )


def cluster_too_large(cluster: Cluster) -> Infeasible | None:
    """Infeasible (ProblemTooLarge) when the cluster is beyond the planner's limits: refused before any MILP is built,
    instead of a solve of minutes (an inventory file is refused the same way when it is read)."""
    problem = cluster_problem(len(cluster.pools), len(cluster.nodes))
    return None if problem is None else Infeasible(reasons.PROBLEM_TOO_LARGE, problem)


def _plan_core(
    job: RLJobSpec, cluster: Cluster, settings: PlannerSettings, baselines: bool, cache: SolutionCache | None = None
) -> PlanResult:
    """Build, solve, place and explain (with the homogeneous baselines when `baselines`)."""
    start = time.perf_counter()
    too_large = cluster_too_large(cluster)
    if too_large is not None:
        return too_large
    space = build_search_space(job, cluster, settings)
    if isinstance(space, Infeasible):
        return replace(space, solve_seconds=time.perf_counter() - start)
    sol = solve_problem(space.problem, settings, cache)
    if sol is None:
        result: PlanResult = diagnose(space, job, cluster, settings)
    else:
        result = assemble_plan(space, sol, cluster, start)
    base: tuple[Baseline, ...] = ()
    if baselines:
        base = _baselines(job, cluster, settings, space, cache)
    if isinstance(result, Infeasible):
        return replace(result, solve_seconds=time.perf_counter() - start, baselines=base)
    return replace(result, baselines=base, solve_seconds=time.perf_counter() - start)


def solve_problem(problem: Problem, settings: PlannerSettings, cache: SolutionCache | None = None) -> Solution | None:
    """The best solution of `problem` with the configured solver (through `cache` when given); CBC when
    the HiGHS library itself fails, with a note saying so. None when the problem has no solution."""
    if cache is not None:
        return cache.solve(problem, lambda p: solve_problem(p, settings))
    args = (settings.time_limit_seconds, settings.mip_rel_gap, settings.direct_strategy_limit)
    try:
        return solve(problem, settings.solver, *args, prune=settings.prune_strategies,
                     prune_limit=settings.prune_strategy_limit)
    except Exception as exc:  # the solver library failed (not infeasibility): fall back to CBC
        if settings.solver == "cbc":
            raise
        sol = solve(problem, "cbc", *args)
        if sol is not None:
            sol = replace(sol, notes=(*sol.notes, f"HiGHS failed ({exc}); solved with CBC"))
        return sol


def _baselines(
    job: RLJobSpec, cluster: Cluster, settings: PlannerSettings, space: SearchSpace, cache: SolutionCache | None = None
) -> tuple[Baseline, ...]:
    """The best plan per eligible GPU type alone (counts and rates; not placed on nodes)."""
    types = sorted({pl.spec.name for pl in space.pools})
    if len(types) < 2:
        return ()
    out = []
    for gpu in types:
        pools = {pl.info.name for pl in space.pools if pl.spec.name == gpu}
        sub = Cluster(
            pools=tuple(p for p in cluster.pools if p.name in pools),
            nodes=tuple(n for n in cluster.nodes if n.pool in pools),
            inter_pool_gbps=cluster.inter_pool_gbps,
            gpu_overrides=cluster.gpu_overrides,
        )
        # Counts and rates are all a baseline needs: solve without placing on nodes.
        b = build_search_space(job, sub, settings)
        sol = None if isinstance(b, Infeasible) else solve_problem(b.problem, settings, cache)
        if sol is not None:
            ev = sol.evaluation
            out.append(Baseline(gpu=gpu, tokens_per_second=ev.throughput, cost_per_hour=ev.cost, feasible=True))
        else:
            why = b if isinstance(b, Infeasible) else diagnose(b, job, sub, settings)
            out.append(Baseline(gpu=gpu, tokens_per_second=0.0, cost_per_hour=0.0, feasible=False, reason=why.message))
    return tuple(out)


def plan(
    job: RLJobSpec, cluster: Cluster, settings: PlannerSettings | None = None, cache: SolutionCache | None = None
) -> PlanResult:
    """The best plan for `job` on `cluster` (max throughput within budget, or min cost for a target).

    `cache` (optional) answers MILPs that differ from an earlier one only by less free capacity without
    a solver call, exactly (see solvecache.py); without it every call solves afresh."""
    settings = settings or PlannerSettings()
    return _plan_core(job, cluster, settings, baselines=settings.compute_baselines, cache=cache)


def baselines(
    job: RLJobSpec, cluster: Cluster, settings: PlannerSettings | None = None, cache: SolutionCache | None = None
) -> tuple[Baseline, ...]:
    """The best homogeneous plan per eligible GPU type on the same budget (the explanation `plan()` adds
    when `compute_baselines` is set), on its own: a caller with a latency goal (the operator) places the
    job first and computes this comparison afterwards. Empty when fewer than two GPU types are eligible
    or the job is infeasible before any solve."""
    settings = settings or PlannerSettings()
    if cluster_too_large(cluster) is not None:
        return ()
    space = build_search_space(job, cluster, settings)
    if isinstance(space, Infeasible):
        return ()
    return _baselines(job, cluster, settings, space, cache)
