"""The planner's optimisation problem as data, and the arithmetic that scores one candidate.

`Problem` is what searchspace.py reduces a job and a cluster to: rollout options, training strategies,
pool capacities, budget or target, weight-sync caps and the staleness-gate data. `evaluate` computes a
candidate's end-to-end tokens/s and checks every constraint with the same arithmetic the MILP encodes
(formulation.py writes the rows, strategy_search.py searches over them), so the solver's answer, the
brute-force tests and the simulator comparisons all agree. The derivations — the staleness gate via
Little's law, the straggler rows, the per-batch bound and the exact bin packing — are in formulation.py's
docstring; each function here names the quantity it computes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

__all__ = [
    "Evaluation",
    "PoolCapacity",
    "Problem",
    "RolloutOption",
    "Solution",
    "TrainOption",
    "evaluate",
    "gate_coefficient",
    "gated_rollout",
    "generating_cap",
    "latency_cap",
    "serial_rate",
    "serial_tangents",
    "train_usage",
    "useful_rollout",
    "ws_lookup",
    "ws_seconds",
]

_EPS = 1e-9


@dataclass(frozen=True)
class RolloutOption:
    pool: str
    gpus: int
    item_size: int
    rate: float
    """Tokens/s of one replica: its waves with the weight-update pause, and on spot its up time less the
    re-prefill share (costmodel, "RL-specific losses")."""
    slots: int
    price: float
    """$/h of one replica."""
    spot: bool
    max_count: int
    latency: float = 0.0
    """ℓ_c: expected seconds one group holds its slots (at η = 0: the batch latency); 0 = not modelled."""


@dataclass(frozen=True)
class TrainOption:
    pool: str
    gpus: int
    item_size: int
    rate: float
    price: float


@dataclass(frozen=True)
class PoolCapacity:
    name: str
    capacity: tuple[tuple[int, int], ...]
    """(size σ, K_σ) for the pool's chain of item sizes, ascending."""


@dataclass(frozen=True)
class Problem:
    rollout: tuple[RolloutOption, ...]
    train: tuple[TrainOption, ...]
    pools: tuple[PoolCapacity, ...]
    inflight_cap: float
    budget: float | None = None
    target: float | None = None
    ws_rate: tuple[tuple[str, str, float], ...] = ()
    """(trainer pool, rollout pool, tokens/s cap)."""
    floor: float = 0.0
    surplus_factor: float = 1.0
    current_counts: tuple[int, ...] | None = None
    migration_weight: float = 0.0
    """Objective penalty per GPU moved, in tokens/s."""
    batch: float = 0.0
    """B: samples per training step. 0 keeps the plain in-flight bound `inflight_cap` (no gate model)."""
    tokens_per_sample: float = 1.0
    """τ = P + R̄ tokens per sample."""
    policy_lag: int = 0
    """η, the staleness bound."""

    @property
    def gated(self) -> bool:
        return self.batch > 0

    @cached_property
    def slowest_ws_rate(self) -> dict[str, float]:
        """The smallest positive weight-sync rate from each trainer pool, computed once per problem: `ws_seconds`
        runs for every train option and tangent, and a scan of `ws_rate` (pools²) each time would make planning
        on a few hundred pools take minutes."""
        out: dict[str, float] = {}
        for a, _, w in self.ws_rate:
            if w > 0 and (a not in out or w < out[a]):
                out[a] = w
        return out


def ws_seconds(p: Problem, s: TrainOption) -> float:
    """ω_s: seconds until the slowest pool has a new version, from the trainer's pool (max over pools)."""
    step_tokens = p.batch * p.tokens_per_sample
    slowest = p.slowest_ws_rate.get(s.pool)
    return step_tokens / slowest if slowest else 0.0


def gate_coefficient(p: Problem, s: TrainOption) -> float:
    """k_s: gate samples held per token/s of throughput by the batch in training and the sync gap."""
    return p.batch / s.rate + ws_seconds(p, s) / p.tokens_per_sample if s.rate > 0 else float("inf")


def generating_cap(p: Problem) -> float:
    """Samples the gate leaves generating before the trainer's share: (η + ½)·B, or B at η = 0."""
    if not p.gated:
        return p.inflight_cap
    return p.batch if p.policy_lag == 0 else (p.policy_lag + 0.5) * p.batch


def latency_cap(p: Problem, s: TrainOption, o: RolloutOption, slots: float = float("inf")) -> float:
    """Largest T at which option o's groups are trained within η: (η+1)·B / (ℓ_c/τ + k_s), and, when the
    plan's `slots` (Σ s_c·y_c) are fewer than the gate admits, (½·B + slots)·τ/ℓ_c (queueing; formulation.py)."""
    if not p.gated or o.latency <= 0:
        return float("inf")
    cap = (p.policy_lag + 1) * p.batch / (o.latency / p.tokens_per_sample + gate_coefficient(p, s))
    if p.policy_lag > 0:
        cap = min(cap, (0.5 * p.batch + slots) * p.tokens_per_sample / o.latency)
    return cap


@dataclass(frozen=True)
class Evaluation:
    throughput: float
    rollout_capacity: float
    rollout_useful: float
    training: float
    weight_sync_cap: float
    cost: float
    feasible: bool
    violations: tuple[str, ...] = ()


@dataclass(frozen=True)
class Solution:
    train: int
    counts: tuple[int, ...]
    evaluation: Evaluation
    status: str
    solver: str
    seconds: float
    solves: int = 1
    notes: tuple[str, ...] = field(default_factory=tuple)


def train_usage(s: TrainOption, size: int) -> int:
    """GPUs of σ-aligned capacity the trainer takes: its G GPUs packed compactly (whole nodes plus one
    partial node) leave σ·⌈G/σ⌉ unusable to items of size σ > TP; items of size ≤ TP see exactly G."""
    return s.gpus if s.item_size >= size else size * -(-s.gpus // size)


def ws_lookup(p: Problem) -> dict[tuple[str, str], float]:
    """W_{a,b}: the weight-sync-limited tokens/s by (trainer pool, rollout pool)."""
    return {(a, b): w for a, b, w in p.ws_rate}


def useful_rollout(p: Problem, counts: Sequence[int], cap: float | None = None) -> float:
    """max Σ r_c u_c s.t. Σ s_c u_c ≤ cap (default Λ), 0 ≤ u ≤ y: a fractional knapsack, greedy by rate per slot."""
    order = sorted((i for i, y in enumerate(counts) if y > 0), key=lambda i: -p.rollout[i].rate / p.rollout[i].slots)
    left, total = (p.inflight_cap if cap is None else cap), 0.0
    if left <= 0:
        return 0.0
    for i in order:
        o = p.rollout[i]
        take = min(float(counts[i]), left / o.slots)
        total += take * o.rate
        left -= take * o.slots
        if left <= _EPS:
            break
    return total


_SERIAL_TANGENTS = tuple(2.0 ** (j / 2) for j in range(-4, 5))
"""Tangent points of the serial (η = 0) rate curve, in units of its half-saturation rate B/k_s."""


def serial_tangents(p: Problem, s: TrainOption) -> list[tuple[float, float]]:
    """(slope, intercept) of the tangents of g(R) = c·R/(1 + k_s·R/B) at R_j = c_j·m·B/k_s (g(0) = 0,
    concave), with c = 1 at η = 0 and η + ½ otherwise, m = max(1, η): the per-batch bound (formulation.py)."""
    k = gate_coefficient(p, s)
    if not p.gated or k <= 0 or k == float("inf"):
        return []
    c = 1.0 if p.policy_lag == 0 else p.policy_lag + 0.5
    half = p.batch / k
    out = []
    for cj in _SERIAL_TANGENTS:
        r = cj * max(1, p.policy_lag) * half
        slope = c / (1.0 + r / half) ** 2
        out.append((slope, c * r / (1.0 + r / half) - slope * r))
    return out


def serial_rate(p: Problem, s: TrainOption, rollout: float) -> float:
    """The per-batch bound: a batch of B samples takes at least B·τ/R to generate (R the rollout rate),
    then D_s to train and ω_s to sync; the gate overlaps η + ½ of these cycles (η = 0: one, in series):
    T·(B·τ/R + D_s + ω_s) ≤ c·B·τ, i.e. T ≤ c·R/(1 + k_s·R/B). The MILP uses the tangents of this concave
    curve (within ~2 %), and so does this function, so both agree exactly."""
    return min((a * rollout + b for a, b in serial_tangents(p, s)), default=rollout)


def gated_rollout(p: Problem, s: TrainOption, counts: Sequence[int]) -> float:
    """The largest T with T ≤ useful(a − k_s·T), a = generating_cap: the fixed point of the gate rows.

    useful(·) is the greedy knapsack's concave, piecewise-linear curve (slope ρ = rate per slot on each
    segment), so on the segment starting at capacity c_0 with value U_0 the fixed point is
    T = (U_0 + ρ·(a − c_0)) / (1 + ρ·k); the first segment whose solution lies in it is the answer.
    """
    a = generating_cap(p)
    if not p.gated:
        return useful_rollout(p, counts)
    k = gate_coefficient(p, s) if p.policy_lag > 0 else 0.0
    order = sorted((i for i, y in enumerate(counts) if y > 0), key=lambda i: -p.rollout[i].rate / p.rollout[i].slots)
    c0 = u0 = 0.0
    for i in order:
        o = p.rollout[i]
        rho = o.rate / o.slots
        width = counts[i] * o.slots
        t = (u0 + rho * (a - c0)) / (1 + rho * k)
        if a - k * t <= c0 + width:
            return max(0.0, t)
        c0 += width
        u0 += counts[i] * o.rate
    return max(0.0, min(u0, a / k if k > 0 else u0))


def _batch_bounded(p: Problem, s: TrainOption, counts: Sequence[int], gated: float) -> float:
    """The largest T ≤ `gated` with T ≤ serial_rate(useful(a − k_s·T)) (both sides fall with T: bisection)."""
    if serial_rate(p, s, gated) >= gated:
        return gated
    if p.policy_lag == 0:
        return serial_rate(p, s, gated)  # the usable rollout does not depend on T at η = 0
    a, k = generating_cap(p), gate_coefficient(p, s)
    tangents = serial_tangents(p, s)
    order = sorted((i for i, y in enumerate(counts) if y > 0), key=lambda i: -p.rollout[i].rate / p.rollout[i].slots)
    pieces = [(counts[i] * p.rollout[i].slots, p.rollout[i].rate / p.rollout[i].slots) for i in order]

    def useful(cap: float) -> float:
        total = 0.0
        for width, rho in pieces:
            if cap <= 0:
                break
            take = min(width, cap)
            total += take * rho
            cap -= take
        return total

    lo, hi = 0.0, gated
    for _ in range(48):
        mid = (lo + hi) / 2
        r = useful(a - k * mid)
        if min(sl * r + b for sl, b in tangents) >= mid:
            lo = mid
        else:
            hi = mid
    return lo


def evaluate(p: Problem, train: int, counts: Sequence[int]) -> Evaluation:
    """Throughput and constraint check of one candidate (the arithmetic the MILP encodes)."""
    s = p.train[train]
    ws = ws_lookup(p)
    used_pools = {p.rollout[i].pool for i, y in enumerate(counts) if y > 0}
    ws_cap = min((ws.get((s.pool, q), float("inf")) for q in used_pools), default=float("inf"))
    capacity = sum(o.rate * y for o, y in zip(p.rollout, counts, strict=True))
    useful = _batch_bounded(p, s, counts, gated_rollout(p, s, counts))
    total_slots = float(sum(o.slots * y for o, y in zip(p.rollout, counts, strict=True)))
    lat_cap = min(
        (latency_cap(p, s, o, total_slots) for o, y in zip(p.rollout, counts, strict=True) if y > 0), default=float("inf")
    )
    od = sum(o.rate * y for o, y in zip(p.rollout, counts, strict=True) if not o.spot)
    # The floor caps the throughput the plan may count on: T ≤ on-demand capacity / φ.
    t = min(s.rate, useful, ws_cap, lat_cap, od / p.floor if p.floor > 0 else float("inf"))
    cost = s.price + sum(o.price * y for o, y in zip(p.rollout, counts, strict=True))
    bad: list[str] = []
    tol = 1e-6
    if p.budget is not None and cost > p.budget * (1 + tol) + tol:
        bad.append("budget")
    if p.target is not None and t < p.target * (1 - tol):
        bad.append("target")
    for pc in p.pools:
        for size, cap in pc.capacity:
            used = (train_usage(s, size) if s.pool == pc.name else 0) + sum(
                o.gpus * y for o, y in zip(p.rollout, counts, strict=True) if o.pool == pc.name and o.item_size >= size
            )
            if used > cap:
                bad.append(f"capacity:{pc.name}:{size}")
    if od < p.floor * t * (1 - tol) - tol:
        bad.append("floor")
    h_max = max((o.rate for o in p.rollout), default=0.0)
    if surplus_applies(p) and capacity > p.surplus_factor * t + h_max + tol * max(1.0, capacity):
        bad.append("surplus")
    if any(y > o.max_count for o, y in zip(p.rollout, counts, strict=True)):
        bad.append("max_count")
    return Evaluation(
        throughput=t,
        rollout_capacity=capacity,
        rollout_useful=min(useful, lat_cap),
        training=s.rate,
        weight_sync_cap=ws_cap,
        cost=cost,
        feasible=not bad and t > 0,
        violations=tuple(bad),
    )


def surplus_applies(p: Problem) -> bool:
    """The surplus cap (rollout ≤ surplus·T + one replica) describes rollout running beside the trainer
    (η > 0), where more than the trainer absorbs only costs money. A synchronous job (η = 0, gated) alternates:
    rollout waits while the trainer trains, so its rate while generating exceeds T by design, and more of
    it shortens every step."""
    return not (p.gated and p.policy_lag == 0)
