"""From a MILP solution to a placed, explained `Plan`: nodes, per-stage rates, bottleneck, staleness, notes.

The solution says how many replicas of which rollout candidate and which training strategy; here the
trainer and the replicas get concrete nodes (placement.py), and the plan is explained: what limits its
throughput, the staleness the trainer will see and plain sentences on what would change it.

Predicted staleness (AReaL's gate lets at most Λ = (η+1)·B_step trajectories be requested ahead):
when the trainer is the bottleneck the gate fills and trained samples lag η versions; when rollout is,
a sample waits its generation time L̄ (rate-weighted wave time), so the lag is L̄/Δ with Δ the step time
B_step·(P + R̄)/T, at most η. The buffer depth is lag × B_step (Little's law).
"""

from __future__ import annotations

import time

from hexrl.api import reasons
from hexrl.sched.placement import PlacementError, ReplicaRequest, place_rollout, place_trainer
from hexrl.sched.problem import Evaluation, Solution
from hexrl.sched.searchspace import SearchSpace
from hexrl.sched.types import Cluster, Infeasible, Plan, RolloutReplica, TrainerAssignment

__all__ = ["assemble_plan"]


def _place(
    b: SearchSpace, sol: Solution, cluster: Cluster, previous: Plan | None
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


def _predicted_staleness(b: SearchSpace, sol: Solution, bottleneck: str, ws: float) -> float:
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


def _notes(b: SearchSpace, ev: Evaluation, bottleneck: str, floor_bound: bool) -> tuple[str, ...]:
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


def assemble_plan(
    b: SearchSpace, sol: Solution, cluster: Cluster, start: float, previous: Plan | None = None
) -> Plan | Infeasible:
    """The solution placed on nodes and explained; `start` is when planning began (for `solve_seconds`), and
    `previous` (a re-plan) keeps its trainer's nodes and its replicas where they still fit."""
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
