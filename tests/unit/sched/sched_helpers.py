"""Builders for planner tests: jobs, clusters, and an independent brute-force optimum."""

from __future__ import annotations

import itertools

from hexrl.api.models import RLJobSpec
from hexrl.sched import Cluster, NodeInfo, PoolInfo
from hexrl.sched.costmodel import (
    Workload,
    decode_tokens_per_second,
    group_latency_seconds,
    reprefill_seconds,
    spot_availability,
    training_tokens_per_second,
    weight_sync_seconds,
)
from hexrl.sched.problem import PoolCapacity, Problem, RolloutOption, TrainOption, evaluate, train_usage
from hexrl.sched.searchspace import cluster_catalog, size_chain
from hexrl.sched.settings import PlannerSettings

SHAPES = {
    "0.5B": (0.5e9, 24, 896, 2),
    "1.5B": (1.5e9, 28, 1536, 2),
    "7B": (7.6e9, 28, 3584, 4),
    "14B": (14.7e9, 48, 5120, 8),
}


def make_job(size="1.5B", budget=100.0, target=None, eta=4, prompt=1024, max_new=8192, mean_new=3000,
             spot_rollout="allowed", spot_trainer="forbidden", floor=0.25, gpu_types=None, group=16, prompts=64):
    params, layers, hidden, kv = SHAPES[size]
    b = {}
    if budget is not None:
        b["maxCostPerHour"] = budget
    if target is not None:
        b["targetTokensPerSecond"] = target
    placement = {"spot": {"rollout": spot_rollout, "trainer": spot_trainer, "onDemandRolloutFloor": floor}}
    if gpu_types:
        placement["gpuTypes"] = gpu_types
    return RLJobSpec.model_validate(
        {
            "model": {"name": size, "source": {"builtin": "tiny-random"},
                      "shape": {"parameters": params, "layers": layers, "hiddenSize": hidden, "kvHeads": kv,
                                "headDim": 128, "vocab": 151936}},
            "algorithm": {"groupSize": group, "promptsPerStep": prompts},
            "generation": {"promptTokens": prompt, "maxNewTokens": max_new, "meanNewTokens": mean_new},
            "staleness": {"maxPolicyLag": eta},
            "budget": b,
            "placement": placement,
        }
    )


def make_cluster(pools, inter_pool_gbps=1.5):
    """pools: iterable of (name, gpu, gpus_per_node, nodes, spot[, preemptions])."""
    infos, nodes = [], []
    for p in pools:
        name, gpu, gpn, n, spot = p[:5]
        lam = p[5] if len(p) > 5 else (0.05 if spot else 0.0)
        infos.append(PoolInfo(name=name, gpu=gpu, gpus_per_node=gpn, spot=spot, zone=f"z-{name}",
                              preemptions_per_node_hour=lam))
        nodes += [NodeInfo(name=f"{name}-{i}", pool=name, gpu=gpu, gpus=gpn, spot=spot, zone=f"z-{name}") for i in range(n)]
    return Cluster(pools=tuple(infos), nodes=tuple(nodes), inter_pool_gbps=inter_pool_gbps)


def _heads(job: RLJobSpec) -> tuple[int, int, int]:
    sh = job.model.shape
    return (sh.attention_heads or sh.hidden_size // sh.head_dim, sh.kv_heads, sh.intermediate_size or 4 * sh.hidden_size)


def full_problem(job: RLJobSpec, cluster: Cluster, settings: PlannerSettings | None = None) -> Problem:
    """Every configuration and every strategy the runtime executes (no pruning, no early stops), straight
    from the cost model: rollout TP splitting the query heads (key/value heads split or replicated),
    training TP splitting query heads, key/value heads and the MLP, PP only up to `max_pipeline_parallel`."""
    s = settings or PlannerSettings()
    heads, kv, mlp = _heads(job)
    max_pp = s.max_pipeline_parallel
    cs = s.cost
    cat = cluster_catalog(cluster)
    w = Workload.from_spec(job)
    allow = set(job.placement.gpu_types or []) or None
    ro, tr, caps, pools = [], [], [], []
    for p in cluster.pools:
        spec = cat.get(p.gpu)
        if allow and spec.name not in allow:
            continue
        nodes = [n for n in cluster.nodes if n.pool == p.name and n.gpus_free > 0]
        if not nodes:
            continue
        free = sum(n.gpus_free for n in nodes)
        price = spec.price(p.spot)
        inter = p.inter_node_gbps or spec.inter_node_gbps
        chain = size_chain(p.gpus_per_node)
        pools.append((p, spec, inter))
        caps.append(PoolCapacity(p.name, tuple((z, sum(z * (n.gpus_free // z) for n in nodes)) for z in chain)))
        if not (p.spot and job.placement.spot.rollout == "forbidden"):
            layouts = [(t, 1) for t in chain if heads % t == 0 and (kv % t == 0 or t % kv == 0)]
            layouts += [(p.gpus_per_node, k) for k in range(2, min(len(nodes), max_pp) + 1)]
            fitted_tp = False
            for t, pp in layouts:
                if pp > 1 and fitted_tp:
                    break
                e = decode_tokens_per_second(spec, w, t, pp, cs, inter)
                if e is None:
                    continue
                fitted_tp |= pp == 1
                reprefill = reprefill_seconds(spec, w, e.batch, t * pp, cs)
                a = spot_availability(p.preemptions_per_node_hour, pp, cs, reprefill) if p.spot else 1.0
                n = w.samples_per_step if w.max_policy_lag == 0 else w.group_size
                ro.append(RolloutOption(p.name, t * pp, t, e.tokens_per_second * a, e.batch, price * t * pp, p.spot,
                                        free // (t * pp), group_latency_seconds(e, w, cs, n)))
                if pp > 1:
                    break
        if not (p.spot and job.placement.spot.trainer == "forbidden"):
            split = [t for t in chain if heads % t == 0 and kv % t == 0 and mlp % t == 0]
            layouts = [(t, 1) for t in split]
            if p.gpus_per_node in split:
                layouts += [(p.gpus_per_node, k) for k in range(2, min(len(nodes), max_pp) + 1)]
            for t, pp in layouts:
                for dp in range(1, free // (t * pp) + 1):
                    for fsdp in (False, True):
                        e = training_tokens_per_second(spec, w, dp, t, pp, fsdp, cs, p.gpus_per_node, inter)
                        if e is not None:
                            tr.append(TrainOption(p.name, dp * t * pp, t, e.tokens_per_second, price * dp * t * pp))
    ws = []
    for a, _, ia in pools:
        for b, _, ib in pools:
            link = ia if a.name == b.name else cluster.inter_pool_gbps
            ws.append((a.name, b.name, w.tokens_per_step / weight_sync_seconds(w, link, ib, cs)))
    any_spot = any(o.spot for o in ro)
    return Problem(
        rollout=tuple(ro), train=tuple(tr), pools=tuple(caps),
        inflight_cap=float((w.max_policy_lag + 1) * w.samples_per_step),
        budget=job.budget.max_cost_per_hour, target=job.budget.target_tokens_per_second, ws_rate=tuple(ws),
        floor=job.placement.spot.on_demand_rollout_floor if any_spot else 0.0,
        surplus_factor=1.0 + cs.surplus_per_policy_lag * w.max_policy_lag,
        batch=float(w.samples_per_step), tokens_per_sample=w.tokens_per_sample, policy_lag=w.max_policy_lag,
    )


def brute_force(p: Problem) -> tuple[float, float] | None:
    """(throughput, cost) of the best plan by enumerating every count vector and every strategy."""
    if not p.rollout or not p.train:
        return None
    per_pool: dict[str, list[int]] = {}
    for i, o in enumerate(p.rollout):
        per_pool.setdefault(o.pool, []).append(i)
    free = {pc.name: dict(pc.capacity) for pc in p.pools}

    def vectors(ids):
        cap = max(free[p.rollout[ids[0]].pool].values())
        ranges = [range(0, cap // p.rollout[i].gpus + 1) for i in ids]
        for combo in itertools.product(*ranges):
            if sum(p.rollout[i].gpus * k for i, k in zip(ids, combo, strict=True)) <= cap:
                yield combo

    # Strategies that use the same GPUs at the same price: only the fastest can matter.
    fastest: dict[tuple[str, int, int, float], int] = {}
    for j, s in enumerate(p.train):
        k = (s.pool, s.gpus, s.item_size, s.price)
        if k not in fastest or s.rate > p.train[fastest[k]].rate:
            fastest[k] = j
    strategies = sorted(fastest.values())
    pool_vectors = [list(vectors(ids)) for ids in per_pool.values()]
    order = [i for ids in per_pool.values() for i in ids]
    best = None
    for parts in itertools.product(*pool_vectors):
        counts = [0] * len(p.rollout)
        for i, k in zip(order, itertools.chain(*parts), strict=True):
            counts[i] = k
        if not any(counts):
            continue
        rollout_cost = sum(o.price * k for o, k in zip(p.rollout, counts, strict=True))
        if p.budget is not None and rollout_cost > p.budget:
            continue
        for j in strategies:
            s = p.train[j]
            if p.budget is not None and rollout_cost + s.price > p.budget * (1 + 1e-9):
                continue
            ev = evaluate(p, j, counts)
            if not ev.feasible:
                continue
            key = (ev.throughput, -ev.cost) if p.target is None else (-ev.cost, ev.throughput)
            if best is None or key > best[0]:
                best = (key, ev.throughput, ev.cost)
    return None if best is None else (best[1], best[2])


__all__ = ["SHAPES", "brute_force", "full_problem", "make_cluster", "make_job", "train_usage"]
