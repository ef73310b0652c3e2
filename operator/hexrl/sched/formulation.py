"""The planner's mixed-integer program: its mathematics, and the PuLP rows that encode it, family by family.

One model chooses replica counts and the training strategy jointly for a `Problem` (problem.py) over a
subset of its training strategies; strategy_search.py decides which subsets (and which throughput floor θ)
to solve, and prune.py copies the same model into highspy for bound-and-prune. `evaluate` (problem.py)
scores any candidate with the same arithmetic, so the solver, the brute-force tests and the simulator
agree.

Sets and data
    c ∈ C   rollout options (pool, TP×PP config): rate r_c (tokens/s; the cost model's wave with its
            weight-update pause, spot-discounted by up time and re-prefill share), slots s_c
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

Row families, in the order `build_model` writes them (one small function each):

    variables      y_c, u_c, x_s, T (and d_c for a re-plan's migration penalty)
    objective      max T − δ·cost − μ·Σ g_c·|y_c − y⁰_c|, or min cost (+ a tiny migration term), T ≥ target
    rollout rows   R = Σ r_c·u_c, S = Σ s_c·u_c, T ≤ R, u_c ≤ y_c, Σ_s x_s = 1
    gate rows      T = Σ T_s, the generating cap, the per-batch tangents and the straggler rows (batch > 0),
                   else the plain in-flight cap and T ≤ Σ t_s·x_s
    weight sync    T ≥ θ with pools closed below θ, big-M rows for caps in [θ, θ_next)
    capacity       the exact bin-packing rows per pool and item size, budget, floor, surplus

The order of variables and rows is part of the behaviour (HiGHS and CBC break ties and time limits by
it), so it is kept exactly as the rows are listed above.

Sparsity (why R, S and H are variables). The busy rollout rate R = Σ_c r_c·u_c, the busy slots
S = Σ_c s_c·u_c and the gate's trainer share H = Σ_s k_s·T_s appear in many rows: R in every per-batch
tangent (|S|·9 rows), H in every straggler row. Written out, each of those rows carries |C| or |S|
coefficients (40,000 nonzeros for 117 strategies and 32 options); as variables defined by one equality
each, every such row has three. The feasible set, projected on the original variables, is the same.
Rows that can never bind are left out, which is exact too: a tangent of g_s whose whole active piece of
the envelope lies at or above t_s (T_s ≤ t_s·x_s is tighter there), and a capacity row whose left side
cannot exceed K even with every y_c at Ū_c and the pool's largest trainer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulp

from hexrl.sched.problem import (
    Problem,
    gate_coefficient,
    generating_cap,
    serial_tangents,
    surplus_applies,
    train_usage,
    ws_lookup,
)

__all__ = ["Model", "ModelResult", "binding_tangents", "build_model", "solve_model", "solve_once"]


@dataclass(frozen=True)
class ModelResult:
    """What one solved model says: the chosen strategy, the replica counts, and how sure the solver is."""

    train: int
    counts: tuple[int, ...]
    status: str
    optimal: bool


@dataclass
class Model:
    """A PuLP problem under construction, with handles on the variables the row builders share."""

    p: Problem
    train_ids: Sequence[int]
    prob: pulp.LpProblem
    y: list[Any]
    """y_c: replicas of rollout option c (integer)."""
    u: list[Any]
    """u_c ≤ y_c: replicas the gate keeps busy."""
    x: dict[int, Any]
    """x_s: strategy s is the trainer (binary)."""
    t: Any
    """T: end-to-end tokens/s."""
    cost: Any
    """$/h of the plan (an expression)."""
    t_ub: float
    """The fastest strategy's rate: an upper bound on T and the big-M of the weight-sync rows."""
    c_ub: float
    """An upper bound on the cost (scales the objective's tie-break)."""
    rate: Any = None
    """R = Σ_c r_c·u_c: the busy rollout rate (a variable, see the module docstring's "Sparsity")."""
    slots: Any = None
    """S = Σ_c s_c·u_c: the busy slots (a variable)."""

    def rollout_rate(self, counts: Sequence[Any]) -> Any:
        """Σ_c r_c·counts_c."""
        return pulp.lpSum(o.rate * n for o, n in zip(self.p.rollout, counts, strict=True))

    def trainer_in(self, pool: str) -> Any:
        """X_a = Σ_{s∈a} x_s: the trainer sits in pool a."""
        return pulp.lpSum(self.x[j] for j in self.train_ids if self.p.train[j].pool == pool)


def _var(prob: pulp.LpProblem, name: str, low: float | None = None, up: float | None = None, cat: str = "Continuous") -> pulp.LpVariable:
    """A variable attached to `prob` (PuLP ≥ 3.3 prefers prob.add_variable; older versions lack it)."""
    if hasattr(prob, "add_variable"):
        return prob.add_variable(name, low, up, cat=cat)
    return pulp.LpVariable(name, low, up, cat=cat)


def _variables(p: Problem, train_ids: Sequence[int]) -> Model:
    prob = pulp.LpProblem("hexrl", pulp.LpMaximize if p.target is None else pulp.LpMinimize)
    y = [_var(prob, f"y{i}", 0, o.max_count, "Integer") for i, o in enumerate(p.rollout)]
    u = [_var(prob, f"u{i}", 0, o.max_count) for i, o in enumerate(p.rollout)]
    x = {j: _var(prob, f"x{j}", 0, 1, "Integer") for j in train_ids}
    t = _var(prob, "T", 0)
    cost = pulp.lpSum(p.train[j].price * x[j] for j in train_ids) + pulp.lpSum(
        o.price * yi for o, yi in zip(p.rollout, y, strict=True)
    )
    t_ub = max((p.train[j].rate for j in train_ids), default=0.0)
    c_ub = max(p.budget or 0.0, max((p.train[j].price for j in train_ids), default=0.0)) + sum(
        o.price * o.max_count for o in p.rollout
    )
    return Model(p, train_ids, prob, y, u, x, t, cost, t_ub, c_ub)


def _migration(m: Model) -> Any:
    """μ·Σ_c g_c·|y_c − y⁰_c| with |·| as d_c ≥ ±(y_c − y⁰_c) (0 outside a re-plan)."""
    p = m.p
    if p.current_counts is None or p.migration_weight <= 0:
        return 0
    dev = [_var(m.prob, f"d{i}", 0) for i in range(len(p.rollout))]
    for i, (yi, y0) in enumerate(zip(m.y, p.current_counts, strict=True)):
        m.prob += dev[i] >= yi - y0
        m.prob += dev[i] >= y0 - yi
    return pulp.lpSum(p.migration_weight * o.gpus * d for o, d in zip(p.rollout, dev, strict=True))


def _objective(m: Model) -> None:
    """Max T − δ·cost − migration (δ: a tie-break among equal throughputs), or min cost with T ≥ target."""
    migration = _migration(m)
    if m.p.target is None:
        delta = 1e-6 * m.t_ub / max(m.c_ub, 1e-9)
        m.prob += m.t - delta * m.cost - migration
    else:
        m.prob += m.cost + migration * (m.c_ub / max(m.t_ub, 1e-9)) * 1e-3
        m.prob += m.t >= m.p.target


def _rollout_rows(m: Model) -> None:
    m.rate = _var(m.prob, "R", 0)
    m.slots = _var(m.prob, "S", 0)
    m.prob += m.rate == m.rollout_rate(m.u)
    m.prob += m.slots == pulp.lpSum(o.slots * ui for o, ui in zip(m.p.rollout, m.u, strict=True))
    m.prob += m.t <= m.rate
    for ui, yi in zip(m.u, m.y, strict=True):
        m.prob += ui <= yi
    m.prob += pulp.lpSum(m.x.values()) == 1


def _gate_rows(m: Model, slots: Any) -> None:
    """The staleness gate (batch > 0): T = Σ_s T_s with T_s ≤ t_s·x_s; Σ s·u + Σ k_s·T_s ≤ generating cap
    (η ≥ 1; at η = 0 Σ s·u ≤ B); the per-batch tangents T_s ≤ a·R + b·x_s; the straggler rows."""
    p, prob = m.p, m.prob
    ts = {j: _var(prob, f"t{j}", 0) for j in m.train_ids}
    for j in m.train_ids:
        prob += ts[j] <= p.train[j].rate * m.x[j]
    prob += m.t == pulp.lpSum(ts.values())
    k = {j: gate_coefficient(p, p.train[j]) for j in m.train_ids}
    held = _var(prob, "H", 0)
    prob += held == pulp.lpSum(k[j] * ts[j] for j in m.train_ids)
    prob += slots + (held if p.policy_lag > 0 else 0) <= generating_cap(p)
    for j in m.train_ids:
        for a, b in binding_tangents(serial_tangents(p, p.train[j]), p.train[j].rate):
            prob += ts[j] <= a * m.rate + b * m.x[j]
    _latency_rows(m, held, slots, k)


def binding_tangents(tangents: Sequence[tuple[float, float]], cap: float) -> list[tuple[float, float]]:
    """The tangents (slope, intercept) that can bind below `cap` (= t_s, since T_s ≤ t_s anyway).

    Tangents of a concave curve come with falling slopes; the envelope min_j(a_j·R + b_j) follows tangent
    j on [R_{j−1,j}, R_{j,j+1}] (the crossings with its neighbours), where it rises from its value at
    R_{j−1,j}. So when that value is ≥ cap, tangent j never cuts below cap and its row is redundant.
    The envelope is unchanged wherever it is below cap, so min(t_s, envelope) is unchanged everywhere."""
    out = []
    for i, (a, b) in enumerate(tangents):
        if i == 0:
            out.append((a, b))  # its piece starts at R = 0, where it may be below cap
            continue
        pa, pb = tangents[i - 1]
        if pa - a <= 0:
            out.append((a, b))
            continue
        r = (b - pb) / (pa - a)
        if a * r + b < cap * (1 - 1e-9):
            out.append((a, b))
    return out


def _latency_rows(m: Model, held: Any, slots: Any, k: dict[int, float]) -> None:
    """ℓ_c·T/τ + Σ_s k_s·T_s ≤ (η+1)·B whenever option c is used (and, η ≥ 1, ℓ_c·T/τ − Σ s·u ≤ ½·B: the
    groups the gate admits beyond the busy slots queue first); rows that can never bind are left out."""
    p, prob = m.p, m.prob
    rhs = (p.policy_lag + 1) * p.batch
    # Σ_s k_s·T_s ≤ max_s k_s·t_s (T_s ≤ t_s), and T ≤ t_ub.
    held_ub = max((k[j] * p.train[j].rate for j in m.train_ids), default=0.0)
    for i, (o, yi) in enumerate(zip(p.rollout, m.y, strict=True)):
        if o.latency <= 0:
            continue
        worst = o.latency / p.tokens_per_sample * m.t_ub + held_ub
        queue_worst = o.latency / p.tokens_per_sample * m.t_ub - 0.5 * p.batch if p.policy_lag > 0 else 0.0
        if worst <= rhs * (1 + 1e-9) and queue_worst <= 0:
            continue
        z = _var(prob, f"z{i}", 0, 1, "Integer")
        prob += yi <= o.max_count * z
        if worst > rhs * (1 + 1e-9):
            prob += o.latency / p.tokens_per_sample * m.t + held <= rhs + (worst - rhs) * (1 - z)
        if queue_worst > 0:
            prob += o.latency / p.tokens_per_sample * m.t - slots <= 0.5 * p.batch + queue_worst * (1 - z)


def _ungated_rows(m: Model, slots: Any) -> None:
    """Without the gate model: Σ s·u ≤ Λ and T ≤ the chosen strategy's rate."""
    m.prob += slots <= m.p.inflight_cap
    m.prob += m.t <= pulp.lpSum(m.p.train[j].rate * m.x[j] for j in m.train_ids)


def _weight_sync_rows(m: Model, theta: float | None, theta_next: float | None) -> None:
    """T ≤ W_{a,b} when the trainer is in a and rollout uses b, for the caps that can bind in [θ, θ_next).

    With θ (T ≥ θ is required): a pool b with W_{a,b} < θ is closed to a trainer in a (y_c ≤ Ū_c·(1 − X_a));
    caps ≥ θ_next cannot bind (the caller knows T < θ_next) and are dropped.
    """
    p, prob = m.p, m.prob
    ws = ws_lookup(p)
    lo = theta if theta is not None else -1.0
    hi = min(theta_next if theta_next is not None else m.t_ub, m.t_ub)
    if theta is not None:
        prob += m.t >= theta
        for (a, b), w in ws.items():
            if w < theta:
                xa = m.trainer_in(a)
                for o, yi in zip(p.rollout, m.y, strict=True):
                    if o.pool == b:
                        prob += yi <= o.max_count * (1 - xa)
    binding = {(a, b): w for (a, b), w in ws.items() if lo <= w < hi}
    if not binding:
        return
    v = {q: _var(prob, f"v_{k}", 0, 1, "Integer") for k, q in enumerate(pc.name for pc in p.pools)}
    for o, yi in zip(p.rollout, m.y, strict=True):
        prob += yi <= o.max_count * v[o.pool]
    for (a, b), w in binding.items():
        # the tightest valid big-M: relaxed, the row reads T ≤ t_ub, which always holds
        prob += m.t <= w + (m.t_ub - w) * (2 - m.trainer_in(a) - v[b])


def _capacity_rows(m: Model) -> None:
    """Σ_{s∈q} κ_s(σ)·x_s + Σ_{c∈q, z_c ≥ σ} g_c·y_c ≤ K_{q,σ} for every pool q and size σ of its chain."""
    p = m.p
    for pc in p.pools:
        for size, cap in pc.capacity:
            train = [(train_usage(p.train[j], size), m.x[j]) for j in m.train_ids if p.train[j].pool == pc.name]
            roll = [(o.gpus, o, yi) for o, yi in zip(p.rollout, m.y, strict=True)
                    if o.pool == pc.name and o.item_size >= size]
            most = max((g for g, _ in train), default=0) + sum(g * o.max_count for g, o, _ in roll)
            if most <= cap:
                continue  # cannot bind (Σ_s x_s = 1, y_c ≤ Ū_c)
            m.prob += pulp.lpSum(g * x for g, x in train) + pulp.lpSum(g * yi for g, _, yi in roll) <= cap


def _floor_and_surplus_rows(m: Model) -> None:
    """Σ_{on-demand} r·y ≥ φ·T, and Σ r·y ≤ surplus·T + max r (no rollout the trainer cannot absorb)."""
    p = m.p
    if p.floor > 0:
        m.prob += pulp.lpSum(o.rate * yi for o, yi in zip(p.rollout, m.y, strict=True) if not o.spot) >= p.floor * m.t
    if surplus_applies(p):
        h_max = max((o.rate for o in p.rollout), default=0.0)
        m.prob += m.rollout_rate(m.y) <= p.surplus_factor * m.t + h_max


def build_model(
    p: Problem, train_ids: Sequence[int], theta: float | None = None, theta_next: float | None = None
) -> Model:
    """The MILP of the module docstring over the strategies `train_ids` (with T ≥ θ when `theta` is given)."""
    m = _variables(p, train_ids)
    _objective(m)
    _rollout_rows(m)
    slots = m.slots
    if p.gated:
        _gate_rows(m, slots)
    else:
        _ungated_rows(m, slots)
    if p.budget is not None:
        m.prob += m.cost <= p.budget
    _weight_sync_rows(m, theta, theta_next)
    _capacity_rows(m)
    _floor_and_surplus_rows(m)
    return m


def _solver(name: str, time_limit: float, gap: float) -> pulp.LpSolver:
    if name == "cbc":
        return pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit, gapRel=gap)
    return pulp.HiGHS(msg=False, timeLimit=time_limit, gapRel=gap)


def solve_model(m: Model, solver: str, time_limit: float, gap: float) -> ModelResult | None:
    """Solve a built model; None when the solver finds no solution (proved infeasible, or none in time)."""
    m.prob.solve(_solver(solver, time_limit, gap))
    status = pulp.LpStatus[m.prob.status]
    if m.prob.sol_status not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
        return None
    chosen = max(m.train_ids, key=lambda j: m.x[j].value() or 0.0)
    counts = tuple(round(yi.value() or 0.0) for yi in m.y)
    optimal = m.prob.sol_status == pulp.LpSolutionOptimal
    return ModelResult(chosen, counts, status if optimal else f"{status} (stopped by the time limit; not proven optimal)",
                       optimal)


def solve_once(
    p: Problem,
    train_ids: Sequence[int],
    solver: str,
    time_limit: float,
    gap: float,
    theta: float | None = None,
    theta_next: float | None = None,
) -> ModelResult | None:
    """Build and solve one MILP over the given training strategies (see `build_model`, `solve_model`)."""
    return solve_model(build_model(p, train_ids, theta, theta_next), solver, time_limit, gap)
