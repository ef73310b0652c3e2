"""Typed inputs and outputs of the planner: the cluster snapshot, the plan, and infeasibility.

This module is the contract between the planner (`hexrl.sched`), the operator (`hexrl.k8s`, which builds
a `Cluster` from Node objects and renders a `Plan` into pods), the simulator (`hexrl.sim`) and the CLI.
Everything here is a frozen dataclass: the planner never mutates its inputs, and a plan can be compared,
hashed and diffed. Names may be added; existing names are not renamed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hexrl.sched.catalog import GPUSpec

# ------------------------------------------------------------------------------------------ cluster


@dataclass(frozen=True)
class NodeInfo:
    """One GPU node as the planner sees it."""

    name: str
    """Node name (the Kubernetes Node's metadata.name, or `<pool>-<i>` from an inventory)."""
    pool: str
    """Node pool name (karpenter.sh/nodepool, cloud.google.com/gke-nodepool, … or hexrl.dev/pool)."""
    gpu: str
    """GPU catalog name, e.g. H800."""
    gpus: int
    """Allocatable GPUs on the node."""
    spot: bool = False
    """Preemptible capacity."""
    zone: str = ""
    """topology.kubernetes.io/zone (failure domain)."""
    clique: str = ""
    """NVLink/NVSwitch domain across nodes (nvidia.com/gpu.clique), empty when none."""
    gpus_used_by_others: int = 0
    """GPUs already allocated to pods that are not this job's (unavailable to the plan)."""
    going_away: bool = False
    """Cordoned, tainted for reclaim/termination, NotReady or being deleted: plan nothing new here."""

    @property
    def gpus_free(self) -> int:
        """GPUs this job may use on the node."""
        return 0 if self.going_away else max(0, self.gpus - self.gpus_used_by_others)


@dataclass(frozen=True)
class PoolInfo:
    """A node pool: homogeneous GPU type and capacity type."""

    name: str
    gpu: str
    gpus_per_node: int
    spot: bool = False
    zone: str = ""
    price_per_gpu_hour: float | None = None
    """$/GPU-hour for this pool; None = the catalog's default for the GPU type and capacity type."""
    inter_node_gbps: float | None = None
    """GB/s between two nodes of this pool; None = the catalog's default for the GPU type."""
    preemptions_per_node_hour: float = 0.0
    """Expected spot reclaims per node-hour (0 for on-demand)."""
    gpu_memory_gb: float | None = None
    """HBM per GPU when it differs from the catalog (e.g. nvidia.com/gpu.memory label)."""
    real: bool = False
    """`hexrl cluster up` only: the pool's nodes are real kubelet nodes on this machine that run containers
    (CPU stands in for the advertised GPUs); False = simulated by kwok. The planner treats both alike."""


@dataclass(frozen=True)
class Cluster:
    """A snapshot of the GPU inventory."""

    pools: tuple[PoolInfo, ...]
    nodes: tuple[NodeInfo, ...]
    inter_pool_gbps: float = 1.5
    """Default GB/s between nodes of different pools."""
    gpu_overrides: tuple[GPUSpec, ...] = ()
    """GPU specs that replace or extend the shipped catalog for this cluster (an inventory's `catalog:`)."""

    def pool(self, name: str) -> PoolInfo | None:
        """The pool called `name`, or None."""
        return next((p for p in self.pools if p.name == name), None)

    def nodes_of(self, pool: str) -> tuple[NodeInfo, ...]:
        """The nodes of one pool, in snapshot order."""
        return tuple(n for n in self.nodes if n.pool == pool)


# ---------------------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class TrainerAssignment:
    """Where and how training runs: one GPU type, DP × TP × PP ranks (FSDP shards over DP when set)."""

    gpu: str
    pool: str
    data_parallel: int
    tensor_parallel: int
    pipeline_parallel: int
    fsdp: bool
    nodes: tuple[str, ...]
    """Node of each rank's GPU group, in rank order (len == number of nodes used, GPUs spread per node)."""
    gpus_per_node: tuple[int, ...]
    """GPUs used on each node of `nodes`."""
    tokens_per_second: float
    """Predicted training throughput (prompt + response tokens consumed per second)."""

    @property
    def gpus(self) -> int:
        return self.data_parallel * self.tensor_parallel * self.pipeline_parallel


@dataclass(frozen=True)
class RolloutReplica:
    """One inference engine instance (e.g. one vLLM server) spanning `gpus` GPUs of `nodes`."""

    pool: str
    gpu: str
    tensor_parallel: int
    pipeline_parallel: int
    nodes: tuple[str, ...]
    """One node for TP-only replicas; several for PP across nodes."""
    spot: bool
    tokens_per_second: float
    """Predicted generated+prompt tokens/s of this replica."""

    @property
    def gpus(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel


@dataclass(frozen=True)
class RolloutGroup:
    """Replicas of one configuration on one pool (what the CLI and status show)."""

    gpu: str
    pool: str
    replicas: int
    gpus_per_replica: int
    spot: bool
    nodes: tuple[str, ...]
    tokens_per_second: float


@dataclass(frozen=True)
class Baseline:
    """The best homogeneous plan on one GPU type at the same budget, for comparison."""

    gpu: str
    tokens_per_second: float
    cost_per_hour: float
    feasible: bool
    reason: str = ""


@dataclass(frozen=True)
class Change:
    """What `replan` moved and why."""

    kind: str
    """added | removed | moved | resized | kept"""
    role: str
    """trainer | rollout"""
    detail: str


@dataclass(frozen=True)
class Plan:
    """A feasible plan with its explanation."""

    trainer: TrainerAssignment
    replicas: tuple[RolloutReplica, ...]
    tokens_per_second: float
    """Predicted end-to-end throughput: min(rollout, training, weight-sync-limited) tokens/s consumed by training."""
    samples_per_second: float
    cost_per_hour: float
    rollout_tokens_per_second: float
    training_tokens_per_second: float
    bottleneck: str
    """rollout | training | weight-sync | budget"""
    staleness_predicted: float
    """Predicted steady-state policy lag of trained samples (≤ η)."""
    buffer_depth: int
    """Predicted trajectories waiting in the coordinator's buffer at steady state."""
    weight_sync_seconds: float
    solve_seconds: float
    solver: str
    """e.g. HiGHS, CBC, greedy"""
    solver_status: str
    """The solver's own status, e.g. Optimal."""
    baselines: tuple[Baseline, ...] = ()
    changes: tuple[Change, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def gpus(self) -> int:
        return self.trainer.gpus + sum(r.gpus for r in self.replicas)

    @property
    def dollars_per_million_tokens(self) -> float:
        return self.cost_per_hour / (self.tokens_per_second * 3600 / 1e6) if self.tokens_per_second > 0 else 0.0

    def gpus_per_node(self) -> dict[str, int]:
        """GPUs the plan uses on each node (trainer ranks plus rollout replicas; a PP replica spreads evenly)."""
        used: dict[str, int] = {}
        for node, g in zip(self.trainer.nodes, self.trainer.gpus_per_node, strict=False):
            used[node] = used.get(node, 0) + g
        for r in self.replicas:
            per = r.gpus // max(1, len(r.nodes))
            for n in r.nodes:
                used[n] = used.get(n, 0) + per
        return used

    def rollout_groups(self) -> tuple[RolloutGroup, ...]:
        """Replicas aggregated per (pool, configuration), in a stable order."""
        groups: dict[tuple[str, str, int, bool], list[RolloutReplica]] = {}
        for r in self.replicas:
            groups.setdefault((r.pool, r.gpu, r.gpus, r.spot), []).append(r)
        return tuple(
            RolloutGroup(
                gpu=gpu,
                pool=pool,
                replicas=len(rs),
                gpus_per_replica=g,
                spot=spot,
                nodes=tuple(sorted({n for r in rs for n in r.nodes})),
                tokens_per_second=sum(r.tokens_per_second for r in rs),
            )
            for (pool, gpu, g, spot), rs in sorted(groups.items())
        )


@dataclass(frozen=True)
class Infeasible:
    """No plan exists; `reason` is a constant from hexrl.api.reasons, `message` a sentence a user can act on."""

    reason: str
    message: str
    solve_seconds: float = 0.0
    baselines: tuple[Baseline, ...] = ()


PlanResult = Plan | Infeasible
