"""The planner against brute-force enumeration on random small instances (same cost model)."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sched_helpers import brute_force, full_problem, make_cluster, make_job

from hexrl.sched import Infeasible, Plan, plan
from hexrl.sched.settings import PlannerSettings

pytestmark = pytest.mark.unit

GPUS = ["H800", "H20", "A100-80G", "A100-40G", "L40S", "L4", "RTX4090", "H100"]
STATS = {"n": 0, "feasible": 0, "worst": 1.0, "worst_bisect": 1.0, "seconds": 0.0}


@st.composite
def instances(draw):
    n_pools = draw(st.integers(1, 3))
    types = draw(st.lists(st.sampled_from(GPUS), min_size=n_pools, max_size=n_pools, unique=True))
    pools, total = [], 0
    for k, gpu in enumerate(types):
        gpn = draw(st.sampled_from([1, 2, 4, 8]))
        nodes = draw(st.integers(1, max(1, min(2, 8 // gpn))))
        if total + gpn * nodes > 16:
            break
        total += gpn * nodes
        spot = draw(st.booleans())
        pools.append((f"p{k}", gpu, gpn, nodes, spot, draw(st.sampled_from([0.0, 0.05, 0.5])) if spot else 0.0))
    size = draw(st.sampled_from(["0.5B", "1.5B", "7B"]))
    mode = draw(st.sampled_from(["budget", "budget", "target"]))
    job = make_job(
        size=size,
        budget=draw(st.sampled_from([5.0, 15.0, 40.0, 150.0])) if mode == "budget" else None,
        target=draw(st.sampled_from([2000.0, 10000.0, 40000.0])) if mode == "target" else None,
        eta=draw(st.integers(0, 8)),
        prompt=draw(st.sampled_from([256, 1024])),
        max_new=(mx := draw(st.sampled_from([1024, 4096]))),
        mean_new=draw(st.sampled_from([mx // 4, mx // 2])),
        spot_trainer=draw(st.sampled_from(["forbidden", "allowed"])),
        floor=draw(st.sampled_from([0.0, 0.25, 0.5])),
        group=draw(st.sampled_from([4, 16])),
        prompts=draw(st.sampled_from([8, 64])),
    )
    return job, make_cluster(pools, inter_pool_gbps=draw(st.sampled_from([1.5, 25.0])))


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_planner_matches_brute_force(case):
    job, cluster = case
    settings_ = PlannerSettings(compute_baselines=False)
    t0 = time.perf_counter()
    result = plan(job, cluster, settings_)
    STATS["seconds"] += time.perf_counter() - t0
    best = brute_force(full_problem(job, cluster, settings_))
    STATS["n"] += 1
    if best is None:
        assert isinstance(result, Infeasible), f"planner found {result} where brute force found nothing"
        return
    assert isinstance(result, Plan), f"planner says infeasible ({result.message}) but brute force found {best}"
    STATS["feasible"] += 1
    # The bisection search used at scale must agree too: force it on the same instance.
    bisect_ = plan(job, cluster, PlannerSettings(compute_baselines=False, direct_strategy_limit=0, prune_strategy_limit=0))
    assert isinstance(bisect_, Plan), bisect_
    if job.budget.target_tokens_per_second is None:
        ratio = result.tokens_per_second / best[0]
        ratio_b = bisect_.tokens_per_second / best[0]
        STATS["worst"] = min(STATS["worst"], ratio)
        STATS["worst_bisect"] = min(STATS["worst_bisect"], ratio_b)
        assert ratio >= 0.99, f"planner {result.tokens_per_second:.1f} < 99% of optimum {best[0]:.1f}"
        assert ratio_b >= 0.99, f"bisection {bisect_.tokens_per_second:.1f} < 99% of optimum {best[0]:.1f}"
    else:
        assert result.tokens_per_second >= job.budget.target_tokens_per_second * (1 - 1e-6)
        assert result.cost_per_hour <= best[1] * 1.01 + 1e-6, f"planner ${result.cost_per_hour} vs optimum ${best[1]}"


def test_zz_report_agreement():
    """Prints the agreement numbers of the property test above (runs after it in file order)."""
    if STATS["n"]:
        print(
            f"\nbrute force: {STATS['n']} instances, {STATS['feasible']} feasible, worst throughput ratio "
            f"{STATS['worst']:.4f} (bisection search {STATS['worst_bisect']:.4f}), planner mean {STATS['seconds'] / STATS['n'] * 1e3:.1f} ms"
        )
        assert STATS["n"] >= 200


@pytest.mark.parametrize(("size", "budget", "second"), [("1.5B", 60.0, "H20"), ("7B", 90.0, "H20")])
def test_planner_matches_brute_force_at_32_gpus(size, budget, second):
    """Two pools of 2×8 GPUs: the largest instances the enumeration can afford in a unit test."""
    cluster = make_cluster([("a", "H800", 8, 2, False), ("b", second, 8, 2, True)])
    job = make_job(size=size, budget=budget, prompts=16, max_new=4096, mean_new=1024)
    best = brute_force(full_problem(job, cluster))
    assert best is not None
    # bound-and-prune, the one direct MILP, and the bisection search
    for prune, limit in ((True, 160), (False, 160), (False, 0)):
        settings_ = PlannerSettings(compute_baselines=False, direct_strategy_limit=limit, prune_strategies=prune)
        p = plan(job, cluster, settings_)
        assert isinstance(p, Plan)
        assert p.tokens_per_second >= 0.99 * best[0], (prune, limit, p.tokens_per_second, best)
