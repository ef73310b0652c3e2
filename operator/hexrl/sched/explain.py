"""Views of a planner result for people and scripts: JSON with stable camelCase keys, and the RLJob status.

`plan_to_json(result)` is the contract of `hexrl plan --format json`: the keys below are
stable; new keys may be added, existing ones are never renamed.
"""

from __future__ import annotations

from typing import Any

from hexrl.api.models import PlanSummary, TrainerPlacement
from hexrl.api.models import RolloutGroup as RolloutGroupModel
from hexrl.sched.types import Baseline, Infeasible, Plan, PlanResult, RolloutGroup, TrainerAssignment

__all__ = ["plan_summary", "plan_to_json"]


def _r(x: float, nd: int = 3) -> float:
    """`x` rounded to `nd` decimals, for reading."""
    return round(float(x), nd)


def _baselines(bs: tuple[Baseline, ...]) -> list[dict[str, Any]]:
    return [
        {
            "gpu": b.gpu,
            "tokensPerSecond": _r(b.tokens_per_second, 1),
            "costPerHour": _r(b.cost_per_hour, 2),
            "feasible": b.feasible,
            **({"reason": b.reason} if b.reason else {}),
        }
        for b in bs
    ]


def _infeasible(result: Infeasible) -> dict[str, Any]:
    """The JSON of an infeasible result: the same keys as a plan's, zeros and the reason."""
    return {
        "feasible": False,
        "reason": result.reason,
        "message": result.message,
        "tokensPerSecond": 0.0,
        "samplesPerSecond": 0.0,
        "costPerHour": 0.0,
        "solveSeconds": _r(result.solve_seconds, 4),
        "bottleneck": "",
        "trainer": None,
        "rollout": [],
        "stalenessPredicted": 0.0,
        "homogeneousBaselines": _baselines(result.baselines),
        "changes": [],
    }


def _trainer(t: TrainerAssignment) -> dict[str, Any]:
    """The trainer's pool, layout, nodes and rate."""
    return {
        "gpu": t.gpu,
        "pool": t.pool,
        "gpus": t.gpus,
        "dataParallel": t.data_parallel,
        "tensorParallel": t.tensor_parallel,
        "pipelineParallel": t.pipeline_parallel,
        "fsdp": t.fsdp,
        "nodes": list(t.nodes),
        "gpusPerNode": list(t.gpus_per_node),
        "tokensPerSecond": _r(t.tokens_per_second, 1),
    }


def _rollout_group(g: RolloutGroup) -> dict[str, Any]:
    """One group of identical rollout replicas."""
    return {
        "gpu": g.gpu,
        "pool": g.pool,
        "replicas": g.replicas,
        "gpusPerReplica": g.gpus_per_replica,
        "spot": g.spot,
        "nodes": list(g.nodes),
        "tokensPerSecond": _r(g.tokens_per_second, 1),
    }


def plan_to_json(result: PlanResult) -> dict[str, Any]:
    """A JSON-ready dict of a Plan or Infeasible (camelCase keys, numbers rounded for reading)."""
    if isinstance(result, Infeasible):
        return _infeasible(result)
    return {
        "feasible": True,
        "reason": "",
        "message": "; ".join(result.notes),
        "tokensPerSecond": _r(result.tokens_per_second, 1),
        "samplesPerSecond": _r(result.samples_per_second, 3),
        "costPerHour": _r(result.cost_per_hour, 2),
        "dollarsPerMillionTokens": _r(result.dollars_per_million_tokens, 4),
        "solveSeconds": _r(result.solve_seconds, 4),
        "solver": result.solver,
        "solverStatus": result.solver_status,
        "bottleneck": result.bottleneck,
        "gpus": result.gpus,
        "rolloutTokensPerSecond": _r(result.rollout_tokens_per_second, 1),
        "trainingTokensPerSecond": _r(result.training_tokens_per_second, 1),
        "weightSyncSeconds": _r(result.weight_sync_seconds, 3),
        "trainer": _trainer(result.trainer),
        "rollout": [_rollout_group(g) for g in result.rollout_groups()],
        "stalenessPredicted": _r(result.staleness_predicted, 3),
        "bufferDepth": result.buffer_depth,
        "homogeneousBaselines": _baselines(result.baselines),
        "changes": [{"kind": c.kind, "role": c.role, "detail": c.detail} for c in result.changes],
    }


def plan_summary(plan: Plan) -> PlanSummary:
    """The RLJob `status.plan` view of a plan."""
    t = plan.trainer
    return PlanSummary(
        trainer=TrainerPlacement(
            gpu=t.gpu,
            pool=t.pool,
            gpus=t.gpus,
            data_parallel=t.data_parallel,
            tensor_parallel=t.tensor_parallel,
            pipeline_parallel=t.pipeline_parallel,
            fsdp=t.fsdp,
            nodes=list(t.nodes),
            tokens_per_second=t.tokens_per_second,
        ),
        rollout=[
            RolloutGroupModel(
                gpu=g.gpu,
                pool=g.pool,
                replicas=g.replicas,
                gpus_per_replica=g.gpus_per_replica,
                spot=g.spot,
                nodes=list(g.nodes),
                tokens_per_second=g.tokens_per_second,
            )
            for g in plan.rollout_groups()
        ],
        gpus=plan.gpus,
        predicted_tokens_per_second=plan.tokens_per_second,
        cost_per_hour=plan.cost_per_hour,
        solve_seconds=plan.solve_seconds,
        bottleneck=plan.bottleneck,
        staleness_predicted=plan.staleness_predicted,
    )
