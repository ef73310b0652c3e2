"""The operator's planner paths: exact reuse of MILP optima across shrinking capacity (solvecache.py),
`replan(trainer_may_move=False)` keeping a trainer that survived a node loss, and `baselines()` alone."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from sched_helpers import make_cluster, make_job

from hexrl.api.models import RLJobSpec
from hexrl.sched import Plan, parse_inventory, plan, replan
from hexrl.sched.planner import baselines
from hexrl.sched.settings import PlannerSettings
from hexrl.sched.solvecache import SolutionCache

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
FAST = PlannerSettings(compute_baselines=False)
BIG = make_cluster([("h800", "H800", 8, 12, False), ("h20", "H20", 8, 12, True), ("l40s", "L40S", 8, 8, True)])


def _holding(cluster, used: dict[str, int]):
    """The cluster as another job sees it after these GPUs per node were taken."""
    return replace(cluster, nodes=tuple(replace(n, gpus_used_by_others=n.gpus_used_by_others + used.get(n.name, 0))
                                        for n in cluster.nodes))


def _take(used: dict[str, int], p: Plan) -> dict[str, int]:
    out = dict(used)
    for node, g in p.gpus_per_node().items():
        out[node] = out.get(node, 0) + g
    return out


def test_a_sweep_of_jobs_reuses_optima_and_gets_the_same_plans_as_fresh_solves():
    cache = SolutionCache()
    budgets = [60, 90, 60, 90, 60, 60]
    used: dict[str, int] = {}
    for b in budgets:
        job = make_job(size="1.5B", budget=b)
        seen = _holding(BIG, used)
        cached = plan(job, seen, FAST, cache)
        fresh = plan(job, seen, FAST)
        assert isinstance(cached, Plan) and isinstance(fresh, Plan)
        assert cached.tokens_per_second == pytest.approx(fresh.tokens_per_second, rel=1e-6)
        assert cached.cost_per_hour == pytest.approx(fresh.cost_per_hour, rel=1e-6)
        # the reused plan is placed on what is free now, never on another job's GPUs
        free = {n.name: n.gpus_free for n in seen.nodes}
        assert all(g <= free[n] for n, g in cached.gpus_per_node().items())
        used = _take(used, cached)
    assert cache.stats.misses == 2  # one solve per distinct budget, the rest reused
    assert cache.stats.hits == len(budgets) - 2


def test_more_capacity_than_stored_is_solved_afresh():
    cache = SolutionCache()
    job = make_job(size="1.5B", budget=90)
    small = _holding(BIG, {n.name: 8 for n in BIG.nodes if n.pool == "h20" and n.name[-1] in "0123456"})
    p_small = plan(job, small, FAST, cache)
    assert cache.stats.misses == 1
    p_big = plan(job, BIG, FAST, cache)  # more free H20s: the stored optimum may no longer be optimal
    assert cache.stats.misses == 2 and cache.stats.hits == 0
    assert isinstance(p_small, Plan) and isinstance(p_big, Plan)
    assert p_big.tokens_per_second >= p_small.tokens_per_second * (1 - 1e-9)


def test_a_stored_optimum_that_no_longer_fits_is_not_reused():
    cache = SolutionCache()
    job = make_job(size="1.5B", budget=90)
    first = plan(job, BIG, FAST, cache)
    assert isinstance(first, Plan)
    # take away almost everything of the pools the first plan's rollout uses
    pools = {r.pool for r in first.replicas}
    starved = _holding(BIG, {n.name: n.gpus - 1 for n in BIG.nodes if n.pool in pools})
    again = plan(job, starved, FAST, cache)
    fresh = plan(job, starved, FAST)
    assert cache.stats.hits == 0 and cache.stats.misses == 2
    assert type(again) is type(fresh)
    if isinstance(fresh, Plan):
        assert again.tokens_per_second == pytest.approx(fresh.tokens_per_second, rel=1e-6)


def test_cache_is_bounded():
    cache = SolutionCache(max_problems=2)
    for b in (40, 60, 80, 100):
        plan(make_job(size="1.5B", budget=b), BIG, FAST, cache)
    assert len(cache) == 2


def _demo():
    cluster = parse_inventory(yaml.safe_load((ROOT / "manifests/clusters/hetero-3pool.yaml").read_text()))
    job = RLJobSpec.model_validate(yaml.safe_load((ROOT / "manifests/examples/rljob.yaml").read_text())["spec"])
    return cluster, job


def test_losing_spot_nodes_never_resizes_a_surviving_trainer_when_it_may_not_move():
    """The demo's case: after two spot nodes go, the free search shrinks the trainer 16 → 11 GPUs (a
    restart); the operator's node-event re-plan keeps it and re-places only rollout."""
    cluster, job = _demo()
    p = plan(job, cluster, FAST)
    assert isinstance(p, Plan)
    spot = sorted({n for r in p.replicas if r.spot for n in r.nodes})
    assert len(spot) >= 2
    lost = set(spot[:2])
    after = replace(cluster, nodes=tuple(n for n in cluster.nodes if n.name not in lost))
    free_search = replan(job, after, p, FAST)
    kept = replan(job, after, p, FAST, trainer_may_move=False)
    assert isinstance(free_search, Plan) and isinstance(kept, Plan)
    assert kept.trainer == p.trainer
    assert ("kept", "trainer") in {(c.kind, c.role) for c in kept.changes}
    assert not any(n in lost for r in kept.replicas for n in r.nodes)
    assert kept.cost_per_hour <= job.budget.max_cost_per_hour * (1 + 1e-9)
    # the case is real: the free search would have restarted the trainer
    assert free_search.trainer != p.trainer


def test_a_trainer_that_lost_a_node_is_re_placed_even_when_it_may_not_move():
    cluster, job = _demo()
    p = plan(job, cluster, FAST)
    assert isinstance(p, Plan)
    gone = p.trainer.nodes[0]
    after = replace(cluster, nodes=tuple(replace(n, going_away=True) if n.name == gone else n for n in cluster.nodes))
    q = replan(job, after, p, FAST, trainer_may_move=False)
    assert isinstance(q, Plan) and gone not in q.trainer.nodes


def test_baselines_alone_match_the_inline_ones():
    job = make_job(size="1.5B", budget=90)
    inline = plan(job, BIG, PlannerSettings(compute_baselines=True))
    assert isinstance(inline, Plan) and inline.baselines
    cache = SolutionCache()
    alone = baselines(job, BIG, FAST, cache)
    assert [(b.gpu, b.feasible) for b in alone] == [(b.gpu, b.feasible) for b in inline.baselines]
    for a, b in zip(alone, inline.baselines, strict=True):
        assert a.tokens_per_second == pytest.approx(b.tokens_per_second, rel=1e-6)
    hits = cache.stats.hits
    assert baselines(job, BIG, FAST, cache) == alone
    # feasible baselines are answered from the cache the second time (infeasible ones are re-diagnosed)
    assert cache.stats.hits - hits == sum(1 for b in alone if b.feasible) >= 1


def test_concurrent_misses_on_one_problem_solve_it_once():
    from concurrent.futures import ThreadPoolExecutor

    cache = SolutionCache()
    job = make_job(size="1.5B", budget=90)
    seen = [BIG, _holding(BIG, {"h20-0": 8}), _holding(BIG, {"h20-0": 8, "h20-1": 8}), BIG]
    with ThreadPoolExecutor(4) as pool:
        plans = list(pool.map(lambda c: plan(job, c, FAST, cache), seen))
    assert all(isinstance(p, Plan) for p in plans)
    assert len({round(p.tokens_per_second, 3) for p in plans}) == 1
    assert cache.stats.misses <= 2 and cache.stats.hits + cache.stats.misses == 4


def test_a_miss_with_more_capacity_solves_the_relaxation_that_covers_both():
    cache = SolutionCache()
    job = make_job(size="1.5B", budget=90)
    less = _holding(BIG, {"h20-0": 8, "h20-1": 8})
    plan(job, less, FAST, cache)
    plan(job, _holding(BIG, {"h20-2": 8}), FAST, cache)  # more free H20s somewhere: a miss, solved widest
    assert cache.stats.misses == 2
    plan(job, _holding(BIG, {"h20-3": 8}), FAST, cache)  # neither snapshot covers it alone; the join does
    assert cache.stats.hits == 1 and cache.stats.misses == 2
