"""One PuLP model of a `Problem` over a subset of training strategies: build it, solve it, read it back.

milp.py derives the rows and decides which strategies (and which throughput floor θ) each model gets;
this module writes those rows down, one small function per family, in the order the module docstring
of milp.py lists them:

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

from hexrl.sched.milp_problem import (
    Problem,
    gate_coefficient,
    generating_cap,
    serial_tangents,
    surplus_applies,
    train_usage,
    ws_lookup,
)

__all__ = ["ModelResult", "binding_tangents", "build_model", "solve_model", "solve_once"]


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


def _var(prob: pulp.LpProblem, name: str, low: float | None = None, up: float | None = None, cat: str = "Continuous"):
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
    """The MILP of milp.py's docstring over the strategies `train_ids` (with T ≥ θ when `theta` is given)."""
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
