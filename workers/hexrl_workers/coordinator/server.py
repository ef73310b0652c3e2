"""The coordinator's HTTP service (aiohttp) around `CoordinatorCore`.

Endpoints (JSON bodies of `hexrl_workers.protocol`; all under `/v1/` need the bearer token of a role that
`hexrl_workers.httpcommon.ACCESS` allows there: rollout, trainer or operator):

    POST /v1/work           WorkRequest → WorkResponse      rollout workers pull prompts (long-poll)
    POST /v1/trajectories   TrajectoryBatchIn → IngestResult finished trajectories, partials, evaluation results
    POST /v1/batch          BatchRequest → Batch | 204      the trainer pulls a batch (long-poll)
    POST /v1/version        VersionUpdate                   the trainer announces a new policy version
    GET  /v1/version                                        {"version", "epoch", "done"}
    GET  /v1/progress       Progress                        for the operator and `hexrl run`
    GET|PUT /v1/staleness   {"maxPolicyLag": n}             read or change η at run time
    GET  /v1/state, POST /v1/restore                        checkpoint snapshot / restore
    GET  /metrics, /healthz, /readyz                        Prometheus exposition; liveness; readiness

A coordinator built with `tolerate_data_error` (the pods do) whose dataset cannot be loaded (an unknown
built-in name, a missing `dataset.path`, a mapped column the files lack, a prompt template field the records
lack) does not exit: it stays live, is not ready (/readyz says why),
answers /v1/work and /v1/batch with 503 (clients keep retrying) and reports the sentence in
`/v1/progress` (`dataError`), which the operator turns into the RLJob's `Ready=False` condition. When the
mounted config's `spec.dataset` or `spec.prompt` changes it tries again, so fixing the RLJob is enough; and
it tries the same spec again every `data_retry_seconds`, so files that appear later (a ConfigMap created
after the job, files copied onto the PVC) are picked up too.

η is also watched in the mounted config file (`maxPolicyLag`, see `hexrl.api.workerconfig`): the
operator rewrites the ConfigMap and the coordinator applies it within `config_poll_seconds`.
All handlers run on one event loop and the core is synchronous, so no locks are needed; waiters are
woken through one `asyncio.Condition` whenever the state changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from hexrl.api.dataspec import DatasetSpec, PromptSpec
from hexrl.api.evalspec import EvalSpec, EvalSummary
from hexrl.api.models import RLJobSpec
from hexrl.api.workerconfig import (
    HEALTH_PATH,
    METRICS_PATH,
    PROGRESS_PATH,
    READY_PATH,
    STALENESS_PATH,
    parse_worker_config,
)
from hexrl_workers.coordinator.core import (
    CoordinatorCore,
    CoordinatorSettings,
    InvalidSampleError,
    RejectedError,
)
from hexrl_workers.coordinator.evaluation import Evaluator, eval_settings
from hexrl_workers.data import Dataset, check_prompt_template, make_dataset
from hexrl_workers.httpcommon import (
    Credentials,
    HTTPProblem,
    ThreadedService,
    auth_middleware,
    error_middleware,
    json_response,
    parse,
    read_body,
    start_site,
    stop_site,
)
from hexrl_workers.limits import BodyLimits, BufferLimits, body_limits, sample_bytes, spec_buffer_limits
from hexrl_workers.metrics import Metrics
from hexrl_workers.protocol import (
    BatchRequest,
    IngestResult,
    Progress,
    StalenessUpdate,
    TrajectoryBatchIn,
    VersionUpdate,
    WorkRequest,
    WorkResponse,
)
from hexrl_workers.statusserver import Readiness, readiness_response

CONFIG_WATCHER: web.AppKey[asyncio.Task[None]] = web.AppKey("config_watcher", asyncio.Task)
"""The task that re-reads the mounted worker config (η changes) while the app runs."""

log = logging.getLogger(__name__)
UNSPECIFIED_MAX_NEW_TOKENS = 65_536
"""maxNewTokens assumed for the body limit of a core built without one (tests, benchmarks)."""


@dataclass
class ServerSettings:
    """Runtime knobs of the coordinator service."""

    credentials: Credentials | None = None
    """What callers' tokens are checked against (None disables auth: tests of other behaviour only)."""
    config_path: str | None = None
    """Mounted worker config to watch for a changed `maxPolicyLag` (None = no watching)."""
    config_poll_seconds: float = 1.0
    """How often the config file is re-read, seconds. kubelet itself propagates ConfigMap changes
    within about a minute, so polling faster than 1 s buys nothing."""
    rate_window_seconds: float = 30.0
    """Window of the tokens/s figures in /v1/progress, seconds."""
    limits: BodyLimits | None = None
    """Request body limits (None: from the core's group size and maxNewTokens, see `hexrl_workers.limits`)."""
    mean_prompt_tokens: int = 512
    """spec.generation.promptTokens, for the default `limits` (prompts may be several times longer)."""
    max_prompt_tokens: int | None = None
    """spec.generation.maxPromptTokens, for the default `limits` (None: the bound from mean_prompt_tokens)."""
    buffer: BufferLimits = field(default_factory=BufferLimits)
    """How much finished work the coordinator buffers before a push is answered 429."""
    retry_after_seconds: float = 1.0
    """What a refused push is told to wait (Retry-After) while the buffer is full, seconds."""
    data_retry_seconds: float = 30.0
    """While the dataset cannot be loaded, load the same spec again this often (seconds, with config watching):
    the files may appear without a spec change (a ConfigMap created after the job, files copied onto the PVC)."""


class CoordinatorServer:
    def __init__(self, core: CoordinatorCore, settings: ServerSettings | None = None) -> None:
        self.core = core
        self.settings = settings or ServerSettings()
        self.limits = self.settings.limits or body_limits(
            core.s.group_size, core.s.max_new_tokens or UNSPECIFIED_MAX_NEW_TOKENS, self.settings.mean_prompt_tokens,
            self.settings.buffer, self.settings.max_prompt_tokens)
        """The per-route body limits in force."""
        self.metrics = Metrics("coordinator")
        self.started = time.monotonic()
        self.trainer_idle_seconds = 0.0
        self._changed: asyncio.Condition | None = None
        self._trained_window: deque[tuple[float, int]] = deque()
        self._generated_window: deque[tuple[float, int]] = deque()
        self._config_mtime: float | None = None
        self._config_text: str | None = None
        self.runner: web.AppRunner | None = None
        self.port: int | None = None
        self.readiness = Readiness(None)
        self.data_error: str | None = None
        """Why the job's dataset cannot be loaded, one sentence (None when it is loaded)."""
        self.job_spec: RLJobSpec | None = None
        """The spec last read (built with, or from the mounted config): what a data retry loads."""
        self._next_data_retry = 0.0
        self.dataset_spec: tuple[DatasetSpec, PromptSpec] | None = None
        """The dataset and prompt fields the core was built for (compared with the mounted config's after a data
        error: fixing either may fix the error)."""
        self.evaluation_spec: EvalSpec | None = None
        """Likewise, the held-out evaluation it was built for."""

    def fail_data(self, error: str) -> None:
        """Serve without data: not ready, /v1/work and /v1/batch answer 503, /v1/progress says why."""
        log.error("dataset unavailable: %s", error)
        self.data_error = f"dataset unavailable: {error}"
        self.readiness.waiting(self.data_error)

    def _require_data(self) -> None:
        if self.data_error is not None:
            raise HTTPProblem(503, self.data_error, "dataset")

    # --------------------------------------------------------------------------------------- wiring

    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[
                error_middleware(lambda r: self.metrics["hexrl_rejected_requests"].labels(r).inc()),
                auth_middleware(self.settings.credentials),
            ],
            client_max_size=max(self.limits.trajectories, self.limits.restore),  # routes read with their own
        )
        app.router.add_post("/v1/work", self.work)
        app.router.add_post("/v1/trajectories", self.trajectories)
        app.router.add_post("/v1/batch", self.batch)
        app.router.add_post("/v1/version", self.post_version)
        app.router.add_get("/v1/version", self.get_version)
        app.router.add_get(PROGRESS_PATH, self.progress)
        app.router.add_get(STALENESS_PATH, self.get_staleness)
        app.router.add_put(STALENESS_PATH, self.put_staleness)
        app.router.add_get("/v1/state", self.get_state)
        app.router.add_post("/v1/restore", self.restore)
        app.router.add_get(METRICS_PATH, self.metrics_handler)
        app.router.add_get(HEALTH_PATH, self.health)
        app.router.add_get(READY_PATH, self.ready)
        app.on_startup.append(self._on_startup)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        self._changed = asyncio.Condition()
        if self.settings.config_path:
            app[CONFIG_WATCHER] = asyncio.create_task(self._watch_config())
        self._update_gauges()

    async def start(self, host: str = "0.0.0.0", port: int = 0) -> int:
        """Serve on the running loop; returns the bound port."""
        self.runner, self.port = await start_site(self.app(), host, port)
        return self.port

    async def stop(self) -> None:
        await stop_site(self.runner)

    async def _notify(self) -> None:
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()
        self._update_gauges()

    async def _wait_change(self, timeout: float) -> None:
        assert self._changed is not None
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    # ------------------------------------------------------------------------------------- handlers

    async def work(self, request: web.Request) -> web.Response:
        self._require_data()
        req = await parse(WorkRequest, request, self.limits.default)
        deadline = time.monotonic() + req.wait_seconds
        while True:
            items, reason = self.core.dispatch(req.worker_id, req.max_items, time.time())
            if items or time.monotonic() >= deadline:
                break
            if reason == "staleness-gate":
                self.metrics["hexrl_gate_blocked"].inc()
            await self._wait_change(max(0.0, deadline - time.monotonic()))
        if items:
            migrated = sum(1 for it in items for s in it.samples if s.prefix_tokens)
            fresh = sum(1 for it in items if len(it.samples) == it.group_size)
            self.metrics["hexrl_prompts_dispatched"].inc(fresh)
            self.metrics["hexrl_partials_migrated"].inc(migrated)
            await self._notify()
        return json_response(WorkResponse(items=items, policy_version=self.core.version, reason=reason))

    async def trajectories(self, request: web.Request) -> web.Response:
        body = await parse(TrajectoryBatchIn, request, self.limits.trajectories)
        self._check_buffer(body)
        accepted = dropped = 0
        gen_tokens = 0
        for traj in body.trajectories:
            try:
                self.core.ingest(traj)
                accepted += 1
                gen_tokens += len(traj.tokens)
            except RejectedError as exc:
                dropped += 1
                self._count_invalid(exc)
                log.info("dropped trajectory from %s: %s", body.worker_id or traj.worker_id, exc)
            # Checking a long sample (every token id and log-prob) takes a while: let the other requests
            # (probes, the trainer's batch) in between samples instead of after the whole push.
            await asyncio.sleep(0)
        partials = 0
        for part in body.partials:
            try:
                self.core.ingest_partial(part)
                partials += 1
            except RejectedError as exc:
                dropped += 1
                self._count_invalid(exc)
                log.info("dropped partial from %s: %s", body.worker_id or part.worker_id, exc)
        evaluations = self._ingest_evaluations(body)
        for item_id in body.released_item_ids:
            self.core.release(item_id)
        self.core.work.add(body.work)
        for d in body.discarded:
            try:
                self.core.discard(d)
                self.metrics["hexrl_groups_discarded"].labels(d.reason).inc()
                log.warning("group %d (prompt %d) abandoned by %s: %s%s", d.group_id, d.prompt_id,
                            body.worker_id or "a rollout worker", d.reason, f" ({d.detail})" if d.detail else "")
            except RejectedError as exc:
                dropped += 1
                log.info("ignored discard from %s: %s", body.worker_id, exc)
        self.metrics["hexrl_trajectories"].inc(accepted)
        self.metrics["hexrl_generated_tokens"].inc(gen_tokens)
        self.metrics["hexrl_partials_received"].inc(partials)
        self._generated_window.append((time.monotonic(), gen_tokens))
        await self._notify()
        return json_response(IngestResult(accepted=accepted, dropped=dropped + len(body.evaluations) - evaluations,
                                          partials=partials, evaluations=evaluations))

    def _ingest_evaluations(self, body: TrajectoryBatchIn) -> int:
        """Record the push's evaluation results (before its released items, which may share an item);
        returns how many were accepted."""
        accepted = 0
        for res in body.evaluations:
            try:
                summary = self.core.ingest_evaluation(res)
                accepted += 1
            except RejectedError as exc:
                log.info("dropped evaluation result from %s: %s", body.worker_id or res.worker_id, exc)
                continue
            if summary is not None:
                log.info("evaluation of version %d: %s", summary.version, summary.wire())
        return accepted

    def _check_buffer(self, body: TrajectoryBatchIn) -> None:
        """429 with Retry-After when this push would take the buffer past its bounds (entries or bytes),
        unless it completes a group: the trainer drains completed groups, so those always get in."""
        if not body.trajectories:
            return
        c, bounds = self.core, self.settings.buffer
        max_n = bounds.max_trajectories(c.s.batch_trajectories, c.s.group_size, c.s.max_policy_lag)
        depth, used = c.buffer_depth, c.buffer_bytes
        adds = sum(sample_bytes(len(t.prompt_tokens), len(t.tokens)) for t in body.trajectories)
        if depth + len(body.trajectories) <= max_n and used + adds <= bounds.max_bytes:
            return
        if c.completes_a_group(body.trajectories):
            return
        raise HTTPProblem(
            429, f"the trajectory buffer is full ({depth} samples, {used:,} bytes; bounds {max_n} samples, "
                 f"{bounds.max_bytes:,} bytes) until the trainer takes a batch; keep these and retry",
            "buffer", headers={"Retry-After": f"{self.settings.retry_after_seconds:g}"})

    def _count_invalid(self, exc: RejectedError) -> None:
        if isinstance(exc, InvalidSampleError):
            self.metrics["hexrl_samples_invalid"].labels(exc.reason).inc()
            log.warning("invalid sample dropped (%s)", exc)

    async def batch(self, request: web.Request) -> web.Response:
        self._require_data()
        req = await parse(BatchRequest, request, self.limits.default)
        t0 = time.monotonic()
        deadline = t0 + req.wait_seconds
        dropped_before = self.core.dropped_stale
        try:
            while True:
                batch = self.core.take_batch(req.trainer_version)
                if batch is not None or time.monotonic() >= deadline:
                    break
                await self._wait_change(max(0.0, deadline - time.monotonic()))
        except RejectedError as exc:
            raise HTTPProblem(409, str(exc), "trainerVersion") from exc
        finally:
            waited = time.monotonic() - t0
            self.trainer_idle_seconds += waited
            self.metrics["hexrl_trainer_idle_seconds"].inc(waited)
            self.metrics["hexrl_dropped_stale"].inc(self.core.dropped_stale - dropped_before)
        if batch is None:
            return web.Response(status=204)
        for lag in self.core.last_batch_lags:
            self.metrics["hexrl_observed_staleness"].observe(lag)
        self.metrics["hexrl_trained_trajectories"].inc(len(batch.trajectories))
        self.metrics["hexrl_trained_tokens"].inc(self.core.last_batch_tokens)
        self._trained_window.append((time.monotonic(), self.core.last_batch_tokens))
        await self._notify()
        return json_response(batch)

    async def post_version(self, request: web.Request) -> web.Response:
        upd = await parse(VersionUpdate, request, self.limits.default)
        try:
            self.core.acknowledge(upd.version, upd.batch_id)
        except RejectedError as exc:
            raise HTTPProblem(409, str(exc), "version") from exc
        self.core.work.add(upd.work)
        self.metrics["hexrl_trained_steps"].inc()
        await self._notify()
        return json_response({"version": self.core.version})

    async def get_version(self, request: web.Request) -> web.Response:
        c = self.core
        return json_response(
            {"version": c.version, "epoch": c.epoch, "done": c.done, "pendingBatches": len(c.pending_batches)}
        )

    def _rate(self, window: deque[tuple[float, int]]) -> float:
        now = time.monotonic()
        horizon = now - self.settings.rate_window_seconds
        while window and window[0][0] < horizon:
            window.popleft()
        span = min(self.settings.rate_window_seconds, now - self.started)
        return sum(n for _, n in window) / span if span > 0 else 0.0

    def progress_model(self) -> Progress:
        c = self.core
        wall = max(1e-9, time.monotonic() - self.started)
        lags = c.last_batch_lags
        return Progress(
            policy_version=c.version,
            trained_steps=c.trained_steps,
            trained_samples=c.trained_samples,
            buffer_depth=c.buffer_depth,
            observed_staleness=(sum(lags) / len(lags)) if lags else 0.0,
            max_observed_staleness=c.max_observed_staleness,
            max_policy_lag=c.s.max_policy_lag,
            trainer_idle_fraction=min(1.0, self.trainer_idle_seconds / wall),
            tokens_per_second=self._rate(self._trained_window),
            generated_tokens_per_second=self._rate(self._generated_window),
            reward_mean=c.last_reward,
            mean_reward=c.mean_reward,
            initial_reward=c.initial_reward,
            dropped_stale=c.dropped_stale,
            discarded_groups=dict(c.discarded_groups),
            partials_migrated=c.partials_migrated,
            evaluation=c.evaluator.latest if c.evaluator is not None else None,
            evaluations=list(c.evaluator.history) if c.evaluator is not None else [],
            dataset_exhausted=c.dataset_exhausted,
            done=c.done,
            observed_work=c.work.reports(),
            data_error=self.data_error,
        )

    async def progress(self, request: web.Request) -> web.Response:
        return json_response(self.progress_model())

    async def get_staleness(self, request: web.Request) -> web.Response:
        return json_response({"maxPolicyLag": self.core.s.max_policy_lag})

    async def put_staleness(self, request: web.Request) -> web.Response:
        upd = await parse(StalenessUpdate, request, self.limits.default)
        await self.set_max_policy_lag(upd.max_policy_lag)
        return json_response({"maxPolicyLag": self.core.s.max_policy_lag})

    async def set_max_policy_lag(self, eta: int) -> None:
        if eta != self.core.s.max_policy_lag:
            log.info("max policy lag η: %d -> %d", self.core.s.max_policy_lag, eta)
        self.core.s.max_policy_lag = eta
        await self._notify()

    async def get_state(self, request: web.Request) -> web.Response:
        return json_response(self.core.snapshot())

    async def restore(self, request: web.Request) -> web.Response:
        body = await read_body(request, self.limits.restore)
        try:
            snap = json.loads(body)
            self.core.restore(snap)
        except (ValueError, KeyError, TypeError) as exc:
            raise HTTPProblem(422, f"not a coordinator snapshot: {exc}", "body") from exc
        await self._notify()
        return json_response({"version": self.core.version, "epoch": self.core.epoch})

    async def metrics_handler(self, request: web.Request) -> web.Response:
        self._update_gauges()
        body, ctype = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": ctype})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "version": self.core.version})

    async def ready(self, request: web.Request) -> web.Response:
        return readiness_response(self.readiness)

    def _update_gauges(self) -> None:
        c, m = self.core, self.metrics
        m["hexrl_policy_version"].set(c.version)
        m["hexrl_max_policy_lag"].set(c.s.max_policy_lag)
        m["hexrl_buffer_depth"].set(c.buffer_depth)
        m["hexrl_buffer_ready_groups"].set(len(c.ready))
        m["hexrl_inflight_trajectories"].set(c.inflight)
        if c.last_reward is not None:
            m["hexrl_reward_mean"].set(c.last_reward)
        latest = c.evaluator.latest if c.evaluator is not None else None
        if latest is not None:
            self._eval_gauges(latest)

    def _eval_gauges(self, latest: EvalSummary) -> None:
        m = self.metrics
        m["hexrl_eval_version"].set(latest.version)
        m["hexrl_eval_prompts"].set(latest.prompts)
        if latest.greedy_accuracy is not None:
            m["hexrl_eval_greedy_accuracy"].set(latest.greedy_accuracy)
        if latest.pass_at_k is not None and latest.pass_at_1 is not None:
            m["hexrl_eval_pass_at_k"].labels(str(latest.k)).set(latest.pass_at_k)
            m["hexrl_eval_pass_at_k"].labels("1").set(latest.pass_at_1)

    # ----------------------------------------------------------------------------------- config watch

    async def _watch_config(self) -> None:
        path = Path(self.settings.config_path or "")
        while True:
            try:
                text = path.read_text()
                if text != self._config_text:
                    self._config_text = text
                    cfg = parse_worker_config(text, source=str(path))
                    self.job_spec = cfg.spec
                    await self.set_max_policy_lag(cfg.effective_max_policy_lag())
                    if self.data_error is not None and (data_fields(cfg.spec), cfg.spec.evaluation) != (
                            self.dataset_spec, self.evaluation_spec):
                        self.retry_data(cfg.spec)
                if self.data_error is not None and self.job_spec is not None and self._data_retry_due():
                    self.retry_data(self.job_spec)
            except FileNotFoundError:
                pass
            except Exception as exc:  # a bad edit must not stop the job: keep the last good η
                log.warning("ignoring unreadable config %s: %s", path, exc)
            await asyncio.sleep(self.settings.config_poll_seconds)

    def _data_retry_due(self) -> bool:
        now = time.monotonic()
        if now < self._next_data_retry:
            return False
        self._next_data_retry = now + self.settings.data_retry_seconds
        return True

    def retry_data(self, spec: RLJobSpec) -> None:
        """Load the datasets (training and held-out) of a changed spec (or of the same one, later) after a data
        error; ready again when they load."""
        self._next_data_retry = time.monotonic() + self.settings.data_retry_seconds
        self.dataset_spec, self.evaluation_spec = data_fields(spec), spec.evaluation
        try:
            self.core.dataset = load_dataset(spec)
            evaluation = eval_settings(spec)
            self.core.evaluator = Evaluator(evaluation) if evaluation is not None else None
            if self.core.evaluator is not None:
                self.core.evaluator.version_reached(self.core.version)
        except (ValueError, OSError) as exc:
            self.fail_data(str(exc))
            return
        log.info("dataset %s loaded; serving work", spec.dataset.resolved_path() or spec.dataset.name)
        self.data_error = None
        self.readiness.set_ready()


def data_fields(spec: RLJobSpec) -> tuple[DatasetSpec, PromptSpec]:
    """The spec fields the coordinator's data depends on."""
    return spec.dataset, spec.prompt


def load_dataset(spec: RLJobSpec) -> Dataset:
    """The job's dataset, checked against its prompt template (ValueError/OSError with a sentence)."""
    dataset = make_dataset(spec.dataset, seed=spec.algorithm.seed)
    check_prompt_template(spec.prompt, dataset)
    return dataset


class _NoData:
    """The dataset of a coordinator whose real one could not be loaded (never read: work answers 503)."""

    prompt_count: int | None = None

    def __init__(self, error: str) -> None:
        self.error = error

    def get(self, prompt_id: int) -> Any:
        raise ValueError(f"dataset unavailable: {self.error}")


def build_coordinator(spec: RLJobSpec, credentials: Credentials | None, eta: int | None = None,
                      config_path: str | None = None, tolerate_data_error: bool = False) -> CoordinatorServer:
    """A coordinator for `spec` (η = the live override `eta`, else the spec's); imports no torch.

    A dataset that cannot be loaded raises (ValueError/OSError), unless `tolerate_data_error`: then the
    coordinator serves without data and reports why (see the module docstring)."""
    error = None
    dataset: Dataset
    evaluator = None
    try:
        dataset = load_dataset(spec)
        evaluation = eval_settings(spec)
        evaluator = Evaluator(evaluation) if evaluation is not None else None
    except (ValueError, OSError) as exc:
        if not tolerate_data_error:
            raise
        error, dataset = str(exc), _NoData(str(exc))
    core = CoordinatorCore(
        CoordinatorSettings(
            prompts_per_step=spec.algorithm.prompts_per_step,
            group_size=spec.algorithm.group_size,
            max_policy_lag=spec.staleness.max_policy_lag if eta is None else eta,
            total_steps=spec.algorithm.total_steps, vocab_size=spec.model.shape.vocab,
            max_new_tokens=spec.generation.max_new_tokens,
        ),
        dataset, evaluator,
    )
    server = CoordinatorServer(core, ServerSettings(credentials=credentials, config_path=config_path,
                                                    mean_prompt_tokens=spec.generation.prompt_tokens,
                                                    max_prompt_tokens=spec.generation.max_prompt_tokens,
                                                    buffer=spec_buffer_limits(spec)))
    server.dataset_spec, server.evaluation_spec = data_fields(spec), spec.evaluation
    server.job_spec = spec
    if error is not None:
        server.fail_data(error)
    return server


class ThreadedCoordinator(ThreadedService):
    """A coordinator serving from a background thread (local runner, tests, benchmarks)."""

    thread_name = "coordinator"
