"""Run a whole RLJob on one machine (or an existing Ray cluster): `hexrl run [--local] JOB.yaml`.

Layout: the coordinator serves from a thread of this (driver) process; the trainer and N rollout
workers are Ray actors that talk to it — and to the trainer's weight service — over the same HTTP
protocol as in the pods, so the local run exercises the real data path. Ray is local by default
(`ray.init(num_cpus=2, include_dashboard=False)`); `ray_address` joins an existing cluster, in which case
the services bind every interface and advertise this node's IP.

The driver shows a live line (step, reward, tokens/s, staleness, buffer), stops everything cleanly on
Ctrl-C (actors finish their current token and hand partials in; the trainer stops between steps), and
returns the summary: `steps`, `trainedSamples`, `initialReward` (mean reward of the first trained batch),
`finalReward` (mean over the last max(1, steps/10) batches), `tokensPerSecond` (prompt+response tokens
trained per wall second), `maxObservedStaleness`, `wallSeconds`, and `trainerIdleFraction` (the share of
the wall time the trainer waited for a batch: how well generation overlaps training), `checkpointDir`, and
`exportedPath` when the job wrote its Hugging Face export (`spec.export`). With `spec.evaluation`,
`evaluations` lists the finished held-out evaluations (version, greedy accuracy, pass@k) and `lastEvaluation`
the latest; the driver waits for the final version's evaluation before stopping.

Checkpoints (`checkpoint_directory`): `--checkpoint-dir` if given; else `spec.checkpoint.path` when the RLJob
sets it, so a rerun of the same file resumes where the last run stopped (its step budget counts from the
start of the job, not of the run); else a fresh temporary directory, so runs do not resume each other.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hexrl.api.evalspec import EvalSummary
from hexrl.api.jobtokens import derive_tokens
from hexrl.api.models import RLJob, RLJobSpec
from hexrl.api.workerconfig import ENV_GPU_TYPE
from hexrl_workers.coordinator.core import CoordinatorCore, CoordinatorSettings
from hexrl_workers.coordinator.evaluation import Evaluator, eval_settings
from hexrl_workers.coordinator.server import CoordinatorServer, ServerSettings, ThreadedCoordinator
from hexrl_workers.httpcommon import Credentials
from hexrl_workers.modeling import check_model_source
from hexrl_workers.reward.runner import check_reward
from hexrl_workers.tasks import make_dataset

log = logging.getLogger(__name__)


@dataclass
class LocalOptions:
    """What `hexrl run` passes in."""

    steps: int | None = None
    """Trainer steps (None: spec.algorithm.totalSteps, else 100)."""
    sync: bool = False
    """η = 0: fully synchronous-equivalent training, for comparisons."""
    workers: int = 2
    """Rollout actors."""
    ray_address: str | None = None
    """Existing Ray cluster (None: start Ray locally with 2 CPUs)."""
    checkpoint_dir: str | None = None
    """Override spec.checkpoint.path (None: the spec's path when the RLJob sets it, else a fresh temporary
    directory, so runs do not resume each other)."""
    show_progress: bool = True
    """Live progress line on the terminal."""
    max_items: int = 2
    """Groups per rollout engine batch."""
    trainer_procs: int = 1
    """Trainer processes (FSDP ranks over gloo on CPU); >1 starts them as a trainer pod does."""
    announce: Callable[[str], None] | None = None
    """Told one line about where checkpoints go and whether the run resumes (the CLI prints it on stderr)."""
    gpu_type: str | None = None
    """GPU type the local processes stand in for (HEXRL_GPU_TYPE of a pod): the rollout workers and the trainer
    then report their work as that type (`/v1/progress` observedWork). None: they report none."""
    observer: RunObserver | None = None
    """Told the coordinator's URL and the operator token once it serves, and told again just before it closes
    (`hexrl run --record` samples /v1/progress in between)."""


class RunObserver(Protocol):
    """Watches the coordinator of a local run (`LocalOptions.observer`)."""

    def coordinator_up(self, url: str, operator_token: str) -> None:
        """The coordinator serves at `url`; `operator_token` may read /v1/progress."""

    def coordinator_closing(self) -> None:
        """The run is over (or failed): the coordinator closes right after this returns."""


def _trainer_actor_cls():  # type: ignore[no-untyped-def]
    import ray

    @ray.remote(num_cpus=0, max_concurrency=2)  # type: ignore[call-overload]  # actor option missing in ray's overloads
    class TrainerActor:
        def __init__(self, spec_json: str, settings: dict[str, Any], procs: int) -> None:
            logging.basicConfig(level=logging.WARNING)
            from hexrl_workers.trainer.launch import LocalGang
            from hexrl_workers.trainer.loop import Trainer, TrainerSettings

            self.stop_event = threading.Event()
            if settings.get("gpu_type"):  # the gang's processes read it as a trainer pod's do
                os.environ[ENV_GPU_TYPE] = settings["gpu_type"]
            spec = RLJobSpec.model_validate_json(spec_json)
            self.trainer: Trainer | LocalGang
            if procs > 1:  # the trainer pod's own launch path, with `procs` FSDP ranks
                self.workdir = tempfile.mkdtemp(prefix="hexrl-trainer-")
                self.trainer = LocalGang(
                    spec, procs, settings["coordinator_url"], settings["token"], settings["checkpoint_dir"],
                    settings["advertise_host"], self.workdir, settings["total_steps"], settings["credentials"],
                )
            else:
                self.trainer = Trainer(spec, TrainerSettings(**settings))

        def weights_url(self) -> str:
            return self.trainer.weights_url

        def run(self) -> list[dict[str, float]]:
            try:
                return self.trainer.run(self.stop_event)
            finally:
                self.trainer.close()

        def stop(self) -> None:
            self.stop_event.set()

    return TrainerActor


def _rollout_actor_cls():  # type: ignore[no-untyped-def]
    import ray

    @ray.remote(num_cpus=0, max_concurrency=2)  # type: ignore[call-overload]  # actor option missing in ray's overloads
    class RolloutActor:
        def __init__(self, spec_json: str, coordinator_url: str, weights_url: str, token: str, worker_id: str,
                     host: str, max_items: int, credentials: Credentials, gpu_type: str | None = None) -> None:
            logging.basicConfig(level=logging.WARNING)
            from hexrl_workers.runtime import build_rollout_worker

            if gpu_type:  # this actor's own process: read by build_rollout_worker as a rollout pod reads it
                os.environ[ENV_GPU_TYPE] = gpu_type

            self.worker, self.relay = build_rollout_worker(
                RLJobSpec.model_validate_json(spec_json), coordinator_url, weights_url, token, worker_id,
                relay_host=host, relay_port=0, torch_threads=1, max_items=max_items, credentials=credentials,
            )

        def run(self) -> int:
            try:
                return self.worker.run()
            finally:
                if self.relay is not None:
                    self.relay.close()

        def stop(self) -> None:
            self.worker.stop()

    return RolloutActor


def _summary(core: CoordinatorCore, stats: list[dict[str, float]], wall: float, trained_tokens: int,
             trainer_idle: float = 0.0) -> dict[str, Any]:
    rewards = [s["reward"] for s in stats]
    tail = max(1, len(rewards) // 10)
    # without the trainer's own statistics (it had to be killed), the coordinator's record
    initial = rewards[0] if rewards else core.initial_reward
    final = sum(rewards[-tail:]) / tail if rewards else core.mean_reward
    return {
        "steps": len(stats) or core.trained_steps,
        "trainedSamples": core.trained_samples,
        "initialReward": round(initial, 4) if initial is not None else None,
        "finalReward": round(final, 4) if final is not None else None,
        "tokensPerSecond": round(trained_tokens / wall, 2) if wall > 0 else 0.0,
        "maxObservedStaleness": core.max_observed_staleness,
        "wallSeconds": round(wall, 2),
        # share of the wall time the trainer waited for a batch: ~0 when generation overlaps training,
        # the generation share of each step when it does not (η = 0)
        "trainerIdleFraction": round(min(1.0, trainer_idle / wall), 3) if wall > 0 else 0.0,
        **_evaluation_summary(core),
    }


def _evaluation_summary(core: CoordinatorCore) -> dict[str, Any]:
    """`evaluations` (oldest first) and `lastEvaluation`, numbers rounded; nothing without spec.evaluation."""
    if core.evaluator is None:
        return {}
    rows = [{k: round(v, 4) if isinstance(v, float) else v for k, v in h.wire().items()}
            for h in core.evaluator.history]
    return {"evaluations": rows, "lastEvaluation": rows[-1] if rows else None}


class CheckpointDirError(ValueError):
    """The checkpoint directory cannot be created or written; the message names it and what to do."""


def checkpoint_directory(job: RLJob, opts: LocalOptions) -> tuple[str, str]:
    """(the directory this run checkpoints to, absolute; where it came from: "--checkpoint-dir",
    "spec.checkpoint.path" or "a new temporary directory"), created and checked writable."""
    if opts.checkpoint_dir:
        path, origin = opts.checkpoint_dir, "--checkpoint-dir"
    elif "path" in job.spec.checkpoint.model_fields_set:
        path, origin = job.spec.checkpoint.path, "spec.checkpoint.path"
    else:
        return tempfile.mkdtemp(prefix=f"hexrl-{job.metadata.name or 'job'}-"), "a new temporary directory"
    path = os.path.abspath(path)
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise CheckpointDirError(
            f"cannot write checkpoints to {path} (from {origin}): {exc.strerror or exc}; choose a writable "
            "directory with --checkpoint-dir or spec.checkpoint.path"
        ) from None
    return path, origin


def _checkpoint_line(ckdir: str, origin: str) -> str:
    # complete checkpoints are step-*/ directories with a meta.json (trainer.checkpoint's layout; that module
    # imports torch, which this driver process otherwise never needs)
    complete = sorted(p.parent.name for p in Path(ckdir).glob("step-*/meta.json"))
    resume = f"; resuming from {complete[-1]}" if complete else ""
    return f"checkpoints in {ckdir} ({origin}){resume}"


def _exported_path(spec: RLJobSpec, ckdir: str) -> str | None:
    """Where the trainer wrote the final export, if it did."""
    if not spec.export.at_end:
        return None
    from hexrl_workers.export import PROVENANCE

    path = spec.export.resolved_path(ckdir)
    return path if os.path.isfile(os.path.join(path, PROVENANCE)) else None


def run_local(job: RLJob, opts: LocalOptions) -> dict[str, Any]:
    """Run the job to completion (or Ctrl-C) and return the summary dict."""
    import ray

    spec, steps = _local_spec(job, opts)
    ckdir, origin = checkpoint_directory(job, opts)
    if opts.announce is not None:
        opts.announce(_checkpoint_line(ckdir, origin))
    host, bind = _start_ray(opts)
    tokens = derive_tokens(secrets.token_bytes(32), "local")  # one per role, as in a pod (hexrl.api.jobtokens)
    evaluation = eval_settings(spec)
    core = CoordinatorCore(
        CoordinatorSettings(
            prompts_per_step=spec.algorithm.prompts_per_step, group_size=spec.algorithm.group_size,
            max_policy_lag=spec.staleness.max_policy_lag, total_steps=steps, vocab_size=spec.model.shape.vocab,
            max_new_tokens=spec.generation.max_new_tokens,
        ),
        make_dataset(spec.dataset, seed=spec.algorithm.seed),
        Evaluator(evaluation) if evaluation is not None else None,
    )
    server = CoordinatorServer(core, ServerSettings(credentials=Credentials.of_tokens(tokens)))
    coord = ThreadedCoordinator(server, host=bind)
    if opts.observer is not None:
        opts.observer.coordinator_up(f"http://{host}:{coord.port}", tokens["operator"])
    actors: list[Any] = []
    t_start = time.monotonic()
    stats: list[dict[str, float]] = []
    interrupted = False
    try:
        stats, interrupted, t_start = _run_actors(
            spec, steps, opts, actors, server, tokens, f"http://{host}:{coord.port}", ckdir, host, bind,
            job.metadata.name,
        )
    finally:
        wall = time.monotonic() - t_start
        trained_tokens = int(server.metrics["hexrl_trained_tokens"]._value.get())
        trainer_idle = server.trainer_idle_seconds
        if opts.observer is not None:
            opts.observer.coordinator_closing()
        coord.close()
        for a in actors:
            ray.kill(a)
        ray.shutdown()
    out = _summary(core, stats, wall, trained_tokens, trainer_idle)
    out["checkpointDir"] = ckdir
    exported = _exported_path(spec, ckdir)
    if exported is not None:
        out["exportedPath"] = exported
    if interrupted:
        out["interrupted"] = True
    return out


def _local_spec(job: RLJob, opts: LocalOptions) -> tuple[RLJobSpec, int]:
    """(the spec this run uses — step budget and --sync applied — and its step budget); fails early, with a
    clear message, on a model source or dataset that cannot be loaded here."""
    spec = job.spec.model_copy(deep=True)
    check_model_source(spec)
    steps = opts.steps or spec.algorithm.total_steps or 100
    spec.algorithm.total_steps = steps
    if opts.sync:
        spec.staleness.max_policy_lag = 0
    make_dataset(spec.dataset, seed=spec.algorithm.seed)
    check_reward(spec.reward)  # a missing reward file or function: one sentence now, not from every worker
    return spec, steps


def _start_ray(opts: LocalOptions) -> tuple[str, str]:
    """Join the Ray cluster at --ray-address or start one locally; returns (the address the actors reach
    this process at, the address its servers bind)."""
    import ray

    if not opts.ray_address:
        os.environ.setdefault("RAY_ACCEPT_CLUSTER_ENV_VAR", "0")
        # Ray starts its workers at nice 15 (so they never starve a driver on a shared node). Here the
        # actors *are* the job: at nice 15 any other busy process (a build, a test run) takes their CPU
        # and a one-minute run stretches to six. Normal priority, like the driver's.
        os.environ.setdefault("RAY_worker_niceness", "0")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        return "127.0.0.1", "127.0.0.1"
    loopback = _loopback(opts.ray_address)
    if loopback:
        # Ray rewrites a loopback bootstrap address to this machine's outward IP, where a head started
        # with --node-ip-address=127.0.0.1 does not listen; its single-machine mode keeps 127.0.0.1.
        import ray._private.ray_constants as ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(address=opts.ray_address, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise ValueError(
            f"cannot join the Ray cluster at {opts.ray_address!r} ({str(exc).splitlines()[0]}); check the "
            "address printed by `ray start --head`, or drop --ray-address to run Ray locally"
        ) from None
    if loopback:
        return "127.0.0.1", "127.0.0.1"
    return ray.util.get_node_ip_address(), "0.0.0.0"


def _run_actors(
    spec: RLJobSpec, steps: int, opts: LocalOptions, actors: list[Any], server: CoordinatorServer,
    tokens: dict[str, str],
    coordinator_url: str, ckdir: str, host: str, bind: str, job_name: str | None,
) -> tuple[list[dict[str, float]], bool, float]:
    """Start the trainer and the rollout actors (appended to `actors` as they start, so the caller can kill
    them whatever happens), wait for the trainer's step budget or Ctrl-C, stop them in order; returns (the
    trainer's step statistics, interrupted, the time the actors started)."""
    import ray

    spec_json = spec.model_dump_json(by_alias=True)
    credentials = Credentials.of_tokens(tokens)
    trainer = _trainer_actor_cls().remote(spec_json, {
        "coordinator_url": coordinator_url, "token": tokens["trainer"], "credentials": credentials,
        "checkpoint_dir": ckdir, "total_steps": steps, "job_name": job_name,
        "weights_host": bind, "advertise_host": host, "torch_threads": 1, "batch_wait_seconds": 1.0,
        "gpu_type": opts.gpu_type,
    }, opts.trainer_procs)
    actors.append(trainer)
    weights_url = ray.get(trainer.weights_url.remote())
    rollout_cls = _rollout_actor_cls()
    workers = [
        rollout_cls.remote(spec_json, coordinator_url, weights_url, tokens["rollout"], f"local-rollout-{k}", host,
                           opts.max_items, credentials, opts.gpu_type)
        for k in range(opts.workers)
    ]
    actors.extend(workers)
    t_start = time.monotonic()
    run_ref = trainer.run.remote()
    worker_refs = [w.run.remote() for w in workers]
    interrupted = False
    try:
        _watch(run_ref, server, steps, opts.show_progress)
    except KeyboardInterrupt:
        interrupted = True
        log.warning("interrupted: stopping the workers and the trainer")
    if not interrupted:
        _await_evaluation(server, EVAL_WAIT_SECONDS)
    for w in workers:
        w.stop.remote()
    trainer.stop.remote()
    stats = _await_stop(run_ref, "the trainer", STOP_SECONDS) or []
    _await_stop(worker_refs, "the rollout workers", STOP_SECONDS)
    return stats, interrupted, t_start


EVAL_WAIT_SECONDS = 120.0
"""How long the driver waits, after the last step, for the final version's evaluation (the rollout workers
generate it); after that the summary goes without it."""


def _await_evaluation(server: CoordinatorServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while server.core.evaluating and time.monotonic() < deadline:
        time.sleep(0.2)
    if server.core.evaluating:
        log.warning("the evaluation of version %d did not finish within %.0f s", server.core.version, timeout)


STOP_SECONDS = 60.0
"""How long the driver waits for the trainer, then the rollout workers, to stop by themselves; after that it
says so and kills them (the summary then takes its step count and rewards from the coordinator)."""


def _await_stop(refs: Any, what: str, timeout: float) -> Any:
    import ray
    from ray.exceptions import GetTimeoutError, RayError

    t0 = time.monotonic()
    try:
        out = ray.get(refs, timeout=timeout)
    except GetTimeoutError:
        log.warning("%s did not stop within %.0f s; killing it", what, timeout)
        return None
    except RayError as exc:
        log.warning("%s ended with an error while stopping: %s", what, str(exc).splitlines()[0])
        return None
    log.info("%s stopped in %.1f s", what, time.monotonic() - t0)
    return out


def _loopback(address: str) -> bool:
    """True when a Ray address (host:port, optionally ray://) names this machine's loopback interface."""
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1")


def _finished(ref: Any) -> bool:
    """Non-blocking check. The driver waits in `time.sleep`, not inside a blocking Ray call, so Ctrl-C lands
    in Python, where `_run_actors` handles it, and not in Ray's own wait (which may cancel the awaited task)."""
    import ray

    return bool(ray.wait([ref], timeout=0)[0])


def _evaluation_text(ev: EvalSummary | None) -> str:
    """The latest evaluation for the live line ('' before the first)."""
    if ev is None:
        return ""
    greedy = f" greedy {ev.greedy_accuracy:.2f}" if ev.greedy_accuracy is not None else ""
    sampled = f" pass@{ev.k} {ev.pass_at_k:.2f}" if ev.pass_at_k is not None else ""
    return f"  eval v{ev.version}:{greedy}{sampled}"


def _watch(run_ref: Any, server: CoordinatorServer, steps: int, show: bool) -> None:

    if not show:
        while not _finished(run_ref):
            time.sleep(0.5)
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    cols = [TextColumn("[bold]step {task.completed}/{task.total}"), BarColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[info]}")]
    with Progress(*cols, transient=False) as bar:
        task = bar.add_task("train", total=steps, info="")
        while not _finished(run_ref):
            time.sleep(0.5)
            p = server.progress_model()
            reward = f"{p.reward_mean:.3f}" if p.reward_mean is not None else "-"
            info = (f"reward {reward}  tok/s {p.tokens_per_second:,.0f}  staleness {p.observed_staleness:.2f}"
                    f" (max {p.max_observed_staleness}, η={p.max_policy_lag})  buffer {p.buffer_depth}"
                    f"{_evaluation_text(p.evaluation)}")
            bar.update(task, completed=p.trained_steps, info=info)
        p = server.progress_model()
        bar.update(task, completed=p.trained_steps)
