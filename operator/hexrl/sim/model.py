"""What the engine simulates: a planned job reduced to rates, capacities and latencies.

`hexrl.sim.scenario` builds a `SimSetup` from a `Plan` (placement from `hexrl.sched.plan`) and the cost
model (`hexrl.sched.costmodel`); the engine (`hexrl.sim.engine`) only sees these numbers. Keeping this
boundary means the engine never computes a hardware speed itself: every rate below comes from the
planner's cost model. What a run measured comes back as a `SimResult` (with a `SeriesPoint` time series).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hexrl.sim.workload import LengthModel


@dataclass(frozen=True)
class RolloutNode:
    """The job's rollout replicas on one node, aggregated (they share the node's fate)."""

    name: str
    pool: str
    gpu: str
    spot: bool
    gpus: int
    """GPUs of this node that serve rollout."""
    replicas: int
    tokens_per_second: float
    """Σ over the node's replicas of the planner's predicted rollout rate (prompt + response tokens/s
    consumed by training); reported, and the node's share of the fleet."""
    slots: int
    """Σ over the replicas of concurrent sequences (continuous-batching batch size, KV-cache bound)."""
    slot_steps_per_second: float
    """Σ over the replicas of batch / decode-step seconds (cost model): sequence-tokens decoded per
    second when every slot is busy."""
    price_per_gpu_hour: float
    weight_pull_seconds: float
    """Seconds to download one policy version from the trainer's pool to this node (cost model)."""


@dataclass(frozen=True)
class TrainerSpec:
    """The training group."""

    tokens_per_second: float
    """Cost-model training throughput of the planned strategy (prompt + response tokens/s)."""
    gpus: int
    nodes: tuple[str, ...]
    pool: str
    spot: bool
    price_per_hour: float
    """$/h of all trainer GPUs."""
    publish_seconds: float
    """Seconds the trainer is blocked publishing a version to the weight service after each step."""


@dataclass(frozen=True)
class SimSetup:
    """One policy's job on one cluster, as numbers."""

    policy: str
    rollout: tuple[RolloutNode, ...]
    trainer: TrainerSpec
    eta: int
    """Staleness bound η (0 = synchronous RL)."""
    migrate: bool
    """Token-level migration of partial responses on preemption (else they are lost)."""
    groups_per_step: int
    """Prompts per training step (promptsPerStep); B = groups_per_step × group_size trajectories."""
    group_size: int
    """Responses per prompt (GRPO group): a group is scored and trained only when all are done, and
    holds its slots until its longest response ends (the cost model's wave)."""
    prompt_tokens: int
    lengths: LengthModel
    group_overhead_steps: float
    """Per group, the wave's prefill and reward time in decode steps (cost model: wave − longest·step)."""
    reprefill_steps_per_token: float
    """Decode steps a survivor spends re-prefilling one token of a migrated partial response (prefill
    is compute-bound and batched: prefill seconds per token / decode step seconds, ≪ 1)."""
    reward_seconds_per_sample: float
    """Extra scoring latency per trajectory beyond what the cost model's wave already includes (0 by
    default: the scenario folds the reward into `group_overhead_steps`)."""
    weight_update_seconds: float
    """Generation paused on every replica to swap an applied version in, seconds (the cost model's
    host→device copy of a replica's shard; slot-weighted mean over replicas)."""
    wave_seconds: float
    """A wave without that pause, seconds (slot-weighted mean): a worker swaps versions only between
    waves, so it pauses at most once per wave however fast versions come."""
    predicted_tokens_per_second: float
    """The planner's prediction for this placement (for validation and the table)."""
    planned_cost_per_hour: float
    spare_nodes: tuple[tuple[str, str, bool], ...] = ()
    """(node, pool, spot) of nodes the plan left unused: the operator's re-plan moves replicas of a
    reclaimed node onto a spare node of the same pool."""
    notes: tuple[str, ...] = field(default_factory=tuple)


@dataclass
class SeriesPoint:
    """One point of the recorded time series (averages over the interval ending at `time_s`)."""

    time_s: float
    tokens_per_second: float
    samples_per_second: float
    rollout_gpus_serving: int
    spot_gpus_serving: int
    policy_version: int
    buffer_samples: int
    in_flight_samples: int
    staleness_mean: float
    trainer_busy_fraction: float
    cost_per_hour: float


@dataclass
class SimResult:
    """Everything one run measured."""

    policy: str
    hours: float
    seed: int
    trained_steps: int
    trained_tokens: float
    trained_samples: int
    tokens_per_second: float
    samples_per_second: float
    steady_tokens_per_second: float
    """Trained tokens/s after the warm-up fraction (pipeline fill) — compare with the planner."""
    predicted_tokens_per_second: float
    cost_dollars: float
    cost_per_hour: float
    dollars_per_million_tokens: float
    trainer_idle_fraction: float
    gpu_hours_lost_to_preemption: float
    dropped_stale_samples: int
    """Trajectories that finished more than η versions late and were regenerated (waste)."""
    preemptions: int
    returns: int
    staleness_histogram: dict[int, int]
    """Policy lag i − v → number of trained trajectories."""
    gpus: int
    series: list[SeriesPoint] = field(default_factory=list)
    notes: tuple[str, ...] = ()

    def staleness_quantile(self, q: float) -> int:
        """The q-quantile of trained trajectories' policy lag (0 when nothing was trained)."""
        total = sum(self.staleness_histogram.values())
        if total == 0:
            return 0
        need, seen = q * total, 0
        for lag in sorted(self.staleness_histogram):
            seen += self.staleness_histogram[lag]
            if seen >= need:
                return lag
        return max(self.staleness_histogram)

    @property
    def staleness_max(self) -> int:
        return max(self.staleness_histogram, default=0)

    @property
    def staleness_mean(self) -> float:
        total = sum(self.staleness_histogram.values())
        return sum(k * v for k, v in self.staleness_histogram.items()) / total if total else 0.0
