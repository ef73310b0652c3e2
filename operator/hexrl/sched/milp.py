"""The planner's mixed-integer program: replica counts and the training strategy, chosen jointly.

The planner (planner.py) reduces a job and a cluster to a `Problem` over abstract options; this module
solves it exactly with PuLP (HiGHS in-process via highspy by default, CBC as the fallback) and evaluates
any candidate solution with the same arithmetic (`evaluate`), which the brute-force tests also use.

Sets and data
    c ∈ C   rollout options (pool, TP×PP config): rate r_c (tokens/s, spot-discounted), slots s_c
            (concurrent sequences), price π_c ($/h per replica), GPUs g_c, item size z_c (the GPUs that
            must sit in one node: TP; a PP replica is p items of a whole node), upper bound Ū_c.
    s ∈ S   training strategies (pool, DP×TP×PP, FSDP): rate t_s, price π_s, GPUs g_s, item size z_s = TP.
    q ∈ Q   pools; for each size σ in the pool's chain (powers of two dividing GPUs per node, and the
            node size), K_{q,σ} = Σ_nodes σ·⌊free_n/σ⌋ GPUs usable by items of size ≥ σ.
    W_{a,b} weight-sync-limited rate when the trainer is in pool a and rollout uses pool b (tokens/s).
    B = B_step samples per step, τ = P + R̄ tokens per sample, η the staleness bound, ℓ_c the expected
    latency of one group on option c (seconds; at η = 0 the batch latency, see costmodel.py).

The staleness gate and Little's law (derivation).  AReaL's gate floor((N_r−1)/B) ≤ i + η lets the
coordinator request up to (i + η + 1)·B samples after i trained steps, i.e. (η+1)·B beyond the trained
ones. That allowance is not all generating: in steady state with step interval Δ = B·τ/T it also holds
    the batch being trained          B for D_s = B·τ/t_s of every Δ:   time-average B·T/t_s,
    the weight-sync gap              the gate advances only when the rollout has version i+1, ω_s
                                     seconds (the slowest pull from the trainer's pool) after the step:
                                     B for ω_s of every Δ:             time-average T·ω_s/τ,
    finished groups in the buffer    they arrive at rate B/Δ and leave B at a time: on average B/2.
So the samples generating are n = (η + ½)·B − T·k_s with k_s = B/t_s + ω_s/τ, and Little's law per
option (r_c/s_c = τ/ℓ_c) gives T ≤ Σ_c r_c·u_c with Σ_c s_c·u_c ≤ n. With one option this is
Δ = (ℓ + D_s + ω_s)/(η + ½): a step needs its batch generated, trained and its weights published, and η
of them overlap. (η = 0 is serial: n = B, the bound below with the batch latency does the rest.)
Stragglers. A group admitted with version v must be trained by step v + η; it is admitted ω_s after
step v−1 ends and step v+η starts (η+1)·Δ − D_s after that, so a group on option c is on time only if
ℓ_c + ω_s + D_s ≤ (η + 1)·Δ, i.e. T·ℓ_c/τ + T·k_s ≤ (η + 1)·B. Late groups are dropped (and their
prompts regenerated), so an option whose expected latency breaks this row may not be used; at η = 0 the
same row with the batch latency is the serial step Δ = Q + D_s + ω_s. When the plan has fewer slots
S = Σ_c s_c·y_c than the gate leaves generating (n > S), the n − S extra groups queue for a slot first
(wait (n − S)·τ/T), and the on-time row becomes T·ℓ_c/τ + n − S + T·k_s ≤ (η+1)·B, i.e.
T·ℓ_c/τ − Σ_c s_c·u_c ≤ ½·B (the busy slots Σ s·u = min(S, n) at the optimum).
Per-batch bound. The gate admits a whole batch at once, so when the slots are the limit a batch takes
B·τ/R to generate (R = Σ r_c·u_c) before it can train (D_s) and publish (ω_s); η + ½ such cycles overlap
(η = 0: one, in series): T·(B·τ/R + D_s + ω_s) ≤ c·B·τ, c = η + ½ (1 at η = 0), i.e. T ≤ g_s(R) =
c·R/(1 + k_s·R/B), concave; the MILP bounds T_s by its tangents at R_j = c_j·max(1, η)·B/k_s
(c_j = 2^{j/2}, j = −4…4), so T ≤ g_s(R) within ~2 %. At η = 0 this is the serial step.

Variables  y_c ∈ ℤ≥0 replicas; u_c ∈ [0, y_c] replicas kept busy by the gate; x_s ∈ {0,1};
           T_s ∈ [0, t_s·x_s] the throughput carried by strategy s (T = Σ_s T_s, so T·k_s is linear);
           z_c ∈ {0,1} "option c is used" (only where its latency row can bind);
           v_q ∈ {0,1} "rollout uses pool q"; T ≥ 0 end-to-end tokens/s.

Maximise   T − δ·cost                      (δ tiny: among plans of equal throughput, the cheapest)
subject to T ≤ Σ_c r_c·u_c                 rollout (knapsack form: with continuous work shares the
                                           makespan of a batch is B·len/Σ y·h, so maximise Σ y·h)
           Σ_c s_c·u_c + Σ_s k_s·T_s ≤ (η + ½)·B  (η ≥ 1; at η = 0: Σ_c s_c·u_c ≤ B),  u_c ≤ y_c
           ℓ_c·T/τ + Σ_s k_s·T_s ≤ (η + 1)·B + M_c·(1 − z_c),  y_c ≤ Ū_c·z_c     stragglers / serial step
           ℓ_c·T/τ − Σ_c' s_c'·u_c' ≤ ½·B + M'_c·(1 − z_c)        (η ≥ 1) stragglers behind a queue
           T_s ≤ g_s'(R_j)·Σ_c r_c·u_c + (g_s(R_j) − g_s'(R_j)·R_j)·x_s   per-batch bound (tangents)
           T = Σ_s T_s,  T_s ≤ t_s·x_s,  Σ_s x_s = 1   training
           T ≤ W_{a,b} + (t̄ − W_{a,b})(2 − X_a − v_b)   weight sync, X_a = Σ_{s∈a} x_s, for W_{a,b} < t̄ (the
                                           largest strategy rate; the tightest big-M);  y_c ≤ Ū_c·v_{q(c)}
           Σ_s π_s x_s + Σ_c π_c y_c ≤ budget
           Σ_{s∈q} κ_s(σ) x_s + Σ_{c∈q, z_c≥σ} g_c y_c ≤ K_{q,σ}     (exact bin packing: sizes divide)
           where κ_s(σ) = g_s if z_s ≥ σ else σ·⌈g_s/σ⌉ (the trainer packed compactly; see train_usage)
           Σ_{c on-demand} r_c·y_c ≥ φ·T   on-demand rollout floor φ (capacity that survives a spot drought)
           Σ_c r_c·y_c ≤ (1 + ρη)·T + max_c r_c   never buy rollout the trainer cannot absorb within η
           (replan) − μ·Σ_c g_c·|y_c − y⁰_c| in the objective, |·| linearised with two variables.
A `Problem` with batch = 0 keeps the plain bound Σ_c s_c·u_c ≤ Λ = inflight_cap and no latency rows.
Min-cost mode: minimise Σ π x + Σ π y subject to T ≥ target (and the budget when given).

Packing: items whose sizes form a divisibility chain fit in bins iff, for every size σ, the items of
size ≥ σ fit in the σ-aligned capacity of the bins (largest-first greedy is optimal for divisible sizes),
so the counts above are exact without per-node variables: the MILP works on pools, not nodes.

Training choice at scale: when there are many strategies, the planner does not put them all in one MILP.
For a throughput level θ, in each pool the cheapest strategy (fewest GPUs) with t_s ≥ θ dominates every
other strategy of that pool that reaches θ (same price per GPU, fewer GPUs). So with Θ the sorted
distinct strategy rates, feasible(θ) = "the MILP restricted to those ≤|Q| strategies reaches T ≥ θ" is
monotone, and bisection over Θ finds the largest feasible θ_k. Θ also holds every weight-sync cap W, so
the feasibility MILPs (T ≥ θ) need no pool-use binaries: a pool whose cap is below θ is just closed to
the trainer's pool. The optimum lies in [θ_k, θ_{k+1}): one last MILP over the union of the strategies
picked at θ_k and θ_{k+1} with T ≥ θ_k finds it (a stronger trainer may be rollout-limited between the
two levels). Each MILP has at most 2|Q| binaries for training.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pulp

__all__ = ["Evaluation", "PoolCapacity", "Problem", "RolloutOption", "Solution", "TrainOption", "evaluate", "solve"]

_EPS = 1e-9


@dataclass(frozen=True)
class RolloutOption:
    pool: str
    gpus: int
    item_size: int
    rate: float
    """Spot-discounted tokens/s of one replica."""
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


def ws_seconds(p: Problem, s: TrainOption) -> float:
    """ω_s: seconds until the slowest pool has a new version, from the trainer's pool (max over pools)."""
    step_tokens = p.batch * p.tokens_per_sample
    caps = [w for a, _, w in p.ws_rate if a == s.pool and w > 0]
    return max((step_tokens / w for w in caps), default=0.0)


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
    plan's `slots` (Σ s_c·y_c) are fewer than the gate admits, (½·B + slots)·τ/ℓ_c (queueing; module doc)."""
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


def _ws_lookup(p: Problem) -> dict[tuple[str, str], float]:
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


def _serial_tangents(p: Problem, s: TrainOption) -> list[tuple[float, float]]:
    """(slope, intercept) of the tangents of g(R) = c·R/(1 + k_s·R/B) at R_j = c_j·m·B/k_s (g(0) = 0,
    concave), with c = 1 at η = 0 and η + ½ otherwise, m = max(1, η): the per-batch bound (module doc)."""
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
    return min((a * rollout + b for a, b in _serial_tangents(p, s)), default=rollout)


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
    tangents = _serial_tangents(p, s)
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
    ws = _ws_lookup(p)
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
    if capacity > p.surplus_factor * t + h_max + tol * max(1.0, capacity):
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


# -------------------------------------------------------------------------------------------- MILP


def _var(prob: pulp.LpProblem, name: str, low: float | None = None, up: float | None = None, cat: str = "Continuous"):
    """A variable attached to `prob` (PuLP ≥ 3.3 prefers prob.add_variable; older versions lack it)."""
    if hasattr(prob, "add_variable"):
        return prob.add_variable(name, low, up, cat=cat)
    return pulp.LpVariable(name, low, up, cat=cat)


def _latency_rows(
    p: Problem, prob: pulp.LpProblem, y, t_var, held, slots, k: dict[int, float], train_ids, t_ub: float
) -> None:
    """ℓ_c·T/τ + Σ_s k_s·T_s ≤ (η+1)·B whenever option c is used (and, η ≥ 1, ℓ_c·T/τ − Σ s·u ≤ ½·B: the
    groups the gate admits beyond the busy slots queue first); rows that can never bind are left out."""
    rhs = (p.policy_lag + 1) * p.batch
    # Σ_s k_s·T_s ≤ max_s k_s·t_s (T_s ≤ t_s), and T ≤ t_ub.
    held_ub = max((k[j] * p.train[j].rate for j in train_ids), default=0.0)
    for i, (o, yi) in enumerate(zip(p.rollout, y, strict=True)):
        if o.latency <= 0:
            continue
        worst = o.latency / p.tokens_per_sample * t_ub + held_ub
        queue_worst = o.latency / p.tokens_per_sample * t_ub - 0.5 * p.batch if p.policy_lag > 0 else 0.0
        if worst <= rhs * (1 + 1e-9) and queue_worst <= 0:
            continue
        z = _var(prob, f"z{i}", 0, 1, "Integer")
        prob += yi <= o.max_count * z
        if worst > rhs * (1 + 1e-9):
            prob += o.latency / p.tokens_per_sample * t_var + held <= rhs + (worst - rhs) * (1 - z)
        if queue_worst > 0:
            prob += o.latency / p.tokens_per_sample * t_var - slots <= 0.5 * p.batch + queue_worst * (1 - z)


def _solver(name: str, time_limit: float, gap: float) -> pulp.LpSolver:
    if name == "cbc":
        return pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit, gapRel=gap)
    return pulp.HiGHS(msg=False, timeLimit=time_limit, gapRel=gap)


@dataclass(frozen=True)
class _Result:
    train: int
    counts: tuple[int, ...]
    status: str
    optimal: bool


def _solve_once(
    p: Problem,
    train_ids: Sequence[int],
    solver: str,
    time_limit: float,
    gap: float,
    theta: float | None = None,
    theta_next: float | None = None,
) -> _Result | None:
    """One MILP over the given training strategies; None when the solver proves infeasibility.

    With `theta`, the MILP also requires T ≥ θ: a rollout pool b whose weight-sync cap W_{a,b} < θ is then
    simply closed to a trainer in pool a (y_c ≤ Ū_c·(1 − X_a)), caps in [θ, θ_next) keep the big-M rows,
    and caps ≥ θ_next cannot bind (the caller knows T < θ_next) and are dropped.
    """
    maximise = p.target is None
    prob = pulp.LpProblem("hexrl", pulp.LpMaximize if maximise else pulp.LpMinimize)
    y = [_var(prob, f"y{i}", 0, o.max_count, "Integer") for i, o in enumerate(p.rollout)]
    u = [_var(prob, f"u{i}", 0, o.max_count) for i, o in enumerate(p.rollout)]
    x = {j: _var(prob, f"x{j}", 0, 1, "Integer") for j in train_ids}
    t_var = _var(prob, "T", 0)
    cost = pulp.lpSum(p.train[j].price * x[j] for j in train_ids) + pulp.lpSum(
        o.price * yi for o, yi in zip(p.rollout, y, strict=True)
    )
    t_ub = max((p.train[j].rate for j in train_ids), default=0.0)
    c_ub = max(p.budget or 0.0, max((p.train[j].price for j in train_ids), default=0.0)) + sum(
        o.price * o.max_count for o in p.rollout
    )
    migration = 0
    if p.current_counts is not None and p.migration_weight > 0:
        dev = [_var(prob, f"d{i}", 0) for i in range(len(p.rollout))]
        for i, (yi, y0) in enumerate(zip(y, p.current_counts, strict=True)):
            prob += dev[i] >= yi - y0
            prob += dev[i] >= y0 - yi
        migration = pulp.lpSum(p.migration_weight * o.gpus * d for o, d in zip(p.rollout, dev, strict=True))
    if maximise:
        delta = 1e-6 * t_ub / max(c_ub, 1e-9)
        prob += t_var - delta * cost - migration
    else:
        prob += cost + migration * (c_ub / max(t_ub, 1e-9)) * 1e-3
        prob += t_var >= p.target
    prob += t_var <= pulp.lpSum(o.rate * ui for o, ui in zip(p.rollout, u, strict=True))
    for ui, yi in zip(u, y, strict=True):
        prob += ui <= yi
    prob += pulp.lpSum(x.values()) == 1
    slots = pulp.lpSum(o.slots * ui for o, ui in zip(p.rollout, u, strict=True))
    if p.gated:
        ts = {j: _var(prob, f"t{j}", 0) for j in train_ids}
        for j in train_ids:
            prob += ts[j] <= p.train[j].rate * x[j]
        prob += t_var == pulp.lpSum(ts.values())
        k = {j: gate_coefficient(p, p.train[j]) for j in train_ids}
        held = pulp.lpSum(k[j] * ts[j] for j in train_ids)
        prob += slots + (held if p.policy_lag > 0 else 0) <= generating_cap(p)
        rate = pulp.lpSum(o.rate * ui for o, ui in zip(p.rollout, u, strict=True))
        for j in train_ids:
            for a, b in _serial_tangents(p, p.train[j]):
                prob += ts[j] <= a * rate + b * x[j]
        _latency_rows(p, prob, y, t_var, held, slots, k, train_ids, t_ub)
    else:
        prob += slots <= p.inflight_cap
        prob += t_var <= pulp.lpSum(p.train[j].rate * x[j] for j in train_ids)
    if p.budget is not None:
        prob += cost <= p.budget
    pools = [pc.name for pc in p.pools]
    ws = _ws_lookup(p)
    lo = theta if theta is not None else -1.0
    hi = min(theta_next if theta_next is not None else t_ub, t_ub)
    if theta is not None:
        prob += t_var >= theta
        for (a, b), w in ws.items():
            if w < theta:
                xa = pulp.lpSum(x[j] for j in train_ids if p.train[j].pool == a)
                for o, yi in zip(p.rollout, y, strict=True):
                    if o.pool == b:
                        prob += yi <= o.max_count * (1 - xa)
    binding = {(a, b): w for (a, b), w in ws.items() if lo <= w < hi}
    if binding:
        v = {q: _var(prob, f"v_{k}", 0, 1, "Integer") for k, q in enumerate(pools)}
        for o, yi in zip(p.rollout, y, strict=True):
            prob += yi <= o.max_count * v[o.pool]
        for (a, b), w in binding.items():
            xa = pulp.lpSum(x[j] for j in train_ids if p.train[j].pool == a)
            # the tightest valid big-M: relaxed, the row reads T ≤ t_ub, which always holds
            prob += t_var <= w + (t_ub - w) * (2 - xa - v[b])
    for pc in p.pools:
        for size, cap in pc.capacity:
            prob += (
                pulp.lpSum(train_usage(p.train[j], size) * x[j] for j in train_ids if p.train[j].pool == pc.name)
                + pulp.lpSum(o.gpus * yi for o, yi in zip(p.rollout, y, strict=True) if o.pool == pc.name and o.item_size >= size)
                <= cap
            )
    if p.floor > 0:
        prob += pulp.lpSum(o.rate * yi for o, yi in zip(p.rollout, y, strict=True) if not o.spot) >= p.floor * t_var
    h_max = max((o.rate for o in p.rollout), default=0.0)
    prob += pulp.lpSum(o.rate * yi for o, yi in zip(p.rollout, y, strict=True)) <= p.surplus_factor * t_var + h_max
    prob.solve(_solver(solver, time_limit, gap))
    status = pulp.LpStatus[prob.status]
    has_solution = prob.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
    if not has_solution:
        return None
    chosen = max(train_ids, key=lambda j: x[j].value() or 0.0)
    counts = tuple(round(yi.value() or 0.0) for yi in y)
    optimal = prob.sol_status == pulp.LpSolutionOptimal
    return _Result(chosen, counts, status if optimal else f"{status} (stopped by the time limit; not proven optimal)", optimal)


_FASTER = (1.25, 1.5, 2.0, 3.0, 5.0)
"""With the gate model, also offer the strategies reaching these multiples of θ (and the fastest)."""


def _per_pool_min(
    frontier: dict[str, list[int]],
    rates: dict[str, list[float]],
    theta: float,
    faster: Callable[[int, float], bool] | None = None,
) -> list[int]:
    """In each pool, the strategy with the fewest GPUs whose rate reaches θ (rates ascend on the frontier).

    With the gate model a faster trainer holds the gate's batch for less time (k_s falls with t_s) and so
    can lift a gate-bound plan: unless `faster(s, θ)` says the gate rows cannot bind for s at θ, also
    offer the strategies reaching a few multiples of θ and the fastest one."""
    out: set[int] = set()
    for q, ids in frontier.items():
        k = bisect.bisect_left(rates[q], theta * (1 - 1e-12))
        if k >= len(ids):
            continue
        out.add(ids[k])
        if faster is not None and not faster(ids[k], theta):
            out.add(ids[-1])
            for m in _FASTER:
                j = bisect.bisect_left(rates[q], theta * m * (1 - 1e-12))
                if j < len(ids):
                    out.add(ids[j])
    return sorted(out)


def _gate_slack(p: Problem, s: TrainOption, theta: float) -> bool:
    """True when, with strategy s at T = θ, no gate row can bind whatever rollout is bought: the gate holds
    θ/ρ_min + θ·k_s samples (every slot at the lowest rate per slot) and every option's latency cap ≥ θ.
    Then a faster strategy cannot raise the plan at θ and the dominance argument holds as without gate."""
    if not p.rollout:
        return True
    rho_min = min(o.rate / o.slots for o in p.rollout)
    k = gate_coefficient(p, s) if p.policy_lag > 0 else 0.0
    if rho_min <= 0 or theta * (1 / rho_min + k) > generating_cap(p):
        return False
    return all(latency_cap(p, s, o) >= theta for o in p.rollout)


def _frontier(p: Problem) -> dict[str, list[int]]:
    """Per pool, strategies sorted by GPUs with strictly increasing rate (the dominance frontier)."""
    by_pool: dict[str, list[int]] = {}
    for j, s in enumerate(p.train):
        by_pool.setdefault(s.pool, []).append(j)
    out: dict[str, list[int]] = {}
    for pool, ids in by_pool.items():
        ids.sort(key=lambda j: (p.train[j].gpus, p.train[j].item_size, -p.train[j].rate))
        keep: list[int] = []
        for j in ids:
            if not keep or p.train[j].rate > p.train[keep[-1]].rate * (1 + 1e-12):
                keep.append(j)
        out[pool] = keep
    return out


def solve(
    p: Problem,
    solver: str = "highs",
    time_limit: float = 10.0,
    gap: float = 1e-4,
    direct_limit: int = 160,
) -> Solution | None:
    """The best solution of `p`, or None when none exists. See the module docstring for the method."""
    start = time.perf_counter()
    if not p.train:
        return None
    name = "CBC" if solver == "cbc" else "HiGHS"
    frontier = _frontier(p)
    slack = (lambda j, theta: _gate_slack(p, p.train[j], theta)) if p.gated else None
    n_front = sum(len(v) for v in frontier.values())
    solves = 0
    all_optimal = True
    statuses: list[str] = []

    def run(
        ids: Sequence[int], theta: float | None = None, theta_next: float | None = None
    ) -> tuple[_Result, Evaluation] | None:
        nonlocal solves, all_optimal
        solves += 1
        r = _solve_once(p, ids, solver, time_limit, gap, theta, theta_next)
        if r is None:
            return None
        all_optimal &= r.optimal
        statuses.append(r.status)
        return r, evaluate(p, r.train, r.counts)

    best: tuple[_Result, Evaluation] | None
    if p.target is not None:
        # Min-cost: the cheapest strategy per pool that reaches the target dominates the others.
        ids = _per_pool_min(frontier, {q: [p.train[j].rate for j in v] for q, v in frontier.items()}, p.target, slack)
        best = run(ids) if ids else None
    elif n_front <= direct_limit:
        best = run([j for ids in frontier.values() for j in ids])
    else:
        # The grid holds every strategy rate and every weight-sync cap, so no cap lies strictly inside
        # the final interval [θ_k, θ_{k+1}).
        top = max(p.train[j].rate for ids in frontier.values() for j in ids)
        thetas = sorted({p.train[j].rate for ids in frontier.values() for j in ids} | {w for _, _, w in p.ws_rate})
        thetas = [t for t in thetas if t <= top]
        rates = {q: [p.train[j].rate for j in ids] for q, ids in frontier.items()}
        memo: dict[int, list[int]] = {}

        def ids_at_k(k: int) -> list[int]:
            if k not in memo:
                memo[k] = _per_pool_min(frontier, rates, thetas[k], slack)
            return memo[k]

        def feasible(k: int) -> bool:
            r = run(ids_at_k(k), thetas[k], thetas[k])
            return r is not None and r[1].feasible and r[1].throughput >= thetas[k] * (1 - 1e-9)

        lo, hi = 0, len(thetas) - 1
        if not ids_at_k(0) or not feasible(0):
            best = run(ids_at_k(0)) if ids_at_k(0) else None
        else:
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if feasible(mid):
                    lo = mid
                else:
                    hi = mid - 1
            union = sorted(set(ids_at_k(lo)) | (set(ids_at_k(lo + 1)) if lo + 1 < len(thetas) else set()))
            nxt = thetas[lo + 1] if lo + 1 < len(thetas) else None
            best = run(union, thetas[lo], nxt)
    if best is None or not best[1].feasible:
        return None
    r, ev = best
    return Solution(
        train=r.train,
        counts=r.counts,
        evaluation=ev,
        status="Optimal" if all_optimal else next(s for s in statuses if "time limit" in s),
        solver=name,
        seconds=time.perf_counter() - start,
        solves=solves,
    )
