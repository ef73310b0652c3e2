"""Settings of the simulator: the operator's reaction times and the simulation's own resolution.

Everything that the cost model knows (decode speed, training speed, weight-sync time, reward cost) is
NOT here: the simulator reads it from `hexrl.sched.costmodel` so that the planner and the simulator can
never disagree about the hardware. What lives here is what the cost model does not describe: how long
the control loop takes to react to a preemption, how long a pod takes to start, how long spot capacity
stays away, and how finely the simulator records its time series.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SimSettings:
    """Knobs of one simulation run (defaults are typical of a managed Kubernetes GPU cluster)."""

    replan_seconds: float = 1.0
    """Seconds from a node event to the operator's new plan (watch latency + `replan()` + one status
    write). Default 1 s: the planner answers in milliseconds, the watch and the write dominate."""

    pod_start_seconds: float = 90.0
    """Seconds from the plan to a rollout pod that serves requests (scheduling, image already cached on
    the node, engine start, model load from the node's disk). Default 90 s, typical for vLLM with a
    cached image; the weight pull of the current version comes on top (from the cost model)."""

    preemption_notice_seconds: float = 30.0
    """Warning a spot node gets before it is reclaimed (GCP 30 s, AWS 120 s). Token-level migration
    needs the notice to hand partial responses over; default 30 s, the shortest common one."""

    migration_handoff_seconds: float = 2.0
    """Seconds a survivor needs before it continues a migrated partial response (the coordinator
    re-dispatches it; the survivor re-prefills prompt + tokens so far). Default 2 s."""

    mean_spot_outage_hours: float = 0.5
    """Mean time a reclaimed spot node stays away before capacity returns (Poisson traces only;
    exponential). Default 0.5 h, the order of magnitude reported for GPU spot markets."""

    reward_parallelism: int = 256
    """Reward workers scoring trajectories in parallel (CPU processes of the coordinator / reward pods):
    a trajectory waits reward_seconds_per_sample × max(1, B / reward_parallelism) after it finishes."""

    samples_per_series: int = 240
    """Number of points of the recorded time series over the whole run (the sampling interval is
    hours / this). Default 240: one point every 6 minutes of a 24-hour run."""

    drop_stale: bool = True
    """Drop (and regenerate) finished groups whose lag already exceeds η instead of training on them:
    the rule of DESIGN.md §1 (train on version v only while i − v ≤ η), so every trained lag is ≤ η and
    the regenerated work is reported. Off: train on stragglers anyway and report the measured lags."""

    warmup_fraction: float = 0.1
    """Leading fraction of the run left out of the steady-state throughput (pipeline fill). 0.1."""

    def __post_init__(self) -> None:
        for name in ("replan_seconds", "pod_start_seconds", "preemption_notice_seconds",
                     "migration_handoff_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"SimSettings.{name} must be non-negative")
        if self.mean_spot_outage_hours <= 0:
            raise ValueError("SimSettings.mean_spot_outage_hours must be positive")
        if self.reward_parallelism < 1 or self.samples_per_series < 2:
            raise ValueError("SimSettings.reward_parallelism must be ≥ 1 and samples_per_series ≥ 2")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError("SimSettings.warmup_fraction must be in [0, 1)")
