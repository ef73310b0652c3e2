"""Online calibration: a running job's measured work next to the cost model's prediction of it.

The workers report cumulative work per (GPU type, phase): tokens processed and the GPU-seconds they took
(`/v1/progress` `observedWork`; the rollout worker's engine calls as `decode`, the trainer's steps as
`train`). The operator reads it twice, Δt apart, and turns each cell's difference into one calibration
`Observation` (calibration.py fits the factors from many). This module holds the pure parts of that:

Predicted rate at the plan's operating point (`predicted_work_rates`), per GPU-second, uncalibrated
    decode, for a rollout replica of TP t × PP p GPUs (g = t·p) of the type, batch B (KV-bound, as planned),
    wave T_wave = S·t_step + prefill + reward (costmodel.py):
        r_decode = B·R̄ / (T_wave − reward) / g
    — the generated tokens of a wave over the engine's busy time (a `generate` call decodes and prefills;
    the reward is scored outside it), per GPU. Several replica shapes of one type: the GPU-weighted mean.
    train, for the trainer's DP×TP×PP strategy of g GPUs:  r_train = tokens/s of the step / g.
    The cost model's calibration divides the decode roofline step (resp. the training compute and
    optimizer) by f, which dominate these times, so f ≈ r_observed / r_predicted; prefill and collectives,
    which f does not scale, are a small share at the planned operating point.
Observed rate between two reads (`observations_between`)
    For a cell with sums (n₀, s₀) then (n₁, s₁): Δn = n₁ − n₀ tokens, Δs = s₁ − s₀ GPU-seconds;
        observed = Δn / Δs,  evidence = Δs.
    No observation when Δs < `min_seconds` (too little work to say anything), Δn ≤ 0 (a rate of 0 has no
    logarithm: the workers stood still), or either sum went down (the coordinator restarted: its sums
    began again at 0, so the next pair of reads starts afresh). A cell that did some but too little work keeps
    its older read as the base (`advance_base`), so slow work adds up to an observation over several reads.
Profile used by the planner (`effective_profile`)
    pinned factors (a platform team's, never re-fitted) ∪ fitted factors of the cells not pinned.
The current plan under a new profile (`rescored_tokens_per_second`)
    Each rollout replica's and the trainer's rates are re-estimated with the old and the new profile; with
    ρ_r = Σ new replica rates / Σ old ones and ρ_t = new/old training rate, the plan's throughput becomes
        X' = X · min(ρ_r·R, ρ_t·T, W) / min(R, T, W)
    (R, T the plan's rollout and training rates, W the weight-sync cap tokens_step / t_ws, ∞ without one):
    exactly X when nothing changed, and following the bottleneck when something did.
Re-plan decision (`replan_gain`)
    Maximising throughput: gain = X_best / X'_current − 1. Minimising cost for a target: the relative
    saving 1 − cost_best / cost_current when the best plan meets the target and the current one no longer
    does, or when both do. The operator re-plans when gain > its margin.
Pure: no I/O; inputs are never mutated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, cast

from hexrl.api.models import RLJobSpec
from hexrl.sched.calibration import (
    PHASES,
    CalibrationFit,
    CalibrationProfile,
    Observation,
    Phase,
    ProfileEntry,
)
from hexrl.sched.catalog import DEFAULT_CATALOG, Catalog, GPUSpec
from hexrl.sched.costmodel import (
    CostModelSettings,
    Workload,
    decode_tokens_per_second,
    training_tokens_per_second,
)
from hexrl.sched.types import Cluster, Plan, PoolInfo, RolloutReplica

__all__ = [
    "Cell",
    "WorkSum",
    "advance_base",
    "effective_profile",
    "material_changes",
    "observations_between",
    "parse_observed_work",
    "predicted_work_rates",
    "replan_gain",
    "rescored_tokens_per_second",
]

Cell = tuple[str, Phase]
"""(GPU type, phase)."""


@dataclass(frozen=True)
class WorkSum:
    """Cumulative work of one cell as the coordinator reports it."""

    gpu: str
    phase: Phase
    tokens: float
    seconds: float
    """GPU-seconds."""


def parse_observed_work(progress: Mapping[str, Any]) -> dict[Cell, WorkSum]:
    """The `observedWork` of a `/v1/progress` answer by cell; malformed entries are skipped (the operator
    must not fail on a worker of another version)."""
    out: dict[Cell, WorkSum] = {}
    raw = progress.get("observedWork")
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, Mapping):
            continue
        gpu, phase, tokens, seconds = item.get("gpu"), item.get("phase"), item.get("tokens"), item.get("seconds")
        if not (isinstance(gpu, str) and gpu and phase in PHASES and _number(tokens) and _number(seconds)):
            continue
        cell = (gpu, cast(Phase, phase))
        out[cell] = WorkSum(gpu, cell[1], float(cast(float, tokens)), float(cast(float, seconds)))
    return out


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x >= 0


def observations_between(
    before: Mapping[Cell, WorkSum], after: Mapping[Cell, WorkSum], predicted: Mapping[Cell, float],
    min_seconds: float,
) -> list[Observation]:
    """One observation per cell with a prediction and enough new work between two reads (module docstring)."""
    out = []
    for cell, now in sorted(after.items()):
        then, rate = before.get(cell), predicted.get(cell)
        if then is None or rate is None or rate <= 0:
            continue
        d_tokens, d_seconds = now.tokens - then.tokens, now.seconds - then.seconds
        if d_tokens <= 0 or d_seconds < max(min_seconds, 1e-9):
            continue
        out.append(Observation(cell[0], cell[1], rate, d_tokens / d_seconds, d_seconds))
    return out


def advance_base(before: Mapping[Cell, WorkSum], after: Mapping[Cell, WorkSum], min_seconds: float) -> dict[Cell, WorkSum]:
    """The sums the next read is compared with: `after`, except for a cell that did some but too little work
    since `before` (0 < Δs < min_seconds, nothing went down), which keeps its older base so slow work adds up
    to an observation over several reads instead of never reaching the threshold."""
    out = dict(after)
    for cell, now in after.items():
        then = before.get(cell)
        if then is None:
            continue
        d_tokens, d_seconds = now.tokens - then.tokens, now.seconds - then.seconds
        if d_tokens >= 0 and 0 <= d_seconds < min_seconds:
            out[cell] = then
    return out


# ----------------------------------------------------------------------------------- predictions


def _uncalibrated(settings: CostModelSettings) -> CostModelSettings:
    return replace(settings, calibration=CalibrationProfile())


def _pool(cluster: Cluster, name: str) -> PoolInfo | None:
    return next((p for p in cluster.pools if p.name == name), None)


@lru_cache(maxsize=64)
def _catalog(overrides: tuple[GPUSpec, ...]) -> Catalog:
    """The catalog with a cluster's GPU overrides (cached by the overrides: a pass re-scores every replica)."""
    return DEFAULT_CATALOG.with_specs(overrides)


def _spec_and_links(cluster: Cluster, pool_name: str, gpu: str) -> tuple[GPUSpec, float, float, int] | None:
    """(GPU spec, node-to-node Gbit/s, HBM GB, GPUs per node) of `gpu` in pool `pool_name`, inventory over
    catalog; None when the catalog does not know the type."""
    spec = _catalog(cluster.gpu_overrides).lookup(gpu)
    if spec is None:
        return None
    pool = _pool(cluster, pool_name)
    inter = (pool.inter_node_gbps if pool is not None else None) or spec.inter_node_gbps
    memory = (pool.gpu_memory_gb if pool is not None else None) or spec.hbm_gb
    per_node = pool.gpus_per_node if pool is not None else 8
    return spec, inter, memory, per_node


def _replica_decode(cluster: Cluster, w: Workload, r: RolloutReplica, s: CostModelSettings) -> Any:
    found = _spec_and_links(cluster, r.pool, r.gpu)
    if found is None:
        return None
    spec, inter, memory, _ = found
    return decode_tokens_per_second(spec, w, r.tensor_parallel, r.pipeline_parallel, s, inter, memory)


def _engine_rate(e: Any, w: Workload, s: CostModelSettings, gpus: int) -> float:
    """B·R̄ / (T_wave − reward) / g: generated tokens per GPU-second of the engine's busy time."""
    reward = e.batch * s.reward_seconds_per_sample / max(1, s.reward_workers_per_replica)
    busy = e.wave_seconds - reward
    return e.batch * w.mean_new_tokens / busy / gpus if busy > 0 else 0.0


def _trainer_estimate(job: RLJobSpec, cluster: Cluster, plan: Plan, s: CostModelSettings) -> Any:
    t = plan.trainer
    found = _spec_and_links(cluster, t.pool, t.gpu)
    if found is None:
        return None
    spec, inter, memory, per_node = found
    w = Workload.from_spec(job)
    return training_tokens_per_second(spec, w, t.data_parallel, t.tensor_parallel, t.pipeline_parallel, t.fsdp, s,
                                      per_node, inter, memory)


def predicted_work_rates(
    job: RLJobSpec, cluster: Cluster, plan: Plan, settings: CostModelSettings
) -> dict[Cell, float]:
    """The uncalibrated predicted tokens per GPU-second of each (GPU type, phase) the plan runs (module
    docstring): what a worker's reported work is compared with."""
    s = _uncalibrated(settings)
    w = Workload.from_spec(job)
    weighted: dict[str, tuple[float, int]] = {}
    for r in plan.replicas:
        e = _replica_decode(cluster, w, r, s)
        if e is None:
            continue
        rate = _engine_rate(e, w, s, r.gpus)
        total, gpus = weighted.get(r.gpu, (0.0, 0))
        weighted[r.gpu] = (total + rate * r.gpus, gpus + r.gpus)
    out: dict[Cell, float] = {(gpu, "decode"): total / gpus for gpu, (total, gpus) in weighted.items() if total > 0}
    train = _trainer_estimate(job, cluster, plan, s)
    if train is not None and train.tokens_per_second > 0:
        out[(plan.trainer.gpu, "train")] = train.tokens_per_second / plan.trainer.gpus
    return out


# ----------------------------------------------------------------------------------- the profile


def effective_profile(pinned: CalibrationProfile, fit: CalibrationFit | None) -> CalibrationProfile:
    """Pinned factors, and the fitted ones of every cell that is not pinned."""
    held = {(e.gpu, e.phase) for e in pinned.entries}
    fitted = [ProfileEntry(e.gpu, e.phase, e.factor) for e in (fit.estimates if fit else ())
              if (e.gpu, e.phase) not in held]
    return CalibrationProfile(tuple(sorted([*pinned.entries, *fitted], key=lambda e: (e.gpu, e.phase))))


def material_changes(
    old: CalibrationProfile, new: CalibrationProfile, threshold: float
) -> list[tuple[str, Phase, float, float]]:
    """(gpu, phase, old factor, new factor) of every cell whose factor moved by more than `threshold`
    (relative: |ln(new/old)| > ln(1 + threshold)), sorted."""
    cells = {(e.gpu, e.phase) for e in (*old.entries, *new.entries)}
    limit = math.log1p(threshold)
    out = []
    for gpu, phase in sorted(cells):
        a, b = old.factor(gpu, phase), new.factor(gpu, phase)
        if abs(math.log(b / a)) > limit:
            out.append((gpu, phase, a, b))
    return out


# -------------------------------------------------------------------------------- re-plan decision


def _rollout_rate(job: RLJobSpec, cluster: Cluster, plan: Plan, s: CostModelSettings) -> float:
    w = Workload.from_spec(job)
    total = 0.0
    for r in plan.replicas:
        e = _replica_decode(cluster, w, r, s)
        total += e.tokens_per_second if e is not None else 0.0
    return total


def rescored_tokens_per_second(
    job: RLJobSpec, cluster: Cluster, plan: Plan, old: CostModelSettings, new: CostModelSettings
) -> float:
    """The plan's predicted throughput when its rates are re-estimated under `new` instead of `old`
    (module docstring: X' = X · min(ρ_r·R, ρ_t·T, W) / min(R, T, W))."""
    r_old, r_new = _rollout_rate(job, cluster, plan, old), _rollout_rate(job, cluster, plan, new)
    t_old, t_new = _trainer_estimate(job, cluster, plan, old), _trainer_estimate(job, cluster, plan, new)
    rho_r = r_new / r_old if r_old > 0 else 1.0
    rho_t = t_new.tokens_per_second / t_old.tokens_per_second if t_old is not None and t_new is not None else 1.0
    w = Workload.from_spec(job)
    cap = w.tokens_per_step / plan.weight_sync_seconds if plan.weight_sync_seconds > 0 else math.inf
    rollout, training = plan.rollout_tokens_per_second, plan.training_tokens_per_second
    before = min(rollout, training, cap)
    if before <= 0:
        return plan.tokens_per_second
    return plan.tokens_per_second * min(rho_r * rollout, rho_t * training, cap) / before


def replan_gain(job: RLJobSpec, current_tokens_per_second: float, current_cost: float, best: Plan) -> float:
    """How much better `best` is than the current plan re-scored under the new profile (module docstring):
    relative throughput gain, or relative cost saving when the job has a throughput target."""
    target = job.budget.target_tokens_per_second
    if target is None:
        if current_tokens_per_second <= 0:
            return math.inf if best.tokens_per_second > 0 else 0.0
        return best.tokens_per_second / current_tokens_per_second - 1.0
    best_meets, current_meets = best.tokens_per_second >= target, current_tokens_per_second >= target
    if best_meets and not current_meets:
        return math.inf
    if not best_meets:
        return best.tokens_per_second / max(current_tokens_per_second, 1e-12) - 1.0
    return 1.0 - best.cost_per_hour / current_cost if current_cost > 0 else 0.0

