"""plan() and replan(): from an RLJob spec and a cluster snapshot to a placed, explained Plan.

Steps (each a small function; 1–2 live in searchspace.py):
1. eligible pools: the job's GPU-type and pool allow-lists, known GPU types, nodes not going away;
2. candidates (cost model): per pool, rollout configurations (TP from the pool's chain of sizes —
   powers of two dividing GPUs per node — and PP across whole nodes only when one node cannot hold the
   model), undominated ones kept; training strategies DP×TP×PP with and without FSDP on pools the
   trainer may use, DP growing only until the trainer outruns every possible rollout;
3. the MILP (milp.py) picks counts and the strategy; 4. placement (placement.py) picks nodes;
5. the plan is explained: per-stage rates, bottleneck, cost, staleness, buffer depth, homogeneous
   baselines on the same budget.
Infeasibility is returned as `Infeasible` with a reason from `hexrl.api.reasons` and a sentence saying
what to change. Nothing here mutates its inputs or does I/O.

Predicted staleness (AReaL's gate lets at most Λ = (η+1)·B_step trajectories be requested ahead):
when the trainer is the bottleneck the gate fills and trained samples lag η versions; when rollout is,
a sample waits its generation time L̄ (rate-weighted wave time), so the lag is L̄/Δ with Δ the step time
B_step·(P + R̄)/T, at most η. The buffer depth is lag × B_step (Little's law).

Throughput where the gate binds (derived in milp.py): the (η+1)·B_step the gate admits also hold the
batch in training, the weight-sync gap and the finished buffer, so only (η + ½)·B_step − T·k_s generate;
rollout configurations whose group latency cannot be trained within η (stragglers) are not planned; at
η = 0 a step is generation (the batch's longest response), training and weight sync in series. Because
a faster trainer frees gate capacity, training strategies keep growing past the rollout rate until the
step is negligible next to the fastest group latency (`searchspace._STEP_NEGLIGIBLE`).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import replace

from hexrl.api import reasons
from hexrl.api.models import RLJobSpec
from hexrl.sched.costmodel import (
    PlannerSettings,
    Workload,
)
from hexrl.sched.limits import cluster_problem
from hexrl.sched.milp import (
    Evaluation,
    Problem,
    Solution,
    solve,
)
from hexrl.sched.placement import PlacementError, ReplicaRequest, place_rollout, place_trainer
from hexrl.sched.searchspace import (  # the search space: pools, candidates, the MILP problem
    _build,
    _Built,
)
from hexrl.sched.solvecache import SolutionCache
from hexrl.sched.types import (
    Baseline,
    Change,
    Cluster,
    Infeasible,
    Plan,
    PlanResult,
    RolloutReplica,
    TrainerAssignment,
)

__all__ = ["PlannerSettings", "SolutionCache", "baselines", "plan", "replan"]


# -------------------------------------------------------------------------------- infeasible


def _fmt_gpus(n: int, gpu: str) -> str:
    return f"{n} {gpu}" + ("" if n == 1 else "s" if not gpu[-1].isdigit() else "")


def _model_size(w: Workload) -> str:
    b = w.parameters / 1e9
    return f"{b:.3g}B" if b >= 1 else f"{w.parameters / 1e6:.3g}M"


def _diagnose(b: _Built, job: RLJobSpec, cluster: Cluster, settings: PlannerSettings) -> Infeasible:
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


# -------------------------------------------------------------------------------------- plan


def _place(
    b: _Built, sol: Solution, cluster: Cluster, previous: Plan | None
) -> tuple[TrainerAssignment, tuple[RolloutReplica, ...]] | Infeasible:
    """The solution's trainer and replica counts on concrete nodes (a kept trainer stays on its nodes)."""
    tm = b.train[sol.train]
    bw = {pl.info.name: pl.inter_gbps for pl in b.pools}
    keep = previous.trainer.nodes if previous is not None and previous.trainer.pool == tm.pool.info.name else ()
    try:
        t_nodes, t_gpus = place_trainer(cluster, tm.pool.info.name, tm.dp * tm.pp, tm.tp, bw, keep)
        taken = dict(zip(t_nodes, t_gpus, strict=True))
        requests = [
            ReplicaRequest(
                pool=m.pool.info.name,
                gpu=m.pool.spec.name,
                tensor_parallel=m.tp,
                pipeline_parallel=m.pp,
                spot=m.pool.info.spot,
                count=y,
                tokens_per_second=m.estimate.tokens_per_second,
            )
            for m, y in zip(b.rollout, sol.counts, strict=True)
            if y > 0
        ]
        replicas = place_rollout(cluster, requests, taken, previous.replicas if previous is not None else ())
    except PlacementError as exc:
        return Infeasible(reasons.NO_ELIGIBLE_GPUS, f"placement failed: {exc}")
    trainer = TrainerAssignment(
        gpu=tm.pool.spec.name,
        pool=tm.pool.info.name,
        data_parallel=tm.dp,
        tensor_parallel=tm.tp,
        pipeline_parallel=tm.pp,
        fsdp=tm.fsdp,
        nodes=t_nodes,
        gpus_per_node=t_gpus,
        tokens_per_second=tm.estimate.tokens_per_second,
    )
    return trainer, replicas


def _bottleneck(ev: Evaluation) -> tuple[str, bool]:
    """(the stage that limits throughput, whether the on-demand rollout floor caps it below every stage)."""
    rates = {"training": ev.training, "rollout": ev.rollout_useful, "weight-sync": ev.weight_sync_cap}
    floor_bound = ev.throughput < min(rates.values()) * (1 - 1e-9)
    if floor_bound:
        return "rollout", True  # on-demand rollout floor: spot capacity beyond it is not counted on
    return min(rates, key=lambda k: rates[k]), False


def _predicted_staleness(b: _Built, sol: Solution, bottleneck: str, ws: float) -> float:
    """Policy lag the trainer sees: η when rollout runs ahead; when rollout is the bottleneck, the
    throughput-weighted generation wave plus weight sync, in steps, capped at η."""
    w, t = b.workload, sol.evaluation.throughput
    eta = float(w.max_policy_lag)
    if bottleneck != "rollout":
        return eta
    step = w.tokens_per_step / t if t > 0 else float("inf")
    used = [(m.estimate, y) for m, y in zip(b.rollout, sol.counts, strict=True)]
    weight = sum(e.tokens_per_second * y for e, y in used) or 1.0
    wave = sum(e.wave_seconds * e.tokens_per_second * y for e, y in used) / weight
    return min(eta, (wave + ws) / step)


def _notes(b: _Built, ev: Evaluation, bottleneck: str, floor_bound: bool) -> tuple[str, ...]:
    """Plain sentences on what limits the plan and what would change it."""
    notes = []
    budget = b.problem.budget
    if floor_bound:
        notes.append("throughput is capped by the on-demand rollout floor (placement.spot.onDemandRolloutFloor)")
    if budget is not None and ev.cost < 0.999 * budget and bottleneck != "rollout":
        notes.append(f"{budget - ev.cost:.2f} $/h of the budget is unused: more GPUs would not raise throughput")
    if ev.rollout_useful < ev.rollout_capacity * 0.999:
        if b.workload.max_policy_lag == 0:
            notes.append("η = 0 is synchronous: each step waits for the batch's longest response, then trains and "
                         "syncs weights while rollout idles; η ≥ 1 overlaps them")
        else:
            notes.append("the staleness gate ((η+1)·batch requested ahead, shared by generation, the buffer and the "
                         "batch in training) keeps part of the rollout capacity idle; a larger η or batch would use it")
    return tuple(notes)


def _assemble(
    b: _Built,
    sol: Solution,
    cluster: Cluster,
    settings: PlannerSettings,
    start: float,
    previous: Plan | None = None,
) -> Plan | Infeasible:
    placed = _place(b, sol, cluster, previous)
    if isinstance(placed, Infeasible):
        return placed
    trainer, replicas = placed
    w, ev = b.workload, sol.evaluation
    used_pools = {m.pool.info.name for m, y in zip(b.rollout, sol.counts, strict=True) if y > 0}
    ws = max((b.ws_seconds.get((trainer.pool, q), 0.0) for q in used_pools), default=0.0)
    bottleneck, floor_bound = _bottleneck(ev)
    staleness = _predicted_staleness(b, sol, bottleneck, ws)
    t = ev.throughput
    return Plan(
        trainer=trainer,
        replicas=replicas,
        tokens_per_second=t,
        samples_per_second=t / w.tokens_per_sample,
        cost_per_hour=ev.cost,
        rollout_tokens_per_second=ev.rollout_useful,
        training_tokens_per_second=ev.training,
        bottleneck=bottleneck,
        staleness_predicted=round(staleness, 3),
        buffer_depth=round(staleness * w.samples_per_step),
        weight_sync_seconds=ws,
        solve_seconds=time.perf_counter() - start,
        solver=sol.solver,
        solver_status=sol.status,
        notes=_notes(b, ev, bottleneck, floor_bound),
    )


def _too_large(cluster: Cluster) -> Infeasible | None:
    """Infeasible (ProblemTooLarge) when the cluster is beyond the planner's limits: refused before any MILP is built,
    instead of a solve of minutes (an inventory file is refused the same way when it is read)."""
    problem = cluster_problem(len(cluster.pools), len(cluster.nodes))
    return None if problem is None else Infeasible(reasons.PROBLEM_TOO_LARGE, problem)


def _plan_core(
    job: RLJobSpec, cluster: Cluster, settings: PlannerSettings, baselines: bool, cache: SolutionCache | None = None
) -> PlanResult:
    start = time.perf_counter()
    too_large = _too_large(cluster)
    if too_large is not None:
        return too_large
    built = _build(job, cluster, settings)
    if isinstance(built, Infeasible):
        return replace(built, solve_seconds=time.perf_counter() - start)
    sol = _solve(built.problem, settings, cache)
    if sol is None:
        result: PlanResult = _diagnose(built, job, cluster, settings)
    else:
        result = _assemble(built, sol, cluster, settings, start)
    base: tuple[Baseline, ...] = ()
    if baselines:
        base = _baselines(job, cluster, settings, built, cache)
    if isinstance(result, Infeasible):
        return replace(result, solve_seconds=time.perf_counter() - start, baselines=base)
    return replace(result, baselines=base, solve_seconds=time.perf_counter() - start)


def _solve(problem: Problem, settings: PlannerSettings, cache: SolutionCache | None = None) -> Solution | None:
    if cache is not None:
        return cache.solve(problem, lambda p: _solve(p, settings))
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
    job: RLJobSpec, cluster: Cluster, settings: PlannerSettings, built: _Built, cache: SolutionCache | None = None
) -> tuple[Baseline, ...]:
    types = sorted({pl.spec.name for pl in built.pools})
    if len(types) < 2:
        return ()
    out = []
    for gpu in types:
        pools = {pl.info.name for pl in built.pools if pl.spec.name == gpu}
        sub = Cluster(
            pools=tuple(p for p in cluster.pools if p.name in pools),
            nodes=tuple(n for n in cluster.nodes if n.pool in pools),
            inter_pool_gbps=cluster.inter_pool_gbps,
            gpu_overrides=cluster.gpu_overrides,
        )
        # Counts and rates are all a baseline needs: solve without placing on nodes.
        b = _build(job, sub, settings)
        sol = None if isinstance(b, Infeasible) else _solve(b.problem, settings, cache)
        if sol is not None:
            ev = sol.evaluation
            out.append(Baseline(gpu=gpu, tokens_per_second=ev.throughput, cost_per_hour=ev.cost, feasible=True))
        else:
            why = b if isinstance(b, Infeasible) else _diagnose(b, job, sub, settings)
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
    if _too_large(cluster) is not None:
        return ()
    built = _build(job, cluster, settings)
    if isinstance(built, Infeasible):
        return ()
    return _baselines(job, cluster, settings, built, cache)


# ------------------------------------------------------------------------------------ replan


def _config_key(pool: str, tp: int, pp: int) -> tuple[str, int, int]:
    return (pool, tp, pp)


def replan(
    current: Plan,
    cluster: Cluster,
    job: RLJobSpec,
    settings: PlannerSettings | None = None,
    cache: SolutionCache | None = None,
    *,
    trainer_may_move: bool = True,
) -> PlanResult:
    """Re-plan after the cluster changed, preferring the plan that changes least.

    The trainer stays where it is (same pool, strategy and nodes) unless that is now impossible or — with
    `trainer_may_move` (the default) — a plan that moves it is more than `trainer_move_threshold` faster
    (a trainer move is a restart). With `trainer_may_move=False` (the operator after a node event: the
    trainer is never restarted for a change it survived) an intact trainer is kept whatever the gain of
    moving it, and only rollout is re-placed; the full search runs only when the trainer lost a node, no
    longer fits, or no rollout can be bought around it. Rollout
    counts pay a migration cost μ·(GPUs moved) with μ = migration_cost_per_gpu × the current plan's
    throughput, so the solver moves replicas only when that buys more than it costs; replicas are kept on
    their nodes when those remain. `Plan.changes` lists what moved and why.
    """
    settings = settings or PlannerSettings()
    start = time.perf_counter()
    too_large = _too_large(cluster)
    if too_large is not None:
        return too_large
    weight = settings.cost.migration_cost_per_gpu * current.tokens_per_second
    have = Counter(_config_key(r.pool, r.tensor_parallel, r.pipeline_parallel) for r in current.replicas)

    def least_change(b: _Built, train: int | None = None) -> Problem:
        counts = tuple(have.get(_config_key(m.pool.info.name, m.tp, m.pp), 0) for m in b.rollout)
        p = replace(b.problem, current_counts=counts, migration_weight=weight)
        return p if train is None else replace(p, train=(p.train[train],))

    ct = current.trainer
    free = {n.name: n.gpus_free for n in cluster.nodes}
    intact = all(free.get(n, 0) >= g for n, g in zip(ct.nodes, ct.gpus_per_node, strict=True))
    sol: Solution | None = None
    used: _Built | None = None
    kept_trainer = False
    if intact:
        # Fast path: only the current strategy, no enumeration of the others.
        fixed = _build(job, cluster, settings, only=ct)
        if isinstance(fixed, _Built) and fixed.train:
            sol = _solve(least_change(fixed), settings, cache)
            if sol is not None:
                used, kept_trainer = fixed, True
    threshold = 1 + settings.cost.trainer_move_threshold
    # A plan that moves the trainer can beat the kept one by more than the threshold only if the kept
    # one fell that far below the current plan (after capacity losses the optimum cannot exceed it), so
    # the full search runs only then.
    search = sol is None or (trainer_may_move and sol.evaluation.throughput * threshold < current.tokens_per_second)
    if search:
        built = _build(job, cluster, settings)
        if isinstance(built, Infeasible):
            return replace(built, solve_seconds=time.perf_counter() - start)
        free_sol = _solve(built.problem, settings, cache)
        if free_sol is not None and (sol is None or free_sol.evaluation.throughput > sol.evaluation.throughput * threshold):
            pinned = _solve(least_change(built, free_sol.train), settings, cache)  # least change around the new trainer
            sol = replace(pinned, train=free_sol.train) if pinned is not None else free_sol
            m = built.train[free_sol.train]
            kept_trainer = intact and (m.pool.info.name, m.dp, m.tp, m.pp, m.fsdp) == (
                ct.pool, ct.data_parallel, ct.tensor_parallel, ct.pipeline_parallel, ct.fsdp
            )
            used = built
        if sol is None:
            return replace(_diagnose(built, job, cluster, settings), solve_seconds=time.perf_counter() - start)
    assert used is not None and sol is not None
    result = _assemble(used, sol, cluster, settings, start, previous=current)
    if isinstance(result, Infeasible):
        return result
    changes = _changes(current, result, kept_trainer, cluster)
    return replace(result, changes=changes, solve_seconds=time.perf_counter() - start)


def _changes(old: Plan, new: Plan, kept_trainer: bool, cluster: Cluster) -> tuple[Change, ...]:
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
