"""Simulator benchmarks: speed at 1,000 GPUs and the published comparisons, measured side by side.

Prints, never asserts (benchmarks do not gate CI). Every number below is measured in this run:

1. Scale: a 1,000-GPU heterogeneous cluster with spot pools, 24 simulated hours, a Poisson preemption
   trace — wall time of the planner and of the simulation (bar: ≤ 10 s).
2. Async vs sync on one GPU type (H100): the same job planned and simulated with η = 0 and η = 1/4/8.
3. Heterogeneous vs best homogeneous at the same budget (AReaL-Hex's setting): 24 H800 + 24 H20 against
   32 H800 and against 88 H20 at catalog prices, for the 1.5B, 7B and 14B example jobs.
4. On-demand only vs spot offload with token-level migration (RLBoost's setting): 8 on-demand H100
   plus 1–4 spot 2-GPU H100 rollout instances, with and without migration.

Run: `.venv/bin/python bench/bench_sim.py` (about two minutes on 2 cores).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from hexrl.api.models import RLJob, RLJobSpec
from hexrl.sched import Cluster, parse_inventory
from hexrl.sim.engine import SimResult, simulate
from hexrl.sim.report import compare
from hexrl.sim.scenario import build_policy
from hexrl.sim.settings import SimSettings
from hexrl.sim.trace import poisson_trace

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "manifests" / "examples"


def job(name: str, **changes: Any) -> RLJobSpec:
    spec = RLJob.model_validate(yaml.safe_load((EXAMPLES / name).read_text())).spec.model_copy(deep=True)
    spec.placement.gpu_types = None
    for key, value in changes.items():
        if key == "budget":
            spec.budget.max_cost_per_hour = value
        elif key == "eta":
            spec.staleness.max_policy_lag = value
        elif key == "prompts":
            spec.algorithm.prompts_per_step = value
        else:
            raise KeyError(key)
    return spec


def inventory(pools: list[dict[str, Any]], inter_pool: float = 1.5) -> Cluster:
    return parse_inventory(
        {"apiVersion": "hexrl.dev/v1alpha1", "kind": "ClusterInventory", "interPoolGBps": inter_pool, "pools": pools}
    )


def run(policy: str, spec: RLJobSpec, cluster: Cluster, hours: float, trace=(), seed: int = 0) -> SimResult | str:
    ps = build_policy(policy, spec, cluster)
    if ps.setup is None:
        return f"infeasible: {ps.reason}"
    return simulate(ps.setup, trace, hours, seed)


def fmt(r: SimResult | str) -> str:
    if isinstance(r, str):
        return r
    return (
        f"{r.tokens_per_second:>11,.0f} tok/s  {r.cost_per_hour:>8,.2f} $/h  {r.dollars_per_million_tokens:>6.3f} $/Mtok"
        f"  idle {r.trainer_idle_fraction:>5.1%}  lag p50/max {r.staleness_quantile(0.5)}/{r.staleness_max}"
        f"  GPUs {r.gpus}  (planner {r.predicted_tokens_per_second:,.0f})"
    )


def ratio(a: SimResult | str, b: SimResult | str, attr: str = "tokens_per_second") -> str:
    if isinstance(a, str) or isinstance(b, str) or getattr(b, attr) <= 0:
        return "n/a"
    return f"{getattr(a, attr) / getattr(b, attr):.2f}×"


def bench_scale() -> None:
    print("\n== 1. Scale: 1,000 GPUs (320 H800 + 280 H20 on-demand + 400 H20 spot), 24 h, Poisson trace ==")
    cluster = inventory(
        [
            {"name": "h800", "gpu": "H800", "gpusPerNode": 8, "nodes": 40, "interNodeGBps": 50},
            {"name": "h20", "gpu": "H20", "gpusPerNode": 8, "nodes": 35},
            {"name": "h20-spot", "gpu": "H20", "gpusPerNode": 8, "nodes": 50, "spot": True, "preemptionsPerNodeHour": 0.1},
        ],
        inter_pool=12.5,
    )
    spec = job("rljob-7b.yaml", budget=100_000, prompts=512)
    trace = poisson_trace(cluster, 24, 0, SimSettings().mean_spot_outage_hours)
    t0 = time.perf_counter()
    ps = build_policy("hexrl-spot", spec, cluster)
    t_plan = time.perf_counter() - t0
    assert ps.setup is not None, ps.reason
    t0 = time.perf_counter()
    r = simulate(ps.setup, trace, 24, 0)
    t_sim = time.perf_counter() - t0
    print(f"cluster GPUs: {sum(n.gpus for n in cluster.nodes)}; planned GPUs: {r.gpus}; trace events: {len(trace)}")
    print(f"plan() {t_plan:.2f} s; simulate 24 h {t_sim:.2f} s wall (bar ≤ 10 s): {r.trained_steps} steps, "
          f"{r.preemptions} preemptions, {r.gpu_hours_lost_to_preemption:.1f} GPU-h lost")
    print("hexrl-spot:", fmt(r))
    print(f"planner predicted {r.predicted_tokens_per_second:,.0f} tok/s; simulated steady {r.steady_tokens_per_second:,.0f}")


def bench_async_vs_sync() -> None:
    print("\n== 2. Async vs sync on one GPU type: 4 × 8 H100, 1.5B and 7B jobs, 12 h ==")
    cluster = inventory([{"name": "h100", "gpu": "H100", "gpusPerNode": 8, "nodes": 4}])
    for name in ("rljob.yaml", "rljob-7b.yaml"):
        sync = run("sync", job(name, budget=1000, eta=0), cluster, 12)
        print(f"{name:14s} sync  η=0: {fmt(sync)}")
        for eta in (1, 4, 8):
            r = run("hexrl", job(name, budget=1000, eta=eta), cluster, 12)
            print(f"{name:14s} async η={eta}: {fmt(r)}   async/sync {ratio(r, sync)}")


def bench_hetero_vs_homogeneous() -> None:
    print("\n== 3. Heterogeneous vs best homogeneous, same budget (171.12 $/h), 12 h ==")
    budget = 24 * 5.28 + 24 * 1.85
    clusters = {
        "24 H800 + 24 H20": inventory(
            [{"name": "h800", "gpu": "H800", "gpusPerNode": 8, "nodes": 3}, {"name": "h20", "gpu": "H20", "gpusPerNode": 8, "nodes": 3}]
        ),
        "32 H800": inventory([{"name": "h800", "gpu": "H800", "gpusPerNode": 8, "nodes": 4}]),
        "88 H20": inventory([{"name": "h20", "gpu": "H20", "gpusPerNode": 8, "nodes": 11}]),
    }
    for name in ("rljob.yaml", "rljob-7b.yaml", "rljob-14b.yaml"):
        if not (EXAMPLES / name).exists():
            print(f"{name}: not present")
            continue
        res = {c: run("hexrl", job(name, budget=budget), cl, 12) for c, cl in clusters.items()}
        for c, r in res.items():
            print(f"{name:14s} {c:17s} {fmt(r)}")
        het = res["24 H800 + 24 H20"]
        print(f"{name:14s} hetero / H800-only {ratio(het, res['32 H800'])}, hetero / H20-only {ratio(het, res['88 H20'])}")


def bench_spot() -> None:
    print("\n== 4. On-demand only vs spot offload: 8 on-demand H100 + k spot 2-GPU H100 instances, 7B, 24 h ==")
    settings = SimSettings()
    for k in (1, 2, 3, 4):
        cluster = inventory(
            [
                {"name": "h100", "gpu": "H100", "gpusPerNode": 8, "nodes": 1},
                {"name": "h100-spot", "gpu": "H100", "gpusPerNode": 2, "nodes": k, "spot": True, "preemptionsPerNodeHour": 0.5},
            ]
        )
        spec = job("rljob-7b.yaml", budget=1000)
        outs = {o.policy: o for o in compare(spec, cluster, ["hexrl", "hexrl-spot", "hexrl-spot-nomigrate"], 24, 0, settings=settings)}
        res = {p: (o.result if o.result is not None else f"infeasible: {o.reason}") for p, o in outs.items()}
        for p, r in res.items():
            print(f"k={k} {p:22s} {fmt(r)}" + (f"  lost {r.gpu_hours_lost_to_preemption:.2f} GPU-h, {r.preemptions} preemptions" if not isinstance(r, str) else ""))
        od, spot, nomig = res["hexrl"], res["hexrl-spot"], res["hexrl-spot-nomigrate"]
        cost_gain = "n/a"
        if not isinstance(od, str) and not isinstance(spot, str):
            cost_gain = f"{od.dollars_per_million_tokens / spot.dollars_per_million_tokens:.2f}×"
        print(f"k={k} spot/on-demand throughput {ratio(spot, od)}, cost efficiency (on-demand $/Mtok ÷ spot $/Mtok) "
              f"{cost_gain}; migration/no-migration throughput {ratio(spot, nomig)}")


def main() -> None:
    t0 = time.perf_counter()
    bench_scale()
    bench_async_vs_sync()
    bench_hetero_vs_homogeneous()
    bench_spot()
    print(f"\n(total wall {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
