"""Online calibration: a running job's measured work next to the cost model's prediction of it.

The workers report cumulative work per (GPU type, phase): tokens processed and the GPU-seconds they took
(`/v1/progress` `observedWork`; the rollout worker's busy time as `decode`, the trainer's steps as `train`). The operator reads it twice, Δt apart, and turns each cell's difference into one calibration
`Observation` (calibration.py fits the factors from many). This module holds the pure parts of that:

Predicted rate at the plan's operating point (`predicted_work_rates`), per GPU-second, uncalibrated
    The workers' seconds are *busy* seconds: a rollout worker's from receiving work to having scored it
    (weight update, prefill and decode, reward; not waiting for work, which the staleness gate or an idle
    trainer decides), the trainer's from taking a batch to having published the version. A factor f scales
    only the phase's own term (the decode roofline step; training compute and optimizer), so each prediction
    splits the busy time per token into that term and the rest the cost model holds fixed:
    decode, for a rollout replica of g = t·p GPUs of the type with batch B (KV-bound, as planned) and wave
    T_wave = S·t_step + prefill + reward (costmodel.py), t_step = r + c (r the roofline, c the collectives):
        rate  = B·R̄ / (S·r·g)                          generated tokens per GPU-second of roofline steps
        other = (T_wave − S·r)·g / (B·R̄)               GPU-seconds per token of everything else
    r is read off the cost model itself: t_step(f=1) − t_step(f=2) = r/2. Several replica shapes of one type:
    the GPU-weighted mean of each. train, for the trainer's DP×TP×PP strategy of g GPUs, tokens_step tokens:
        scaled = 2·(T_step(f=1) − T_step(f=2)),  rate = tokens_step / (scaled·g),
        other  = (T_step(f=1) − scaled)·g / tokens_step.
Observed rate between two reads (`observations_between`)
    For a cell with sums (n₀, s₀) then (n₁, s₁): Δn = n₁ − n₀ tokens, Δs = s₁ − s₀ GPU-seconds; the phase's
    own seconds are what the model's other terms do not explain:
        d = Δs − other·Δn,   observed = Δn / d,   evidence = Δs.
    Then, with f = observed / rate, the calibrated model's busy time per token 1/(f·rate) + other = Δs/Δn is
    exactly what was measured at this operating point: the planner's prediction follows the job, not just
    one kernel. No observation when d < `MIN_OWN_SHARE`·Δs (the model's fixed terms alone take nearly all the
    measured time: nothing left to attribute), when Δs < `min_seconds` (too little work to say anything),
    Δn ≤ 0 (a rate of 0 has no logarithm: the workers stood still), or a sum went down (the coordinator
    restarted: its sums began again at 0, so the next pair of reads starts afresh). A cell that did some but
    too little work keeps its older read as the base (`advance_base`), so slow work adds up to an
    observation over several reads.
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
    "MIN_OWN_SHARE",
    "Cell",
    "PhasePrediction",
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

MIN_OWN_SHARE = 0.05
"""Least share of the measured GPU-seconds the phase's own term must be left with to make an observation."""


@dataclass(frozen=True)
class PhasePrediction:
    """The cost model's view of one (GPU type, phase) at the plan's operating point (module docstring)."""

    rate: float
    """Tokens per GPU-second of the phase's own term, the one a factor scales (uncalibrated)."""
    other_seconds_per_token: float = 0.0
    """GPU-seconds per token of the terms no factor of the phase scales (reward, collectives, ...)."""


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
    before: Mapping[Cell, WorkSum], after: Mapping[Cell, WorkSum], predicted: Mapping[Cell, PhasePrediction | float],
    min_seconds: float,
) -> list[Observation]:
    """One observation per cell with a prediction and enough new work between two reads (module docstring);
    a bare number as a prediction is a rate with no other terms."""
    out = []
    for cell, now in sorted(after.items()):
        then, p = before.get(cell), predicted.get(cell)
        if then is None or p is None:
            continue
        p = p if isinstance(p, PhasePrediction) else PhasePrediction(float(p))
        d_tokens, d_seconds = now.tokens - then.tokens, now.seconds - then.seconds
        if p.rate <= 0 or d_tokens <= 0 or d_seconds < max(min_seconds, 1e-9):
            continue
        own = d_seconds - p.other_seconds_per_token * d_tokens
        if own < MIN_OWN_SHARE * d_seconds:
            continue
        out.append(Observation(cell[0], cell[1], p.rate, d_tokens / own, d_seconds))
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


def _doubled(s: CostModelSettings, gpu: str, phase: Phase) -> CostModelSettings:
    """`s` (uncalibrated) with factor 2 on one cell: the difference to f = 1 isolates the term f scales."""
    return replace(s, calibration=CalibrationProfile.of({(gpu, phase): 2.0}))


def _decode_prediction(cluster: Cluster, w: Workload, r: RolloutReplica, s: CostModelSettings) -> PhasePrediction | None:
    """rate = B·R̄/(S·r·g), other = (T_wave − S·r)·g/(B·R̄) of one replica (module docstring)."""
    one, two = _replica_decode(cluster, w, r, s), _replica_decode(cluster, w, r, _doubled(s, r.gpu, "decode"))
    if one is None or two is None:
        return None
    roof = 2.0 * (one.step_seconds - two.step_seconds)
    decode = one.wave_seconds - two.wave_seconds  # = S·r/2
    tokens = one.batch * w.mean_new_tokens
    if roof <= 0 or decode <= 0 or tokens <= 0:
        return None
    own = 2.0 * decode
    return PhasePrediction(tokens / (own * r.gpus), (one.wave_seconds - own) * r.gpus / tokens)


def _trainer_estimate(job: RLJobSpec, cluster: Cluster, plan: Plan, s: CostModelSettings) -> Any:
    t = plan.trainer
    found = _spec_and_links(cluster, t.pool, t.gpu)
    if found is None:
        return None
    spec, inter, memory, per_node = found
    w = Workload.from_spec(job)
    return training_tokens_per_second(spec, w, t.data_parallel, t.tensor_parallel, t.pipeline_parallel, t.fsdp, s,
                                      per_node, inter, memory)


def _train_prediction(job: RLJobSpec, cluster: Cluster, plan: Plan, s: CostModelSettings) -> PhasePrediction | None:
    """rate = tokens_step/(scaled·g), other = (T_step − scaled)·g/tokens_step (module docstring)."""
    one = _trainer_estimate(job, cluster, plan, s)
    two = _trainer_estimate(job, cluster, plan, _doubled(s, plan.trainer.gpu, "train"))
    if one is None or two is None:
        return None
    scaled = 2.0 * (one.step_seconds - two.step_seconds)
    tokens, g = Workload.from_spec(job).tokens_per_step, plan.trainer.gpus
    if scaled <= 0 or tokens <= 0:
        return None
    return PhasePrediction(tokens / (scaled * g), (one.step_seconds - scaled) * g / tokens)


def predicted_work_rates(
    job: RLJobSpec, cluster: Cluster, plan: Plan, settings: CostModelSettings
) -> dict[Cell, PhasePrediction]:
    """The uncalibrated prediction of each (GPU type, phase) the plan runs (module docstring): what a worker's
    reported work is compared with."""
    s = _uncalibrated(settings)
    w = Workload.from_spec(job)
    sums: dict[str, tuple[float, float, int]] = {}
    for r in plan.replicas:
        p = _decode_prediction(cluster, w, r, s)
        if p is None:
            continue
        rate, other, gpus = sums.get(r.gpu, (0.0, 0.0, 0))
        sums[r.gpu] = (rate + p.rate * r.gpus, other + p.other_seconds_per_token * r.gpus, gpus + r.gpus)
    out: dict[Cell, PhasePrediction] = {
        (gpu, "decode"): PhasePrediction(rate / gpus, other / gpus) for gpu, (rate, other, gpus) in sums.items()}
    train = _train_prediction(job, cluster, plan, s)
    if train is not None:
        out[(plan.trainer.gpu, "train")] = train
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

