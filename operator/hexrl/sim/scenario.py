"""Policies: the same job on the same cluster, placed by each strategy, turned into engine setups.

Every placement comes from the planner (`hexrl.sched.plan`) on a restricted cluster or job, and every
rate from the planner's cost model (`hexrl.sched.costmodel`) — the simulator has no hardware numbers of
its own:

| policy                 | placement                                                        | η   | spot | migration |
|------------------------|------------------------------------------------------------------|-----|------|-----------|
| `sync`                 | `plan(job with η = 0, on-demand pools)`                          | 0   | no   | –         |
| `homogeneous`          | best of `plan(job, on-demand pools of one GPU type)` per type    | job | no   | –         |
| `hexrl`                | `plan(job, on-demand pools)`                                     | job | no   | –         |
| `hexrl-spot`           | `plan(job, all pools)` (spot per the job's placement policy)     | job | yes  | yes       |
| `hexrl-spot-nomigrate` | the same plan; partial responses of a reclaimed node are lost    | job | yes  | no        |
| `fixed-split`          | the on-demand GPUs the budget buys in inventory order, 25 % train | job | no   | –         |
|                        | (best strategy by the cost model) and 75 % roll out (best TP)    |     |      |           |

`fixed-split` is the common heuristic that ignores GPU types: it is built from the cost model's
functions directly because the planner, by design, never produces a fixed split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from hexrl.api.models import RLJobSpec
from hexrl.sched import DEFAULT_CATALOG, Cluster, Infeasible, Plan, PlannerSettings, PoolInfo, plan
from hexrl.sched.catalog import Catalog, GPUSpec
from hexrl.sched.costmodel import (
    CostModelSettings,
    DecodeEstimate,
    TrainEstimate,
    Workload,
    decode_tokens_per_second,
    expected_max_response,
    prefill_mfu,
    training_tokens_per_second,
    weight_sync_seconds,
)
from hexrl.sim.model import RolloutNode, SimSetup, TrainerSpec
from hexrl.sim.workload import LengthModel

POLICIES: tuple[str, ...] = ("sync", "homogeneous", "hexrl", "hexrl-spot", "hexrl-spot-nomigrate", "fixed-split")
"""Every policy `hexrl simulate --policy all` runs, in table order."""

FIXED_SPLIT_TRAIN_FRACTION = 0.25
"""The heuristic's share of GPUs for training (75/25 rollout/training, the common rule of thumb)."""


@dataclass(frozen=True)
class PolicySetup:
    """A policy ready to simulate, or the reason it cannot run on this cluster."""

    policy: str
    setup: SimSetup | None
    reason: str = ""


# ------------------------------------------------------------------------------------ helpers


def _catalog(cluster: Cluster) -> Catalog:
    return DEFAULT_CATALOG.with_specs(cluster.gpu_overrides)


@dataclass(frozen=True)
class _PoolView:
    info: PoolInfo
    spec: GPUSpec
    price: float
    inter_gbps: float
    memory_gb: float


def _pools(cluster: Cluster) -> dict[str, _PoolView]:
    catalog = _catalog(cluster)
    out = {}
    for p in cluster.pools:
        spec = catalog.lookup(p.gpu)
        if spec is None:
            continue
        out[p.name] = _PoolView(
            info=p,
            spec=spec,
            price=p.price_per_gpu_hour if p.price_per_gpu_hour is not None else spec.price(p.spot),
            inter_gbps=p.inter_node_gbps or spec.inter_node_gbps,
            memory_gb=p.gpu_memory_gb or spec.hbm_gb,
        )
    return out


def restrict(cluster: Cluster, keep: Sequence[str]) -> Cluster:
    """The sub-cluster of the named pools (same links, same GPU overrides)."""
    names = set(keep)
    return replace(
        cluster,
        pools=tuple(p for p in cluster.pools if p.name in names),
        nodes=tuple(n for n in cluster.nodes if n.pool in names),
    )


def on_demand(cluster: Cluster) -> Cluster:
    return restrict(cluster, [p.name for p in cluster.pools if not p.spot])


# ------------------------------------------------------------------------------------ setup from a plan


@dataclass
class _NodeAcc:
    pool: str
    gpu: str
    spot: bool
    gpus: int = 0
    replicas: int = 0
    tokens: float = 0.0
    slots: int = 0
    slot_steps: float = 0.0
    price: float = 0.0
    pull: float = 0.0


def _decode(view: _PoolView, w: Workload, tp: int, pp: int, cost: CostModelSettings) -> DecodeEstimate | None:
    return decode_tokens_per_second(view.spec, w, tp, pp, cost, view.inter_gbps, view.memory_gb)


def _pull_seconds(w: Workload, cluster: Cluster, trainer_pool: _PoolView, pool: _PoolView, cost: CostModelSettings) -> float:
    """The cost model's weight-sync time from the trainer's pool to `pool` (same rule as the planner)."""
    link = trainer_pool.inter_gbps if pool.info.name == trainer_pool.info.name else cluster.inter_pool_gbps
    return weight_sync_seconds(w, link, pool.inter_gbps, cost)


@dataclass
class _Aggregate:
    """Replicas summed per node, and the per-group overheads weighted by slots across all of them."""

    nodes: dict[str, _NodeAcc]
    group_overhead_steps: float
    """Prefill + reward per wave, in decode steps (slot-weighted mean over replicas)."""
    reprefill_steps_per_token: float
    """Decode steps lost per token re-prefilled after a migration (slot-weighted mean)."""
    weight_update_seconds: float
    """The cost model's weight-update pause (slot-weighted mean)."""
    wave_seconds: float
    """The cost model's wave without that pause (slot-weighted mean)."""


def _aggregate(
    replicas: Sequence[tuple[str, str, int, int]],
    w: Workload,
    cluster: Cluster,
    pools: dict[str, _PoolView],
    tp_view: _PoolView,
    cost: CostModelSettings,
) -> _Aggregate:
    """Sum replicas `(node, pool, tp, pp)` per node with the cost model's numbers."""
    acc: dict[str, _NodeAcc] = {}
    longest = expected_max_response(w, w.group_size, cost)
    overhead_w = reprefill_w = pause_w = wave_w = weight = 0.0
    for node, pool, tp, pp in replicas:
        view = pools[pool]
        est = _decode(view, w, tp, pp, cost)
        if est is None:  # the planner only places configurations that fit; guard against misuse
            continue
        a = acc.setdefault(node, _NodeAcc(pool, view.spec.name, view.info.spot, price=view.price))
        a.gpus += tp * pp
        a.replicas += 1
        a.tokens += est.tokens_per_second
        a.slots += est.batch
        a.slot_steps += est.batch / est.step_seconds
        a.pull = _pull_seconds(w, cluster, tp_view, view, cost)
        # Per-wave prefill + reward of the cost model, in decode steps of this replica; the engine pays the
        # weight-update pause itself, when a version is applied.
        wave = est.wave_seconds - est.weight_update_seconds
        overhead_w += est.batch * max(0.0, wave - longest * est.step_seconds) / est.step_seconds
        pause_w += est.batch * est.weight_update_seconds
        wave_w += est.batch * wave
        prefill_per_token = 2 * w.parameters / (tp * pp * view.spec.tflops_bf16 * 1e12 * prefill_mfu(view.spec, cost))
        reprefill_w += est.batch * prefill_per_token * est.batch / est.step_seconds
        weight += est.batch
    weight = weight or 1.0
    return _Aggregate(acc, overhead_w / weight, reprefill_w / weight, pause_w / weight, wave_w / weight)


def _rollout_node(name: str, a: _NodeAcc) -> RolloutNode:
    return RolloutNode(
        name=name,
        pool=a.pool,
        gpu=a.gpu,
        spot=a.spot,
        gpus=a.gpus,
        replicas=a.replicas,
        tokens_per_second=a.tokens,
        slots=a.slots,
        slot_steps_per_second=a.slot_steps,
        price_per_gpu_hour=a.price,
        weight_pull_seconds=a.pull,
    )


def _setup(
    policy: str,
    job: RLJobSpec,
    cluster: Cluster,
    trainer: TrainerSpec,
    trainer_pool: str,
    replicas: Sequence[tuple[str, str, int, int]],
    eta: int,
    migrate: bool,
    settings: PlannerSettings,
    predicted: float,
    planned_cost: float,
    notes: tuple[str, ...] = (),
) -> SimSetup:
    """The engine's setup: replicas `(node, pool, tp, pp)` aggregated per node, the rest of the cluster as spares."""
    w = Workload.from_spec(job)
    cost = settings.cost
    pools = _pools(cluster)
    agg = _aggregate(replicas, w, cluster, pools, pools[trainer_pool], cost)
    used = set(agg.nodes) | set(trainer.nodes)
    spares = tuple(
        (n.name, n.pool, n.spot) for n in cluster.nodes if n.name not in used and n.pool in pools and n.gpus_free > 0
    )
    return SimSetup(
        policy=policy,
        rollout=tuple(_rollout_node(name, a) for name, a in sorted(agg.nodes.items())),
        trainer=trainer,
        eta=eta,
        migrate=migrate,
        groups_per_step=w.prompts_per_step,
        group_size=w.group_size,
        prompt_tokens=w.prompt_tokens,
        lengths=LengthModel.from_workload(w, cost),
        group_overhead_steps=agg.group_overhead_steps,
        reprefill_steps_per_token=agg.reprefill_steps_per_token,
        reward_seconds_per_sample=0.0,
        weight_update_seconds=agg.weight_update_seconds,
        wave_seconds=agg.wave_seconds,
        predicted_tokens_per_second=predicted,
        planned_cost_per_hour=planned_cost,
        spare_nodes=spares,
        notes=notes,
    )


def setup_from_plan(
    policy: str,
    p: Plan,
    job: RLJobSpec,
    cluster: Cluster,
    settings: PlannerSettings,
    *,
    eta: int | None = None,
    migrate: bool = True,
) -> SimSetup:
    """The engine's view of a planner result."""
    pools = _pools(cluster)
    tview = pools[p.trainer.pool]
    trainer = TrainerSpec(
        tokens_per_second=p.trainer.tokens_per_second,
        gpus=p.trainer.gpus,
        nodes=p.trainer.nodes,
        pool=p.trainer.pool,
        spot=tview.info.spot,
        price_per_hour=p.trainer.gpus * tview.price,
        # The planner publishes without blocking the trainer (the weight service serves the pull).
        publish_seconds=0.0,
    )
    replicas = [(r.nodes[0], r.pool, r.tensor_parallel, r.pipeline_parallel) for r in p.replicas]
    return _setup(
        policy,
        job,
        cluster,
        trainer,
        p.trainer.pool,
        replicas,
        job.staleness.max_policy_lag if eta is None else eta,
        migrate,
        settings,
        p.tokens_per_second,
        p.cost_per_hour,
        notes=p.notes,
    )


# ------------------------------------------------------------------------------------ policies


def _no_baselines(settings: PlannerSettings) -> PlannerSettings:
    return replace(settings, compute_baselines=False)


def _plan(job: RLJobSpec, cluster: Cluster, settings: PlannerSettings) -> Plan | Infeasible:
    if not cluster.pools:
        return Infeasible("NoEligibleGPUs", "the cluster has no pools for this policy")
    return plan(job, cluster, _no_baselines(settings))


def _with_eta(job: RLJobSpec, eta: int) -> RLJobSpec:
    return job.model_copy(update={"staleness": job.staleness.model_copy(update={"max_policy_lag": eta})})


def _homogeneous(job: RLJobSpec, cluster: Cluster, settings: PlannerSettings) -> Plan | Infeasible:
    od = on_demand(cluster)
    pools = _pools(od)
    best: Plan | Infeasible = Infeasible("NoEligibleGPUs", "no on-demand pool can run the job alone")
    for gpu in sorted({v.spec.name for v in pools.values()}):
        sub = restrict(od, [n for n, v in pools.items() if v.spec.name == gpu])
        r = _plan(job, sub, settings)
        if isinstance(r, Plan) and (not isinstance(best, Plan) or r.tokens_per_second > best.tokens_per_second):
            best = r
    return best


_Share = tuple[str, str, int]
"""(node, pool, GPUs) of a node's GPUs given to training or to rollout."""


def _affordable_nodes(
    od: Cluster, pools: dict[str, _PoolView], budget: float | None
) -> tuple[list[tuple[str, str, int, float]], float]:
    """On-demand nodes in inventory order while the budget lasts: [(node, pool, free GPUs, $/GPU-h)], $/h."""
    chosen: list[tuple[str, str, int, float]] = []
    spent = 0.0
    for n in od.nodes:
        view = pools.get(n.pool)
        if view is None or n.gpus_free <= 0:
            continue
        if budget is not None and spent + n.gpus_free * view.price > budget + 1e-9:
            continue
        chosen.append((n.name, n.pool, n.gpus_free, view.price))
        spent += n.gpus_free * view.price
    return chosen, spent


def _split_nodes(chosen: list[tuple[str, str, int, float]], want: int) -> tuple[list[_Share], list[_Share]]:
    """Training takes `want` GPUs from the first nodes (one pool, whole nodes while they fit), rollout the rest."""
    t_nodes: list[_Share] = []
    r_nodes: list[_Share] = []
    left = want
    for name, pool, g, _ in chosen:
        if left > 0 and (not t_nodes or pool == t_nodes[0][1]):
            take = min(g, left)
            t_nodes.append((name, pool, take))
            left -= take
            if g > take:
                r_nodes.append((name, pool, g - take))
        else:
            r_nodes.append((name, pool, g))
    return t_nodes, r_nodes


def _best_training(view: _PoolView, w: Workload, gpus: int, cost: CostModelSettings) -> TrainEstimate | None:
    """The fastest TP×PP×DP (FSDP or not) strategy on `gpus` GPUs of the pool, by the cost model."""
    best: TrainEstimate | None = None
    gpn = view.info.gpus_per_node
    for tp in (1, 2, 4, 8):
        if tp > gpn or gpus % tp:
            continue
        for pp in range(1, 9):
            if (gpus // tp) % pp:
                continue
            dp = gpus // (tp * pp)
            for fsdp in (False, True):
                e = training_tokens_per_second(view.spec, w, dp, tp, pp, fsdp, cost, gpn, view.inter_gbps, view.memory_gb)
                if e is not None and (best is None or e.tokens_per_second > best.tokens_per_second):
                    best = e
    return best


def _rollout_replicas(
    r_nodes: list[_Share], pools: dict[str, _PoolView], w: Workload, cost: CostModelSettings
) -> list[tuple[str, str, int, int]]:
    """On each rollout node, as many replicas of the TP with the best tokens/s per GPU as fit: (node, pool, tp, pp)."""
    replicas: list[tuple[str, str, int, int]] = []
    for name, pool, g in r_nodes:
        view = pools[pool]
        options = [(tp, _decode(view, w, tp, 1, cost)) for tp in (1, 2, 4, 8) if tp <= g]
        fits = [(tp, e) for tp, e in options if e is not None]
        if not fits:
            continue
        tp, _e = max(fits, key=lambda x: x[1].tokens_per_second / x[0])
        replicas.extend((name, pool, tp, 1) for _ in range(g // tp))
    return replicas


def _fixed_split(job: RLJobSpec, cluster: Cluster, settings: PlannerSettings) -> PolicySetup:
    """25 % of the affordable on-demand GPUs train, 75 % roll out, ignoring GPU types."""
    w = Workload.from_spec(job)
    cost = settings.cost
    od = on_demand(cluster)
    pools = _pools(od)
    chosen, spent = _affordable_nodes(od, pools, job.budget.max_cost_per_hour)
    total = sum(g for _, _, g, _ in chosen)
    if total < 2:
        return PolicySetup("fixed-split", None, "the budget buys fewer than 2 on-demand GPUs")
    t_nodes, r_nodes = _split_nodes(chosen, max(1, round(total * FIXED_SPLIT_TRAIN_FRACTION)))
    tpool = pools[t_nodes[0][1]]
    t_gpus = sum(g for _, _, g in t_nodes)
    best = _best_training(tpool, w, t_gpus, cost)
    if best is None:
        return PolicySetup("fixed-split", None, f"the model's training state does not fit {t_gpus} {tpool.spec.name} GPUs")
    replicas = _rollout_replicas(r_nodes, pools, w, cost)
    if not replicas:
        return PolicySetup("fixed-split", None, "no rollout replica fits the 75 % share of the GPUs")
    trainer = TrainerSpec(
        tokens_per_second=best.tokens_per_second,
        gpus=t_gpus,
        nodes=tuple(n for n, _, _ in t_nodes),
        pool=tpool.info.name,
        spot=False,
        price_per_hour=t_gpus * tpool.price,
        publish_seconds=0.0,
    )
    rollout_rate = sum(
        e.tokens_per_second
        for node, pool, tp, pp in replicas
        if (e := _decode(pools[pool], w, tp, pp, cost)) is not None
    )
    predicted = min(best.tokens_per_second, rollout_rate)
    setup = _setup(
        "fixed-split", job, od, trainer, tpool.info.name, replicas, job.staleness.max_policy_lag, True,
        settings, predicted, spent,
    )
    return PolicySetup("fixed-split", setup)


def build_policy(name: str, job: RLJobSpec, cluster: Cluster, settings: PlannerSettings | None = None) -> PolicySetup:
    """Place one policy (see the module table)."""
    settings = settings or PlannerSettings()
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; choose from {', '.join(POLICIES)} or all")
    if name == "fixed-split":
        return _fixed_split(job, cluster, settings)
    if name == "sync":
        job0 = _with_eta(job, 0)
        od = on_demand(cluster)
        r = _plan(job0, od, settings)
        if isinstance(r, Infeasible):
            return PolicySetup(name, None, r.message)
        return PolicySetup(name, setup_from_plan(name, r, job0, od, settings, eta=0))
    if name == "homogeneous":
        r = _homogeneous(job, cluster, settings)
        if isinstance(r, Infeasible):
            return PolicySetup(name, None, r.message)
        return PolicySetup(name, setup_from_plan(name, r, job, on_demand(cluster), settings))
    if name == "hexrl":
        od = on_demand(cluster)
        r = _plan(job, od, settings)
        if isinstance(r, Infeasible):
            return PolicySetup(name, None, r.message)
        return PolicySetup(name, setup_from_plan(name, r, job, od, settings))
    r = _plan(job, cluster, settings)
    if isinstance(r, Infeasible):
        return PolicySetup(name, None, r.message)
    return PolicySetup(name, setup_from_plan(name, r, job, cluster, settings, migrate=name == "hexrl-spot"))


def build_policies(
    names: Sequence[str], job: RLJobSpec, cluster: Cluster, settings: PlannerSettings | None = None
) -> list[PolicySetup]:
    """Place several policies; `hexrl-spot-nomigrate` reuses the `hexrl-spot` plan (same placement)."""
    settings = settings or PlannerSettings()
    out: list[PolicySetup] = []
    cache: dict[str, PolicySetup] = {}
    for name in names:
        if name == "hexrl-spot-nomigrate" and "hexrl-spot" in cache and cache["hexrl-spot"].setup is not None:
            base = cache["hexrl-spot"].setup
            assert base is not None
            out.append(PolicySetup(name, replace(base, policy=name, migrate=False)))
            continue
        if name == "hexrl-spot" and "hexrl-spot-nomigrate" in cache and cache["hexrl-spot-nomigrate"].setup is not None:
            base = cache["hexrl-spot-nomigrate"].setup
            assert base is not None
            out.append(PolicySetup(name, replace(base, policy=name, migrate=True)))
            continue
        ps = build_policy(name, job, cluster, settings)
        cache[name] = ps
        out.append(ps)
    return out
