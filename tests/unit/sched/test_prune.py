"""Bound-and-prune over training strategies (prune.py) and the exact row reductions of formulation.py.

Each pruning rule gets a case where a naive version of it would return a worse plan, and the pruned
search is compared with the one-MILP search and with brute force on random instances.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sched_helpers import brute_force, full_problem, make_cluster, make_job

from hexrl.sched.formulation import binding_tangents, solve_once
from hexrl.sched.problem import PoolCapacity, Problem, RolloutOption, TrainOption, evaluate, serial_tangents
from hexrl.sched.prune import PruneStats, solve_pruned
from hexrl.sched.settings import PlannerSettings
from hexrl.sched.strategy_search import solve

pytestmark = pytest.mark.unit


def _two_strategies() -> Problem:
    """Budget $10. A big replica (100 tokens/s, $6) and a small one (10 tokens/s, $1).
    Strategy A: 200 tokens/s for $3 — its LP relaxation buys 7/6 big replicas: bound 116.7, but whole
    replicas reach only 1 big + 1 small = 110. Strategy B: 112 tokens/s for $1 — 1 big + 3 small = 130
    rollout, capped at 112 by training. The best bound (A) is not the best plan (B)."""
    return Problem(
        rollout=(
            RolloutOption("p", 8, 8, 100.0, 8, 6.0, False, 5),
            RolloutOption("p", 1, 1, 10.0, 1, 1.0, False, 10),
        ),
        train=(TrainOption("p", 4, 4, 200.0, 3.0), TrainOption("p", 1, 1, 112.0, 1.0)),
        pools=(PoolCapacity("p", ((1, 64), (2, 64), (4, 64), (8, 64))),),
        inflight_cap=1e6,
        budget=10.0,
        surplus_factor=1.0,
    )


def test_best_lp_bound_is_not_the_answer_and_the_search_goes_on():
    p = _two_strategies()
    naive = solve_once(p, [0], "highs", 10.0, 1e-4)  # "the strategy with the best bound wins"
    assert naive is not None
    assert evaluate(p, naive.train, naive.counts).throughput == pytest.approx(110.0)
    stats = PruneStats()
    r = solve_pruned(p, [0, 1], 10.0, 1e-4, stats)
    assert r is not None and r.optimal
    ev = evaluate(p, r.train, r.counts)
    assert r.train == 1 and ev.feasible and ev.throughput == pytest.approx(112.0)
    assert brute_force(p) == pytest.approx((112.0, ev.cost))
    assert stats.lps >= 2  # both strategies were bounded: neither could be dropped on its rate alone


def test_rate_rule_prunes_only_strategies_that_cannot_beat_the_incumbent():
    """t_s ≤ incumbent prunes s without an LP; a strategy slower than the plan's rollout but faster than
    the incumbent must still be looked at. Here the slow strategy (105) loses to B (112) and is pruned
    on its rate; a naive 'fewest GPUs that reach the rollout rate' rule would pick it."""
    base = _two_strategies()
    p = Problem(**{**base.__dict__, "train": (*base.train, TrainOption("p", 1, 1, 105.0, 0.5))})
    r = solve_pruned(p, [0, 1, 2], 10.0, 1e-4)
    assert r is not None
    assert r.train == 1 and evaluate(p, r.train, r.counts).throughput == pytest.approx(112.0)
    assert brute_force(p)[0] == pytest.approx(112.0)


def test_capacity_rows_kept_where_they_bind():
    """A capacity row is dropped only when it cannot bind; with 8 GPUs in the pool it binds (the budget
    would buy 9 small replicas next to the 4-GPU trainer)."""
    base = _two_strategies()
    p = Problem(**{**base.__dict__, "pools": (PoolCapacity("p", ((1, 8), (2, 8), (4, 8), (8, 8))),),
                   "train": (TrainOption("p", 4, 4, 200.0, 1.0),), "budget": 20.0})
    r = solve(p)
    assert r is not None and r.evaluation.feasible
    used = 4 + sum(o.gpus * y for o, y in zip(p.rollout, r.counts, strict=True))
    assert used <= 8
    assert r.evaluation.throughput == pytest.approx(brute_force(p)[0])


@pytest.mark.parametrize("eta", [0, 1, 4, 8])
@pytest.mark.parametrize("rate", [1e3, 3e4, 1e5, 1e6])
def test_dropped_tangents_never_change_min_of_rate_and_envelope(eta, rate):
    s = TrainOption("p", 8, 8, rate, 8.0)
    p = Problem(rollout=(), train=(s,), pools=(), inflight_cap=1.0, batch=1024.0, tokens_per_sample=4000.0,
                policy_lag=eta, ws_rate=(("p", "p", 5e5),))
    full = serial_tangents(p, s)
    kept = binding_tangents(full, rate)
    assert 1 <= len(kept) <= len(full)
    for r in [rate * x / 64 for x in range(0, 64 * 8)]:
        a = min(rate, min(sl * r + b for sl, b in full))
        b_ = min(rate, min(sl * r + b for sl, b in kept))
        assert b_ == pytest.approx(a, rel=1e-12, abs=1e-9)


GPUS = ["H800", "H20", "A100-80G", "L40S", "L4", "H100"]


@st.composite
def instances(draw):
    pools = []
    for k, gpu in enumerate(draw(st.lists(st.sampled_from(GPUS), min_size=1, max_size=3, unique=True))):
        gpn = draw(st.sampled_from([2, 4, 8]))
        spot = draw(st.booleans())
        pools.append((f"p{k}", gpu, gpn, draw(st.integers(1, 3)), spot, 0.05 if spot else 0.0))
    job = make_job(
        size=draw(st.sampled_from(["0.5B", "1.5B", "7B"])),
        budget=draw(st.sampled_from([10.0, 30.0, 80.0, 200.0])),
        eta=draw(st.integers(0, 6)),
        max_new=draw(st.sampled_from([1024, 4096])),
        mean_new=512,
        spot_trainer=draw(st.sampled_from(["forbidden", "allowed"])),
        floor=draw(st.sampled_from([0.0, 0.25])),
        group=draw(st.sampled_from([4, 16])),
        prompts=draw(st.sampled_from([8, 64])),
    )
    return job, make_cluster(pools, inter_pool_gbps=draw(st.sampled_from([1.5, 25.0])))


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_pruned_search_matches_one_milp(case):
    """Same optimum (within the solver's relative gap 1e-4) as the one-MILP search, on up to 96 GPUs."""
    job, cluster = case
    p = full_problem(job, cluster, PlannerSettings(compute_baselines=False))
    one = solve(p, prune=False)
    pruned = solve(p, prune=True)
    assert (one is None) == (pruned is None)
    if one is None or pruned is None:
        return
    assert pruned.evaluation.feasible
    assert pruned.evaluation.throughput >= one.evaluation.throughput * (1 - 2e-4)
    assert one.evaluation.throughput >= pruned.evaluation.throughput * (1 - 2e-4)
