"""Every Prometheus metric the worker runtime exports, defined once.

`SPECS` is the catalogue (name, kind, help, labels, which role exports it); documentation and dashboard
checks are generated from it. Each service builds its own `Metrics` on a private `CollectorRegistry`,
so several services in one process (tests, the local runner) never collide, and serves it at
`/metrics`. Names follow the project rule: `hexrl_` prefix, base units in the name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

Kind = Literal["counter", "gauge", "histogram"]

STALENESS_BUCKETS = (0, 1, 2, 3, 4, 6, 8, 12, 16, 32, 64)
"""Policy-lag buckets (versions): η is at most 64 and typically 0–8."""
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its exposed name (counters without the `_total` suffix prometheus_client adds)."""

    name: str
    kind: Kind
    help: str
    roles: tuple[str, ...]
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    @property
    def exposed_name(self) -> str:
        return f"{self.name}_total" if self.kind == "counter" else self.name


SPECS: tuple[MetricSpec, ...] = (
    # coordinator
    MetricSpec("hexrl_policy_version", "gauge", "Current policy version (trainer optimizer steps).", ("coordinator", "trainer", "rollout")),
    MetricSpec("hexrl_max_policy_lag", "gauge", "The staleness bound η in force (versions).", ("coordinator",)),
    MetricSpec("hexrl_buffer_depth", "gauge", "Trajectories received and not yet trained (complete and incomplete groups).", ("coordinator",)),
    MetricSpec("hexrl_buffer_ready_groups", "gauge", "Complete GRPO groups waiting to be trained.", ("coordinator",)),
    MetricSpec("hexrl_inflight_trajectories", "gauge", "Trajectories dispatched to rollout workers and not returned.", ("coordinator",)),
    MetricSpec("hexrl_observed_staleness", "histogram", "Policy lag (trainer version minus oldest token version) of each trained sample.", ("coordinator",), buckets=STALENESS_BUCKETS),
    MetricSpec("hexrl_trainer_idle_seconds", "counter", "Seconds the trainer waited for a batch.", ("coordinator",)),
    MetricSpec("hexrl_trained_tokens", "counter", "Prompt+response tokens of trained trajectories.", ("coordinator",)),
    MetricSpec("hexrl_trained_trajectories", "counter", "Trajectories served to the trainer.", ("coordinator",)),
    MetricSpec("hexrl_trained_steps", "counter", "Trainer steps acknowledged.", ("coordinator",)),
    MetricSpec("hexrl_generated_tokens", "counter", "Response tokens received from rollout workers.", ("coordinator",)),
    MetricSpec("hexrl_trajectories", "counter", "Complete trajectories received from rollout workers.", ("coordinator",)),
    MetricSpec("hexrl_samples_invalid", "counter", "Trajectories and partials dropped because training on them would fail (non-finite reward or log-prob, token id outside the vocabulary, too long); their samples are generated again.", ("coordinator",), ("reason",)),
    MetricSpec("hexrl_groups_discarded", "counter", "GRPO groups abandoned because a rollout worker could not use a sample (reason: prompt-too-long, prompt-template-error, reward-error, reward-not-finite, reward-timeout); never trained on, the prompt is not queued again.", ("coordinator",), ("reason",)),
    MetricSpec("hexrl_prompts_dispatched", "counter", "Prompts (GRPO groups) handed to rollout workers.", ("coordinator",)),
    MetricSpec("hexrl_gate_blocked", "counter", "Work requests refused by the staleness gate.", ("coordinator",)),
    MetricSpec("hexrl_dropped_stale", "counter", "Trajectories dropped because their lag would exceed η; their prompt is re-queued.", ("coordinator",)),
    MetricSpec("hexrl_partials_received", "counter", "Partial responses handed in by stopping workers.", ("coordinator",)),
    MetricSpec("hexrl_partials_migrated", "counter", "Partial responses re-dispatched to another worker for continuation.", ("coordinator",)),
    MetricSpec("hexrl_rejected_requests", "counter", "Requests answered with a 4xx, by reason.", ("coordinator", "trainer", "rollout"), labels=("reason",)),
    MetricSpec("hexrl_reward_mean", "gauge", "Mean reward of the last trained batch.", ("coordinator",)),
    MetricSpec("hexrl_eval_version", "gauge", "Policy version of the latest finished held-out evaluation.", ("coordinator",)),
    MetricSpec("hexrl_eval_prompts", "gauge", "Held-out prompts in the latest finished evaluation.", ("coordinator",)),
    MetricSpec("hexrl_eval_greedy_accuracy", "gauge", "Share of held-out prompts whose greedy response has reward ≥ 0.5 (latest evaluation).", ("coordinator",)),
    MetricSpec("hexrl_eval_pass_at_k", "gauge", "Unbiased pass@k over the held-out prompts (latest evaluation); k=1 is the mean share of correct samples.", ("coordinator",), ("k",)),
    # rollout
    MetricSpec("hexrl_rollout_samples_discarded", "counter", "Samples this worker gave up on (reason: prompt-too-long, prompt-template-error, reward-error, reward-not-finite, reward-timeout); the coordinator abandons their groups.", ("rollout",), ("reason",)),
    MetricSpec("hexrl_rollout_generated_tokens", "counter", "Response tokens generated by this worker.", ("rollout",)),
    MetricSpec("hexrl_rollout_weight_updates", "counter", "Weight versions loaded by this worker.", ("rollout",)),
    MetricSpec("hexrl_rollout_weights_prefetched", "counter", "Weight versions swapped in from a download made while the engine generated (the rest were pulled at the wave boundary).", ("rollout",)),
    MetricSpec("hexrl_rollout_weight_pause_seconds", "histogram", "Generation paused per version swapped in: the copy into the engine, plus the download when it had not been prefetched during generation.", ("rollout",), buckets=SECONDS_BUCKETS),
    MetricSpec("hexrl_rollout_generate_seconds", "histogram", "Wall time to generate one work item (a group).", ("rollout",), buckets=SECONDS_BUCKETS),
    MetricSpec("hexrl_rollout_reward_seconds", "histogram", "Wall time to score one sample (the reward process round trip included; a timed-out sample counts its timeout).", ("rollout",), buckets=SECONDS_BUCKETS),
    # weights
    MetricSpec("hexrl_weight_served_bytes", "counter", "Weight bytes served to clients (trainer: egress; relays: peer traffic).", ("trainer", "rollout")),
    MetricSpec("hexrl_weight_fetched_bytes", "counter", "Weight bytes downloaded, by source kind.", ("rollout",), labels=("source",)),
    MetricSpec("hexrl_weight_chunk_rejected", "counter", "Downloaded weight chunks rejected by the digest check (then re-fetched).", ("rollout",)),
    MetricSpec("hexrl_weight_pull_seconds", "histogram", "Wall time to pull and verify one weight version.", ("rollout",), buckets=SECONDS_BUCKETS),
    # trainer
    MetricSpec("hexrl_trainer_step_seconds", "histogram", "Wall time of one optimizer step (excluding the wait for data).", ("trainer",), buckets=SECONDS_BUCKETS),
    MetricSpec("hexrl_trainer_loss", "gauge", "Loss of the last step.", ("trainer",)),
    MetricSpec("hexrl_checkpoint_seconds", "histogram", "Wall time to write one complete checkpoint.", ("trainer",), buckets=SECONDS_BUCKETS),
    MetricSpec("hexrl_checkpoints_damaged", "counter", "Checkpoints passed over at start-up because a file was missing, truncated or did not match its recorded BLAKE3.", ("trainer",)),
)

_BY_NAME = {s.name: s for s in SPECS}


class Metrics:
    """The metrics of one service (role), on their own registry."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.registry = CollectorRegistry(auto_describe=True)
        self._m: dict[str, Counter | Gauge | Histogram] = {}
        for spec in SPECS:
            if role not in spec.roles:
                continue
            if spec.kind == "counter":
                self._m[spec.name] = Counter(spec.name, spec.help, spec.labels, registry=self.registry)
            elif spec.kind == "gauge":
                self._m[spec.name] = Gauge(spec.name, spec.help, spec.labels, registry=self.registry)
            else:
                self._m[spec.name] = Histogram(
                    spec.name, spec.help, spec.labels, buckets=spec.buckets, registry=self.registry
                )

    def __getitem__(self, name: str):  # type: ignore[no-untyped-def]
        if name not in self._m:
            known = "known" if name in _BY_NAME else "undefined"
            raise KeyError(f"metric {name} ({known}) is not exported by role {self.role}")
        return self._m[name]

    def render(self) -> tuple[bytes, str]:
        """Exposition body and content type for `/metrics`."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
