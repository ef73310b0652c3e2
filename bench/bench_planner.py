"""Planner benchmark: plan()/replan() wall times, same-budget heterogeneous vs homogeneous, HiGHS vs CBC,
and the planner's prediction against the simulator (hexrl.sim) where the staleness gate binds.

Prints numbers measured side by side in one run; never asserts (timings do not gate CI).
Run: .venv/bin/python bench/bench_planner.py   (--operator-jobs: only the operator bench's four jobs)
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from pathlib import Path

import yaml

from hexrl.api.models import RLJob, RLJobSpec
from hexrl.sched import Cluster, NodeInfo, Plan, PlanResult, PoolInfo, plan, replan
from hexrl.sched.searchspace import build_search_space
from hexrl.sched.settings import PlannerSettings
from hexrl.sched.strategy_search import solve

ROOT = Path(__file__).resolve().parent.parent


def cluster(pools: list[tuple[str, str, int, bool]], gpn: int = 8, inter_pool_gbps: float = 1.5) -> Cluster:
    infos, nodes = [], []
    for name, gpu, n, spot in pools:
        infos.append(PoolInfo(name=name, gpu=gpu, gpus_per_node=gpn, spot=spot, zone=f"zone-{len(infos) % 3}",
                              preemptions_per_node_hour=0.05 if spot else 0.0))
        nodes += [NodeInfo(f"{name}-{i}", name, gpu, gpn, spot, f"zone-{len(infos) % 3}") for i in range(n)]
    return Cluster(tuple(infos), tuple(nodes), inter_pool_gbps=inter_pool_gbps)


def job(path: str, budget: float | None = None, gpu_types: list[str] | None = None):
    spec = RLJob.model_validate(yaml.safe_load((ROOT / path).read_text())).spec
    upd: dict = {}
    if budget is not None:
        upd["budget"] = spec.budget.model_copy(update={"max_cost_per_hour": budget})
    upd["placement"] = spec.placement.model_copy(update={"gpu_types": gpu_types})
    return spec.model_copy(update=upd)


def job_1_5b(**kw):
    j = job("manifests/examples/rljob-7b.yaml", **kw)
    shape = j.model.shape.model_copy(update={"parameters": 1.5e9, "layers": 28, "hidden_size": 1536, "kv_heads": 2})
    return j.model_copy(update={"model": j.model.model_copy(update={"shape": shape, "name": "1.5B"})})


def median_time(fn, n=5):
    times, out = [], None
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def operator_jobs() -> None:
    """The operator bench's hot path: the four job shapes it applies (1.5B model, budgets 40/60/80/120 $/h)
    planned without baselines on its 1,000-node, 8-pool cluster; bound-and-prune vs the one-MILP search,
    side by side in this run, with the optimum each found."""
    import sys

    sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests")]
    from bench_operator import inventory
    from builders import rljob
    from hexrl.sched import parse_inventory

    cl = parse_inventory(inventory(1000))
    print("== operator bench jobs: plan() without baselines, 1,000 nodes / 8 pools, 1.5B, median of 5 "
          "(bound-and-prune vs one MILP)")
    new, old = PlannerSettings(compute_baselines=False), PlannerSettings(compute_baselines=False, prune_strategies=False)
    rows = []
    for b in (40, 60, 80, 120):
        spec = RLJob.model_validate(rljob(f"j{b}", model__source={"uri": "s3://m/qwen2.5-1.5b"},
                                          budget__maxCostPerHour=b)).spec
        tn, pn = median_time(lambda spec=spec: plan(spec, cl, new))
        to, po = median_time(lambda spec=spec: plan(spec, cl, old))
        rows.append((tn, to))
        if isinstance(pn, Plan) and isinstance(po, Plan):
            same = f"tok/s {pn.tokens_per_second:,.1f} vs {po.tokens_per_second:,.1f} (ratio {pn.tokens_per_second / po.tokens_per_second:.6f})"
        else:
            same = f"{type(pn).__name__} vs {type(po).__name__}"
        print(f"  budget {b:3} $/h: prune {tn * 1e3:7.1f} ms | one MILP {to * 1e3:7.1f} ms | {to / tn:4.1f}x  {same}")
    tn = statistics.median(r[0] for r in rows)
    to = statistics.median(r[1] for r in rows)
    print(f"  median over the four jobs: prune {tn * 1e3:.1f} ms vs one MILP {to * 1e3:.1f} ms ({to / tn:.1f}x); "
          f"sum {sum(r[0] for r in rows) * 1e3:.0f} ms vs {sum(r[1] for r in rows) * 1e3:.0f} ms")


BUDGETS = {"56 GPUs / 2 types": 180, "1,024 GPUs / 6 types": 2500, "10,240 GPUs / 8 types": 25000}
"""$/h per cluster size of the wall-time runs."""
# A bigger cluster runs a bigger batch: the staleness gate admits (η+1)·batch trajectories in flight.
PROMPTS = {"56 GPUs / 2 types": 64, "1,024 GPUs / 6 types": 512, "10,240 GPUs / 8 types": 4096}


def sized_clusters() -> dict[str, Cluster]:
    """The three cluster sizes of the wall-time runs (the large ones with 25 GB/s between pools)."""
    return {
        "56 GPUs / 2 types": cluster([("h800", "H800", 3, False), ("h20", "H20", 4, True)]),
        "1,024 GPUs / 6 types": cluster([(f"p{i}", g, 128 // 6 + (1 if i < 128 % 6 else 0), i % 2 == 1)
                                         for i, g in enumerate(["H800", "H20", "H100", "A100-80G", "L40S", "H200"])], inter_pool_gbps=25),
        "10,240 GPUs / 8 types": cluster([(f"p{i}", g, 160, i % 2 == 1)
                                          for i, g in enumerate(["H800", "H20", "H100", "A100-80G", "L40S", "H200", "MI300X", "A100-40G"])], inter_pool_gbps=25),
    }


SizedPlans = dict[str, tuple[RLJobSpec, Cluster, PlanResult]]
"""Per cluster size: the job planned, the cluster and the plan."""


def plan_wall_times(j7: RLJobSpec) -> SizedPlans:
    """Time plan() on each cluster size, with and without baselines; returns {size: (job, cluster, plan)}."""
    print("== plan() wall time, median of 5 (with homogeneous baselines); 7B job; large clusters: 25 GB/s between pools")
    plans: SizedPlans = {}
    for name, cl in sized_clusters().items():
        jb = j7.model_copy(update={"budget": j7.budget.model_copy(update={"max_cost_per_hour": BUDGETS[name]}),
                                   "placement": j7.placement.model_copy(update={"gpu_types": None}),
                                   "algorithm": j7.algorithm.model_copy(update={"prompts_per_step": PROMPTS[name]})})
        t, p = median_time(lambda cl=cl, jb=jb: plan(jb, cl))
        t0, _ = median_time(lambda cl=cl, jb=jb: plan(jb, cl, PlannerSettings(compute_baselines=False)))
        plans[name] = (jb, cl, p)
        gpus = sum(n.gpus for n in cl.nodes)
        desc = f"{p.tokens_per_second:,.0f} tok/s, ${p.cost_per_hour:,.0f}/h, {p.gpus} GPUs used, {p.solver_status}" if isinstance(p, Plan) else p.message
        print(f"  {name:24} ({gpus} GPUs, {PROMPTS[name]} prompts/step): {t * 1e3:8.1f} ms  (without baselines {t0 * 1e3:7.1f} ms)  {desc}")
    return plans


def replan_after_node_loss(plans: SizedPlans) -> None:
    """replan() vs a full plan() once one spot node of the 1,024-GPU plan is gone."""
    print("== replan() after one spot node disappears, 1,024 GPUs, median of 5")
    jb, cl, p = plans["1,024 GPUs / 6 types"]
    if not isinstance(p, Plan):
        return
    victim = next((r.nodes[0] for r in p.replicas if r.spot), p.replicas[0].nodes[0])
    after = replace(cl, nodes=tuple(n for n in cl.nodes if n.name != victim))
    fast = PlannerSettings(compute_baselines=False)
    t, q = median_time(lambda: replan(jb, after, p, fast))
    tf, full = median_time(lambda: plan(jb, after, fast))
    if isinstance(q, Plan) and isinstance(full, Plan):
        moved = sum(1 for c in q.changes if c.kind in ("added", "removed", "moved"))
        print(f"  replan {t * 1e3:.1f} ms vs full plan {tf * 1e3:.1f} ms (ratio {tf / t:.1f}x); "
              f"throughput {q.tokens_per_second:,.0f} vs {full.tokens_per_second:,.0f} tok/s "
              f"({q.tokens_per_second / full.tokens_per_second:.4f}); {moved} change lines; trainer "
              f"{'kept' if q.trainer.nodes == p.trainer.nodes else 'moved'}")


def same_budget() -> None:
    """Throughput of a mixed H800 + H20 cluster vs all-H800 and all-H20 ones at one budget, per model size."""
    print("== same budget: 24 H800 + 24 H20 vs 32 H800 vs 88 H20 (catalog on-demand prices)")
    hetero = cluster([("h800", "H800", 3, False), ("h20", "H20", 3, False)])
    h800 = cluster([("h800", "H800", 4, False)])
    h20 = cluster([("h20", "H20", 11, False)])
    budget = 24 * 5.28 + 24 * 1.85
    for label, mk in (("1.5B", job_1_5b), ("7B", lambda **k: job("manifests/examples/rljob-7b.yaml", **k)),
                      ("14B", lambda **k: job("manifests/examples/rljob-14b.yaml", **k))):
        jb = mk(budget=budget)
        fast = PlannerSettings(compute_baselines=False)
        res = {n: plan(jb, c, fast) for n, c in (("hetero", hetero), ("32xH800", h800), ("88xH20", h20))}
        tps = {n: (r.tokens_per_second if isinstance(r, Plan) else 0.0) for n, r in res.items()}
        parts = []
        for n in ("32xH800", "88xH20"):
            parts.append(f"vs {n} {tps[n]:,.0f} ({tps['hetero'] / tps[n]:.2f}x)" if tps[n] else f"vs {n} infeasible")
        print(f"  {label:5} budget ${budget:.2f}/h: hetero {tps['hetero']:,.0f} tok/s  " + "  ".join(parts))


def highs_vs_cbc(plans: SizedPlans) -> None:
    """Solve time and objective of HiGHS and CBC on the MILPs of the wall-time runs."""
    print("== HiGHS vs CBC on the same MILPs (solve only, median of 5)")
    for label, (jb, cl, _) in plans.items():
        built = build_search_space(jb, cl, PlannerSettings())
        row = []
        for solver in ("highs", "cbc"):
            t, s = median_time(lambda solver=solver, built=built: solve(built.problem, solver))
            row.append((solver, t, s.evaluation.throughput if s else 0.0, s.solves if s else 0))
        (_, th, oh, nh), (_, tc, oc, nc) = row
        print(f"  {label:24} HiGHS {th * 1e3:8.1f} ms ({nh} MILPs) obj {oh:,.0f}  |  CBC {tc * 1e3:8.1f} ms ({nc} MILPs) "
              f"obj {oc:,.0f}  |  CBC/HiGHS time {tc / th:.1f}x, objective ratio {oc / oh if oh else 0:.4f}")


def main() -> None:
    """Every planner measurement but the simulator comparison, in order."""
    operator_jobs()
    j7 = job("manifests/examples/rljob-7b.yaml")
    plans = plan_wall_times(j7)
    replan_after_node_loss(plans)
    same_budget()
    highs_vs_cbc(plans)


def gate_agreement() -> None:
    """Planner-predicted vs simulated steady tokens/s (3 simulated hours, no preemption), side by side."""
    from hexrl.sched import parse_inventory
    from hexrl.sim.engine import simulate
    from hexrl.sim.scenario import build_policy

    def inv(pools):
        return parse_inventory({"apiVersion": "hexrl.dev/v1alpha1", "kind": "ClusterInventory", "interPoolGBps": 1.5,
                                "pools": pools})

    def spec(path, budget, eta=None):
        j = job(path, budget=budget)
        if eta is not None:
            j = j.model_copy(update={"staleness": j.staleness.model_copy(update={"max_policy_lag": eta})})
        return j

    h100 = inv([{"name": "h100", "gpu": "H100", "gpusPerNode": 8, "nodes": 4}])
    het = {"24 H800 + 24 H20": inv([{"name": "h800", "gpu": "H800", "gpusPerNode": 8, "nodes": 3},
                                    {"name": "h20", "gpu": "H20", "gpusPerNode": 8, "nodes": 3}]),
           "32 H800": inv([{"name": "h800", "gpu": "H800", "gpusPerNode": 8, "nodes": 4}]),
           "88 H20": inv([{"name": "h20", "gpu": "H20", "gpusPerNode": 8, "nodes": 11}])}
    cases = []
    for path, label in (("manifests/examples/rljob.yaml", "1.5B"), ("manifests/examples/rljob-7b.yaml", "7B")):
        for eta in (0, 1, 4, 8):
            cases.append((f"{label} 32 H100 η={eta}", "sync" if eta == 0 else "hexrl", spec(path, 1000, eta), h100))
    budget = 24 * 5.28 + 24 * 1.85
    for path, label in (("manifests/examples/rljob.yaml", "1.5B"), ("manifests/examples/rljob-7b.yaml", "7B"),
                        ("manifests/examples/rljob-14b.yaml", "14B")):
        for name, cl in het.items():
            cases.append((f"{label} {name}", "hexrl", spec(path, budget), cl))
    h3 = parse_inventory(yaml.safe_load((ROOT / "manifests/clusters/hetero-3pool.yaml").read_text()))
    cases.append(("1.5B hetero-3pool (all pools)", "hexrl-spot", spec("manifests/examples/rljob.yaml", None), h3))
    print("== planner vs simulator (steady tokens/s, 3 simulated hours, no preemption)")
    worst = 0.0
    for label, policy, jb, cl in cases:
        ps = build_policy(policy, jb, cl)
        if ps.setup is None:
            print(f"  {label:32} infeasible: {ps.reason}")
            continue
        r = simulate(ps.setup, (), 3, 1)
        pred, sim = ps.setup.predicted_tokens_per_second, r.steady_tokens_per_second
        worst = max(worst, abs(pred / sim - 1))
        print(f"  {label:32} planner {pred:>10,.0f}  sim {sim:>10,.0f}  planner/sim {pred / sim:.2f}  "
              f"trainer idle {r.trainer_idle_fraction:.0%}  stale-dropped {r.dropped_stale_samples / max(1, r.trained_samples):.1%}")
    print(f"  worst |planner/sim − 1| = {worst:.2f}")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--operator-jobs"]:  # only the operator bench's jobs (a few seconds)
        operator_jobs()
    else:
        main()
        gate_agreement()
