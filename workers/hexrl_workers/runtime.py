"""Assembling the services of a job from its spec (shared by the pod entry points and `local.py`)."""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from typing import Any

from hexrl.api.models import RLJobSpec
from hexrl.api.workerconfig import ENV_GPU_TYPE
from hexrl_workers.coordinator.server import build_coordinator
from hexrl_workers.coordinator_client import CoordinatorClient, CoordinatorError, CoordinatorUnavailable
from hexrl_workers.httpcommon import Credentials
from hexrl_workers.limits import prompt_token_limit
from hexrl_workers.metrics import Metrics
from hexrl_workers.modeling import build_model, build_tokenizer, model_dir
from hexrl_workers.reward.runner import RewardRunner
from hexrl_workers.rollout.engine import SamplingParams
from hexrl_workers.rollout.prompts import PromptEncoder
from hexrl_workers.rollout.worker import RolloutSettings, RolloutWorker
from hexrl_workers.weights.client import WeightClient, WeightClientSettings
from hexrl_workers.weights.server import ThreadedWeightServer, WeightServer, WeightServerSettings

__all__ = ["build_coordinator", "build_rollout_worker"]

ENV_ENGINE = "HEXRL_ENGINE"
"""torch | vllm (default: vllm when CUDA and vllm are available, else torch)."""
ENV_ROLLOUT_TENSOR_PARALLEL = "HEXRL_TENSOR_PARALLEL"
"""The planned TP degree of this rollout replica (rendered into the rollout pod; vLLM's tensor_parallel_size)."""


def _engine(spec: RLJobSpec, seed: int) -> Any:
    tok = build_tokenizer(spec)
    params = SamplingParams(
        temperature=spec.generation.temperature, top_p=spec.generation.top_p, eos_id=tok.eos_id, pad_id=tok.pad_id
    )
    choice = os.environ.get(ENV_ENGINE, "")
    if choice == "vllm" or (not choice and _cuda_and_vllm()):
        from hexrl_workers.rollout.vllm_engine import VLLMEngine

        path = model_dir(spec)
        if path is None:
            raise ValueError("the vLLM engine needs a model directory (model.source.pvc or localPath)")
        tp = int(os.environ.get(ENV_ROLLOUT_TENSOR_PARALLEL, "1") or 1)
        return VLLMEngine(path, params, seed=seed, tensor_parallel_size=tp, dtype=str(spec.model.shape.dtype)
                          .replace("bf16", "bfloat16").replace("fp16", "float16").replace("fp32", "float32")), tok
    import torch

    from hexrl_workers.rollout.torch_engine import TorchEngine

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return TorchEngine(build_model(spec), params, seed=seed, device=device), tok


def _cuda_and_vllm() -> bool:
    import importlib.util

    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None


def _job_version(worker: RolloutWorker, coordinator_url: str, token: str | None) -> Callable[[], int | None]:
    """The job's version for the weight prefetcher, read on a client of its own (the worker's client is not
    shared between threads; a short retry: a missed poll is simply the next one)."""
    client = CoordinatorClient(coordinator_url, token, retry_seconds=2.0)
    client.abort = worker.stop_event

    def job_version() -> int | None:
        try:
            return int(client.version()["version"])
        except (CoordinatorError, CoordinatorUnavailable, KeyError, TypeError, ValueError):
            return None

    return job_version


def build_rollout_worker(
    spec: RLJobSpec, coordinator_url: str, weights_url: str, token: str | None, worker_id: str, *,
    relay_host: str = "0.0.0.0", relay_port: int = 0, advertise_host: str | None = None,
    torch_threads: int | None = None, max_items: int = 4, cache_dir: str | None = None,
    coordinator_retry_seconds: float = 60.0, credentials: Credentials | None = None,
) -> tuple[RolloutWorker, ThreadedWeightServer | None]:
    """A ready-to-run worker and (when relaying) its relay server, which also answers the worker's
    /readyz (the worker's readiness) and /metrics. `token` is the job's rollout-role token; the relay checks
    its callers against `credentials`."""
    if torch_threads:
        import torch

        torch.set_num_threads(torch_threads)
    # crc32, not hash(): str hashes are salted per process, which made every run's samples differ
    seed = spec.algorithm.seed * 7919 + zlib.crc32(worker_id.encode()) % 100_000
    reward = RewardRunner(spec.reward)  # first: a reward that cannot load fails the pod before the model loads
    engine, tok = _engine(spec, seed)
    metrics = Metrics("rollout")
    relay = None
    my_url = None
    if spec.weight_sync.relay:
        relay = ThreadedWeightServer(
            WeightServer(WeightServerSettings(credentials=credentials, origin=False), role="rollout", metrics=metrics),
            host=relay_host, port=relay_port, advertise_host=advertise_host or "127.0.0.1",
        )
        my_url = relay.url
    weights = WeightClient(
        WeightClientSettings(origin_url=weights_url, token=token, parallel=spec.weight_sync.parallel_chunks,
                             my_url=my_url, cache_dir=cache_dir),
        metrics=metrics,
    )
    worker = RolloutWorker(
        RolloutSettings(worker_id=worker_id, max_items=max_items, max_new_tokens=spec.generation.max_new_tokens,
                        max_prompt_tokens=prompt_token_limit(spec), gpu_type=os.environ.get(ENV_GPU_TYPE) or None,
                        gpus=int(os.environ.get(ENV_ROLLOUT_TENSOR_PARALLEL, "1") or 1)),
        engine, tok, reward,
        CoordinatorClient(coordinator_url, token, retry_seconds=coordinator_retry_seconds), weights, metrics,
        prompts=PromptEncoder(spec.prompt, tok),
    )
    assert worker.prefetch is not None  # the worker has a weight client
    worker.prefetch.job_version = _job_version(worker, coordinator_url, token)
    if relay is not None:
        worker.on_weights = relay.publish
        relay.server.readiness = worker.readiness
    return worker, relay
