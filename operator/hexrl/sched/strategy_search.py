"""The search driver: which training strategies go into which MILP, and the best `Solution` of a `Problem`.

searchspace.py reduces a job and a cluster to a `Problem` (problem.py) over abstract options; `solve`
finds its optimum exactly with PuLP (HiGHS in-process via highspy by default, CBC as the fallback). The
rows of one MILP and the mathematics behind them are in formulation.py; this module decides which
strategies (and which throughput floor θ) each MILP gets, in one of four ways:

- min-cost mode (a target): one MILP over the strategies that can reach the target (`_min_cost`);
- bound-and-prune (the default with HiGHS in max-throughput mode, up to `prune_limit` strategies): the
  one-MILP form's LP relaxation mixes strategies and is weak, while with the strategy fixed it is tight;
  so prune.py bounds every strategy by its own LP relaxation and solves, best bound first, only the
  strategies whose bound beats the incumbent — exact (see its docstring), and 3–10× faster at scale;
- one MILP over every frontier strategy (up to `direct_limit`);
- the θ bisection below, beyond that.

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

from hexrl.sched.formulation import ModelResult, solve_once
from hexrl.sched.problem import (
    Evaluation,
    Problem,
    Solution,
    TrainOption,
    evaluate,
    gate_coefficient,
    generating_cap,
    latency_cap,
    serial_tangents,
)
from hexrl.sched.prune import PruneStats, solve_pruned

__all__ = ["Candidate", "solve"]


_FASTER = (1.25, 1.5, 2.0, 3.0, 5.0)
"""With the gate model, also offer the strategies reaching these multiples of θ (and the fastest)."""
_FASTER_ALL = 16
"""...or every faster strategy of the pool when it has at most this many: under a budget a serial (η = 0)
plan can peak at a middle strategy, between the multiples (a one-node 0.5B job: DP7 beat the DP6 and DP8
offered by 2.4 %)."""


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
            if len(ids) - k <= _FASTER_ALL:
                out.update(ids[k:])
                continue
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
    if serial_tangents(p, s):
        # The per-batch bound T ≤ c·R/(1 + k_s·R/B) binds at every R (it is below R for k_s > 0), and a
        # faster s' (smaller k_s) reaches θ with less rollout: never slack (on a one-node η = 1 job DP4
        # beats the cheapest DP2 that reaches θ).
        return False
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


Candidate = tuple[ModelResult, Evaluation]
"""A solved model and its evaluation."""


class _Search:
    """The MILPs of one `solve` call: runs them and keeps count of solves and solver statuses."""

    def __init__(self, p: Problem, solver: str, time_limit: float, gap: float) -> None:
        self.p, self.solver, self.time_limit, self.gap = p, solver, time_limit, gap
        self.solves = 0
        self.lps = 0
        self.all_optimal = True
        self.statuses: list[str] = []

    def run(self, ids: Sequence[int], theta: float | None = None, theta_next: float | None = None) -> Candidate | None:
        """One MILP over strategies `ids` (T ≥ θ with θ), evaluated; None when it has no solution."""
        self.solves += 1
        r = solve_once(self.p, ids, self.solver, self.time_limit, self.gap, theta, theta_next)
        if r is None:
            return None
        self.all_optimal &= r.optimal
        self.statuses.append(r.status)
        return r, evaluate(self.p, r.train, r.counts)

    def run_pruned(self, ids: Sequence[int]) -> Candidate | None:
        """max over the strategies `ids` by bound-and-prune (prune.py), evaluated."""
        stats = PruneStats()
        r = solve_pruned(self.p, ids, self.time_limit, self.gap, stats)
        self.solves += stats.milps
        self.lps += stats.lps
        if r is None:
            return None
        self.all_optimal &= r.optimal
        self.statuses.append(r.status)
        return r, evaluate(self.p, r.train, r.counts)

    @property
    def status(self) -> str:
        return "Optimal" if self.all_optimal else next(s for s in self.statuses if "time limit" in s)


def _pool_rates(p: Problem, frontier: dict[str, list[int]]) -> dict[str, list[float]]:
    return {q: [p.train[j].rate for j in ids] for q, ids in frontier.items()}


def _min_cost(
    search: _Search, frontier: dict[str, list[int]], slack: Callable[[int, float], bool] | None, limit: int
) -> Candidate | None:
    """Min-cost mode: without the gate, the cheapest strategy per pool that reaches the target dominates
    the others. With it, a faster, dearer trainer can need enough less rollout to be cheaper overall
    (any of them, not only the multiples `_per_pool_min` offers: one 2-node job needed the 5-GPU trainer
    of a pool, between the 4 and 7 offered), so every frontier strategy reaching the target goes into
    the MILP when there are at most `limit` of them (t_s < target cannot reach it: T ≤ t_s)."""
    p = search.p
    assert p.target is not None
    reach = [j for ids in frontier.values() for j in ids if p.train[j].rate >= p.target * (1 - 1e-12)]
    if slack is not None and len(reach) <= limit:
        return search.run(sorted(reach)) if reach else None
    ids = _per_pool_min(frontier, _pool_rates(p, frontier), p.target, slack)
    return search.run(ids) if ids else None


def _bisect_theta(
    search: _Search, frontier: dict[str, list[int]], slack: Callable[[int, float], bool] | None
) -> Candidate | None:
    """Max-throughput with many strategies: bisection over the levels θ ∈ Θ, then one MILP on [θ_k, θ_{k+1}).

    The grid holds every strategy rate and every weight-sync cap, so no cap lies strictly inside the final
    interval (module docstring, "Training choice at scale")."""
    p = search.p
    top = max(p.train[j].rate for ids in frontier.values() for j in ids)
    thetas = sorted({p.train[j].rate for ids in frontier.values() for j in ids} | {w for _, _, w in p.ws_rate})
    thetas = [t for t in thetas if t <= top]
    rates = _pool_rates(p, frontier)
    memo: dict[int, list[int]] = {}

    def ids_at_k(k: int) -> list[int]:
        if k not in memo:
            memo[k] = _per_pool_min(frontier, rates, thetas[k], slack)
        return memo[k]

    def feasible(k: int) -> bool:
        r = search.run(ids_at_k(k), thetas[k], thetas[k])
        return r is not None and r[1].feasible and r[1].throughput >= thetas[k] * (1 - 1e-9)

    if not ids_at_k(0) or not feasible(0):
        return search.run(ids_at_k(0)) if ids_at_k(0) else None
    lo, hi = 0, len(thetas) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if feasible(mid):
            lo = mid
        else:
            hi = mid - 1
    union = sorted(set(ids_at_k(lo)) | (set(ids_at_k(lo + 1)) if lo + 1 < len(thetas) else set()))
    nxt = thetas[lo + 1] if lo + 1 < len(thetas) else None
    return search.run(union, thetas[lo], nxt)


def solve(
    p: Problem,
    solver: str = "highs",
    time_limit: float = 10.0,
    gap: float = 1e-4,
    direct_limit: int = 160,
    prune: bool = True,
    prune_limit: int = 1200,
) -> Solution | None:
    """The best solution of `p`, or None when none exists. See the module docstring for the method.

    `prune` (HiGHS, max-throughput only): up to `prune_limit` frontier strategies are searched by
    bound-and-prune (prune.py) instead of one MILP (up to `direct_limit`) or the θ bisection;
    False keeps those two (the benchmark compares them)."""
    start = time.perf_counter()
    if not p.train:
        return None
    search = _Search(p, solver, time_limit, gap)
    frontier = _frontier(p)
    slack = (lambda j, theta: _gate_slack(p, p.train[j], theta)) if p.gated else None
    best: Candidate | None
    if p.target is not None:
        best = _min_cost(search, frontier, slack, direct_limit)
    elif prune and solver != "cbc" and sum(len(v) for v in frontier.values()) <= prune_limit:
        best = search.run_pruned([j for ids in frontier.values() for j in ids])
    elif sum(len(v) for v in frontier.values()) <= direct_limit:
        best = search.run([j for ids in frontier.values() for j in ids])
    else:
        best = _bisect_theta(search, frontier, slack)
    if best is None or not best[1].feasible:
        return None
    r, ev = best
    return Solution(
        train=r.train,
        counts=r.counts,
        evaluation=ev,
        status=search.status,
        solver="CBC" if solver == "cbc" else "HiGHS",
        seconds=time.perf_counter() - start,
        solves=search.solves,
    )
