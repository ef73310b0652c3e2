"""Generation with vLLM on GPUs: the `Engine` interface over vLLM's V1 `AsyncLLM` (the `vllm` extra, pinned
in pyproject.toml; imported lazily, GPU images only).

- Continuous batching: every request of a `generate` call is submitted at once (`AsyncLLM.generate`, one
  stream each, DELTA outputs); vLLM's scheduler batches them token by token, so short responses leave
  the batch as they finish and no slot waits for the longest one.
- Tensor parallelism: `tensor_parallel_size` from the plan (the rollout pod's HEXRL_TENSOR_PARALLEL).
- Interruption: when the worker is told to stop, the pending streams are cancelled — vLLM aborts a request
  whose stream is cancelled — and each result keeps the tokens and log-probs streamed so far, which the
  worker hands in as a partial for another worker to continue (migration).
- Weights in place: `load_weights` saves the pulled tensors to /dev/shm and calls the worker extension
  (`vllm_extension.HexrlWorkerExtension.hexrl_load_weights`) on every rank through `collective_rpc`, then
  resets the prefix cache (cached KV of the old weights must not be reused).
- Log-probs: untruncated, tempered (see `vllm_extension`): vLLM samples at temperature 1 from logits the
  extension divides by T, and reports `raw_logprobs`. A request with its own temperature (held-out
  evaluation, `GenRequest.temperature`) is sampled at it (`vllm_temperature`); its log-probs are not used.

Every vLLM class, method and argument used here is listed in `VLLM_API`; tests/workers/test_vllm_api.py
checks each against the source of the pinned vLLM wheel, and that this module uses nothing else.
The torch engine (`torch_engine`) serves the same interface on CPUs and in the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import tempfile
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from hexrl_workers.rollout.engine import GenRequest, GenResult, SamplingParams

log = logging.getLogger(__name__)
T = TypeVar("T")
EXTENSION = "hexrl_workers.rollout.vllm_extension.HexrlWorkerExtension"
STOP_POLL_SECONDS = 0.05
"""How often a running `generate` checks the stop event."""
SHM_DIR = "/dev/shm"
"""Where a weight version is handed to vLLM's worker processes (memory-backed; the operator mounts a
memory emptyDir there in worker pods)."""

VLLM_API: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("vllm.engine.arg_utils", "AsyncEngineArgs", (
        "model", "tensor_parallel_size", "seed", "enable_prefix_caching", "logprobs_mode", "worker_extension_cls",
        "dtype", "gpu_memory_utilization", "max_model_len", "skip_tokenizer_init")),
    ("vllm.config.model", "LogprobsMode", ("raw_logprobs",)),
    ("vllm.v1.engine.async_llm", "AsyncLLM.from_engine_args", ("engine_args",)),
    ("vllm.v1.engine.async_llm", "AsyncLLM.generate", ("prompt", "sampling_params", "request_id")),
    ("vllm.v1.engine.async_llm", "AsyncLLM.abort", ("request_id",)),
    ("vllm.v1.engine.async_llm", "AsyncLLM.collective_rpc", ("method", "args")),
    ("vllm.v1.engine.async_llm", "AsyncLLM.reset_prefix_cache", ()),
    ("vllm.v1.engine.async_llm", "AsyncLLM.shutdown", ()),
    ("vllm.sampling_params", "SamplingParams", (
        "temperature", "top_p", "max_tokens", "logprobs", "stop_token_ids", "seed", "output_kind", "detokenize",
        "skip_special_tokens")),
    ("vllm.sampling_params", "RequestOutputKind", ("DELTA",)),
    ("vllm.inputs.llm", "TokensPrompt", ("prompt_token_ids",)),
    ("vllm.outputs", "RequestOutput", ("outputs", "finished")),
    ("vllm.outputs", "CompletionOutput", ("token_ids", "logprobs", "finish_reason")),
    ("vllm.logprobs", "Logprob", ("logprob",)),
    ("vllm.v1.worker.gpu_worker", "Worker", ("model_runner",)),
    ("vllm.v1.worker.gpu_model_runner", "GPUModelRunner.get_model", ()),
    ("vllm.model_executor.models.qwen2", "Qwen2ForCausalLM.load_weights", ("weights",)),
    ("vllm.model_executor.models.qwen2", "Qwen2ForCausalLM.compute_logits", ("hidden_states",)),
    ("vllm.model_executor.models.llama", "LlamaForCausalLM.load_weights", ("weights",)),
    ("vllm.model_executor.models.llama", "LlamaForCausalLM.compute_logits", ("hidden_states",)),
)
"""(module, class or Class.method, the argument / field / member names used) — checked against the pin."""


def vllm_temperature(requested: float | None, job: float) -> float:
    """vLLM's temperature for a request: the job's T is already applied to the logits (vllm_extension, when
    T > 0), so the job's own requests sample at 1, greedy ones at 0, and a request asking for T' (held-out
    evaluation) at T'/T, which makes the draw one from logits / T'."""
    if requested is None:
        return 0.0 if job <= 0 else 1.0
    if requested <= 0:
        return 0.0
    return requested / job if job > 0 else requested


class VLLMEngine:
    """The vLLM engine on a private event loop thread; `generate` and `load_weights` block like the torch
    engine's, so the rollout worker drives either the same way."""

    def __init__(self, model_path: str, params: SamplingParams, seed: int = 0, tensor_parallel_size: int = 1,
                 **engine_kwargs: Any) -> None:
        try:
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as exc:  # pragma: no cover - GPU images only
            raise RuntimeError("the vLLM engine needs `pip install hexrl[vllm]` and a CUDA GPU") from exc
        self.params = params
        self.seed = seed
        self.version = 0
        self._ids = itertools.count()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vllm-engine", daemon=True)
        self._thread.start()
        args = AsyncEngineArgs(
            model=model_path, tensor_parallel_size=tensor_parallel_size, seed=seed, enable_prefix_caching=True,
            logprobs_mode="raw_logprobs", worker_extension_cls=EXTENSION, **engine_kwargs,
        )

        async def build() -> Any:  # the engine's background tasks belong to our loop
            return AsyncLLM.from_engine_args(args)

        self.llm = self._run(build())
        self._run(self.llm.collective_rpc("hexrl_set_temperature", args=(float(params.temperature),)))

    # ----------------------------------------------------------------------------------- plumbing

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.llm.shutdown()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # ------------------------------------------------------------------------------------ weights

    def load_weights(self, tensors: dict[str, Any], version: int) -> None:
        """Replace the weights in place on every tensor-parallel rank, then drop the prefix cache."""
        import torch

        fd, path = tempfile.mkstemp(prefix=f"hexrl-v{version}-", suffix=".pt",
                                    dir=SHM_DIR if os.path.isdir(SHM_DIR) else None)
        os.close(fd)
        try:
            torch.save(tensors, path)
            self._run(self.llm.collective_rpc("hexrl_load_weights", args=(path,)))
            self._run(self.llm.reset_prefix_cache())
        finally:
            os.unlink(path)
        self.version = version

    # --------------------------------------------------------------------------------- generation

    def _sampling(self, max_tokens: int, temperature: float | None) -> Any:
        from vllm.sampling_params import RequestOutputKind
        from vllm.sampling_params import SamplingParams as VSamplingParams

        return VSamplingParams(
            temperature=vllm_temperature(temperature, self.params.temperature),
            top_p=self.params.top_p, max_tokens=max_tokens, logprobs=0, stop_token_ids=[self.params.eos_id],
            seed=None, output_kind=RequestOutputKind.DELTA, detokenize=False, skip_special_tokens=False,
        )

    async def _stream(self, request_id: str, req: GenRequest, out: GenResult) -> None:
        """One request: append every streamed token (and its log-prob) to `out` as it arrives."""
        left = req.max_new_tokens - len(out.tokens)
        if left <= 0:
            return
        prompt = {"prompt_token_ids": list(req.prompt_tokens) + list(req.prefix_tokens)}
        async for chunk in self.llm.generate(prompt, self._sampling(left, req.temperature), request_id=request_id):
            comp = chunk.outputs[0]
            for tok, lps in zip(comp.token_ids, comp.logprobs or [], strict=False):
                out.tokens.append(int(tok))
                out.logprobs.append(float(lps[tok].logprob))
                out.versions.append(self.version)
            if chunk.finished:
                out.finished = comp.finish_reason == "stop"

    async def _generate(self, requests: list[GenRequest], out: list[GenResult], stop: threading.Event | None) -> None:
        ids = [f"hexrl-{next(self._ids)}" for _ in requests]
        tasks = [asyncio.create_task(self._stream(i, r, o)) for i, r, o in zip(ids, requests, out, strict=True)]
        pending = set(tasks)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=STOP_POLL_SECONDS)
            if pending and stop is not None and stop.is_set():
                for t in pending:
                    t.cancel()  # vLLM aborts a request whose stream is cancelled
                await asyncio.gather(*pending, return_exceptions=True)
                await self.llm.abort([i for i, t in zip(ids, tasks, strict=True) if t in pending])
                for o, t in zip(out, tasks, strict=True):
                    if t in pending:
                        o.interrupted = True
                return
        for t in tasks:
            t.result()  # raise what a stream raised

    def generate(self, requests: list[GenRequest], stop: threading.Event | None = None) -> list[GenResult]:
        out = [GenResult(list(r.prefix_tokens), list(r.prefix_logprobs), list(r.prefix_versions), False)
               for r in requests]
        if stop is not None and stop.is_set():
            for o in out:
                o.interrupted = True
            return out
        self._run(self._generate(requests, out, stop))
        return out
