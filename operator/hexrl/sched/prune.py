"""Bound-and-prune over training strategies, on one HiGHS model kept in memory (highspy, no PuLP solve).

The direct search (strategy_search.py) puts every strategy s in one MILP with binaries x_s. Its LP relaxation is weak
where it matters: it mixes strategies (x fractional), pairing a fast trainer's rate with a cheap one's
price, so HiGHS proves optimality by branching, heuristics and restarts (0.2–1.5 s on the operator
bench's 1,000-node cluster, although the first incumbent is usually already the optimum). With the
strategy fixed the relaxation is tight. So, with P_s the MILP with x_s = 1 (all other x = 0) and
obj(·) its objective (T − δ·cost − migration, maximised):

    0. A first incumbent z (a feasible plan, scored by `evaluate`, the arithmetic the MILP encodes):
       the strategies the one-MILP relaxation leans on, each "dived" — its LP optimum rounded, and while
       the rounded plan is held down by a straggler cap, the capped options forbidden and the LP
       re-solved. Only a cutoff: it never decides the answer unless no MILP beats it.
    1. Bounds: obj(P_s) ≤ T ≤ t_s, so a strategy with t_s ≤ z needs nothing more; for the others
       L_s = the optimum of P_s's LP relaxation ≥ obj(P_s). One model, warm-started dual simplex, only
       column bounds of x change between strategies (≈ 1 ms each). The best three bounds are dived too.
    2. Order by L_s, descending. For each s: if L_s ≤ z(1 + gap), stop (every later s has a bound that
       low too, so obj(P_s) ≤ L_s: nothing left can beat z by more than the gap); else solve P_s with
       the cutoff z(1 + gap) (HiGHS objective_bound; heuristics off, since the cutoff already is the
       incumbent) and, if it finds a better solution, that is the new incumbent.
    3. The answer is the incumbent: within the relative gap of max_s obj(P_s) — the guarantee of the
       single MILP, which also stops at that gap.

This is exact because max over the strategy binaries = max over s of P_s (Σ x_s = 1 picks one), the
LP relaxation is a relaxation, and a cutoff only discards solutions no better than one already held.
Ties (equal objective) keep the first found. The cutoff is applied with a relative slack of 1e-9 so
rounding in the solver never discards an equal solution it should have returned.

The PuLP model (formulation.build_model) stays the single definition of the rows; this module copies it
into highspy arrays once per solve (a few ms) instead of PuLP's per-column calls and per-solve rebuild.
CBC (the fallback solver) keeps the single-MILP path through PuLP.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pulp

from hexrl.sched.formulation import Model, ModelResult, build_model
from hexrl.sched.problem import Evaluation, Problem, evaluate, latency_cap

__all__ = ["PruneStats", "solve_pruned"]

_CUTOFF_SLACK = 1e-9
"""Relative slack on the cutoff: a strategy must beat the incumbent by more than this to be solved."""


@dataclass
class PruneStats:
    """What one bound-and-prune search did (for Solution.solves and the benchmark)."""

    lps: int = 0
    """LP relaxations solved (one per strategy)."""
    milps: int = 0
    """MILPs solved (strategies whose bound beat the incumbent)."""
    pruned: int = 0
    """Strategies never solved as a MILP because their LP bound could not beat the incumbent."""


@dataclass
class _Highs:
    """A PuLP model copied into a highspy model: the solver object and column indices by variable name."""

    h: Any
    index: dict[str, int]
    sign: float
    """+1 when PuLP minimises, −1 when it maximises (HiGHS minimises sign·objective; this module only
    maximises, so a HiGHS objective value v is the model's objective −v)."""


def _copy(m: Model, integer: bool) -> _Highs:
    """The PuLP problem of `m` as one highspy model, built with whole-array calls."""
    import highspy

    inf = highspy.kHighsInf
    prob = m.prob
    cols = prob.variables()
    index = {v.name: i for i, v in enumerate(cols)}
    sign = -1.0 if prob.sense == pulp.LpMaximize else 1.0
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    cost = np.array([sign * prob.objective.get(v, 0.0) for v in cols], dtype=float)
    low = np.array([-inf if v.lowBound is None else v.lowBound for v in cols], dtype=float)
    up = np.array([inf if v.upBound is None else v.upBound for v in cols], dtype=float)
    empty_i = np.array([], dtype=np.int32)
    h.addCols(len(cols), cost, low, up, 0, empty_i, empty_i, np.array([], dtype=float))
    if integer:
        ints = np.array([i for i, v in enumerate(cols) if v.cat == pulp.LpInteger], dtype=np.int32)
        if len(ints):
            h.changeColsIntegrality(len(ints), ints, np.array([highspy.HighsVarType.kInteger] * len(ints)))
    starts: list[int] = []
    idx: list[int] = []
    vals: list[float] = []
    rlo: list[float] = []
    rup: list[float] = []
    for c in _rows(prob):
        starts.append(len(idx))
        for v, a in c.items():
            if a:
                idx.append(index[v.name])
                vals.append(a)
        lo, hi = c.getLb(), c.getUb()
        rlo.append(-inf if lo is None else lo)
        rup.append(inf if hi is None else hi)
    h.addRows(len(rlo), np.array(rlo, dtype=float), np.array(rup, dtype=float), len(idx),
              np.array(starts, dtype=np.int32), np.array(idx, dtype=np.int32), np.array(vals, dtype=float))
    # The objective's constant (−μ·Σ|y⁰| terms are variables, so there is none today) would shift values
    # equally for every strategy; the pruning compares values of one model, so it is ignored.
    return _Highs(h, index, sign)


def _rows(prob: pulp.LpProblem) -> list[Any]:
    """The constraints in order (PuLP ≥ 3.3: prob.constraints(); older: a dict)."""
    rows = prob.constraints
    return list(rows()) if callable(rows) else list(rows.values())


class _Fixer:
    """Fixes the strategy binaries of a copied model: x_s = 1 for one s, 0 for the others."""

    def __init__(self, hm: _Highs, m: Model) -> None:
        self.hm = hm
        self.ids = list(m.train_ids)
        self.cols = np.array([hm.index[m.x[j].name] for j in self.ids], dtype=np.int32)

    def fix(self, k: int) -> None:
        lo = np.zeros(len(self.ids))
        lo[k] = 1.0
        self.hm.h.changeColsBounds(len(self.ids), self.cols, lo, lo.copy())


def _lp_bound(lp: _Highs) -> float:
    """The optimum of the (fixed) LP relaxation, −inf when it is infeasible."""
    import highspy

    lp.h.run()
    if lp.h.getModelStatus() == highspy.HighsModelStatus.kOptimal:
        return float(-lp.h.getInfo().objective_function_value)
    return float("-inf")


def objective(m: Model, ev: Evaluation, counts: Sequence[int]) -> float:
    """The model's objective T − δ·cost − μ·Σ g_c·|y_c − y⁰_c| of an evaluated candidate."""
    p = m.p
    delta = 1e-6 * m.t_ub / max(m.c_ub, 1e-9)
    moved = 0.0
    if p.current_counts is not None and p.migration_weight > 0:
        moved = p.migration_weight * sum(o.gpus * abs(y - y0) for o, y, y0 in zip(p.rollout, counts, p.current_counts,
                                                                                   strict=True))
    return ev.throughput - delta * ev.cost - moved


def _rounded(m: Model, j: int, y_lp: Sequence[float]) -> tuple[float, tuple[int, ...]] | None:
    """A feasible integer plan near P_s's LP optimum: ⌊y⌋, then +1 replicas up to ⌈y⌉ (largest fractional
    part first, in passes until none helps) while that stays feasible and raises the objective. Only an incumbent for the cutoff: its
    value comes from `evaluate`, the arithmetic the MILP encodes."""
    p = m.p
    counts = [min(o.max_count, math.floor(v + 1e-9)) for o, v in zip(p.rollout, y_lp, strict=True)]
    ev = evaluate(p, j, counts)
    best = objective(m, ev, counts) if ev.feasible else None
    order = sorted(range(len(counts)), key=lambda i: -(y_lp[i] - math.floor(y_lp[i] + 1e-9)))
    for _ in range(len(counts)):  # passes: one replica may pay off only after another (e.g. the floor)
        improved = False
        for i in order:
            if y_lp[i] - counts[i] <= 1e-9 or counts[i] >= p.rollout[i].max_count:
                continue
            counts[i] += 1
            ev = evaluate(p, j, counts)
            value = objective(m, ev, counts) if ev.feasible else None
            if value is not None and (best is None or value > best):
                best, improved = value, True
            else:
                counts[i] -= 1
        if not improved:
            break
    return None if best is None else (best, tuple(counts))


def _dive(m: Model, lp: _Highs, j: int, ycols: Sequence[int]) -> tuple[float, tuple[int, ...]] | None:
    """Round P_s's LP optimum; while the rounded plan is held down by an option's straggler cap (the LP
    used it at a fractional z_c, which the big-M row barely charges), forbid that option and every option
    whose cap is no higher, and round the re-solved LP again. The best rounded plan seen; the LP's bounds are restored afterwards."""
    import highspy

    p = m.p
    s = p.train[j]
    best: tuple[float, tuple[int, ...]] | None = None
    banned: list[int] = []
    for _ in range(_DIVE_ROUNDS):
        lp.h.run()
        if lp.h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            break
        col = lp.h.getSolution().col_value
        r = _rounded(m, j, [col[c] for c in ycols])
        if r is None:
            break
        if best is None or r[0] > best[0]:
            best = r
        counts = r[1]
        ev = evaluate(p, j, counts)
        slots = float(sum(o.slots * y for o, y in zip(p.rollout, counts, strict=True)))
        caps = [(latency_cap(p, s, o, slots), i) for i, (o, y) in enumerate(zip(p.rollout, counts, strict=True)) if y > 0]
        cap, i = min(caps, default=(float("inf"), -1))
        if i < 0 or cap > ev.throughput * (1 + 1e-9):
            break  # not held down by a straggler cap
        # every option at least as straggler-bound would hold the plan at or below this cap too
        worse = [c for c, o in enumerate(p.rollout) if c != i and c not in banned and latency_cap(p, s, o) <= cap * (1 + 1e-9)]
        for c in (i, *worse):
            banned.append(c)
            lp.h.changeColBounds(ycols[c], 0.0, 0.0)
    for i in banned:
        lp.h.changeColBounds(ycols[i], 0.0, float(p.rollout[i].max_count))
    return best


_DIVE_ROUNDS = 6
"""LP re-solves per dive (each forbids one more straggler-capped option)."""
_ROUNDED = 3
"""Strategies (best LP bounds first) whose LP optimum is rounded for a first incumbent."""


def solve_pruned(
    p: Problem, train_ids: Sequence[int], time_limit: float, gap: float, stats: PruneStats | None = None
) -> ModelResult | None:
    """max over s ∈ train_ids of P_s by bound-and-prune (module docstring); None when no P_s is feasible."""
    stats = stats if stats is not None else PruneStats()
    if p.target is not None:
        raise ValueError("bound-and-prune is for max-throughput problems (min-cost mode has one MILP)")
    m = build_model(p, train_ids)
    lp = _copy(m, integer=False)
    lp.h.setOptionValue("presolve", "off")  # warm-started dual simplex beats presolve on these tiny LPs
    fixer = _Fixer(lp, m)
    n = len(fixer.ids)
    ycols = [lp.index[v.name] for v in m.y]
    best, dived = _seed(m, lp, fixer, ycols, stats)
    bounds = _bounds(m, lp, fixer, best, gap, stats)
    order = [k for k in sorted(range(n), key=lambda k: -bounds[k]) if bounds[k] > float("-inf")]
    for k in order[:_ROUNDED]:
        # the best bounds' own roundings: often the optimum, and the cutoff for everything after
        if k in dived:
            continue
        fixer.fix(k)
        r = _dive(m, lp, fixer.ids[k], ycols)
        stats.lps += 1
        if r is not None and (best is None or r[0] > best[0]):
            best = (r[0], k, r[1])
    return _branch(m, order, bounds, best, time_limit, gap, stats)


def _seed(
    m: Model, lp: _Highs, fixer: _Fixer, ycols: Sequence[int], stats: PruneStats
) -> tuple[tuple[float, int, tuple[int, ...]] | None, set[int]]:
    """A first incumbent: the strategies the one-MILP relaxation leans on (largest x_s), each dived
    (and which strategies were)."""
    _lp_bound(lp)
    stats.lps += 1
    col = lp.h.getSolution().col_value
    xs = [col[c] for c in fixer.cols]
    best = None
    dived = sorted((k for k in range(len(xs)) if xs[k] > 1e-6), key=lambda k: -xs[k])[:_ROUNDED]
    for k in dived:
        fixer.fix(k)
        r = _dive(m, lp, fixer.ids[k], ycols)
        stats.lps += 1
        if r is not None and (best is None or r[0] > best[0]):
            best = (r[0], k, r[1])
    return best, set(dived)


def _bounds(
    m: Model, lp: _Highs, fixer: _Fixer, best: tuple[float, int, tuple[int, ...]] | None, gap: float,
    stats: PruneStats,
) -> list[float]:
    """An upper bound on obj(P_s) per strategy: t_s when that already cannot beat the incumbent
    (obj ≤ T ≤ t_s), else P_s's LP relaxation (−inf: infeasible)."""
    out = []
    for k, j in enumerate(fixer.ids):
        rate = m.p.train[j].rate
        if best is not None and rate <= _cutoff(best[0], gap):
            out.append(rate)
            continue
        fixer.fix(k)
        out.append(_lp_bound(lp))
        stats.lps += 1
    return out


def _branch(
    m: Model,
    order: Sequence[int],
    bounds: Sequence[float],
    best: tuple[float, int, tuple[int, ...]] | None,
    time_limit: float,
    gap: float,
    stats: PruneStats,
) -> ModelResult | None:
    """Solve P_s in the order of `order` (best bound first) until no bound beats the incumbent."""
    import highspy

    hm = _copy(m, integer=True)
    h = hm.h
    h.setOptionValue("mip_rel_gap", gap)
    h.setOptionValue("time_limit", time_limit)
    if best is not None:
        _no_heuristics(h)
    fixer = _Fixer(hm, m)
    optimal = True
    status = "Optimal"
    for rank, k in enumerate(order):
        if best is not None and bounds[k] <= _cutoff(best[0], gap):
            stats.pruned += len(order) - rank
            break
        fixer.fix(k)
        if best is not None:
            # HiGHS minimises −objective; only solutions better than the incumbent by more than the gap
            h.setOptionValue("objective_bound", -_cutoff(best[0], gap))
        h.run()
        stats.milps += 1
        info = h.getInfo()
        if h.getModelStatus() == highspy.HighsModelStatus.kTimeLimit:
            optimal = False
            status = "Not Solved (stopped by the time limit; not proven optimal)"
        if info.primal_solution_status != _FEASIBLE:  # no (better) solution
            continue
        value = -info.objective_function_value
        if best is None or value > best[0]:
            col = h.getSolution().col_value
            best = (value, k, tuple(round(col[hm.index[v.name]]) for v in m.y))
    if best is None:
        return None
    _, k, counts = best
    return ModelResult(fixer.ids[k], counts, status, optimal)


def _no_heuristics(h: Any) -> None:
    """Primal heuristics off: with an incumbent as the cutoff, HiGHS's sub-MIPs and restarts only search
    for solutions the cutoff already rules out (4× less time on the operator bench's problems)."""
    h.setOptionValue("mip_heuristic_effort", 0.0)
    for name in ("feasibility_jump", "rins", "rens", "root_reduced_cost"):
        h.setOptionValue(f"mip_heuristic_run_{name}", False)


_FEASIBLE = 2
"""highspy's kSolutionStatusFeasible."""


def _cutoff(z: float, gap: float) -> float:
    """The objective a strategy must beat to matter: the incumbent z plus the solver's relative gap (the
    single MILP stops at that gap too, so the guarantee is unchanged)."""
    return z + max(gap, _CUTOFF_SLACK) * max(1.0, abs(z))
