"""The search space of the planner: eligible pools, rollout and training candidates, the MILP to solve.

`build_search_space` turns an RLJob spec and a cluster into a `SearchSpace`: the pools the job may use
(its GPU-type and pool allow-lists, known GPU types, nodes not going away), per pool the undominated rollout
configurations (TP from the pool's chain of sizes — powers of two dividing GPUs per node — that the
rollout engine can split the model's heads over, and PP across whole nodes only when one node cannot
hold the model and `max_pipeline_parallel` allows it, which by default it does not) with their
cost-model rates, latencies and count bounds, the training strategies (DP×TP with and without FSDP, TP
dividing the heads, key/value heads and MLP width as the trainer requires, DP growing only until the
trainer outruns every possible rollout, or past it while the step is not negligible), and the MILP
`Problem` over them. planner.py solves it; assemble.py places and explains the answer. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hexrl.api import reasons
from hexrl.api.models import RLJobSpec
from hexrl.api.trainerlayout import tensor_parallel_fits
from hexrl.sched.catalog import DEFAULT_CATALOG, Catalog, GPUSpec
from hexrl.sched.costmodel import (
    CostModelSettings,
    DecodeEstimate,
    TrainEstimate,
    Workload,
    decode_tokens_per_second,
    group_latency_seconds,
    reprefill_seconds,
    spot_availability,
    training_tokens_per_second,
    weight_sync_seconds,
)
from hexrl.sched.problem import PoolCapacity, Problem, RolloutOption, TrainOption
from hexrl.sched.settings import PlannerSettings
from hexrl.sched.types import (
    Cluster,
    Infeasible,
    NodeInfo,
    PoolInfo,
    TrainerAssignment,
)

__all__ = [
    "EligiblePool",
    "RolloutCandidate",
    "SearchSpace",
    "TrainCandidate",
    "build_search_space",
    "cluster_catalog",
    "size_chain",
]

# ------------------------------------------------------------------------------------ pools


@dataclass(frozen=True)
class EligiblePool:
    """A pool the job may use, with the numbers the cost model needs (inventory values over catalog ones)."""

    info: PoolInfo
    spec: GPUSpec
    nodes: tuple[NodeInfo, ...]
    """Its nodes with free GPUs."""
    price: float
    """$/h per GPU."""
    inter_gbps: float
    """Node-to-node bandwidth inside the pool, Gbit/s."""
    memory_gb: float
    """HBM per GPU, GB."""
    chain: tuple[int, ...]
    """Item sizes (GPUs that must share a node), ascending: see `size_chain`."""

    @property
    def free(self) -> int:
        """Free GPUs over the pool's nodes."""
        return sum(n.gpus_free for n in self.nodes)

    def capacity(self) -> tuple[tuple[int, int], ...]:
        """(size σ, K_σ): the GPUs usable by items of size ≥ σ (σ-aligned free capacity per node)."""
        return tuple((s, sum(s * (n.gpus_free // s) for n in self.nodes)) for s in self.chain)


def size_chain(gpus_per_node: int) -> tuple[int, ...]:
    """The powers of two dividing `gpus_per_node`, and the node size itself: sizes that pack exactly."""
    sizes = [1 << k for k in range(0, 8) if gpus_per_node % (1 << k) == 0 and (1 << k) <= gpus_per_node]
    if gpus_per_node not in sizes:
        sizes.append(gpus_per_node)
    return tuple(sizes)


def cluster_catalog(cluster: Cluster) -> Catalog:
    """The default GPU catalog with the cluster's overrides applied."""
    return DEFAULT_CATALOG.with_specs(cluster.gpu_overrides)


def _eligible(job: RLJobSpec, cluster: Cluster, catalog: Catalog) -> list[EligiblePool] | Infeasible:
    allow_types: set[str] | None = None
    if job.placement.gpu_types:
        allow_types = set()
        for name in job.placement.gpu_types:
            c = catalog.canonical(name)
            if c is None:
                return Infeasible(
                    reasons.UNKNOWN_GPU_TYPE,
                    f"placement.gpuTypes names {name!r}, which is not in the GPU catalog; known types: "
                    f"{', '.join(catalog.names)}",
                )
            allow_types.add(c)
    allow_pools = set(job.placement.pools) if job.placement.pools else None
    out: list[EligiblePool] = []
    for p in cluster.pools:
        spec = catalog.lookup(p.gpu)
        if spec is None:
            continue
        if allow_types is not None and spec.name not in allow_types:
            continue
        if allow_pools is not None and p.name not in allow_pools:
            continue
        nodes = tuple(n for n in cluster.nodes_of(p.name) if n.gpus_free > 0)
        if not nodes:
            continue
        out.append(
            EligiblePool(
                info=p,
                spec=spec,
                nodes=nodes,
                price=p.price_per_gpu_hour if p.price_per_gpu_hour is not None else spec.price(p.spot),
                inter_gbps=p.inter_node_gbps or spec.inter_node_gbps,
                memory_gb=p.gpu_memory_gb or spec.hbm_gb,
                chain=size_chain(p.gpus_per_node),
            )
        )
    if not out:
        what = "the cluster has no GPU nodes with free GPUs"
        if cluster.pools and (allow_types or allow_pools):
            what = "no pool with free GPUs matches placement.gpuTypes/placement.pools"
        return Infeasible(reasons.NO_ELIGIBLE_GPUS, f"{what}; add GPU nodes or widen the job's placement")
    return out


# ------------------------------------------------------------------------------- candidates


@dataclass(frozen=True)
class RolloutCandidate:
    """One rollout configuration (TP × PP on one pool) with its cost-model estimate."""

    pool: EligiblePool
    tp: int
    pp: int
    estimate: DecodeEstimate
    availability: float
    """Fraction of time a replica serves (1 on demand; below 1 on spot)."""


@dataclass(frozen=True)
class TrainCandidate:
    """One training strategy (DP × TP × PP, FSDP or not, on one pool) with its cost-model estimate."""

    pool: EligiblePool
    dp: int
    tp: int
    pp: int
    fsdp: bool
    estimate: TrainEstimate


_STEP_NEGLIGIBLE = 0.005
"""A trainer step shorter than this fraction of the fastest group latency no longer limits the gate."""


def _rollout_candidates(
    pools: Sequence[EligiblePool], w: Workload, job: RLJobSpec, s: CostModelSettings, max_pp: int
) -> list[RolloutCandidate]:
    out: list[RolloutCandidate] = []
    for pool in pools:
        if pool.info.spot and job.placement.spot.rollout == "forbidden":
            continue
        gpn = pool.info.gpus_per_node
        found: list[RolloutCandidate] = []
        for tp in _rollout_tp(pool.chain, job):
            e = decode_tokens_per_second(pool.spec, w, tp, 1, s, pool.inter_gbps, pool.memory_gb)
            if e is not None:
                found.append(RolloutCandidate(pool, tp, 1, e, _availability(pool, w, e, tp, 1, s)))
        if not found:
            whole = sum(1 for n in pool.nodes if n.gpus_free >= gpn)
            for pp in range(2, min(max_pp, whole) + 1):
                e = decode_tokens_per_second(pool.spec, w, gpn, pp, s, pool.inter_gbps, pool.memory_gb)
                if e is not None:
                    found.append(RolloutCandidate(pool, gpn, pp, e, _availability(pool, w, e, gpn, pp, s)))
                    break
        out.extend(_undominated_rollout(found))
    return out


def _availability(pool: EligiblePool, w: Workload, e: DecodeEstimate, tp: int, pp: int, s: CostModelSettings) -> float:
    """Share of time a TP×PP replica in `pool` generates its own work: 1 on demand; on spot, up time less
    re-prefilling partials migrated from reclaimed replicas (`costmodel.spot_availability`)."""
    if not pool.info.spot:
        return 1.0
    reprefill = reprefill_seconds(pool.spec, w, e.batch, tp * pp, s)
    return spot_availability(pool.info.preemptions_per_node_hour, pp, s, reprefill)


def _rollout_tp(chain: Sequence[int], job: RLJobSpec) -> list[int]:
    """TP degrees the rollout engine can run: vLLM splits the query heads evenly and either splits the
    key/value heads evenly or replicates them (TP a multiple of their count)."""
    sh = job.model.shape
    heads = sh.attention_heads or max(1, sh.hidden_size // sh.head_dim)
    return [tp for tp in chain if heads % tp == 0 and (sh.kv_heads % tp == 0 or tp % sh.kv_heads == 0)]


def _undominated_rollout(found: list[RolloutCandidate]) -> list[RolloutCandidate]:
    """Drop c when k = g_c/g_c' copies of a smaller c' give at least its rate with no lower rate per slot."""
    keep = []
    for c in found:
        g = c.tp * c.pp
        dominated = False
        for d in found:
            gd = d.tp * d.pp
            if d is c or gd >= g or g % gd:
                continue
            k = g // gd
            if k * d.estimate.tokens_per_second >= c.estimate.tokens_per_second and (
                d.estimate.tokens_per_second / d.estimate.batch >= c.estimate.tokens_per_second / c.estimate.batch
            ):
                dominated = True
                break
        if not dominated:
            keep.append(c)
    return keep


def _train_candidates(
    pools: Sequence[EligiblePool],
    w: Workload,
    job: RLJobSpec,
    s: CostModelSettings,
    max_pp: int,
    rate_cap: float,
    budget: float | None,
    min_latency: float = 0.0,
) -> list[TrainCandidate]:
    out: list[TrainCandidate] = []
    for pool in pools:
        if pool.info.spot and job.placement.spot.trainer == "forbidden":
            continue
        gpn = pool.info.gpus_per_node
        chain = [tp for tp in pool.chain if tensor_parallel_fits(job.model.shape, tp)]
        layouts = [(tp, 1) for tp in chain]
        fits_one_node = any(
            training_tokens_per_second(pool.spec, w, d, tp, 1, f, s, gpn, pool.inter_gbps, pool.memory_gb)
            for tp in chain
            for f in (False, True)
            for d in {1, max(1, gpn // tp)}
        )
        if not fits_one_node and tensor_parallel_fits(job.model.shape, gpn):
            layouts += [(gpn, pp) for pp in range(2, max_pp + 1)]
        for tp, pp in layouts:
            size = tp * pp
            max_dp = min(w.samples_per_step, pool.free // size)
            if budget is not None:
                # keep DP=1 even when unaffordable, so an infeasible budget is diagnosed as such
                max_dp = min(max_dp, max(1, int(budget // (pool.price * size))))
            for fsdp in (False, True):
                for dp in range(1, max_dp + 1):
                    if fsdp and dp == 1:
                        continue
                    e = training_tokens_per_second(pool.spec, w, dp, tp, pp, fsdp, s, gpn, pool.inter_gbps, pool.memory_gb)
                    if e is None:
                        if not fsdp:
                            break  # replicated states: more DP never fits better
                        continue
                    out.append(TrainCandidate(pool, dp, tp, pp, fsdp, e))
                    if e.tokens_per_second >= rate_cap and e.step_seconds <= _STEP_NEGLIGIBLE * min_latency:
                        # More DP only outruns every possible rollout, and the step is too short to
                        # matter in the gate (T ∝ 1/(ℓ + D + ω): at most this fraction left to gain).
                        break
            if pp > 1 and any(m.pool is pool and m.pp == pp for m in out):
                break  # the smallest PP that fits is enough
    return out


def _one_strategy(
    pools: Sequence[EligiblePool], w: Workload, job: RLJobSpec, s: CostModelSettings, t: TrainerAssignment
) -> list[TrainCandidate]:
    """The current trainer's strategy, if its pool is still eligible and it still fits."""
    for pool in pools:
        if pool.info.name != t.pool or (pool.info.spot and job.placement.spot.trainer == "forbidden"):
            continue
        e = training_tokens_per_second(
            pool.spec, w, t.data_parallel, t.tensor_parallel, t.pipeline_parallel, t.fsdp, s,
            pool.info.gpus_per_node, pool.inter_gbps, pool.memory_gb,
        )
        if e is not None:
            return [TrainCandidate(pool, t.data_parallel, t.tensor_parallel, t.pipeline_parallel, t.fsdp, e)]
    return []


# ------------------------------------------------------------------------------------ problem


@dataclass(frozen=True)
class SearchSpace:
    """What the planner searches: the candidates of a job on a cluster and the MILP `Problem` over them.

    `problem.rollout[i]` is `rollout[i]` and `problem.train[j]` is `train[j]`, so a `Solution`'s indices
    lead back to pools and layouts."""

    problem: Problem
    rollout: tuple[RolloutCandidate, ...]
    train: tuple[TrainCandidate, ...]
    pools: tuple[EligiblePool, ...]
    workload: Workload
    ws_seconds: dict[tuple[str, str], float]
    """Seconds of one weight sync by (trainer pool, rollout pool)."""


def build_search_space(
    job: RLJobSpec, cluster: Cluster, settings: PlannerSettings, only: TrainerAssignment | None = None
) -> SearchSpace | Infeasible:
    """The MILP's data for `job` on `cluster`; with `only`, the one training strategy of that assignment."""
    pools = _eligible(job, cluster, cluster_catalog(cluster))
    if isinstance(pools, Infeasible):
        return pools
    w = Workload.from_spec(job)
    cs = settings.cost
    budget = job.budget.max_cost_per_hour
    rollout = _rollout_candidates(pools, w, job, cs, settings.max_pipeline_parallel)
    if only is None:
        min_latency = min((_latency(m, w, cs) for m in rollout), default=0.0)
        rate_cap = _rollout_rate_cap(job, w, pools, rollout)
        train = _train_candidates(pools, w, job, cs, settings.max_pipeline_parallel, rate_cap, budget, min_latency)
    else:
        train = _one_strategy(pools, w, job, cs, only)
    ropts = tuple(_rollout_option(m, w, cs, budget) for m in rollout)
    ws_seconds, ws_rate = _weight_sync(pools, train, cluster, w, cs)
    any_spot = any(o.spot for o in ropts)
    problem = Problem(
        rollout=ropts,
        train=tuple(_train_option(m) for m in train),
        pools=tuple(PoolCapacity(p.info.name, p.capacity()) for p in pools),
        inflight_cap=float(_inflight(w)),
        budget=budget,
        target=job.budget.target_tokens_per_second,
        ws_rate=ws_rate,
        floor=job.placement.spot.on_demand_rollout_floor if any_spot else 0.0,
        surplus_factor=1.0 + cs.surplus_per_policy_lag * w.max_policy_lag,
        batch=float(w.samples_per_step),
        tokens_per_sample=w.tokens_per_sample,
        policy_lag=w.max_policy_lag,
    )
    return SearchSpace(problem, tuple(rollout), tuple(train), tuple(pools), w, ws_seconds)


def _inflight(w: Workload) -> int:
    """Λ = (η + 1)·B: the samples the staleness gate lets the coordinator request ahead."""
    return (w.max_policy_lag + 1) * w.samples_per_step


def _rollout_rate_cap(
    job: RLJobSpec, w: Workload, pools: Sequence[EligiblePool], rollout: Sequence[RolloutCandidate]
) -> float:
    """An upper bound on any useful rollout rate (the gate's slots at the best rate per slot, and the
    GPUs), or the target when higher: training strategies faster than this only cost more."""
    by_slot = max((m.estimate.tokens_per_second * m.availability / m.estimate.batch for m in rollout), default=0.0)
    by_gpu = sum(
        p.free * max((m.estimate.tokens_per_second * m.availability / (m.tp * m.pp) for m in rollout if m.pool is p), default=0.0)
        for p in pools
    )
    rate_cap = min(by_slot * _inflight(w), by_gpu)
    if job.budget.target_tokens_per_second is not None:
        rate_cap = max(rate_cap, job.budget.target_tokens_per_second)
    return rate_cap


def _rollout_option(m: RolloutCandidate, w: Workload, cs: CostModelSettings, budget: float | None) -> RolloutOption:
    """The MILP's view of a rollout candidate: spot-discounted rate, slots, price, count bound, latency."""
    return RolloutOption(
        pool=m.pool.info.name,
        gpus=m.tp * m.pp,
        item_size=m.tp,
        rate=m.estimate.tokens_per_second * m.availability,
        slots=m.estimate.batch,
        price=m.pool.price * m.tp * m.pp,
        spot=m.pool.info.spot,
        max_count=_max_count(m, budget),
        latency=_latency(m, w, cs),
    )


def _train_option(m: TrainCandidate) -> TrainOption:
    """The MILP's view of a training strategy: GPUs, item size (TP), rate and price."""
    return TrainOption(
        pool=m.pool.info.name,
        gpus=m.dp * m.tp * m.pp,
        item_size=m.tp,
        rate=m.estimate.tokens_per_second,
        price=m.pool.price * m.dp * m.tp * m.pp,
    )


def _weight_sync(
    pools: Sequence[EligiblePool], train: Sequence[TrainCandidate], cluster: Cluster, w: Workload, cs: CostModelSettings
) -> tuple[dict[tuple[str, str], float], tuple[tuple[str, str, float], ...]]:
    """Per (trainer pool, rollout pool) with a training candidate in the first: the seconds of one weight
    sync, and the throughput cap W_{a,b} = tokens per step / those seconds."""
    ws_seconds: dict[tuple[str, str], float] = {}
    ws_rate = []
    trainer_pools = {m.pool.info.name for m in train}
    for a in pools:
        if a.info.name not in trainer_pools:
            continue
        for b in pools:
            link = a.inter_gbps if a.info.name == b.info.name else cluster.inter_pool_gbps
            sec = weight_sync_seconds(w, link, b.inter_gbps, cs)
            ws_seconds[(a.info.name, b.info.name)] = sec
            ws_rate.append((a.info.name, b.info.name, w.tokens_per_step / sec))
    return ws_seconds, tuple(ws_rate)


def _latency(m: RolloutCandidate, w: Workload, cs: CostModelSettings) -> float:
    """ℓ_c: a group's wave, or at η = 0 the wave of the whole batch (its longest response)."""
    n = w.samples_per_step if w.max_policy_lag == 0 else w.group_size
    return group_latency_seconds(m.estimate, w, cs, n)


def _max_count(m: RolloutCandidate, budget: float | None) -> int:
    """Ū_c: the replicas the pool's free GPUs (and the budget) allow."""
    g = m.tp * m.pp
    if m.pp > 1:
        n = sum(1 for node in m.pool.nodes if node.gpus_free >= m.tp) // m.pp
    else:
        n = sum(node.gpus_free // m.tp for node in m.pool.nodes)
    if budget is not None:
        n = min(n, int(budget // (m.pool.price * g)))
    return max(0, n)
