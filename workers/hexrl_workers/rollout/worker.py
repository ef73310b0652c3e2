"""The rollout worker loop: pull work, keep weights current, generate, score, push; stop gracefully.

Loop (until stopped or the job is done):
1. if the coordinator's policy version (returned with every work response) differs from the engine's,
   load exactly that version in place — between requests, so a response's tokens change version only
   across a migration. The download has usually happened meanwhile (`prefetch.WeightPrefetcher` pulls a
   new version while the engine generates), so generation pauses only for the copy into the engine;
2. ask for up to `max_items` work items (long-poll); generate all their samples in one engine batch;
3. score finished responses with the job's reward function and push them as trajectories.

Held-out evaluation items (`WorkItem.evaluation`) are generated in the same engine batch at their own
temperature (greedy = 0) and come back as `EvalResult`s with the version of the weights that generated them;
a reward function that fails on one scores it 0 (an evaluation sample is never dropped, which would bias the
numbers towards the answers the reward can read). An evaluation item interrupted by a stop is released
whole, not handed in as partials: nothing is trained on it, so it is simply generated again elsewhere.

Stopping (SIGTERM = preemption, or `stop()`): the stop flag is checked between tokens, so generation
returns at once with the tokens so far; finished responses are pushed as trajectories, unfinished ones
as `PartialResponse`s (tokens, log-probs, per-token versions) and items not started are released. The
coordinator re-dispatches each partial to another worker, which continues from its last token. All of
this is one HTTP call, well inside Kubernetes' default 30 s grace period.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from hexrl.api.dataspec import PromptSpec
from hexrl_workers.coordinator_client import CoordinatorClient, CoordinatorError, CoordinatorUnavailable
from hexrl_workers.metrics import Metrics
from hexrl_workers.protocol import (
    DiscardedSample,
    DiscardReason,
    EvalResult,
    PartialResponse,
    Trajectory,
    TrajectoryBatchIn,
    WeightManifest,
    WorkItem,
    WorkReport,
)
from hexrl_workers.reward import RewardFn
from hexrl_workers.reward.runner import RewardFailed, RewardTimeout
from hexrl_workers.rollout.engine import Engine, GenRequest, GenResult
from hexrl_workers.rollout.prefetch import WeightPrefetcher
from hexrl_workers.rollout.prompts import PromptEncoder, PromptError
from hexrl_workers.statusserver import Readiness
from hexrl_workers.tasks import Tokenizer
from hexrl_workers.weights.client import WeightClient, WeightPullError
from hexrl_workers.weights.store import unpack

log = logging.getLogger(__name__)


@dataclass
class RolloutSettings:
    """Knobs of one rollout worker."""

    worker_id: str
    """Unique name (pod name in Kubernetes)."""
    max_items: int = 4
    """Work items (groups) generated together in one engine batch: larger batches use the hardware
    better, smaller ones pick up new weights sooner."""
    max_new_tokens: int = 256
    """Response length cap (spec.generation.maxNewTokens)."""
    max_prompt_tokens: int | None = None
    """Longest prompt in tokens, after the chat template (spec.generation.maxPromptTokens); a longer one is
    discarded as prompt-too-long, never truncated (a cut prompt may lose the question). None: no limit."""
    wait_seconds: float = 1.0
    """Long-poll per work request, seconds."""
    rollback_retry_seconds: float = 0.5
    """Pause before asking again while the job's (rolled-back) version is not yet published, seconds."""
    idle_exit_seconds: float | None = None
    """Exit after this long without work once the coordinator reports the job done (None: on done)."""
    gpu_type: str | None = None
    """GPU type of the pod (HEXRL_GPU_TYPE, rendered by the operator from the plan): each push then reports
    the engine's work (`WorkReport`, phase decode) for the operator's calibration. None: no report."""
    gpus: int = 1
    """GPUs the engine runs on (the replica's tensor-parallel degree): busy seconds × this = GPU-seconds."""


class RolloutWorker:
    def __init__(
        self, settings: RolloutSettings, engine: Engine, tokenizer: Tokenizer, reward: RewardFn,
        coordinator: CoordinatorClient, weights: WeightClient | None, metrics: Metrics | None = None, *,
        prompts: PromptEncoder | None = None,
    ) -> None:
        self.s = settings
        self.engine = engine
        self.tok = tokenizer
        self.prompts = prompts or PromptEncoder(PromptSpec(), tokenizer)
        """How a prompt becomes token ids (spec.prompt: template and chat template)."""
        self.reward = reward
        """Called per finished sample: a RewardRunner (reward process with a timeout) or a plain function."""
        self.coord = coordinator
        self.weights = weights
        self.metrics = metrics or Metrics("rollout")
        self.readiness = Readiness("waiting for the coordinator")
        """Ready once the coordinator answered a work request (the pod's /readyz)."""
        self.stop_event = threading.Event()
        # stop (SIGTERM) turns coordinator retries off, so a worker whose coordinator is gone still exits
        if isinstance(coordinator, CoordinatorClient):
            coordinator.abort = self.stop_event
        # called with each version loaded (manifest, blob): e.g. publish it on this worker's relay server
        self.on_weights: Callable[[WeightManifest, bytearray], None] | None = None
        self.prefetch = WeightPrefetcher(weights, lambda: self.engine.version) if weights is not None else None
        """Where every version comes from: downloaded while the engine generates once it is given the job's
        version to poll (`job_version`; started and stopped by `run`), else pulled at the wave boundary."""
        self.items_done = 0
        self._busy_since: float | None = None
        """When the work being processed arrived (None: `process` called on its own, e.g. in tests)."""
        self._unreported_busy = 0.0
        """Busy seconds not yet reported: the last push (it happens after its report is built)."""

    def stop(self) -> None:
        self.stop_event.set()

    # ------------------------------------------------------------------------------------- weights

    def maybe_update_weights(self, coordinator_version: int) -> None:
        """Load exactly the coordinator's version when the engine differs from it.

        Exactly, not "the latest": the trainer publishes version v+1 just before announcing it, and a
        trajectory claiming a version the coordinator has not seen would be refused. A *lower* version
        is loaded too: after the trainer resumes from a checkpoint the job rolls back."""
        if self.weights is None:
            return
        if coordinator_version == self.engine.version:
            if self.on_weights is not None:  # relaying: keep the origin's entry for this version alive
                self.weights.keep_announced(coordinator_version)
            return
        assert self.prefetch is not None  # made with the weight client
        paused = time.monotonic()
        prefetched = self.prefetch.prefetched
        try:
            manifest, blob = self.prefetch.take(coordinator_version)
        except WeightPullError as exc:
            log.warning("weight pull of version %d failed (%s); still at version %d",
                        coordinator_version, exc, self.engine.version)
            return
        self.engine.load_weights(unpack(manifest, blob), manifest.version)
        self.metrics["hexrl_rollout_weight_pause_seconds"].observe(time.monotonic() - paused)
        if self.prefetch.prefetched > prefetched:
            self.metrics["hexrl_rollout_weights_prefetched"].inc()
        self.metrics["hexrl_rollout_weight_updates"].inc()
        self.metrics["hexrl_policy_version"].set(manifest.version)
        if self.on_weights is not None:
            self.on_weights(manifest, blob)
            self.weights.announce(manifest.version)
        self.prefetch.recycle(blob)

    # ---------------------------------------------------------------------------------- generation

    def _requests(self, items: list[WorkItem]) -> tuple[list[GenRequest], list[tuple[WorkItem, int]],
                                                        list[DiscardedSample]]:
        """The engine requests of `items`' samples, and the items whose prompt cannot be used, discarded
        (one sample reported per item: the coordinator abandons the whole group)."""
        reqs, where, discarded = [], [], []
        for item in items:
            ptoks = self._prompt_tokens(item)
            if isinstance(ptoks, DiscardedSample):
                discarded.append(ptoks)
                continue
            for spec in item.samples:
                temperature = item.evaluation.temperature if item.evaluation is not None else None
                reqs.append(GenRequest(ptoks, self.s.max_new_tokens, spec.prefix_tokens, spec.prefix_logprobs,
                                       spec.prefix_versions, temperature))
                where.append((item, spec.sample_index))
        return reqs, where, discarded

    def _prompt_tokens(self, item: WorkItem) -> list[int] | DiscardedSample:
        first = item.samples[0].sample_index
        try:
            ptoks = self.prompts.encode(item.prompt)
        except PromptError as exc:
            return self._discard(item, first, "prompt-template-error", str(exc))
        limit = self.s.max_prompt_tokens
        if limit is not None and len(ptoks) > limit:
            return self._discard(item, first, "prompt-too-long",
                                 f"{len(ptoks)} prompt tokens > generation.maxPromptTokens {limit}")
        return ptoks

    def _score(self, item: WorkItem, idx: int, ptoks: list[int], res: GenResult) -> Trajectory | DiscardedSample:
        """The scored trajectory, or the sample discarded when its reward raised, overran its timeout or is not
        a finite number (never trained on: one NaN reward makes the loss NaN)."""
        text = self.tok.decode([t for t in res.tokens if t != self.engine_eos])
        t0 = time.monotonic()
        try:
            reward = float(self.reward(text, item.prompt.answer, item.prompt.text))
        except RewardTimeout as exc:  # the runner killed the reward process; it starts afresh for the next sample
            return self._discard(item, idx, "reward-timeout", str(exc))
        except RewardFailed as exc:  # raised in the reward process: its own "Type: message"
            return self._discard(item, idx, "reward-error", str(exc))
        except Exception as exc:  # a user's reward function may raise anything; the sample is dropped, counted
            return self._discard(item, idx, "reward-error", f"{type(exc).__name__}: {exc}")
        finally:
            self.metrics["hexrl_rollout_reward_seconds"].observe(time.monotonic() - t0)
        if not math.isfinite(reward):
            return self._discard(item, idx, "reward-not-finite", f"the reward function returned {reward}")
        return Trajectory(
            item_id=item.item_id, epoch=item.epoch, group_id=item.group_id, group_size=item.group_size,
            sample_index=idx, prompt_id=item.prompt.prompt_id, prompt_tokens=ptoks, tokens=res.tokens,
            logprobs=res.logprobs, versions=res.versions, reward=reward,
            worker_id=self.s.worker_id, finished=res.finished,
        )

    def _score_evaluation(self, item: WorkItem, idx: int, res: GenResult) -> EvalResult:
        """The scored evaluation response (reward 0 when the reward function fails on it)."""
        assert item.evaluation is not None
        text = self.tok.decode([t for t in res.tokens if t != self.engine_eos])
        try:
            reward = float(self.reward(text, item.prompt.answer, item.prompt.text))
        except Exception as exc:  # a user's reward function may raise anything: the answer is not accepted
            log.warning("evaluation prompt %d: the reward function raised %s: %s; scored 0",
                        item.prompt.prompt_id, type(exc).__name__, exc)
            reward = 0.0
        if not math.isfinite(reward):
            reward = 0.0
        return EvalResult(
            item_id=item.item_id, epoch=item.epoch, evaluation=item.evaluation, prompt_id=item.prompt.prompt_id,
            sample_index=idx, reward=reward, generated_version=min(res.versions, default=self.engine.version),
            response_tokens=len(res.tokens), worker_id=self.s.worker_id,
        )

    def _discard(self, item: WorkItem, idx: int, reason: DiscardReason, detail: str) -> DiscardedSample:
        self.metrics["hexrl_rollout_samples_discarded"].labels(reason).inc()
        log.warning("prompt %d sample %d discarded (%s): %s", item.prompt.prompt_id, idx, reason, detail)
        return DiscardedSample(item_id=item.item_id, epoch=item.epoch, group_id=item.group_id, sample_index=idx,
                               prompt_id=item.prompt.prompt_id, reason=reason, detail=detail[:2000])

    @property
    def engine_eos(self) -> int:
        return self.tok.eos_id

    def process(self, items: list[WorkItem]) -> TrajectoryBatchIn:
        """Generate every sample of `items`; the result holds trajectories and, if stopped, partials."""
        reqs, where, discarded = self._requests(items)
        out = TrajectoryBatchIn(worker_id=self.s.worker_id, discarded=discarded)
        if not reqs:
            return out
        t0 = time.monotonic()
        results = self.engine.generate(reqs, self.stop_event)
        busy = time.monotonic() - t0
        self.metrics["hexrl_rollout_generate_seconds"].observe(busy)
        generated = 0
        for req, (item, idx), res in zip(reqs, where, results, strict=True):
            new = max(0, len(res.tokens) - len(req.prefix_tokens))
            generated += new
            self.metrics["hexrl_rollout_generated_tokens"].inc(new)
            if item.evaluation is not None:
                self._collect_evaluation(out, item, idx, res)
            elif res.interrupted:
                out.partials.append(PartialResponse(
                    item_id=item.item_id, epoch=item.epoch, group_id=item.group_id, sample_index=idx,
                    prompt_id=item.prompt.prompt_id, tokens=res.tokens, logprobs=res.logprobs,
                    versions=res.versions, worker_id=self.s.worker_id,
                ))
            else:
                scored = self._score(item, idx, req.prompt_tokens, res)
                if isinstance(scored, DiscardedSample):
                    out.discarded.append(scored)
                else:
                    out.trajectories.append(scored)
        if self._busy_since is not None:  # in the loop: busy since the work arrived, and the last push
            busy = time.monotonic() - self._busy_since + self._unreported_busy
            self._unreported_busy = 0.0
        out.work = self._work_report(generated, busy)
        return out

    def _work_report(self, generated: int, busy_seconds: float) -> list[WorkReport]:
        """The work as decode work of this pod's GPU type: generated tokens over the GPU-seconds the worker was
        busy with them — weight update, prefill and decode, reward, pushing results; not waiting for work,
        which the staleness gate decides. The operator compares it with the cost model's prediction of the
        same (`hexrl.sched.onlinecalibration`)."""
        if not self.s.gpu_type or busy_seconds <= 0:
            return []
        return [WorkReport(gpu=self.s.gpu_type, phase="decode", tokens=generated,
                           seconds=busy_seconds * max(1, self.s.gpus))]

    def _collect_evaluation(self, out: TrajectoryBatchIn, item: WorkItem, idx: int, res: GenResult) -> None:
        if not res.interrupted:
            out.evaluations.append(self._score_evaluation(item, idx, res))
        elif item.item_id not in out.released_item_ids:
            out.released_item_ids.append(item.item_id)

    # ---------------------------------------------------------------------------------------- loop

    def run(self) -> int:
        """Work until stopped or the job is done; returns the number of items processed.

        Stopped while the coordinator is unreachable, it exits without retrying (what it held is
        re-dispatched by the coordinator's lease expiry, if the coordinator comes back)."""
        if self.prefetch is not None:
            self.prefetch.start()
        try:
            return self._run()
        except CoordinatorUnavailable as exc:
            if not self.stop_event.is_set():
                raise
            log.warning("stopping without handing work in: %s", exc)
            return self.items_done
        finally:
            if self.prefetch is not None:
                self.prefetch.stop()
            close = getattr(self.reward, "close", None)  # a RewardRunner's reward process ends with the worker
            if close is not None:
                close()

    def _run(self) -> int:
        while not self.stop_event.is_set():
            try:
                resp = self.coord.work(self.s.worker_id, self.s.max_items, self.s.wait_seconds)
            except CoordinatorError as exc:
                log.error("coordinator refused work request: %s", exc)
                time.sleep(1.0)
                continue
            self.readiness.set_ready()
            self._busy_since = time.monotonic()
            if self.stop_event.is_set():
                if resp.items:
                    self.coord.push(TrajectoryBatchIn(worker_id=self.s.worker_id,
                                                      released_item_ids=[i.item_id for i in resp.items]))
                break
            self.maybe_update_weights(resp.policy_version)
            if resp.items and self._ahead_of(resp.policy_version):
                self._give_back(resp.items)
                continue
            if not resp.items:
                if self._job_done():
                    break
                continue
            out = self.process(resp.items)
            pushed = time.monotonic()
            try:
                self.coord.push(out)
            except CoordinatorError as exc:  # e.g. 413: a sample over the job's limits; its lease runs out
                log.error("coordinator refused the results of %d item(s): %s", len(resp.items), exc)
            self._unreported_busy += time.monotonic() - pushed
            self.items_done += len(resp.items)
            if out.partials:
                log.info("stopping: handed %d partial responses to the coordinator", len(out.partials))
        return self.items_done

    def _ahead_of(self, coordinator_version: int) -> bool:
        """True when the engine holds weights newer than the job's version.

        That happens after the trainer resumes from a checkpoint (the job rolls back) while the rolled-back
        version is not yet published: anything generated now would claim a version the coordinator has not
        reached and be refused, so the worker must not generate until it has loaded the job's version."""
        return self.weights is not None and self.engine.version > coordinator_version

    def _give_back(self, items: list[WorkItem]) -> None:
        log.info("holding version %d, newer than the job's; returning %d item(s) until the job's version "
                 "is published", self.engine.version, len(items))
        self.coord.push(TrajectoryBatchIn(worker_id=self.s.worker_id, released_item_ids=[i.item_id for i in items]))
        self.stop_event.wait(self.s.rollback_retry_seconds)

    def _job_done(self) -> bool:
        try:
            return bool(self.coord.version().get("done"))
        except CoordinatorError:
            return False
